//! The demo page and room history.
//!
//! The page renders a room's recent history from `Events::snapshot` and
//! connects with the id vector that came with it, so nothing sent between
//! rendering and connecting is missed or shown twice.

use eventstream_rocket::Events;
use rocket::State;
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket_dyn_templates::{Template, context};
use serde::Serialize;

use crate::auth::Visitor;
use crate::chat::{ChatMessage, ROOMS};
use crate::error::ApiError;

/// How many past messages a room shows.
const HISTORY: usize = 50;

/// A room's recent messages and where to listen from.
#[derive(Serialize)]
pub struct History {
    pub room: String,
    pub messages: Vec<ChatMessage>,
    /// Pass to the stream as `lastEventId`.
    pub last_event_id: String,
}

async fn history(room: &str, events: &Events) -> Result<History, eventstream_rocket::Error> {
    let (stored, ids) = events.snapshot(&[room], HISTORY).await?;
    let messages = stored
        .iter()
        .filter(|event| event.event_type == "message")
        .filter_map(|event| serde_json::from_str(&event.data).ok())
        .collect();
    Ok(History {
        room: room.to_owned(),
        messages,
        last_event_id: ids.to_string(),
    })
}

/// The demo page, showing the lobby. It is HTML, not JSON: on failure it
/// answers with the status alone and Rocket renders its error page.
#[get("/")]
async fn index(events: &State<Events>) -> Result<Template, Status> {
    let lobby = history("lobby", events).await.map_err(|e| {
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
) -> Result<Json<History>, ApiError> {
    if !ROOMS.contains(&room) {
        return Err(ApiError::not_found("no such room"));
    }
    if !events.can_read_channel(visitor.0.as_ref(), room).await {
        return Err(ApiError::forbidden("sign in to read private rooms"));
    }
    history(room, events)
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
