//! The Prometheus endpoint (`metrics_path`): the counters of
//! [`Events::metrics`](crate::Events::metrics) and its histograms in the
//! OpenMetrics text format, encoded by `prometheus-client`.
//!
//! Every series is per instance; none has a channel label (channels are
//! unbounded, and so would the scrape be).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::measure::metrics::{Metrics, MetricsSnapshot};

/// The `Content-Type` of a scrape.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter: Counter = Counter::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let gauge: Gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, gauge);
}

/// The scrape: `snapshot` (with `queued_bytes` filled in) and the
/// histograms of `metrics`.
pub(crate) fn render(snapshot: &MetricsSnapshot, metrics: &Metrics) -> String {
    let mut registry = Registry::with_prefix("eventstream");
    let s = snapshot;
    gauge(
        &mut registry,
        "subscribers",
        "Streams connected to this instance",
        s.live_subscribers,
    );
    gauge(
        &mut registry,
        "queued_bytes",
        "Frame bytes queued in this instance's stream inboxes",
        s.queued_bytes,
    );
    gauge(
        &mut registry,
        "queued_send_bytes",
        "Bytes of sends waiting for this instance's writer",
        s.queued_send_bytes,
    );
    gauge(
        &mut registry,
        "sends_held_back",
        "Sends waiting for an open application transaction that holds their channel",
        s.sends_held_back,
    );
    counter(
        &mut registry,
        "streams_opened",
        "Streams opened",
        s.streams_opened,
    );
    counter(
        &mut registry,
        "streams_deferred",
        "Stream requests told to retry later (limits, storage down)",
        s.streams_deferred,
    );
    counter(
        &mut registry,
        "events_sent",
        "Events sent through this instance",
        s.events_sent,
    );
    counter(
        &mut registry,
        "replay_fallbacks",
        "Times a live stream caught up from storage instead",
        s.replay_fallbacks,
    );
    counter(
        &mut registry,
        "resets",
        "stream-reset frames sent",
        s.resets,
    );
    counter(
        &mut registry,
        "kicks",
        "Streams ended by a revoked permission",
        s.kicks,
    );
    counter(
        &mut registry,
        "bus_received",
        "Notices received from other instances",
        s.bus_received,
    );
    counter(
        &mut registry,
        "bus_events",
        "Events of other instances handed to this instance's streams",
        s.bus_delivered,
    );
    counter(
        &mut registry,
        "bus_recovered",
        "Of those, events found by the poll or a catch-up",
        s.bus_recovered,
    );
    counter(
        &mut registry,
        "bus_gap_fills",
        "Reads of the event log by the bus (ranges and gaps)",
        s.bus_fills,
    );
    counter(
        &mut registry,
        "bus_reconnects",
        "Times the bus listener connected again",
        s.bus_reconnects,
    );
    counter(
        &mut registry,
        "bus_unrelayed",
        "Live-only events too large or too many to relay",
        s.bus_unrelayed,
    );
    counter(
        &mut registry,
        "trimmed_events",
        "Events retention removed from the event log",
        s.trimmed_events,
    );
    counter(
        &mut registry,
        "trim_failures",
        "Retention passes that stopped on an error (tried again at the next interval)",
        s.trim_failures,
    );
    counter(
        &mut registry,
        "bus_refused",
        "Messages on the bus channel refused: unsealed, forged or replayed",
        s.bus_refused,
    );
    counter(
        &mut registry,
        "grip_published",
        "Items accepted by GRIP proxies",
        s.grip_published,
    );
    counter(
        &mut registry,
        "grip_retries",
        "GRIP publish requests retried",
        s.grip_retries,
    );
    counter(
        &mut registry,
        "grip_failed",
        "GRIP items given up after all retries",
        s.grip_failed,
    );
    counter(
        &mut registry,
        "grip_next_links",
        "Next links GRIP proxies followed",
        s.grip_next_links,
    );
    registry.register(
        "commit_batch_events",
        "Events per committed batch",
        metrics.commit_batches.0.clone(),
    );
    registry.register(
        "publish_seconds",
        "Time from send_event to its commit being answered",
        metrics.publish_seconds.0.clone(),
    );
    registry.register(
        "delivery_stage_seconds",
        "With delivery_timing on: time per step from send_event to the stream's body",
        metrics.stage_seconds.0.clone(),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}
