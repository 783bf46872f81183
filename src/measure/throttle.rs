//! A throttle for log lines that outsiders can provoke (forged bus
//! notices, a failing health probe polled every second): the first one of
//! each period goes through, the rest are only counted elsewhere.

use std::sync::atomic::{AtomicI64, Ordering};

/// Lets one event through per period.
#[derive(Debug)]
pub(crate) struct Throttle {
    period_ms: i64,
    /// When one last went through (ms since the epoch; 0: never).
    last_ms: AtomicI64,
}

impl Throttle {
    pub(crate) const fn every_ms(period_ms: i64) -> Throttle {
        Throttle {
            period_ms,
            last_ms: AtomicI64::new(0),
        }
    }

    /// Whether an event at `now_ms` may go through; only one of several
    /// racing for the same period does.
    pub(crate) fn allows(&self, now_ms: i64) -> bool {
        let last = self.last_ms.load(Ordering::Acquire);
        now_ms - last >= self.period_ms
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_period() {
        let throttle = Throttle::every_ms(60_000);
        assert!(throttle.allows(100_000));
        assert!(!throttle.allows(100_001));
        assert!(!throttle.allows(159_999));
        assert!(throttle.allows(160_000));
    }
}
