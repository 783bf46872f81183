//! Control server for the benchmarks: the same wire contract as far as the
//! latency and fan-out scenarios need it (`GET /events/<ch>`, `POST
//! /events/<ch>`), written directly on tokio sockets with no framework and
//! no storage. It shows what the machine can do at all.
//!
//! `cargo run --release -p eventstream-bench --example control_raw -- 127.0.0.1:9100`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

struct State {
    events: broadcast::Sender<Bytes>,
    seq: AtomicU64,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

async fn stream(mut socket: TcpStream, state: &State, channel: &str) -> std::io::Result<()> {
    let mut events = state.events.subscribe();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    socket.write_all(head.as_bytes()).await?;
    socket
        .write_all(&chunk(b"event: stream-open\ndata:\n\n"))
        .await?;
    let _ = channel;
    loop {
        let first = match events.recv().await {
            Ok(frame) => frame,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        let mut batch = BytesMut::from(&first[..]);
        while batch.len() < 8192 {
            match events.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        socket.write_all(&chunk(&batch)).await?;
    }
}

async fn connection(mut socket: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end;
            }
            let mut piece = [0_u8; 4096];
            let read = socket.read(&mut piece).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&piece[..read]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut words = head.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or_default().to_owned(),
            words.next().unwrap_or_default().to_owned(),
        );
        let channel = path
            .trim_start_matches("/events/")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        if method == "GET" {
            return stream(socket, &state, &channel).await;
        }
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
            let mut piece = [0_u8; 4096];
            let read = socket.read(&mut piece).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&piece[..read]);
        }
        let body: Vec<u8> = buffer.drain(..length).collect();
        let text = String::from_utf8_lossy(&body);
        let data = text
            .strip_prefix("{\"data\":")
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or(&text)
            .to_owned();
        let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = format!("id: {channel}:{seq}\nevent: message\ndata: {data}\n\n");
        let _ = state.events.send(Bytes::from(frame));
        socket
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let listener = TcpListener::bind(&address).await?;
    let state = Arc::new(State {
        events: broadcast::channel(4096).0,
        seq: AtomicU64::new(0),
    });
    loop {
        let (socket, _) = listener.accept().await?;
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _ = connection(socket, state).await;
        });
    }
}
