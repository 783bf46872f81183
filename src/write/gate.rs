//! The write gate: who in this process may write the event log now, and
//! which tasks hold an application transaction ([`EventTx`](crate::EventTx)).
//!
//! SQLite has one write lock per database. An application transaction
//! takes it for its whole life; the writer task would otherwise run into
//! it, give up after the busy timeout and fall into the one-by-one retry.
//! So on SQLite both take this gate first: the writer's batches wait for
//! the application's transaction in line, then commit. (PostgreSQL locks
//! only the counter rows a transaction bumped; no gate is needed there.)
//!
//! On PostgreSQL a transaction locks the counter row of each channel it
//! sends to, and the writer's batch that touched such a row would wait,
//! and every batch behind it, whatever their channels. So a transaction
//! registers its channels here before locking them, and the writer keeps
//! the sends to those channels aside until it lets them go (after its
//! events reached the fan-out, so they also stay in id order). Each hold
//! is numbered: a send kept aside waits for the holds taken before it
//! arrived, not for later ones, so a channel that transactions hold back
//! to back cannot starve it. The price, only then: its batch waits on the
//! row of the newer transaction (with every send in the batch, as before
//! holds existed), and its event may reach the fan-out before that
//! transaction's lower id does, which streams repair from storage.
//!
//! A task that holds a transaction and then sends through the writer, or
//! opens a second transaction, would wait for itself: those calls fail
//! with [`Error::TransactionOpen`] instead.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedMutexGuard};
use tokio::task;

use crate::error::Error;

/// Shared by the writer and every transaction of one event log.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    /// Taken around each writer batch and each transaction (SQLite only).
    lock: Arc<AsyncMutex<()>>,
    /// Open transactions per task.
    holders: Mutex<HashMap<Holder, usize>>,
    /// Channels whose counter rows open transactions hold (PostgreSQL).
    channels: Mutex<Holds>,
    /// How many channels are held: the writer looks at the map only when
    /// some are.
    held_count: AtomicUsize,
    /// Wakes the writer when a transaction lets its channels go.
    let_go: Notify,
}

/// The holds on channels, numbered in the order they were taken.
#[derive(Debug, Default)]
struct Holds {
    /// Per held channel, the numbers of the holds on it.
    by_channel: HashMap<String, BTreeSet<u64>>,
    /// The number of the newest hold.
    newest: u64,
}

/// The channels open transactions hold, locked for one look.
pub(crate) struct HeldChannels<'a>(MutexGuard<'a, Holds>);

impl HeldChannels<'_> {
    /// Whether a transaction holds `channel` now.
    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.0.by_channel.contains_key(channel)
    }

    /// What a send kept aside now waits for: the holds numbered up to
    /// this one.
    pub(crate) fn ticket(&self) -> u64 {
        self.0.newest
    }

    /// Whether `channel` still has a hold that a send with `ticket` waits
    /// for.
    pub(crate) fn holds_up(&self, channel: &str, ticket: u64) -> bool {
        self.0
            .by_channel
            .get(channel)
            .and_then(BTreeSet::first)
            .is_some_and(|first| *first <= ticket)
    }
}

/// The channels one transaction holds, with its hold's number on each:
/// let go when dropped.
#[derive(Debug)]
pub(crate) struct ChannelHolds {
    gate: Arc<WriteGate>,
    channels: HashMap<String, u64>,
}

/// Who holds a transaction: a task, or (outside tasks, in `block_on`) the
/// thread that runs the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    Task(task::Id),
    Thread(std::thread::ThreadId),
}

impl Holder {
    fn current() -> Holder {
        match task::try_id() {
            Some(id) => Holder::Task(id),
            None => Holder::Thread(std::thread::current().id()),
        }
    }
}

/// A task's open transaction: released when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    gate: Arc<WriteGate>,
    task: Option<Holder>,
    /// The SQLite write turn, kept until the transaction has ended and its
    /// events are handed on.
    turn: Option<OwnedMutexGuard<()>>,
    /// The channels it locked (PostgreSQL), kept as long as the turn.
    channels: ChannelHolds,
}

impl WriteGate {
    /// The writer's turn for one batch (SQLite).
    pub(crate) async fn writer_turn(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.lock).lock_owned().await
    }

    /// Fails when the calling task holds a transaction: whatever it is
    /// about to wait for would wait for that transaction.
    pub(crate) fn check_not_holding(&self) -> Result<(), Error> {
        let id = Holder::current();
        let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        if holders.get(&id).is_some_and(|count| *count > 0) {
            return Err(Error::TransactionOpen);
        }
        Ok(())
    }

    /// Registers a transaction of the calling task; with `exclusive`
    /// (SQLite), waits for the write turn first.
    pub(crate) async fn hold(self: &Arc<Self>, exclusive: bool) -> Result<Held, Error> {
        self.check_not_holding()?;
        let turn = if exclusive {
            Some(Arc::clone(&self.lock).lock_owned().await)
        } else {
            None
        };
        let id = Holder::current();
        *self
            .holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_default() += 1;
        Ok(Held {
            gate: Arc::clone(self),
            task: Some(id),
            turn,
            channels: ChannelHolds::none(self),
        })
    }

    /// Whether any transaction holds a channel now.
    pub(crate) fn holds_any_channel(&self) -> bool {
        self.held_count.load(Ordering::Acquire) != 0
    }

    /// The channels held now.
    pub(crate) fn held_channels(&self) -> HeldChannels<'_> {
        HeldChannels(self.channels.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves once a transaction lets channels go after this is called,
    /// or let them go since the last call (one waiter: the writer).
    pub(crate) async fn channels_let_go(&self) {
        self.let_go.notified().await;
    }
}

impl ChannelHolds {
    /// No channel held yet.
    fn none(gate: &Arc<WriteGate>) -> ChannelHolds {
        ChannelHolds {
            gate: Arc::clone(gate),
            channels: HashMap::new(),
        }
    }

    /// Registers `channel`, once per transaction.
    fn hold(&mut self, channel: &str) {
        if self.channels.contains_key(channel) {
            return;
        }
        let mut held = self.gate.held_channels();
        let holds = &mut held.0;
        holds.newest += 1;
        let number = holds.newest;
        let on_channel = holds.by_channel.entry(channel.to_owned()).or_default();
        if on_channel.is_empty() {
            self.gate.held_count.fetch_add(1, Ordering::AcqRel);
        }
        on_channel.insert(number);
        self.channels.insert(channel.to_owned(), number);
    }
}

impl Drop for ChannelHolds {
    fn drop(&mut self) {
        if self.channels.is_empty() {
            return;
        }
        {
            let mut held = self.gate.held_channels();
            for (channel, number) in self.channels.drain() {
                if let Some(on_channel) = held.0.by_channel.get_mut(&channel) {
                    on_channel.remove(&number);
                    if on_channel.is_empty() {
                        held.0.by_channel.remove(&channel);
                        self.gate.held_count.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
        }
        self.gate.let_go.notify_one();
    }
}

impl Held {
    /// The transaction is ending (committing in a task of its own): the
    /// task that opened it may send again. The write turn stays held.
    pub(crate) fn release_task(&mut self) {
        let Some(id) = self.task.take() else {
            return;
        };
        let mut holders = self
            .gate
            .holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = holders.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                holders.remove(&id);
            }
        }
    }

    /// Keeps the write turn alive elsewhere (the commit task).
    pub(crate) fn take_turn(&mut self) -> Option<OwnedMutexGuard<()>> {
        self.turn.take()
    }

    /// Registers `channel` as locked by this transaction (PostgreSQL):
    /// the writer keeps sends to it aside until the transaction ends.
    /// Call it before the statement that locks the row.
    pub(crate) fn hold_channel(&mut self, channel: &str) {
        self.channels.hold(channel);
    }

    /// Keeps the channel holds alive elsewhere (the commit task).
    pub(crate) fn take_channels(&mut self) -> ChannelHolds {
        std::mem::replace(&mut self.channels, ChannelHolds::none(&self.gate))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release_task();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_holding_a_transaction_cannot_wait_on_the_writer() {
        let gate = Arc::new(WriteGate::default());
        let held = gate.hold(true).await.expect("first transaction");
        assert!(matches!(
            gate.check_not_holding(),
            Err(Error::TransactionOpen)
        ));
        assert!(matches!(gate.hold(true).await, Err(Error::TransactionOpen)));
        // Another task is not refused: it waits for the turn.
        let other = Arc::clone(&gate);
        let waiting = tokio::spawn(async move {
            other.check_not_holding().expect("another task");
            drop(other.hold(true).await.expect("after the first"));
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        waiting.await.expect("the second transaction ran");
        gate.check_not_holding().expect("released");
    }
}
