//! A ready-to-run event server: the stream at `/events/`, the publish API
//! beside it, and django-eventstream's README authorizer (channels starting
//! with `_` need a signed-in user; those starting with `live-` are not
//! stored).
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
//! and `eventstream.jwt_secret`. With `EVENTSTREAM_PRINT_METRICS=1` it
//! prints the library's counters to stderr once a second (the benchmarks
//! read them).

use eventstream_rocket::{Authorizer, Events, Stage, User};
use rocket::fairing::AdHoc;

/// Channels whose names start with `_` are private: only signed-in users
/// (a valid `token`) may read them. Channels whose names start with
/// `live-` are live only (typing indicators, presence): not stored, so not
/// replayed.
#[derive(Debug, Default)]
pub struct PrivateChannels;

#[rocket::async_trait]
impl Authorizer for PrivateChannels {
    async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        !channel.starts_with('_') || user.is_some()
    }

    fn is_channel_reliable(&self, channel: &str) -> bool {
        !channel.starts_with("live-")
    }
}

/// Prints the counters every second while the server runs.
fn metrics_printer() -> AdHoc {
    AdHoc::on_liftoff("metrics printer", |rocket| {
        Box::pin(async move {
            let Some(events) = rocket.state::<Events>().cloned() else {
                return;
            };
            let mut shutdown = rocket.shutdown();
            let mut ticks = rocket::tokio::time::interval(std::time::Duration::from_secs(1));
            rocket::tokio::spawn(async move {
                loop {
                    rocket::tokio::select! {
                        _ = ticks.tick() => eprintln!("metrics: {:?}", events.metrics()),
                        _ = &mut shutdown => return,
                    }
                }
            });
        })
    })
}

#[rocket::launch]
fn rocket() -> _ {
    let rocket = rocket::build().attach(Stage::new().authorizer::<PrivateChannels>());
    if std::env::var_os("EVENTSTREAM_PRINT_METRICS").is_some() {
        rocket.attach(metrics_printer())
    } else {
        rocket
    }
}
