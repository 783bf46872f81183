//! [`EventStream`]: the responder that writes a stream's headers and body.
//!
//! In direct mode the body is produced chunk by chunk by a [`Session`] and
//! handed to Rocket as a reader with an explicit `max_chunk_size`, so that
//! frames queued while the client was busy leave in one write instead of
//! one per frame. A finite answer (what the GRIP layer sends a proxy, with
//! its `Grip-*` headers) is a sized body with extra headers.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use rocket::Request;
use rocket::futures::stream::{self, StreamExt};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response, stream::ReaderStream};

use crate::access::cors;
use crate::context::Context;
use crate::stream::session::{Plan, Session};

/// A server-sent event stream, returned by the built-in routes and by
/// [`StreamRequest::channels`](crate::StreamRequest::channels).
pub struct EventStream {
    context: Arc<Context>,
    answer: Answer,
}

enum Answer {
    /// A live stream served by this process, already registered with the
    /// hub and positioned: everything sent after the response head arrives.
    Direct(Bytes, Option<Box<Session>>),
    /// A complete body and extra headers (GRIP instructions for a proxy).
    Finite {
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// `Last-Event-ID: error`: refused with HTTP 400.
    AfterError,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// Opens the stream before the response head is sent, so that a client
    /// that sees the head (`EventSource.onopen`) misses nothing sent after.
    pub(crate) async fn open(plan: Plan, after_error: bool) -> Self {
        let context = Arc::clone(&plan.context);
        let answer = if after_error {
            Answer::AfterError
        } else {
            let (first, session) = plan.open().await;
            Answer::Direct(first, session.map(Box::new))
        };
        EventStream { context, answer }
    }

    /// A complete SSE body with extra headers.
    pub(crate) fn finite(
        context: Arc<Context>,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Self {
        EventStream {
            context,
            answer: Answer::Finite { headers, body },
        }
    }

    pub(crate) fn after_error(context: Arc<Context>) -> Self {
        EventStream {
            context,
            answer: Answer::AfterError,
        }
    }
}

/// The body: the opening chunk, then whatever the session produces.
///
/// The session is boxed: `unfold` keeps both its state and the future that
/// waits for the next chunk, and each would otherwise hold a whole session
/// inline, for as long as the stream is open (most of them idle).
enum Body {
    Opening(Bytes, Option<Box<Session>>),
    Running(Box<Session>),
    Done,
}

async fn next(body: Body) -> Option<(Bytes, Body)> {
    match body {
        Body::Opening(first, session) => {
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

fn event_stream_type() -> ContentType {
    ContentType::new("text", "event-stream")
}

impl<'r> Responder<'r, 'static> for EventStream {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let config = &self.context.config;
        let mut response = match self.answer {
            Answer::AfterError => {
                // django-eventstream's contract: refuse to resume after a
                // stream-error with a plain 400, so that native EventSource
                // stops reconnecting instead of looping.
                let text = "Invalid request: Can't resume session after stream-error.\n";
                Response::build()
                    .status(Status::BadRequest)
                    .header(ContentType::Plain)
                    .sized_body(text.len(), Cursor::new(text))
                    .finalize()
            }
            Answer::Direct(first, session) => {
                let body = stream::unfold(Body::Opening(first, session), next).map(Cursor::new);
                Response::build()
                    .status(Status::Ok)
                    .header(event_stream_type())
                    .streamed_body(ReaderStream::from(body))
                    // After streamed_body(), which resets it: coalesced
                    // chunks leave in writes of up to this size.
                    .max_chunk_size(config.chunk_size)
                    .finalize()
            }
            Answer::Finite { headers, body } => {
                let mut response = Response::build()
                    .status(Status::Ok)
                    .header(event_stream_type())
                    .sized_body(body.len(), Cursor::new(body))
                    .finalize();
                for (name, value) in headers {
                    response.set_header(Header::new(name, value));
                }
                response
            }
        };
        response.set_header(Header::new("Cache-Control", "no-cache"));
        response.set_header(Header::new("X-Accel-Buffering", "no"));
        cors::apply(config, request, &mut response, false);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open stream holds this future for as long as it is open, most
    /// of that time idle. Replaying from storage and asking the authorizer
    /// again are boxed while they run, so their (large) futures are not
    /// part of it: it was 952 bytes when they were inline (216 now).
    #[test]
    fn the_body_future_an_idle_stream_holds_stays_small() {
        let future = next(Body::Done);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 256, "the body's future takes {size} bytes");
    }
}
