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

use crate::bus::BusState;
use crate::grip::publisher::Publisher;
use crate::storage::Storage;

/// How long the storage probe may take before storage counts as down.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the health check looks at; managed by the stage.
pub(crate) struct Health {
    pub(crate) storage: Storage,
    pub(crate) bus: Option<Arc<BusState>>,
    pub(crate) grip: Option<Publisher>,
}

impl Health {
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
                json!({"backend": self.storage.backend(), "ok": false, "error": error.to_string()})
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
            if !health.connected {
                reasons.push(format!(
                    "the {} bus is disconnected: other instances' events arrive within broadcast_poll_secs",
                    health.kind
                ));
            }
            json!({
                "kind": health.kind,
                "channel": health.channel,
                "connected": health.connected,
                "last_notice_age_ms": health.last_notice_age_ms,
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
