//! The little HTTP/1.1 the control servers read: one request at a time off
//! a keep-alive connection, the body by `Content-Length`. Included by each
//! control server with `#[path]` (examples share no library).

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One request: its head as text and its body.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    head: String,
    body: Vec<u8>,
}

impl Request {
    /// The `<ch>` of `/events/<ch>`, without a query.
    pub(crate) fn channel(&self) -> String {
        self.path
            .trim_start_matches("/events/")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// The value of header `name` (matched case-insensitively).
    #[allow(dead_code, reason = "control_raw reads no header")]
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (found, value) = line.split_once(':')?;
            found.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The `data` of a publish body `{"data":...}`, as JSON text.
    pub(crate) fn data(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.strip_prefix("{\"data\":")
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or(&text)
            .to_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Reads more of `socket` into `buffer`; false once the client closed.
async fn fill(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut piece = [0_u8; 4096];
    let read = socket.read(&mut piece).await?;
    buffer.extend_from_slice(&piece[..read]);
    Ok(read > 0)
}

/// The next request on `socket` (`buffer` keeps what was read past it);
/// `None` once the client closed the connection.
pub(crate) async fn next(
    socket: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if !fill(socket, buffer).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    );
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    buffer.drain(..head_end + 4);
    while buffer.len() < length {
        if !fill(socket, buffer).await? {
            return Ok(None);
        }
    }
    let body = buffer.drain(..length).collect();
    Ok(Some(Request {
        method,
        path,
        head,
        body,
    }))
}
