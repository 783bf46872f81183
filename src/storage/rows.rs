//! What the event log stores, row by row: new events, stored events, a
//! channel's counter row, and the append token that finds a row again.

use rocket_db_pools::sqlx::{self, Row};

use super::handle::to_u64;
use crate::wire::event_id::EventId;

/// An event waiting to be appended.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub(crate) channel: String,
    pub(crate) event_type: String,
    pub(crate) data: String,
    pub(crate) skip_users: Vec<String>,
    /// Stored with the row: finds it again after a commit whose outcome
    /// is unknown, and makes a second insert of it fail.
    pub(crate) token: AppendToken,
}

/// Which append stored a row: the writer process and its append number.
/// The writer sets it when it takes the event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct AppendToken {
    pub(crate) writer: i64,
    pub(crate) seq: i64,
}

/// A new writer's id for its append tokens: random, so that tokens of two
/// writers (two processes, or the writer and a transaction) never meet,
/// and non-negative, so it reads the same in every SQL client.
pub(crate) fn new_writer_id() -> i64 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::SystemTime::now()) >> 1) as i64
}

/// A stored event, as returned by replay and [`Events::snapshot`](crate::Events::snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's channel and sequence number.
    pub id: EventId,
    /// The `event:` type.
    pub event_type: String,
    /// The data as sent: JSON text unless it was sent pre-encoded.
    pub data: String,
    /// When the event was committed, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub(crate) skip_users: Vec<String>,
    /// The append that stored it, when recorded.
    pub(crate) token: Option<AppendToken>,
}

/// Events read for a replay page.
#[derive(Debug)]
pub(crate) struct EventsPage {
    pub(crate) events: Vec<Event>,
    /// The byte budget left later events of the page out.
    pub(crate) cut: bool,
}

/// A channel's counter row: its newest id and what retention has removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelState {
    /// The id of the newest event (0 when none was ever sent).
    pub(crate) last_id: u64,
    /// The highest id trimmed away; every id after it is still stored.
    pub(crate) trimmed_through: u64,
    /// The append token of the newest event, when a writer recorded one.
    pub(crate) last_token: Option<AppendToken>,
}

impl ChannelState {
    /// Whether a client whose last event was `position` can be served exactly
    /// the events after it: the position is not in the future, and nothing
    /// after it has been trimmed.
    pub(crate) fn can_resume_from(&self, position: u64) -> bool {
        position <= self.last_id && (position == self.last_id || self.trimmed_through <= position)
    }
}

/// A token from its two columns (absent on rows older than tokens).
pub(crate) fn token(writer: Option<i64>, seq: Option<i64>) -> Option<AppendToken> {
    Some(AppendToken {
        writer: writer?,
        seq: seq?,
    })
}

pub(crate) fn skip_users_column(skip_users: &[String]) -> Option<String> {
    if skip_users.is_empty() {
        None
    } else {
        serde_json::to_string(skip_users).ok()
    }
}

/// A stored event from its row (either backend).
pub(crate) fn event_from_row<R>(row: &R) -> Result<Event, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let skip_users: Option<String> = row.try_get("skip_users")?;
    let skip_users = match skip_users {
        Some(json) => serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        None => Vec::new(),
    };
    Ok(Event {
        id: EventId::new(
            row.try_get::<String, _>("channel")?,
            to_u64(row.try_get("id")?),
        ),
        event_type: row.try_get("event_type")?,
        data: row.try_get("data")?,
        created_ms: row.try_get("created_ms")?,
        skip_users,
        token: token(row.try_get("writer_id")?, row.try_get("append_seq")?),
    })
}
