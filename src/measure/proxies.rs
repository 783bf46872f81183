//! How publishing to each GRIP proxy is going, as the delivery trace shows
//! it: what waits, what was given up, the last success and failure.
//!
//! The GRIP publisher keeps these; layers below it ask through
//! [`ProxyProbe`] without knowing it.

use serde::Serialize;

/// One proxy's publishing, in the library's own words (never the proxy's
/// answer, which can echo a request or name a host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyState {
    /// The proxy's control URI, without credentials.
    pub proxy: String,
    /// Items waiting to be published.
    pub queued: usize,
    /// What they weigh, with the batch being sent.
    pub queued_bytes: usize,
    /// Items given up after every retry failed (their channels were hinted,
    /// so proxied streams fetch them from the app).
    pub given_up: u64,
    /// How long ago a publish last succeeded, in milliseconds; `None`:
    /// never, since this process started.
    pub last_success_age_ms: Option<u64>,
    /// Why the last publish failed, unless one succeeded since.
    pub last_error: Option<String>,
}

/// Tells each proxy's [`ProxyState`] (the GRIP publisher).
pub(crate) trait ProxyProbe: Send + Sync + 'static {
    /// One state per proxy, in the order of the configuration.
    fn proxy_states(&self) -> Vec<ProxyState>;
}
