//! Posting messages: each one is stored in the app's `messages` table and
//! sent as an event, from an ordinary handler, with `&State<Events>`.

use eventstream_rocket::Events;
use rocket::State;
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket_db_pools::sqlx::{self, Row};
use serde::{Deserialize, Serialize};

use crate::auth::Visitor;
use crate::db::Db;
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
    db: &Db,
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
    let id: i64 =
        sqlx::query("INSERT INTO messages (room, author, text) VALUES ($1, $2, $3) RETURNING id")
            .bind(room)
            .bind(&author)
            .bind(text)
            .fetch_one(&**db)
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
    // The message row and the event are two commits: if sending fails, the
    // row stays without an event id and the client is told.
    let event_id = events
        .send_event(room, "message", &message)
        .await
        .map_err(|e| ApiError::internal("the message was stored but not sent", e))?
        .map(|id| id.to_string());
    sqlx::query("UPDATE messages SET event_id = $1 WHERE id = $2")
        .bind(&event_id)
        .bind(id)
        .execute(&**db)
        .await
        .map_err(failed)?;
    Ok((Status::Created, Json(Posted { message, event_id })))
}

/// The chat routes.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Chat", |rocket| async { rocket.mount("/", routes![post]) })
}
