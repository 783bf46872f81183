//! The health check (`health_path`): whether this instance can deliver.
//!
//! ```text
//! 200 {"status":"ok", ...}        storage answers, the bus (if any) is connected
//! 200 {"status":"degraded", ...}  storage answers, but the bus or a GRIP
//!                                 proxy is down: streams still work from
//!                                 storage, other instances' events arrive late
//! 503 {"status":"unavailable", ...}  storage does not answer: nothing can be
//!                                 delivered or stored
//! ```
//!
//! The body details each part: `storage` (backend, answered, latency),
//! `bus` (transport, the deployment's channel, connected, age of the last
//! notice, notices waiting),
//! `grip` (per proxy: items queued, the last publish error).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::http::Status;
use serde_json::{Value, json};

use crate::bus::{BusState, HEARTBEAT_LATE, SILENCE};
use crate::grip::publisher::GripPublisher;
use crate::measure::throttle::Throttle;
use crate::storage::{Storage, now_ms};

/// How long the storage probe may take before storage counts as down.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the health check looks at; managed by the stage.
///
/// Whoever can reach `health_path` reads its answer, so it says what is
/// wrong in the library's own words, never in the database's or the
/// proxy's (which can name hosts, users, databases, or echo a request):
/// those go to the log, at most once a minute.
pub(crate) struct Health {
    pub(crate) storage: Storage,
    pub(crate) bus: Option<Arc<BusState>>,
    pub(crate) grip: Option<GripPublisher>,
    /// A failure's details are logged once a minute at most.
    pub(crate) details_logged: Throttle,
}

/// A storage failure in the health check's words.
fn storage_failure(error: &rocket_db_pools::sqlx::Error) -> &'static str {
    use rocket_db_pools::sqlx::Error;
    match error {
        Error::Io(_) | Error::Tls(_) => "no connection to the database",
        Error::PoolTimedOut => "no database connection free within the pool's timeout",
        Error::PoolClosed | Error::WorkerCrashed => "the database pool is closed",
        Error::Database(_) => "the database refused the probe",
        _ => "the probe failed",
    }
}

impl Health {
    fn log_detail(&self, detail: &str) {
        if self.details_logged.allows(now_ms()) {
            log::warn!("eventstream: health: {detail} (details logged at most once a minute)");
        }
    }

    /// The status code and the body.
    pub(crate) async fn check(&self) -> (Status, Value) {
        let mut reasons: Vec<String> = Vec::new();
        let started = Instant::now();
        let probe = tokio::time::timeout(STORAGE_TIMEOUT, self.storage.ping()).await;
        let storage_up = matches!(probe, Ok(Ok(())));
        let storage = match probe {
            Ok(Ok(())) => json!({
                "backend": self.storage.backend(),
                "ok": true,
                "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
            }),
            Ok(Err(error)) => {
                reasons.push("storage does not answer".into());
                self.log_detail(&format!("the storage probe failed: {error}"));
                json!({"backend": self.storage.backend(), "ok": false, "error": storage_failure(&error)})
            }
            Err(_) => {
                reasons.push("storage does not answer".into());
                json!({
                    "backend": self.storage.backend(),
                    "ok": false,
                    "error": format!("no answer within {STORAGE_TIMEOUT:?}"),
                })
            }
        };
        let bus = self.bus.as_ref().map(|bus| {
            let health = bus.health();
            let late = health
                .heartbeat_age_ms
                .is_some_and(|age| age > HEARTBEAT_LATE.as_millis() as i64);
            if !health.connected {
                reasons.push(format!(
                    "the {} bus is disconnected: other instances' events arrive within broadcast_poll_secs",
                    health.kind
                ));
            } else if late {
                reasons.push(format!(
                    "the {} bus link carries nothing, not even this instance's heartbeat: it is replaced after {SILENCE:?}",
                    health.kind
                ));
            }
            json!({
                "kind": health.kind,
                "channel": health.channel,
                "connected": health.connected,
                "last_notice_age_ms": health.last_notice_age_ms,
                "heartbeat_age_ms": health.heartbeat_age_ms,
                "lag": health.lag,
            })
        });
        let grip = self.grip.as_ref().map(|publisher| {
            let proxies: Vec<Value> = publisher
                .status()
                .into_iter()
                .map(|proxy| {
                    if let Some(error) = &proxy.last_error {
                        reasons.push(format!("publishing to {} fails: {error}", proxy.proxy));
                    }
                    json!({
                        "proxy": proxy.proxy,
                        "queued": proxy.queued,
                        "queued_bytes": proxy.queued_bytes,
                        "last_error": proxy.last_error,
                    })
                })
                .collect();
            proxies
        });
        let (status, code) = match (storage_up, reasons.is_empty()) {
            (false, _) => ("unavailable", Status::ServiceUnavailable),
            (true, false) => ("degraded", Status::Ok),
            (true, true) => ("ok", Status::Ok),
        };
        let body = json!({
            "status": status,
            "reasons": reasons,
            "storage": storage,
            "bus": bus,
            "grip": grip,
        });
        (code, body)
    }
}
