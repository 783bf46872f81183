//! Trimming the event log, one bounded piece at a time.
//!
//! Retention removes a prefix of each channel: events older than
//! `retention_secs`, and all but the newest `retention_count`. Each piece
//! removes at most [`PIECE_ROWS`] events of one channel and raises its
//! `trimmed_through` in the same transaction, so the retained ids stay
//! contiguous, and a piece holds the channel's counter row (PostgreSQL) or
//! the write lock (SQLite) only for that long: sends wait at most one
//! piece, however large the backlog. Finding what to trim reads the
//! counters and each channel's oldest event by primary key, a page of
//! channels per query.

use rocket_db_pools::sqlx::{self, Row};

use super::handle::{Storage, to_i64, to_u64};

/// Events one piece removes, at most.
pub(crate) const PIECE_ROWS: u64 = 1000;

/// A channel that may have something to trim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) channel: String,
    pub(crate) last_id: u64,
    pub(crate) trimmed_through: u64,
}

/// What to trim: events older than `cutoff_ms`, and past `max_count` per
/// channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) cutoff_ms: i64,
    pub(crate) max_count: Option<u64>,
}

impl Storage {
    /// Up to `limit` channels named after `after`, in name order, and
    /// whether the page was full: those whose oldest stored event is older
    /// than the cutoff (or missing) or that hold more than `max_count`.
    pub(crate) async fn trim_candidates(
        &self,
        after: &str,
        limit: u64,
        rule: Rule,
    ) -> Result<(Vec<Candidate>, Option<String>), sqlx::Error> {
        let sql = "SELECT c.name, c.last_id, c.trimmed_through, e.created_ms \
                   FROM eventstream_channels c \
                   LEFT JOIN eventstream_events e ON e.channel = c.name AND e.id = c.trimmed_through + 1 \
                   WHERE c.name > $1 AND c.last_id > c.trimmed_through \
                   ORDER BY c.name LIMIT $2";
        dispatch!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(after)
                .bind(to_i64(limit))
                .fetch_all(pool)
                .await?;
            let next = (rows.len() as u64 == limit)
                .then(|| rows.last().map(|row| row.try_get::<String, _>("name")))
                .flatten()
                .transpose()?;
            let mut candidates = Vec::new();
            for row in &rows {
                let candidate = Candidate {
                    channel: row.try_get("name")?,
                    last_id: to_u64(row.try_get("last_id")?),
                    trimmed_through: to_u64(row.try_get("trimmed_through")?),
                };
                let oldest: Option<i64> = row.try_get("created_ms")?;
                let aged = oldest.is_none_or(|created| created < rule.cutoff_ms);
                let crowded = rule.max_count.is_some_and(|max| {
                    candidate.last_id - candidate.trimmed_through > max
                });
                if aged || crowded {
                    candidates.push(candidate);
                }
            }
            Ok((candidates, next))
        })
    }

    /// Where the next piece of `candidate` cuts (every id up to it goes):
    /// within its next [`PIECE_ROWS`] events, the newest one older than the
    /// cutoff, or as far as `max_count` asks; `None` when nothing is due.
    pub(crate) async fn trim_cut(
        &self,
        candidate: &Candidate,
        rule: Rule,
    ) -> Result<Option<u64>, sqlx::Error> {
        let from = candidate.trimmed_through;
        let sql = "SELECT MAX(id) AS cut FROM \
                   (SELECT id, created_ms FROM eventstream_events \
                    WHERE channel = $1 AND id > $2 ORDER BY id LIMIT $3) AS head \
                   WHERE created_ms < $4";
        let aged: Option<i64> = dispatch!(self, pool => {
            sqlx::query(sql)
                .bind(candidate.channel.as_str())
                .bind(to_i64(from))
                .bind(to_i64(PIECE_ROWS))
                .bind(rule.cutoff_ms)
                .fetch_one(pool)
                .await?
                .try_get("cut")?
        });
        let aged = aged.map_or(0, to_u64);
        let counted = rule
            .max_count
            .map_or(0, |max| candidate.last_id.saturating_sub(max))
            .min(from + PIECE_ROWS);
        let cut = aged.max(counted);
        Ok((cut > from).then_some(cut))
    }

    /// Removes the events of `channel` up to `cut` and raises its
    /// `trimmed_through` to it, in one transaction. Returns how many
    /// events went.
    pub(crate) async fn trim_piece(&self, channel: &str, cut: u64) -> Result<u64, sqlx::Error> {
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            // A write first: SQLite takes its write lock here, so the
            // transaction never has to upgrade a read.
            let raised = sqlx::query(
                "UPDATE eventstream_channels SET trimmed_through = $1 WHERE name = $2 AND trimmed_through < $3",
            )
            .bind(to_i64(cut))
            .bind(channel)
            .bind(to_i64(cut))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let deleted = if raised == 0 {
                0
            } else {
                sqlx::query("DELETE FROM eventstream_events WHERE channel = $1 AND id <= $2")
                    .bind(channel)
                    .bind(to_i64(cut))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            };
            tx.commit().await?;
            Ok(deleted)
        })
    }
}
