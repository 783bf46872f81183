//! The PostgreSQL transport: `LISTEN`/`NOTIFY` on the event log's own
//! database. Commits are announced by the writer inside their transaction
//! (see `storage`); this listens, and sends live-only events and kicks.

use rocket_db_pools::sqlx::postgres::PgListener;
use rocket_db_pools::sqlx::{self, PgPool};

use super::error::BusError;
use super::listener::{Backoff, HandOff, SEND_TIMEOUT};
use crate::storage::now_ms;
use crate::wire::notice::NOTIFY_SQL;

/// The `application_name` of listener connections, so an operator (or a
/// test) can find them in `pg_stat_activity`.
const APPLICATION_NAME: &str = "eventstream bus";

/// How long opening a listener connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
        let connected_at = now_ms();
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => hand_off.payload(notification.payload()),
                    Ok(None) => {
                        log::warn!("eventstream: the bus listener lost its connection");
                        break;
                    }
                    Err(error) => {
                        log::warn!("eventstream: the bus listener failed: {error}");
                        break;
                    }
                },
                () = hand_off.silence(connected_at) => break,
            }
        }
        hand_off.state.set_connected(false);
        let mut backoff = Backoff::new();
        listener = loop {
            if pool.is_closed() {
                return;
            }
            // A connection attempt on a path that drops packets could
            // wait for the TCP timeout: give it a bound.
            let attempt =
                tokio::time::timeout(CONNECT_TIMEOUT, connect(&pool, hand_off.seal.channel()));
            match attempt.await {
                Ok(Ok(listener)) => break listener,
                Ok(Err(error)) => {
                    backoff
                        .wait("the bus listener cannot connect", &error)
                        .await
                }
                Err(_) => {
                    let why = format!("no connection within {CONNECT_TIMEOUT:?}");
                    backoff.wait("the bus listener cannot connect", &why).await
                }
            }
        };
        hand_off.reconnected().await;
    }
}

/// Sends one notice on `channel`. A connection that does not answer
/// within [`SEND_TIMEOUT`] is closed rather than given back to the pool
/// (it may be half-open: a peer gone without a word).
pub(crate) async fn send(pool: &PgPool, channel: &str, payload: &str) -> Result<(), BusError> {
    let silent = || BusError::NoAnswer {
        server: String::new(),
        after: SEND_TIMEOUT,
    };
    let mut connection = tokio::time::timeout(SEND_TIMEOUT, pool.acquire())
        .await
        .map_err(|_| silent())?
        .map_err(BusError::Notify)?;
    let sent = sqlx::query(NOTIFY_SQL)
        .bind(channel)
        .bind(payload)
        .execute(&mut *connection);
    match tokio::time::timeout(SEND_TIMEOUT, sent).await {
        Ok(sent) => sent.map(drop).map_err(BusError::Notify),
        Err(_) => {
            drop(connection.detach());
            Err(silent())
        }
    }
}
