//! Sends the writer keeps aside while an application transaction of this
//! process holds their channel (PostgreSQL; see `write_gate`).
//!
//! ```text
//! sends taken from the queue ── channel held, or sends of it kept aside? ── yes ─► kept aside
//!                            └─ no ─► committed now
//! a transaction ends ─► kept-aside sends no hold waits for go first, in the next batches
//! ```
//!
//! A channel's sends keep their order: once one is kept aside, later ones
//! of that channel are too, until they all go. Sends to other channels are
//! not held up. A send waits for the holds taken before it was kept aside
//! (its ticket), not for later ones: when transactions hold a channel back
//! to back, it goes once those are over, and its batch then waits on the
//! row of the newer one (see `write_gate`).

use std::collections::{HashMap, VecDeque};

use crate::write::gate::HeldChannels;

/// Sends kept aside, in arrival order, each with its ticket. `T` is the
/// writer's request.
#[derive(Debug)]
pub(crate) struct HeldBack<T> {
    queue: VecDeque<(T, u64)>,
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

    /// Moves out of `batch` (sends just taken from the queue), keeping the
    /// rest in order, every send whose channel is held or already has sends
    /// kept aside.
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
        let ticket = held.ticket();
        for send in kept {
            *self
                .per_channel
                .entry(channel_of(&send).to_owned())
                .or_default() += 1;
            self.queue.push_back((send, ticket));
        }
    }

    /// Moves into `batch`, up to `max` sends in all, the kept-aside sends
    /// that no hold holds up any more, in arrival order. Returns whether
    /// it stopped at `max` with sends left (more may go at once).
    pub(crate) fn let_go(
        &mut self,
        batch: &mut Vec<T>,
        max: usize,
        held: &HeldChannels<'_>,
        channel_of: impl Fn(&T) -> &str,
    ) -> bool {
        let mut rest = std::mem::take(&mut self.queue);
        while batch.len() < max {
            let Some((send, ticket)) = rest.pop_front() else {
                break;
            };
            let channel = channel_of(&send);
            // A channel's tickets grow along the queue: once one of its
            // sends stays, the later ones stay too.
            if held.holds_up(channel, ticket) {
                self.queue.push_back((send, ticket));
                continue;
            }
            self.went(channel);
            batch.push(send);
        }
        let full = !rest.is_empty();
        self.queue.append(&mut rest);
        full
    }

    /// Moves into `batch` the first `max` kept-aside sends, held or not
    /// (the queue has closed: no transaction is left).
    pub(crate) fn take_front(
        &mut self,
        batch: &mut Vec<T>,
        max: usize,
        channel_of: impl Fn(&T) -> &str,
    ) {
        while batch.len() < max {
            let Some((send, _)) = self.queue.pop_front() else {
                break;
            };
            self.went(channel_of(&send));
            batch.push(send);
        }
    }

    fn went(&mut self, channel: &str) {
        if let Some(count) = self.per_channel.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                self.per_channel.remove(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::write::gate::WriteGate;

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
        assert!(!kept.let_go(&mut batch, 10, &gate.held_channels(), channel_of));
        assert!(batch.is_empty());

        drop(transaction);
        assert!(!gate.holds_any_channel());
        // The transaction let go: the writer is woken (a stored permit).
        gate.channels_let_go().await;
        // A send of `a` arriving now still waits behind the kept ones.
        let mut batch = vec![("a", 3), ("b", 2)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("b", 2)]);
        // They go in arrival order, at most `max` at a time, and say when
        // more are left.
        let mut batch = Vec::new();
        assert!(kept.let_go(&mut batch, 2, &gate.held_channels(), channel_of));
        assert_eq!(batch, [("a", 1), ("a", 2)]);
        let mut batch = Vec::new();
        assert!(!kept.let_go(&mut batch, 2, &gate.held_channels(), channel_of));
        assert_eq!(batch, [("a", 3)]);
        assert!(kept.is_empty());
        // Nothing kept aside, nothing held: everything goes.
        let mut batch = vec![("a", 4)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("a", 4)]);
    }

    #[tokio::test]
    async fn a_send_waits_for_the_holds_before_it_not_for_later_ones() {
        let gate = Arc::new(WriteGate::default());
        let mut kept = HeldBack::default();
        let mut first = gate.hold(false).await.expect("a transaction");
        first.hold_channel("a");
        let mut batch = vec![("a", 1)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert!(batch.is_empty());

        // Another transaction takes `a` too (in another task: one task
        // holds one transaction), before the first ends.
        let other = Arc::clone(&gate);
        let mut second = tokio::spawn(async move {
            let mut second = other.hold(false).await.expect("a transaction");
            second.hold_channel("a");
            second
        })
        .await
        .expect("the second transaction");
        // A send arriving now waits for both.
        let mut batch = vec![("a", 2)];
        kept.keep_aside(&mut batch, &gate.held_channels(), channel_of);
        assert!(batch.is_empty());

        drop(first);
        // `a` is still held, but not by a hold the first send waits for.
        let mut batch = Vec::new();
        kept.let_go(&mut batch, 10, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("a", 1)]);
        let mut batch = Vec::new();
        kept.let_go(&mut batch, 10, &gate.held_channels(), channel_of);
        assert!(batch.is_empty());

        second.hold_channel("a"); // once per transaction: no second hold
        drop(second);
        kept.let_go(&mut batch, 10, &gate.held_channels(), channel_of);
        assert_eq!(batch, [("a", 2)]);
        assert!(!gate.holds_any_channel());
    }
}
