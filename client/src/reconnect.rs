//! The connection loop: connect with the positions as `Last-Event-ID`,
//! read frames, and reconnect when the stream ends or goes silent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::interpret::{Outcome, handle};
use crate::item::{Condition, Item, Reconnect, StreamError};
use crate::pacing::Pacing;
use crate::sse::{Parsed, Parser};
use crate::subscription::{State, lock};

/// What ended one connection attempt.
pub(crate) enum Attempt<T> {
    /// Reconnect, for this reason; `delivered`: it got frames (come back at
    /// the base pace).
    Again { why: Reconnect, delivered: bool },
    /// The stream is over, with this last item.
    Over(Item<T>),
}

pub(crate) fn run<T: DeserializeOwned + Send + 'static>(
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
            if client.presence {
                request = request.query(&[("presence", "1")]);
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
                        log::warn!("eventstream-client: giving up: the server answered {status}; the server's operator can see why in its delivery trace (Events::explain, or explain_path)");
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
                            "eventstream-client: giving up: {} ({}); the server's operator can see why in its delivery trace (Events::explain, or explain_path, for this channel, user and position)",
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
