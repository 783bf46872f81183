//! The demo page and room history.
//!
//! A room's history comes from the app's own `messages` table, which is
//! kept, not from the event log, which retention trims (after 24 h by
//! default). The join with the stream is exact: the page reads the room's
//! stream position first, then the messages at or before it, and connects
//! from that position. A message and its event commit together
//! (`chat.rs`), so every message at or before the position is already
//! visible, and every later one comes from the stream: none missed, none
//! shown twice.

use eventstream_rocket::{Events, IdVector};
use rocket::State;
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket_db_pools::sqlx::{self, Row};
use rocket_dyn_templates::{Template, context};
use serde::Serialize;

use crate::auth::Visitor;
use crate::chat::{ChatMessage, ROOMS};
use crate::db::Db;
use crate::error::ApiError;

/// How many past messages a room shows.
const HISTORY: i64 = 50;

/// A room's recent messages and where to listen from.
#[derive(Serialize)]
pub struct History {
    pub room: String,
    pub messages: Vec<ChatMessage>,
    /// Pass to the stream as `lastEventId`.
    pub last_event_id: String,
}

/// Why a room's history could not be read.
#[derive(Debug)]
enum HistoryError {
    Position(eventstream_rocket::Error),
    Messages(sqlx::Error),
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::Position(e) => write!(f, "reading the stream position failed: {e}"),
            HistoryError::Messages(e) => write!(f, "reading the messages failed: {e}"),
        }
    }
}

async fn history(room: &str, events: &Events, db: &Db) -> Result<History, HistoryError> {
    // The position first: any message committed after this read has a
    // later position and is left to the stream.
    let position = events
        .current_id(&[room])
        .await
        .map_err(HistoryError::Position)?
        .get(room)
        .unwrap_or(0);
    let rows = sqlx::query(
        "SELECT id, author, text FROM messages \
         WHERE room = $1 AND event_seq <= $2 ORDER BY event_seq DESC LIMIT $3",
    )
    .bind(room)
    .bind(i64::try_from(position).unwrap_or(i64::MAX))
    .bind(HISTORY)
    .fetch_all(&**db)
    .await
    .map_err(HistoryError::Messages)?;
    let messages = rows
        .iter()
        .rev()
        .map(|row| {
            Ok(ChatMessage {
                id: row.try_get("id")?,
                room: room.to_owned(),
                author: row.try_get("author")?,
                text: row.try_get("text")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(HistoryError::Messages)?;
    let mut last_event_id = IdVector::new();
    last_event_id.set(room, position);
    Ok(History {
        room: room.to_owned(),
        messages,
        last_event_id: last_event_id.to_string(),
    })
}

/// The demo page, showing the lobby. It is HTML, not JSON: on failure it
/// answers with the status alone and Rocket renders its error page.
#[get("/")]
async fn index(events: &State<Events>, db: &Db) -> Result<Template, Status> {
    let lobby = history("lobby", events, db).await.map_err(|e| {
        error!("reading the lobby's history failed: {e}");
        Status::InternalServerError
    })?;
    let rooms: Vec<_> = ROOMS
        .iter()
        .map(|name| context! { name, private: name.starts_with('_') })
        .collect();
    Ok(Template::render(
        "index",
        context! {
            rooms,
            history: &lobby,
            // Embedded in a <script> element: escape `<` so no message can
            // close it.
            history_json: serde_json::to_string(&lobby).unwrap_or_default().replace('<', "\\u003c"),
        },
    ))
}

/// A room's history as JSON, for switching rooms without reloading.
#[get("/rooms/<room>/history")]
async fn room_history(
    room: &str,
    visitor: Visitor,
    events: &State<Events>,
    db: &Db,
) -> Result<Json<History>, ApiError> {
    if !ROOMS.contains(&room) {
        return Err(ApiError::not_found("no such room"));
    }
    if !events.can_read_channel(visitor.0.as_ref(), room).await {
        return Err(ApiError::forbidden("sign in to read private rooms"));
    }
    history(room, events, db)
        .await
        .map(Json)
        .map_err(|e| ApiError::internal("the history could not be read", e))
}

/// The page routes.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Pages", |rocket| async {
        rocket.mount("/", routes![index, room_history])
    })
}
