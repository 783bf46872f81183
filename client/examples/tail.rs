//! Prints each event of some channels as one line (`id type data`), and
//! resumes across restarts from a cursor file:
//!
//! ```text
//! cargo run -p eventstream-client --example tail -- http://127.0.0.1:8000/events/ news [--cursor news.cursor] [--token TOKEN]
//! ```

use eventstream_client::{Client, FileCursor, Item, MemoryCursor};
use futures_util::StreamExt;

const USAGE: &str = "usage: tail <events-url> <channel>... [--cursor FILE] [--token TOKEN]";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let mut builder = Client::builder(url);
    let mut cursor = None;
    let mut channels = 0;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cursor" => cursor = args.next(),
            "--token" => {
                if let Some(token) = args.next() {
                    builder = builder.token(token);
                }
            }
            channel => {
                builder = builder.channel(channel);
                channels += 1;
            }
        }
    }
    if channels == 0 {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    }
    builder = match cursor {
        Some(path) => builder.cursor(FileCursor::new(path)),
        None => builder.cursor(MemoryCursor::default()),
    };
    let client = builder.build();
    let mut items = match client.subscribe::<serde_json::Value>() {
        Ok(items) => items,
        Err(error) => {
            eprintln!("tail: cannot read the cursor: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    while let Some(item) = items.next().await {
        match &item {
            Item::Event(event) => {
                let id = match (&event.channel, event.seq) {
                    (Some(channel), Some(seq)) => format!("{channel}:{seq}"),
                    _ => "-".to_owned(),
                };
                println!("{id} {} {}", event.event_type, event.data);
            }
            Item::Undecodable { event, error } => {
                eprintln!(
                    "tail: {:?}:{:?} is not JSON ({error}): {}",
                    event.channel, event.seq, event.data
                );
            }
            Item::Reset(reset) => println!("reset {:?} {}", reset.channels, reset.positions),
            Item::Error(error) => {
                eprintln!(
                    "tail: the server ended the stream: {} {}",
                    error.condition, error.text
                );
                return std::process::ExitCode::FAILURE;
            }
            Item::Connected => eprintln!("tail: connected"),
            Item::Reconnecting(why) => eprintln!("tail: reconnecting: {why}"),
            _ => {}
        }
        if let Err(error) = items.ack(&item) {
            eprintln!("tail: cannot save the cursor: {error}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
