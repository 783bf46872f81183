//! The replay guard: a sealed notice heard once is not taken twice.
//!
//! Anyone who can `LISTEN` on the database or `SUBSCRIBE` on the Redis
//! server sees the sealed notices go by, and could send one again: a live
//! event shown twice, a kick repeated. Each sender numbers its live, kick
//! and `lost` notices and sends them in order, so a receiver takes from each
//! sender only numbers above the last it took, and only notices sealed
//! within [`FRESHNESS_MS`] of its own clock (which also covers senders it
//! has not heard since it started). Commit notices are hints to read
//! storage, so hearing one twice costs a read and moves nothing: they are
//! not numbered.

use std::collections::HashMap;

use crate::wire::notice::{FRESHNESS_MS, Notice};

/// Senders remembered, at most (each a few bytes). Only holders of the
/// bus key can make new ones, so this is about instances coming and going:
/// past it the one heard from least recently is forgotten.
const MAX_SENDERS: usize = 4096;

/// Why a sealed notice was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Sealed too long ago, or too far ahead of this clock.
    OutOfWindow,
    /// Its sender's number was taken already.
    Repeated,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::OutOfWindow => write!(
                f,
                "it was sealed more than {} s from this instance's clock (a replay, or clocks that disagree)",
                FRESHNESS_MS / 1000
            ),
            Stale::Repeated => f.write_str("it was heard before (a replay)"),
        }
    }
}

/// Per sender: the last number taken, and when.
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    senders: HashMap<u64, (u64, i64)>,
}

impl ReplayGuard {
    /// Takes `notice` (a live, kick or `lost` one) if it is fresh and new.
    pub(crate) fn admit(&mut self, notice: &Notice, now_ms: i64) -> Result<(), Stale> {
        if notice.sent_ms.abs_diff(now_ms) > FRESHNESS_MS.unsigned_abs() {
            return Err(Stale::OutOfWindow);
        }
        if let Some((last, seen)) = self.senders.get_mut(&notice.origin) {
            if notice.number <= *last {
                return Err(Stale::Repeated);
            }
            *last = notice.number;
            *seen = now_ms;
            return Ok(());
        }
        if self.senders.len() >= MAX_SENDERS
            && let Some(oldest) = self
                .senders
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(origin, _)| *origin)
        {
            self.senders.remove(&oldest);
        }
        self.senders.insert(notice.origin, (notice.number, now_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::notice::Body;

    fn notice(origin: u64, number: u64, sent_ms: i64) -> Notice {
        Notice {
            origin,
            sent_ms,
            number,
            body: Body::Lost("a".into()),
        }
    }

    #[test]
    fn each_number_is_taken_once_per_sender() {
        let mut guard = ReplayGuard::default();
        let now = 1_000_000;
        assert_eq!(guard.admit(&notice(1, 1, now), now), Ok(()));
        assert_eq!(guard.admit(&notice(1, 2, now), now), Ok(()));
        assert_eq!(guard.admit(&notice(1, 2, now), now), Err(Stale::Repeated));
        assert_eq!(guard.admit(&notice(1, 1, now), now), Err(Stale::Repeated));
        assert_eq!(
            guard.admit(&notice(2, 1, now), now),
            Ok(()),
            "another sender"
        );
    }

    #[test]
    fn a_notice_sealed_outside_the_window_is_refused() {
        let mut guard = ReplayGuard::default();
        let now = 10_000_000;
        for sent in [now - FRESHNESS_MS - 1, now + FRESHNESS_MS + 1] {
            assert_eq!(
                guard.admit(&notice(3, 1, sent), now),
                Err(Stale::OutOfWindow)
            );
        }
        assert_eq!(guard.admit(&notice(3, 1, now - FRESHNESS_MS), now), Ok(()));
    }

    #[test]
    fn the_senders_remembered_are_bounded() {
        let mut guard = ReplayGuard::default();
        for origin in 0..(MAX_SENDERS as u64 + 10) {
            guard
                .admit(&notice(origin, 1, 0), origin as i64)
                .expect("fresh");
        }
        assert_eq!(guard.senders.len(), MAX_SENDERS);
    }
}
