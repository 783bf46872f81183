//! What the stage opens at ignition: the event log, from the pool the
//! application gave or named, or from `databases.<name>` as
//! `rocket_db_pools` would; and the cross-instance bus, when `broadcast`
//! asks for one.

use std::sync::Arc;

use rocket::figment::providers::Serialized;
use rocket::{Build, Rocket};
use rocket_db_pools::sqlx::{PgPool, SqlitePool};

use super::error::IgniteError;
use crate::bus::{Bus, Transport};
#[cfg(feature = "redis")]
use crate::config::Secret;
use crate::config::{Broadcast, Config, ConfigError, redact_url};
use crate::delivery::hub::Hub;
use crate::measure::metrics::Metrics;
use crate::presence::Presence;
use crate::storage::Storage;

/// The Redis server used by `broadcast = "redis"` when `redis_url` is not
/// configured.
#[cfg(feature = "redis")]
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The database used when `databases.<name>.url` is not configured: a
/// SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://eventstream.db";

/// A connection pool the event log can live in: convert a `SqlitePool` or
/// a `PgPool` with `.into()`.
#[derive(Debug, Clone)]
pub struct EventLog(Storage);

impl From<SqlitePool> for EventLog {
    fn from(pool: SqlitePool) -> Self {
        EventLog(Storage::Sqlite(pool))
    }
}

impl From<PgPool> for EventLog {
    fn from(pool: PgPool) -> Self {
        EventLog(Storage::Postgres(pool))
    }
}

pub(super) type FetchPool = Box<dyn Fn(&Rocket<Build>) -> Option<EventLog> + Send + Sync>;

pub(super) enum PoolSource {
    /// Open `databases.<eventstream.database>` (the default).
    Configured,
    Given(EventLog),
    Fetch(&'static str, FetchPool),
}

/// The event log, and whether the stage opened it (and so closes it).
pub(super) async fn open_storage(
    source: PoolSource,
    rocket: &Rocket<Build>,
    config: &Config,
) -> Result<(Storage, bool), IgniteError> {
    {
        match source {
            PoolSource::Given(EventLog(storage)) => Ok((storage, false)),
            PoolSource::Fetch(name, fetch) => match fetch(rocket) {
                Some(EventLog(storage)) => Ok((storage, false)),
                None => Err(IgniteError::Storage(format!(
                    "database {name} is not initialized: attach its init() fairing before the eventstream stage"
                ))),
            },
            PoolSource::Configured => open_configured(rocket, config)
                .await
                .map(|storage| (storage, true)),
        }
    }
}

/// Starts the cross-instance bus when `broadcast` asks for one.
pub(super) async fn start_bus(
    config: &Config,
    storage: &Storage,
    hub: &Arc<Hub>,
    metrics: &Arc<Metrics>,
    presence: &Arc<Presence>,
) -> Result<Option<Bus>, IgniteError> {
    let transport = match (config.broadcast, storage) {
        (Broadcast::Local, _) => return Ok(None),
        (Broadcast::Postgres, Storage::Postgres(pool)) => Transport::Postgres(pool.clone()),
        (Broadcast::Postgres, Storage::Sqlite(_)) => {
            return Err(IgniteError::Config(ConfigError::new(
                "broadcast",
                "\"postgres\" needs the event log on PostgreSQL, but it is on SQLite \
                 (one process only): set databases.eventstream.url to a postgres:// URL, \
                 or broadcast = \"local\"",
            )));
        }
        (Broadcast::Redis, Storage::Sqlite(_)) if !config.broadcast_shared_sqlite => {
            return Err(IgniteError::Config(ConfigError::new(
                "broadcast",
                "\"redis\" with the event log on SQLite works only when every instance opens \
                 the same SQLite file on one host: say so with broadcast_shared_sqlite = true, \
                 or keep the event log on PostgreSQL",
            )));
        }
        #[cfg(feature = "redis")]
        (Broadcast::Redis, _) => Transport::Redis(
            config
                .redis_url
                .as_ref()
                .map_or(DEFAULT_REDIS_URL, Secret::expose)
                .to_owned(),
        ),
        // Config::validate refuses it without the feature.
        #[cfg(not(feature = "redis"))]
        (Broadcast::Redis, _) => return Ok(None),
    };
    Bus::start(
        transport,
        storage.clone(),
        Arc::clone(hub),
        Arc::clone(metrics),
        std::time::Duration::from_secs(config.broadcast_poll_secs),
        // Config::validate requires it with a bus.
        config
            .bus_key
            .as_ref()
            .map_or(&[][..], |key| key.expose().as_bytes()),
        Arc::clone(presence),
    )
    .await
    .map(Some)
    .map_err(IgniteError::Bus)
}

/// Opens `databases.<config.database>` the way `rocket_db_pools` does,
/// choosing the backend by the URL's scheme.
async fn open_configured(rocket: &Rocket<Build>, config: &Config) -> Result<Storage, IgniteError> {
    let key = format!("databases.{}", config.database);
    let workers: usize = rocket
        .figment()
        .extract_inner(rocket::Config::WORKERS)
        .unwrap_or(1);
    let figment = rocket
        .figment()
        .focus(&key)
        .join(Serialized::default("url", DEFAULT_DATABASE_URL))
        .join(Serialized::default("max_connections", workers * 4))
        .join(Serialized::default("connect_timeout", 5));
    let url: String = figment
        .extract_inner("url")
        .map_err(|e| ConfigError::other(format!("{key}.url"), e))?;
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => <SqlitePool as rocket_db_pools::Pool>::init(&figment)
            .await
            .map(Storage::Sqlite)
            .map_err(|e| {
                IgniteError::Storage(format!("{key}: cannot open {:?}: {e}", redact_url(&url)))
            }),
        "postgres" | "postgresql" => <PgPool as rocket_db_pools::Pool>::init(&figment)
            .await
            .map(Storage::Postgres)
            .map_err(|e| IgniteError::Storage(format!("{key}: cannot connect: {e}"))),
        // The scheme alone: the URL may carry a password.
        _ => Err(ConfigError::other(
            format!("{key}.url"),
            format!(
                "unsupported database scheme {scheme:?}; use sqlite://path.db or postgres://..."
            ),
        )
        .into()),
    }
}
