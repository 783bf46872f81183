//! The single writer: appends events to storage with group commit, then
//! hands them to the fan-out in id order.
//!
//! ```text
//! send ──► queue ──► writer task: take everything queued (≤ commit_batch)
//!                      ├─ one transaction: bump counters, insert rows, commit
//!                      ├─ fanout.event(event) for each, in id order
//!                      └─ answer each send with its id
//! ```
//!
//! Concurrent senders share one commit (and one fsync under `power`
//! durability), which is what lifts durable throughput far above one commit
//! per event. Because one task commits and publishes, every subscriber
//! receives a channel's events in id order. A batch that fails is retried
//! event by event, so one bad event cannot fail its neighbours.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::config::Durability;
use crate::error::Error;
use crate::fanout::{Fanout, LiveEvent};
use crate::storage::{NewEvent, Storage, now_ms};

/// Requests waiting for the writer, at most. Senders wait for room beyond it.
const QUEUE_DEPTH: usize = 16 * 1024;

struct Append {
    event: NewEvent,
    body: Bytes,
    reply: oneshot::Sender<Result<u64, Error>>,
}

/// The sending side of the writer queue.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Append>,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("channel", &self.event.channel)
            .finish()
    }
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub(crate) fn spawn(
        storage: Storage,
        fanout: Arc<Fanout>,
        durability: Durability,
        commit_batch: usize,
    ) -> Writer {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(requests, storage, fanout, durability, commit_batch));
        Writer { queue }
    }

    /// Appends one event (whose `event:`/`data:` lines are already encoded
    /// in `body`) and waits until it is committed and published.
    pub(crate) async fn append(&self, event: NewEvent, body: Bytes) -> Result<u64, Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Append { event, body, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

async fn run(
    mut requests: mpsc::Receiver<Append>,
    storage: Storage,
    fanout: Arc<Fanout>,
    durability: Durability,
    commit_batch: usize,
) {
    let mut batch: Vec<Append> = Vec::with_capacity(commit_batch);
    while requests.recv_many(&mut batch, commit_batch).await > 0 {
        let events: Vec<&NewEvent> = batch.iter().map(|append| &append.event).collect();
        let stored = storage.append_batch(&events, durability, now_ms()).await;
        drop(events);
        match stored {
            Ok(ids) => {
                for (append, seq) in batch.drain(..).zip(ids) {
                    deliver(append, seq, &fanout);
                }
            }
            Err(batch_error) if batch.len() > 1 => {
                log::warn!(
                    "eventstream: batch of {} events failed ({batch_error}); retrying one by one",
                    batch.len()
                );
                for append in batch.drain(..) {
                    match storage
                        .append_batch(&[&append.event], durability, now_ms())
                        .await
                    {
                        Ok(ids) => deliver(append, ids[0], &fanout),
                        Err(error) => {
                            log::error!(
                                "eventstream: storing an event on {:?} failed: {error}",
                                append.event.channel
                            );
                            let _ = append.reply.send(Err(Error::Storage(error)));
                        }
                    }
                }
            }
            Err(error) => {
                // A batch of one: its only sender gets the error.
                if let Some(append) = batch.pop() {
                    log::error!(
                        "eventstream: storing an event on {:?} failed: {error}",
                        append.event.channel
                    );
                    let _ = append.reply.send(Err(Error::Storage(error)));
                }
            }
        }
    }
}

/// Fans a committed event out and answers its sender.
fn deliver(append: Append, seq: u64, fanout: &Fanout) {
    let Append { event, body, reply } = append;
    let live = Arc::new(LiveEvent::new(
        event.channel,
        Some(seq),
        body,
        event.skip_users,
    ));
    fanout.event(&live);
    // The sender may have gone away (its request was cancelled); the event
    // is committed and delivered regardless.
    let _ = reply.send(Ok(seq));
}
