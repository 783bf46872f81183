//! Limits per client and per process: what one stream may pin in memory
//! (its id vector, its replay chunks, its queued frames), and deferrals:
//! over `max_streams` or `max_streams_per_ip`, or while the event log is
//! unreachable, a client is told to retry later (200, a jittered `retry:`,
//! an orderly end) and never given an answer that stops `EventSource` for
//! good.

use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{App, Setup, Sse, TestApp, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            oversized_id_vectors_are_refused_at_the_request,
            replay_chunks_stay_within_their_byte_budget,
            a_client_that_never_reads_pins_at_most_max_queued_bytes,
            streams_over_max_streams_are_told_to_retry_later,
            streams_per_address_count_the_peer_or_the_trusted_header,
        ],
        needs_postgres => [an_unreachable_event_log_asks_clients_to_retry],
    ]
}

/// Ten channels of 254 emoji each: a 30 KB id vector on every event of the
/// stream, which one anonymous client could make the server build.
async fn oversized_id_vectors_are_refused_at_the_request() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let query: Vec<String> = (0..10)
        .map(|n| format!("channel={n}{}", "\u{1F600}".repeat(253)))
        .collect();
    let mut stream = app
        .stream(&format!("/events/?{}", query.join("&")), &[])
        .await;
    let frames = stream.until_end().await;
    assert_eq!(frames.len(), 1, "an error, no stream: {frames:?}");
    assert_eq!(frames[0].event(), "stream-error");
    let data = frames[0].json();
    assert_eq!(data["condition"], "bad-request");
    assert!(
        data["text"]
            .as_str()
            .expect("text")
            .contains("max_id_vector_bytes"),
        "{data}"
    );
    // Short names on as many channels are fine.
    let short: Vec<String> = (0..10).map(|n| format!("channel=room-{n}")).collect();
    let mut stream = app
        .stream(&format!("/events/?{}", short.join("&")), &[])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.stop().await;
}

/// 4,000-byte events, replayed: every body chunk stays within 8 ×
/// `chunk_size` (or one event), where a 500-event page used to be one 2 MB
/// chunk; and every event still arrives, once, in order.
async fn replay_chunks_stay_within_their_byte_budget() {
    const EVENTS: u64 = 600;
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.chunk_size", 1024)).await;
    let data = "x".repeat(4000);
    let sends = (0..EVENTS).map(|_| app.events.send_event("big", "message", &data));
    for sent in futures_util::future::join_all(sends).await {
        sent.expect("stored");
    }
    let mut stream = app
        .stream("/events/big", &[("Last-Event-ID", "big:0")])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    for seq in 1..=EVENTS {
        assert_eq!(stream.next_event().await.id, Some(format!("big:{seq}")));
    }
    let largest = app.events.metrics().largest_chunk_bytes;
    assert!(largest > 0, "chunks are measured");
    assert!(largest <= 8 * 1024 + 4100, "a chunk of {largest} bytes");
    app.stop().await;
}

/// A client that opens a stream and never reads: once the socket buffers
/// are full, its inbox holds at most `max_queued_bytes` (one event more at
/// most), where it used to hold `queue_capacity` events of any size; the
/// rest waits in storage, and nothing is lost when it reads at last.
async fn a_client_that_never_reads_pins_at_most_max_queued_bytes() {
    // 16 MB: far more than loopback's socket buffers hold.
    const EVENTS: u64 = 4000;
    const MAX_QUEUED: u64 = 64 * 1024;
    let app =
        spawn_app(App::on(Setup::Sqlite).with("eventstream.max_queued_bytes", MAX_QUEUED)).await;
    let mut stream = app.stream("/events/q", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    let data = "y".repeat(4000);
    for _ in 0..EVENTS {
        app.events
            .send_event("q", "message", &data)
            .await
            .expect("stored");
    }
    let queued = app.events.metrics().queued_bytes;
    assert!(
        queued <= MAX_QUEUED + 4100,
        "{queued} bytes queued for one stream"
    );
    assert!(
        queued + 4100 > MAX_QUEUED,
        "the inbox filled up: {queued} bytes"
    );
    for seq in 1..=EVENTS {
        assert_eq!(stream.next_event().await.id, Some(format!("q:{seq}")));
    }
    let metrics = app.events.metrics();
    assert!(
        metrics.replay_fallbacks >= 1,
        "the rest came from storage: {metrics:?}"
    );
    app.stop().await;
}

/// Asserts that `stream` is a deferral: 200, an event stream, a `retry:`
/// between 1 and 5 s, then the end, with no event, id or error.
async fn assert_deferred(mut stream: Sse) {
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let frames = stream.until_end().await;
    assert_eq!(frames.len(), 1, "one frame, then the end: {frames:?}");
    let retry: u64 = frames[0]
        .retry
        .as_deref()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a retry: line in {frames:?}"));
    assert!((1_000..5_000).contains(&retry), "retry {retry} ms");
    assert_eq!(frames[0].event, None, "no event: {frames:?}");
    assert_eq!(
        frames[0].id, None,
        "no id (`id: error` would stop EventSource)"
    );
    let raw = String::from_utf8_lossy(&stream.raw);
    assert!(!raw.contains("stream-error"), "{raw}");
}

/// Waits until the server counts `streams` live streams.
async fn wait_for_live(app: &TestApp, streams: u64) {
    app.wait_for_metrics(
        &format!("not {streams} live streams"),
        Duration::from_secs(10),
        |metrics| metrics.live_subscribers == streams,
    )
    .await;
}

async fn streams_over_max_streams_are_told_to_retry_later() {
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with("eventstream.max_streams", 2)
            // A closed client is noticed at the next write.
            .with("eventstream.keepalive_secs", 1),
    )
    .await;
    let mut first = app.stream("/events/a", &[]).await;
    let mut second = app.stream("/events/b", &[]).await;
    for stream in [&mut first, &mut second] {
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    assert_deferred(app.stream("/events/c", &[("Last-Event-ID", "c:0")]).await).await;
    assert_eq!(app.events.metrics().streams_deferred, 1);
    drop(first);
    wait_for_live(&app, 1).await;
    let mut third = app.stream("/events/c", &[]).await;
    assert_eq!(third.next().await.expect("open").event(), "stream-open");
    app.send_event("b", json!("still live")).await;
    assert_eq!(second.next_event().await.json(), json!("still live"));
    app.stop().await;
}

async fn streams_per_address_count_the_peer_or_the_trusted_header() {
    // By the peer address: every test client is 127.0.0.1, and X-Real-IP
    // (which any client can send) changes nothing.
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.max_streams_per_ip", 1)).await;
    let mut held = app.stream("/events/a", &[("X-Real-IP", "192.0.2.1")]).await;
    assert_eq!(held.next().await.expect("open").event(), "stream-open");
    assert_deferred(app.stream("/events/a", &[("X-Real-IP", "192.0.2.2")]).await).await;
    app.stop().await;

    // By the trusted proxy's header: its rightmost entry is the client.
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with("eventstream.max_streams_per_ip", 1)
            .with("eventstream.trusted_ip_header", "X-Forwarded-For"),
    )
    .await;
    let forwarded = |value: &'static str| [("X-Forwarded-For", value)];
    let mut one = app
        .stream("/events/a", &forwarded("10.9.9.9, 192.0.2.1"))
        .await;
    let mut two = app.stream("/events/a", &forwarded("192.0.2.2")).await;
    for stream in [&mut one, &mut two] {
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    // A client cannot escape by prepending addresses of its own.
    assert_deferred(
        app.stream("/events/a", &forwarded("203.0.113.7, 192.0.2.1"))
            .await,
    )
    .await;
    app.stop().await;
}

async fn an_unreachable_event_log_asks_clients_to_retry() {
    let app = spawn_app(App::on(Setup::Postgres)).await;
    app.send_event("room", json!(1)).await;
    let name = app
        .database_url()
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned();
    let admin = sqlx::PgPool::connect(&crate::helpers::postgres_admin_url())
        .await
        .expect("admin connection");
    let allow = |allowed: bool| format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allowed}");
    sqlx::query(&allow(false))
        .execute(&admin)
        .await
        .expect("lock out");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .expect("terminate the app's connections");
    assert_deferred(
        app.stream("/events/room", &[("Last-Event-ID", "room:0")])
            .await,
    )
    .await;
    assert!(app.events.metrics().streams_deferred >= 1);

    // Back: the same client resumes where it was.
    sqlx::query(&allow(true))
        .execute(&admin)
        .await
        .expect("let in");
    let mut stream = app
        .stream("/events/room", &[("Last-Event-ID", "room:0")])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    assert_eq!(stream.next_event().await.id.as_deref(), Some("room:1"));
    admin.close().await;
    app.stop().await;
}
