//! The publishing side: POSTs events carrying their send time and index.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (client and server share a clock here).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Sends events through an HTTP publish endpoint.
#[derive(Clone)]
pub(crate) struct Publisher {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
}

impl Publisher {
    /// `url` is the full publish URL (e.g. `http://127.0.0.1:8000/events/bench`).
    pub(crate) fn new(url: String, key: Option<String>) -> Publisher {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Publisher { client, url, key }
    }

    /// Publishes event number `index`; the body is
    /// `{"data":{"t":<send time ns>,"i":<index>}}`.
    pub(crate) async fn publish(&self, index: u64) -> Result<(), String> {
        self.publish_stamped(index, now_ns()).await
    }

    /// Publishes event number `index` stamped with `at_ns`, the moment the
    /// event was due (latency is counted from there).
    pub(crate) async fn publish_stamped(&self, index: u64, at_ns: u64) -> Result<(), String> {
        let body = format!(r#"{{"data":{{"t":{at_ns},"i":{index}}}}}"#);
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("publish answered {}", response.status()))
        }
    }
}
