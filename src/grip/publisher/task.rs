//! The task of one proxy: takes items off its queue in batches, posts
//! them in order with retries, hints what could not be delivered and the
//! channels a burst has just ended on, and asks the proxy to recover after
//! a start or an outage.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use super::item::{BATCH_ITEMS, bodies, hint};
use super::proxy::{Target, backoff};
use crate::grip::pending::Pending;
use crate::grip::tail::TailWatch;
use crate::measure::metrics::Metrics;

/// Attempts per batch before it is given up (and hinted).
/// An item, the channel it goes to (for hints) and the event's id on its
/// eventstream channel (to settle it in [`Pending`]).
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) channel: String,
    pub(super) event: Option<(String, u64)>,
    pub(super) item: Value,
    /// What it counts against [`super::QUEUE_BYTES`].
    pub(super) weight: usize,
}

const ATTEMPTS: u32 = 6;
/// Attempts at the start-up `/recover` (about a minute of backoff).
const STARTUP_RECOVER_ATTEMPTS: u32 = 16;

/// What one proxy's task shares with the sending side.
pub(super) struct Shared {
    /// Channels whose items could not be queued: hinted next.
    pub(super) overflowed: Arc<Mutex<BTreeSet<String>>>,
    pub(super) pending: Arc<Pending>,
    pub(super) last_error: Arc<Mutex<Option<String>>>,
    /// When a publish last succeeded (ms since the epoch; 0: never), and
    /// the items given up so far.
    pub(super) record: Arc<PublishRecord>,
    /// What the queue and the batch weigh; a batch gives its share back
    /// once it is published or given up.
    pub(super) bytes: Arc<AtomicUsize>,
    pub(super) metrics: Arc<Metrics>,
}

/// The last success and the items given up, for the delivery trace.
#[derive(Debug, Default)]
pub(crate) struct PublishRecord {
    pub(crate) last_success_ms: std::sync::atomic::AtomicI64,
    pub(crate) given_up: std::sync::atomic::AtomicU64,
}

/// Publishes what `items` brings to `target`, until the queue closes.
pub(super) async fn run(target: Target, mut items: mpsc::Receiver<Queued>, shared: Shared) {
    let target = Arc::new(target);
    recover_at_start(Arc::clone(&target));
    let mut task = Task {
        target,
        shared,
        hints: BTreeSet::new(),
        recover_pending: false,
        tail: TailWatch::default(),
    };
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH_ITEMS);
    loop {
        tokio::select! {
            received = items.recv_many(&mut batch, BATCH_ITEMS) => if received == 0 {
                return;
            },
            () = until(task.tail.next_due()) => {}
        }
        task.send(&batch).await;
        let weight: usize = batch.iter().map(|queued| queued.weight).sum();
        task.shared.bytes.fetch_sub(weight, Ordering::AcqRel);
        batch.clear();
    }
}

/// Clients may have missed events committed before a crash (or while the
/// proxy was unreachable): make every one of them ask the app. Pushpin has
/// `/recover`; proxies without it answer 404, which is fine. Retried in
/// the background, without holding items back.
fn recover_at_start(target: Arc<Target>) {
    tokio::spawn(async move {
        for attempt in 0..STARTUP_RECOVER_ATTEMPTS {
            match target.recover().await {
                Ok(()) => return,
                Err(why) => {
                    log::warn!(
                        "eventstream: asking {} to recover failed ({why}); retrying",
                        target.label
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    });
}

/// One proxy's task between batches.
struct Task {
    target: Arc<Target>,
    shared: Shared,
    /// Channels to hint with the next batch: what could not be queued or
    /// was given up, and bursts that just ended.
    hints: BTreeSet<String>,
    /// A batch was given up: ask the proxy to recover before the next one.
    recover_pending: bool,
    tail: TailWatch,
}

impl Task {
    /// Publishes `batch` (possibly empty) with the hints that are due.
    async fn send(&mut self, batch: &[Queued]) {
        self.hints.extend(self.tail.take_due(Instant::now()));
        if self.recover_pending {
            match self.target.recover().await {
                Ok(()) => self.recover_pending = false,
                Err(why) => log::warn!(
                    "eventstream: asking {} to recover failed ({why}); will retry",
                    self.target.label
                ),
            }
        }
        self.hints.extend(std::mem::take(
            &mut *self
                .shared
                .overflowed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ));
        let mut channels: Vec<&str> = Vec::new();
        let mut events: Vec<Option<&(String, u64)>> = Vec::new();
        let mut payload: Vec<Value> = Vec::new();
        for channel in &self.hints {
            channels.push(channel);
            events.push(None);
            payload.push(hint(channel));
        }
        for queued in batch {
            channels.push(&queued.channel);
            events.push(queued.event.as_ref());
            payload.push(queued.item.clone());
        }
        let mut given_up: BTreeSet<String> = BTreeSet::new();
        for (body, indexes) in bodies(&payload) {
            let delivered = self.post(body, indexes.len()).await;
            // Accepted or given up (and hinted), these events are settled.
            for (name, seq) in indexes.iter().filter_map(|index| events[*index]) {
                self.shared.pending.settled(name, *seq);
            }
            if !delivered {
                given_up.extend(indexes.iter().map(|index| channels[*index].to_owned()));
                // Whatever else it missed, the proxy recovers once back.
                self.recover_pending = true;
            }
        }
        // Hints that went out are done; anything given up is hinted next time.
        self.hints = given_up;
        let now = Instant::now();
        for queued in batch.iter().filter(|queued| queued.event.is_some()) {
            self.tail.published(&queued.channel, 1, now);
        }
    }

    /// Posts one request body of `items` items, retrying with backoff;
    /// `false` when it was given up.
    async fn post(&self, body: String, items: usize) -> bool {
        let Shared {
            metrics,
            last_error,
            record,
            ..
        } = &self.shared;
        // What the health check shows: the last failure, cleared by a success.
        let record_outcome = |why: Option<String>| {
            *last_error.lock().unwrap_or_else(PoisonError::into_inner) = why;
        };
        let target = &self.target;
        for attempt in 0..ATTEMPTS {
            match target.post(&target.publish_url, body.clone()).await {
                Ok(()) => {
                    metrics.grip_publish_request();
                    metrics.grip_published(items as u64);
                    record_outcome(None);
                    record
                        .last_success_ms
                        .store(crate::storage::now_ms(), Ordering::Relaxed);
                    return true;
                }
                Err(why) if attempt + 1 < ATTEMPTS => {
                    record_outcome(Some(why.summary()));
                    metrics.grip_retry();
                    log::warn!(
                        "eventstream: publish to {} failed ({why}); retrying",
                        target.label
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(why) => {
                    record_outcome(Some(why.summary()));
                    metrics.grip_failed(items as u64);
                    record.given_up.fetch_add(items as u64, Ordering::Relaxed);
                    log::error!(
                        "eventstream: giving up on {items} items for {} ({why}); their channels will be hinted",
                        target.label
                    );
                }
            }
        }
        false
    }
}

/// Waits until `due`, or forever if nothing is.
async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}
