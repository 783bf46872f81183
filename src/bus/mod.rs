//! The cross-instance bus (`broadcast = "postgres"`): instances sharing one
//! PostgreSQL event log deliver each other's events live, over
//! `LISTEN`/`NOTIFY`. It is a layer on the data path, not a second one: an
//! outlet of the fan-out, and an inlet that feeds the local hub.
//!
//! ```text
//! writer ── one NOTIFY per committed batch, in its transaction ──┐
//! fan-out ─► sequencer ─► hub (this instance's streams)         │
//!         └► sender: live-only events, kicks ─► NOTIFY ──────────┤
//!                                                                ▼
//! other instance: listener ─► receiver ─ reads the ranges from storage ─► sequencer ─► hub
//! ```
//!
//! Events that arrive over the bus go to the hub only, never to the GRIP
//! proxies: the instance that committed them published them there. An
//! instance recognises its own notices by their origin and ignores them.
//! Notifications are not reliable (a listener that was reconnecting misses
//! them), so storage stays the truth: every `broadcast_poll_secs` each
//! instance compares the channels its streams listen to with the log and
//! delivers what it missed.

mod listener;
mod receiver;
mod sender;
mod sequencer;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rocket_db_pools::sqlx::{self, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fanout::Outlet;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// Notices waiting for the receiver, at most; past it the listener asks
/// for a catch-up from storage instead.
const HAND_OFF_DEPTH: usize = 8192;

/// A running bus.
pub(crate) struct Bus {
    /// This instance's id in notices (random per process).
    pub(crate) origin: u64,
    /// Stands in for the hub in the fan-out.
    pub(crate) sequencer: Arc<dyn Outlet>,
    /// Tells the other instances about live-only events and kicks.
    pub(crate) sender: Arc<dyn Outlet>,
    /// The listener, receiver and sender tasks, aborted at shutdown.
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl Bus {
    /// Starts listening on `pool` (which also holds the event log) and
    /// feeding `hub`. Returns once the instance listens, so that an
    /// instance that serves misses nothing another one sends.
    pub(crate) async fn start(
        pool: PgPool,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        poll: Duration,
    ) -> Result<Bus, sqlx::Error> {
        let listening = listener::connect(&pool).await?;
        // Never 0, so it cannot match a notice that lacks one.
        let origin = RandomState::new().hash_one(std::process::id()) | 1;
        let sequencer = Arc::new(sequencer::Sequencer::new(Arc::clone(&hub)));
        let sender = Arc::new(sender::Sender::new(origin, Arc::clone(&metrics)));
        let (heard, hand_off) = mpsc::channel(HAND_OFF_DEPTH);
        let missed = Arc::new(AtomicBool::new(false));
        let receiver = receiver::Receiver {
            storage: Storage::Postgres(pool.clone()),
            hub,
            sequencer: Arc::clone(&sequencer),
            metrics: Arc::clone(&metrics),
            poll,
            missed: Arc::clone(&missed),
        };
        let tasks = vec![
            tokio::spawn(listener::run(
                listening,
                pool.clone(),
                origin,
                heard,
                missed,
                metrics,
            )),
            tokio::spawn(receiver.run(hand_off)),
            tokio::spawn(Arc::clone(&sender).run(pool)),
        ];
        Ok(Bus {
            origin,
            sequencer,
            sender,
            tasks,
        })
    }
}
