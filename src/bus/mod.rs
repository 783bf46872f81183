//! The cross-instance bus (`broadcast = "postgres"` or `"redis"`):
//! instances sharing one event log deliver each other's events live. It is
//! a layer on the data path, not a second one: an outlet of the fan-out,
//! and an inlet that feeds the local hub.
//!
//! ```text
//! writer ── PostgreSQL: one NOTIFY per committed batch, in its transaction ──┐
//! fan-out ─► sequencer ─► hub (this instance's streams)                      │
//!         └► sender: live-only events, kicks (Redis: commits too) ───────────┤
//!                                                                             ▼
//! other instance: listener ─► receiver ─ reads the ranges from storage ─► sequencer ─► hub
//! ```
//!
//! Two transports carry the notices: PostgreSQL (`postgres`, the default
//! choice when the event log is there) and Redis pub/sub (`redis`, cargo
//! feature `redis`). Only the listener and the sending link differ.
//!
//! Events that arrive over the bus go to the hub only, never to the GRIP
//! proxies: the instance that committed them published them there. An
//! instance recognises its own notices by their origin and ignores them.
//! Notifications are not reliable (a listener that was reconnecting misses
//! them), so storage stays the truth: every `broadcast_poll_secs` each
//! instance compares the channels its streams listen to with the log and
//! delivers what it missed.

mod error;
mod listener;
mod postgres;
mod receiver;
#[cfg(feature = "redis")]
mod redis;
mod replay_guard;
mod sender;
mod sequencer;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rocket_db_pools::sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub(crate) use error::BusError;

use crate::delivery::fanout::Outlet;
use crate::delivery::hub::Hub;
use crate::measure::metrics::Metrics;
use crate::measure::throttle::Throttle;
use crate::presence::Presence;
use crate::storage::Storage;
use crate::wire::notice::Seal;

use listener::HAND_OFF_DEPTH;
pub(crate) use listener::{BusState, HEARTBEAT_LATE, SILENCE};

/// How notices travel between instances.
pub(crate) enum Transport {
    /// `LISTEN`/`NOTIFY` on the event log's database (its pool).
    Postgres(PgPool),
    /// Redis pub/sub at this URL.
    #[cfg(feature = "redis")]
    Redis(String),
}

/// A running bus.
pub(crate) struct Bus {
    /// This instance's seal: its id in notices (random per process), the
    /// deployment's channel and key.
    pub(crate) seal: Arc<Seal>,
    /// Whether the writer announces commits inside their transaction
    /// (PostgreSQL); otherwise the sender announces them after commit.
    pub(crate) writer_announces: bool,
    /// Stands in for the hub in the fan-out.
    pub(crate) sequencer: Arc<dyn Outlet>,
    /// Tells the other instances about live-only events and kicks.
    pub(crate) sender: Arc<dyn Outlet>,
    /// Connection state, for the health check.
    pub(crate) state: Arc<BusState>,
    /// The listener, receiver and sender tasks, aborted at shutdown.
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl Bus {
    /// Starts the bus on `transport`, reading events from `storage` and
    /// feeding `hub`, sealing and opening notices with `key` (`bus_key`) on
    /// the channel of this event log. Over PostgreSQL it returns once the instance listens,
    /// so that an instance that serves misses nothing another one sends;
    /// over Redis it starts even while Redis is down (the health check
    /// says so) and catches up once connected.
    pub(crate) async fn start(
        transport: Transport,
        storage: Storage,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        poll: Duration,
        key: &[u8],
        presence: Arc<Presence>,
    ) -> Result<Bus, BusError> {
        let log_id = storage.log_id().await.map_err(BusError::LogId)?;
        // Never 0, so it cannot match a notice that lacks one.
        let origin = RandomState::new().hash_one(std::process::id()) | 1;
        let seal = Arc::new(Seal::new(origin, &log_id, key));
        presence.set_origin(origin);
        let sequencer = Arc::new(sequencer::Sequencer::new(Arc::clone(&hub)));
        let (heard, hand_off) = mpsc::channel(HAND_OFF_DEPTH);
        let missed = Arc::new(AtomicBool::new(false));
        let kind = match transport {
            Transport::Postgres(_) => "postgres",
            #[cfg(feature = "redis")]
            Transport::Redis(_) => "redis",
        };
        let state = Arc::new(BusState::new(kind, seal.channel(), heard.clone()));
        let link = listener::HandOff {
            seal: Arc::clone(&seal),
            guard: Default::default(),
            refusals_logged: Throttle::every_ms(60_000),
            heard,
            missed: Arc::clone(&missed),
            metrics: Arc::clone(&metrics),
            state: Arc::clone(&state),
        };
        let (listening, sending, writer_announces) = match transport {
            Transport::Postgres(pool) => {
                let listener = postgres::connect(&pool, seal.channel())
                    .await
                    .map_err(BusError::Listen)?;
                let listening = tokio::spawn(postgres::listen(listener, pool.clone(), link));
                (
                    listening,
                    sender::Link::Postgres(pool, seal.channel().to_owned()),
                    true,
                )
            }
            #[cfg(feature = "redis")]
            Transport::Redis(url) => {
                let server = redis::Server::new(&url, seal.channel())?;
                // Subscribed before launch when Redis answers; otherwise
                // the instance starts degraded and catches up later.
                let subscribed = match server.subscribe().await {
                    Ok(messages) => Some(messages),
                    Err(error) => {
                        log::warn!(
                            "eventstream: the Redis bus is unreachable at launch ({error}); events of other instances arrive once it connects"
                        );
                        None
                    }
                };
                let listening = tokio::spawn(redis::listen(server.clone(), subscribed, link));
                (
                    listening,
                    sender::Link::Redis(Box::new(redis::RedisSender::new(server))),
                    false,
                )
            }
        };
        let sender = Arc::new(sender::Sender::new(
            Arc::clone(&seal),
            !writer_announces,
            Arc::clone(&metrics),
        ));
        let receiver = receiver::Receiver {
            storage,
            hub,
            sequencer: Arc::clone(&sequencer),
            metrics: Arc::clone(&metrics),
            poll,
            missed,
            state: Arc::clone(&state),
            presence: Arc::clone(&presence),
            sender: Arc::clone(&sender),
            origin: seal.origin(),
        };

        let heartbeat = {
            let sender = Arc::clone(&sender);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(listener::HEARTBEAT);
                loop {
                    every.tick().await;
                    sender.ping();
                }
            })
        };
        let reporting = tokio::spawn(report_presence(presence, Arc::clone(&sender)));
        let tasks = vec![
            listening,
            tokio::spawn(receiver.run(hand_off)),
            tokio::spawn(Arc::clone(&sender).run(sending)),
            heartbeat,
            reporting,
        ];
        Ok(Bus {
            seal,
            writer_announces,
            sequencer,
            sender,
            state,
            tasks,
        })
    }
}

/// Tells the other instances, once per `presence_interval_ms`, what
/// changed in this instance's share of presence (nothing when nothing
/// changed), and renews its lease with a heartbeat every third of it.
async fn report_presence(presence: Arc<Presence>, sender: Arc<sender::Sender>) {
    let settings = presence.settings();
    let mut every = tokio::time::interval(settings.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let renew = settings.lease / 3;
    let mut renewed = tokio::time::Instant::now();
    // The others may know nothing of this instance (it just started, or
    // restarted with a new id): the first report is a full one.
    presence.full_report_due();
    loop {
        every.tick().await;
        let parts = presence.report_changes();
        if !parts.is_empty() {
            renewed = tokio::time::Instant::now();
        }
        for part in parts {
            sender.presence(part);
        }
        if renewed.elapsed() >= renew
            && let Some(heartbeat) = presence.heartbeat()
        {
            renewed = tokio::time::Instant::now();
            sender.presence(heartbeat);
        }
    }
}
