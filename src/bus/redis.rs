//! The Redis transport (`broadcast = "redis"`, cargo feature `redis`):
//! notices over Redis pub/sub. Redis carries notices only; events stay in
//! the shared event log, and receivers read announced ranges from there.
//! Commits are announced by the sender after they commit (Redis cannot take
//! part in the database's transaction), so a crash between the commit and
//! the announcement leaves it to the other instances' poll.
//!
//! Pub/sub keeps nothing for a subscriber that was away: after a reconnect
//! the receiver catches up from storage, as with PostgreSQL.

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use redis::aio::MultiplexedConnection;

use super::error::BusError;
use super::listener::{Backoff, HandOff, SEND_TIMEOUT};
use crate::config::redact_url;
use crate::storage::now_ms;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The messages of a subscription.
pub(crate) type Messages = Pin<Box<redis::aio::PubSubStream>>;

/// A Redis server, by URL (which may carry a password: it is never
/// printed).
#[derive(Clone)]
pub(crate) struct Server {
    client: redis::Client,
    /// The URL without its password, for messages.
    shown: String,
    /// The password, to blank out of error messages.
    password: Option<String>,
    /// The deployment's pub/sub channel (Redis ignores db numbers, so the
    /// name is what keeps deployments apart).
    channel: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `text` with every occurrence of `password` replaced by `***`.
/// The password of `redis://user:password@host`, if any.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

impl Server {
    /// The server at `url`, carrying notices on `channel`; `Err` says why
    /// the URL is unusable.
    pub(crate) fn new(url: &str, channel: &str) -> Result<Server, BusError> {
        let shown = redact_url(url);
        let password = password_of(url);
        let client = redis::Client::open(url).map_err(|error| BusError::Redis {
            server: shown.clone(),
            error,
            password: password.clone(),
        })?;
        Ok(Server {
            client,
            shown,
            password,
            channel: channel.to_owned(),
        })
    }

    /// A Redis error, naming the server without its password (the
    /// client's messages do not carry the URL, but a password could be
    /// echoed in an answer: it is blanked out too when shown).
    fn describe(&self, error: redis::RedisError) -> BusError {
        BusError::Redis {
            server: self.shown.clone(),
            error,
            password: self.password.clone(),
        }
    }

    /// No answer within `after`.
    fn silent(&self, after: Duration) -> BusError {
        BusError::NoAnswer {
            server: self.shown.clone(),
            after,
        }
    }

    /// A subscription to the notices.
    pub(crate) async fn subscribe(&self) -> Result<Messages, BusError> {
        self.within_timeout(async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok(Box::pin(pubsub.into_on_message()))
        })
        .await
    }

    async fn connection(&self) -> Result<MultiplexedConnection, BusError> {
        self.within_timeout(self.client.get_multiplexed_async_connection())
            .await
    }

    /// `attempt`, given [`CONNECT_TIMEOUT`], its error described.
    async fn within_timeout<T>(
        &self,
        attempt: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BusError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.describe(error)),
            Err(_) => Err(self.silent(CONNECT_TIMEOUT)),
        }
    }
}

/// Listens until the task is aborted at shutdown, reconnecting with
/// backoff. `subscribed` is the stage's first attempt: an instance starts
/// while Redis is down (its health says so) and catches up once connected.
pub(crate) async fn listen(server: Server, mut subscribed: Option<Messages>, hand_off: HandOff) {
    loop {
        let mut messages = match subscribed.take() {
            Some(messages) => {
                hand_off.state.set_connected(true);
                messages
            }
            None => {
                let mut backoff = Backoff::new();
                let messages = loop {
                    match server.subscribe().await {
                        Ok(messages) => break messages,
                        Err(error) => {
                            backoff
                                .wait("the bus listener cannot subscribe", &error)
                                .await;
                        }
                    }
                };
                hand_off.reconnected().await;
                messages
            }
        };
        let connected_at = now_ms();
        loop {
            let next = std::future::poll_fn(|cx| messages.as_mut().poll_next(cx));
            let message = tokio::select! {
                message = next => message,
                () = hand_off.silence(connected_at) => None,
            };
            let Some(message) = message else { break };
            match message.get_payload::<String>() {
                Ok(payload) => hand_off.payload(&payload),
                Err(error) => log::warn!(
                    "eventstream: ignoring a Redis message that is not text ({})",
                    server.describe(error)
                ),
            }
        }
        hand_off.state.set_connected(false);
        log::warn!("eventstream: the bus listener lost its Redis connection; subscribing again");
    }
}

/// The sending connection, opened on first use and again after a failure.
#[derive(Debug)]
pub(crate) struct RedisSender {
    server: Server,
    connection: Option<MultiplexedConnection>,
}

impl RedisSender {
    pub(crate) fn new(server: Server) -> RedisSender {
        RedisSender {
            server,
            connection: None,
        }
    }

    /// Publishes one notice.
    pub(crate) async fn send(&mut self, payload: &str) -> Result<(), BusError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(self.server.connection().await?),
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.server.channel).arg(payload);
        let sent = publish.query_async::<i64>(connection);
        match tokio::time::timeout(SEND_TIMEOUT, sent).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                self.connection = None;
                Err(self.server.describe(error))
            }
            // Half-open, perhaps: start over on a new connection.
            Err(_) => {
                self.connection = None;
                Err(self.server.silent(SEND_TIMEOUT))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_found_and_never_shown() {
        assert_eq!(
            password_of("redis://:hunter22@h:1/0").as_deref(),
            Some("hunter22")
        );
        assert_eq!(password_of("redis://u:p@h").as_deref(), Some("p"));
        assert_eq!(password_of("redis://h:6379"), None);
        let server = Server::new("redis://:hunter22@127.0.0.1:1/0", "eventstream_test")
            .expect("a valid URL");
        assert!(!format!("{server:?}").contains("hunter22"));
    }
}
