//! Sends the writer keeps aside while an application transaction of this
//! process holds their channel (PostgreSQL; see `write_gate`).
//!
//! ```text
//! batch taken from the queue ── channel held, or sends of it kept aside? ── yes ─► kept aside
//!                            └─ no ─► committed now
//! transaction ends ─► kept-aside sends of channels no longer held go first in the next batch
//! ```
//!
//! A channel's sends keep their order: once one is kept aside, later ones
//! of that channel are too, until they all go. Sends to other channels are
//! not held up.

use std::collections::{HashMap, VecDeque};

use crate::write_gate::HeldChannels;

/// Sends kept aside, in arrival order. `T` is the writer's request.
#[derive(Debug)]
pub(crate) struct HeldBack<T> {
    queue: VecDeque<T>,
    /// How many of `queue` are of each channel.
    per_channel: HashMap<String, usize>,
}

impl<T> Default for HeldBack<T> {
    fn default() -> Self {
        HeldBack {
            queue: VecDeque::new(),
            per_channel: HashMap::new(),
        }
    }
}

impl<T> HeldBack<T> {
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Moves out of `batch`, keeping the rest in order, every send whose
    /// channel is held or already has sends kept aside.
    pub(crate) fn keep_aside(
        &mut self,
        batch: &mut Vec<T>,
        held: &HeldChannels<'_>,
        channel_of: impl Fn(&T) -> &str,
    ) {
        let kept: Vec<T> = batch
            .extract_if(.., |send| {
                let channel = channel_of(send);
                held.contains(channel) || self.per_channel.contains_key(channel)
            })
            .collect();
        for send in kept {
            *self
                .per_channel
                .entry(channel_of(&send).to_owned())
                .or_default() += 1;
            self.queue.push_back(send);
        }
    }

    /// Moves into `batch`, up to `max` sends in all, the kept-aside sends
    /// whose channels are no longer held, in arrival order.
    pub(crate) fn let_go(
        &mut self,
        batch: &mut Vec<T>,
        max: usize,
        held: &HeldChannels<'_>,
        channel_of: impl Fn(&T) -> &str,
    ) {
        for send in std::mem::take(&mut self.queue) {
            let channel = channel_of(&send);
            if batch.len() >= max || held.contains(channel) {
                self.queue.push_back(send);
                continue;
            }
            if let Some(count) = self.per_channel.get_mut(channel) {
                *count -= 1;
                if *count == 0 {
                    self.per_channel.remove(channel);
                }
            }
            batch.push(send);
        }
    }

    /// Every kept-aside send, in order (the queue has closed).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.per_channel.clear();
        self.queue.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::write_gate::WriteGate;

    fn channel_of<'a>(send: &'a (&'static str, u32)) -> &'a str {
        send.0
    }

    #[tokio::test]
    async fn sends_of_held_channels_wait_in_order_and_others_go() {
        let gate = Arc::new(WriteGate::default());
        let mut kept = HeldBack::default();
        let mut transaction = gate.hold(false).await.expect("a transaction");
        transaction.hold_channel("a");
        assert!(gate.holds_any_channel());

        let mut batch = vec![("a", 1), ("b", 1), ("a", 2), ("c", 1)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("b", 1), ("c", 1)]);
        assert_eq!(kept.len(), 2);

        // Still held: nothing goes.
        let mut batch = Vec::new();
        kept.let_go(&mut batch, 10, &gate.held_channels(), channel_of);
        assert!(batch.is_empty());

        drop(transaction);
        assert!(!gate.holds_any_channel());
        // The transaction let go: the writer is woken (a stored permit).
        gate.channels_let_go().await;
        // A send of `a` arriving now still waits behind the kept ones.
        let mut batch = vec![("a", 3), ("b", 2)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("b", 2)]);
        // They go in arrival order, at most `max` at a time.
        let mut batch = Vec::new();
        kept.let_go(&mut batch, 2, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("a", 1), ("a", 2)]);
        let mut batch = Vec::new();
        kept.let_go(&mut batch, 2, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("a", 3)]);
        assert!(kept.is_empty());
        // Nothing kept aside, nothing held: everything goes.
        let mut batch = vec![("a", 4)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("a", 4)]);
    }
}
