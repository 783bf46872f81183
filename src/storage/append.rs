//! Appending to the event log: one transaction per batch, each channel's
//! counter row bumped once, ids handed out in send order; and what became
//! of a COMMIT that got no answer.

use std::collections::BTreeMap;

use rocket_db_pools::sqlx::{self, QueryBuilder, Row, SqlitePool};

use super::handle::{Storage, to_i64, to_u64};
use super::kept_connection::KeptConnection;
use super::rows::{AppendToken, NewEvent, skip_users_column};
use super::sql::INSERT_EVENTS;
use crate::config::Durability;
use crate::wire::notice::{Range, Seal};

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
        let Batch {
            counts,
            last_tokens,
        } = Batch::of(events);
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
                    super::sql::announce(&mut tx, seal, ranges(&counts, &last_ids), now_ms).await?;
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
}

/// What a batch does to each of its channels' counter rows.
pub(crate) struct Batch<'a> {
    /// The events per channel: how far its counter moves.
    pub(crate) counts: BTreeMap<&'a str, i64>,
    /// The token of each channel's last event, kept on its counter row.
    pub(crate) last_tokens: BTreeMap<&'a str, AppendToken>,
}

impl<'a> Batch<'a> {
    pub(crate) fn of(events: &[&'a NewEvent]) -> Batch<'a> {
        let mut batch = Batch {
            counts: BTreeMap::new(),
            last_tokens: BTreeMap::new(),
        };
        for event in events {
            *batch.counts.entry(event.channel.as_str()).or_default() += 1;
            batch
                .last_tokens
                .insert(event.channel.as_str(), event.token);
        }
        batch
    }
}

/// The id range each channel of a batch received: its counter went up by
/// `counts[channel]` to `last_ids[channel]`.
pub(crate) fn ranges(counts: &BTreeMap<&str, i64>, last_ids: &BTreeMap<String, u64>) -> Vec<Range> {
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
