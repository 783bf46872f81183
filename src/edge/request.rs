//! [`StreamRequest`]: the request guard that gathers what a stream needs
//! (who is asking, where to resume, the shutdown signal), for the built-in
//! routes and for an application's own routes.

use std::net::IpAddr;
use std::sync::Arc;

use rocket::Request;
use rocket::Shutdown;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};

use crate::access::identity::User;
use crate::access::request_info::{client_address, query_values};
use crate::context::Context;
use crate::error::StreamError;
use crate::events::Events;
use crate::grip::Grip;
use crate::grip::instruct::{self, GripRequest};
use crate::stream::response::EventStream;
use crate::stream::session::Plan;
use crate::wire::channel;
use crate::wire::event_id::{Resume, ResumeError};

/// A request for a stream. Use it in your own route and answer with the
/// channels you computed:
///
/// ```no_run
/// # use rocket::get;
/// use eventstream_rocket::{EventStream, StreamRequest};
///
/// /// Each user listens to their own notification channel.
/// #[get("/notifications")]
/// async fn notifications(stream: StreamRequest) -> EventStream {
///     let channel = match stream.user() {
///         Some(user) => format!("_user-{}", user.id),
///         None => "public".to_owned(),
///     };
///     stream.channels([channel]).await
/// }
/// ```
///
/// Authorization, resume, errors and keep-alives then behave exactly as on
/// the built-in `/events/` routes.
pub struct StreamRequest {
    context: Arc<Context>,
    user: Result<Option<User>, StreamError>,
    resume: Result<Resume, ResumeError>,
    requested: Vec<String>,
    shutdown: Shutdown,
    /// Set when a GRIP proxy (verified `Grip-Sig`) sent the request.
    grip: Option<(Arc<Grip>, GripRequest)>,
    /// The client's address, for `max_streams_per_ip`.
    address: Option<IpAddr>,
    /// `presence=1`: the stream asked for `stream-presence` events.
    presence: Result<bool, StreamError>,
}

/// The `presence` query parameter: absent or `0`/`false` for no, `1`/`true`
/// for yes; anything else is a bad request, not a silent no.
fn presence_asked(values: &[&str]) -> Result<bool, StreamError> {
    match values {
        [] => Ok(false),
        [one] => match *one {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            other => Err(StreamError::bad_request(format!(
                "Invalid request: presence={other:?}; use presence=1 or leave it out."
            ))),
        },
        _ => Err(StreamError::bad_request(
            "Invalid request: presence is given more than once.",
        )),
    }
}

impl std::fmt::Debug for StreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRequest")
            .field("user", &self.user)
            .field("resume", &self.resume)
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

impl StreamRequest {
    /// The signed-in user, if the identity hook recognised one.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref().ok().and_then(Option::as_ref)
    }

    /// The `channel` query values of the request, as sent.
    pub fn query_channels(&self) -> &[String] {
        &self.requested
    }

    /// Streams `channels`. At most `channel_limit` names, validated like
    /// the built-in routes'; errors become a `stream-error` frame. Behind a
    /// GRIP proxy this reads storage before answering, hence `async`.
    pub async fn channels<I, S>(self, channels: I) -> EventStream
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let channels = channels.into_iter().map(Into::into).collect();
        self.respond(Ok(channels)).await
    }

    /// Continues a proxied stream at the next link whose token is `token`
    /// (the `GET <mount>/_next/<token>` route). Only a verified GRIP proxy
    /// follows next links; anyone else gets a `stream-error`.
    pub(crate) async fn follow_link(mut self, token: &str) -> EventStream {
        match self.grip.take() {
            Some((grip, request)) => {
                self.grip = Some((grip, request.following(token)));
                self.respond(Ok(Vec::new())).await
            }
            None => {
                self.respond(Err(StreamError::bad_request(
                    "Invalid request: next links are followed by a GRIP proxy only; \
                     open the stream at its own URL.",
                )))
                .await
            }
        }
    }

    /// Streams the result of the authorizer's `channels_for_request`.
    pub(crate) async fn respond(self, channels: Result<Vec<String>, StreamError>) -> EventStream {
        let limit = self.context.config.channel_limit;
        let after_error = matches!(self.resume, Ok(Resume::AfterError));
        let presence = self.presence.clone();
        let channels = channels.and_then(|channels| {
            presence?;
            channel::validate_list(channels, limit)
                .map_err(|why| StreamError::bad_request(format!("Invalid request: {why}.")))
        });
        if let Some((grip, grip_request)) = &self.grip {
            if after_error {
                return EventStream::after_error(self.context);
            }
            let proxied = instruct::respond(
                &self.context,
                grip,
                grip_request,
                channels,
                self.user,
                self.resume,
                matches!(self.presence, Ok(true)),
            )
            .await;
            return EventStream::finite(self.context, proxied.headers, proxied.body);
        }
        let plan = Plan {
            channels,
            context: self.context,
            user: self.user,
            resume: self.resume,
            shutdown: self.shutdown,
            address: self.address,
            presence: self.presence.unwrap_or(false),
        };
        EventStream::open(plan, after_error).await
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for StreamRequest {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(events) = request.rocket().state::<Events>() else {
            log::error!(
                "eventstream: StreamRequest used but the eventstream stage is not attached"
            );
            return Outcome::Error((
                Status::InternalServerError,
                "eventstream stage not attached",
            ));
        };
        let context = Arc::clone(events.context());
        let shutdown = match request.guard::<Shutdown>().await {
            Outcome::Success(shutdown) => shutdown,
            _ => return Outcome::Error((Status::InternalServerError, "no shutdown handle")),
        };
        let resume = Resume::from_request(
            request.headers().get_one("Last-Event-ID"),
            query_values(request, "lastEventId").into_iter(),
        );
        let requested = query_values(request, "channel")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let user = context.identity.identify(request).await;
        // GRIP is on when the stage manages it; the request is proxied only
        // if its Grip-Sig verifies.
        let grip = request.rocket().state::<Arc<Grip>>().and_then(|grip| {
            GripRequest::from_request(grip, request).map(|proxied| (Arc::clone(grip), proxied))
        });
        let address = client_address(request, context.config.trusted_ip_header.as_deref());
        let presence = presence_asked(&query_values(request, "presence"));
        Outcome::Success(StreamRequest {
            context,
            user,
            resume,
            requested,
            shutdown,
            grip,
            address,
            presence,
        })
    }
}
