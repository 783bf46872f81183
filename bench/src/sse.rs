//! A lean SSE subscriber over raw TCP: one HTTP/1.1 request, chunked
//! transfer decoding, and frame parsing that extracts only what the
//! measurements need (event kind, sequence number, the data's `t` and `i`).
//! Thousands of these run in one process, so nothing is allocated per frame.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The kind of a frame, by its `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Message,
    Open,
    KeepAlive,
    Reset,
    Error,
    Presence,
    Other,
}

/// What the benchmark reads off one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    /// The number after the last `:` of the `id:` line (single channel).
    pub(crate) seq: Option<u64>,
    /// `t` of the data: send time in nanoseconds since the Unix epoch.
    pub(crate) sent_ns: Option<u64>,
    /// `i` of the data: the publisher's sequence number.
    pub(crate) index: Option<u64>,
}

enum Body {
    /// Waiting for a chunk-size line.
    Size,
    /// Inside a chunk with this many bytes left.
    Data(usize),
    /// Expecting the CRLF after a chunk.
    DataEnd,
    /// Not chunked: everything is body.
    Raw,
    Ended,
}

/// One open stream.
pub(crate) struct Subscriber {
    socket: TcpStream,
    wire: BytesMut,
    body: BytesMut,
    state: Body,
}

impl Subscriber {
    /// Connects and sends the request; returns once the response head is read.
    pub(crate) async fn connect(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> io::Result<Subscriber> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        );
        socket.write_all(request.as_bytes()).await?;
        let mut wire = BytesMut::with_capacity(4096);
        let head_end = loop {
            if let Some(end) = find(&wire, b"\r\n\r\n") {
                break end;
            }
            if socket.read_buf(&mut wire).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response head",
                ));
            }
        };
        let head = String::from_utf8_lossy(&wire[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(io::Error::other(format!("unexpected status: {status}")));
        }
        let chunked = head
            .lines()
            .any(|line| line.starts_with("transfer-encoding:") && line.contains("chunked"));
        wire.advance(head_end + 4);
        Ok(Subscriber {
            socket,
            wire,
            body: BytesMut::with_capacity(4096),
            state: if chunked { Body::Size } else { Body::Raw },
        })
    }

    /// The next frame; `None` when the server ended the stream.
    pub(crate) async fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(end) = find(&self.body, b"\n\n") {
                let frame = parse(&self.body[..end]);
                self.body.advance(end + 2);
                return Ok(Some(frame));
            }
            if !self.decode() {
                if matches!(self.state, Body::Ended) {
                    return Ok(None);
                }
                if self.socket.read_buf(&mut self.wire).await? == 0 {
                    return Ok(None);
                }
            }
        }
    }

    /// Moves decoded body bytes from `wire` to `body`; false when more input
    /// is needed.
    fn decode(&mut self) -> bool {
        let mut progressed = false;
        loop {
            match self.state {
                Body::Raw => {
                    if self.wire.is_empty() {
                        return progressed;
                    }
                    self.body.extend_from_slice(&self.wire);
                    self.wire.clear();
                    return true;
                }
                Body::Size => {
                    let Some(end) = find(&self.wire, b"\r\n") else {
                        return progressed;
                    };
                    let line = std::str::from_utf8(&self.wire[..end]).unwrap_or("0");
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("0").trim(), 16)
                            .unwrap_or(0);
                    self.wire.advance(end + 2);
                    self.state = if size == 0 {
                        Body::Ended
                    } else {
                        Body::Data(size)
                    };
                    progressed = true;
                }
                Body::Data(left) => {
                    if self.wire.is_empty() {
                        return progressed;
                    }
                    let take = left.min(self.wire.len());
                    self.body.extend_from_slice(&self.wire[..take]);
                    self.wire.advance(take);
                    self.state = if take == left {
                        Body::DataEnd
                    } else {
                        Body::Data(left - take)
                    };
                    progressed = true;
                }
                Body::DataEnd => {
                    if self.wire.len() < 2 {
                        return progressed;
                    }
                    self.wire.advance(2);
                    self.state = Body::Size;
                    progressed = true;
                }
                Body::Ended => return progressed,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn parse(block: &[u8]) -> Frame {
    let mut frame = Frame {
        kind: Kind::Message,
        seq: None,
        sent_ns: None,
        index: None,
    };
    // A block of comment lines only (padding, `:` keep-alives) dispatches
    // no event in EventSource.
    if block
        .split(|b| *b == b'\n')
        .all(|line| line.is_empty() || line.starts_with(b":"))
    {
        frame.kind = Kind::Other;
        return frame;
    }
    for line in block.split(|b| *b == b'\n') {
        if let Some(value) = field(line, b"event") {
            frame.kind = match value {
                b"message" => Kind::Message,
                b"stream-open" => Kind::Open,
                b"keep-alive" => Kind::KeepAlive,
                b"stream-reset" => Kind::Reset,
                b"stream-error" => Kind::Error,
                b"stream-presence" => Kind::Presence,
                _ => Kind::Other,
            };
        } else if let Some(value) = field(line, b"id") {
            frame.seq = value.rsplit(|b| *b == b':').next().and_then(number);
        } else if let Some(value) = field(line, b"data") {
            frame.sent_ns = json_number(value, b"\"t\":");
            frame.index = json_number(value, b"\"i\":");
        }
    }
    frame
}

fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_u64, |n, b| {
        b.is_ascii_digit()
            .then(|| n.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
    })
}

fn json_number(data: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(data, key)? + key.len();
    // Python's json.dumps writes `"t": 1`.
    let digits = data[start..].trim_ascii_start();
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    number(&digits[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_the_benchmark_needs() {
        let frame =
            parse(b"id: bench:42\nevent: message\ndata: {\"t\":1700000000000000000,\"i\":7}");
        assert_eq!(
            frame,
            Frame {
                kind: Kind::Message,
                seq: Some(42),
                sent_ns: Some(1_700_000_000_000_000_000),
                index: Some(7)
            }
        );
        assert_eq!(parse(b"event: stream-open\ndata:").kind, Kind::Open);
        assert_eq!(
            parse(b"id: a:1,b:9\nevent: stream-reset\ndata: {}").seq,
            Some(9)
        );
        assert_eq!(parse(b":padding   \n:more").kind, Kind::Other);
        assert_eq!(parse(b"data: {\"t\": 5, \"i\": 2}").sent_ns, Some(5));
    }
}
