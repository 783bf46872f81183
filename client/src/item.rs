//! What a stream yields.

use serde::Deserialize;

use crate::position::Positions;

/// An event of the stream, its data decoded as `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    /// The channel it was sent on (`None` for an event without an id on a
    /// multi-channel stream: live-only channels carry none).
    pub channel: Option<String>,
    /// Its sequence on that channel (`None` on live-only channels).
    pub seq: Option<u64>,
    /// The event type (`message` unless the sender chose another).
    pub event_type: String,
    /// The data.
    pub data: T,
}

impl<T> Event<T> {
    /// The same event with other data.
    pub(crate) fn with_data<U>(self, data: U) -> Event<U> {
        Event {
            channel: self.channel,
            seq: self.seq,
            event_type: self.event_type,
            data,
        }
    }
}

/// The reasons a `stream-error` gives (PROTOCOL.md §4.6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamError {
    /// `bad-request`, `forbidden` or `internal-error`.
    pub condition: String,
    /// A human-readable explanation.
    pub text: String,
    /// For `forbidden` on channels: the channels refused.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

/// A `stream-reset`: the listed channels jumped to `positions`; re-sync
/// their state, then acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The channels that could not be continued.
    pub channels: Vec<String>,
    /// Where the stream continues from.
    pub positions: Positions,
}

/// One item of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<T> {
    /// An event whose data decoded as `T`.
    Event(Event<T>),
    /// An event whose data did not decode as `T` (e.g. sent pre-encoded as
    /// text): the raw data and why; its position counts like any event's.
    Undecodable {
        /// The event, with its raw data.
        event: Event<String>,
        /// Why it did not decode.
        error: String,
    },
    /// The server could not continue some channels from their position.
    Reset(Reset),
    /// The server ended the stream for good (the last item).
    Error(StreamError),
}
