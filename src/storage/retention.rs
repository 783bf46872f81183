//! Retention: a background task that trims the event log by age and by
//! count per channel, off the publish path.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Config;

use super::{Storage, now_ms};

/// Starts the trimming task; it runs once at start and then every
/// `trim_interval_secs` until aborted.
pub(crate) fn spawn(storage: Storage, config: &Config) -> JoinHandle<()> {
    let max_age_ms = i64::try_from(config.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let max_count = config.retention_count;
    let mut interval = tokio::time::interval(Duration::from_secs(config.trim_interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        loop {
            interval.tick().await;
            match storage
                .trim(now_ms().saturating_sub(max_age_ms), max_count)
                .await
            {
                Ok(0) => {}
                Ok(deleted) => log::info!("eventstream: retention trimmed {deleted} events"),
                Err(e) => log::warn!("eventstream: retention pass failed (will retry): {e}"),
            }
        }
    })
}
