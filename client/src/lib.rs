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

mod cursor;
mod item;
mod position;
mod sse;

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

pub use cursor::{CursorStore, FileCursor, MemoryCursor};
pub use item::{Condition, Event, Item, Reconnect, Reset, StreamError};
pub use position::Positions;

use sse::{Frame, Parsed, Parser};

/// Where and how to connect. Start with [`Client::builder`].
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    channels: Vec<String>,
    tokens: Option<Arc<dyn TokenProvider>>,
    token_in_query: bool,
    cursor: Arc<dyn CursorStore>,
    heartbeat: Duration,
    min_delay: Duration,
    max_delay: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Where the client gets the token it sends: asked before every
/// connection, with `renew` set once the server said the last one expired.
/// A closure `Fn(bool) -> impl Future<Output = Result<String, String>>`
/// is one.
///
/// ```no_run
/// # use eventstream_client::Client;
/// let client = Client::builder("http://127.0.0.1:8000/events/")
///     .channel("_ann")
///     .token_provider(|renew: bool| async move {
///         // e.g. ask the app's sign-in service; `renew`: the last one expired
///         Ok::<String, String>(format!("token fetched (renew: {renew})"))
///     })
///     .build();
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// The token for the next connection, or why there is none (the stream
    /// then ends with `credentials-expired`, when renewing).
    fn token(&self, renew: bool) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn(bool) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    fn token(&self, renew: bool) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        Box::pin(self(renew))
    }
}

/// The same token every time.
struct Fixed(String);

impl TokenProvider for Fixed {
    fn token(&self, _renew: bool) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    client: Client,
}

impl Client {
    /// A client of the stream endpoint at `url` (e.g.
    /// `http://127.0.0.1:8000/events/`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            client: Client {
                http: reqwest::Client::new(),
                url: url.into(),
                channels: Vec::new(),
                tokens: None,
                token_in_query: false,
                cursor: Arc::new(MemoryCursor::default()),
                heartbeat: Duration::from_secs(60),
                min_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(30),
            },
        }
    }

    /// Starts a subscription from the cursor's positions, decoding event
    /// data as `T` (use `serde_json::Value` for anything).
    pub fn subscribe<T: DeserializeOwned + Send + 'static>(
        &self,
    ) -> std::io::Result<Subscription<T>> {
        let acked = self.cursor.load()?;
        let state = Arc::new(Mutex::new(State {
            received: acked.clone(),
            acked,
        }));
        let items = Box::pin(run::<T>(self.clone(), Arc::clone(&state)));
        Ok(Subscription {
            items,
            state,
            cursor: Arc::clone(&self.cursor),
        })
    }
}

impl ClientBuilder {
    /// Adds a channel to listen to.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.client.channels.push(channel.into());
        self
    }

    /// Sends `token` as `Authorization: Bearer <token>`, every time (see
    /// [`ClientBuilder::token_provider`] for tokens that expire).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.client.tokens = Some(Arc::new(Fixed(token.into())));
        self
    }

    /// Asks `provider` for the token before every connection, and once more
    /// (`renew`) when the server says it expired.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.client.tokens = Some(Arc::new(provider));
        self
    }

    /// Sends the token as `?token=` instead of a header (for proxies that
    /// strip `Authorization`).
    pub fn token_in_query(mut self, in_query: bool) -> Self {
        self.client.token_in_query = in_query;
        self
    }

    /// Keeps acknowledged positions in `cursor` (default: in memory).
    pub fn cursor(mut self, cursor: impl CursorStore) -> Self {
        self.client.cursor = Arc::new(cursor);
        self
    }

    /// Reconnects when nothing (not even a keep-alive) arrived for this
    /// long. Default 60 s: three of the server's default keep-alives.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.client.heartbeat = heartbeat;
        self
    }

    /// The reconnect delay: starts at `min`, doubles up to `max`, jittered;
    /// a server's `retry:` replaces it.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.client.min_delay = min;
        self.client.max_delay = max.max(min);
        self
    }

    /// Uses this HTTP client (timeouts, TLS roots, a proxy).
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.client.http = http;
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        self.client
    }
}

#[derive(Debug)]
struct State {
    /// Where the stream resumes after a reconnect: the last event yielded.
    received: Positions,
    /// What the consumer acknowledged (what the cursor holds).
    acked: Positions,
}

/// A running subscription: a [`Stream`] of [`Item`]s, and where the
/// consumer acknowledges them.
pub struct Subscription<T> {
    items: Pin<Box<dyn Stream<Item = Item<T>> + Send>>,
    state: Arc<Mutex<State>>,
    cursor: Arc<dyn CursorStore>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Subscription<T> {
    /// Acknowledges `item`: its position (an event's, or a reset's) is
    /// saved in the cursor, and a restarted process resumes after it.
    /// Items without a position (live-only events, errors) need none.
    pub fn ack(&self, item: &Item<T>) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        let moved = match item {
            Item::Event(Event {
                positions: Some(positions),
                ..
            })
            | Item::Undecodable {
                event:
                    Event {
                        positions: Some(positions),
                        ..
                    },
                ..
            } => positions.iter().fold(false, |moved, (channel, seq)| {
                state.acked.advance(channel, seq) || moved
            }),
            Item::Reset(reset) => {
                for (channel, seq) in reset.positions.iter() {
                    state.acked.set(channel, seq);
                }
                true
            }
            _ => false,
        };
        if moved {
            self.cursor.save(&state.acked)?;
        }
        Ok(())
    }

    /// The positions the stream resumes from after a reconnect.
    pub fn positions(&self) -> Positions {
        lock(&self.state).received.clone()
    }
}

impl<T> Stream for Subscription<T> {
    type Item = Item<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item<T>>> {
        self.items.as_mut().poll_next(cx)
    }
}

/// When to reconnect. The base is `min_delay`, or the server's `retry:`
/// once it sent one; each failed attempt doubles the delay up to
/// `max_delay` (or the base, if larger), and a connection that delivered a
/// frame starts it over at the base.
#[derive(Debug)]
struct Pacing {
    base: Duration,
    max: Duration,
    delay: Duration,
}

impl Pacing {
    fn new(min: Duration, max: Duration) -> Pacing {
        Pacing {
            base: min,
            max,
            delay: min,
        }
    }

    /// The server's `retry:`.
    fn retry(&mut self, delay: Duration) {
        self.base = delay;
        self.delay = delay;
    }

    /// A connection delivered: the next pause is the base one.
    fn delivered(&mut self) {
        self.delay = self.base;
    }

    /// The pause before the next attempt; `failed`: this one got nothing,
    /// so the one after waits longer.
    fn pause(&mut self, failed: bool) -> Duration {
        let pause = jittered(self.delay);
        if failed {
            self.delay = (self.delay * 2).min(self.max.max(self.base));
        }
        pause
    }
}

/// A delay between `delay / 2` and `delay`.
fn jittered(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now()) % 1000;
    delay / 2 + delay.mul_f64(random as f64 / 2000.0)
}

/// What one frame means for the stream.
enum Outcome<T> {
    Yield(Item<T>),
    Skip,
    End(Item<T>),
}

fn handle<T: DeserializeOwned>(
    frame: Frame,
    channels: &[String],
    state: &Mutex<State>,
) -> Outcome<T> {
    let mut state = lock(state);
    let positions = frame.id.as_deref().and_then(Positions::parse);
    match frame.event.as_str() {
        // A keep-alive may carry the id vector: the position of an event
        // the server withheld from this user moved (PROTOCOL.md §4.3).
        "keep-alive" => {
            for (channel, seq) in positions.iter().flat_map(Positions::iter) {
                state.received.advance(channel, seq);
            }
            Outcome::Skip
        }
        "stream-open" => {
            for (channel, seq) in positions.iter().flat_map(Positions::iter) {
                if state.received.get(channel).is_none() {
                    state.received.set(channel, seq);
                }
            }
            log::debug!(
                "eventstream-client: open, from {}",
                display_positions(&state.received)
            );
            Outcome::Yield(Item::Connected)
        }
        "stream-reset" => {
            let positions = positions.unwrap_or_default();
            for (channel, seq) in positions.iter() {
                state.received.set(channel, seq);
            }
            let channels: Vec<String> = serde_json::from_str::<serde_json::Value>(&frame.data)
                .ok()
                .and_then(|data| serde_json::from_value(data["channels"].clone()).ok())
                .unwrap_or_default();
            log::info!(
                "eventstream-client: reset: {} continue from {}",
                channels.join(", "),
                display_positions(&positions)
            );
            Outcome::Yield(Item::Reset(Reset {
                channels,
                positions,
            }))
        }
        "stream-error" => {
            let error = serde_json::from_str(&frame.data).unwrap_or_else(|_| StreamError {
                condition: Condition::InternalError,
                text: frame.data.clone(),
                channels: None,
            });
            Outcome::End(Item::Error(error))
        }
        _ => {
            let (channel, seq, vector) = match positions {
                None => (
                    (channels.len() == 1).then(|| channels[0].clone()),
                    None,
                    None,
                ),
                Some(positions) => {
                    // The entry that moved is the event's channel (a server
                    // moves one entry per frame); one at or below its
                    // position is a repeat. A vector equal to the positions
                    // is a live-only event's.
                    let mut moved = Vec::new();
                    let mut behind = false;
                    for (channel, seq) in positions.iter() {
                        match state.received.get(channel) {
                            Some(position) if seq < position => behind = true,
                            Some(position) if seq == position => {}
                            _ => moved.push((channel.to_owned(), seq)),
                        }
                    }
                    let single = positions.iter().count() == 1;
                    if behind || (moved.is_empty() && single) {
                        return Outcome::Skip;
                    }
                    for (channel, seq) in &moved {
                        state.received.advance(channel, *seq);
                    }
                    let vector = Some(state.received.clone());
                    match moved.as_slice() {
                        [(channel, seq)] => (Some(channel.clone()), Some(*seq), vector),
                        [] => (None, None, None),
                        // Several entries moved: which one is this event's
                        // cannot be told; every position is kept, so that
                        // acknowledging it repeats none of them.
                        _ => {
                            log::warn!(
                                "eventstream-client: an event moved {} channels at once ({}); its channel is unknown",
                                moved.len(),
                                display_positions(&positions)
                            );
                            (None, None, vector)
                        }
                    }
                }
            };
            let event = Event {
                channel,
                seq,
                event_type: frame.event,
                data: frame.data,
                positions: vector,
            };
            Outcome::Yield(match serde_json::from_str::<T>(&event.data) {
                Ok(data) => Item::Event(event.with_data(data)),
                Err(error) => Item::Undecodable {
                    event,
                    error: error.to_string(),
                },
            })
        }
    }
}

/// Positions for a log line (`(start)` when there are none yet).
fn display_positions(positions: &Positions) -> String {
    if positions.is_empty() {
        "(start)".into()
    } else {
        positions.to_string()
    }
}

/// What ended one connection attempt.
enum Attempt<T> {
    /// Reconnect, for this reason; `delivered`: it got frames (come back at
    /// the base pace).
    Again { why: Reconnect, delivered: bool },
    /// The stream is over, with this last item.
    Over(Item<T>),
}

fn run<T: DeserializeOwned + Send + 'static>(
    client: Client,
    state: Arc<Mutex<State>>,
) -> impl Stream<Item = Item<T>> + Send {
    async_stream::stream! {
        let mut pacing = Pacing::new(client.min_delay, client.max_delay);
        // Set once the server said the token expired: the next token is a
        // renewed one, and a second expiry in a row ends the stream.
        let mut renewing = false;
        loop {
            let token = match &client.tokens {
                None => None,
                Some(tokens) => match tokens.token(renewing).await {
                    Ok(token) => Some(token),
                    Err(why) => {
                        log::warn!("eventstream-client: giving up: no token ({why})");
                        yield Item::Error(StreamError {
                            condition: if renewing { Condition::CredentialsExpired } else { Condition::Forbidden },
                            text: format!("no token: {why}"),
                            channels: None,
                        });
                        return;
                    }
                },
            };
            let last = lock(&state).received.to_string();
            log::debug!(
                "eventstream-client: connecting to {} from {}",
                client.url,
                if last.is_empty() { "(start)" } else { last.as_str() }
            );
            let mut request = client
                .http
                .get(&client.url)
                .header("Accept", "text/event-stream")
                .query(&client.channels.iter().map(|c| ("channel", c.as_str())).collect::<Vec<_>>());
            if !last.is_empty() {
                request = request.header("Last-Event-ID", &last);
            }
            match (&token, client.token_in_query) {
                (Some(token), true) => request = request.query(&[("token", token.as_str())]),
                (Some(token), false) => request = request.bearer_auth(token),
                (None, _) => {}
            }
            let mut attempt = Attempt::Again { why: Reconnect::Silent, delivered: false };
            match tokio::time::timeout(client.heartbeat, request.send()).await {
                Err(_) => {}
                Ok(Err(error)) => {
                    attempt = Attempt::Again { why: Reconnect::Failed(error.without_url().to_string()), delivered: false };
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
                        let text = response.text().await.unwrap_or_default();
                        log::warn!("eventstream-client: giving up: the server answered {status}");
                        yield Item::Error(StreamError {
                            condition: Condition::Http(status.as_u16()),
                            text,
                            channels: None,
                        });
                        return;
                    }
                    if !status.is_success() {
                        attempt = Attempt::Again { why: Reconnect::Status(status.as_u16()), delivered: false };
                    } else {
                        let mut body = response.bytes_stream();
                        let mut parser = Parser::default();
                        let mut framed = false;
                        attempt = 'reading: loop {
                            let chunk = match tokio::time::timeout(client.heartbeat, body.next()).await {
                                Ok(Some(Ok(chunk))) => chunk,
                                Ok(None) => break Attempt::Again { why: Reconnect::Ended, delivered: framed },
                                Ok(Some(Err(error))) => break Attempt::Again {
                                    why: Reconnect::Failed(error.without_url().to_string()),
                                    delivered: framed,
                                },
                                Err(_) => break Attempt::Again { why: Reconnect::Silent, delivered: framed },
                            };
                            for parsed in parser.feed(&chunk) {
                                match parsed {
                                    Parsed::Retry(ms) => pacing.retry(Duration::from_millis(ms)),
                                    Parsed::Frame(frame) => {
                                        if !framed {
                                            framed = true;
                                            pacing.delivered();
                                        }
                                        match handle::<T>(frame, &client.channels, &state) {
                                            Outcome::Skip => {}
                                            Outcome::Yield(item) => {
                                                if matches!(item, Item::Connected) {
                                                    renewing = false;
                                                }
                                                yield item;
                                            }
                                            Outcome::End(item) => break 'reading Attempt::Over(item),
                                        }
                                    }
                                }
                            }
                        };
                    }
                }
            }
            let (why, delivered) = match attempt {
                Attempt::Over(Item::Error(error))
                    if error.condition == Condition::CredentialsExpired
                        && !renewing
                        && client.tokens.is_some() =>
                {
                    log::info!("eventstream-client: the token expired; asking for a fresh one");
                    renewing = true;
                    (Reconnect::Renewed, true)
                }
                Attempt::Over(item) => {
                    if let Item::Error(error) = &item {
                        log::warn!(
                            "eventstream-client: giving up: {} ({}); what the server knows of this stream: its operator's delivery trace",
                            error.condition,
                            error.text
                        );
                    }
                    yield item;
                    return;
                }
                Attempt::Again { why, delivered } => (why, delivered),
            };
            log::info!("eventstream-client: reconnecting: {why}");
            yield Item::Reconnecting(why);
            // A connection that worked comes back at the base pace.
            tokio::time::sleep(pacing.pause(!delivered)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: &str, id: Option<&str>, data: &str) -> Frame {
        Frame {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    fn state() -> Mutex<State> {
        Mutex::new(State {
            received: Positions::new(),
            acked: Positions::new(),
        })
    }

    fn seqs(
        outcomes: Vec<Outcome<serde_json::Value>>,
    ) -> Vec<Option<(Option<String>, Option<u64>)>> {
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Yield(Item::Event(event)) => Some((event.channel, event.seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn backoff_grows_on_failures_and_starts_over_after_a_delivery() {
        let ms = Duration::from_millis;
        let mut pacing = Pacing::new(ms(100), ms(400));
        // Jittered into [delay/2, delay].
        let within = |pause: Duration, delay: Duration| pause >= delay / 2 && pause <= delay;
        assert!(within(pacing.pause(true), ms(100)));
        assert!(within(pacing.pause(true), ms(200)));
        assert!(within(pacing.pause(true), ms(400)));
        assert!(within(pacing.pause(true), ms(400)), "capped");
        pacing.delivered();
        assert!(
            within(pacing.pause(false), ms(100)),
            "a working connection starts over"
        );
        pacing.retry(ms(1000));
        assert!(
            within(pacing.pause(true), ms(1000)),
            "the server's retry: is the base"
        );
        assert!(within(pacing.pause(true), ms(1000)), "never below it");
        pacing.delivered();
        assert!(within(pacing.pause(false), ms(1000)));
    }

    #[test]
    fn repeats_are_dropped_and_skips_are_not_errors() {
        let channels = ["a".to_owned()];
        let state = state();
        let outcomes = vec![
            handle(frame("stream-open", Some("a:2"), ""), &channels, &state),
            handle(frame("message", Some("a:3"), "1"), &channels, &state),
            handle(frame("message", Some("a:3"), "1"), &channels, &state),
            handle(frame("message", Some("a:2"), "1"), &channels, &state),
            handle(frame("message", Some("a:7"), "1"), &channels, &state),
        ];
        let a = Some("a".to_owned());
        assert_eq!(
            seqs(outcomes),
            [
                None,
                Some((a.clone(), Some(3))),
                None,
                None,
                Some((a, Some(7)))
            ]
        );
    }

    #[test]
    fn in_a_vector_the_entry_that_moved_names_the_channel() {
        let channels = ["a".to_owned(), "b".to_owned()];
        let state = state();
        let outcomes = vec![
            handle(frame("stream-open", Some("a:1,b:5"), ""), &channels, &state),
            handle(frame("message", Some("a:1,b:6"), "1"), &channels, &state),
            handle(frame("message", Some("a:2,b:6"), "1"), &channels, &state),
            // A live-only event repeats the vector.
            handle(frame("message", Some("a:2,b:6"), "1"), &channels, &state),
            // A repeat of b:6 after a:3 went by.
            handle(frame("message", Some("a:3,b:6"), "1"), &channels, &state),
            handle(frame("message", Some("a:2,b:6"), "1"), &channels, &state),
        ];
        assert_eq!(
            seqs(outcomes),
            [
                None,
                Some((Some("b".into()), Some(6))),
                Some((Some("a".into()), Some(2))),
                Some((None, None)),
                Some((Some("a".into()), Some(3))),
                None,
            ]
        );
    }

    #[test]
    fn undecodable_data_is_an_item_and_errors_end_the_stream() {
        let channels = ["a".to_owned()];
        let state = state();
        match handle::<u32>(frame("message", Some("a:1"), "not json"), &channels, &state) {
            Outcome::Yield(Item::Undecodable { event, .. }) => assert_eq!(event.data, "not json"),
            _ => panic!("an undecodable item"),
        }
        let error = r#"{"condition":"forbidden","text":"no","channels":["a"]}"#;
        match handle::<u32>(
            frame("stream-error", Some("error"), error),
            &channels,
            &state,
        ) {
            Outcome::End(Item::Error(error)) => assert_eq!(error.condition, Condition::Forbidden),
            _ => panic!("a stream error"),
        }
        let expired = r#"{"condition":"credentials-expired","text":"token expired"}"#;
        match handle::<u32>(
            frame("stream-error", Some("error"), expired),
            &channels,
            &state,
        ) {
            Outcome::End(Item::Error(error)) => {
                assert_eq!(error.condition, Condition::CredentialsExpired)
            }
            _ => panic!("a stream error"),
        }
        let unknown = r#"{"condition":"on-fire","text":"?"}"#;
        match handle::<u32>(
            frame("stream-error", Some("error"), unknown),
            &channels,
            &state,
        ) {
            Outcome::End(Item::Error(error)) => {
                assert_eq!(error.condition, Condition::Other("on-fire".into()))
            }
            _ => panic!("a stream error"),
        }
    }

    /// A stream of channels `a` and `b` opened at `a:0,b:0`: the channels,
    /// its state, its cursor, and a subscription that acknowledges into it.
    fn opened_on_a_and_b() -> (
        [String; 2],
        Arc<Mutex<State>>,
        Arc<MemoryCursor>,
        Subscription<serde_json::Value>,
    ) {
        let channels = ["a".to_owned(), "b".to_owned()];
        let state = Arc::new(state());
        let cursor = Arc::new(MemoryCursor::default());
        let items = Subscription {
            items: Box::pin(futures_util::stream::empty()),
            state: Arc::clone(&state),
            cursor: Arc::clone(&cursor) as Arc<dyn CursorStore>,
        };
        handle::<serde_json::Value>(frame("stream-open", Some("a:0,b:0"), ""), &channels, &state);
        (channels, state, cursor, items)
    }

    fn yielded(outcome: Outcome<serde_json::Value>) -> Item<serde_json::Value> {
        match outcome {
            Outcome::Yield(item) => item,
            _ => panic!("an item"),
        }
    }

    /// A server that withheld `a:1` from this user and then sent `b:1`
    /// without telling (two entries moved): the event is not attributed to
    /// a guessed channel, and acknowledging it saves both positions, so a
    /// restart from the cursor repeats neither.
    #[test]
    fn an_event_that_moves_two_entries_is_not_misattributed_nor_repeated() {
        let (channels, state, cursor, items) = opened_on_a_and_b();
        let item = yielded(handle(
            frame("message", Some("a:1,b:1"), "1"),
            &channels,
            &state,
        ));
        let Item::Event(event) = &item else {
            panic!("an event: {item:?}")
        };
        assert_eq!(
            (event.channel.as_deref(), event.seq),
            (None, None),
            "not guessed"
        );
        items.ack(&item).expect("saved");
        // A reconnect, and a restart from the cursor, resume after both:
        // the server sends neither again.
        assert_eq!(items.positions().to_string(), "a:1,b:1");
        assert_eq!(cursor.load().expect("loads").to_string(), "a:1,b:1");
    }

    /// What the server sends instead (PROTOCOL.md §4.3): the withheld
    /// event's position in a keep-alive, then `b:1` moving one entry.
    #[test]
    fn a_keep_alive_carries_a_withheld_position_and_the_next_event_is_attributed() {
        let (channels, state, cursor, items) = opened_on_a_and_b();
        assert!(matches!(
            handle::<serde_json::Value>(
                frame("keep-alive", Some("a:1,b:0"), ""),
                &channels,
                &state
            ),
            Outcome::Skip
        ));
        let item = yielded(handle(
            frame("message", Some("a:1,b:1"), "1"),
            &channels,
            &state,
        ));
        let Item::Event(event) = &item else {
            panic!("an event: {item:?}")
        };
        assert_eq!((event.channel.as_deref(), event.seq), (Some("b"), Some(1)));
        items.ack(&item).expect("saved");
        assert_eq!(cursor.load().expect("loads").to_string(), "a:1,b:1");
    }
}
