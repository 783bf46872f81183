//! Where delivery time goes, when `delivery_timing` is on: an event sent
//! to a persistent channel through `send_event` or the publish API collects
//! timestamps on its way out, and the time between two of them goes to one stage of the
//! `eventstream_delivery_stage_seconds` histogram in the Prometheus scrape.
//!
//! ```text
//! send_event / publish request parsed
//!   │ queue    the writer's queue, until the writer task takes the event
//!   │ commit   the storage transaction of its batch
//!   │ hub      commit answered → its fan-out starts (earlier events of the batch go first)
//!   │ fanout   every outlet has it: each inbox holds it, each stream is woken
//!   │ answer   fan-out done → the sender resumes with the id (the publish answer)
//!   └► per stream:
//!       wake   fan-out started → the stream's task ran and took it from its inbox
//!       write  taken → the chunk holding it handed to Rocket's body
//! ```
//!
//! After `write`, Rocket copies the chunk into its body buffer and hands it
//! to hyper's connection task, which writes the socket: that last hop is
//! measured from the client (`eventstream-bench latency --split 1`).
//!
//! Off by default: it reads the clock a few times per event and updates a
//! histogram per stream and event, which a fan-out to thousands of streams
//! would feel. Live-only events, events sent inside an
//! [`EventTx`](crate::EventTx), events relayed by the cross-instance bus
//! and events settled after a failed commit carry no stamps.

use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// One step of an event's way out; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as the scrape shows them
pub(crate) enum Stage {
    queue,
    commit,
    hub,
    fanout,
    answer,
    wake,
    write,
}

/// The label set of the stage histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct StageLabel {
    stage: Stage,
}

/// Seconds per stage: buckets from 5 µs to about 1.3 s, each 1.5 times
/// the last, fine enough to tell stages of tens of microseconds apart.
#[derive(Debug, Clone)]
pub(crate) struct StageSeconds(pub(crate) Family<StageLabel, Histogram, fn() -> Histogram>);

impl Default for StageSeconds {
    fn default() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.000_005, 1.5, 32))
        }
        StageSeconds(Family::new_with_constructor(histogram))
    }
}

impl StageSeconds {
    fn observe(&self, stage: Stage, took: Duration) {
        self.0
            .get_or_create(&StageLabel { stage })
            .observe(took.as_secs_f64());
    }
}

/// When an event was sent and reached each step up to its fan-out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamps {
    sent: Instant,
    taken: Instant,
    committed: Instant,
    fanout: Instant,
}

impl Stamps {
    /// The stamps of an event sent at `sent`, taken by the writer at
    /// `taken` and committed at `committed`, whose fan-out starts now.
    pub(crate) fn fanning_out(sent: Instant, taken: Instant, committed: Instant) -> Stamps {
        Stamps {
            sent,
            taken,
            committed,
            fanout: Instant::now(),
        }
    }

    /// Records the stages up to the end of the fan-out (now) and returns
    /// when it ended, for the `answer` stage.
    pub(crate) fn fanned_out(&self, stages: &StageSeconds) -> Instant {
        let now = Instant::now();
        stages.observe(Stage::queue, self.taken - self.sent);
        stages.observe(Stage::commit, self.committed - self.taken);
        stages.observe(Stage::hub, self.fanout - self.committed);
        stages.observe(Stage::fanout, now - self.fanout);
        now
    }

    /// Records `wake` for a stream that took the event from its inbox at
    /// `taken`.
    pub(crate) fn taken_by_stream(&self, taken: Instant, stages: &StageSeconds) {
        stages.observe(Stage::wake, taken.saturating_duration_since(self.fanout));
    }
}

/// Records `answer`: the sender resumed now, after the fan-out ended at
/// `fanned_out`.
pub(crate) fn answered(fanned_out: Instant, stages: &StageSeconds) {
    stages.observe(Stage::answer, fanned_out.elapsed());
}

/// Records `write`: a chunk whose events a stream took from its inbox at
/// `taken` is handed to Rocket now.
pub(crate) fn handed_over(taken: Instant, stages: &StageSeconds) {
    stages.observe(Stage::write, taken.elapsed());
}
