//! The delivery trace (`Events::explain`, `explain_path`) against each case
//! it claims to explain: a resume position retention trimmed, a refused
//! user and an authorizer that cannot tell, a channel read only on another
//! instance (on each bus), a proxy that is down, a live-only channel; and
//! what it must not show: secrets, other users, anything without the key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventstream_rocket::{Authorizer, Decision, Stage, User};
use libtest_mimic::Trial;
use serde_json::{Value, json};

use crate::helpers::{
    App, BUS_KEY, BusSettings, Instance, JWT_SECRET, LINK_KEY, PUBLISH_KEY, Setup, Sse,
    TestDatabase, closed_port, postgres_bus, spawn_app, token,
};
#[cfg(feature = "redis")]
use crate::helpers::{RedisServer, redis_bus};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            a_trimmed_resume_position_is_said_to_get_a_reset,
            refused_and_undecided_users_are_told_apart,
            a_live_only_channel_is_said_to_be_live_only,
            a_proxy_that_is_down_shows_in_the_trace,
            the_trace_shows_no_secret_and_nothing_without_its_key,
        ],
        needs_postgres => [a_channel_read_on_another_instance_over_postgres],
        needs_redis => [a_channel_read_on_another_instance_over_redis],
    ]
}

const EXPLAIN_KEY: &str = "test-explain-key-0123456789";

/// `GET <base>/explain?<query>` with `key`: the status and the JSON body.
async fn ask(http: &reqwest::Client, base: &str, query: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = http.get(format!("{base}/explain?{query}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn explaining(app: App) -> App {
    app.with("eventstream.explain_path", "/explain")
        .with("eventstream.explain_key", EXPLAIN_KEY)
}

async fn a_trimmed_resume_position_is_said_to_get_a_reset() {
    let app = spawn_app(
        explaining(App::on(Setup::Sqlite))
            .with("eventstream.retention_count", 2)
            .with("eventstream.trim_interval_secs", 1),
    )
    .await;
    for n in 1..=5 {
        app.send_event("log", json!(n)).await;
    }
    // Retention runs every second: wait until it trimmed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let trace = loop {
        let trace = app
            .events
            .explain("log", None, Some("log:1"))
            .await
            .expect("a trace");
        if trace
            .storage
            .is_some_and(|stored| stored.trimmed_through >= 3)
        {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "retention never trimmed: {trace:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let resume = trace.resume.expect("a resume check");
    assert_eq!((resume.position, resume.outcome), (Some(1), "stream-reset"));
    assert!(resume.why.contains("retention"), "{}", resume.why);
    // What the trace says is what a stream gets.
    let mut stream = app
        .stream("/events/log", &[("Last-Event-ID", "log:1")])
        .await;
    let first = stream.next().await.expect("a frame");
    let second = stream.next().await.expect("a frame");
    assert!(
        [first.event(), second.event()].contains(&"stream-reset"),
        "{first:?} {second:?}"
    );
    let recent = app
        .events
        .explain("log", None, Some("log:4"))
        .await
        .expect("a trace");
    assert_eq!(recent.resume.expect("checked").outcome, "continues");
    // Over HTTP, the same.
    let (status, body) = ask(
        &app.http,
        &app.base,
        "channel=log&last_event_id=log:1",
        Some(EXPLAIN_KEY),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["resume"]["outcome"], "stream-reset");
    assert_eq!(body["storage"]["last_id"], 5);
    app.stop().await;
}

/// Refuses `_` channels to everyone but `ann`, and cannot tell while
/// `unreachable`.
struct Gate(Arc<AtomicBool>);

#[rocket::async_trait]
impl Authorizer for Gate {
    async fn decide(&self, user: Option<&User>, channel: &str) -> Decision {
        if self.0.load(Ordering::SeqCst) {
            return Decision::CannotTell;
        }
        if !channel.starts_with('_') || user.is_some_and(|user| user.id == "ann") {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

async fn refused_and_undecided_users_are_told_apart() {
    let unreachable = Arc::new(AtomicBool::new(false));
    let stage = Stage::new().authorizer_named("test::Gate", Gate(Arc::clone(&unreachable)));
    let app = spawn_app(explaining(App::on(Setup::Sqlite)).stage(stage)).await;
    let decision = |user: &str| {
        let events = app.events.clone();
        let user = User::new(user);
        async move {
            events
                .explain("_staff", Some(&user), None)
                .await
                .expect("a trace")
                .access
                .decision
        }
    };
    assert_eq!(decision("ann").await, "allow");
    assert_eq!(decision("bob").await, "deny");
    unreachable.store(true, Ordering::SeqCst);
    assert_eq!(decision("ann").await, "cannot-tell");
    let (_, body) = ask(
        &app.http,
        &app.base,
        "channel=_staff&user=bob",
        Some(EXPLAIN_KEY),
    )
    .await;
    assert_eq!(
        body["access"],
        json!({"user": "bob", "decision": "cannot-tell"})
    );
    app.stop().await;
}

async fn a_live_only_channel_is_said_to_be_live_only() {
    let app = spawn_app(explaining(App::on(Setup::Sqlite))).await;
    let trace = app
        .events
        .explain("live-ticker", None, Some("live-ticker:3"))
        .await
        .expect("a trace");
    assert!(!trace.persistent);
    assert_eq!(trace.storage, None);
    assert_eq!(trace.resume.expect("checked").outcome, "live-only");
    app.stop().await;
}

async fn a_proxy_that_is_down_shows_in_the_trace() {
    let closed = closed_port();
    let app = spawn_app(
        explaining(App::on(Setup::Sqlite)).grip_proxy_at(&format!("http://127.0.0.1:{closed}")),
    )
    .await;
    app.send_event("news", json!("to nobody")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let proxy = loop {
        let trace = app
            .events
            .explain("news", None, None)
            .await
            .expect("a trace");
        let proxy = trace.proxies.first().cloned().expect("one proxy");
        if proxy.given_up > 0 {
            break proxy;
        }
        assert!(Instant::now() < deadline, "nothing was given up: {proxy:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(proxy.last_error.is_some(), "{proxy:?}");
    assert_eq!(proxy.last_success_age_ms, None, "never published");
    assert!(proxy.proxy.contains(&closed.to_string()), "{proxy:?}");
    app.stop().await;
}

async fn the_trace_shows_no_secret_and_nothing_without_its_key() {
    let app =
        spawn_app(explaining(App::on(Setup::Sqlite)).with("eventstream.keepalive_secs", 1)).await;
    // Readers of the room: named ones, one the authorizer hides, and an
    // anonymous one.
    let mut streams = Vec::new();
    for user in ["ann", "ghost-carl", "dan"] {
        let mut stream = app
            .stream(
                "/events/room",
                &[("Authorization", &format!("Bearer {}", token(user, 600)))],
            )
            .await;
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
        streams.push(stream);
    }
    let anonymous: Sse = app.stream("/events/room", &[]).await;
    streams.push(anonymous);
    let (status, _) = ask(&app.http, &app.base, "channel=room", None).await;
    assert_eq!(status, 401);
    let (status, _) = ask(&app.http, &app.base, "channel=room", Some(PUBLISH_KEY)).await;
    assert_eq!(
        status, 403,
        "the explain key, not the publish key, when one is set"
    );
    let (status, body) = ask(&app.http, &app.base, "user=ann", Some(EXPLAIN_KEY)).await;
    assert_eq!((status, body["error"].clone()), (400, json!("bad-request")));

    let (status, body) = ask(
        &app.http,
        &app.base,
        "channel=room&user=bob",
        Some(EXPLAIN_KEY),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["local"]["streams"], 4);
    let text = body.to_string();
    for secret in [EXPLAIN_KEY, PUBLISH_KEY, JWT_SECRET, BUS_KEY, LINK_KEY] {
        assert!(!text.contains(secret), "a secret in {text}");
    }
    assert!(!text.contains("ghost"), "a hidden user in {text}");
    // Named: bob (asked about) and those presence names.
    assert_eq!(body["presence"]["listed"], json!(["ann", "dan"]));
    drop(streams);
    app.stop().await;
}

/// Nobody reads the channel on instance A; somebody does on B.
async fn read_elsewhere(url: &str, bus: &BusSettings) {
    let mut settings: Vec<(&str, Value)> = bus.clone();
    settings.extend([
        ("eventstream.presence_interval_ms", json!(200)),
        ("eventstream.explain_path", json!("/explain")),
        ("eventstream.explain_key", json!(EXPLAIN_KEY)),
    ]);
    let a = Instance::start(url, &settings).await;
    let b = Instance::start(url, &settings).await;
    let http = reqwest::Client::new();
    let mut reader = Sse::from_response(
        http.get(format!("{}/events/far", b.url))
            .send()
            .await
            .expect("a stream"),
    );
    assert_eq!(reader.next().await.expect("open").event(), "stream-open");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = ask(&http, &a.url, "channel=far", Some(EXPLAIN_KEY)).await;
        assert_eq!(status, 200);
        let instances = body["instances"].as_array().cloned().unwrap_or_default();
        if instances.len() == 2 && instances[1]["streams"] == 1 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "B's reader never showed on A: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        body["instances"][0],
        json!({"instance": "this", "streams": 0})
    );
    assert_eq!(body["local"]["streams"], 0);
    assert_eq!(body["presence"]["streams"], 1);
    drop(reader);
    a.kill().await;
    b.kill().await;
}

async fn a_channel_read_on_another_instance_over_postgres() {
    let database = TestDatabase::create(Setup::Postgres).await;
    read_elsewhere(&database.url, &postgres_bus()).await;
}

#[cfg(feature = "redis")]
async fn a_channel_read_on_another_instance_over_redis() {
    let mut server = RedisServer::start().await;
    let database = TestDatabase::create(Setup::Postgres).await;
    read_elsewhere(&database.url, &redis_bus(&server)).await;
    server.stop().await;
}
