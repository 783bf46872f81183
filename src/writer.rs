//! The single writer: appends events to storage with group commit, then
//! hands them to the hub in id order.
//!
//! ```text
//! send ──► queue ──► writer task: take everything queued (≤ commit_batch)
//!                      ├─ one transaction: bump counters, insert rows, commit
//!                      ├─ hub.publish(event) for each, in id order
//!                      └─ answer each send with its id
//! ```
//!
//! Concurrent senders share one commit (and one fsync under `power`
//! durability), which is what lifts durable throughput far above one commit
//! per event. Because one task commits and publishes, every subscriber
//! receives a channel's events in id order. A batch that fails is retried
//! event by event, so one bad event cannot fail its neighbours.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::channel;
use crate::config::Durability;
use crate::error::Error;
use crate::frame::Frame;
use crate::grip::publisher::Publisher;
use crate::hub::{Hub, LiveEvent};
use crate::metrics::Metrics;
use crate::storage::{NewEvent, Storage};

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
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        durability: Durability,
        commit_batch: usize,
        publisher: Option<Publisher>,
    ) -> Writer {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let outlets = Outlets {
            hub,
            metrics,
            publisher,
        };
        tokio::spawn(run(requests, storage, outlets, durability, commit_batch));
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Where committed events go, in commit order.
struct Outlets {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    publisher: Option<Publisher>,
}

async fn run(
    mut requests: mpsc::Receiver<Append>,
    storage: Storage,
    outlets: Outlets,
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
                    deliver(append, seq, &outlets);
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
                        Ok(ids) => deliver(append, ids[0], &outlets),
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

/// Publishes a committed event and answers its sender.
fn deliver(append: Append, seq: u64, outlets: &Outlets) {
    let Append { event, body, reply } = append;
    let id = format!("{}:{seq}", channel::quote(&event.channel));
    let live = Arc::new(LiveEvent {
        frame: Frame::with_body(body, Some(&id)),
        channel: event.channel,
        seq: Some(seq),
        skip_users: event.skip_users,
    });
    outlets.hub.publish(&live);
    if let Some(publisher) = &outlets.publisher {
        publisher.event(&live.channel, Some(seq), &live.frame.body, &live.skip_users);
    }
    outlets.metrics.event_sent();
    // The sender may have gone away (its request was cancelled); the event
    // is committed and delivered regardless.
    let _ = reply.send(Ok(seq));
}
