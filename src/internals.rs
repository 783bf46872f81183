//! Internals for the criterion benchmarks in `benches/` (and fuzz
//! targets): the hot path, reachable from outside the crate only with the
//! non-default `internals` cargo feature. **Not part of the API**: anything
//! here may change in any release, semver does not apply.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::delivery::fanout::LiveEvent;
use crate::delivery::hub::{Delivery, Hub, InboxLimits, Registration};
use crate::wire::event_id::IdVector;
use crate::wire::frame::{Frame, encode_body};

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

/// The bodies of the fuzz targets (`fuzz/`), also run as property tests on
/// stable (`tests/properties.rs`). Each takes arbitrary input and panics
/// only when an invariant breaks; a panic is a bug.
pub mod fuzz {
    use crate::access::request_info;
    use crate::config::{Config, GripProxyConfig};
    use crate::grip::instruct::parse_grip_last;
    use crate::grip::signature::Verifier;
    use crate::wire::channel;
    use crate::wire::event_id::{EventId, IdVector};
    use crate::wire::frame::{self, Frame};

    /// `Last-Event-ID` / id vectors: a parsed vector prints to text that
    /// parses back to the same vector.
    pub fn id_vector(text: &str) {
        if let Ok(ids) = IdVector::parse(text) {
            let printed = ids.to_string();
            let again = IdVector::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e}"));
            assert_eq!(again, ids, "{text:?} printed as {printed:?}");
        }
    }

    /// Channel names and the values requests carry: validation never
    /// panics; a valid name survives quoting (as in ids and GRIP channel
    /// names) and an event id built from it parses back to it.
    pub fn channel_and_query(text: &str) {
        let _ = request_info::bearer(text);
        let _ = request_info::rightmost_address(text);
        let _ = parse_grip_last(std::iter::once(text));
        let _ = channel::unquote(text);
        if channel::validate(text).is_ok() {
            let quoted = channel::quote(text);
            assert_eq!(channel::unquote(&quoted).as_deref(), Some(text));
            assert!(!quoted.contains([',', ':', ' ']), "{quoted:?}");
            let id = EventId::new(text, 7).to_string();
            let parsed = IdVector::parse(&id).unwrap_or_else(|e| panic!("{id:?}: {e}"));
            assert_eq!(parsed.get(text), Some(7), "{id:?}");
        }
        let names: Vec<String> = text.split('&').map(str::to_owned).collect();
        let _ = channel::validate_list(names, 10);
    }

    /// The frame of an event as the library encodes it (`None` when the
    /// event type is refused, as `send_event` refuses it).
    pub fn event_frame(event_type: &str, data: &str, channel: &str, seq: u64) -> Option<Vec<u8>> {
        frame::validate_event_type(event_type).ok()?;
        let id = EventId::new(channel, seq).to_string();
        Some(Frame::encode(event_type, data, Some(&id)).with_id.to_vec())
    }

    /// What an `EventSource` must receive for `event_frame`: the event type,
    /// the data with each CR, LF or CRLF as one LF, and the id without CR,
    /// LF and NUL.
    pub fn expected_event(event_type: &str, data: &str, channel: &str, seq: u64) -> [String; 3] {
        let data = data.replace("\r\n", "\n").replace('\r', "\n");
        let id: String = EventId::new(channel, seq)
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
            .collect();
        [event_type.to_owned(), data, id]
    }

    /// `Grip-Sig` values: never a panic, and nothing forged verifies.
    pub fn grip_sig(token: &str) {
        let proxy = GripProxyConfig {
            control_uri: "http://127.0.0.1:5561".into(),
            verify_iss: Some("pushpin".into()),
            verify_key: Some("fuzz-verify-key-0123456789".into()),
            ..GripProxyConfig::default()
        };
        let verifier = Verifier::new(&[proxy]).expect("a valid proxy");
        assert_eq!(verifier.proxy(Some(token)), None, "{token:?} verified");
    }

    /// Configuration from arbitrary TOML: a clear error or a valid
    /// configuration, never a panic.
    pub fn config(toml: &str) {
        use rocket::figment::{Figment, providers::Format, providers::Toml};
        let figment = Figment::from(Toml::string(toml));
        if let Ok(mut config) = Config::from_figment(&figment) {
            config
                .validate()
                .expect("a loaded configuration stays valid");
        }
    }
}
