//! Notices: what instances sharing one event log tell each other over the
//! bus (`broadcast = "postgres"` or `"redis"`), and the seal that makes
//! them trustworthy.
//!
//! The writer announces each committed batch ([`Body::Committed`]: the id
//! range every channel received); receivers read the events themselves
//! from storage, so a commit notice is only ever a hint to look. Live-only
//! events (which storage never sees) ride inline, kicks too.
//!
//! A bus is shared ground: any role that can connect to the PostgreSQL
//! database may `NOTIFY`, any client of the Redis server may `PUBLISH`, and
//! neither scopes its channels to a schema or a db number. So every notice
//! is sealed:
//!
//! - it travels on a channel named after the event log's own id (written
//!   by its first migration) and `bus_key`: instances of one deployment
//!   share it without configuration, two event logs never do;
//! - it carries an HMAC-SHA256 tag under `bus_key`; a notice whose tag
//!   does not verify is dropped before it moves anything;
//! - it names its sender (`o`), when it was sent (`t`) and, for live
//!   events, kicks and `lost` notices, a number that grows per sender
//!   (`n`), so that one captured from the bus cannot be played again.
//!
//! ```text
//! 3b5c…(64 hex digits: HMAC-SHA256 of what follows).{"o":…,"t":…,"n":…,"live":{…}}
//! ```
//!
//! A notice is at most [`MAX_NOTICE_BYTES`] (PostgreSQL refuses payloads of
//! 8,000 bytes or more): a batch touching many channels is split over
//! several notices of the same transaction.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::presence_report::PresenceReport;
use crate::error::StreamError;

/// Sends one notice (`$2`) on a channel (`$1`): the writer inside a
/// batch's transaction, the bus's sender on its own.
pub(crate) const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

/// Largest payload sent, in bytes, tag included; PostgreSQL's limit is
/// 8,000.
pub(crate) const MAX_NOTICE_BYTES: usize = 7_900;

/// The tag in front of every payload: 32 bytes as hex, and a dot.
const TAG_CHARS: usize = 65;

/// How far a live notice's send time may be from the receiver's clock.
/// Instances' clocks must agree within it (NTP keeps them within
/// milliseconds); a notice outside it is refused as a replay.
pub(crate) const FRESHNESS_MS: i64 = 120_000;

/// The events one channel received in a committed batch: ids `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Range {
    #[serde(rename = "c")]
    pub(crate) channel: String,
    #[serde(rename = "f")]
    pub(crate) first: u64,
    #[serde(rename = "l")]
    pub(crate) last: u64,
}

/// One notification's payload, once its seal is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    /// The sending instance (random per process).
    #[serde(rename = "o")]
    pub(crate) origin: u64,
    /// When it was sealed, in milliseconds since the Unix epoch.
    #[serde(rename = "t")]
    pub(crate) sent_ms: i64,
    /// The sender's count of its live, kick and `lost` notices (1, 2, …);
    /// 0 on commit notices, which are hints and may be heard twice.
    #[serde(rename = "n", default)]
    pub(crate) number: u64,
    #[serde(flatten)]
    pub(crate) body: Body,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// A batch committed: the id range each channel received.
    #[serde(rename = "commit")]
    Committed(Vec<Range>),
    /// An event on a non-persistent channel: its encoded `event:`/`data:`
    /// lines and the users it skips.
    #[serde(rename = "live")]
    Live {
        #[serde(rename = "c")]
        channel: String,
        #[serde(rename = "b")]
        body: String,
        #[serde(rename = "s", default, skip_serializing_if = "Vec::is_empty")]
        skip_users: Vec<String>,
    },
    /// A live-only event too large to ride in a notice: the other
    /// instances' streams of this channel missed it.
    #[serde(rename = "lost")]
    Lost(String),
    /// A heartbeat: each instance hears its own, which proves its link to
    /// the bus carries notices both ways.
    #[serde(rename = "ping")]
    Ping {},
    /// Who reads which channel through the sender (see
    /// [`super::presence_report`]).
    #[serde(rename = "presence")]
    Presence(PresenceReport),
    /// Asks instance `o` for a full presence report (a receiver's view of
    /// it disagrees with its digest).
    #[serde(rename = "ask")]
    PresenceAsk {
        #[serde(rename = "o")]
        origin: u64,
    },
    /// A revoked permission: end the user's streams on the channel.
    #[serde(rename = "kick")]
    Kick {
        #[serde(rename = "c")]
        channel: String,
        #[serde(rename = "u")]
        user_id: Option<String>,
        #[serde(rename = "e")]
        error: StreamError,
    },
}

/// Why a payload heard on the bus was not taken as a notice.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No tag in front, or not one of ours.
    Unsealed,
    /// The tag does not match: a forgery, or an instance with another
    /// `bus_key`.
    BadSeal,
    /// Sealed, but not a notice this version reads.
    Malformed(serde_json::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unsealed => f.write_str("it carries no seal"),
            Refused::BadSeal => {
                f.write_str("its seal does not verify (a forgery, or another bus_key)")
            }
            Refused::Malformed(error) => write!(f, "it is not a notice ({error})"),
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

/// One instance's seal on the bus: the deployment's channel, the key that
/// tags its notices, and this instance's name in them.
pub(crate) struct Seal {
    origin: u64,
    channel: String,
    mac: HmacSha256,
    /// The number of the last live, kick or `lost` notice sealed.
    sealed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("origin", &self.origin)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Seal {
    /// The seal of instance `origin` on the bus of the event log `log_id`,
    /// keyed with `key` (the deployment's `bus_key`).
    pub(crate) fn new(origin: u64, log_id: &str, key: &[u8]) -> Seal {
        // HMAC takes a key of any length (a long one is hashed first).
        let mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        // The channel depends on the log and on the key, and reveals
        // neither: two deployments differing in either never meet.
        let mut naming = mac.clone();
        naming.update(b"eventstream bus channel\0");
        naming.update(log_id.as_bytes());
        let digest = naming.finalize().into_bytes();
        Seal {
            origin,
            channel: format!("eventstream_{}", hex(&digest[..12])),
            mac,
            sealed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// This instance's id in notices.
    pub(crate) fn origin(&self) -> u64 {
        self.origin
    }

    /// The `NOTIFY` / pub/sub channel of this deployment: lower-case
    /// letters, digits and `_`, 36 characters, so a PostgreSQL identifier
    /// as it is.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    fn tag(&self, json: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(json.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    fn sealed(&self, notice: &Notice) -> Option<String> {
        let json = serde_json::to_string(notice).ok()?;
        let payload = format!("{}.{json}", self.tag(&json));
        (payload.len() <= MAX_NOTICE_BYTES).then_some(payload)
    }

    /// Whether `body` fits in one notice, whatever its numbers.
    pub(crate) fn fits(&self, body: &Body) -> bool {
        // `{"o":<20 digits>,"t":<20>,"n":<20>,` and the closing brace.
        serde_json::to_string(body)
            .is_ok_and(|json| TAG_CHARS + 80 + json.len() <= MAX_NOTICE_BYTES)
    }

    /// A live event, kick or `lost` notice, numbered and sealed; `None`
    /// when it would not fit in one notification.
    pub(crate) fn seal(&self, body: Body, now_ms: i64) -> Option<String> {
        let number = self
            .sealed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.sealed(&Notice {
            origin: self.origin,
            sent_ms: now_ms,
            number,
            body,
        })
    }

    /// The sealed payloads announcing `ranges`, each within
    /// [`MAX_NOTICE_BYTES`]: as many ranges per payload as fit. (A channel
    /// name is at most a few hundred bytes, so one range always fits.)
    pub(crate) fn committed(&self, ranges: Vec<Range>, now_ms: i64) -> Vec<String> {
        let mut payloads = Vec::new();
        let mut current: Vec<Range> = Vec::new();
        // The tag, then `{"o":<20 digits>,"t":<20>,"n":0,"commit":[` … `]}`.
        let overhead = TAG_CHARS + 80;
        let mut size = overhead;
        let mut flush = |ranges: Vec<Range>| {
            let notice = Notice {
                origin: self.origin,
                sent_ms: now_ms,
                number: 0,
                body: Body::Committed(ranges),
            };
            payloads.extend(self.sealed(&notice));
        };
        for range in ranges {
            let entry = serde_json::to_string(&range).map_or(0, |text| text.len()) + 1;
            if !current.is_empty() && size + entry > MAX_NOTICE_BYTES {
                flush(std::mem::take(&mut current));
                size = overhead;
            }
            size += entry;
            current.push(range);
        }
        if !current.is_empty() {
            flush(current);
        }
        payloads
    }

    /// Checks a payload heard on the bus and reads it. Only a payload this
    /// deployment's key sealed comes back.
    pub(crate) fn open(&self, payload: &str) -> Result<Notice, Refused> {
        let (tag, json) = payload
            .split_at_checked(TAG_CHARS)
            .ok_or(Refused::Unsealed)?;
        let tag = tag.strip_suffix('.').ok_or(Refused::Unsealed)?;
        let tag = unhex(tag).ok_or(Refused::Unsealed)?;
        let mut mac = self.mac.clone();
        mac.update(json.as_bytes());
        // Compared in constant time.
        mac.verify_slice(&tag).map_err(|_| Refused::BadSeal)?;
        serde_json::from_str(json).map_err(Refused::Malformed)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"bus-key-0123456789abcdef";

    fn seal() -> Seal {
        Seal::new(7, "log-a", KEY)
    }

    fn range(channel: String, first: u64) -> Range {
        Range {
            channel,
            first,
            last: first + 9,
        }
    }

    #[test]
    fn a_batch_over_many_channels_is_split_under_the_limit() {
        let seal = Seal::new(u64::MAX, "log-a", KEY);
        let ranges: Vec<Range> = (0..400)
            .map(|i| range(format!("room-{i:04}-{}", "x".repeat(40)), u64::MAX - 20))
            .collect();
        let payloads = seal.committed(ranges.clone(), i64::MAX);
        assert!(payloads.len() > 1, "{} payload(s)", payloads.len());
        let mut back = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_NOTICE_BYTES, "{} bytes", payload.len());
            let notice = seal.open(payload).expect("opens");
            assert_eq!((notice.origin, notice.number), (u64::MAX, 0));
            let Body::Committed(part) = notice.body else {
                panic!("a commit notice: {payload}");
            };
            back.extend(part);
        }
        assert_eq!(back, ranges, "every range once, in order");
    }

    #[test]
    fn every_kind_round_trips_numbered() {
        let bodies = [
            Body::Live {
                channel: "chat".into(),
                body: "event: message\ndata: {\"a\":\"\\u00e9\"}\n".into(),
                skip_users: vec!["ann".into()],
            },
            Body::Lost("chat".into()),
            Body::Kick {
                channel: "_x".into(),
                user_id: Some("ann".into()),
                error: StreamError::forbidden(vec!["_x".into()]),
            },
        ];
        let seal = seal();
        for (number, body) in (1..).zip(bodies) {
            let payload = seal.seal(body.clone(), 1_000).expect("fits");
            let notice = seal.open(&payload).expect("opens");
            assert_eq!(
                notice,
                Notice {
                    origin: 7,
                    sent_ms: 1_000,
                    number,
                    body
                }
            );
        }
    }

    #[test]
    fn a_live_event_too_large_does_not_seal() {
        let body = Body::Live {
            channel: "chat".into(),
            body: "d".repeat(MAX_NOTICE_BYTES),
            skip_users: vec![],
        };
        assert_eq!(seal().seal(body, 0), None);
    }

    #[test]
    fn only_this_deployments_key_opens_a_notice() {
        let seal = seal();
        let payload = seal.seal(Body::Lost("chat".into()), 5).expect("fits");
        let json = &payload[TAG_CHARS..];
        for forged in [
            json.to_owned(),
            format!("{}.{json}", "0".repeat(64)),
            format!("{}{}", &payload[..TAG_CHARS], json.replace("chat", "chit")),
        ] {
            assert!(seal.open(&forged).is_err(), "{forged}");
        }
        let other_key = Seal::new(7, "log-a", b"another-key-0123456789");
        assert!(matches!(other_key.open(&payload), Err(Refused::BadSeal)));
        assert!(seal.open("").is_err() && seal.open("é".repeat(40).as_str()).is_err());
    }

    #[test]
    fn channels_differ_by_log_and_by_key_and_are_identifiers() {
        let a = Seal::new(1, "log-a", KEY);
        let b = Seal::new(2, "log-a", KEY);
        assert_eq!(a.channel(), b.channel(), "one deployment, one channel");
        assert_ne!(a.channel(), Seal::new(1, "log-b", KEY).channel());
        assert_ne!(
            a.channel(),
            Seal::new(1, "log-a", b"other-key-0123456789").channel()
        );
        assert_eq!(a.channel().len(), 36);
        assert!(
            a.channel()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }
}
