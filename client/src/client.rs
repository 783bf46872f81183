//! The client and its builder: where to connect, which channels, the
//! cursor store, the token provider, the pacing and the heartbeat.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::cursor::{CursorStore, MemoryCursor};
use crate::reconnect::run;
use crate::subscription::{State, Subscription};

/// Where and how to connect. Start with [`Client::builder`].
#[derive(Clone)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) channels: Vec<String>,
    pub(crate) tokens: Option<Arc<dyn TokenProvider>>,
    pub(crate) token_in_query: bool,
    /// Ask for `stream-presence` events.
    pub(crate) presence: bool,
    pub(crate) cursor: Arc<dyn CursorStore>,
    pub(crate) heartbeat: Duration,
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
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
pub(crate) struct Fixed(String);

impl TokenProvider for Fixed {
    fn token(&self, _renew: bool) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    pub(crate) client: Client,
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
                presence: false,
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

    /// Also yield the channels' presence ([`Item::Presence`](crate::Item::Presence)):
    /// who reads them, coalesced by the server to one per channel per
    /// interval. Off by default.
    pub fn presence(mut self, presence: bool) -> Self {
        self.client.presence = presence;
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
