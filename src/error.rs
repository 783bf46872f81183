//! The two error types: [`Error`] for callers of the Rust API, and
//! [`StreamError`] for what a client is told in a `stream-error` frame.

use std::fmt;

use rocket_db_pools::sqlx;
use serde::{Deserialize, Serialize};

/// Why sending an event or reading the event log failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The channel name breaks the rules in `PROTOCOL.md`.
    InvalidChannel(String),
    /// The event type is empty, reserved, or contains CR, LF or NUL.
    InvalidEventType(String),
    /// The encoded data is larger than `max_event_bytes`.
    EventTooLarge {
        /// Size of the encoded data in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The data could not be serialized to JSON.
    Encode(serde_json::Error),
    /// The database refused or failed; nothing was stored.
    Storage(sqlx::Error),
    /// The database received the commit but its answer was lost, and it
    /// could not be asked afterwards: the event may or may not be stored
    /// (never twice). Read the channel (`Events::snapshot`) to find out.
    Indeterminate,
    /// The event stage has shut down (Rocket is stopping).
    Closed,
    /// A token was requested but `eventstream.jwt_secret` is not configured.
    NoJwtSecret,
    /// A sign-in cookie was asked for but `eventstream.identity_cookie` is
    /// not configured.
    NoIdentityCookie,
    /// A token could not be signed.
    Token(String),
    /// The calling task holds an open [`EventTx`](crate::EventTx): sending
    /// outside it, or opening another, would wait for that transaction
    /// forever. Send through the transaction, or commit it first.
    TransactionOpen,
    /// [`Events::begin`](crate::Events::begin) was asked for one database
    /// type but the event log is on the other.
    WrongBackend {
        /// The event log's backend: `"sqlite"` or `"postgres"`.
        event_log: &'static str,
    },
    /// A transaction tried to send more events than one transaction may
    /// hold for fan-out.
    TransactionFull {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidChannel(why) => write!(f, "invalid channel: {why}"),
            Error::InvalidEventType(why) => write!(f, "invalid event type: {why}"),
            Error::EventTooLarge { size, max } => {
                write!(f, "event data is {size} bytes; max_event_bytes is {max}")
            }
            Error::Encode(e) => write!(f, "event data is not serializable to JSON: {e}"),
            Error::Storage(e) => write!(f, "event storage failed: {e}"),
            Error::Indeterminate => f.write_str(
                "the event may or may not have been stored: the database did not confirm the commit \
                 and could not be asked; read the channel to find out",
            ),
            Error::Closed => f.write_str("the event stage has shut down"),
            Error::NoJwtSecret => f.write_str("no eventstream.jwt_secret is configured"),
            Error::NoIdentityCookie => f.write_str("no eventstream.identity_cookie is configured"),
            Error::Token(why) => write!(f, "cannot sign a token: {why}"),
            Error::TransactionOpen => f.write_str(
                "this task holds an open EventTx: send through it (tx.send_event) or commit it first",
            ),
            Error::WrongBackend { event_log } => {
                write!(f, "the event log is on {event_log}: begin a transaction of that type")
            }
            Error::TransactionFull { max } => {
                write!(f, "one transaction sends at most {max} events: commit and begin another")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Encode(e) => Some(e),
            Error::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Storage(e)
    }
}

impl Error {
    /// The text a client may read: everything but the database's own words
    /// (they go to the log).
    pub(crate) fn client_text(&self) -> String {
        match self {
            Error::Storage(_) => "the event could not be stored".to_owned(),
            other => other.to_string(),
        }
    }
}

/// A handler can return `Result<_, Error>`: a failed send answers with the
/// status its kind calls for (400 for a bad channel or event type, 413 for
/// data over `max_event_bytes`, 500 otherwise) and a small JSON body naming
/// the condition, as the publish API does:
///
/// ```text
/// HTTP/1.1 500 Internal Server Error
/// {"error":"internal-error","text":"the event could not be stored"}
/// ```
///
/// A storage failure is logged with the database's words; the client reads
/// only that the event could not be stored.
impl<'r> rocket::response::Responder<'r, 'static> for Error {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        use rocket::http::{ContentType, Status};
        let condition = self.api_condition();
        if let Error::Storage(_) = &self {
            log::error!("eventstream: {self}");
        }
        let body = serde_json::json!({ "error": condition.name(), "text": self.client_text() })
            .to_string();
        rocket::Response::build()
            .status(Status::from_code(condition.status()).unwrap_or(Status::InternalServerError))
            .header(ContentType::JSON)
            .sized_body(body.len(), std::io::Cursor::new(body))
            .ok()
    }
}

/// The `error` of a publish API answer, with its HTTP status: each is
/// named here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiCondition {
    /// No publish key was sent.
    Unauthorized,
    /// The wrong publish key.
    Forbidden,
    /// The body, channel or event type is wrong.
    BadRequest,
    /// The body exceeds `max_event_bytes` and the envelope.
    TooLarge,
    /// The commit's outcome is unknown: look for the event before sending
    /// it again.
    Indeterminate,
    /// The event could not be stored (the log has the reason).
    InternalError,
}

impl ApiCondition {
    /// Its name in the answer's `error` field.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ApiCondition::Unauthorized => "unauthorized",
            ApiCondition::Forbidden => "forbidden",
            ApiCondition::BadRequest => "bad-request",
            ApiCondition::TooLarge => "too-large",
            ApiCondition::Indeterminate => "indeterminate",
            ApiCondition::InternalError => "internal-error",
        }
    }

    /// The HTTP status it is answered with.
    pub(crate) fn status(self) -> u16 {
        match self {
            ApiCondition::Unauthorized => 401,
            ApiCondition::Forbidden => 403,
            ApiCondition::BadRequest => 400,
            ApiCondition::TooLarge => 413,
            ApiCondition::Indeterminate | ApiCondition::InternalError => 500,
        }
    }
}

impl Error {
    /// How the publish API answers this error. An internal error's text
    /// is for the log only.
    pub(crate) fn api_condition(&self) -> ApiCondition {
        match self {
            Error::InvalidChannel(_) | Error::InvalidEventType(_) => ApiCondition::BadRequest,
            Error::EventTooLarge { .. } => ApiCondition::TooLarge,
            Error::Indeterminate => ApiCondition::Indeterminate,
            _ => ApiCondition::InternalError,
        }
    }
}

/// The `condition` of a `stream-error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Condition {
    /// The request itself is wrong (channels, ids, parameters).
    BadRequest,
    /// The user may not read a channel, or the token is invalid.
    Forbidden,
    /// The server failed (e.g. the database is unreachable).
    InternalError,
    /// The credential (a token) was valid once and has expired: unlike
    /// `forbidden`, a client can get a fresh one and reconnect from its
    /// last id (`credentials-expired` on the wire).
    CredentialsExpired,
}

/// What a client is told, in a `stream-error` frame, when its stream cannot
/// start or must end:
///
/// ```text
/// event: stream-error
/// id: error
/// data: {"condition":"forbidden","text":"Permission denied to channels: _x","channels":["_x"]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// The error class.
    pub condition: Condition,
    /// A human-readable explanation.
    pub text: String,
    /// The channels concerned, for `forbidden`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

impl StreamError {
    /// A `bad-request` error.
    pub fn bad_request(text: impl Into<String>) -> Self {
        StreamError {
            condition: Condition::BadRequest,
            text: text.into(),
            channels: None,
        }
    }

    /// A `forbidden` error naming the channels the user may not read.
    pub fn forbidden(channels: Vec<String>) -> Self {
        StreamError {
            condition: Condition::Forbidden,
            text: format!("Permission denied to channels: {}", channels.join(", ")),
            channels: Some(channels),
        }
    }

    /// A `forbidden` error about the user's credentials rather than channels.
    pub fn unauthenticated(text: impl Into<String>) -> Self {
        StreamError {
            condition: Condition::Forbidden,
            text: text.into(),
            channels: None,
        }
    }

    /// A `credentials-expired` error: the user's credential has expired.
    pub fn credentials_expired(text: impl Into<String>) -> Self {
        StreamError {
            condition: Condition::CredentialsExpired,
            text: text.into(),
            channels: None,
        }
    }

    /// An `internal-error`; the details belong in the server log, not here.
    pub fn internal(text: impl Into<String>) -> Self {
        StreamError {
            condition: Condition::InternalError,
            text: text.into(),
            channels: None,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"condition":"internal-error","text":"unencodable error"}"#.into()
        })
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl std::error::Error for StreamError {}
