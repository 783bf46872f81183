//! The writer's own SQLite connection, kept between batches.

use std::pin::Pin;

use rocket_db_pools::sqlx::pool::PoolConnection;
use rocket_db_pools::sqlx::{self, SqlitePool};

/// The writer's SQLite connection, kept from one batch to the next.
///
/// Taking a connection from the pool costs a round trip to SQLite's worker
/// thread for the pool's liveness check, and the batch's `PRAGMA
/// synchronous` another; with a connection of its own the writer pays
/// neither. Only one writer writes the event log, so the pool gives up one
/// connection for it; a pool of fewer than [`KEEP_FROM`] connections keeps
/// all of them for the streams' reads. After any failure the kept
/// connection is closed, and the next batch starts from the pool. When the
/// pool starts closing (Rocket's shutdown closes it and waits for every
/// connection to come back) the writer lets the kept one go: see
/// [`KeptConnection::released_on_close`].
/// (PostgreSQL connections go back to the pool after every batch: the
/// liveness check is what notices a restarted server before a batch fails
/// on a dead connection.)
///
/// In a mutex only so that the writer's state is `Sync`: it is reached
/// through `&mut`, never locked.
#[derive(Default)]
pub(crate) struct KeptConnection(std::sync::Mutex<Kept>);

#[derive(Default)]
pub(super) struct Kept {
    pub(super) connection: Option<PoolConnection<sqlx::Sqlite>>,
    /// Resolves when the pool starts closing; made once, with the first
    /// connection kept.
    closing: Option<Pin<Box<sqlx::pool::CloseEvent>>>,
}

impl std::fmt::Debug for KeptConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptConnection").finish_non_exhaustive()
    }
}

/// The smallest SQLite pool the writer keeps a connection of.
pub(super) const KEEP_FROM: u32 = 4;

impl KeptConnection {
    pub(super) fn kept(&mut self) -> &mut Kept {
        self.0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn take(&mut self) -> Option<PoolConnection<sqlx::Sqlite>> {
        self.kept().connection.take()
    }

    /// Keeps `connection` for the next batch, unless its pool is too small
    /// to spare it or is closing.
    pub(super) fn keep(&mut self, connection: PoolConnection<sqlx::Sqlite>, pool: &SqlitePool) {
        if pool.options().get_max_connections() < KEEP_FROM || pool.is_closed() {
            return;
        }
        let kept = self.kept();
        kept.closing
            .get_or_insert_with(|| Box::pin(pool.close_event()));
        kept.connection = Some(connection);
    }

    /// Resolves once the pool starts closing while a connection is kept,
    /// having let that connection go back (closing waits for every
    /// connection, so a writer that kept one would hold Rocket's shutdown
    /// forever). Pending while nothing is kept.
    pub(crate) async fn released_on_close(&mut self) {
        let kept = self.kept();
        match (&kept.connection, &mut kept.closing) {
            (Some(_), Some(closing)) => closing.as_mut().await,
            _ => std::future::pending().await,
        }
        self.kept().connection = None;
    }
}
