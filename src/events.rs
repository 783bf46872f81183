//! [`Events`]: the handle an application sends with, from handlers
//! (`&State<Events>`) or background tasks (it is `Clone`).

use std::sync::Arc;

use serde::Serialize;

use crate::authorizer::Authorizer;
use crate::channel;
use crate::config::Config;
use crate::error::{Error, StreamError};
use crate::event_id::{EventId, IdVector};
use crate::frame::{self, Frame};
use crate::grip::instruct::Grip;
use crate::hub::{Hub, LiveEvent};
use crate::identity::{Identify, User};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::storage::{Event, NewEvent, Storage};
use crate::writer::Writer;

/// Everything the stage sets up once and every stream and send shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) storage: Storage,
    pub(crate) hub: Arc<Hub>,
    pub(crate) writer: Writer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) identity: Arc<dyn Identify>,
    /// GRIP proxies, when configured.
    pub(crate) grip: Option<Arc<Grip>>,
}

/// Options for [`Events::send_with`].
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Users who do not receive this event, live or on replay (e.g. its
    /// author, whose page already shows it). Their position still advances.
    pub skip_user_ids: Vec<String>,
    /// The data is a string holding already-encoded event data (for
    /// example JSON produced elsewhere): it is sent as is instead of being
    /// serialized again.
    pub pre_encoded: bool,
}

/// Sends events and reads the event log. Managed by the stage: take it as
/// `&State<Events>` in handlers, or clone it into background tasks.
///
/// ```no_run
/// # use rocket::{post, State, serde::json::Json};
/// # use eventstream_rocket::Events;
/// #[post("/rooms/<room>", data = "<text>")]
/// async fn say(room: &str, text: String, events: &State<Events>) -> Result<String, String> {
///     let id = events
///         .send(room, "message", &serde_json::json!({ "text": text }))
///         .await
///         .map_err(|e| e.to_string())?;
///     Ok(id.map(|id| id.to_string()).unwrap_or_default())
/// }
/// ```
#[derive(Clone)]
pub struct Events {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("mount", &self.shared.config.mount)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Sends `data` (serialized to JSON) as an event of `event_type` on
    /// `channel`. On a persistent channel it returns once the event is
    /// committed under the configured durability, with its id; on a
    /// non-persistent channel it returns `None` after live delivery.
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event_type: &str,
        data: &T,
    ) -> Result<Option<EventId>, Error> {
        self.send_with(channel, event_type, data, SendOptions::default())
            .await
    }

    /// [`send`](Events::send) with options: users to skip, pre-encoded data.
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event_type: &str,
        data: &T,
        options: SendOptions,
    ) -> Result<Option<EventId>, Error> {
        let data = if options.pre_encoded {
            match serde_json::to_value(data).map_err(Error::Encode)? {
                serde_json::Value::String(text) => text,
                _ => {
                    return Err(Error::Encode(serde::ser::Error::custom(
                        "pre_encoded data must be a string",
                    )));
                }
            }
        } else {
            serde_json::to_string(data).map_err(Error::Encode)?
        };
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
        channel::validate(channel).map_err(Error::InvalidChannel)?;
        frame::validate_event_type(event_type).map_err(Error::InvalidEventType)?;
        let max = self.shared.config.max_event_bytes;
        if data.len() > max {
            return Err(Error::EventTooLarge {
                size: data.len(),
                max,
            });
        }
        let body = frame::encode_body(event_type, &data);
        if !self.shared.authorizer.is_channel_reliable(channel) {
            let live = Arc::new(LiveEvent {
                channel: channel.to_owned(),
                seq: None,
                frame: Frame::with_body(body, None),
                skip_users: skip_user_ids,
            });
            self.shared.hub.publish(&live);
            if let Some(grip) = &self.shared.grip {
                grip.publisher
                    .event(channel, None, &live.frame.body, &live.skip_users);
            }
            self.shared.metrics.event_sent();
            return Ok(None);
        }
        let event = NewEvent {
            channel: channel.to_owned(),
            event_type: event_type.to_owned(),
            data,
            skip_users: skip_user_ids,
        };
        let seq = self.shared.writer.append(event, body).await?;
        Ok(Some(EventId::new(channel, seq)))
    }

    /// The id vector of the newest event in each channel (0 for channels
    /// that never had one): listening from it yields only future events.
    pub async fn current_id<S: AsRef<str>>(&self, channels: &[S]) -> Result<IdVector, Error> {
        let channels = validated(channels)?;
        let states = self.shared.storage.channel_states(&channels).await?;
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
        Ok(self.shared.storage.snapshot(&channels, limit).await?)
    }

    /// Call after revoking `user`'s access to `channel`: if the authorizer
    /// now refuses it, every live stream of that user on that channel gets a
    /// `stream-error` `forbidden` and ends, here and behind GRIP proxies.
    /// Returns how many streams of this process ended (proxied streams are
    /// ended by the proxy and not counted).
    pub async fn channel_permission_changed(&self, user: Option<&User>, channel: &str) -> usize {
        if self.shared.authorizer.can_read_channel(user, channel).await {
            return 0;
        }
        let error = StreamError::forbidden(vec![channel.to_owned()]);
        let user_id = user.map(|user| user.id.as_str());
        if let Some(grip) = &self.shared.grip {
            grip.publisher.kick(user_id, channel, &error);
        }
        self.shared.hub.kick(user_id, channel, &error)
    }

    /// Signs a token the built-in identity accepts: an HS256 JWT for
    /// `user_id`, valid for `valid_for`, signed with `eventstream.jwt_secret`.
    /// Hand it to a page that passes it as `?token=` or `Authorization`.
    /// Fails when no `jwt_secret` is configured.
    pub fn token_for(
        &self,
        user_id: &str,
        valid_for: std::time::Duration,
    ) -> Result<String, Error> {
        let secret = self
            .shared
            .config
            .jwt_secret
            .as_deref()
            .ok_or(Error::NoJwtSecret)?;
        crate::identity::sign(secret, user_id, valid_for)
    }

    /// Who `request` comes from, decided by the stage's identity hook (the
    /// same one streams use): `Ok(None)` is anonymous, `Err` means
    /// credentials were present but invalid. For the application's own
    /// routes, so that they authenticate exactly like streams.
    pub async fn identify(
        &self,
        request: &rocket::Request<'_>,
    ) -> Result<Option<User>, StreamError> {
        self.shared.identity.identify(request).await
    }

    /// Whether `user` may read `channel`, by the stage's authorizer.
    pub async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        self.shared.authorizer.can_read_channel(user, channel).await
    }

    /// Current counters: live subscribers, events sent, fall-backs, resets.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }
}

fn validated<S: AsRef<str>>(channels: &[S]) -> Result<Vec<String>, Error> {
    channels
        .iter()
        .map(|channel| {
            let channel = channel.as_ref();
            channel::validate(channel).map_err(Error::InvalidChannel)?;
            Ok(channel.to_owned())
        })
        .collect()
}
