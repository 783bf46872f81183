//! The kicks this process carried out lately, for the delivery trace: a
//! ring of the last [`KEPT`], each with when, where and whom.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Kicks remembered, at most.
const KEPT: usize = 64;

/// One kick: streams of `user_id` on `channel` ended at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KickRecord {
    pub(crate) at_ms: i64,
    pub(crate) channel: String,
    pub(crate) user_id: Option<String>,
    /// Streams of this process it ended.
    pub(crate) streams: usize,
}

/// The last kicks, oldest first.
#[derive(Debug, Default)]
pub(crate) struct KickLog(Mutex<VecDeque<KickRecord>>);

impl KickLog {
    pub(crate) fn record(&self, record: KickRecord) {
        let mut kicks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kicks.len() == KEPT {
            kicks.pop_front();
        }
        kicks.push_back(record);
    }

    /// The kicks on `channel` still remembered, newest first.
    pub(crate) fn on(&self, channel: &str) -> Vec<KickRecord> {
        let kicks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kicks
            .iter()
            .rev()
            .filter(|kick| kick.channel == channel)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_kicks_only() {
        let log = KickLog::default();
        for n in 0..(KEPT + 10) {
            log.record(KickRecord {
                at_ms: n as i64,
                channel: if n % 2 == 0 { "a" } else { "b" }.into(),
                user_id: Some(format!("u{n}")),
                streams: 1,
            });
        }
        let on_a = log.on("a");
        assert_eq!(on_a.len(), KEPT / 2);
        assert_eq!(on_a[0].at_ms, (KEPT + 8) as i64, "newest first");
    }
}
