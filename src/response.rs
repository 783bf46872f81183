//! [`EventStream`]: the responder that writes a stream's headers and body.
//!
//! The body is produced chunk by chunk by a [`Session`] and handed to Rocket
//! as a reader with an explicit `max_chunk_size`, so that frames queued
//! while the client was busy leave in one write instead of one per frame.

use std::io::Cursor;

use bytes::Bytes;
use rocket::Request;
use rocket::futures::stream::{self, StreamExt};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response, stream::ReaderStream};

use crate::cors;
use crate::subscription::{Plan, Session};

/// A server-sent event stream, returned by the built-in routes and by
/// [`StreamRequest::channels`](crate::StreamRequest::channels).
pub struct EventStream {
    plan: Plan,
    after_error: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(plan: Plan, after_error: bool) -> Self {
        EventStream { plan, after_error }
    }
}

/// The body: the opening chunk, then whatever the session produces.
enum Body {
    Opening(Plan),
    Running(Session),
    Done,
}

async fn next(body: Body) -> Option<(Bytes, Body)> {
    match body {
        Body::Opening(plan) => {
            let (first, session) = plan.open().await;
            let rest = session.map_or(Body::Done, Body::Running);
            Some((first, rest))
        }
        Body::Running(mut session) => {
            let chunk = session.next_chunk().await?;
            Some((chunk, Body::Running(session)))
        }
        Body::Done => None,
    }
}

impl<'r> Responder<'r, 'static> for EventStream {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let shared = std::sync::Arc::clone(&self.plan.shared);
        let config = &shared.config;
        let mut response = if self.after_error {
            // django-eventstream's contract: refuse to resume after a
            // stream-error with a plain 400, so that native EventSource
            // stops reconnecting instead of looping.
            let text = "Invalid request: Can't resume session after stream-error.\n";
            Response::build()
                .status(Status::BadRequest)
                .header(ContentType::Plain)
                .sized_body(text.len(), Cursor::new(text))
                .finalize()
        } else {
            let chunk_size = config.chunk_size;
            let body = stream::unfold(Body::Opening(self.plan), next).map(Cursor::new);
            Response::build()
                .status(Status::Ok)
                .header(ContentType::new("text", "event-stream"))
                .streamed_body(ReaderStream::from(body))
                // After streamed_body(), which resets it: coalesced chunks
                // leave in writes of up to this size.
                .max_chunk_size(chunk_size)
                .finalize()
        };
        response.set_header(Header::new("Cache-Control", "no-cache"));
        response.set_header(Header::new("X-Accel-Buffering", "no"));
        cors::apply(config, request, &mut response, false);
        Ok(response)
    }
}
