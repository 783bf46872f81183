//! Fan-out: the one step every event takes on its way out, committed or
//! live-only, and every kick.
//!
//! ```text
//! writer (after commit, in id order) ─┐
//! Events::send_event (live-only) ─────┼─► Fanout ─► outlet: the hub (local streams)
//! Events::channel_permission_changed ─┘             outlet: the GRIP publisher (proxies)
//! ```
//!
//! Outlets are registered by the stage; the writer and the stream core know
//! only this trait, not what is behind it. An outlet must not block: it
//! queues (the hub's bounded inboxes, the publisher's ordered queue) and
//! returns.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::StreamError;
use crate::measure::metrics::Metrics;
use crate::measure::timing::Stamps;
use crate::storage::AppendToken;
use crate::wire::event_id::EventId;
use crate::wire::frame::Frame;

/// An event on its way to subscribers, encoded once.
#[derive(Debug)]
pub(crate) struct LiveEvent {
    pub(crate) channel: String,
    /// The stored sequence number; `None` on non-persistent channels.
    pub(crate) seq: Option<u64>,
    pub(crate) frame: Frame,
    /// Users this event is not delivered to.
    pub(crate) skip_users: Vec<String>,
    /// The append that stored it (persistent channels): tells a stream
    /// whether it already read this event from storage.
    pub(crate) token: Option<AppendToken>,
    /// With `delivery_timing`: when it was sent and reached each step.
    pub(crate) stamps: Option<Stamps>,
}

impl LiveEvent {
    /// An event whose `event:`/`data:` lines are `body`; `seq` is its id on
    /// a persistent channel.
    pub(crate) fn new(
        channel: String,
        seq: Option<u64>,
        body: Bytes,
        skip_users: Vec<String>,
    ) -> Self {
        let id = seq.map(|seq| EventId::new(channel.as_str(), seq));
        LiveEvent {
            frame: Frame::for_event(body, id.as_ref()),
            channel,
            seq,
            skip_users,
            token: None,
            stamps: None,
        }
    }
}

/// A revoked permission: end `user_id`'s streams on `channel` with `error`.
#[derive(Debug, Clone)]
pub(crate) struct Kick {
    pub(crate) user_id: Option<String>,
    pub(crate) channel: String,
    pub(crate) error: StreamError,
}

/// Somewhere events and kicks go.
pub(crate) trait Outlet: Send + Sync + 'static {
    /// Takes an event. Called in commit order: per channel, in id order.
    fn event(&self, event: &Arc<LiveEvent>);

    /// Ends the user's streams on the channel; returns how many streams of
    /// this process it ended (outlets that reach other processes return 0).
    fn kick(&self, kick: &Kick) -> usize;
}

/// The list of outlets, in the order they are given each event.
pub(crate) struct Fanout {
    outlets: Vec<Arc<dyn Outlet>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("outlets", &self.outlets.len())
            .finish()
    }
}

impl Fanout {
    pub(crate) fn new(outlets: Vec<Arc<dyn Outlet>>, metrics: Arc<Metrics>) -> Fanout {
        Fanout { outlets, metrics }
    }

    /// Gives `event` to every outlet and counts it as sent.
    pub(crate) fn event(&self, event: &Arc<LiveEvent>) {
        for outlet in &self.outlets {
            outlet.event(event);
        }
        self.metrics.event_sent();
    }

    /// Gives `kick` to every outlet; returns how many local streams ended.
    pub(crate) fn kick(&self, kick: &Kick) -> usize {
        self.outlets.iter().map(|outlet| outlet.kick(kick)).sum()
    }
}
