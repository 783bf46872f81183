//! How a visitor signs in, and who a request comes from.
//!
//! - `POST /sign-in` signs the browser in with the app's private cookie
//!   (`Events::sign_in`; `identity_cookie` in Rocket.toml names it), which
//!   the page's streams and requests carry on their own, and also hands out
//!   a short-lived token for clients on other origins or native ones.
//!   **Demo only**: anyone can sign in as anyone. It is mounted only when
//!   the app setting `demo_sign_in = true` (Rocket.toml sets it in
//!   `[debug]` only), and a release build refuses to start with it. Replace
//!   it with your real login, and keep calling `Events::sign_in` (and
//!   `Events::token_for` for other clients).
//! - `POST /sign-out` signs the browser out.
//! - [`Visitor`] identifies a request to the app's own routes as the streams
//!   do: the cookie, else a token. Which rooms a user may read is decided
//!   in `events` (`PrivateChannels`).

use std::time::Duration;

use eventstream_rocket::{Events, User};
use rocket::fairing::{self, AdHoc};
use rocket::http::{CookieJar, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::serde::json::Json;
use rocket::{Build, Rocket, State};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// How long a sign-in token is valid. Clients that pass it in a stream URL
/// (`?token=`) leave it in access logs: keep it short.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The identity of a request to the app's own routes, as the streams see
/// it: the sign-in cookie, else a token. Invalid credentials are refused,
/// never anonymous.
pub struct Visitor(pub Option<User>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Visitor {
    type Error = String;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(events) = request.rocket().state::<Events>() else {
            return Outcome::Error((
                Status::InternalServerError,
                "eventstream is not attached".into(),
            ));
        };
        match events.identify(request).await {
            Ok(user) => Outcome::Success(Visitor(user)),
            Err(e) => Outcome::Error((Status::Forbidden, e.text)),
        }
    }
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
}

#[derive(Serialize)]
struct Session {
    user: String,
    token: String,
    expires_in: u64,
}

/// Signs a visitor in under any name (demo only): sets the sign-in cookie
/// and returns a token for other clients.
#[post("/sign-in", data = "<form>")]
fn sign_in(
    form: Json<SignIn>,
    cookies: &CookieJar<'_>,
    events: &State<Events>,
) -> Result<Json<Session>, ApiError> {
    let name = form.name.trim();
    let valid = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ApiError::bad_request(
            "names are 1-32 letters, digits, '-' or '_'",
        ));
    }
    events
        .sign_in(cookies, &User::new(name))
        .map_err(|e| ApiError::internal("the sign-in cookie could not be set", e))?;
    let token = events
        .token_for(name, TOKEN_LIFETIME)
        .map_err(|e| ApiError::internal("the sign-in token could not be made", e))?;
    Ok(Json(Session {
        user: name.to_owned(),
        token,
        expires_in: TOKEN_LIFETIME.as_secs(),
    }))
}

/// Signs the browser out.
#[post("/sign-out")]
fn sign_out(cookies: &CookieJar<'_>, events: &State<Events>) -> Status {
    events.sign_out(cookies);
    Status::NoContent
}

/// Mounts the demo sign-in when `demo_sign_in = true`; refuses it in
/// release, where it would let anyone read the private rooms.
async fn demo_sign_in(rocket: Rocket<Build>) -> fairing::Result {
    let enabled: bool = rocket
        .figment()
        .extract_inner("demo_sign_in")
        .unwrap_or(false);
    if !enabled {
        return Ok(rocket);
    }
    if rocket.figment().profile() == "release" {
        error!("demo_sign_in lets anyone sign in as anyone: it is refused in release");
        return Err(rocket);
    }
    Ok(rocket.mount("/", routes![sign_in, sign_out]))
}

/// The demo sign-in route, when enabled.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Demo sign-in", demo_sign_in)
}
