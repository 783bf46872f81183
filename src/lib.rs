//! Persistent, resumable server-sent events for [Rocket](https://rocket.rs):
//! the Rust successor of django-eventstream.
//!
//! Browsers connect to `/events/?channel=news`; your handlers send with
//! [`Events`]; every event on a persistent channel is stored with a
//! gap-free per-channel id, so a client that drops resumes with
//! `Last-Event-ID` and gets exactly what it missed, in order.
//!
//! # Quickstart
//!
//! 1. Attach the stage (it opens `databases.eventstream`, a SQLite file by
//!    default, and runs its own migrations):
//!
//! ```no_run
//! use rocket::{State, post, routes};
//! use eventstream_rocket::{Events, Stage};
//!
//! #[post("/say/<room>", data = "<text>")]
//! async fn say(room: &str, text: String, events: &State<Events>) -> Option<String> {
//!     let id = events.send(room, "message", &serde_json::json!({ "text": text })).await.ok()?;
//!     id.map(|id| id.to_string())
//! }
//!
//! #[rocket::launch]
//! fn rocket() -> _ {
//!     rocket::build().attach(Stage::new()).mount("/", routes![say])
//! }
//! ```
//!
//! 2. Listen in the browser:
//!
//! ```text
//! const es = new EventSource('/events/?channel=lobby');
//! es.addEventListener('message', e => console.log(e.lastEventId, JSON.parse(e.data)));
//! ```
//!
//! # Configuration
//!
//! ```toml
//! [default.databases.eventstream]
//! url = "sqlite://eventstream.db"        # or postgres://...
//!
//! [default.eventstream]
//! mount = "/events"
//! authorizer = "my_app::auth::PrivateChannels"
//! keepalive_secs = 20
//! durability = "process"                 # or "power"
//! publish_key = "..."                    # enables POST /events/<channel>
//! jwt_secret = "..."                     # enables ?token= / Authorization: Bearer
//! ```
//!
//! See [`Config`] for every key, and `PROTOCOL.md` for the wire contract.
//!
//! # How an event travels
//!
//! ```text
//! Events::send ─► writer (group commit: counter row + insert, one transaction)
//!                   └─► frame encoded once ─► hub ─► each subscriber's bounded inbox
//!                                                      └─► coalesced body chunk ─► socket
//! a subscriber whose inbox overflowed, or who sees an id gap ─► replay from storage
//! ```

#![deny(missing_docs)]

mod authorizer;
#[doc(hidden)]
pub mod bench_support;
mod channel;
mod config;
mod cors;
mod error;
mod event_id;
mod events;
mod frame;
mod grip;
mod hub;
mod identity;
mod metrics;
mod publish_api;
mod request;
mod response;
mod resume;
mod retention;
mod routes;
mod stage;
mod storage;
mod subscription;
mod writer;

pub use authorizer::{AllowAll, Authorizer};
pub use channel::MAX_CHANNEL_CHARS;
pub use config::{AllowedOrigins, Config, Durability, HeaderList};
pub use error::{Condition, Error, StreamError};
pub use event_id::{EventId, IdVector};
pub use events::{Events, SendOptions};
pub use frame::RESERVED_EVENT_TYPES;
pub use identity::{Identify, JwtIdentity, User};
pub use metrics::MetricsSnapshot;
pub use request::StreamRequest;
pub use response::EventStream;
pub use stage::{DEFAULT_DATABASE_URL, EventLog, Stage};
pub use storage::Event;
pub use storage::migrations::MIGRATION_VERSION_BASE;

/// The `rocket` this crate was built against.
pub use rocket;
