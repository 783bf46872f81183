//! Reading the event log: counter rows, a replay page, a snapshot.

use std::collections::BTreeMap;

use rocket_db_pools::sqlx::{self, QueryBuilder, Row};

use super::handle::{Storage, to_i64, to_u64};
use super::rows::{ChannelState, Event, EventsPage, event_from_row, token};
use crate::wire::event_id::IdVector;

const SELECT_EVENTS: &str = "SELECT channel, id, event_type, data, skip_users, created_ms, \
     writer_id, append_seq FROM eventstream_events";

impl Storage {
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
}
