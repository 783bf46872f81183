//! The sending half of the bus: an outlet of the fan-out that tells the
//! other instances about live-only events and kicks, and, over Redis (which
//! cannot take part in the database's transaction), about commits too.
//! (Over PostgreSQL the writer announces commits inside their transaction.)
//!
//! The outlet must not block, so notices queue here and one task sends
//! them. The queue is bounded: a live-only event that finds it full, or
//! that is too large for a notice, is not relayed and the other instances
//! are told their streams of that channel missed one (`stream-reset`);
//! never a silent drop. Commit announcements that find it full are merged
//! or, past the bound, left to the other instances' poll. Kicks are always
//! queued.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::listener::Backoff;
use crate::fanout::{Kick, LiveEvent, Outlet};
use crate::metrics::Metrics;
use crate::notice::{Body, Notice, Range};

/// Live-only events queued for other instances, at most; commit ranges
/// waiting to be announced, at most.
const MAX_QUEUED: usize = 4096;

/// Where notices go.
pub(crate) enum Link {
    Postgres(rocket_db_pools::sqlx::PgPool),
    #[cfg(feature = "redis")]
    Redis(Box<super::redis::Publisher>),
}

impl Link {
    async fn send(&mut self, payload: &str) -> Result<(), String> {
        match self {
            Link::Postgres(pool) => super::postgres::send(pool, payload).await,
            #[cfg(feature = "redis")]
            Link::Redis(publisher) => publisher.send(payload).await,
        }
    }

    /// Whether sending can never succeed again (shutting down).
    fn closed(&self) -> bool {
        match self {
            Link::Postgres(pool) => pool.is_closed(),
            #[cfg(feature = "redis")]
            Link::Redis(_) => false,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Committed ranges to announce, merged per channel while they wait.
    committed: Vec<Range>,
    /// Encoded notices, in the order they were given.
    payloads: VecDeque<String>,
    /// Channels with a live-only event that could not be relayed, to be
    /// announced as missed.
    lost: BTreeSet<String>,
}

/// The outlet that notifies other instances.
#[derive(Debug)]
pub(crate) struct Sender {
    origin: u64,
    /// Commits are announced here (Redis), not by the writer.
    announces_commits: bool,
    queue: Mutex<Queue>,
    queued: Notify,
    metrics: Arc<Metrics>,
}

impl Sender {
    pub(crate) fn new(origin: u64, announces_commits: bool, metrics: Arc<Metrics>) -> Sender {
        Sender {
            origin,
            announces_commits,
            queue: Mutex::default(),
            queued: Notify::new(),
            metrics,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn encode(&self, body: Body) -> Option<String> {
        Notice {
            origin: self.origin,
            body,
        }
        .encode()
    }

    fn push(&self, payload: String) {
        self.queue().payloads.push_back(payload);
        self.queued.notify_one();
    }

    fn lost(&self, channel: &str) {
        self.metrics.bus_unrelayed();
        log::warn!(
            "eventstream: a live-only event on {channel:?} could not be relayed to the other instances; their streams of it get stream-reset"
        );
        self.queue().lost.insert(channel.to_owned());
        self.queued.notify_one();
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
    /// channels, then the rest.
    fn next(&self) -> Vec<String> {
        let mut queue = self.queue();
        if !queue.committed.is_empty() {
            let ranges = std::mem::take(&mut queue.committed);
            return Notice::committed(self.origin, ranges);
        }
        if let Some(channel) = queue.lost.pop_first() {
            return self.encode(Body::Lost(channel)).into_iter().collect();
        }
        queue.payloads.pop_front().into_iter().collect()
    }

    /// Sends queued notices until the task is aborted at shutdown. A notice
    /// that fails is sent again after a pause (the server restarting), in
    /// order.
    pub(crate) async fn run(self: Arc<Self>, mut link: Link) {
        loop {
            let payloads = self.next();
            if payloads.is_empty() {
                self.queued.notified().await;
                continue;
            }
            for payload in payloads {
                let mut backoff = Backoff::new();
                while let Err(error) = link.send(&payload).await {
                    if link.closed() {
                        return;
                    }
                    backoff
                        .wait("notifying the other instances failed", &error)
                        .await;
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
        match self.encode(body) {
            Some(payload) if self.queue().payloads.len() < MAX_QUEUED => self.push(payload),
            _ => self.lost(&event.channel),
        }
    }

    /// Other instances end their own streams; they are not counted here.
    fn kick(&self, kick: &Kick) -> usize {
        let body = Body::Kick {
            channel: kick.channel.clone(),
            user_id: kick.user_id.clone(),
            error: kick.error.clone(),
        };
        match self.encode(body) {
            Some(payload) => self.push(payload),
            // A channel name and a user id fit many times over.
            None => log::error!(
                "eventstream: the kick of {:?} on {:?} is too large to tell the other instances",
                kick.user_id,
                kick.channel
            ),
        }
        0
    }
}
