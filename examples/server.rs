//! A ready-to-run event server: the stream at `/events/`, the publish API
//! beside it, and django-eventstream's README authorizer (channels starting
//! with `_` need a signed-in user).
//!
//! Run with:
//!
//! ```text
//! ROCKET_EVENTSTREAM='{publish_key="dev-publish-key-change-me"}' cargo run --example server
//! curl -N 'http://127.0.0.1:8000/events/?channel=news' &
//! curl -X POST http://127.0.0.1:8000/events/news \
//!      -H 'Authorization: Bearer dev-publish-key-change-me' -d '{"data":{"text":"hi"}}'
//! ```
//!
//! Everything is configured through `Rocket.toml` or `ROCKET_*` variables:
//! `port`/`address` as usual, the database at `databases.eventstream.url`
//! (a SQLite file by default, or a PostgreSQL URL), `eventstream.publish_key`
//! and `eventstream.jwt_secret`.

use eventstream_rocket::{Authorizer, Stage, User};

/// Channels whose names start with `_` are private: only signed-in users
/// (a valid `token`) may read them.
#[derive(Debug, Default)]
pub struct PrivateChannels;

#[rocket::async_trait]
impl Authorizer for PrivateChannels {
    async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        !channel.starts_with('_') || user.is_some()
    }
}

#[rocket::launch]
fn rocket() -> _ {
    rocket::build().attach(Stage::new().authorizer::<PrivateChannels>())
}
