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
//!     let id = events.send_event(room, "message", &serde_json::json!({ "text": text })).await.ok()?;
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
//! broadcast = "local"                    # or "postgres", "redis": several instances
//! health_path = "/healthz"               # ok / degraded / unavailable
//! metrics_path = "/metrics"              # Prometheus
//! ```
//!
//! See [`Config`] for every key, and `PROTOCOL.md` for the wire contract.
//!
//! # How an event travels
//!
//! The data path runs one way, and the modules follow it: a module imports
//! only from the ones above it in this list (`scripts/check-layers.py`
//! enforces it in CI).
//!
//! ```text
//! Events::send_event ─► writer: group commit (counter row + insert, one transaction) ─┐
//! EventTx::commit ─► the app's own transaction, counter rows bumped inside it ────────┤
//!                                                                                     ▼
//! fan-out ─┬─► hub ─► each stream's bounded inbox ─► session ─► response body
//!          ├─► GRIP publisher ─► proxies (an outlet, like the hub)
//!          └─► bus ─► NOTIFY ─► other instances ─► their hubs
//! a stream that overflowed or sees an id gap ─► replay from storage ─► session
//! ```
//!
//! | layer | modules | what they own |
//! |---|---|---|
//! | leaves | `channel`, `error`, `event_id`, `frame`, `notice`, `throttle`, `timing`, `metrics`, `config`, `query`, `identity`, `authorizer`, `cors`, `limits` | names, ids, frames, settings, who is asking and what they may read, how many streams |
//! | storage | `storage` | the event log in SQL (appending, reading, trimming a piece) |
//! | delivery | `fanout`, `hub`, `write_gate`, `held_back`, `writer`, `retention` | where committed events go; the streams of this process; who may write now (SQLite's one lock, the channels open transactions hold); sends kept aside for those channels; group commit; trimming in pieces that take turns with the writer |
//! | handle | `context`, `events`, `transaction` | what the stage built; the public [`Events`]; [`EventTx`], sending inside the app's transaction |
//! | streams | `replay`, `session`, `response` | catching up from storage; one live stream; the responder |
//! | GRIP | `grip` | Pushpin / Fanout: signatures, links, instructions, the publisher outlet |
//! | bus | `bus` | other instances (`broadcast = "postgres"` or `"redis"`): the sender outlet, the listeners, the sequencer in front of the hub |
//! | operators | `health`, `exposition` | the health check and the Prometheus scrape |
//! | edge | `request`, `routes` (with the publish API), `stage` | the request guard, the routes, the fairing |

#![deny(missing_docs)]

// Leaves: no module here imports one below it.
mod authorizer;
mod channel;
mod config;
mod cors;
mod error;
mod event_id;
mod frame;
mod identity;
mod limits;
mod metrics;
mod notice;
mod query;
mod throttle;
mod timing;
// The event log.
mod storage;
// Delivery.
mod fanout;
mod held_back;
mod hub;
mod retention;
mod write_gate;
mod writer;
// The handle.
mod context;
mod events;
mod transaction;
// Streams.
mod replay;
mod response;
mod session;
// GRIP and the cross-instance bus, layers on the stream core.
mod bus;
mod grip;
// What operators read: the health check and the Prometheus scrape.
mod exposition;
mod health;
// The edge.
mod request;
mod routes;
mod stage;

#[cfg(feature = "internals")]
pub mod internals;

pub use authorizer::{AllowAll, Authorizer, Decision};
pub use channel::MAX_CHANNEL_CHARS;
pub use config::{
    AllowedOrigins, Broadcast, Config, ConfigError, Durability, GripProxyConfig, HeaderList, Secret,
};
pub use error::{Condition, Error, StreamError};
pub use event_id::{EventId, IdParseError, IdVector};
pub use events::{Events, SendOptions};
pub use frame::RESERVED_EVENT_TYPES;
pub use identity::{Identify, JwtIdentity, User};
pub use metrics::MetricsSnapshot;
pub use request::StreamRequest;
pub use response::EventStream;
pub use stage::{DEFAULT_DATABASE_URL, EventLog, Stage};
pub use storage::Event;
pub use storage::migrations::MIGRATION_VERSION_BASE;
pub use transaction::{Backend, EventTx, MAX_TRANSACTION_EVENTS};

/// The `rocket` this crate was built against.
pub use rocket;
