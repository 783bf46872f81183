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
//! use eventstream_rocket::{Error, Events, Stage};
//!
//! #[post("/say/<room>", data = "<text>")]
//! async fn say(room: &str, text: String, events: &State<Events>) -> Result<String, Error> {
//!     // A failed send answers with its status and `{"error": .., "text": ..}`.
//!     let id = events.send_event(room, "message", &serde_json::json!({ "text": text })).await?;
//!     Ok(id.map(|id| id.to_string()).unwrap_or_default())
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
//! The layers, leaves first; each row is a module of `src/`, and a module
//! may import only from the rows above its own (this table is the one
//! list; `scripts/check-layers.py` reads it):
//!
//! | layer | module | what it owns |
//! |---|---|---|
//! | leaves | `error` | the public errors and the conditions clients see |
//! | leaves | `wire` | channel names, event ids and id vectors, SSE frames, bus notices |
//! | leaves | `measure` | metrics, per-step delivery timings, the log throttle |
//! | leaves | `config` | every setting, parsed and checked at launch |
//! | leaves | `access` | what a request says about itself, identities, the authorizer, CORS, stream limits |
//! | storage | `storage` | the event log in SQL: appending, reading, trimming a piece |
//! | delivery | `delivery` | the fan-out step and the hub, this process's streams |
//! | presence | `presence` | who reads which channel: this process's streams, other instances' reports, proxied streams' leases; coalesced `stream-presence` events |
//! | writing | `write` | group commit; who may write now; sends kept aside for open transactions; retention |
//! | handle | `context` | what the stage built, shared by the layers above |
//! | handle | `events` | the public [`Events`] |
//! | handle | `transaction` | [`EventTx`], sending inside the application's transaction |
//! | handle | `explain` | the delivery trace, [`Events::explain`] |
//! | streams | `stream` | catching up from storage; one live stream; the responder |
//! | GRIP | `grip` | Pushpin / Fanout: signatures, links, instructions, the publisher outlet |
//! | bus | `bus` | other instances (`broadcast = "postgres"` or `"redis"`): the sender outlet, the listeners, the sequencer in front of the hub |
//! | edge | `edge` | the request guard, the routes, the health check, the Prometheus page |
//! | edge | `stage` | the fairing that builds it all |

#![deny(missing_docs)]

// One module per row of the layer table above, which gives their order
// (rustfmt sorts these lines).
mod access;
mod bus;
mod config;
mod context;
mod delivery;
mod edge;
mod error;
mod events;
mod explain;
mod grip;
mod measure;
mod presence;
mod stage;
mod storage;
mod stream;
mod transaction;
mod wire;
mod write;

#[cfg(feature = "internals")]
pub mod internals;

/// The Rust examples of the README and the guide, compiled as doctests so
/// that they cannot drift from the API.
#[cfg(doctest)]
mod documents {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../docs/authentication.md")]
    struct Authentication;
    #[doc = include_str!("../docs/sending.md")]
    struct Sending;
    #[doc = include_str!("../docs/configuration.md")]
    struct Configuration;
    #[doc = include_str!("../docs/clients.md")]
    struct Clients;
    #[doc = include_str!("../docs/presence.md")]
    struct Presence;
    #[doc = include_str!("../docs/operating.md")]
    struct Operating;
}

pub use access::authorizer::{AllowAll, Authorizer, Decision};
pub use access::identity::{Identify, JwtIdentity, User};
pub use access::presence_rule::{PresenceRule, PresenceView};
#[cfg(feature = "cookies")]
pub use access::sign_in::CookieIdentity;
pub use access::sign_in::{FirstOf, GuardIdentity};
pub use config::{
    AllowedOrigins, Broadcast, Config, ConfigError, Durability, GripProxyConfig, HeaderList, Secret,
};
pub use edge::request::StreamRequest;
pub use error::{Condition, Error, StreamError};
pub use events::{Events, SendOptions};
pub use explain::{
    AccessCheck, Explanation, InstanceReaders, KickSeen, LocalStreams, ResumeCheck, StoredChannel,
};
pub use measure::metrics::MetricsSnapshot;
pub use measure::proxies::ProxyState;
pub use presence::ChannelPresence;
pub use stage::{DEFAULT_DATABASE_URL, EventLog, Stage};
pub use storage::Event;
pub use storage::migrations::MIGRATION_VERSION_BASE;
pub use stream::response::EventStream;
pub use transaction::{EventTx, LogDatabase, MAX_TRANSACTION_EVENTS};
pub use wire::channel::MAX_CHANNEL_CHARS;
pub use wire::event_id::{EventId, IdParseError, IdVector};
pub use wire::frame::RESERVED_EVENT_TYPES;

/// The `rocket` this crate was built against.
pub use rocket;
