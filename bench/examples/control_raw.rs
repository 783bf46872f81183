//! Control server for the benchmarks: the same wire contract as far as the
//! latency and fan-out scenarios need it (`GET /events/<ch>`, `POST
//! /events/<ch>`), written directly on tokio sockets with no framework and
//! no storage. It shows what the machine can do at all.
//!
//! `cargo run --release -p eventstream-bench --example control_raw -- 127.0.0.1:9100`

#[path = "common/request.rs"]
mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

struct State {
    events: broadcast::Sender<Bytes>,
    seq: AtomicU64,
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
    while let Some(request) = request::next(&mut socket, &mut buffer).await? {
        let channel = request.channel();
        if request.method == "GET" {
            return stream(socket, &state, &channel).await;
        }
        let data = request.data();
        let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = format!("id: {channel}:{seq}\nevent: message\ndata: {data}\n\n");
        let _ = state.events.send(Bytes::from(frame));
        socket
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
    Ok(())
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
