//! SSE frame encoding: every byte a stream writes is produced here, and
//! here is decided which `id:` line a frame carries ([`IdLine`]).
//!
//! An event is encoded once, when it is sent, into a [`Frame`] that every
//! subscriber shares:
//!
//! ```text
//! id: room-1:42\n          <- `with_id`: the whole frame, for single-channel streams
//! event: message\n         <- `body`: shared by multi-channel streams, which write
//! data: {"text":"hi"}\n        their own `id: a:3,b:42\n` line in front of it
//! \n
//! ```
//!
//! Data is split into one `data:` line per line; CR, LF and CRLF all end a
//! line, so no input can smuggle a field into the stream. Event types are
//! validated by [`validate_event_type`] before they get here, and the encoder
//! still drops CR, LF and NUL from them as a last defence.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::error::StreamError;
use crate::wire::event_id::{EventId, IdVector};

/// Event types the library itself emits; applications cannot send them.
pub const RESERVED_EVENT_TYPES: [&str; 5] = [
    "stream-open",
    "stream-reset",
    "stream-error",
    "keep-alive",
    "stream-presence",
];

/// Longest event type accepted, in bytes.
const MAX_EVENT_TYPE_BYTES: usize = 255;

/// `event: stream-open`, the first frame of every successful stream. It
/// carries the stream's starting id vector (when it has persistent
/// channels), so a client that drops before any event can still resume
/// from the moment it connected.
pub(crate) fn stream_open(out: &mut BytesMut, positions: &IdVector) {
    write_id_line(out, IdLine::Vector(positions), None);
    out.put_slice(b"event: stream-open\ndata:\n\n");
}

/// Sent after `keepalive_secs` without output, so that proxies and clients
/// see the connection is alive and the server notices vanished clients.
pub(crate) const KEEP_ALIVE: &[u8] = b"event: keep-alive\ndata:\n\n";

/// A `keep-alive` carrying a multi-channel stream's id vector: written for
/// an event withheld from this user (a skip list) in place of the event,
/// so that no frame moves two entries of the vector at once and the entry
/// an event moves names its channel (PROTOCOL.md §4.3).
pub(crate) fn withheld(out: &mut BytesMut, positions: &IdVector) {
    write_id_line(out, IdLine::Vector(positions), None);
    out.put_slice(KEEP_ALIVE);
}

/// An SSE comment of 2 KB that very old browsers need before they dispatch
/// events (IE's XDomainRequest, Chrome < 13); off unless configured.
pub(crate) fn padding() -> Bytes {
    let mut padding = BytesMut::with_capacity(2051);
    padding.put_u8(b':');
    padding.put_bytes(b' ', 2048);
    padding.put_slice(b"\n\n");
    padding.freeze()
}

/// Why an application-supplied event type is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventTypeError {
    /// An empty type.
    Empty,
    /// A type longer than [`MAX_EVENT_TYPE_BYTES`].
    TooLong { bytes: usize },
    /// A type with CR, LF or NUL, which would break the frame.
    LineBreak { event_type: String },
    /// One of [`RESERVED_EVENT_TYPES`].
    Reserved { event_type: String },
}

impl std::fmt::Display for EventTypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventTypeError::Empty => f.write_str("event type must not be empty"),
            EventTypeError::TooLong { bytes } => write!(
                f,
                "event type is {bytes} bytes long; at most {MAX_EVENT_TYPE_BYTES} are allowed"
            ),
            EventTypeError::LineBreak { event_type } => write!(
                f,
                "event type {:?} contains CR, LF or NUL",
                event_type.escape_debug().to_string()
            ),
            EventTypeError::Reserved { event_type } => write!(
                f,
                "event type {event_type:?} is reserved for the library (reserved: {})",
                RESERVED_EVENT_TYPES.join(", ")
            ),
        }
    }
}

impl std::error::Error for EventTypeError {}

/// Checks an application-supplied event type.
pub(crate) fn validate_event_type(event_type: &str) -> Result<(), EventTypeError> {
    if event_type.is_empty() {
        return Err(EventTypeError::Empty);
    }
    if event_type.len() > MAX_EVENT_TYPE_BYTES {
        return Err(EventTypeError::TooLong {
            bytes: event_type.len(),
        });
    }
    if event_type.contains(['\r', '\n', '\0']) {
        return Err(EventTypeError::LineBreak {
            event_type: event_type.to_owned(),
        });
    }
    if RESERVED_EVENT_TYPES.contains(&event_type) {
        return Err(EventTypeError::Reserved {
            event_type: event_type.to_owned(),
        });
    }
    Ok(())
}

/// The `id:` line a frame carries on a particular stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdLine<'a> {
    /// The event's own id, `channel:seq`: single-channel streams.
    Own,
    /// The stream's whole id vector, already advanced past the event:
    /// multi-channel streams. Nothing is written while the vector is empty
    /// (a stream of non-persistent channels only).
    Vector(&'a IdVector),
    /// A value the caller supplies: GRIP's `%I`, which the proxy replaces
    /// with each subscriber's own id vector.
    Literal(&'a str),
}

/// Writes the id line `id` calls for; `own` is the event's own id, if it
/// has one (events of non-persistent channels have none).
fn write_id_line(out: &mut BytesMut, id: IdLine<'_>, own: Option<&EventId>) {
    match id {
        IdLine::Own => {
            if let Some(own) = own {
                write_id(out, &own.to_string());
            }
        }
        IdLine::Vector(positions) if positions.is_empty() => {}
        IdLine::Vector(positions) => write_id(out, &positions.to_string()),
        IdLine::Literal(value) => write_id(out, value),
    }
}

/// Encodes a stored event straight into `out`, with the id line `id`.
pub(crate) fn write_event(
    out: &mut BytesMut,
    event_type: &str,
    data: &str,
    own: &EventId,
    id: IdLine<'_>,
) {
    write_id_line(out, id, Some(own));
    write_event_type(out, event_type);
    write_data(out, data);
}

/// An event encoded once for all subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// `event:` and `data:` lines and the closing blank line.
    pub(crate) body: Bytes,
    /// `id: <channel>:<seq>` followed by `body`, or `body` alone for events
    /// without an id (non-persistent channels).
    pub(crate) with_id: Bytes,
}

impl Frame {
    /// Encodes an event; `id` is the single-channel id line value, if any.
    pub(crate) fn encode(event_type: &str, data: &str, id: Option<&str>) -> Frame {
        Frame::with_body(encode_body(event_type, data), id)
    }

    /// Completes a body from [`encode_body`] with the event's own id, if it
    /// has one.
    pub(crate) fn for_event(body: Bytes, id: Option<&EventId>) -> Frame {
        Frame::with_body(body, id.map(ToString::to_string).as_deref())
    }

    /// Completes a body from [`encode_body`] with its id line.
    fn with_body(body: Bytes, id: Option<&str>) -> Frame {
        let with_id = match id {
            Some(id) => {
                let mut whole = BytesMut::with_capacity(id.len() + 5 + body.len());
                write_id(&mut whole, id);
                whole.put_slice(&body);
                whole.freeze()
            }
            None => body.clone(),
        };
        Frame { body, with_id }
    }

    /// Writes the frame into `out` with the id line `id` (`IdLine::Own` is
    /// the precomputed `with_id`, copied as is).
    pub(crate) fn write(&self, out: &mut BytesMut, id: IdLine<'_>) {
        match id {
            IdLine::Own => out.put_slice(&self.with_id),
            other => {
                write_id_line(out, other, None);
                out.put_slice(&self.body);
            }
        }
    }
}

/// The `event:` and `data:` lines of an event, without an id.
pub(crate) fn encode_body(event_type: &str, data: &str) -> Bytes {
    let mut body = BytesMut::with_capacity(event_type.len() + data.len() + 24);
    write_event_type(&mut body, event_type);
    write_data(&mut body, data);
    body.freeze()
}

/// Writes `id: <value>\n`, dropping CR, LF and NUL.
fn write_id(out: &mut BytesMut, id: &str) {
    out.put_slice(b"id: ");
    put_sanitized(out, id);
    out.put_u8(b'\n');
}

fn write_event_type(out: &mut BytesMut, event_type: &str) {
    out.put_slice(b"event: ");
    put_sanitized(out, event_type);
    out.put_u8(b'\n');
}

/// Writes one `data:` line per line of `data` and the closing blank line.
fn write_data(out: &mut BytesMut, data: &str) {
    let mut rest = data;
    loop {
        match rest.find(['\r', '\n']) {
            Some(end) => {
                put_data_line(out, &rest[..end]);
                let skip = if rest[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[end + skip..];
            }
            None => {
                put_data_line(out, rest);
                break;
            }
        }
    }
    out.put_u8(b'\n');
}

fn put_data_line(out: &mut BytesMut, line: &str) {
    if line.is_empty() {
        out.put_slice(b"data:\n");
    } else {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
}

/// Copies a single-line field (event type or id) without CR, LF and NUL.
fn put_sanitized(out: &mut BytesMut, text: &str) {
    for piece in text.split(['\r', '\n', '\0']) {
        out.put_slice(piece.as_bytes());
    }
}

/// `event: stream-reset`: the named channels could not be resumed; its id
/// line is the stream's `positions` (already moved to the current ids),
/// from which the stream continues.
pub(crate) fn stream_reset(out: &mut BytesMut, channels: &[String], positions: &IdVector) {
    #[derive(Serialize)]
    struct Reset<'a> {
        channels: &'a [String],
    }
    let data = serde_json::to_string(&Reset { channels }).unwrap_or_else(|_| "{}".into());
    write_id_line(out, IdLine::Vector(positions), None);
    write_event_type(out, "stream-reset");
    write_data(out, &data);
}

/// The whole answer to a stream that cannot be served now but may be soon
/// (a limit, an unreachable event log): a `retry:` of `retry_ms` and a
/// comment saying why, then the end. `EventSource` reconnects after
/// `retry_ms` with its `Last-Event-ID`; no `id: error`, no `stream-error`
/// (either would stop it for good).
pub(crate) fn retry_later(retry_ms: u64, reason: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(reason.len() + 24);
    out.put_slice(format!("retry: {retry_ms}\n: ").as_bytes());
    put_sanitized(&mut out, reason);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// `event: stream-error` with `id: error`; the stream ends after it.
pub(crate) fn stream_error(error: &StreamError) -> Bytes {
    Frame::encode("stream-error", &error.to_json(), Some("error")).with_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).expect("frames are UTF-8")
    }

    #[test]
    fn encodes_event_with_and_without_id() {
        let frame = Frame::encode("message", "hello", Some("test:1"));
        assert_eq!(
            text(&frame.with_id),
            "id: test:1\nevent: message\ndata: hello\n\n"
        );
        assert_eq!(text(&frame.body), "event: message\ndata: hello\n\n");
        let frame = Frame::encode("message", "hello", None);
        assert_eq!(text(&frame.with_id), "event: message\ndata: hello\n\n");
    }

    #[test]
    fn splits_data_on_cr_lf_and_crlf() {
        let frame = Frame::encode("m", "a\rb\nc\r\nd\n\ne", None);
        assert_eq!(
            text(&frame.body),
            "event: m\ndata: a\ndata: b\ndata: c\ndata: d\ndata:\ndata: e\n\n"
        );
    }

    #[test]
    fn strips_injection_from_type_and_id() {
        // The vector of django-eventstream's CWE-93 fix (#185).
        let frame = Frame::encode(
            "message\nevent: foo",
            "hello\rworld",
            Some("1\nevent_id: 2"),
        );
        assert_eq!(
            text(&frame.with_id),
            "id: 1event_id: 2\nevent: messageevent: foo\ndata: hello\ndata: world\n\n"
        );
    }

    #[test]
    fn event_types_are_validated() {
        assert!(validate_event_type("message").is_ok());
        assert!(validate_event_type("chat.message-2").is_ok());
        for bad in [
            "",
            "a\nb",
            "a\rb",
            "a\0b",
            "stream-open",
            "stream-reset",
            "stream-error",
            "keep-alive",
        ] {
            assert!(validate_event_type(bad).is_err(), "{bad:?}");
        }
        assert!(validate_event_type(&"x".repeat(256)).is_err());
    }

    #[test]
    fn the_id_line_follows_the_stream() {
        let frame = Frame::for_event(encode_body("m", "x"), Some(&EventId::new("a", 3)));
        let mut positions = IdVector::new();
        let mut out = BytesMut::new();
        frame.write(&mut out, IdLine::Own);
        frame.write(&mut out, IdLine::Vector(&positions));
        positions.set("a", 3);
        positions.set("b", 1);
        frame.write(&mut out, IdLine::Vector(&positions));
        frame.write(&mut out, IdLine::Literal("%I"));
        write_event(&mut out, "m", "y", &EventId::new("a", 4), IdLine::Own);
        assert_eq!(
            text(&out.freeze()),
            "id: a:3\nevent: m\ndata: x\n\n\
             event: m\ndata: x\n\n\
             id: a:3,b:1\nevent: m\ndata: x\n\n\
             id: %I\nevent: m\ndata: x\n\n\
             id: a:4\nevent: m\ndata: y\n\n"
        );
    }

    #[test]
    fn retry_later_has_no_event_and_no_error_id() {
        assert_eq!(
            text(&retry_later(2500, "busy\nevent: x")),
            "retry: 2500\n: busyevent: x\n\n"
        );
    }

    #[test]
    fn control_frames() {
        assert_eq!(padding().len(), 2051);
        let mut reset = BytesMut::new();
        let positions = IdVector::parse("a:3,b%20c:9").expect("valid");
        stream_reset(&mut reset, &["a".into(), "b c".into()], &positions);
        assert_eq!(
            text(&reset.freeze()),
            "id: a:3,b%20c:9\nevent: stream-reset\ndata: {\"channels\":[\"a\",\"b c\"]}\n\n"
        );
        let error = StreamError::forbidden(vec!["_x".into()]);
        assert_eq!(
            text(&stream_error(&error)),
            "id: error\nevent: stream-error\ndata: {\"condition\":\"forbidden\",\"text\":\"Permission denied to channels: _x\",\"channels\":[\"_x\"]}\n\n"
        );
    }
}
