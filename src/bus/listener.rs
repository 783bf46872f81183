//! The listening half of the bus: one connection of this instance's own
//! that `LISTEN`s for notices and hands them to the receiver.
//!
//! The connection can go away (PostgreSQL restarts, an administrator
//! terminates it, a network cut): the listener opens a new one with backoff
//! and then asks the receiver to catch up from storage, since whatever was
//! notified meanwhile is gone. The hand-off to the receiver is bounded: a
//! notice that finds it full is dropped and replaced by a catch-up too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rocket_db_pools::sqlx::postgres::PgListener;
use rocket_db_pools::sqlx::{self, PgPool};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::notice::{NOTIFY_CHANNEL, Notice};

/// What the listener hands the receiver.
#[derive(Debug)]
pub(crate) enum Heard {
    /// A notice from another instance.
    Notice(Notice),
    /// Notices were missed (the connection was lost): compare every
    /// listened channel with storage, and have every stream ask the
    /// authorizer again, for the kicks.
    CatchUp,
}

/// The `application_name` of listener connections, so an operator (or a
/// test) can find them in `pg_stat_activity`.
const APPLICATION_NAME: &str = "eventstream bus";

/// Listens on `listener` (connected by the stage before launch, so an
/// instance that serves is already listening), and on new connections
/// after it is lost, until the pool closes.
pub(crate) async fn run(
    mut listener: PgListener,
    pool: PgPool,
    origin: u64,
    heard: mpsc::Sender<Heard>,
    missed: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    loop {
        receive(&mut listener, origin, &heard, &missed, &metrics).await;
        let mut pause = Duration::from_millis(50);
        listener = loop {
            if pool.is_closed() {
                return;
            }
            match connect(&pool).await {
                Ok(listener) => break listener,
                Err(error) => {
                    log::warn!(
                        "eventstream: the bus listener cannot connect ({error}); retrying in {pause:?}"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        metrics.bus_reconnected();
        log::info!("eventstream: the bus listener is connected again; catching up");
        // Listening again: what was committed meanwhile is in storage, and
        // kicks sent meanwhile are found by asking the authorizer again.
        let _ = heard.send(Heard::CatchUp).await;
    }
}

/// Hands notices over until the connection is lost.
async fn receive(
    listener: &mut PgListener,
    origin: u64,
    heard: &mpsc::Sender<Heard>,
    missed: &AtomicBool,
    metrics: &Metrics,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let notice = match Notice::decode(notification.payload()) {
                    Ok(notice) if notice.origin == origin => continue,
                    Ok(notice) => notice,
                    Err(error) => {
                        log::warn!(
                            "eventstream: ignoring a notification on {NOTIFY_CHANNEL:?} that is not a notice ({error})"
                        );
                        continue;
                    }
                };
                metrics.bus_received();
                if heard.try_send(Heard::Notice(notice)).is_err() {
                    // The receiver is behind: it will compare with
                    // storage instead.
                    missed.store(true, Ordering::Release);
                }
            }
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
}

/// A connection of its own that listens for notices.
pub(crate) async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(APPLICATION_NAME)
        .execute(&mut listener)
        .await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}
