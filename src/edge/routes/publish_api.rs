//! The publish HTTP API, for other services and languages:
//!
//! ```text
//! POST <mount>/<channel>
//! Authorization: Bearer <eventstream.publish_key>
//! Content-Type: application/json
//!
//! {"type": "message", "data": {"text": "hi"}, "skip_user_ids": ["alice"]}
//!
//! 201 {"id":"<channel>:<n>"}      persisted
//! 202 {"id":null}                 non-persistent channel, delivered live
//! 400 {"error":"bad-request","text":...}   bad JSON, channel or event type
//! 401 (WWW-Authenticate: Bearer)  no or malformed credentials
//! 403                             wrong key
//! 413                             data larger than max_event_bytes
//! ```
//!
//! Presence, behind the same key:
//!
//! ```text
//! GET <mount>/_presence/<channel>
//! Authorization: Bearer <eventstream.publish_key>
//!
//! 200 {"channel":"room","streams":3,"users":2,"listed":["ana"],"truncated":false}
//! 400 {"error":"bad-request","text":...}   bad channel name
//! ```
//!
//! Mounted only when a `publish_key` is configured. The key is compared in
//! constant time.

use std::io::Cursor;

use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::{Request, State};
use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::access::cors;
use crate::access::request_info::bearer;
use crate::config::Secret;
use crate::error::{ApiCondition, Error};
use crate::events::Events;

/// Room for the JSON envelope around the data, on top of `max_event_bytes`.
const ENVELOPE_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    #[serde(rename = "type", default)]
    event_type: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    skip_user_ids: Vec<String>,
}

/// A JSON answer with the stage's CORS headers.
pub(crate) struct ApiResponse {
    status: Status,
    body: String,
    challenge: bool,
    events: Events,
}

impl ApiResponse {
    pub(crate) fn new(events: &Events, status: Status, body: serde_json::Value) -> Self {
        ApiResponse {
            status,
            body: body.to_string(),
            challenge: false,
            events: events.clone(),
        }
    }

    pub(crate) fn error(events: &Events, condition: ApiCondition, text: impl Into<String>) -> Self {
        let text: String = text.into();
        Self::new(
            events,
            Status::from_code(condition.status()).unwrap_or(Status::InternalServerError),
            serde_json::json!({ "error": condition.name(), "text": text }),
        )
    }

    /// The answer to a send that failed, as [`Error`] answers in a
    /// handler; a storage failure is logged.
    pub(crate) fn failed(events: &Events, channel: &str, error: &Error) -> Self {
        if let Error::Storage(_) = error {
            log::error!("eventstream: publish to {channel:?} failed: {error}");
        }
        Self::error(events, error.api_condition(), error.client_text())
    }
}

impl<'r> Responder<'r, 'static> for ApiResponse {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build()
            .status(self.status)
            .header(ContentType::JSON)
            .sized_body(self.body.len(), Cursor::new(self.body))
            .finalize();
        if self.challenge {
            response.set_header(Header::new("WWW-Authenticate", "Bearer"));
        }
        response.set_header(Header::new("Cache-Control", "no-store"));
        cors::apply(&self.events.context().config, request, &mut response, false);
        Ok(response)
    }
}

/// Checks the bearer key against the publish key; `Err` is the response
/// to send instead.
fn authorize(request_key: Option<&str>, events: &Events) -> Result<(), ApiResponse> {
    let expected = events
        .context()
        .config
        .publish_key
        .as_ref()
        .map_or("", Secret::expose);
    check_key(request_key, expected, events)
}

/// Checks an `Authorization` header against the bearer key `expected` (in
/// constant time; an empty key lets nobody in).
pub(crate) fn check_key(
    request_key: Option<&str>,
    expected: &str,
    events: &Events,
) -> Result<(), ApiResponse> {
    match request_key.and_then(bearer) {
        None => {
            let mut response = ApiResponse::error(
                events,
                ApiCondition::Unauthorized,
                "send the key as \"Authorization: Bearer <key>\"",
            );
            response.challenge = true;
            Err(response)
        }
        Some(key)
            if bool::from(key.as_bytes().ct_eq(expected.as_bytes())) && !expected.is_empty() =>
        {
            Ok(())
        }
        Some(_) => Err(ApiResponse::error(
            events,
            ApiCondition::Forbidden,
            "wrong key",
        )),
    }
}

/// The Authorization header, if any.
pub(crate) struct Credentials(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for Credentials {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(Credentials(
            request
                .headers()
                .get_one("Authorization")
                .map(str::to_owned),
        ))
    }
}

/// `POST <mount>/<channel>`: sends one event.
#[rocket::post("/<channel>", data = "<body>")]
pub(crate) async fn publish(
    channel: &str,
    credentials: Credentials,
    body: Data<'_>,
    events: &State<Events>,
) -> ApiResponse {
    let events = events.inner();
    if let Err(refusal) = authorize(credentials.0.as_deref(), events) {
        return refusal;
    }
    let max = events.context().config.max_event_bytes;
    let text = match body
        .open((max + ENVELOPE_BYTES).bytes())
        .into_string()
        .await
    {
        Ok(text) if text.is_complete() => text.into_inner(),
        Ok(_) => {
            return ApiResponse::error(
                events,
                ApiCondition::TooLarge,
                format!("the request body exceeds max_event_bytes ({max}) plus the envelope"),
            );
        }
        Err(e) => {
            return ApiResponse::error(
                events,
                ApiCondition::BadRequest,
                format!("unreadable body: {e}"),
            );
        }
    };
    let parsed: PublishBody<'_> = match serde_json::from_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            return ApiResponse::error(
                events,
                ApiCondition::BadRequest,
                format!(
                    "expected {{\"type\"?: string, \"data\": any, \"skip_user_ids\"?: [string]}}: {e}"
                ),
            );
        }
    };
    let event_type = parsed.event_type.as_deref().unwrap_or("message");
    let sent = events
        .send_encoded(
            channel,
            event_type,
            parsed.data.get().to_owned(),
            parsed.skip_user_ids,
        )
        .await;
    match sent {
        Ok(Some(id)) => ApiResponse::new(
            events,
            Status::Created,
            serde_json::json!({ "id": id.to_string() }),
        ),
        Ok(None) => ApiResponse::new(events, Status::Accepted, serde_json::json!({ "id": null })),
        Err(error) => ApiResponse::failed(events, channel, &error),
    }
}

/// `GET <mount>/_presence/<channel>`: who reads the channel now. Two
/// segments, so it cannot collide with a channel's stream route.
#[rocket::get("/_presence/<channel>")]
pub(crate) fn presence(
    channel: &str,
    credentials: Credentials,
    events: &State<Events>,
) -> ApiResponse {
    let events = events.inner();
    if let Err(refusal) = authorize(credentials.0.as_deref(), events) {
        return refusal;
    }
    match events.presence(channel) {
        Ok(answer) => ApiResponse::new(
            events,
            Status::Ok,
            serde_json::to_value(answer).unwrap_or_default(),
        ),
        Err(error) => ApiResponse::failed(events, channel, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_is_strict() {
        let ok: PublishBody<'_> = serde_json::from_str(r#"{"data":{"a":[1,2]}}"#).expect("valid");
        assert_eq!(ok.data.get(), r#"{"a":[1,2]}"#);
        assert!(ok.event_type.is_none());
        assert!(serde_json::from_str::<PublishBody<'_>>(r#"{"type":"m"}"#).is_err());
        assert!(serde_json::from_str::<PublishBody<'_>>(r#"{"data":1,"extra":2}"#).is_err());
        assert!(serde_json::from_str::<PublishBody<'_>>(r#"{"data":1,"type":5}"#).is_err());
    }
}
