//! Control server for the benchmarks: the minimal Rocket stream (Rocket's
//! `ByteStream`, frames formatted once and coalesced, a broadcast channel,
//! no storage). Compared with eventstream-rocket under the same load, it
//! shows what Rocket's response path itself costs.
//!
//! `ROCKET_PORT=9200 cargo run --release -p eventstream-bench --example control_rocket`

use std::sync::atomic::{AtomicU64, Ordering};

use rocket::response::stream::ByteStream;
use rocket::tokio::sync::broadcast;
use rocket::{Shutdown, State, get, post, routes};

struct Hub {
    events: broadcast::Sender<Vec<u8>>,
    seq: AtomicU64,
}

#[get("/events/<channel>")]
fn events(channel: &str, hub: &State<Hub>, mut end: Shutdown) -> ByteStream![Vec<u8>] {
    let _ = channel;
    let mut events = hub.events.subscribe();
    ByteStream! {
        yield b"event: stream-open\ndata:\n\n".to_vec();
        loop {
            let first = rocket::tokio::select! {
                frame = events.recv() => match frame {
                    Ok(frame) => frame,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = &mut end => break,
            };
            let mut batch = first;
            while batch.len() < 4096 {
                match events.try_recv() {
                    Ok(frame) => batch.extend_from_slice(&frame),
                    Err(_) => break,
                }
            }
            yield batch;
        }
    }
}

#[post("/events/<channel>", data = "<body>")]
fn publish(channel: &str, body: String, hub: &State<Hub>) -> rocket::http::Status {
    let data = body
        .strip_prefix("{\"data\":")
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(&body);
    let seq = hub.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = hub
        .events
        .send(format!("id: {channel}:{seq}\nevent: message\ndata: {data}\n\n").into_bytes());
    rocket::http::Status::Created
}

#[rocket::launch]
fn rocket() -> _ {
    rocket::build()
        .manage(Hub {
            events: broadcast::channel(4096).0,
            seq: AtomicU64::new(0),
        })
        .mount("/", routes![events, publish])
}
