//! The sending half of the bus: an outlet of the fan-out that tells the
//! other instances about live-only events and kicks, and, over Redis (which
//! cannot take part in the database's transaction), about commits too.
//! (Over PostgreSQL the writer announces commits inside their transaction.)
//!
//! The outlet must not block, so notices queue here and one task seals and
//! sends them, in order (their numbers must grow as they leave, or the
//! receivers would take a late one for a replay). The queue is bounded in
//! notices and in bytes: a live-only event that finds it full, or that is
//! too large for a notice, is not relayed and the other instances are told
//! their streams of that channel missed one (`stream-reset`); never a
//! silent drop. Commit announcements that find it full are merged or, past
//! the bound, left to the other instances' poll. Kicks are always queued
//! (a few bytes each, and only an application decides to send one).
//!
//! A notice that cannot be sent (the bus is down) is tried again; one that
//! waited so long that receivers would refuse it as stale is sealed again,
//! a live-only event then as `lost`, since its moment has passed.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::error::BusError;
use super::listener::Backoff;
use crate::delivery::fanout::{Kick, LiveEvent, Outlet};
use crate::measure::metrics::Metrics;
use crate::storage::now_ms;
use crate::wire::notice::{Body, FRESHNESS_MS, Range, Seal};
use crate::wire::presence_report::PresenceReport;

/// Live-only events queued for other instances, at most; commit ranges
/// waiting to be announced, at most.
const MAX_QUEUED: usize = 4096;
/// Bytes of live-only events queued for other instances, at most.
pub(crate) const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Where notices go.
pub(crate) enum Link {
    /// The pool, and the deployment's channel.
    Postgres(rocket_db_pools::sqlx::PgPool, String),
    #[cfg(feature = "redis")]
    Redis(Box<super::redis::RedisSender>),
}

impl Link {
    /// Sends one payload; a server that does not answer within
    /// `SEND_TIMEOUT` counts as a failure (its connection is dropped).
    async fn send(&mut self, payload: &str) -> Result<(), BusError> {
        match self {
            Link::Postgres(pool, channel) => super::postgres::send(pool, channel, payload).await,
            #[cfg(feature = "redis")]
            Link::Redis(publisher) => publisher.send(payload).await,
        }
    }

    /// Whether sending can never succeed again (shutting down).
    fn closed(&self) -> bool {
        match self {
            Link::Postgres(pool, _) => pool.is_closed(),
            #[cfg(feature = "redis")]
            Link::Redis(_) => false,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Committed ranges to announce, merged per channel while they wait.
    committed: Vec<Range>,
    /// Live-only events and kicks, in the order they were given.
    bodies: VecDeque<Body>,
    /// What `bodies` weighs, roughly as sent.
    bytes: usize,
    /// Channels with a live-only event that could not be relayed, to be
    /// announced as missed.
    lost: BTreeSet<String>,
    /// A heartbeat is due.
    ping: bool,
}

/// What a body weighs in the queue and on the wire.
fn weight(body: &Body) -> usize {
    match body {
        Body::Live {
            channel,
            body,
            skip_users,
        } => {
            channel.len() + body.len() + skip_users.iter().map(|user| user.len() + 3).sum::<usize>()
        }
        Body::Kick {
            channel, user_id, ..
        } => channel.len() + user_id.as_ref().map_or(0, String::len) + 64,
        Body::Lost(channel) => channel.len(),
        Body::Presence(report) => 64 + report.channels.len() * 128,
        Body::PresenceAsk { .. } => 16,
        Body::Committed(ranges) => ranges.len() * 64,
        Body::Ping {} => 16,
    }
}

/// The outlet that notifies other instances.
#[derive(Debug)]
pub(crate) struct Sender {
    seal: Arc<Seal>,
    /// Commits are announced here (Redis), not by the writer.
    announces_commits: bool,
    queue: Mutex<Queue>,
    queued: Notify,
    metrics: Arc<Metrics>,
}

impl Sender {
    pub(crate) fn new(seal: Arc<Seal>, announces_commits: bool, metrics: Arc<Metrics>) -> Sender {
        Sender {
            seal,
            announces_commits,
            queue: Mutex::default(),
            queued: Notify::new(),
            metrics,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `body` if the queue has room for it (checked and taken
    /// under one lock), or whatever its size with `always`.
    fn push(&self, body: Body, always: bool) -> bool {
        let mut queue = self.queue();
        let weight = weight(&body);
        let room = queue.bodies.len() < MAX_QUEUED && queue.bytes + weight <= MAX_QUEUED_BYTES;
        if !room && !always {
            return false;
        }
        queue.bytes += weight;
        queue.bodies.push_back(body);
        drop(queue);
        self.queued.notify_one();
        true
    }

    fn lost(&self, channel: &str) {
        self.metrics.bus_unrelayed();
        log::warn!(
            "eventstream: a live-only event on {channel:?} could not be relayed to the other instances; their streams of it get stream-reset"
        );
        self.queue().lost.insert(channel.to_owned());
        self.queued.notify_one();
    }

    /// Queues a heartbeat (one at most: a heartbeat stuck behind others is
    /// as good as a second one).
    pub(crate) fn ping(&self) {
        self.queue().ping = true;
        self.queued.notify_one();
    }

    /// Queues a presence report part. One that finds the queue full is
    /// dropped: the receivers see it in the next digest and ask for a
    /// full report.
    pub(crate) fn presence(&self, report: PresenceReport) {
        let body = Body::Presence(report);
        if !(self.seal.fits(&body) && self.push(body, false)) {
            log::warn!(
                "eventstream: a presence report could not be queued for the other instances; they will ask for it again"
            );
        }
    }

    /// Asks instance `origin` for a full presence report.
    pub(crate) fn ask_presence(&self, origin: u64) {
        self.push(Body::PresenceAsk { origin }, false);
    }

    /// A committed event to announce: extends the waiting range of its
    /// channel when it follows it.
    fn committed(&self, channel: &str, seq: u64) {
        let mut queue = self.queue();
        if let Some(range) = queue
            .committed
            .iter_mut()
            .rev()
            .find(|range| range.channel == channel)
            && range.last + 1 == seq
        {
            range.last = seq;
            return;
        }
        if queue.committed.len() >= MAX_QUEUED {
            // The other instances' poll finds it (within
            // broadcast_poll_secs).
            return;
        }
        queue.committed.push(Range {
            channel: channel.to_owned(),
            first: seq,
            last: seq,
        });
        drop(queue);
        self.queued.notify_one();
    }

    /// What to send next, in order: commit announcements, missed
    /// channels, a heartbeat, then the rest.
    fn next(&self) -> Option<Body> {
        let mut queue = self.queue();
        if !queue.committed.is_empty() {
            return Some(Body::Committed(std::mem::take(&mut queue.committed)));
        }
        if let Some(channel) = queue.lost.pop_first() {
            return Some(Body::Lost(channel));
        }
        if std::mem::take(&mut queue.ping) {
            return Some(Body::Ping {});
        }
        let body = queue.bodies.pop_front()?;
        queue.bytes -= weight(&body);
        Some(body)
    }

    /// `body` sealed now: the payloads to send.
    fn seal(&self, body: Body) -> Vec<String> {
        let now = now_ms();
        match body {
            Body::Committed(ranges) => self.seal.committed(ranges, now),
            body => {
                let channel = match &body {
                    Body::Live { channel, .. } => Some(channel.clone()),
                    _ => None,
                };
                match (self.seal.seal(body, now), channel) {
                    (Some(payload), _) => vec![payload],
                    // Checked when queued; a live event cannot grow since.
                    (None, Some(channel)) => self
                        .seal
                        .seal(Body::Lost(channel), now)
                        .into_iter()
                        .collect(),
                    (None, None) => Vec::new(),
                }
            }
        }
    }

    /// Sends queued notices until the task is aborted at shutdown. A notice
    /// that fails is sent again after a pause (the server restarting), in
    /// order; one that waited past half the receivers' freshness window is
    /// sealed again (a live-only event as `lost`: its moment has passed).
    pub(crate) async fn run(self: Arc<Self>, mut link: Link) {
        loop {
            let Some(body) = self.next() else {
                self.queued.notified().await;
                continue;
            };
            let mut sealed_at = now_ms();
            let mut payloads = self.seal(body.clone());
            let mut backoff = Backoff::new();
            let mut sent = 0;
            while sent < payloads.len() {
                match link.send(&payloads[sent]).await {
                    Ok(()) => sent += 1,
                    Err(error) => {
                        if link.closed() {
                            return;
                        }
                        backoff
                            .wait("notifying the other instances failed", &error)
                            .await;
                        if now_ms() - sealed_at > FRESHNESS_MS / 2 {
                            let again = match &body {
                                Body::Live { channel, .. } => Body::Lost(channel.clone()),
                                other => other.clone(),
                            };
                            sealed_at = now_ms();
                            payloads = self.seal(again);
                            sent = 0;
                        }
                    }
                }
            }
        }
    }
}

impl Outlet for Sender {
    fn event(&self, event: &Arc<LiveEvent>) {
        if let Some(seq) = event.seq {
            if self.announces_commits {
                self.committed(&event.channel, seq);
            }
            return;
        }
        let body = Body::Live {
            channel: event.channel.clone(),
            body: String::from_utf8_lossy(&event.frame.body).into_owned(),
            skip_users: event.skip_users.clone(),
        };
        if !(self.seal.fits(&body) && self.push(body, false)) {
            self.lost(&event.channel);
        }
    }

    /// Other instances end their own streams; they are not counted here.
    fn kick(&self, kick: &Kick) -> usize {
        let body = Body::Kick {
            channel: kick.channel.clone(),
            user_id: kick.user_id.clone(),
            error: kick.error.clone(),
        };
        if self.seal.fits(&body) {
            self.push(body, true);
        } else {
            // A channel name and a user id fit many times over.
            log::error!(
                "eventstream: the kick of {:?} on {:?} is too large to tell the other instances",
                kick.user_id,
                kick.channel
            );
        }
        0
    }
}
