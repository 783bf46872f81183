//! The sending half of the bus: an outlet of the fan-out that tells the
//! other instances about live-only events and kicks. (Committed events
//! need nothing here: the writer announced them inside their transaction.)
//!
//! The outlet must not block, so notices queue here and one task sends
//! them with `pg_notify`. The queue is bounded: a live-only event that
//! finds it full, or that is too large for a notification, is not relayed
//! and the other instances are told their streams of that channel missed
//! one (`stream-reset`); never a silent drop. Kicks are always queued.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rocket_db_pools::sqlx::{self, PgPool};
use tokio::sync::Notify;

use crate::fanout::{Kick, LiveEvent, Outlet};
use crate::metrics::Metrics;
use crate::notice::{Body, NOTIFY_CHANNEL, Notice};

/// Live-only events queued for other instances, at most.
const MAX_QUEUED: usize = 4096;

#[derive(Debug, Default)]
struct Queue {
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
    queue: Mutex<Queue>,
    queued: Notify,
    metrics: Arc<Metrics>,
}

impl Sender {
    pub(crate) fn new(origin: u64, metrics: Arc<Metrics>) -> Sender {
        Sender {
            origin,
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

    /// Sends queued notices until the task is aborted at shutdown. A notice
    /// that fails is sent again after a pause (the database restarting),
    /// in order.
    pub(crate) async fn run(self: Arc<Self>, pool: PgPool) {
        let mut pause = Duration::from_millis(100);
        loop {
            let next = {
                let mut queue = self.queue();
                match queue.lost.pop_first() {
                    Some(channel) => self.encode(Body::Lost(channel)),
                    None => queue.payloads.pop_front(),
                }
            };
            let Some(payload) = next else {
                self.queued.notified().await;
                continue;
            };
            loop {
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(&payload)
                    .execute(&pool)
                    .await;
                match sent {
                    Ok(_) => {
                        pause = Duration::from_millis(100);
                        break;
                    }
                    Err(error) if pool.is_closed() => {
                        log::debug!("eventstream: bus sender stops: {error}");
                        return;
                    }
                    Err(error) => {
                        log::warn!(
                            "eventstream: notifying the other instances failed ({error}); retrying in {pause:?}"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }
}

impl Outlet for Sender {
    fn event(&self, event: &Arc<LiveEvent>) {
        // Committed events were announced by their transaction.
        if event.seq.is_some() {
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
