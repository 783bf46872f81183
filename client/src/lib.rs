//! A client for eventstream-rocket streams (and any server that speaks
//! its contract, PROTOCOL.md), for services, CLIs and desktop programs:
//! it resumes exactly, across reconnects and restarts.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use eventstream_client::{Client, FileCursor, Item};
//! use futures_util::StreamExt;
//!
//! let client = Client::builder("http://127.0.0.1:8000/events/").channel("news").cursor(FileCursor::new("news.cursor")).build();
//! let mut events = client.subscribe::<serde_json::Value>()?;
//! while let Some(item) = events.next().await {
//!     if let Item::Event(event) = &item { println!("{:?} {}", event.seq, event.data); }
//!     events.ack(&item)?;
//! }
//! # Ok(()) }
//! ```
//!
//! - **Exact resume.** The client keeps, per channel, the id of the last
//!   event it yielded, and reconnects (jittered backoff, honouring the
//!   server's `retry:`) with them as `Last-Event-ID`. An event whose id is
//!   not above that position is a repeat and is dropped. Ids may skip
//!   (events excluded for this user still move the position).
//! - **Across restarts.** A [`CursorStore`] keeps the positions the
//!   consumer acknowledged ([`Subscription::ack`]): [`FileCursor`] writes
//!   them atomically, so a restarted process resumes after the last
//!   acknowledged event: at least once into the consumer, exactly once with
//!   its acknowledgements.
//! - **Explicit outcomes.** `stream-reset` and `stream-error` are items of
//!   their own; data that does not decode as `T` is an
//!   [`Item::Undecodable`] carrying the raw text, never a dropped event.
//! - **A watchdog.** A stream silent for longer than the heartbeat (three
//!   of the server's 20-second keep-alives by default) is reconnected.
//! - **Credentials that expire.** A [`TokenProvider`] is asked for the
//!   token before every connection; when the server says the token expired
//!   (`credentials-expired`), it is asked once for a fresh one and the
//!   stream goes on from where it was.
//! - **Says what it does.** [`Item::Connected`] and [`Item::Reconnecting`]
//!   (with the reason) report the connection; connects, resume positions,
//!   resets, renewals and give-ups are logged through `log`.

mod client;
mod cursor;
mod interpret;
mod item;
mod pacing;
mod position;
mod reconnect;
mod sse;
mod subscription;

pub use client::{Client, ClientBuilder, TokenProvider};
pub use cursor::{CursorStore, FileCursor, MemoryCursor};
pub use item::{Condition, Event, Item, Presence, Reconnect, Reset, StreamError};
pub use position::Positions;
pub use subscription::Subscription;
