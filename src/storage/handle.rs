//! The handle on the event log: its pool, of either backend, and the
//! conversions every statement needs.

use rocket_db_pools::sqlx::{self, PgPool, Row, SqlitePool};

/// A handle on the event log.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Milliseconds since the Unix epoch: the `created_ms` of new events and
/// the clock retention trims by.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Storage {
    /// The event log's own id, written by its first migration: instances
    /// sharing this log share a bus namespace derived from it.
    pub(crate) async fn log_id(&self) -> Result<String, sqlx::Error> {
        dispatch!(self, pool => {
            sqlx::query("SELECT log_id FROM eventstream_log WHERE singleton = 1")
                .fetch_one(pool)
                .await?
                .try_get("log_id")
        })
    }

    /// Whether the database answers a trivial query, for the health check.
    pub(crate) async fn ping(&self) -> Result<(), sqlx::Error> {
        dispatch!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await.map(drop)
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Storage::Sqlite(_) => "sqlite",
            Storage::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool (on Rocket shutdown, when the stage opened it).
    pub(crate) async fn close(&self) {
        dispatch!(self, pool => pool.close().await)
    }
}
