//! What waits on another process is bounded in bytes: a GRIP proxy that
//! hangs, a bus server that is down and a writer held up by an
//! application's transaction cost the app a bounded amount of memory under
//! full publish load, and nothing sent is lost for it. And a bus link that
//! goes silent without closing is noticed within a stated bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::{Value, json};

#[cfg(feature = "redis")]
use crate::helpers::RedisServer;
use crate::helpers::{
    App, Instance, LINK_KEY, PUBLISH_KEY, Relay, Setup, SilencingRelay, TestApp, TestDatabase,
    closed_port, grip_proxies, on_bus, postgres_bus, spawn_app,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            a_hanging_proxy_under_load_costs_bounded_memory,
            a_writer_held_up_holds_a_bounded_number_of_bytes,
        ],
        needs_postgres => [a_silent_bus_link_is_noticed_and_replaced],
        needs_redis => [
            a_bus_down_under_load_costs_bounded_memory,
        ],
    ]
}

/// The most resident memory the instance may reach under each outage, in
/// KiB: its own (about 40 MiB in a debug build) and the bounded queues
/// (32 MiB per proxy, 4 MiB for the bus), far below what the load sends.
const MEMORY_BOUND_KIB: u64 = 160 * 1024;

/// Events published under each outage.
const EVENTS: usize = 4_000;
const PUBLISHERS: usize = 8;

/// Publishes [`EVENTS`] events of `bytes` to `channel` through
/// `instance`'s publish API from [`PUBLISHERS`] publishers, every one
/// accepted, while sampling the instance's memory; returns the peak.
async fn publish_under_outage(instance: &Instance, channel: &str, bytes: usize) -> u64 {
    let pid = instance.pid().expect("a running instance");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut peak = 0;
            let mut every = tokio::time::interval(Duration::from_millis(20));
            while !done.load(Ordering::Acquire) {
                every.tick().await;
                peak = peak.max(crate::helpers::rss_kib(pid).unwrap_or(0));
            }
            peak
        })
    };
    let http = reqwest::Client::new();
    let data = "x".repeat(bytes);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let (http, data) = (http.clone(), data.clone());
            let url = format!("{}/events/{channel}", instance.url);
            tokio::spawn(async move {
                for _ in (publisher..EVENTS).step_by(PUBLISHERS) {
                    let response = http
                        .post(&url)
                        .bearer_auth(PUBLISH_KEY)
                        .json(&json!({ "type": "message", "data": data }))
                        .send()
                        .await
                        .expect("the instance answers");
                    // 201 stored, 202 live-only (sent, not stored).
                    let status = response.status().as_u16();
                    assert!(
                        status == 201 || status == 202,
                        "{status}: {:?}",
                        response.text().await
                    );
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    done.store(true, Ordering::Release);
    sampler.await.expect("sampler")
}

/// The instance's health check.
async fn health(instance: &Instance) -> Value {
    reqwest::get(format!("{}/healthz", instance.url))
        .await
        .expect("health answers")
        .json()
        .await
        .expect("a JSON body")
}

/// A proxy that accepts connections and never answers, while 240 MB of
/// events (4,000 of 60 KB) are published: the publisher keeps at most its byte bound per
/// proxy, the rest is hinted (the proxy recovers it from the app once
/// back), and memory stays under the bound.
async fn a_hanging_proxy_under_load_costs_bounded_memory() {
    let database = TestDatabase::create(Setup::Sqlite).await;
    // A relay to a port where nothing listens, paused: connections hang.
    let unused = closed_port();
    let relay = Relay::start(&format!("http://127.0.0.1:{unused}")).await;
    relay.pause();
    let instance = Instance::start(
        &database.url,
        &[
            ("eventstream.grip_proxies", grip_settings(&relay.url)),
            ("eventstream.link_key", LINK_KEY.into()),
            ("eventstream.health_path", "/healthz".into()),
        ],
    )
    .await;
    let peak = publish_under_outage(&instance, "big", 60 * 1024).await;
    eprintln!("a hanging proxy: peak RSS {} MiB", peak / 1024);
    assert!(
        peak <= MEMORY_BOUND_KIB,
        "peak RSS {peak} KiB over {MEMORY_BOUND_KIB} KiB"
    );
    let health = health(&instance).await;
    let queued = health["grip"][0]["queued_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("queued bytes in {health}"));
    assert!(queued <= 32 * 1024 * 1024, "{health}");
    instance.kill().await;
    database.remove().await;
}

fn grip_settings(control_uri: &str) -> Value {
    serde_json::to_value(grip_proxies(control_uri)).expect("settings")
}

/// Redis stopped, live-only events small enough for a notice (6 KB)
/// published on an instance of a bus as fast as it takes them: the bus sender keeps at most
/// its byte bound, the rest is told to the other instances as missed
/// (`stream-reset`), and memory stays under the bound.
#[cfg(feature = "redis")]
async fn a_bus_down_under_load_costs_bounded_memory() {
    let mut server = RedisServer::start().await;
    let database = TestDatabase::create(Setup::Postgres).await;
    let url = server.url();
    server.stop().await;
    let instance = Instance::start(
        &database.url,
        &[
            ("eventstream.broadcast", "redis".into()),
            ("eventstream.redis_url", url.into()),
            ("eventstream.health_path", "/healthz".into()),
        ],
    )
    .await;
    // Live-only (not stored): each one is a notice of its own.
    let peak = publish_under_outage(&instance, "live-big", 6 * 1024).await;
    eprintln!("a bus down: peak RSS {} MiB", peak / 1024);
    assert!(
        peak <= MEMORY_BOUND_KIB,
        "peak RSS {peak} KiB over {MEMORY_BOUND_KIB} KiB"
    );
    assert_eq!(health(&instance).await["bus"]["connected"], json!(false));
    instance.kill().await;
    database.remove().await;
}

/// An application transaction holds the SQLite write lock while tasks send
/// 200 events of 1 MB: the writer takes at most its byte bound of them,
/// the other senders wait for room, and once the transaction ends every
/// send completes.
async fn a_writer_held_up_holds_a_bounded_number_of_bytes() {
    const SENDS: usize = 200;
    const BOUND: u64 = 64 * 1024 * 1024;
    let app =
        spawn_app(App::on(Setup::Sqlite).with("eventstream.max_event_bytes", 2 * 1024 * 1024))
            .await;
    let tx = app
        .events
        .begin::<sqlx::Sqlite>()
        .await
        .expect("a transaction");
    let data = json!("y".repeat(1024 * 1024));
    let sends: Vec<_> = (0..SENDS)
        .map(|_| {
            let (events, data) = (app.events.clone(), data.clone());
            tokio::spawn(async move { events.send_event("held", "message", &data).await })
        })
        .collect();
    app.wait_for_metrics(
        "the writer never filled up",
        Duration::from_secs(30),
        |metrics| metrics.queued_send_bytes >= BOUND - 4 * 1024 * 1024,
    )
    .await;
    let metrics = app.events.metrics();
    assert!(metrics.queued_send_bytes <= BOUND, "{metrics:?}");
    assert!(sends.iter().all(|send| !send.is_finished()), "all wait");
    tx.commit().await.expect("commit");
    for send in sends {
        send.await.expect("a task").expect("stored");
    }
    assert_eq!(app.events.metrics().queued_send_bytes, 0);
    app.stop().await;
}

/// How long a silent bus link may go unnoticed: the library's bound (5 s
/// without its own heartbeat) and this noisy machine's margin.
const SILENCE_NOTICED_WITHIN: Duration = Duration::from_secs(8);

async fn bus_health(app: &TestApp) -> Value {
    app.health().await.1["bus"].clone()
}

/// Waits until `done` holds for A's bus health; returns how long that
/// took.
async fn until_bus(
    app: &TestApp,
    what: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Duration {
    let started = tokio::time::Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        let bus = bus_health(app).await;
        if done(&bus) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what} within {within:?}: {bus}"
        );
    }
}

/// Instance A reaches PostgreSQL through a relay that then silences its
/// bus listener's connection (open, relaying nothing either way), while B
/// publishes a live-only event four times a second: A's health says the
/// bus is disconnected within the bound, A replaces the connection, its
/// stream is told it missed events (`stream-reset`) and gets B's events
/// again.
async fn a_silent_bus_link_is_noticed_and_replaced() {
    let database = TestDatabase::create(Setup::Postgres).await;
    let relay = SilencingRelay::start("127.0.0.1:5432").await;
    // In clear, so that the relay can see which connection listens.
    let through_relay = format!(
        "{}?sslmode=disable",
        database
            .url
            .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1)
    );
    let a = spawn_app(
        on_bus(&through_relay, &postgres_bus()).with("eventstream.health_path", "/healthz"),
    )
    .await;
    let b = spawn_app(on_bus(&database.url, &postgres_bus())).await;
    let mut stream = a.stream("/events/live-feed", &[]).await;
    assert_eq!(stream.next_event().await.event(), "stream-open");
    b.send_event("live-feed", json!(0)).await;
    assert_eq!(stream.next_event().await.json(), json!(0));
    until_bus(&a, "heartbeats", Duration::from_secs(5), |bus| {
        bus["connected"] == json!(true) && bus["heartbeat_age_ms"].as_i64().is_some()
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (events, stop) = (b.events.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut n = 0;
            let mut every = tokio::time::interval(Duration::from_millis(250));
            while !stop.load(Ordering::Acquire) {
                every.tick().await;
                n += 1;
                events
                    .send_event("live-feed", "message", &json!(n))
                    .await
                    .expect("sent");
            }
        })
    };
    relay.silence_listeners();
    // Health says so as soon as the heartbeat is late ...
    let noticed = until_bus(
        &a,
        "health never said the link was silent",
        SILENCE_NOTICED_WITHIN,
        |bus| {
            bus["heartbeat_age_ms"]
                .as_i64()
                .is_some_and(|age| age > 3_000)
                || bus["connected"] == json!(false)
        },
    )
    .await;
    let (_, health) = {
        let response = a.http.get(a.url("/healthz")).send().await.expect("health");
        (
            response.status(),
            response.json::<Value>().await.expect("JSON"),
        )
    };
    // ... (or it was replaced already, on a slow machine)
    assert!(
        health["status"] == json!("degraded") || a.events.metrics().bus_reconnects >= 1,
        "{health}"
    );
    // ... and the connection is replaced.
    a.wait_for_metrics(
        "the silent connection was never replaced",
        SILENCE_NOTICED_WITHIN,
        |metrics| metrics.bus_reconnects >= 1,
    )
    .await;
    eprintln!("a silent bus link: health said so after {noticed:?}");
    until_bus(
        &a,
        "the new connection carries heartbeats",
        Duration::from_secs(10),
        |bus| {
            bus["connected"] == json!(true)
                && bus["heartbeat_age_ms"]
                    .as_i64()
                    .is_some_and(|age| age < 2_000)
        },
    )
    .await;
    // Told, then B's events again.
    let mut reset = false;
    let resumed = loop {
        let frame = stream.next_event().await;
        match frame.event() {
            "stream-reset" => reset = true,
            "message" if reset => break frame.json(),
            "message" => {}
            other => panic!("unexpected {other}: {frame:?}"),
        }
    };
    assert!(resumed.as_u64().is_some(), "{resumed}");
    stop.store(true, Ordering::Release);
    publisher.await.expect("publisher");
    assert!(a.events.metrics().bus_reconnects >= 1);
    a.stop().await;
    b.stop().await;
    database.remove().await;
}
