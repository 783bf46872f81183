//! The SSE client tests read streams with: the response head, and frames
//! parsed off the socket as they arrive (every byte kept for byte-level
//! assertions).

use std::time::Duration;

use futures_util::StreamExt;

/// One parsed SSE frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub comment: bool,
    /// The `retry:` value, if the frame set one.
    pub retry: Option<String>,
}

impl Frame {
    pub fn event(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame data {:?} is not JSON: {e}", self.data))
    }
}

/// A stream being read: the response head and a frame parser.
pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    /// Every byte received, for byte-level assertions.
    pub raw: Vec<u8>,
    ended: bool,
}

impl Sse {
    pub fn from_response(response: reqwest::Response) -> Sse {
        Sse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The next frame (comments included), or `None` at the end of the
    /// stream. Panics if nothing arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        self.try_next_within(wait).await.unwrap_or_else(|| {
            panic!(
                "no frame within {wait:?}; received so far: {:?}",
                String::from_utf8_lossy(&self.raw)
            )
        })
    }

    /// Like [`Sse::next_within`], but `None` when nothing arrived in time
    /// (for clients that give up and reconnect).
    pub async fn try_next_within(&mut self, wait: Duration) -> Option<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse_one() {
                return Some(Some(frame));
            }
            if self.ended {
                return Some(None);
            }
            match tokio::time::timeout(wait, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.buffer.extend_from_slice(&chunk);
                }
            }
        }
    }

    /// The next frame, within 10 s.
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_within(Duration::from_secs(10)).await
    }

    /// The next frame that is not a keep-alive or comment.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next().await.expect("stream ended early");
            if !frame.comment && frame.event() != "keep-alive" {
                return frame;
            }
        }
    }

    /// Reads until the stream ends, returning the frames.
    pub async fn until_end(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }

    fn parse_one(&mut self) -> Option<Frame> {
        let text = std::str::from_utf8(&self.buffer).ok()?;
        let end = text.find("\n\n")?;
        let block = text[..end].to_owned();
        self.buffer.drain(..end + 2);
        let mut frame = Frame::default();
        let mut data: Vec<&str> = Vec::new();
        for line in block.split('\n') {
            if line.starts_with(':') {
                frame.comment = true;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => frame.event = Some(value.into()),
                "id" => frame.id = Some(value.into()),
                "retry" => frame.retry = Some(value.into()),
                "data" => data.push(value),
                other => panic!(
                    "unexpected field {other:?} in {block:?}; received so far: {:?}",
                    String::from_utf8_lossy(&self.raw)
                ),
            }
        }
        frame.data = data.join("\n");
        Some(frame)
    }
}

/// The number after the last `:` of an id (`room:7`, or a vector's last
/// entry); panics on anything else.
pub fn seq_of(id: Option<&str>) -> u64 {
    id.and_then(|id| id.rsplit(':').next())
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("an id ending in a number, got {id:?}"))
}

/// Opens a stream on `url` (of one `channel`), resuming after `after` if
/// given; returns it, once its `stream-open` came within `wait`, and the
/// position that names.
pub async fn open_after(
    http: &reqwest::Client,
    url: &str,
    channel: &str,
    after: Option<u64>,
    wait: Duration,
) -> (Sse, u64) {
    let mut request = http.get(url);
    if let Some(after) = after {
        request = request.header("Last-Event-ID", format!("{channel}:{after}"));
    }
    let mut stream = Sse::from_response(request.send().await.expect("a response"));
    assert_eq!(stream.status, 200);
    let open = stream.next_within(wait).await.expect("stream-open");
    assert_eq!(open.event(), "stream-open");
    (stream, seq_of(open.id.as_deref()))
}
