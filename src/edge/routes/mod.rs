//! The built-in routes, mounted at `eventstream.mount` (default `/events`):
//!
//! ```text
//! GET     <mount>?channel=a&channel=b   stream the channels (also <mount>/)
//! GET     <mount>/<channel>             stream one channel
//! GET     <mount>/_next/<token>         a GRIP proxy following a next link
//! POST    <mount>/<channel>             publish API (with a publish_key)
//! GET     <mount>/_presence/<channel>   who reads it (with a publish_key)
//! OPTIONS <mount>, <mount>/<channel>    CORS preflight
//! ```
//!
//! The publish API has its own file, [`publish_api`]; the health check and
//! the Prometheus scrape, mounted at their own paths, are in [`operator`].

pub(crate) mod operator;
mod publish_api;

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::response::{self, Responder, Response};
use rocket::{Request, Route, State};

use crate::access::cors;
use crate::access::request_info::query_values;
use crate::edge::request::StreamRequest;
use crate::error::StreamError;
use crate::events::Events;
use crate::stream::response::EventStream;

/// The channels the authorizer's `channels_for_request` picked for a
/// request to the built-in routes.
pub(crate) struct RequestedChannels(Result<Vec<String>, StreamError>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RequestedChannels {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(events) = request.rocket().state::<Events>() else {
            return Outcome::Forward(Status::InternalServerError);
        };
        let mut requested: Vec<String> = query_values(request, "channel")
            .into_iter()
            .map(str::to_owned)
            .collect();
        // The `<channel>` segment of `GET <mount>/<channel>`.
        if let Some(Ok(channel)) = request.param::<&str>(0) {
            requested.push(channel.to_owned());
        }
        let chosen = events
            .context()
            .authorizer
            .channels_for_request(request, requested);
        Outcome::Success(RequestedChannels(chosen))
    }
}

/// `GET <mount>?channel=...`
#[rocket::get("/")]
pub(crate) async fn stream_query(
    stream: StreamRequest,
    channels: RequestedChannels,
) -> EventStream {
    stream.respond(channels.0).await
}

/// `GET <mount>/<channel>`
#[rocket::get("/<channel>")]
pub(crate) async fn stream_path(
    channel: &str,
    stream: StreamRequest,
    channels: RequestedChannels,
) -> EventStream {
    let _ = channel; // read by RequestedChannels, with the query channels
    stream.respond(channels.0).await
}

/// `GET <mount>/_next/<token>`: two segments, so it cannot collide with a
/// channel's route; used whatever route opened the stream.
#[rocket::get("/_next/<token>")]
pub(crate) async fn follow_link(token: &str, stream: StreamRequest) -> EventStream {
    stream.follow_link(token).await
}

/// An empty 204 answering a CORS preflight.
pub(crate) struct Preflight<'a>(&'a Events);

impl<'r> Responder<'r, 'static> for Preflight<'_> {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build().status(Status::NoContent).finalize();
        cors::apply(&self.0.context().config, request, &mut response, true);
        Ok(response)
    }
}

/// `OPTIONS <mount>`
#[rocket::options("/")]
pub(crate) fn preflight_root(events: &State<Events>) -> Preflight<'_> {
    Preflight(events.inner())
}

/// `OPTIONS <mount>/<channel>`
#[rocket::options("/<_>")]
pub(crate) fn preflight_channel(events: &State<Events>) -> Preflight<'_> {
    Preflight(events.inner())
}

/// The routes to mount; the publish API only when a key is configured.
pub(crate) fn routes(publish: bool) -> Vec<Route> {
    let mut routes = rocket::routes![
        stream_query,
        stream_path,
        follow_link,
        preflight_root,
        preflight_channel
    ];
    if publish {
        routes.extend(rocket::routes![publish_api::publish, publish_api::presence]);
    }
    routes
}
