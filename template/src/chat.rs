//! Posting messages: each one is stored in the app's `messages` table and
//! sent as an event in the same transaction (`Events::begin`): the row and
//! the event commit together or not at all, and subscribers get the event
//! only once both are stored.

use eventstream_rocket::Events;
use rocket::State;
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket_db_pools::sqlx::{self, Row};
use serde::{Deserialize, Serialize};

use crate::auth::Visitor;
use crate::db::DbType;
use crate::error::ApiError;

/// The rooms the demo page offers; `_staff` is private.
pub const ROOMS: [&str; 3] = ["lobby", "random", "_staff"];

/// Longest message accepted, in characters.
const MAX_TEXT: usize = 500;

/// A message as the page posts it.
#[derive(Deserialize)]
pub struct NewMessage {
    /// Shown as the author for anonymous visitors; signed-in visitors post
    /// under their name.
    #[serde(default)]
    pub author: String,
    pub text: String,
}

/// The event data every subscriber receives.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub id: i64,
    pub room: String,
    pub author: String,
    pub text: String,
}

#[derive(Serialize)]
struct Posted {
    message: ChatMessage,
    event_id: Option<String>,
}

/// Stores a message and sends it to everyone listening to the room.
#[post("/rooms/<room>/messages", data = "<message>")]
async fn post(
    room: &str,
    message: Json<NewMessage>,
    visitor: Visitor,
    events: &State<Events>,
) -> Result<(Status, Json<Posted>), ApiError> {
    if !ROOMS.contains(&room) {
        return Err(ApiError::not_found("no such room"));
    }
    if !events.can_read_channel(visitor.0.as_ref(), room).await {
        return Err(ApiError::forbidden("sign in to post in private rooms"));
    }
    let text = message.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return Err(ApiError::bad_request("messages are 1-500 characters"));
    }
    let author = match &visitor.0 {
        Some(user) => user.id.clone(),
        None => match message.author.trim() {
            "" => "guest".to_owned(),
            name => format!("{} (guest)", name.chars().take(32).collect::<String>()),
        },
    };
    let failed = |e: sqlx::Error| ApiError::internal("the message could not be stored", e);
    let not_sent =
        |e: eventstream_rocket::Error| ApiError::internal("the message could not be stored", e);
    let mut tx = events.begin::<DbType>().await.map_err(not_sent)?;
    let id: i64 =
        sqlx::query("INSERT INTO messages (room, author, text) VALUES ($1, $2, $3) RETURNING id")
            .bind(room)
            .bind(&author)
            .bind(text)
            .fetch_one(&mut **tx)
            .await
            .map_err(failed)?
            .try_get("id")
            .map_err(failed)?;
    let message = ChatMessage {
        id,
        room: room.to_owned(),
        author,
        text: text.to_owned(),
    };
    let sent = tx
        .send_event(room, "message", &message)
        .await
        .map_err(not_sent)?;
    let event_id = sent.as_ref().map(ToString::to_string);
    // Its place in the stream: history is read from this table up to the
    // stream position (pages.rs).
    sqlx::query("UPDATE messages SET event_id = $1, event_seq = $2 WHERE id = $3")
        .bind(&event_id)
        .bind(sent.and_then(|id| i64::try_from(id.seq()).ok()))
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(failed)?;
    // One commit for both; an error above dropped `tx`, which rolls back.
    tx.commit().await.map_err(not_sent)?;
    Ok((Status::Created, Json(Posted { message, event_id })))
}

/// The chat routes.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Chat", |rocket| async { rocket.mount("/", routes![post]) })
}
