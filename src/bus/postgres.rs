//! The PostgreSQL transport: `LISTEN`/`NOTIFY` on the event log's own
//! database. Commits are announced by the writer inside their transaction
//! (see `storage`); this listens, and sends live-only events and kicks.

use rocket_db_pools::sqlx::postgres::PgListener;
use rocket_db_pools::sqlx::{self, PgPool};

use super::listener::{Backoff, HandOff};
use crate::notice::NOTIFY_SQL;

/// The `application_name` of listener connections, so an operator (or a
/// test) can find them in `pg_stat_activity`.
const APPLICATION_NAME: &str = "eventstream bus";

/// A connection of its own that listens for notices on `channel`.
pub(crate) async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(APPLICATION_NAME)
        .execute(&mut listener)
        .await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Listens on `listener` (connected by the stage before launch, so an
/// instance that serves is already listening), and on new connections
/// after it is lost, until the pool closes.
pub(crate) async fn listen(mut listener: PgListener, pool: PgPool, hand_off: HandOff) {
    hand_off.state.set_connected(true);
    loop {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => hand_off.payload(notification.payload()),
                Ok(None) => {
                    log::warn!("eventstream: the bus listener lost its connection");
                    break;
                }
                Err(error) => {
                    log::warn!("eventstream: the bus listener failed: {error}");
                    break;
                }
            }
        }
        hand_off.state.set_connected(false);
        let mut backoff = Backoff::new();
        listener = loop {
            if pool.is_closed() {
                return;
            }
            match connect(&pool, hand_off.seal.channel()).await {
                Ok(listener) => break listener,
                Err(error) => {
                    backoff
                        .wait("the bus listener cannot connect", &error)
                        .await
                }
            }
        };
        hand_off.reconnected().await;
    }
}

/// Sends one notice on `channel`.
pub(crate) async fn send(pool: &PgPool, channel: &str, payload: &str) -> Result<(), String> {
    sqlx::query(NOTIFY_SQL)
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await
        .map(drop)
        .map_err(|error| error.to_string())
}
