//! The SQL both backends run, written once.
//!
//! sqlx's query builders and executors are concrete per backend, and the
//! generic bounds a function over both would need (on `Encode`, `Type`,
//! `ColumnIndex` and the executor of each) would outweigh the statements;
//! these macros expand against each backend's concrete types instead.
//! Declared first in `storage`, so every file of it can use them.

use rocket_db_pools::sqlx;

use crate::wire::notice::{self, Range, Seal};

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
        $query.push($crate::storage::sql::UPSERT_COUNTERS);
        $query.push_values($counts, |mut row, (channel, count)| {
            let token: AppendToken = $last_tokens.get(channel).copied().unwrap_or_default();
            row.push_bind(*channel)
                .push_bind(*count)
                .push_bind(0_i64)
                .push_bind(token.writer)
                .push_bind(token.seq);
        });
        $query.push($crate::storage::sql::UPSERT_COUNTERS_CONFLICT);
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
        let mut insert = QueryBuilder::new($crate::storage::sql::INSERT_EVENTS);
        insert.push_values($events.iter().zip($ids), |mut row, (event, id)| {
            row.push_bind(event.channel.as_str()).push_bind(to_i64(*id));
            push_event_columns!(row, event, $now_ms);
        });
        insert.build().execute(&mut *$tx).await?;
    }};
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

/// Tells the other instances of the ranges committed by this
/// transaction, inside it: they hear it only if it commits. One
/// statement per payload; a batch needs one unless it touched hundreds
/// of channels.
pub(crate) async fn announce(
    connection: &mut sqlx::PgConnection,
    seal: &Seal,
    ranges: Vec<Range>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    for payload in seal.committed(ranges, now_ms) {
        sqlx::query(notice::NOTIFY_SQL)
            .bind(seal.channel())
            .bind(payload)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}
