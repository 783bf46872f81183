//! Who may read what, and how a visitor signs in.
//!
//! - [`PrivateChannels`] is the authorizer Rocket.toml names in
//!   `EVENTSTREAM_AUTHORIZER`: rooms starting with `_` need a signed-in user.
//! - `POST /sign-in` hands out a short-lived token. **Demo only**: anyone can
//!   sign in as anyone. Replace it with your real login, and keep issuing
//!   tokens with `Events::token_for`.
//! - In release builds the app refuses to start with the development
//!   secrets from Rocket.toml, the way Rocket insists on a `secret_key`.

use std::time::Duration;

use eventstream_rocket::{Authorizer, Events, User};
use rocket::fairing::{self, AdHoc};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::serde::json::Json;
use rocket::{Build, Rocket, State};
use serde::{Deserialize, Serialize};

/// Rooms (channels) whose name starts with `_` are for signed-in users.
#[derive(Debug, Default)]
pub struct PrivateChannels;

#[rocket::async_trait]
impl Authorizer for PrivateChannels {
    async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        !channel.starts_with('_') || user.is_some()
    }
}

/// How long a sign-in token is valid. Pages pass it in the stream URL
/// (`?token=`), which ends up in access logs: keep it short.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The identity of a request to the app's own routes: the same token the
/// streams accept. Invalid credentials are refused, never anonymous.
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

/// Signs a visitor in under any name (demo only) and returns a token.
#[post("/sign-in", data = "<form>")]
fn sign_in(form: Json<SignIn>, events: &State<Events>) -> Result<Json<Session>, (Status, String)> {
    let name = form.name.trim();
    let valid = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err((
            Status::BadRequest,
            "names are 1-32 letters, digits, '-' or '_'".into(),
        ));
    }
    let token = events
        .token_for(name, TOKEN_LIFETIME)
        .map_err(|e| (Status::InternalServerError, e.to_string()))?;
    Ok(Json(Session {
        user: name.to_owned(),
        token,
        expires_in: TOKEN_LIFETIME.as_secs(),
    }))
}

/// In release builds, refuse the development secrets (or none at all).
async fn require_real_secrets(rocket: Rocket<Build>) -> fairing::Result {
    if rocket.figment().profile() != "release" {
        return Ok(rocket);
    }
    for key in ["publish_key", "jwt_secret", "link_key"] {
        let value: Option<String> = rocket
            .figment()
            .extract_inner(&format!("eventstream.{key}"))
            .ok();
        // link_key only matters with GRIP, and the library insists on it then.
        let missing = value.is_none() && key != "link_key";
        if missing
            || value
                .as_deref()
                .is_some_and(|value| value.starts_with("dev-only-"))
        {
            error!(
                "eventstream.{key} must be set to a real secret in release: \
                 set it in ROCKET_EVENTSTREAM (see Rocket.toml)"
            );
            return Err(rocket);
        }
    }
    Ok(rocket)
}

/// Sign-in route and the production secrets check.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Auth", |rocket| async {
        rocket
            .mount("/", routes![sign_in])
            .attach(AdHoc::try_on_ignite(
                "Production secrets",
                require_real_secrets,
            ))
    })
}
