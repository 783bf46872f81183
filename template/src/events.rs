//! The event stream: eventstream-rocket's stage, who may read which room,
//! and the check that keeps the development secrets out of production.
//!
//! - [`stage()`] attaches eventstream-rocket's `Stage`. It serves the stream
//!   at `/events/<room>` (several rooms: `/events/?channel=a&channel=b`) and
//!   the publish API (`POST /events/<room>`), and manages the `Events` handle
//!   routes take as `&State<Events>`: `chat` sends each message with
//!   `events.send_event(room, "message", &message)`. Its event log lives in
//!   the app's database ([`Db`]), next to the `messages` table.
//! - [`PrivateChannels`] decides who may read what: rooms starting with `_`
//!   need a signed-in user (`auth` hands out the tokens). Readers of a room
//!   see who else reads it (the page asks for `stream-presence` events). Rocket.toml selects
//!   it by its path (move or rename it there too):
//!   `EVENTSTREAM_AUTHORIZER = "{{crate_name}}::events::PrivateChannels"`.
//! - The options and secrets are configuration: `[default.eventstream]` and
//!   `[debug.eventstream]` in Rocket.toml, `ROCKET_EVENTSTREAM` in
//!   production. In release builds the app refuses to start with the
//!   development secrets, the way Rocket insists on a `secret_key`.

use eventstream_rocket::{Authorizer, PresenceRule, Stage, User};
use rocket::fairing::{self, AdHoc};
use rocket::{Build, Rocket};

use crate::db::Db;

/// Rooms (channels) whose name starts with `_` are for signed-in users.
#[derive(Debug, Default)]
pub struct PrivateChannels;

#[rocket::async_trait]
impl Authorizer for PrivateChannels {
    async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        !channel.starts_with('_') || user.is_some()
    }

    /// A room's readers see who else is in it, signed-in users by name.
    fn presence(&self, _user: Option<&User>, _channel: &str) -> PresenceRule {
        PresenceRule::MEMBER
    }
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

/// The event stream, its publish API and `Events`, with [`PrivateChannels`]
/// and the event log in [`Db`]; attach after `Db::init()`.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Events", |rocket| async {
        rocket
            .attach(
                Stage::new()
                    .authorizer::<PrivateChannels>()
                    .database::<Db>(),
            )
            .attach(AdHoc::try_on_ignite(
                "Production secrets",
                require_real_secrets,
            ))
    })
}
