//! What a stream yields.

use serde::Deserialize;

use crate::position::Positions;

/// An event of the stream, its data decoded as `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    /// The channel it was sent on: the one entry of the id vector it moved.
    /// `None` for an event without an id on a multi-channel stream
    /// (live-only channels carry none), and for one whose id moved several
    /// entries at once, which a server keeping PROTOCOL.md §4.3 never
    /// sends: its channel cannot be told.
    pub channel: Option<String>,
    /// Its sequence on that channel (`None` when `channel` is).
    pub seq: Option<u64>,
    /// The event type (`message` unless the sender chose another).
    pub event_type: String,
    /// The data.
    pub data: T,
    /// Every channel's position once this event is consumed: what
    /// acknowledging it saves.
    pub(crate) positions: Option<Positions>,
}

impl<T> Event<T> {
    /// The same event with other data.
    pub(crate) fn with_data<U>(self, data: U) -> Event<U> {
        Event {
            channel: self.channel,
            seq: self.seq,
            event_type: self.event_type,
            data,
            positions: self.positions,
        }
    }
}

/// Why a stream ended for good (PROTOCOL.md §4.6), as a type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// The request is wrong (channels, ids, parameters).
    BadRequest,
    /// The user may not read a channel, or the credential is not valid.
    Forbidden,
    /// The credential has expired and no fresh one could be had (see
    /// [`ClientBuilder::token_provider`](crate::ClientBuilder::token_provider)).
    CredentialsExpired,
    /// The server failed.
    InternalError,
    /// The server answered the request with this HTTP status (a 4xx other
    /// than 408 and 429).
    Http(u16),
    /// A condition this client does not know, as the server named it.
    Other(String),
}

impl Condition {
    fn from_wire(name: &str) -> Condition {
        match name {
            "bad-request" => Condition::BadRequest,
            "forbidden" => Condition::Forbidden,
            "credentials-expired" => Condition::CredentialsExpired,
            "internal-error" => Condition::InternalError,
            other => Condition::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::BadRequest => f.write_str("bad-request"),
            Condition::Forbidden => f.write_str("forbidden"),
            Condition::CredentialsExpired => f.write_str("credentials-expired"),
            Condition::InternalError => f.write_str("internal-error"),
            Condition::Http(status) => write!(f, "http-{status}"),
            Condition::Other(name) => f.write_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| Condition::from_wire(&name))
    }
}

/// The reasons a `stream-error` gives (PROTOCOL.md §4.6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamError {
    /// What kind of error.
    pub condition: Condition,
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

/// A `stream-presence` (PROTOCOL.md §4.7): a channel's readers, and who
/// joined and left since the previous one. Keep a set: replace it with
/// `present` when given, add `joined`, remove `left`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Presence {
    /// The channel.
    pub channel: String,
    /// Open streams reading it.
    pub streams: u64,
    /// Distinct signed-in users among them.
    pub users: u64,
    /// Who is there: on the first one per channel after each connect, and
    /// whenever the server sends the whole list again.
    #[serde(default)]
    pub present: Option<Vec<String>>,
    /// Who joined since the previous one.
    #[serde(default)]
    pub joined: Vec<String>,
    /// Who left since the previous one.
    #[serde(default)]
    pub left: Vec<String>,
    /// A list was cut at the server's `presence_list_max` (the counts are
    /// exact).
    #[serde(default)]
    pub truncated: bool,
}

/// Why the client is connecting again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reconnect {
    /// The server ended the response (a restart, a deploy, `retry:`).
    Ended,
    /// Nothing arrived for longer than the heartbeat.
    Silent,
    /// The connection failed or could not be made: why.
    Failed(String),
    /// The server answered with this status (5xx, 408, 429).
    Status(u16),
    /// The credential had expired; a fresh one was obtained.
    Renewed,
}

impl std::fmt::Display for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reconnect::Ended => f.write_str("the server ended the stream"),
            Reconnect::Silent => f.write_str("nothing arrived within the heartbeat"),
            Reconnect::Failed(why) => write!(f, "the connection failed: {why}"),
            Reconnect::Status(status) => write!(f, "the server answered {status}"),
            Reconnect::Renewed => f.write_str("the credential expired and was renewed"),
        }
    }
}

/// One item of a stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Item<T> {
    /// The stream is open (first, and after every reconnect): events
    /// follow from the positions it resumed at.
    Connected,
    /// The connection was lost or ended, and the client is about to
    /// connect again, after its backoff.
    Reconnecting(Reconnect),
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
    /// Who reads a channel (with [`ClientBuilder::presence`](crate::ClientBuilder::presence)):
    /// live only, it moves no position.
    Presence(Presence),
    /// The server ended the stream for good (the last item).
    Error(StreamError),
}
