//! Notices: what instances sharing one PostgreSQL event log tell each other
//! over `LISTEN`/`NOTIFY` (`broadcast = "postgres"`).
//!
//! The writer sends a [`Notice::Committed`] inside each batch's
//! transaction, so it leaves only if the batch commits, listing the id
//! range every channel received; receivers read the events themselves from
//! storage. Live-only events (which storage never sees) ride inline, kicks
//! too. Every notice names the instance that sent it, so an instance can
//! ignore its own without looking anything up.
//!
//! A notice is one JSON object of at most [`MAX_NOTICE_BYTES`]
//! (PostgreSQL refuses payloads of 8,000 bytes or more): a batch touching
//! many channels is split over several notices of the same transaction.

use serde::{Deserialize, Serialize};

use crate::error::StreamError;

/// The `LISTEN`/`NOTIFY` channel every instance uses.
pub(crate) const NOTIFY_CHANNEL: &str = "eventstream";

/// Sends one notice (`$2`) on a channel (`$1`): the writer inside a
/// batch's transaction, the bus's sender on its own.
pub(crate) const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

/// Largest payload sent, in bytes; PostgreSQL's limit is 8,000.
pub(crate) const MAX_NOTICE_BYTES: usize = 7_900;

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

/// One notification's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    /// The sending instance.
    #[serde(rename = "o")]
    pub(crate) origin: u64,
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

impl Notice {
    /// The payload, or `None` when it would not fit in one notification.
    pub(crate) fn encode(&self) -> Option<String> {
        let text = serde_json::to_string(self).ok()?;
        (text.len() <= MAX_NOTICE_BYTES).then_some(text)
    }

    /// Reads a payload; `Err` says why it is not a notice of ours.
    pub(crate) fn decode(payload: &str) -> Result<Notice, serde_json::Error> {
        serde_json::from_str(payload)
    }

    /// The payloads announcing `ranges`, each within [`MAX_NOTICE_BYTES`]:
    /// as many ranges per payload as fit. (A channel name is at most a few
    /// hundred bytes, so one range always fits.)
    pub(crate) fn committed(origin: u64, ranges: Vec<Range>) -> Vec<String> {
        let mut payloads = Vec::new();
        let mut current: Vec<Range> = Vec::new();
        // `{"o":<20 digits>,"commit":[` … `]}`
        let overhead = 40;
        let mut size = overhead;
        for range in ranges {
            let entry = serde_json::to_string(&range).map_or(0, |text| text.len()) + 1;
            if !current.is_empty() && size + entry > MAX_NOTICE_BYTES {
                payloads.push(Self::committed_payload(
                    origin,
                    std::mem::take(&mut current),
                ));
                size = overhead;
            }
            size += entry;
            current.push(range);
        }
        if !current.is_empty() {
            payloads.push(Self::committed_payload(origin, current));
        }
        payloads
    }

    fn committed_payload(origin: u64, ranges: Vec<Range>) -> String {
        let notice = Notice {
            origin,
            body: Body::Committed(ranges),
        };
        serde_json::to_string(&notice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(channel: String, first: u64) -> Range {
        Range {
            channel,
            first,
            last: first + 9,
        }
    }

    #[test]
    fn a_batch_over_many_channels_is_split_under_the_limit() {
        let ranges: Vec<Range> = (0..400)
            .map(|i| range(format!("room-{i:04}-{}", "x".repeat(40)), u64::MAX - 20))
            .collect();
        let payloads = Notice::committed(u64::MAX, ranges.clone());
        assert!(payloads.len() > 1, "{} payload(s)", payloads.len());
        let mut back = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_NOTICE_BYTES, "{} bytes", payload.len());
            let notice = Notice::decode(payload).expect("decodes");
            assert_eq!(notice.origin, u64::MAX);
            let Body::Committed(part) = notice.body else {
                panic!("a commit notice: {payload}");
            };
            back.extend(part);
        }
        assert_eq!(back, ranges, "every range once, in order");
    }

    #[test]
    fn every_kind_round_trips() {
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
        for body in bodies {
            let notice = Notice { origin: 7, body };
            let payload = notice.encode().expect("fits");
            assert_eq!(Notice::decode(&payload).expect("decodes"), notice);
        }
    }

    #[test]
    fn a_live_event_too_large_does_not_encode() {
        let notice = Notice {
            origin: 1,
            body: Body::Live {
                channel: "chat".into(),
                body: "d".repeat(MAX_NOTICE_BYTES),
                skip_users: vec![],
            },
        };
        assert_eq!(notice.encode(), None);
    }
}
