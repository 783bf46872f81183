//! [`Events`]: the handle an application sends with, from handlers
//! (`&State<Events>`) or background tasks (it is `Clone`).

use std::sync::Arc;

use serde::Serialize;

use crate::access::identity::{self, Pins, User};
#[cfg(feature = "cookies")]
use crate::access::sign_in::CookieIdentity;
use crate::config::Config;
use crate::context::Context;
use crate::delivery::fanout::{Kick, LiveEvent};
use crate::error::{Error, StreamError};
use crate::measure::metrics::MetricsSnapshot;
use crate::presence::ChannelPresence;
use crate::storage::{AppendToken, Event, NewEvent};
use crate::wire::channel;
use crate::wire::event_id::{EventId, IdVector};
use crate::wire::frame;

/// Options for [`Events::send_event_with`]. Start from
/// [`SendOptions::new`] and chain the setters:
///
/// ```
/// # use eventstream_rocket::SendOptions;
/// let options = SendOptions::new().skip_user_ids(["ann"]);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// Users who do not receive this event, live or on replay (e.g. its
    /// author, whose page already shows it). Their position still advances.
    pub skip_user_ids: Vec<String>,
    /// The data is a string holding already-encoded event data (for
    /// example JSON produced elsewhere): it is sent as is instead of being
    /// serialized again.
    pub pre_encoded: bool,
}

impl SendOptions {
    /// No users skipped, data serialized to JSON.
    pub fn new() -> Self {
        SendOptions::default()
    }

    /// Users who do not receive this event (their position still advances).
    pub fn skip_user_ids<I, S>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.skip_user_ids = users.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the data is a string of already-encoded event data.
    pub fn pre_encoded(mut self, pre_encoded: bool) -> Self {
        self.pre_encoded = pre_encoded;
        self
    }
}

/// Sends events and reads the event log. Managed by the stage: take it as
/// `&State<Events>` in handlers, or clone it into background tasks.
///
/// ```no_run
/// # use rocket::{post, State};
/// # use eventstream_rocket::{Error, Events};
/// #[post("/rooms/<room>", data = "<text>")]
/// async fn say(room: &str, text: String, events: &State<Events>) -> Result<String, Error> {
///     // A failed send answers with its status and condition (`Error` is
///     // a responder); `None` is a live-only channel's (no stored id).
///     let id = events
///         .send_event(room, "message", &serde_json::json!({ "text": text }))
///         .await?;
///     Ok(id.map(|id| id.to_string()).unwrap_or_default())
/// }
/// ```
#[derive(Clone)]
pub struct Events {
    context: Arc<Context>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("mount", &self.context.config.mount)
            .finish_non_exhaustive()
    }
}

impl Events {
    pub(crate) fn new(context: Context) -> Events {
        Events {
            context: Arc::new(context),
        }
    }

    /// The shared context, for the layers above (streams, GRIP, routes).
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.context
    }

    /// Sends `data` (serialized to JSON) as an event of `event_type` on
    /// `channel` (django-eventstream's `send_event`). On a persistent
    /// channel it returns once the event is committed under the configured
    /// durability, with its id; on a non-persistent channel it returns
    /// `None` after live delivery.
    pub async fn send_event<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event_type: &str,
        data: &T,
    ) -> Result<Option<EventId>, Error> {
        self.send_event_with(channel, event_type, data, SendOptions::default())
            .await
    }

    /// [`send_event`](Events::send_event) with options: users to skip,
    /// pre-encoded data.
    pub async fn send_event_with<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event_type: &str,
        data: &T,
        options: SendOptions,
    ) -> Result<Option<EventId>, Error> {
        let data = encode_data(data, options.pre_encoded)?;
        self.send_encoded(channel, event_type, data, options.skip_user_ids)
            .await
    }

    pub(crate) async fn send_encoded(
        &self,
        channel: &str,
        event_type: &str,
        data: String,
        skip_user_ids: Vec<String>,
    ) -> Result<Option<EventId>, Error> {
        let sent = self
            .context
            .config
            .delivery_timing
            .then(std::time::Instant::now);
        let outgoing = Outgoing::checked(&self.context, channel, event_type, data, skip_user_ids)?;
        let Some(event) = outgoing.stored else {
            // Nothing to store: straight to the same fan-out step that
            // committed events take.
            self.context.fanout.event(&Arc::new(outgoing.live));
            return Ok(None);
        };
        let seq = self
            .context
            .writer
            .append(event, outgoing.live.frame.body.clone(), sent)
            .await?;
        Ok(Some(EventId::new(channel, seq)))
    }

    /// The id vector of the newest event in each channel (0 for channels
    /// that never had one): listening from it yields only future events.
    pub async fn current_id<S: AsRef<str>>(&self, channels: &[S]) -> Result<IdVector, Error> {
        let channels = validated(channels)?;
        let states = self.context.storage.channel_states(&channels).await?;
        let mut ids = IdVector::new();
        for (channel, state) in states {
            ids.set(channel, state.last_id);
        }
        Ok(ids)
    }

    /// The newest `limit` events of each channel, oldest first, and the id
    /// vector right after them, read in one transaction. A page renders the
    /// events and then connects with that vector as `lastEventId`, so
    /// nothing sent between rendering and connecting is missed or repeated.
    pub async fn snapshot<S: AsRef<str>>(
        &self,
        channels: &[S],
        limit: usize,
    ) -> Result<(Vec<Event>, IdVector), Error> {
        let channels = validated(channels)?;
        Ok(self.context.storage.snapshot(&channels, limit).await?)
    }

    /// Who reads `channel` right now: its open streams and distinct
    /// signed-in users, on every instance of the bus and behind GRIP
    /// proxies, and (up to `presence_list_max`) the users the
    /// authorizer lets be named ([`Authorizer::presence`](crate::Authorizer::presence)).
    ///
    /// This process's streams count at once; other instances' within
    /// `presence_interval_ms` (and leave within `presence_lease_secs` when
    /// one dies); a stream held by a proxy counts from its first request
    /// and leaves within two `grip_link_timeout_secs` and 5 s of closing.
    pub fn presence(&self, channel: &str) -> Result<ChannelPresence, Error> {
        valid(channel)?;
        Ok(self.context.presence.answer(channel))
    }

    /// Call after revoking `user`'s access to `channel`: if the authorizer
    /// now refuses it, every live stream of that user on that channel gets a
    /// `stream-error` `forbidden` and ends, here and behind GRIP proxies.
    /// Returns how many streams of this process ended (proxied streams are
    /// ended by the proxy and not counted).
    pub async fn channel_permission_changed(&self, user: Option<&User>, channel: &str) -> usize {
        if self
            .context
            .authorizer
            .can_read_channel(user, channel)
            .await
        {
            return 0;
        }
        self.context.fanout.kick(&Kick {
            user_id: user.map(|user| user.id.clone()),
            channel: channel.to_owned(),
            error: StreamError::forbidden(vec![channel.to_owned()]),
        })
    }

    /// Signs a token the built-in identity accepts: an HS256 JWT for
    /// `user_id`, valid for `valid_for`, signed with `eventstream.jwt_secret`
    /// and carrying the pinned `jwt_issuer` / `jwt_audience`.
    /// Hand it to a page that passes it as `?token=` or `Authorization`.
    /// Fails when no `jwt_secret` is configured.
    pub fn token_for(
        &self,
        user_id: &str,
        valid_for: std::time::Duration,
    ) -> Result<String, Error> {
        let secret = self
            .context
            .config
            .jwt_secret
            .as_ref()
            .ok_or(Error::NoJwtSecret)?
            .expose();
        let pins = Pins {
            issuer: self.context.config.jwt_issuer.as_deref(),
            audience: self.context.config.jwt_audience.as_deref(),
        };
        identity::sign(secret, user_id, valid_for, pins)
    }

    /// Who `request` comes from, decided by the stage's identity hook (the
    /// same one streams use): `Ok(None)` is anonymous, `Err` means
    /// credentials were present but invalid. For the application's own
    /// routes, so that they authenticate exactly like streams.
    pub async fn identify(
        &self,
        request: &rocket::Request<'_>,
    ) -> Result<Option<User>, StreamError> {
        self.context.identity.identify(request).await
    }

    /// Signs `user` in on this browser: the private cookie `identity_cookie`
    /// names, which the stage reads when a request carries no token, so the
    /// app's own pages need no token in their stream URLs. Needs `identity_cookie`
    /// (and, in release, Rocket's `secret_key`) and the `cookies` feature.
    #[cfg(feature = "cookies")]
    pub fn sign_in(&self, cookies: &rocket::http::CookieJar<'_>, user: &User) -> Result<(), Error> {
        let name = self
            .context
            .config
            .identity_cookie
            .as_deref()
            .ok_or(Error::NoIdentityCookie)?;
        CookieIdentity::named(name).sign_in(cookies, user);
        Ok(())
    }

    /// Signs the browser out (removes the `identity_cookie`).
    #[cfg(feature = "cookies")]
    pub fn sign_out(&self, cookies: &rocket::http::CookieJar<'_>) {
        if let Some(name) = &self.context.config.identity_cookie {
            CookieIdentity::named(name).sign_out(cookies);
        }
    }

    /// Whether `user` may read `channel`, by the stage's authorizer.
    pub async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        self.context
            .authorizer
            .can_read_channel(user, channel)
            .await
    }

    /// Current counters: live subscribers, events sent, fall-backs, resets.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = self.context.metrics.snapshot();
        snapshot.queued_bytes = self.context.hub.queued_bytes();
        snapshot.queued_send_bytes = self.context.writer.queued_bytes();
        snapshot
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.context.config
    }
}

/// `data` as the event's data: serialized to JSON, or (pre-encoded) the
/// string it holds.
pub(crate) fn encode_data<T: Serialize + ?Sized>(
    data: &T,
    pre_encoded: bool,
) -> Result<String, Error> {
    if !pre_encoded {
        return serde_json::to_string(data).map_err(Error::Encode);
    }
    match serde_json::to_value(data).map_err(Error::Encode)? {
        serde_json::Value::String(text) => Ok(text),
        _ => Err(Error::Encode(serde::ser::Error::custom(
            "pre_encoded data must be a string",
        ))),
    }
}

/// An event checked and encoded once, on its way to the writer or to a
/// transaction.
pub(crate) struct Outgoing {
    /// The event as subscribers get it (its id is set after the commit).
    pub(crate) live: LiveEvent,
    /// The row to store; `None` on a non-persistent channel.
    pub(crate) stored: Option<NewEvent>,
}

impl Outgoing {
    /// Checks the channel, the type and the size, and encodes the frame.
    pub(crate) fn checked(
        context: &Context,
        channel: &str,
        event_type: &str,
        data: String,
        skip_user_ids: Vec<String>,
    ) -> Result<Outgoing, Error> {
        valid(channel)?;
        frame::validate_event_type(event_type)
            .map_err(|why| Error::InvalidEventType(why.to_string()))?;
        let max = context.config.max_event_bytes;
        if data.len() > max {
            return Err(Error::EventTooLarge {
                size: data.len(),
                max,
            });
        }
        let body = frame::encode_body(event_type, &data);
        let stored = context
            .authorizer
            .is_channel_reliable(channel)
            .then(|| NewEvent {
                channel: channel.to_owned(),
                event_type: event_type.to_owned(),
                data,
                skip_users: skip_user_ids.clone(),
                // Numbered by whoever appends it.
                token: AppendToken::default(),
            });
        Ok(Outgoing {
            live: LiveEvent::new(channel.to_owned(), None, body, skip_user_ids),
            stored,
        })
    }
}

/// Checks a channel name given to the API.
pub(crate) fn valid(channel: &str) -> Result<(), Error> {
    channel::validate(channel).map_err(|why| Error::InvalidChannel(why.to_string()))
}

/// Checks the names given to `current_id` and `snapshot`.
fn validated<S: AsRef<str>>(channels: &[S]) -> Result<Vec<String>, Error> {
    channel::validate_all(channels).map_err(|why| Error::InvalidChannel(why.to_string()))
}
