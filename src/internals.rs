//! Internals for the criterion benchmarks in `benches/` (and fuzz
//! targets): the hot path, reachable from outside the crate only with the
//! non-default `internals` cargo feature. **Not part of the API**: anything
//! here may change in any release, semver does not apply.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event_id::IdVector;
use crate::fanout::LiveEvent;
use crate::frame::{Frame, encode_body};
use crate::hub::{Delivery, Hub, InboxLimits, Registration};

/// Encodes one event frame with its id; returns its length.
pub fn encode_frame(event_type: &str, data: &str, id: &str) -> usize {
    Frame::encode(event_type, data, Some(id)).with_id.len()
}

/// Parses an id vector; returns how many channels it names.
pub fn parse_id_vector(text: &str) -> usize {
    IdVector::parse(text).map_or(0, |ids| ids.iter().count())
}

/// A hub with `subscribers` streams on one channel.
pub struct HubBench {
    hub: Arc<Hub>,
    subscribers: Vec<Registration>,
    event: Arc<LiveEvent>,
    scratch: VecDeque<Delivery>,
}

impl HubBench {
    /// Sets up the hub and its subscribers.
    pub fn new(subscribers: usize) -> HubBench {
        let hub = Arc::new(Hub::new(Arc::default()));
        let registrations = (0..subscribers)
            .map(|_| {
                let limits = InboxLimits {
                    entries: 1024,
                    bytes: usize::MAX,
                };
                hub.subscribe(None, vec!["bench".into()], limits)
            })
            .collect();
        let event = Arc::new(LiveEvent::new(
            "bench".into(),
            Some(1),
            encode_body("message", r#"{"t":1700000000000000000,"i":1}"#),
            Vec::new(),
        ));
        HubBench {
            hub,
            subscribers: registrations,
            event,
            scratch: VecDeque::new(),
        }
    }

    /// Publishes `events` events, then empties every inbox (as the streams
    /// would); returns the number of deliveries.
    pub fn publish(&mut self, events: usize) -> usize {
        for _ in 0..events {
            self.hub.publish(&self.event);
        }
        let mut delivered = 0;
        for subscriber in &self.subscribers {
            subscriber.take(&mut self.scratch);
            delivered += self.scratch.len();
            self.scratch.clear();
        }
        delivered
    }
}
