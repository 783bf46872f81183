//! Control origin for the GRIP benchmarks: the least an origin behind
//! Pushpin can do. Every `GET` is answered at once with a hold on
//! `events-<channel>` (no storage, no next link, no recovery), and every
//! `POST /events/<channel>` becomes an item that one task publishes to
//! Pushpin in batches, one request at a time, in order. What the same load
//! delivers through it is what Pushpin itself can do on this machine.
//!
//! ```text
//! cargo run --release -p eventstream-bench --example control_grip -- \
//!     127.0.0.1:9100 http://127.0.0.1:5561/publish/ [plain|sequenced|filters]
//! ```
//!
//! `plain` subscribes without `prev-id` or content filters; `filters`
//! subscribes the way eventstream-rocket does (`prev-id`, `build-id`,
//! `skip-users`, the per-user channel); `sequenced` keeps `prev-id` and the
//! per-user channel but writes the id in the item, with no content filter
//! (what a single-channel stream could do without `build-id`). The
//! differences are what those cost Pushpin.

#[path = "common/request.rs"]
mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Sequenced,
    Filters,
}

struct State {
    items: mpsc::UnboundedSender<String>,
    seq: AtomicU64,
    mode: Mode,
}

fn hold(channel: &str, last: Option<u64>, state: &State) -> String {
    let body = if last.is_some() {
        ""
    } else {
        "event: stream-open\ndata:\n\n"
    };
    let position = last.unwrap_or_else(|| state.seq.load(Ordering::SeqCst));
    let grip = match state.mode {
        Mode::Filters => format!(
            "Grip-Channel: events-{channel}; prev-id={position}; filter=build-id; filter=skip-users, user-anonymous; filter=require-sub\r\n\
             Grip-Set-Meta: id_format=\"{channel}:%(events-{channel})s\", user=\"anonymous\"\r\n\
             Grip-Link: </events/{channel}?link=next>; rel=next; timeout=120\r\n"
        ),
        Mode::Sequenced => format!(
            "Grip-Channel: events-{channel}; prev-id={position}, user-anonymous; filter=require-sub\r\n\
             Grip-Link: </events/{channel}?link=next>; rel=next; timeout=120\r\n"
        ),
        Mode::Plain => format!("Grip-Channel: events-{channel}\r\n"),
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nGrip-Hold: stream\r\n{grip}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn connection(mut socket: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut buffer = Vec::with_capacity(4096);
    while let Some(request) = request::next(&mut socket, &mut buffer).await? {
        if !request.path.starts_with("/events/") {
            socket
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await?;
            continue;
        }
        let channel = request.channel();
        if request.method == "GET" {
            // `Grip-Last: events-c; last-id=N` on a next link.
            let last = request
                .header("Grip-Last")
                .and_then(|value| value.split("last-id=").nth(1)?.trim().parse().ok());
            socket
                .write_all(hold(&channel, last, &state).as_bytes())
                .await?;
            continue;
        }
        let data = request.data();
        let seq = state.seq.fetch_add(1, Ordering::SeqCst) + 1;
        // `build-id` writes each subscriber's id itself; otherwise the item
        // carries it.
        let id = if state.mode == Mode::Filters {
            "%I".to_owned()
        } else {
            format!("{channel}:{seq}")
        };
        let content = format!("id: {id}\nevent: message\ndata: {data}\n\n");
        let mut item = serde_json::json!({
            "channel": format!("events-{channel}"),
            "formats": {"http-stream": {"content": content}},
        });
        if state.mode != Mode::Plain {
            item["id"] = seq.to_string().into();
            item["prev-id"] = (seq - 1).to_string().into();
        }
        if state.mode == Mode::Filters {
            item["formats"]["http-stream"]["content-filters"] = serde_json::json!(["build-id"]);
        }
        let _ = state.items.send(item.to_string());
        socket
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
    Ok(())
}

/// Publishes everything queued, in batches, one request at a time.
async fn publish(publish_url: String, mut items: mpsc::UnboundedReceiver<String>) {
    let client = reqwest::Client::new();
    let mut batch = Vec::new();
    while items.recv_many(&mut batch, 512).await > 0 {
        let body = format!("{{\"items\":[{}]}}", batch.join(","));
        batch.clear();
        if let Err(e) = client
            .post(&publish_url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
        {
            eprintln!("control_grip: publish failed: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9100".into());
    let publish_url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:5561/publish/".into());
    let mode = match args.next().as_deref() {
        None | Some("plain") => Mode::Plain,
        Some("sequenced") => Mode::Sequenced,
        Some("filters") => Mode::Filters,
        Some(other) => {
            eprintln!("control_grip: the mode is plain, sequenced or filters, not {other:?}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(&address).await?;
    let (items, queued) = mpsc::unbounded_channel();
    tokio::spawn(publish(publish_url, queued));
    let state = Arc::new(State {
        items,
        seq: AtomicU64::new(0),
        mode,
    });
    loop {
        let (socket, _) = listener.accept().await?;
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _ = connection(socket, state).await;
        });
    }
}
