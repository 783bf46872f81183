//! The presence ticker: once per `presence_interval_ms`, whatever the
//! audience does meanwhile, it drops what outlived its lease and sends
//! each changed channel's one `stream-presence` event.

use std::sync::Arc;

use super::Presence;

/// Runs until the stage's runtime ends.
pub(crate) async fn run(presence: Arc<Presence>) {
    let mut every = tokio::time::interval(presence.settings().interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        presence.tick();
    }
}
