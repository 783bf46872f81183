//! Stream limits: how many streams this process holds open, in all and per
//! client address. A stream takes a [`StreamPermit`] before it is opened and
//! gives it back when it ends; over a limit, the client is told to retry
//! later (see `frame::retry_later`), which `EventSource` does by itself.
//!
//! Behind a GRIP proxy the proxy holds the connections: proxied requests
//! are short and all come from the proxy's address, so they take no permit.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The `retry:` a deferred stream gets, in milliseconds: spread over
/// [1 s, 5 s) so that clients refused together do not come back together.
pub(crate) fn jittered_retry_ms() -> u64 {
    const MIN_MS: u64 = 1_000;
    const SPREAD_MS: u64 = 4_000;
    // RandomState is seeded per process and varies per instance: enough
    // randomness to spread reconnects, without a dependency.
    MIN_MS + RandomState::new().hash_one(std::time::Instant::now()) % SPREAD_MS
}

/// The configured limits and the streams counted against them.
#[derive(Debug)]
pub(crate) struct StreamLimits {
    max_streams: Option<usize>,
    max_per_address: Option<usize>,
    open: AtomicUsize,
    /// Streams per client address; only kept when there is a per-address
    /// limit, and an address leaves the map with its last stream.
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// Which limit refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitReached {
    /// `max_streams`: this process holds as many streams as it may.
    Streams,
    /// `max_streams_per_ip`: this address holds as many as it may.
    PerAddress,
}

impl LimitReached {
    /// Why, for the comment line of the answer.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            LimitReached::Streams => "this server holds as many streams as it may (max_streams)",
            LimitReached::PerAddress => {
                "this address holds as many streams as it may (max_streams_per_ip)"
            }
        }
    }
}

/// One open stream's place under the limits, given back on drop.
#[derive(Debug)]
pub(crate) struct StreamPermit {
    limits: Arc<StreamLimits>,
    address: Option<IpAddr>,
}

impl StreamLimits {
    pub(crate) fn new(max_streams: Option<usize>, max_per_address: Option<usize>) -> Self {
        StreamLimits {
            max_streams,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        }
    }

    /// A permit for a stream from `address` (`None`: unknown, counted only
    /// against `max_streams`), or the limit that refuses it.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        address: Option<IpAddr>,
    ) -> Result<StreamPermit, LimitReached> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_streams.is_some_and(|max| open > max) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitReached::Streams);
        }
        let counted = match (self.max_per_address, address) {
            (Some(max), Some(address)) => {
                let mut per_address = self.per_address();
                let count = per_address.entry(address).or_insert(0);
                if *count >= max {
                    drop(per_address);
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return Err(LimitReached::PerAddress);
                }
                *count += 1;
                Some(address)
            }
            _ => None,
        };
        Ok(StreamPermit {
            limits: Arc::clone(self),
            address: counted,
        })
    }

    fn per_address(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            let mut per_address = self.limits.per_address();
            if let Some(count) = per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&address);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn permits_count_in_all_and_per_address_and_come_back() {
        let limits = Arc::new(StreamLimits::new(Some(3), Some(2)));
        let a1 = limits.acquire(ip("192.0.2.1")).expect("first");
        let a2 = limits.acquire(ip("192.0.2.1")).expect("second");
        assert_eq!(
            limits.acquire(ip("192.0.2.1")).expect_err("third from a"),
            LimitReached::PerAddress
        );
        let b1 = limits.acquire(ip("192.0.2.2")).expect("b");
        assert_eq!(
            limits.acquire(ip("192.0.2.3")).expect_err("four in all"),
            LimitReached::Streams
        );
        drop(a1);
        let a3 = limits
            .acquire(ip("192.0.2.1"))
            .expect("a's place came back");
        drop((a2, a3, b1));
        assert_eq!(limits.open.load(Ordering::Acquire), 0);
        assert!(limits.per_address().is_empty(), "no address is kept");
    }

    #[test]
    fn retries_are_spread_over_one_to_five_seconds() {
        let delays: std::collections::BTreeSet<u64> =
            (0..64).map(|_| jittered_retry_ms()).collect();
        assert!(
            delays.iter().all(|ms| (1_000..5_000).contains(ms)),
            "{delays:?}"
        );
        assert!(delays.len() > 8, "spread, not one value: {delays:?}");
    }

    #[test]
    fn without_limits_nothing_is_kept_per_address() {
        let limits = Arc::new(StreamLimits::new(None, None));
        let permits: Vec<_> = (0..100)
            .map(|_| limits.acquire(ip("192.0.2.1")).expect("unlimited"))
            .collect();
        assert!(limits.per_address().is_empty());
        drop(permits);
        assert_eq!(limits.open.load(Ordering::Acquire), 0);
    }
}
