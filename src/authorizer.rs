//! Authorization: which channels a request streams, who may read them, and
//! which of them are persisted. Apps implement [`Authorizer`], register it
//! with the stage, and pick it by name in `Rocket.toml`
//! (`EVENTSTREAM_AUTHORIZER = "my_app::auth::PrivateChannels"`), the way
//! django-eventstream picks a channel manager class.

use rocket::Request;

use crate::error::StreamError;
use crate::identity::User;

/// Decides what a stream may contain.
///
/// ```
/// use eventstream_rocket::{Authorizer, User};
///
/// /// Channels starting with `_` are for signed-in users only.
/// #[derive(Default)]
/// pub struct PrivateChannels;
///
/// #[rocket::async_trait]
/// impl Authorizer for PrivateChannels {
///     async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
///         !channel.starts_with('_') || user.is_some()
///     }
/// }
/// ```
#[rocket::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// The name `EVENTSTREAM_AUTHORIZER` selects this authorizer by. Defaults
    /// to the type's path as the compiler prints it
    /// (`my_app::auth::PrivateChannels`); override it to pin a name that
    /// survives refactoring.
    fn name() -> String
    where
        Self: Sized,
    {
        std::any::type_name::<Self>().to_owned()
    }

    /// Whether `user` (`None`: anonymous) may read `channel`. Checked for
    /// every channel when a stream opens, and again by
    /// [`Events::channel_permission_changed`](crate::Events::channel_permission_changed).
    async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        let _ = (user, channel);
        true
    }

    /// The channels a request to the built-in routes streams. `requested`
    /// holds the `channel` query values or the path segment; the default
    /// keeps them. Return an error to refuse the request.
    fn channels_for_request(
        &self,
        request: &Request<'_>,
        requested: Vec<String>,
    ) -> Result<Vec<String>, StreamError> {
        let _ = request;
        Ok(requested)
    }

    /// Whether events on `channel` are stored (ids, replay, resume). Events
    /// on other channels are delivered live only, without ids.
    fn is_channel_reliable(&self, channel: &str) -> bool {
        let _ = channel;
        true
    }
}

/// The default authorizer: every channel is readable by everyone and
/// persisted (django-eventstream's `DefaultChannelManager`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

#[rocket::async_trait]
impl Authorizer for AllowAll {
    fn name() -> String {
        "eventstream_rocket::AllowAll".into()
    }
}

/// Checks every channel of a stream with `authorizer`: all readable, or a
/// `forbidden` error naming the ones that are not. Returns, per channel,
/// whether it is persisted.
pub(crate) async fn authorize(
    authorizer: &dyn Authorizer,
    user: Option<&User>,
    channels: &[String],
) -> Result<Vec<bool>, StreamError> {
    let mut denied = Vec::new();
    for channel in channels {
        if !authorizer.can_read_channel(user, channel).await {
            denied.push(channel.clone());
        }
    }
    if !denied.is_empty() {
        return Err(StreamError::forbidden(denied));
    }
    Ok(channels
        .iter()
        .map(|channel| authorizer.is_channel_reliable(channel))
        .collect())
}
