//! Authorization: which channels a request streams, who may read them, and
//! which of them are persisted. Apps implement [`Authorizer`], register it
//! with the stage, and pick it by name in `Rocket.toml`
//! (`EVENTSTREAM_AUTHORIZER = "my_app::auth::PrivateChannels"`), the way
//! django-eventstream picks a channel manager class.

use rocket::Request;

use crate::access::identity::User;
use crate::access::presence_rule::PresenceRule;
use crate::error::StreamError;

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
    /// to the type's path (`my_app::auth::PrivateChannels`). A configured
    /// name also selects it by the type's own name, its last segment
    /// (`PrivateChannels`, or `other::path::PrivateChannels` after the type
    /// moved), so neither a refactoring nor the compiler's spelling of the
    /// path breaks a configuration; override it (or use
    /// `Stage::authorizer_named`) to pin a name of your own.
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

    /// Whether `user` may read `channel`, or that this cannot be told right
    /// now (the data the answer depends on is out of reach). Streams ask
    /// through this method: when they open, and again after the bus was
    /// away (a kick sent meanwhile is found that way). The default asks
    /// [`Authorizer::can_read_channel`]; override this one to say
    /// [`Decision::CannotTell`].
    ///
    /// A stream that opens while the answer is `CannotTell` is told to
    /// retry later (`retry:`; `EventSource` comes back by itself). An open
    /// stream whose re-check gets it stays open, keeps receiving, and asks
    /// again every few seconds until the answer is `Allow` or `Deny`.
    async fn decide(&self, user: Option<&User>, channel: &str) -> Decision {
        if self.can_read_channel(user, channel).await {
            Decision::Allow
        } else {
            Decision::Deny
        }
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

    /// What `user` (`None`: anonymous) sees of `channel`'s presence, and
    /// whether `user` is named in it. Asked once per channel when a stream
    /// opens (the stream can already read the channel). The default lets
    /// readers see the counts and names nobody; return
    /// [`PresenceRule::MEMBER`] where readers know each other (a chat room).
    ///
    /// ```
    /// use eventstream_rocket::{Authorizer, PresenceRule, User};
    ///
    /// #[derive(Default)]
    /// pub struct Rooms;
    ///
    /// impl Authorizer for Rooms {
    ///     fn presence(&self, user: Option<&User>, channel: &str) -> PresenceRule {
    ///         // Room members see who is in; moderators are never shown.
    ///         let hidden = user.is_some_and(|user| user.has_role("moderator"));
    ///         PresenceRule {
    ///             listed: channel.starts_with("room-") && !hidden,
    ///             ..PresenceRule::MEMBER
    ///         }
    ///     }
    /// }
    /// ```
    fn presence(&self, user: Option<&User>, channel: &str) -> PresenceRule {
        let _ = (user, channel);
        PresenceRule::default()
    }
}

/// An [`Authorizer`]'s answer for one user and channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The user may read the channel.
    Allow,
    /// The user may not: the stream gets `stream-error` `forbidden`.
    Deny,
    /// The answer cannot be known now (the authorizer's own data is out of
    /// reach): nothing is decided, and the question is asked again later.
    CannotTell,
}

/// Why [`authorize`] did not let a stream in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Some channel is refused: `forbidden`, naming them.
    Forbidden(StreamError),
    /// No channel is refused, but some cannot be decided now.
    CannotTell,
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

/// What `user` sees of each of `channels`' presence, and whether they are
/// named there: the authorizer's [`Authorizer::presence`], per channel.
pub(crate) fn presence_rules(
    authorizer: &dyn Authorizer,
    user: Option<&User>,
    channels: &[String],
) -> Vec<PresenceRule> {
    channels
        .iter()
        .map(|channel| authorizer.presence(user, channel))
        .collect()
}

/// Checks every channel of a stream with `authorizer`: all readable, a
/// `forbidden` error naming the ones that are not, or (none refused) that
/// some cannot be told now. Returns, per channel, whether it is persisted.
pub(crate) async fn authorize(
    authorizer: &dyn Authorizer,
    user: Option<&User>,
    channels: &[String],
) -> Result<Vec<bool>, Denied> {
    let mut denied = Vec::new();
    let mut undecided = false;
    for channel in channels {
        match authorizer.decide(user, channel).await {
            Decision::Allow => {}
            Decision::Deny => denied.push(channel.clone()),
            Decision::CannotTell => undecided = true,
        }
    }
    if !denied.is_empty() {
        return Err(Denied::Forbidden(StreamError::forbidden(denied)));
    }
    if undecided {
        return Err(Denied::CannotTell);
    }
    Ok(channels
        .iter()
        .map(|channel| authorizer.is_channel_reliable(channel))
        .collect())
}
