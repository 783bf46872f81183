//! One error shape for the app's JSON routes: the status, and a sentence the
//! page can show as it is.
//!
//! ```text
//! HTTP/1.1 403 Forbidden
//! Content-Type: application/json
//!
//! {"error":"sign in to post in private rooms"}
//! ```
//!
//! Internal failures are logged with their cause; the client is only told
//! what did not happen, never why (a database error can name tables, hosts
//! or users).

use std::fmt::Display;

use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::request::Request;
use rocket::response::{self, Responder};
use rocket::serde::json::Json;

/// A refusal or failure of a JSON route: `{"error": message}` with `status`.
#[derive(Debug)]
pub struct ApiError {
    status: Status,
    message: String,
}

impl ApiError {
    /// 400: the request itself is wrong; `message` says how to fix it.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, message)
    }

    /// 403: the visitor may not do this (signed in, they might).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Status::Forbidden, message)
    }

    /// 404: what the path names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Status::NotFound, message)
    }

    /// 500: logs `cause` and answers with `message` only.
    pub fn internal(message: &str, cause: impl Display) -> Self {
        error!("{message}: {cause}");
        Self::new(Status::InternalServerError, message)
    }

    fn new(status: Status, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).respond_to(request)
    }
}

/// Requests refused before a route runs (an invalid token, a malformed
/// body, an unknown path) get the same shape, with the status as the text.
#[catch(default)]
fn refused(status: Status, _: &Request<'_>) -> ApiError {
    ApiError::new(status, status.reason_lossy().to_lowercase())
}

/// The JSON catcher, for the paths the JSON routes live under. The page
/// (`/`) keeps Rocket's HTML error pages.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("JSON errors", |rocket| async {
        rocket
            .register("/rooms", catchers![refused])
            .register("/sign-in", catchers![refused])
    })
}
