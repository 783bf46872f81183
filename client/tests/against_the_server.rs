//! The client against the real example server (`examples/server` of the
//! eventstream-rocket crate, built by `cargo test --workspace`), killed
//! with SIGKILL and restarted on the same port and database, and against a
//! small hand-written server for a repeated event.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use eventstream_client::{
    Client, Condition, CursorStore, FileCursor, Item, MemoryCursor, Positions,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const PUBLISH_KEY: &str = "client-test-publish-key-0123";
const JWT_SECRET: &str = "client-test-jwt-secret-0123456789";

fn server_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug/examples/server");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo test --workspace`, which builds it",
        binary.display()
    );
    binary
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The example server on `port` with its event log in `database`.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(port: u16, database: &Path, extra: &str) -> Server {
        let child = Command::new(server_binary())
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_LOG_LEVEL", "off")
            .env(
                "ROCKET_DATABASES",
                format!(
                    "{{eventstream={{url=\"sqlite://{}\"}}}}",
                    database.display()
                ),
            )
            .env(
                "ROCKET_EVENTSTREAM",
                format!("{{publish_key=\"{PUBLISH_KEY}\",jwt_secret=\"{JWT_SECRET}\"{extra}}}"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the example server starts");
        let server = Server { child, port };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not listen within 30 s"
            );
            // Starting: nothing to wait on but its port.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events/", self.port)
    }

    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    async fn publish(&self, channel: &str, data: Value, skip: &[&str]) -> String {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/events/{channel}", self.port))
            .bearer_auth(PUBLISH_KEY)
            .json(&json!({ "type": "message", "data": data, "skip_user_ids": skip }))
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.expect("JSON");
        body["id"].as_str().expect("an id").to_owned()
    }
}

/// Saves position 0 on `channel`: the client resumes from its first event.
fn from_the_start(cursor: &Path, channel: &str) {
    let mut start = Positions::new();
    start.set(channel, 0);
    FileCursor::new(cursor).save(&start).expect("saved");
}

/// Takes items until `count` events arrived, acknowledging each; returns
/// their (seq, n).
async fn take_events(
    items: &mut eventstream_client::Subscription<Value>,
    count: usize,
) -> Vec<(u64, i64)> {
    let mut got = Vec::new();
    while got.len() < count {
        let item = tokio::time::timeout(Duration::from_secs(30), items.next())
            .await
            .expect("an item within 30 s")
            .expect("the stream goes on");
        match &item {
            Item::Event(event) => got.push((
                event.seq.expect("an id"),
                event.data["n"].as_i64().expect("n"),
            )),
            // The connection coming and going is reported, not an event;
            // so is presence.
            Item::Connected | Item::Reconnecting(_) | Item::Presence(_) => {}
            _ => panic!("unexpected {item:?}"),
        }
        items.ack(&item).expect("acknowledged");
    }
    got
}

#[tokio::test]
async fn resumes_across_server_kills_and_a_client_restart() {
    resume_across_kills(false).await;
}

#[tokio::test]
async fn resumes_across_server_kills_through_pushpin() {
    resume_across_kills(true).await;
}

/// The client resumes across two SIGKILLs of the server and one restart
/// of its own process (a new subscription from the cursor file), connected
/// to the server or through a Pushpin in front of it.
async fn resume_across_kills(via_pushpin: bool) {
    let dir = tempfile::tempdir().expect("a directory");
    let database = dir.path().join("events.db");
    let cursor_path = dir.path().join("feed.cursor");
    let port = free_port();
    let pushpin = via_pushpin.then(|| Pushpin::reserve(dir.path()));
    let grip = pushpin.as_ref().map_or_else(String::new, Pushpin::settings);
    let mut server = Server::start(port, &database, &grip).await;
    if let Some(pushpin) = &pushpin {
        pushpin.start(port).await;
    }
    let url = |server: &Server| match &pushpin {
        Some(pushpin) => format!("http://127.0.0.1:{}/events/", pushpin.http_port),
        None => server.url(),
    };
    let client = |url: String| {
        Client::builder(url)
            .channel("feed")
            .cursor(FileCursor::new(&cursor_path))
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .build()
    };
    // From the start of the channel: the subscription connects when first
    // polled, after the first publish.
    from_the_start(&cursor_path, "feed");
    let mut items = client(url(&server)).subscribe::<Value>().expect("a cursor");
    server.publish("feed", json!({ "n": 1 }), &[]).await;
    let mut seen = take_events(&mut items, 1).await;
    for n in 2..=10 {
        server.publish("feed", json!({ "n": n }), &[]).await;
    }
    seen.extend(take_events(&mut items, 9).await);

    // 1. The server is killed; events are sent while it comes back.
    server.kill().await;
    server = Server::start(port, &database, &grip).await;
    for n in 11..=20 {
        server.publish("feed", json!({ "n": n }), &[]).await;
    }
    seen.extend(take_events(&mut items, 10).await);

    // 2. The client process "restarts": a new subscription from the file.
    drop(items);
    for n in 21..=25 {
        server.publish("feed", json!({ "n": n }), &[]).await;
    }
    let mut items = client(server.url())
        .subscribe::<Value>()
        .expect("the cursor");
    seen.extend(take_events(&mut items, 5).await);

    // 3. Killed again, while the client is connected.
    server.kill().await;
    server = Server::start(port, &database, &grip).await;
    for n in 26..=30 {
        server.publish("feed", json!({ "n": n }), &[]).await;
    }
    seen.extend(take_events(&mut items, 5).await);

    let expected: Vec<(u64, i64)> = (1..=30).map(|n| (n as u64, n)).collect();
    assert_eq!(seen, expected, "every event once, in order");
    let saved = FileCursor::new(&cursor_path).load().expect("the cursor");
    assert_eq!(saved.get("feed"), Some(30));
    server.kill().await;
    drop(pushpin);
}

/// A throw-away Pushpin (the project's harness, `tests/support/`) in front
/// of the server. Required: the README's test command installs it.
struct Pushpin {
    dir: PathBuf,
    http_port: u16,
    offset: u16,
}

const HARNESS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/support/pushpin-harness.sh"
);

impl Pushpin {
    /// Free ports below the ephemeral range: the client port and four
    /// consecutive control ports.
    fn reserve(dir: &Path) -> Pushpin {
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let mut candidates = (20_000..32_000).step_by(37).filter(|port| free(*port));
        let http_port = candidates.next().expect("a free port");
        let base = candidates
            .find(|base| (*base..*base + 4).all(free) && !(*base..*base + 4).contains(&http_port))
            .expect("four free ports");
        Pushpin {
            dir: dir.join("pushpin"),
            http_port,
            offset: base - 5560,
        }
    }

    /// The server's GRIP settings for this Pushpin.
    fn settings(&self) -> String {
        format!(
            ",link_key=\"client-test-link-key-0123456789\",grip_proxies=[{{control_uri=\"http://127.0.0.1:{}\",verify_iss=\"pushpin\",verify_key=\"pushpin-sig-key-0123456789\"}}]",
            5561 + self.offset
        )
    }

    async fn start(&self, origin: u16) {
        let output = Command::new("bash")
            .env("PUSHPIN_MESSAGE_RATE", "0")
            .arg(HARNESS)
            .arg("start")
            .arg(&self.dir)
            .arg(self.http_port.to_string())
            .arg(self.offset.to_string())
            .arg(format!("127.0.0.1:{origin}"))
            .output()
            .await
            .expect("the harness runs (is Pushpin installed? apt-get install -y pushpin)");
        assert!(
            output.status.success(),
            "Pushpin did not start: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // Pushpin answers before it can hold streams: until a stream request
        // is held.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let held = reqwest::Client::new()
                .get(format!("http://127.0.0.1:{}/events/ready", self.http_port))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|response| response.status().as_u16() == 200);
            if held {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Pushpin never held a stream"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(HARNESS)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

#[tokio::test]
async fn a_trimmed_position_is_a_reset_and_a_forbidden_channel_an_error() {
    let dir = tempfile::tempdir().expect("a directory");
    let port = free_port();
    let server = Server::start(
        port,
        &dir.path().join("events.db"),
        ",retention_count=5,trim_interval_secs=1",
    )
    .await;
    for n in 1..=20 {
        server.publish("news", json!({ "n": n }), &[]).await;
    }
    // Retention runs every second: ask until it has trimmed under us.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reset = loop {
        let cursor = MemoryCursor::default();
        let mut at_one = Positions::new();
        at_one.set("news", 1);
        cursor.save(&at_one).expect("saved");
        let mut items = Client::builder(server.url())
            .channel("news")
            .cursor(cursor)
            .build()
            .subscribe::<Value>()
            .expect("a cursor");
        let first = loop {
            let item = tokio::time::timeout(Duration::from_secs(10), items.next())
                .await
                .expect("an item")
                .expect("the stream goes on");
            if !matches!(item, Item::Connected | Item::Reconnecting(_)) {
                break item;
            }
        };
        if let Item::Reset(reset) = first {
            break reset;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reset: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reset.channels, ["news"]);
    assert_eq!(reset.positions.get("news"), Some(20));

    let mut items = Client::builder(server.url())
        .channel("_private")
        .build()
        .subscribe::<Value>()
        .expect("a cursor");
    match items.next().await {
        Some(Item::Error(error)) => {
            assert_eq!(error.condition, Condition::Forbidden);
            assert_eq!(error.channels, Some(vec!["_private".to_owned()]));
        }
        other => panic!("a stream-error, got {other:?}"),
    }
    assert!(
        items.next().await.is_none(),
        "the stream ends after stream-error"
    );
    server.kill().await;
}

/// An HS256 token for `user` the example server's identity accepts.
fn token(user: &str) -> String {
    token_for(user, 600)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// A token for `user` that expires `valid_secs` from now.
fn token_for(user: &str, valid_secs: u64) -> String {
    let exp = now_secs() + valid_secs;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("a token")
}

#[tokio::test]
async fn a_skipped_users_stream_resumes_past_the_skip() {
    let dir = tempfile::tempdir().expect("a directory");
    let cursor_path = dir.path().join("ann.cursor");
    let port = free_port();
    let server = Server::start(port, &dir.path().join("events.db"), "").await;
    let ann = || {
        Client::builder(server.url())
            .channel("room")
            .token(token("ann"))
            .cursor(FileCursor::new(&cursor_path))
            .build()
    };
    from_the_start(&cursor_path, "room");
    let mut items = ann().subscribe::<Value>().expect("a cursor");
    server.publish("room", json!({ "n": 1 }), &[]).await;
    server.publish("room", json!({ "n": 2 }), &["ann"]).await;
    server.publish("room", json!({ "n": 3 }), &[]).await;
    assert_eq!(
        take_events(&mut items, 2).await,
        [(1, 1), (3, 3)],
        "the id jumps over the skip"
    );
    drop(items);
    server.publish("room", json!({ "n": 4 }), &["ann"]).await;
    server.publish("room", json!({ "n": 5 }), &[]).await;
    // This time with the token in the query, as `EventSource` must send it.
    let mut items = Client::builder(server.url())
        .channel("room")
        .token(token("ann"))
        .token_in_query(true)
        .cursor(FileCursor::new(&cursor_path))
        .build()
        .subscribe::<Value>()
        .expect("the cursor");
    assert_eq!(take_events(&mut items, 1).await, [(5, 5)]);
    server.kill().await;
}

#[tokio::test]
async fn a_repeated_event_is_dropped() {
    // A server that sends event 2 twice, then 3, and keeps the stream open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("a client");
        let mut request = [0_u8; 2048];
        let _ = socket.read(&mut request).await;
        let body = "id: c:1\nevent: stream-open\ndata:\n\n\
                    id: c:2\nevent: message\ndata: {\"n\":2}\n\n\
                    id: c:2\nevent: message\ndata: {\"n\":2}\n\n\
                    id: c:1\nevent: message\ndata: {\"n\":1}\n\n\
                    id: c:3\nevent: message\ndata: {\"n\":3}\n\n";
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
        socket.write_all(head.as_bytes()).await.expect("head");
        socket.write_all(body.as_bytes()).await.expect("body");
        // Held open; the test ends first.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut items = Client::builder(format!("http://127.0.0.1:{port}/events/"))
        .channel("c")
        .build()
        .subscribe::<Value>()
        .expect("a cursor");
    assert_eq!(take_events(&mut items, 2).await, [(2, 2), (3, 3)]);
}

/// The `tail` example prints one line per event and resumes from its
/// cursor file when run again.
#[tokio::test]
async fn the_tail_example_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().expect("a directory");
    let cursor_path = dir.path().join("tail.cursor");
    from_the_start(&cursor_path, "news");
    let port = free_port();
    let server = Server::start(port, &dir.path().join("events.db"), "").await;
    let tail = server_binary().with_file_name("tail");
    // Runs tail until it printed `lines` lines and acknowledged the last
    // (tail prints, then acknowledges: a kill between the two would print
    // that event again on the next run, which is its at-least-once).
    let run_until = |lines: usize| {
        let tail = tail.clone();
        let url = server.url();
        let cursor = cursor_path.clone();
        async move {
            let mut child = Command::new(tail)
                .args([url.as_str(), "news", "--cursor"])
                .arg(&cursor)
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the tail example runs");
            let stdout = child.stdout.take().expect("piped");
            let mut reader = tokio::io::BufReader::new(stdout);
            let mut printed = Vec::new();
            while printed.len() < lines {
                let mut line = String::new();
                let read = tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line),
                )
                .await
                .expect("a line within 30 s")
                .expect("readable");
                assert!(read > 0, "tail ended early: {printed:?}");
                printed.push(line.trim_end().to_owned());
            }
            let last_seq: u64 = printed
                .last()
                .and_then(|line| line.split(' ').next())
                .and_then(|id| id.rsplit_once(':'))
                .and_then(|(_, seq)| seq.parse().ok())
                .expect("an id");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while FileCursor::new(&cursor)
                .load()
                .ok()
                .and_then(|p| p.get("news"))
                != Some(last_seq)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "tail never saved its cursor"
                );
                // A file written by another process: nothing to wait on.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Killed like a process that crashes.
            child.start_kill().expect("kill");
            let _ = child.wait().await;
            printed
        }
    };
    for n in 1..=2 {
        server.publish("news", json!({ "n": n }), &[]).await;
    }
    assert_eq!(
        run_until(2).await,
        ["news:1 message {\"n\":1}", "news:2 message {\"n\":2}"]
    );
    server.publish("news", json!({ "n": 3 }), &[]).await;
    assert_eq!(
        run_until(1).await,
        ["news:3 message {\"n\":3}"],
        "resumed after the cursor"
    );
    server.kill().await;
}

/// A stream that goes silent (no keep-alive) past the heartbeat is
/// reconnected, with its position as `Last-Event-ID`.
#[tokio::test]
async fn a_silent_stream_is_reconnected_by_the_watchdog() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (resumed_from, last_event_id) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        // First connection: one event, then silence, held open.
        let (mut first, _) = listener.accept().await.expect("a client");
        let _ = first.read(&mut [0_u8; 2048]).await;
        first.write_all(head.as_bytes()).await.expect("head");
        first
            .write_all(b"id: c:1\nevent: message\ndata: {\"n\":1}\n\n")
            .await
            .expect("event");
        // Second connection: what it resumed from, then the next event.
        let (mut second, _) = listener.accept().await.expect("a reconnect");
        let mut request = vec![0_u8; 2048];
        let read = second.read(&mut request).await.expect("a request");
        let request = String::from_utf8_lossy(&request[..read]).to_ascii_lowercase();
        let _ = resumed_from.send(
            request
                .lines()
                .find_map(|line| line.strip_prefix("last-event-id: ").map(str::to_owned)),
        );
        second.write_all(head.as_bytes()).await.expect("head");
        second
            .write_all(b"id: c:2\nevent: message\ndata: {\"n\":2}\n\n")
            .await
            .expect("event");
        drop(first);
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut items = Client::builder(format!("http://127.0.0.1:{port}/events/"))
        .channel("c")
        .heartbeat(Duration::from_millis(300))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .subscribe::<Value>()
        .expect("a cursor");
    assert_eq!(take_events(&mut items, 2).await, [(1, 1), (2, 2)]);
    assert_eq!(
        last_event_id.await.expect("reconnected").as_deref(),
        Some("c:1")
    );
}

/// A signed-in subscription whose token expires while it is connected (a
/// lifetime of 1 s, set by the test; the server tolerates 5 s of skew):
/// the server is killed, and when it comes back it says the token expired;
/// the provider is asked once for a fresh one, and the stream goes on with
/// no event lost or repeated.
#[tokio::test]
async fn a_token_that_expires_is_renewed_and_the_stream_goes_on() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().expect("a directory");
    let database = dir.path().join("events.db");
    let port = free_port();
    let mut server = Server::start(port, &database, "").await;
    let renewals = Arc::new(AtomicUsize::new(0));
    let first = token_for("ann", 1);
    let expires = now_secs() + 1;
    let provider = {
        let renewals = Arc::clone(&renewals);
        move |renew: bool| {
            let renewals = Arc::clone(&renewals);
            let first = first.clone();
            async move {
                if renew || renewals.load(Ordering::SeqCst) > 0 {
                    renewals.fetch_add(usize::from(renew), Ordering::SeqCst);
                    Ok::<String, String>(token_for("ann", 600))
                } else {
                    Ok(first)
                }
            }
        }
    };
    let cursor = MemoryCursor::default();
    let mut start = Positions::new();
    start.set("_feed", 0);
    cursor.save(&start).expect("saved");
    let mut items = Client::builder(server.url())
        .channel("_feed")
        .token_provider(provider)
        .cursor(cursor)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .subscribe::<Value>()
        .expect("a cursor");
    for n in 1..=5 {
        server.publish("_feed", json!({ "n": n }), &[]).await;
    }
    let mut seen = take_events(&mut items, 5).await;
    // Past the token's expiry and the server's 5 s of tolerance.
    tokio::time::sleep_until(
        tokio::time::Instant::now() + Duration::from_secs(expires + 6 - now_secs()),
    )
    .await;
    server.kill().await;
    server = Server::start(port, &database, "").await;
    for n in 6..=10 {
        server.publish("_feed", json!({ "n": n }), &[]).await;
    }
    seen.extend(take_events(&mut items, 5).await);
    let expected: Vec<(u64, i64)> = (1..=10).map(|n| (n as u64, n)).collect();
    assert_eq!(seen, expected, "every event once, in order");
    assert_eq!(renewals.load(Ordering::SeqCst), 1, "renewed once");
    server.kill().await;
}

/// The next presence item of `items`, skipping events and connections.
async fn next_presence(
    items: &mut eventstream_client::Subscription<Value>,
) -> eventstream_client::Presence {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), items.next())
            .await
            .expect("an item within 10 s")
            .expect("the stream goes on");
        if let Item::Presence(presence) = item {
            return presence;
        }
    }
}

#[tokio::test]
async fn presence_arrives_when_asked_for_and_moves_no_position() {
    let dir = tempfile::tempdir().expect("a directory");
    let port = free_port();
    let server = Server::start(port, &dir.path().join("events.db"), "").await;
    let client = |user: &str, presence: bool| {
        Client::builder(server.url())
            .channel("room")
            .token(token(user))
            .presence(presence)
            .build()
            .subscribe::<Value>()
            .expect("a memory cursor")
    };
    let mut ann = client("ann", true);
    let first = next_presence(&mut ann).await;
    assert_eq!(
        (first.channel.as_str(), first.streams, first.users),
        ("room", 1, 1)
    );
    // The example server's authorizer names nobody: counts only.
    assert_eq!(first.present, None);
    let mut bob = client("bob", false);
    // A subscription connects when it is first polled.
    let connected = tokio::time::timeout(Duration::from_secs(10), bob.next())
        .await
        .expect("bob connects within 10 s");
    assert!(matches!(connected, Some(Item::Connected)), "{connected:?}");
    let joined = next_presence(&mut ann).await;
    assert_eq!((joined.streams, joined.users), (2, 2));
    server.publish("room", json!({ "n": 1 }), &[]).await;
    assert_eq!(take_events(&mut ann, 1).await, [(1, 1)]);
    assert_eq!(take_events(&mut bob, 1).await, [(1, 1)]);
    server.kill().await;
}
