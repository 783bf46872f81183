//! Retention: a background task that trims the event log by age and by
//! count per channel, off the publish path, in pieces that take turns
//! with the writer.
//!
//! A pass walks the channels that have something due, a page at a time,
//! and removes each one's due prefix in pieces of at most
//! [`PIECE_ROWS`](crate::storage::trim::PIECE_ROWS) events (see
//! `storage::trim`). On SQLite each piece takes the writer's turn (the
//! write gate the writer and applications' transactions share), so it
//! never runs into the writer's lock and a batch waits at most one piece;
//! on PostgreSQL a piece locks one channel's counter row for as long. So a
//! backlog of any size is trimmed while sends flow, and a pass that fails
//! (the database away) is counted in the metrics and tried again at the
//! next interval, from where it stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::measure::metrics::Metrics;
use crate::storage::trim::{Candidate, Rule};
use crate::storage::{Storage, now_ms};
use crate::write::gate::WriteGate;

/// Channels read per query when looking for what is due.
const CANDIDATES_PER_PAGE: u64 = 500;

/// Starts the trimming task; it runs once at start and then every
/// `trim_interval_secs` until aborted.
pub(crate) fn spawn(
    storage: Storage,
    gate: Arc<WriteGate>,
    metrics: Arc<Metrics>,
    config: &Config,
) -> JoinHandle<()> {
    let max_age_ms = i64::try_from(config.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let max_count = config.retention_count;
    let mut interval = tokio::time::interval(Duration::from_secs(config.trim_interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let trimmer = Trimmer {
        storage,
        gate,
        metrics,
    };
    tokio::spawn(async move {
        loop {
            interval.tick().await;
            let rule = Rule {
                cutoff_ms: now_ms().saturating_sub(max_age_ms),
                max_count,
            };
            match trimmer.pass(rule).await {
                Ok(0) => {}
                Ok(deleted) => log::info!("eventstream: retention trimmed {deleted} events"),
                Err(error) => {
                    trimmer.metrics.trim_failed();
                    log::warn!(
                        "eventstream: a retention pass stopped (tried again in {:?}; counted in trim_failures): {error}",
                        interval.period()
                    );
                }
            }
        }
    })
}

struct Trimmer {
    storage: Storage,
    gate: Arc<WriteGate>,
    metrics: Arc<Metrics>,
}

impl Trimmer {
    /// One pass over every channel with something due; returns how many
    /// events went.
    async fn pass(&self, rule: Rule) -> Result<u64, rocket_db_pools::sqlx::Error> {
        let mut deleted = 0;
        let mut after = String::new();
        loop {
            let (candidates, next) = self
                .storage
                .trim_candidates(&after, CANDIDATES_PER_PAGE, rule)
                .await?;
            for candidate in candidates {
                deleted += self.trim_channel(candidate, rule).await?;
            }
            match next {
                Some(name) => after = name,
                None => return Ok(deleted),
            }
        }
    }

    /// Trims one channel's due prefix, piece by piece.
    async fn trim_channel(
        &self,
        mut candidate: Candidate,
        rule: Rule,
    ) -> Result<u64, rocket_db_pools::sqlx::Error> {
        let mut deleted = 0;
        while let Some(cut) = self.storage.trim_cut(&candidate, rule).await? {
            let turn = match self.storage {
                Storage::Sqlite(_) => Some(self.gate.writer_turn().await),
                Storage::Postgres(_) => None,
            };
            let piece = self.storage.trim_piece(&candidate.channel, cut).await?;
            drop(turn);
            self.metrics.trimmed(piece);
            deleted += piece;
            candidate.trimmed_through = cut;
            // Let waiting sends and streams run between pieces.
            tokio::task::yield_now().await;
        }
        Ok(deleted)
    }
}
