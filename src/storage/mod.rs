//! The event log in SQL: SQLite or PostgreSQL, chosen by the database URL.
//!
//! Both backends run the same SQL (`INSERT .. ON CONFLICT .. RETURNING`
//! works in SQLite 3.35+ and PostgreSQL); only durability settings and
//! transaction isolation differ. [`dispatch!`] writes each operation once and
//! type-checks it against both concrete pool types, which keeps sqlx's
//! generic bounds out of the code.

pub(crate) mod migrations;

use std::collections::BTreeMap;
use std::pin::Pin;

use rocket_db_pools::sqlx::pool::PoolConnection;
use rocket_db_pools::sqlx::{self, PgPool, QueryBuilder, Row, SqlitePool};

use crate::config::Durability;
use crate::event_id::{EventId, IdVector};
use crate::notice::{self, Range, Seal};

/// A handle on the event log.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
macro_rules! dispatch {
    ($storage:expr, $pool:ident => $body:expr) => {
        match $storage {
            Storage::Sqlite($pool) => $body,
            Storage::Postgres($pool) => $body,
        }
    };
}

/// Moves the counters of a batch's channels: the start of the upsert
/// [`push_counter_upsert!`] writes.
pub(crate) const UPSERT_COUNTERS: &str =
    "INSERT INTO eventstream_channels (name, last_id, trimmed_through, last_writer, last_append) ";
pub(crate) const UPSERT_COUNTERS_CONFLICT: &str = " ON CONFLICT (name) DO UPDATE SET \
     last_id = eventstream_channels.last_id + excluded.last_id, \
     last_writer = excluded.last_writer, last_append = excluded.last_append \
     RETURNING name, last_id";
/// Inserts a batch's events; each row's columns after `id` are pushed by
/// [`push_event_columns!`].
pub(crate) const INSERT_EVENTS: &str = "INSERT INTO eventstream_events \
     (channel, id, event_type, data, skip_users, created_ms, writer_id, append_seq) ";

/// Pushes onto `$query` the upsert that adds each channel's event count
/// (`$counts`) to its counter and records the token of its last event
/// (`$last_tokens`); it returns each channel's new `last_id`, read by
/// [`last_ids_of!`].
macro_rules! push_counter_upsert {
    ($query:expr, $counts:expr, $last_tokens:expr) => {{
        $query.push($crate::storage::UPSERT_COUNTERS);
        $query.push_values($counts, |mut row, (channel, count)| {
            let token: AppendToken = $last_tokens.get(channel).copied().unwrap_or_default();
            row.push_bind(*channel)
                .push_bind(*count)
                .push_bind(0_i64)
                .push_bind(token.writer)
                .push_bind(token.seq);
        });
        $query.push($crate::storage::UPSERT_COUNTERS_CONFLICT);
    }};
}

/// Evaluates to the new `last_id` of each channel, from the rows the
/// counter upsert returned.
macro_rules! last_ids_of {
    ($rows:expr) => {{
        let mut last_ids: BTreeMap<String, u64> = BTreeMap::new();
        for row in $rows {
            last_ids.insert(
                row.try_get::<String, _>("name")?,
                to_u64(row.try_get("last_id")?),
            );
        }
        last_ids
    }};
}

/// Pushes the columns of `$event` that follow `id` in [`INSERT_EVENTS`].
macro_rules! push_event_columns {
    ($row:expr, $event:expr, $now_ms:expr) => {{
        $row.push_bind($event.event_type.as_str())
            .push_bind($event.data.as_str())
            .push_bind(skip_users_column(&$event.skip_users))
            .push_bind($now_ms)
            .push_bind($event.token.writer)
            .push_bind($event.token.seq);
    }};
}

/// Adds each channel's event count to its counter and evaluates to the new
/// `last_id` of every channel in `$counts`. (A macro rather than a generic
/// function: it expands against each backend's concrete transaction.)
macro_rules! bump_counters {
    ($tx:expr, $counts:expr, $last_tokens:expr) => {{
        let mut upsert = QueryBuilder::new("");
        push_counter_upsert!(upsert, $counts, $last_tokens);
        let rows = upsert.build().fetch_all(&mut *$tx).await?;
        last_ids_of!(&rows)
    }};
}

/// Inserts `$events` with the ids `$ids` their counters reserved.
macro_rules! insert_events {
    ($tx:expr, $events:expr, $ids:expr, $now_ms:expr) => {{
        let mut insert = QueryBuilder::new($crate::storage::INSERT_EVENTS);
        insert.push_values($events.iter().zip($ids), |mut row, (event, id)| {
            row.push_bind(event.channel.as_str()).push_bind(to_i64(*id));
            push_event_columns!(row, event, $now_ms);
        });
        insert.build().execute(&mut *$tx).await?;
    }};
}

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
struct Kept {
    connection: Option<PoolConnection<sqlx::Sqlite>>,
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
const KEEP_FROM: u32 = 4;

impl KeptConnection {
    fn kept(&mut self) -> &mut Kept {
        self.0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&mut self) -> Option<PoolConnection<sqlx::Sqlite>> {
        self.kept().connection.take()
    }

    /// Keeps `connection` for the next batch, unless its pool is too small
    /// to spare it or is closing.
    fn keep(&mut self, connection: PoolConnection<sqlx::Sqlite>, pool: &SqlitePool) {
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

/// One batch on SQLite, sent as a single multi-statement query:
///
/// ```sql
/// BEGIN;
/// INSERT INTO eventstream_channels .. ON CONFLICT .. RETURNING name, last_id;
/// INSERT INTO eventstream_events (channel, id, ..) VALUES
///     (?, (SELECT last_id FROM eventstream_channels WHERE name = ?) - ?, ..), ..;
/// COMMIT
/// ```
///
/// Each statement sent on its own is a round trip to SQLite's worker
/// thread (a wake-up there and one back); one query for the batch is one
/// round trip instead of four. Each event's id is read back from the
/// counter its batch just moved: the newest id of its channel minus the
/// events of that channel after it in the batch, which is what
/// [`assign_ids`] computes from the returned counters.
struct SqliteBatch<'a> {
    events: &'a [&'a NewEvent],
    counts: &'a BTreeMap<&'a str, i64>,
    last_tokens: &'a BTreeMap<&'a str, AppendToken>,
    now_ms: i64,
}

impl SqliteBatch<'_> {
    /// Commits the batch on `kept`'s connection (or a new one from `pool`,
    /// after `synchronous`); returns each channel's newest id.
    async fn append(
        &self,
        pool: &SqlitePool,
        kept: &mut KeptConnection,
        synchronous: Option<&str>,
    ) -> Result<BTreeMap<String, u64>, AppendError> {
        let mut conn = match kept.take() {
            Some(conn) => conn,
            None => {
                let mut conn = pool.acquire().await?;
                if let Some(sql) = synchronous {
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
                conn
            }
        };
        let mut query = self.query();
        match query.build().fetch_all(&mut *conn).await {
            Ok(rows) => {
                let last_ids = last_ids_of!(&rows);
                kept.keep(conn, pool);
                Ok(last_ids)
            }
            Err(error) => {
                // Any of the statements may have failed, COMMIT included,
                // and the transaction may still be open: the connection is
                // closed rather than given back (SQLite rolls back what a
                // closed connection left open), and whether the batch
                // committed is judged as for a failed COMMIT.
                drop(conn.detach());
                Err(AppendError {
                    maybe_committed: commit_outcome_unknown(&error),
                    error,
                })
            }
        }
    }

    fn query(&self) -> QueryBuilder<'_, sqlx::Sqlite> {
        let mut query = QueryBuilder::new("BEGIN; ");
        push_counter_upsert!(query, self.counts, self.last_tokens);
        query.push("; ");
        query.push(INSERT_EVENTS);
        let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
        query.push_values(self.events, |mut row, event| {
            let channel = event.channel.as_str();
            let position = seen.entry(channel).or_default();
            *position += 1;
            let after = self.counts.get(channel).copied().unwrap_or(0) - *position;
            row.push_bind(channel)
                .push("(SELECT last_id FROM eventstream_channels WHERE name = ")
                .push_bind_unseparated(channel)
                .push_unseparated(") - ")
                .push_bind_unseparated(after);
            push_event_columns!(row, event, self.now_ms);
        });
        query.push("; COMMIT");
        query
    }
}

/// An event waiting to be appended.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub(crate) channel: String,
    pub(crate) event_type: String,
    pub(crate) data: String,
    pub(crate) skip_users: Vec<String>,
    /// Stored with the row: finds it again after a commit whose outcome
    /// is unknown, and makes a second insert of it fail.
    pub(crate) token: AppendToken,
}

/// Which append stored a row: the writer process and its append number.
/// The writer sets it when it takes the event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct AppendToken {
    pub(crate) writer: i64,
    pub(crate) seq: i64,
}

/// Why an append failed, and whether its transaction may have committed.
#[derive(Debug)]
pub(crate) struct AppendError {
    pub(crate) error: sqlx::Error,
    /// `false`: failed before COMMIT was sent, nothing was stored. `true`:
    /// COMMIT was sent and no answer came back; it may have committed.
    pub(crate) maybe_committed: bool,
}

impl From<sqlx::Error> for AppendError {
    fn from(error: sqlx::Error) -> Self {
        AppendError {
            error,
            maybe_committed: false,
        }
    }
}

/// A stored event, as returned by replay and [`Events::snapshot`](crate::Events::snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's channel and sequence number.
    pub id: EventId,
    /// The `event:` type.
    pub event_type: String,
    /// The data as sent: JSON text unless it was sent pre-encoded.
    pub data: String,
    /// When the event was committed, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub(crate) skip_users: Vec<String>,
    /// The append that stored it, when recorded.
    pub(crate) token: Option<AppendToken>,
}

/// Events read for a replay page.
#[derive(Debug)]
pub(crate) struct EventsPage {
    pub(crate) events: Vec<Event>,
    /// The byte budget left later events of the page out.
    pub(crate) cut: bool,
}

/// A channel's counter row: its newest id and what retention has removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelState {
    /// The id of the newest event (0 when none was ever sent).
    pub(crate) last_id: u64,
    /// The highest id trimmed away; every id after it is still stored.
    pub(crate) trimmed_through: u64,
    /// The append token of the newest event, when a writer recorded one.
    pub(crate) last_token: Option<AppendToken>,
}

impl ChannelState {
    /// Whether a client whose last event was `position` can be served exactly
    /// the events after it: the position is not in the future, and nothing
    /// after it has been trimmed.
    pub(crate) fn can_resume_from(&self, position: u64) -> bool {
        position <= self.last_id && (position == self.last_id || self.trimmed_through <= position)
    }
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

/// Whether a failed COMMIT may have committed: the server said no (an
/// error response: a constraint, a conflict, busy) means it did not, except
/// SQLite's I/O errors, after which it may have; no answer at all (the
/// connection dropped) means it may have.
pub(crate) fn commit_outcome_unknown(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            let sqlite = database
                .try_downcast_ref::<rocket_db_pools::sqlx::sqlite::SqliteError>()
                .is_some();
            let code = database.code();
            if sqlite {
                // SQLITE_IOERR is 10, in the low byte of every extended code.
                code.and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(|code| code & 0xff == 10)
            } else {
                // PostgreSQL ending the connection during COMMIT (an
                // administrator's or a shutdown's FATAL, class 57, or a
                // connection exception, class 08): a commit waiting for a
                // synchronous standby has committed locally by then.
                code.is_some_and(|code| code.starts_with("57") || code.starts_with("08"))
            }
        }
        _ => true,
    }
}

/// What became of a transaction whose COMMIT got no answer, once the
/// database could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InDoubt {
    Committed,
    RolledBack,
    /// It has ended, one way or the other (SQLite): look its rows up.
    Ended,
    /// Still open when the wait ended (a commit waiting for a synchronous
    /// standby that does not come).
    StillOpen,
}

/// A token from its two columns (absent on rows older than tokens).
pub(crate) fn token(writer: Option<i64>, seq: Option<i64>) -> Option<AppendToken> {
    Some(AppendToken {
        writer: writer?,
        seq: seq?,
    })
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn skip_users_column(skip_users: &[String]) -> Option<String> {
    if skip_users.is_empty() {
        None
    } else {
        serde_json::to_string(skip_users).ok()
    }
}

fn event_from_row<R>(row: &R) -> Result<Event, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let skip_users: Option<String> = row.try_get("skip_users")?;
    let skip_users = match skip_users {
        Some(json) => serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        None => Vec::new(),
    };
    Ok(Event {
        id: EventId::new(
            row.try_get::<String, _>("channel")?,
            to_u64(row.try_get("id")?),
        ),
        event_type: row.try_get("event_type")?,
        data: row.try_get("data")?,
        created_ms: row.try_get("created_ms")?,
        skip_users,
        token: token(row.try_get("writer_id")?, row.try_get("append_seq")?),
    })
}

/// Evaluates to the counter rows of `$channels` (all zero for channels
/// never sent to).
macro_rules! read_states {
    ($executor:expr, $channels:expr) => {{
        let channels: &[String] = $channels;
        let mut states: BTreeMap<String, ChannelState> = channels
            .iter()
            .map(|channel| (channel.clone(), ChannelState::default()))
            .collect();
        if !channels.is_empty() {
            let mut query = QueryBuilder::new(
                "SELECT name, last_id, trimmed_through, last_writer, last_append \
                 FROM eventstream_channels WHERE name IN (",
            );
            let mut names = query.separated(", ");
            for channel in channels {
                names.push_bind(channel.as_str());
            }
            names.push_unseparated(")");
            for row in query.build().fetch_all($executor).await? {
                states.insert(
                    row.try_get("name")?,
                    ChannelState {
                        last_id: to_u64(row.try_get("last_id")?),
                        trimmed_through: to_u64(row.try_get("trimmed_through")?),
                        last_token: token(row.try_get("last_writer")?, row.try_get("last_append")?),
                    },
                );
            }
        }
        states
    }};
}

pub(crate) mod in_transaction;
pub(crate) mod trim;

const SELECT_EVENTS: &str = "SELECT channel, id, event_type, data, skip_users, created_ms, \
     writer_id, append_seq FROM eventstream_events";

impl Storage {
    /// Appends events in one transaction and returns their ids, in order.
    ///
    /// Each channel's counter row is bumped once by the number of events it
    /// receives, so concurrent writers (other processes on the same
    /// database) serialize on that row and ids stay gap-free.
    ///
    /// With `announce_as` (an instance's seal on the bus; PostgreSQL only),
    /// the transaction also `NOTIFY`s the other instances of the id range
    /// each channel received ([`Seal::committed`]): PostgreSQL delivers it only if the
    /// batch commits, in commit order.
    ///
    /// `kept` is the caller's SQLite connection between batches (see
    /// [`KeptConnection`]); it is left empty after a failure.
    pub(crate) async fn append_batch(
        &self,
        kept: &mut KeptConnection,
        events: &[&NewEvent],
        durability: Durability,
        now_ms: i64,
        announce_as: Option<&Seal>,
    ) -> Result<Vec<u64>, AppendError> {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        let mut last_tokens: BTreeMap<&str, AppendToken> = BTreeMap::new();
        for event in events {
            *counts.entry(event.channel.as_str()).or_default() += 1;
            last_tokens.insert(event.channel.as_str(), event.token);
        }
        // Ask for the durability this batch needs before it commits: SQLite
        // takes it per connection (outside a transaction), PostgreSQL per
        // transaction.
        let (before_begin, after_begin) = match (self, durability) {
            (Storage::Sqlite(_), Durability::Process) => {
                (Some("PRAGMA synchronous = NORMAL"), None)
            }
            (Storage::Sqlite(_), Durability::Power) => (Some("PRAGMA synchronous = FULL"), None),
            // PostgreSQL is a process of its own: a commit it acknowledged
            // must survive its crash, so its WAL is flushed in both modes
            // (`off` lost acknowledged events, and their ids were given
            // out again). `power` also waits for synchronous standbys, when
            // the server has any, so a failover loses nothing either.
            (Storage::Postgres(_), Durability::Process) => {
                (None, Some("SET LOCAL synchronous_commit = local"))
            }
            (Storage::Postgres(_), Durability::Power) => {
                (None, Some("SET LOCAL synchronous_commit = on"))
            }
        };
        let last_ids = match self {
            // (`announce_as` is refused with SQLite when the stage ignites.)
            Storage::Sqlite(pool) => {
                let batch = SqliteBatch {
                    events,
                    counts: &counts,
                    last_tokens: &last_tokens,
                    now_ms,
                };
                batch.append(pool, kept, before_begin).await?
            }
            Storage::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                if let Some(sql) = after_begin {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                let last_ids = bump_counters!(tx, &counts, &last_tokens);
                let ids = assign_ids(events, &counts, &last_ids);
                insert_events!(tx, events, &ids, now_ms);
                if let Some(seal) = announce_as {
                    // One statement per payload; a batch needs one unless it
                    // touched hundreds of channels.
                    for payload in seal.committed(ranges(&counts, &last_ids), now_ms) {
                        sqlx::query(notice::NOTIFY_SQL)
                            .bind(seal.channel())
                            .bind(payload)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await.map_err(|error| AppendError {
                    maybe_committed: commit_outcome_unknown(&error),
                    error,
                })?;
                last_ids
            }
        };
        Ok(assign_ids(events, &counts, &last_ids))
    }

    /// The ids of the rows that appends of `writer` numbered `seqs` stored,
    /// by append number: after a failed commit, what did make it.
    pub(crate) async fn find_appended(
        &self,
        writer: i64,
        seqs: &[i64],
    ) -> Result<BTreeMap<i64, u64>, sqlx::Error> {
        let mut found = BTreeMap::new();
        if seqs.is_empty() {
            return Ok(found);
        }
        dispatch!(self, pool => {
            let mut query = QueryBuilder::new(
                "SELECT append_seq, id FROM eventstream_events WHERE writer_id = ",
            );
            query.push_bind(writer).push(" AND append_seq IN (");
            let mut list = query.separated(", ");
            for seq in seqs {
                list.push_bind(*seq);
            }
            list.push_unseparated(")");
            for row in query.build().fetch_all(pool).await? {
                let seq: i64 = row.try_get("append_seq")?;
                found.insert(seq, to_u64(row.try_get("id")?));
            }
        });
        Ok(found)
    }

    /// Waits, up to `within`, for the transaction that stored `token` to
    /// end, and says how it ended (PostgreSQL). A COMMIT whose answer was
    /// lost may still be under way on the server (waiting for a
    /// synchronous standby): until it ends, its rows are invisible and a
    /// lookup would say "not stored". A row inserted with the same token
    /// waits on the unique index for that transaction, and then fails (it
    /// committed) or goes in (it did not); the probe is rolled back either
    /// way.
    pub(crate) async fn wait_for_append(
        &self,
        token: AppendToken,
        within: std::time::Duration,
    ) -> Result<InDoubt, sqlx::Error> {
        let Storage::Postgres(pool) = self else {
            // SQLite has ended every transaction whose call returned: the
            // lookup that follows tells which way.
            return Ok(InDoubt::Ended);
        };
        let mut tx = pool.begin().await?;
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = {}",
            within.as_millis().max(1)
        ))
        .execute(&mut *tx)
        .await?;
        // A row no reader ever sees: no channel is named "", and ids are
        // positive (this one differs per token, so probes for different
        // transactions do not wait on each other).
        let id = -1
            - (std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), token) >> 1) as i64;
        let probe = sqlx::query(
            "INSERT INTO eventstream_events \
             (channel, id, event_type, data, skip_users, created_ms, writer_id, append_seq) \
             VALUES ('', $1, '', '', NULL, 0, $2, $3)",
        )
        .bind(id)
        .bind(token.writer)
        .bind(token.seq)
        .execute(&mut *tx)
        .await;
        let outcome = match probe {
            Ok(_) => InDoubt::RolledBack,
            Err(sqlx::Error::Database(error)) => match error.code().as_deref() {
                // unique_violation: on the token, the transaction committed.
                Some("23505") if error.constraint() == Some("eventstream_events_append") => {
                    InDoubt::Committed
                }
                // lock_not_available: still waiting.
                Some("55P03") => InDoubt::StillOpen,
                _ => return Err(sqlx::Error::Database(error)),
            },
            Err(error) => return Err(error),
        };
        drop(tx); // rolled back
        Ok(outcome)
    }

    /// The counter rows of `channels`; channels never sent to are all zero.
    pub(crate) async fn channel_states(
        &self,
        channels: &[String],
    ) -> Result<BTreeMap<String, ChannelState>, sqlx::Error> {
        dispatch!(self, pool => {
            Ok(read_states!(pool, channels))
        })
    }

    /// Up to `limit` events of `channel` with ids after `after`, in order.
    ///
    /// At most `max_bytes` of event data come back (and at least one
    /// event): the database drops the rest of the page, so a client that
    /// resumes far behind on large events cannot make this process hold
    /// `limit` of them at once.
    pub(crate) async fn events_after(
        &self,
        channel: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<EventsPage, sqlx::Error> {
        let data_bytes = match self {
            Storage::Sqlite(_) => "LENGTH(CAST(data AS BLOB))",
            Storage::Postgres(_) => "OCTET_LENGTH(data)",
        };
        // The page, then a running total of its data: rows whose data
        // starts within the budget are kept.
        let sql = format!(
            "SELECT channel, id, event_type, data, skip_users, created_ms, writer_id, append_seq, page_rows \
             FROM (SELECT page.*, SUM({data_bytes}) OVER (ORDER BY id) - {data_bytes} AS before_bytes, \
                          COUNT(*) OVER () AS page_rows \
                   FROM ({SELECT_EVENTS} WHERE channel = $1 AND id > $2 ORDER BY id LIMIT $3) AS page) AS sized \
             WHERE before_bytes < $4 ORDER BY id"
        );
        dispatch!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(channel)
                .bind(to_i64(after))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(i64::try_from(max_bytes.max(1)).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await?;
            let page_rows = match rows.first() {
                Some(row) => to_u64(row.try_get("page_rows")?) as usize,
                None => 0,
            };
            let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(EventsPage {
                cut: events.len() < page_rows,
                events,
            })
        })
    }

    /// The newest `limit` events of each channel and the id vector they end
    /// at, read from one consistent snapshot.
    pub(crate) async fn snapshot(
        &self,
        channels: &[String],
        limit: usize,
    ) -> Result<(Vec<Event>, IdVector), sqlx::Error> {
        let sql = format!("{SELECT_EVENTS} WHERE channel = $1 ORDER BY id DESC LIMIT $2");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            if matches!(self, Storage::Postgres(_)) {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            let states = read_states!(&mut *tx, channels);
            let mut events = Vec::new();
            for channel in channels {
                let rows = sqlx::query(&sql).bind(channel).bind(limit).fetch_all(&mut *tx).await?;
                for row in rows.iter().rev() {
                    events.push(event_from_row(row)?);
                }
            }
            tx.commit().await?;
            events.sort_by(|a, b| {
                (a.created_ms, a.id.channel(), a.id.seq()).cmp(&(b.created_ms, b.id.channel(), b.id.seq()))
            });
            let mut ids = IdVector::new();
            for channel in channels {
                ids.set(channel.clone(), states.get(channel).map_or(0, |state| state.last_id));
            }
            Ok((events, ids))
        })
    }

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

/// The id range each channel of a batch received: its counter went up by
/// `counts[channel]` to `last_ids[channel]`.
fn ranges(counts: &BTreeMap<&str, i64>, last_ids: &BTreeMap<String, u64>) -> Vec<Range> {
    counts
        .iter()
        .filter_map(|(channel, count)| {
            let last = *last_ids.get(*channel)?;
            Some(Range {
                channel: (*channel).to_owned(),
                first: last + 1 - to_u64(*count),
                last,
            })
        })
        .collect()
}

/// Hands out each channel's reserved ids to its events in send order.
pub(crate) fn assign_ids(
    events: &[&NewEvent],
    counts: &BTreeMap<&str, i64>,
    last_ids: &BTreeMap<String, u64>,
) -> Vec<u64> {
    let mut next: BTreeMap<&str, u64> = counts
        .iter()
        .map(|(channel, count)| {
            let last = last_ids.get(*channel).copied().unwrap_or(0);
            (*channel, last + 1 - to_u64(*count))
        })
        .collect();
    events
        .iter()
        .map(|event| {
            let id = next.entry(event.channel.as_str()).or_insert(1);
            let assigned = *id;
            *id += 1;
            assigned
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kept_connection_is_let_go_when_the_pool_closes() {
        let dir = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}/kept.db?mode=rwc", dir.path().display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(KEEP_FROM)
            .connect(&url)
            .await
            .expect("a pool");
        let mut kept = KeptConnection::default();
        kept.keep(pool.acquire().await.expect("a connection"), &pool);
        assert!(kept.kept().connection.is_some(), "kept");
        // Closing waits for every connection: while one is kept, forever.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(200), pool.close()).await;
        assert!(waiting.is_err(), "closing waits for the kept connection");
        let released = async {
            kept.released_on_close().await;
            pool.close().await;
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), released)
            .await
            .expect("closing ends once the writer lets go");
        assert!(kept.take().is_none());
    }

    #[test]
    fn resume_rule() {
        let fresh = ChannelState {
            last_id: 0,
            trimmed_through: 0,
            last_token: None,
        };
        assert!(fresh.can_resume_from(0));
        assert!(!fresh.can_resume_from(1));
        let trimmed = ChannelState {
            last_id: 10,
            trimmed_through: 4,
            last_token: None,
        };
        assert!(!trimmed.can_resume_from(0));
        assert!(!trimmed.can_resume_from(3));
        assert!(trimmed.can_resume_from(4));
        assert!(trimmed.can_resume_from(9));
        assert!(trimmed.can_resume_from(10));
        assert!(!trimmed.can_resume_from(11));
        let all_gone = ChannelState {
            last_id: 10,
            trimmed_through: 10,
            last_token: None,
        };
        assert!(all_gone.can_resume_from(10));
        assert!(!all_gone.can_resume_from(9));
    }

    #[test]
    fn ids_follow_counters_per_channel_in_send_order() {
        let event = |channel: &str| NewEvent {
            channel: channel.into(),
            event_type: "m".into(),
            data: "1".into(),
            skip_users: vec![],
            token: AppendToken::default(),
        };
        let events = [event("a"), event("b"), event("a"), event("a")];
        let events: Vec<&NewEvent> = events.iter().collect();
        let counts = BTreeMap::from([("a", 3), ("b", 1)]);
        let last_ids = BTreeMap::from([("a".to_string(), 13), ("b".to_string(), 1)]);
        assert_eq!(assign_ids(&events, &counts, &last_ids), [11, 1, 12, 13]);
    }
}
