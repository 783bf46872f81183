//! Counters worth watching in production, read through
//! [`Events::metrics`](crate::Events::metrics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::measure::timing::StageSeconds;

/// Live counters, updated with relaxed atomics on the hot path, and the
/// distributions the Prometheus endpoint exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) commit_batches: CommitBatches,
    pub(crate) publish_seconds: PublishSeconds,
    /// Filled only with `delivery_timing` on (see `timing`).
    pub(crate) stage_seconds: StageSeconds,
    /// The last kicks, for the delivery trace.
    pub(crate) kick_log: super::kicks::KickLog,
    kicks: AtomicU64,
    bus_fills: AtomicU64,
    live_subscribers: AtomicU64,
    streams_opened: AtomicU64,
    streams_deferred: AtomicU64,
    largest_chunk_bytes: AtomicU64,
    events_sent: AtomicU64,
    replay_fallbacks: AtomicU64,
    resets: AtomicU64,
    grip_published: AtomicU64,
    grip_retries: AtomicU64,
    grip_failed: AtomicU64,
    grip_publish_requests: AtomicU64,
    grip_opened: AtomicU64,
    grip_next_links: AtomicU64,
    grip_catch_ups: AtomicU64,
    bus_received: AtomicU64,
    bus_delivered: AtomicU64,
    bus_recovered: AtomicU64,
    bus_reconnects: AtomicU64,
    bus_unrelayed: AtomicU64,
    bus_refused: AtomicU64,
    trimmed_events: AtomicU64,
    trim_failures: AtomicU64,
    sends_held_back: AtomicU64,
}

/// Events per committed batch (1 to `commit_batch`): buckets 1, 2, 4 …
/// 4096.
#[derive(Debug)]
pub(crate) struct CommitBatches(pub(crate) Histogram);

impl Default for CommitBatches {
    fn default() -> Self {
        CommitBatches(Histogram::new(exponential_buckets(1.0, 2.0, 13)))
    }
}

/// Seconds from `send_event` handing an event to the writer to its commit
/// being answered: buckets 0.25 ms … about 4 s.
#[derive(Debug)]
pub(crate) struct PublishSeconds(pub(crate) Histogram);

impl Default for PublishSeconds {
    fn default() -> Self {
        PublishSeconds(Histogram::new(exponential_buckets(0.000_25, 2.0, 15)))
    }
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Streams connected to this process right now.
    pub live_subscribers: u64,
    /// Streams opened since start.
    pub streams_opened: u64,
    /// Stream requests told to retry later: over `max_streams` or
    /// `max_streams_per_ip`, or while the event log was unreachable.
    pub streams_deferred: u64,
    /// Events sent through this process since start.
    pub events_sent: u64,
    /// Times a live stream fell behind (full inbox or a gap) and caught up
    /// from storage instead.
    pub replay_fallbacks: u64,
    /// Frame bytes queued in the inboxes of this process's streams now.
    pub queued_bytes: u64,
    /// Bytes of sends this instance's writer holds (queued, kept aside for
    /// a transaction, or being committed): at most 64 MiB, beyond which
    /// senders wait.
    pub queued_send_bytes: u64,
    /// The largest body chunk a stream has handed to Rocket since start.
    pub largest_chunk_bytes: u64,
    /// `stream-reset` frames sent: positions that could not be resumed.
    pub resets: u64,
    /// Items accepted by GRIP proxies.
    pub grip_published: u64,
    /// GRIP publish requests retried after a failure.
    pub grip_retries: u64,
    /// Items given up after all retries (their channels were hinted).
    pub grip_failed: u64,
    /// Publish requests GRIP proxies accepted (each carries a batch of
    /// items).
    pub grip_publish_requests: u64,
    /// Streams opened through a GRIP proxy (first requests answered with a
    /// hold).
    pub grip_opened: u64,
    /// Next links a GRIP proxy followed: backlog pages, recoveries after a
    /// gap and link timeouts.
    pub grip_next_links: u64,
    /// Next links that found stored events the proxied stream had not
    /// received (its recovery had work to do).
    pub grip_catch_ups: u64,
    /// `broadcast = "postgres"`: notifications received from other
    /// instances (commits, live-only events, kicks).
    pub bus_received: u64,
    /// Events other instances committed or sent that this instance handed
    /// to its streams.
    pub bus_delivered: u64,
    /// Of those, events read by the poll or the catch-up after a
    /// reconnect rather than announced by a notification: events whose
    /// notification was lost, and the newest event of a channel first
    /// polled (re-read so that its streams notice a gap).
    pub bus_recovered: u64,
    /// Times the listener connection was opened again after it was lost.
    pub bus_reconnects: u64,
    /// Live-only events too large for a notification: not relayed, and the
    /// other instances' streams of that channel got `stream-reset`.
    pub bus_unrelayed: u64,
    /// Messages heard on the bus channel that moved nothing: not sealed
    /// with this deployment's `bus_key` (a forgery, or a misconfigured
    /// instance), or a sealed live event, kick or `lost` notice heard
    /// before or sealed too far from this instance's clock (a replay).
    pub bus_refused: u64,
    /// Events retention removed from the event log since start.
    pub trimmed_events: u64,
    /// Retention passes that stopped on an error (the database away); each
    /// is tried again at the next `trim_interval_secs`, from where it was.
    pub trim_failures: u64,
    /// Streams of this process ended by `channel_permission_changed` (from
    /// this instance or, over the bus, another).
    pub kicks: u64,
    /// Reads of the event log the bus made to fill announced ranges and
    /// gaps (one per channel and notice, whatever the number of streams).
    pub bus_fills: u64,
    /// Sends waiting now because an open application transaction
    /// ([`EventTx`](crate::EventTx)) of this process holds their channel
    /// (PostgreSQL). Sends to other channels go on meanwhile.
    pub sends_held_back: u64,
}

impl Metrics {
    pub(crate) fn subscriber_opened(&self) {
        self.live_subscribers.fetch_add(1, Relaxed);
        self.streams_opened.fetch_add(1, Relaxed);
    }

    pub(crate) fn subscriber_closed(&self) {
        self.live_subscribers.fetch_sub(1, Relaxed);
    }

    pub(crate) fn event_sent(&self) {
        self.events_sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn replay_fallback(&self) {
        self.replay_fallbacks.fetch_add(1, Relaxed);
    }

    /// Records a body chunk's size. Reads before it writes, so streams
    /// under the maximum do not contend on the counter.
    pub(crate) fn chunk_written(&self, bytes: usize) {
        let bytes = bytes as u64;
        if bytes > self.largest_chunk_bytes.load(Relaxed) {
            self.largest_chunk_bytes.fetch_max(bytes, Relaxed);
        }
    }

    pub(crate) fn stream_deferred(&self) {
        self.streams_deferred.fetch_add(1, Relaxed);
    }

    pub(crate) fn reset(&self) {
        self.resets.fetch_add(1, Relaxed);
    }

    pub(crate) fn grip_published(&self, items: u64) {
        self.grip_published.fetch_add(items, Relaxed);
    }

    pub(crate) fn grip_retry(&self) {
        self.grip_retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn grip_failed(&self, items: u64) {
        self.grip_failed.fetch_add(items, Relaxed);
    }

    pub(crate) fn grip_publish_request(&self) {
        self.grip_publish_requests.fetch_add(1, Relaxed);
    }

    /// A proxied stream request answered: a first request, or a next link
    /// (`caught_up`: whether it found events the stream had missed).
    pub(crate) fn grip_answered(&self, next_link: bool, caught_up: bool) {
        if next_link {
            self.grip_next_links.fetch_add(1, Relaxed);
            if caught_up {
                self.grip_catch_ups.fetch_add(1, Relaxed);
            }
        } else {
            self.grip_opened.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn bus_received(&self) {
        self.bus_received.fetch_add(1, Relaxed);
    }

    /// `events` handed to this instance's streams; `recovered`: found
    /// without a notification.
    pub(crate) fn bus_delivered(&self, events: u64, recovered: bool) {
        self.bus_delivered.fetch_add(events, Relaxed);
        if recovered {
            self.bus_recovered.fetch_add(events, Relaxed);
        }
    }

    pub(crate) fn bus_reconnected(&self) {
        self.bus_reconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn bus_unrelayed(&self) {
        self.bus_unrelayed.fetch_add(1, Relaxed);
    }

    pub(crate) fn trimmed(&self, events: u64) {
        self.trimmed_events.fetch_add(events, Relaxed);
    }

    pub(crate) fn trim_failed(&self) {
        self.trim_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn bus_refused(&self) {
        self.bus_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn kicked(&self, streams: usize) {
        self.kicks.fetch_add(streams as u64, Relaxed);
    }

    pub(crate) fn bus_filled(&self) {
        self.bus_fills.fetch_add(1, Relaxed);
    }

    /// A committed batch of `events`.
    pub(crate) fn committed(&self, events: usize) {
        self.commit_batches.0.observe(events as f64);
    }

    /// How many sends the writer keeps aside for transactions now.
    pub(crate) fn set_sends_held_back(&self, count: usize) {
        self.sends_held_back.store(count as u64, Relaxed);
    }

    /// A send answered after `took`.
    pub(crate) fn published(&self, took: Duration) {
        self.publish_seconds.0.observe(took.as_secs_f64());
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            live_subscribers: self.live_subscribers.load(Relaxed),
            streams_opened: self.streams_opened.load(Relaxed),
            streams_deferred: self.streams_deferred.load(Relaxed),
            queued_bytes: 0,
            queued_send_bytes: 0,
            largest_chunk_bytes: self.largest_chunk_bytes.load(Relaxed),
            events_sent: self.events_sent.load(Relaxed),
            replay_fallbacks: self.replay_fallbacks.load(Relaxed),
            resets: self.resets.load(Relaxed),
            grip_published: self.grip_published.load(Relaxed),
            grip_retries: self.grip_retries.load(Relaxed),
            grip_failed: self.grip_failed.load(Relaxed),
            grip_publish_requests: self.grip_publish_requests.load(Relaxed),
            grip_opened: self.grip_opened.load(Relaxed),
            grip_next_links: self.grip_next_links.load(Relaxed),
            grip_catch_ups: self.grip_catch_ups.load(Relaxed),
            bus_received: self.bus_received.load(Relaxed),
            bus_delivered: self.bus_delivered.load(Relaxed),
            bus_recovered: self.bus_recovered.load(Relaxed),
            bus_reconnects: self.bus_reconnects.load(Relaxed),
            bus_unrelayed: self.bus_unrelayed.load(Relaxed),
            bus_refused: self.bus_refused.load(Relaxed),
            trimmed_events: self.trimmed_events.load(Relaxed),
            trim_failures: self.trim_failures.load(Relaxed),
            kicks: self.kicks.load(Relaxed),
            bus_fills: self.bus_fills.load(Relaxed),
            sends_held_back: self.sends_held_back.load(Relaxed),
        }
    }
}
