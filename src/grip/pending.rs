//! What a proxy has not been handed yet: per channel, the events queued
//! for it (or in a publish request) and the newest one settled before them.
//!
//! A proxied response holds at `prev-id` = the stream's position, and the
//! proxy checks every later item against it. Storage is ahead of the
//! publisher by the length of its queue: a hold at the newest stored event
//! while that event is still on its way makes the item before it arrive
//! with the wrong `prev-id`, and every stream held meanwhile asks the app
//! again (Pushpin rate-limits those updates). So a response reads storage
//! only up to what the proxy already has, and leaves the rest to the
//! publisher, whose items then continue exactly at the hold's `prev-id`.
//!
//! Only channels with something in flight have an entry; a settled event
//! (accepted, or given up and hinted) removes it once nothing follows it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Every event up to this one is settled.
    settled: u64,
    /// The newest event queued.
    queued: u64,
}

/// One proxy's in-flight events, per channel.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    channels: Mutex<HashMap<String, InFlight>>,
}

impl Pending {
    /// Event `seq` of `channel` was queued for the proxy.
    pub(crate) fn queued(&self, channel: &str, seq: u64) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        match channels.get_mut(channel) {
            Some(in_flight) => in_flight.queued = in_flight.queued.max(seq),
            None => {
                channels.insert(
                    channel.to_owned(),
                    InFlight {
                        settled: seq.saturating_sub(1),
                        queued: seq,
                    },
                );
            }
        }
    }

    /// Event `seq` of `channel` is settled: the proxy accepted it, or it
    /// was given up (and its channel hinted).
    pub(crate) fn settled(&self, channel: &str, seq: u64) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(in_flight) = channels.get_mut(channel) {
            in_flight.settled = in_flight.settled.max(seq);
            if in_flight.settled >= in_flight.queued {
                channels.remove(channel);
            }
        }
    }

    /// How far a response may read `channel`: the newest event the proxy
    /// has, while later ones are on their way; `None` when nothing is.
    pub(crate) fn readable_until(&self, channel: &str) -> Option<u64> {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.get(channel).map(|in_flight| in_flight.settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_before_what_is_in_flight() {
        let pending = Pending::default();
        assert_eq!(pending.readable_until("a"), None);
        pending.queued("a", 5);
        pending.queued("a", 6);
        assert_eq!(pending.readable_until("a"), Some(4));
        pending.settled("a", 5);
        assert_eq!(pending.readable_until("a"), Some(5));
        pending.settled("a", 6);
        assert_eq!(pending.readable_until("a"), None, "nothing in flight");
        assert_eq!(pending.readable_until("b"), None);
    }
}
