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
//! A task that holds a transaction and then sends through the writer, or
//! opens a second transaction, would wait for itself: those calls fail
//! with [`Error::TransactionOpen`] instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::task;

use crate::error::Error;

/// Shared by the writer and every transaction of one event log.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    /// Taken around each writer batch and each transaction (SQLite only).
    lock: Arc<AsyncMutex<()>>,
    /// Open transactions per task.
    holders: Mutex<HashMap<Holder, usize>>,
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
        })
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
