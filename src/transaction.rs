//! [`EventTx`]: sending events inside the application's own database
//! transaction, so that a row and the event announcing it commit together
//! or not at all.
//!
//! ```text
//! events.begin() ── BEGIN on the event-log pool (SQLite: waits for the write turn)
//!   tx: the app's own queries                (derefs to the sqlx transaction)
//!   tx.send_event(..) ── counter bump + insert, in the transaction
//!   tx.commit() ── COMMIT ─► fan-out, in id order ─► subscribers
//!   (dropped, or an error before COMMIT) ── ROLLBACK, nothing delivered
//! ```
//!
//! The commit runs in a task of its own: once COMMIT is sent, the events
//! reach the fan-out even if the caller stops waiting for `commit()`.
//! Events carry an append token of a writer id minted for this
//! transaction, so a COMMIT whose answer is lost is settled by asking the
//! database which of them it holds.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use rocket_db_pools::sqlx::{self, Postgres, Sqlite, Transaction};
use serde::Serialize;

use crate::context::Context;
use crate::delivery::fanout::LiveEvent;
use crate::error::Error;
use crate::events::{Events, Outgoing, SendOptions, encode_data};
use crate::storage::{self, AppendToken, InDoubt, Storage, in_transaction, new_writer_id, now_ms};
use crate::wire::channel;
use crate::wire::event_id::EventId;
use crate::wire::notice::Range;
use crate::write::gate::Held;

/// Events one transaction may send. They are kept in memory until the
/// commit hands them to the fan-out.
pub const MAX_TRANSACTION_EVENTS: usize = 10_000;

/// A database the event log can live in: `sqlx::Sqlite` or
/// `sqlx::Postgres` (from `rocket_db_pools::sqlx`). Sealed.
pub trait LogDatabase: sqlx::Database + sealed::Sealed {}

impl LogDatabase for Sqlite {}
impl LogDatabase for Postgres {}

mod sealed {
    use rocket_db_pools::sqlx::{PgConnection, Pool, SqliteConnection, Transaction};

    use crate::storage::Storage;

    /// A transaction's connection, by backend.
    pub enum Connection<'a> {
        Sqlite(&'a mut SqliteConnection),
        Postgres(&'a mut PgConnection),
    }

    /// What the crate needs of each backend. Not implementable outside.
    pub trait Sealed: rocket_db_pools::sqlx::Database {
        /// The event log's pool when it is of this backend.
        #[allow(private_interfaces, reason = "sealed: only this crate calls it")]
        fn pool(storage: &Storage) -> Option<&Pool<Self>>;

        /// The transaction's connection, tagged with its backend.
        fn connection<'a>(tx: &'a mut Transaction<'static, Self>) -> Connection<'a>;
    }

    impl Sealed for rocket_db_pools::sqlx::Sqlite {
        #[allow(private_interfaces, reason = "sealed: only this crate calls it")]
        fn pool(storage: &Storage) -> Option<&Pool<Self>> {
            match storage {
                Storage::Sqlite(pool) => Some(pool),
                Storage::Postgres(_) => None,
            }
        }

        fn connection<'a>(tx: &'a mut Transaction<'static, Self>) -> Connection<'a> {
            Connection::Sqlite(tx)
        }
    }

    impl Sealed for rocket_db_pools::sqlx::Postgres {
        #[allow(private_interfaces, reason = "sealed: only this crate calls it")]
        fn pool(storage: &Storage) -> Option<&Pool<Self>> {
            match storage {
                Storage::Postgres(pool) => Some(pool),
                Storage::Sqlite(_) => None,
            }
        }

        fn connection<'a>(tx: &'a mut Transaction<'static, Self>) -> Connection<'a> {
            Connection::Postgres(tx)
        }
    }
}

use sealed::Connection;

impl Events {
    /// Opens a transaction on the event log's database, for the
    /// application's own queries and for events that must commit with
    /// them. `DB` is the event log's backend (`sqlx::Sqlite` or
    /// `sqlx::Postgres`); the other one is refused.
    ///
    /// ```no_run
    /// # use eventstream_rocket::Events;
    /// use rocket_db_pools::sqlx;
    /// # async fn post(events: &Events) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = events.begin::<sqlx::Sqlite>().await?;
    /// sqlx::query("INSERT INTO messages (room, text) VALUES ($1, $2)")
    ///     .bind("lobby")
    ///     .bind("hello")
    ///     .execute(&mut **tx)
    ///     .await?;
    /// tx.send_event("lobby", "message", &serde_json::json!({ "text": "hello" })).await?;
    /// tx.commit().await?; // the row and the event, together; then subscribers get it
    /// # Ok(()) }
    /// ```
    ///
    /// While it is open, the transaction holds locks:
    ///
    /// - **SQLite**: the database's write lock, from `begin` to the end.
    ///   Sends from other tasks wait for it (they do not fail), so keep
    ///   transactions short.
    /// - **PostgreSQL**: the counter row of each channel it sent to, from
    ///   its first send on that channel to the end. Sends of this process
    ///   to those channels wait for the transaction to end (the writer
    ///   keeps them aside, counted by
    ///   [`MetricsSnapshot::sends_held_back`](crate::MetricsSnapshot::sends_held_back));
    ///   sends to other channels go on. (When transactions hold one
    ///   channel back to back, a send waits only for those open when it
    ///   came; then the writer's batch waits on the newer one's row, with
    ///   every send in it.) Another instance sharing the
    ///   database does not know the transaction: its writer's batch that
    ///   touches a locked channel waits on the row, and every send of that
    ///   instance queued behind it waits too. Keep transactions that send
    ///   short. Send to several channels in one order everywhere (sorted,
    ///   as the writer does): two transactions that lock `a` then `b` and
    ///   `b` then `a` deadlock, and PostgreSQL aborts one of them.
    ///
    /// The task that holds the transaction must not wait for those locks
    /// itself: [`Events::send_event`] (on a persistent channel) or a second
    /// `begin` from the same task fails with [`Error::TransactionOpen`].
    pub async fn begin<DB: LogDatabase>(&self) -> Result<EventTx<DB>, Error> {
        let context = Arc::clone(self.context());
        let Some(pool) = DB::pool(&context.storage) else {
            return Err(Error::WrongBackend {
                event_log: context.storage.backend(),
            });
        };
        let sqlite = matches!(context.storage, Storage::Sqlite(_));
        let held = context.writer.gate().hold(sqlite).await?;
        let mut tx = pool.begin().await?;
        if let Connection::Sqlite(connection) = DB::connection(&mut tx) {
            in_transaction::sqlite::lock_writes(connection).await?;
        }
        Ok(EventTx {
            tx: Some(tx),
            context,
            held,
            writer: new_writer_id(),
            sent: Vec::new(),
        })
    }
}

/// An open transaction on the event log's database: the application's own
/// queries (it derefs to the sqlx [`Transaction`]) and events sent with
/// [`send_event`](EventTx::send_event), committed together by
/// [`commit`](EventTx::commit). Dropping it rolls back and delivers
/// nothing. Opened by [`Events::begin`].
pub struct EventTx<DB: LogDatabase> {
    /// `None` once committed.
    tx: Option<Transaction<'static, DB>>,
    context: Arc<Context>,
    held: Held,
    /// The writer half of this transaction's append tokens.
    writer: i64,
    /// Events sent so far, in send order, with their ids and tokens.
    sent: Vec<LiveEvent>,
}

impl<DB: LogDatabase> std::fmt::Debug for EventTx<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTx")
            .field("events", &self.sent.len())
            .finish_non_exhaustive()
    }
}

impl<DB: LogDatabase> Deref for EventTx<DB> {
    type Target = Transaction<'static, DB>;

    fn deref(&self) -> &Self::Target {
        // Present until `commit` consumes the value.
        self.tx
            .as_ref()
            .expect("an EventTx holds its transaction until commit")
    }
}

impl<DB: LogDatabase> DerefMut for EventTx<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.tx
            .as_mut()
            .expect("an EventTx holds its transaction until commit")
    }
}

impl<DB: LogDatabase> EventTx<DB> {
    /// Sends `data` (serialized to JSON) as an event of `event_type` on
    /// `channel`, inside the transaction: it gets its id now (gap-free,
    /// from the same counters as every other send) and reaches subscribers
    /// only after [`commit`](EventTx::commit). Returns the id, or `None` on
    /// a non-persistent channel (delivered live after the commit).
    pub async fn send_event<T: Serialize + ?Sized>(
        &mut self,
        channel: &str,
        event_type: &str,
        data: &T,
    ) -> Result<Option<EventId>, Error> {
        self.send_event_with(channel, event_type, data, SendOptions::default())
            .await
    }

    /// [`send_event`](EventTx::send_event) with options: users to skip,
    /// pre-encoded data.
    pub async fn send_event_with<T: Serialize + ?Sized>(
        &mut self,
        channel: &str,
        event_type: &str,
        data: &T,
        options: SendOptions,
    ) -> Result<Option<EventId>, Error> {
        if self.sent.len() >= MAX_TRANSACTION_EVENTS {
            return Err(Error::TransactionFull {
                max: MAX_TRANSACTION_EVENTS,
            });
        }
        let data = encode_data(data, options.pre_encoded)?;
        let outgoing = Outgoing::checked(
            &self.context,
            channel,
            event_type,
            data,
            options.skip_user_ids,
        )?;
        let Some(mut event) = outgoing.stored else {
            self.sent.push(outgoing.live);
            return Ok(None);
        };
        let token = AppendToken {
            writer: self.writer,
            seq: self.sent.len() as i64 + 1,
        };
        event.token = token;
        let events = [&event];
        if let Storage::Postgres(_) = self.context.storage {
            // Before the counter row is locked: from here the writer keeps
            // other sends to this channel aside instead of waiting on the
            // row with every send behind them.
            self.held.hold_channel(&event.channel);
        }
        let ids = match DB::connection(&mut **self) {
            Connection::Sqlite(connection) => {
                in_transaction::sqlite::append(connection, &events, now_ms()).await?
            }
            Connection::Postgres(connection) => {
                in_transaction::postgres::append(connection, &events, now_ms()).await?
            }
        };
        let seq = ids[0];
        self.sent.push(LiveEvent {
            token: Some(token),
            ..LiveEvent::new(
                event.channel,
                Some(seq),
                outgoing.live.frame.body,
                event.skip_users,
            )
        });
        Ok(Some(EventId::new(channel, seq)))
    }

    /// The id of `channel`'s newest event as this transaction sees it, its
    /// own sends included (0 for a channel never sent to).
    ///
    /// For a history join, read the position first, then the application's
    /// rows up to it (those whose event id is at or below it): a page that
    /// renders them and then listens from the position misses nothing and
    /// repeats nothing. The order matters on PostgreSQL, where the
    /// transaction is `READ COMMITTED` and each statement sees what was
    /// committed when it started: rows read first could miss a message
    /// whose event the position then includes. (On SQLite the transaction
    /// holds the write lock, so nothing commits in between.)
    pub async fn position(&mut self, channel: &str) -> Result<u64, Error> {
        channel::validate(channel).map_err(|why| Error::InvalidChannel(why.to_string()))?;
        Ok(match DB::connection(&mut **self) {
            Connection::Sqlite(connection) => {
                in_transaction::sqlite::position(connection, channel).await?
            }
            Connection::Postgres(connection) => {
                in_transaction::postgres::position(connection, channel).await?
            }
        })
    }

    /// Commits the application's changes and the events together, then
    /// hands the events to subscribers in id order. Returns the events'
    /// ids (`None` for non-persistent channels), in send order.
    ///
    /// Once COMMIT has been sent, the events are delivered even if this
    /// future is dropped. When COMMIT's answer is lost, the database is
    /// asked which events it holds; if it cannot be asked, the result is
    /// [`Error::Indeterminate`] (the application's rows share the events'
    /// fate: read them to find out).
    pub async fn commit(mut self) -> Result<Vec<Option<EventId>>, Error> {
        let mut tx = self.tx.take().expect("commit runs once");
        let sent = std::mem::take(&mut self.sent);
        if let Some(seal) = self.context.writer.announce_as()
            && let Connection::Postgres(connection) = DB::connection(&mut tx)
        {
            in_transaction::postgres::announce(connection, seal, ranges(&sent), now_ms()).await?;
        }
        // The task that opened the transaction may send again once the
        // commit is on its way; the SQLite write turn goes with the commit
        // and is given back after the events are handed on, so the writer's
        // later events cannot overtake them.
        self.held.release_task();
        let turn = self.held.take_turn();
        // Sends to this transaction's channels that the writer kept aside
        // go once its events are handed on, so they follow them in id order.
        let channels = self.held.take_channels();
        let context = Arc::clone(&self.context);
        let writer = self.writer;
        let committing = tokio::spawn(async move {
            let outcome = settle(tx.commit().await, &context.storage, writer, &sent).await;
            let ids = sent
                .iter()
                .map(|event| {
                    event
                        .seq
                        .map(|seq| EventId::new(event.channel.as_str(), seq))
                })
                .collect();
            if outcome.is_ok() && !sent.is_empty() {
                crash_if_asked();
                context.metrics.committed(sent.len());
                for event in sent {
                    context.fanout.event(&Arc::new(event));
                }
            }
            drop(turn);
            drop(channels);
            outcome.map(|()| ids)
        });
        committing.await.map_err(|_| Error::Closed)?
    }
}

/// How long a transaction whose COMMIT got no answer is waited for.
const IN_DOUBT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the commit took: its own answer, or (when that was lost) the
/// database's record of this transaction's append tokens, read once the
/// transaction has ended.
async fn settle(
    committed: Result<(), sqlx::Error>,
    storage: &Storage,
    writer: i64,
    sent: &[LiveEvent],
) -> Result<(), Error> {
    let error = match committed {
        Ok(()) => return Ok(()),
        Err(error) if !storage::commit_outcome_unknown(&error) => {
            return Err(Error::Storage(error));
        }
        Err(error) => error,
    };
    let seqs: Vec<i64> = sent
        .iter()
        .filter_map(|event| event.token)
        .map(|token| token.seq)
        .collect();
    if seqs.is_empty() {
        log::error!(
            "eventstream: a transaction's COMMIT got no answer ({error}); it sent no stored event"
        );
        return Err(Error::Indeterminate);
    }
    // The COMMIT may still be under way on the server: a lookup now could
    // miss rows that become visible a moment later, and the application
    // would store them twice by retrying. Wait for it to end first.
    let first = AppendToken {
        writer,
        seq: seqs[0],
    };
    let deadline = tokio::time::Instant::now() + IN_DOUBT_WAIT;
    let ended = retry_until(deadline, || {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        storage.wait_for_append(first, within)
    })
    .await;
    match ended {
        Ok(InDoubt::Committed | InDoubt::Ended) => {}
        Ok(InDoubt::RolledBack) => return Err(Error::Storage(error)),
        Ok(InDoubt::StillOpen) | Err(_) => {
            log::error!(
                "eventstream: a transaction's COMMIT got no answer ({error}) and had not ended {IN_DOUBT_WAIT:?} later; its outcome is unknown"
            );
            return Err(Error::Indeterminate);
        }
    }
    match retry_until(deadline, || storage.find_appended(writer, &seqs)).await {
        Ok(found) if found.len() == seqs.len() => Ok(()),
        Ok(found) if found.is_empty() => Err(Error::Storage(error)),
        Ok(_) | Err(_) => {
            log::error!(
                "eventstream: a transaction's COMMIT got no answer ({error}); its outcome is unknown"
            );
            Err(Error::Indeterminate)
        }
    }
}

/// Runs `ask` until it gets an answer from the database or `deadline`
/// passes. The network failure that lost a COMMIT's answer also broke the
/// other connections the pool held; the first of them to be used may fail
/// the same way, and a fresh one answers.
async fn retry_until<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut ask: F,
) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    loop {
        match ask().await {
            Err(error)
                if storage::commit_outcome_unknown(&error)
                    && tokio::time::Instant::now() + LOOKUP_RETRY < deadline =>
            {
                log::warn!(
                    "eventstream: looking up a commit that got no answer failed ({error}); trying again"
                );
                tokio::time::sleep(LOOKUP_RETRY).await;
            }
            answer => return answer,
        }
    }
}

/// The pause between two lookups of an unanswered commit.
const LOOKUP_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// The id range each channel received in the transaction.
fn ranges(sent: &[LiveEvent]) -> Vec<Range> {
    let mut ranges: BTreeMap<&str, Range> = BTreeMap::new();
    for (channel, seq) in sent
        .iter()
        .filter_map(|event| Some((event.channel.as_str(), event.seq?)))
    {
        ranges
            .entry(channel)
            .and_modify(|range| range.last = seq)
            .or_insert_with(|| Range {
                channel: channel.to_owned(),
                first: seq,
                last: seq,
            });
    }
    ranges.into_values().collect()
}

/// A fault point for the crash tests (builds with the `internals` feature
/// only): the process dies here, after COMMIT and before the fan-out, when
/// `EVENTSTREAM_FAULT_CRASH_AFTER_COMMIT` is set.
fn crash_if_asked() {
    #[cfg(feature = "internals")]
    if std::env::var_os("EVENTSTREAM_FAULT_CRASH_AFTER_COMMIT").is_some() {
        std::process::abort();
    }
}
