//! Why a stream does not open, or ends early, and what the client is told:
//! a `stream-error` it should not retry, or `retry:` and an orderly end it
//! should.

use bytes::Bytes;

use crate::access::authorizer::Denied;
use crate::access::limits::{LimitReached, jittered_retry_ms};
use crate::error::StreamError;
use crate::measure::metrics::Metrics;
use crate::stream::replay::Unavailable;
use crate::wire::frame;

/// Why a stream does not open (or ends early).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// It cannot be served: a `stream-error`, and `EventSource` stops.
    Error(StreamError),
    /// Not now (a limit, the event log unreachable): `retry:` and an
    /// orderly end, and `EventSource` comes back with its `Last-Event-ID`.
    RetryLater(&'static str),
}

impl Refusal {
    /// The answer's bytes; a deferral is counted.
    pub(crate) fn into_frame(self, metrics: &Metrics) -> Bytes {
        match self {
            Refusal::Error(error) => frame::stream_error(&error),
            Refusal::RetryLater(reason) => {
                metrics.stream_deferred();
                frame::retry_later(jittered_retry_ms(), reason)
            }
        }
    }
}

impl From<StreamError> for Refusal {
    fn from(error: StreamError) -> Self {
        Refusal::Error(error)
    }
}

impl From<Denied> for Refusal {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Forbidden(error) => Refusal::Error(error),
            Denied::CannotTell => Refusal::RetryLater("the authorizer cannot tell now"),
        }
    }
}

impl From<Unavailable> for Refusal {
    fn from(_: Unavailable) -> Self {
        Refusal::RetryLater("the event log is unavailable")
    }
}

impl From<LimitReached> for Refusal {
    fn from(limit: LimitReached) -> Self {
        Refusal::RetryLater(limit.reason())
    }
}
