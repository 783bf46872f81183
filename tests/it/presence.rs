//! Presence: how many streams and which users read a channel, in one
//! process, across three instances on each bus (one of them killed), and
//! behind a real Pushpin; the coalesced `stream-presence` events of the
//! streams that ask, and the users the authorizer hides.
//!
//! The test authorizer names every signed-in user but `ghost-` ones.

use std::time::{Duration, Instant};

use eventstream_rocket::SendOptions;
use libtest_mimic::Trial;
use serde_json::{Value, json};

use crate::helpers::{
    App, BusSettings, Instance, PUBLISH_KEY, Setup, Sse, TestDatabase, postgres_bus, spawn_app,
    token,
};
#[cfg(feature = "redis")]
use crate::helpers::{RedisServer, redis_bus};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            streams_and_users_are_counted_and_only_listed_users_named,
            presence_needs_the_publish_key_and_a_valid_channel,
        ],
        alone => [a_join_storm_gives_watchers_a_few_events_and_others_none],
        needs_postgres => [three_instances_on_the_postgres_bus_agree_and_drop_a_killed_one],
        needs_redis => [three_instances_on_the_redis_bus_agree_and_drop_a_killed_one],
        needs_pushpin => [counts_follow_streams_held_by_pushpin],
    ]
}

/// How long an instance's presence report stands in these tests.
const LEASE_SECS: u64 = 3;

/// `GET <base>/events/_presence/<channel>` with the publish key.
async fn presence(http: &reqwest::Client, base: &str, channel: &str) -> Value {
    let response = http
        .get(format!("{base}/events/_presence/{channel}"))
        .bearer_auth(PUBLISH_KEY)
        .send()
        .await
        .expect("the presence answer");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("JSON")
}

/// Polls `base`'s presence of `channel` until it shows `streams`, `users`
/// and `listed`; returns how long that took, or panics after `within`.
async fn until_presence(
    http: &reqwest::Client,
    base: &str,
    channel: &str,
    (streams, users, listed): (u64, u64, &[&str]),
    within: Duration,
) -> Duration {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < within {
        last = presence(http, base, channel).await;
        if last["streams"] == streams && last["users"] == users && last["listed"] == json!(listed) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{base}: presence of {channel} did not reach {streams} streams, {users} users, {listed:?} within {within:?}; last: {last}"
    );
}

/// Opens a stream of `channel` at `base` as `user` (anonymous: `None`),
/// asking for presence events with `watch`; returns it once `stream-open`
/// arrived.
async fn open(
    http: &reqwest::Client,
    base: &str,
    channel: &str,
    user: Option<&str>,
    watch: bool,
) -> Sse {
    let query = if watch { "?presence=1" } else { "" };
    let mut request = http.get(format!("{base}/events/{channel}{query}"));
    if let Some(user) = user {
        request = request.bearer_auth(token(user, 600));
    }
    let mut stream = Sse::from_response(request.send().await.expect("a stream"));
    assert_eq!(stream.status, 200);
    let open = stream
        .next_within(Duration::from_secs(10))
        .await
        .expect("stream-open");
    assert_eq!(open.event(), "stream-open");
    stream
}

/// The next `stream-presence` frame of `stream`, checked to carry no id.
async fn next_presence(stream: &mut Sse, within: Duration) -> Value {
    loop {
        let frame = stream
            .next_within(within)
            .await
            .expect("a stream-presence event");
        if frame.event() == "stream-presence" {
            assert_eq!(frame.id, None, "presence never moves the resume position");
            return frame.json();
        }
    }
}

async fn streams_and_users_are_counted_and_only_listed_users_named() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.keepalive_secs", 1)).await;
    let http = &app.http;
    let base = app.base.as_str();
    let mut watcher = open(http, base, "room", Some("ana"), true).await;
    let first = next_presence(&mut watcher, Duration::from_secs(5)).await;
    assert_eq!(
        first,
        json!({"channel": "room", "streams": 1, "users": 1, "present": ["ana"], "truncated": false})
    );
    let second_tab = open(http, base, "room", Some("ana"), false).await;
    let bob = open(http, base, "room", Some("bob"), false).await;
    let ghost = open(http, base, "room", Some("ghost-carl"), false).await;
    let anonymous = open(http, base, "room", None, false).await;
    // The app's own answer is at once.
    let now = app.events.presence("room").expect("a valid channel");
    assert_eq!((now.streams, now.users), (5, 3));
    assert_eq!(now.listed, ["ana", "bob"]);
    until_presence(
        http,
        base,
        "room",
        (5, 3, &["ana", "bob"]),
        Duration::from_secs(1),
    )
    .await;
    // The watcher is told within an interval, never of the ghost.
    let mut seen = Vec::new();
    loop {
        let event = next_presence(&mut watcher, Duration::from_secs(3)).await;
        seen.push(event.clone());
        if event["streams"] == 5 {
            break;
        }
    }
    let text = serde_json::to_string(&seen).expect("JSON");
    assert!(
        text.contains("\"bob\"") && !text.contains("ghost"),
        "{text}"
    );

    // Leaving: the server notices at the next keep-alive.
    drop((bob, ghost, anonymous));
    let took = until_presence(http, base, "room", (2, 1, &["ana"]), Duration::from_secs(5)).await;
    let mut left = Vec::new();
    loop {
        let event = next_presence(&mut watcher, Duration::from_secs(3)).await;
        left.extend(event["left"].as_array().cloned().unwrap_or_default());
        if event["streams"] == 2 {
            break;
        }
    }
    assert_eq!(
        left,
        [json!("bob")],
        "the anonymous reader and the ghost are not named"
    );
    drop(second_tab);
    until_presence(http, base, "room", (1, 1, &["ana"]), Duration::from_secs(5)).await;
    eprintln!("one process: leaves counted within {took:?} (keep-alive 1 s)");
    drop(watcher);
    until_presence(http, base, "room", (0, 0, &[]), Duration::from_secs(5)).await;
    app.stop().await;
}

async fn presence_needs_the_publish_key_and_a_valid_channel() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let url = app.url("/events/_presence/room");
    let anonymous = app.http.get(&url).send().await.expect("an answer");
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("not-the-key")
        .send()
        .await
        .expect("an answer");
    assert_eq!(wrong.status().as_u16(), 403);
    let bad = app
        .http
        .get(app.url(&format!("/events/_presence/{}", "x".repeat(300))))
        .bearer_auth(PUBLISH_KEY)
        .send()
        .await
        .expect("an answer");
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(
        bad.json::<Value>().await.expect("JSON")["error"],
        "bad-request"
    );
    let asked = app
        .http
        .get(app.url("/events/room?presence=maybe"))
        .send()
        .await
        .expect("an answer");
    let mut stream = Sse::from_response(asked);
    let refused = stream.next().await.expect("a frame");
    assert_eq!(refused.event(), "stream-error", "{refused:?}");
    assert!(refused.data.contains("presence"), "{refused:?}");
    app.stop().await;
}

/// Streams in the storm.
const STORM: usize = 2000;

async fn a_join_storm_gives_watchers_a_few_events_and_others_none() {
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with("eventstream.max_streams_per_ip", 10_000)
            .with("eventstream.presence_interval_ms", 1000),
    )
    .await;
    let base = app.base.clone();
    let mut watcher = open(&app.http, &base, "stage", Some("ana"), true).await;
    let mut bystander = open(&app.http, &base, "stage", Some("bob"), false).await;
    next_presence(&mut watcher, Duration::from_secs(5)).await;

    let storm_start = Instant::now();
    let joins: Vec<_> = (0..STORM)
        .map(|n| {
            let http = app.http.clone();
            let base = base.clone();
            tokio::spawn(async move {
                open(&http, &base, "stage", Some(&format!("fan-{n}")), false).await
            })
        })
        .collect();
    let mut storm = Vec::with_capacity(STORM);
    for join in joins {
        storm.push(join.await.expect("a join"));
    }
    let joined_in = storm_start.elapsed();
    // The watcher counts events until one shows everyone.
    let mut events = 0;
    let mut last = Value::Null;
    let mut cut = false;
    while last["streams"] != json!(STORM + 2) {
        last = next_presence(&mut watcher, Duration::from_secs(5)).await;
        let joined = last["joined"].as_array().map_or(0, Vec::len);
        assert!(joined <= 100, "presence_list_max names at most: {joined}");
        cut |= last["truncated"] == true;
        events += 1;
    }
    let window = storm_start.elapsed();
    // One per interval while the storm lasts, and one more at most.
    let allowed = window.as_secs_f64().ceil() as usize + 1;
    eprintln!(
        "join storm: {STORM} streams joined in {joined_in:?}; the watcher got {events} stream-presence events in {window:?} (at most {allowed} allowed)"
    );
    assert!(events <= allowed, "{events} events in {window:?}");
    assert_eq!(last["users"], json!(STORM + 2));
    assert!(cut, "more than 100 joined in one interval: a list was cut");

    // The bystander, which did not ask, gets no presence before the next
    // event on the channel.
    app.send_event("stage", json!("after the storm")).await;
    loop {
        let frame = bystander.next_event().await;
        assert_ne!(frame.event(), "stream-presence", "{frame:?}");
        if frame.event() == "message" {
            break;
        }
    }
    drop(storm);
    app.stop().await;
}

/// Three instances on one event log and `bus`: their answers agree as
/// streams open and close on each, and the readers of a SIGKILLed one
/// leave everyone's counts within the lease.
async fn across_instances(url: &str, bus: &BusSettings) {
    let mut settings: Vec<(&str, Value)> = bus.clone();
    settings.extend([
        ("eventstream.keepalive_secs", json!(1)),
        ("eventstream.presence_interval_ms", json!(200)),
        ("eventstream.presence_lease_secs", json!(LEASE_SECS)),
    ]);
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Instance::start(url, &settings).await);
    }
    let http = reqwest::Client::new();
    let bases: Vec<String> = instances
        .iter()
        .map(|instance| instance.url.clone())
        .collect();
    let agree = |expected: (u64, u64, &'static [&'static str]), within: Duration| {
        let http = http.clone();
        let bases = bases.clone();
        async move {
            let mut slowest = Duration::ZERO;
            for base in &bases {
                let took = until_presence(&http, base, "hall", expected, within).await;
                slowest = slowest.max(took);
            }
            slowest
        }
    };
    // ana on two instances is one user; the ghost is counted, not named.
    let mut watcher = open(&http, &bases[0], "hall", Some("ana"), true).await;
    let ana_again = open(&http, &bases[1], "hall", Some("ana"), false).await;
    let bob = open(&http, &bases[1], "hall", Some("bob"), false).await;
    let ghost = open(&http, &bases[2], "hall", Some("ghost-dan"), false).await;
    let carl = open(&http, &bases[2], "hall", Some("carl"), false).await;
    let anonymous = open(&http, &bases[2], "hall", None, false).await;
    let joined = agree((6, 4, &["ana", "bob", "carl"]), Duration::from_secs(5)).await;

    drop(bob);
    let left = agree((5, 3, &["ana", "carl"]), Duration::from_secs(5)).await;

    // The third instance dies with three readers: nobody removes them but
    // the lease.
    let killed_at = Instant::now();
    instances.pop().expect("three").kill().await;
    let mut dropped = Duration::ZERO;
    for base in &bases[..2] {
        until_presence(
            &http,
            base,
            "hall",
            (2, 1, &["ana"]),
            Duration::from_secs(LEASE_SECS + 3),
        )
        .await;
        dropped = dropped.max(killed_at.elapsed());
    }
    eprintln!(
        "three instances: joins agreed within {joined:?}, a leave within {left:?}; a SIGKILLed instance's readers left within {dropped:?} (lease {LEASE_SECS} s)"
    );
    assert!(
        dropped <= Duration::from_secs(LEASE_SECS + 2),
        "{dropped:?}"
    );

    // The watcher never saw the ghost, and saw carl leave with the instance.
    let mut seen = Vec::new();
    loop {
        let event = next_presence(&mut watcher, Duration::from_secs(5)).await;
        let done = event["streams"] == 2;
        seen.push(event);
        if done {
            break;
        }
    }
    let text = serde_json::to_string(&seen).expect("JSON");
    assert!(!text.contains("ghost"), "{text}");
    assert!(
        seen.iter().any(|event| event["left"]
            .as_array()
            .is_some_and(|left| left.contains(&json!("carl")))),
        "{text}"
    );
    drop((ana_again, ghost, carl, anonymous, watcher));
    for instance in instances {
        instance.kill().await;
    }
}

async fn three_instances_on_the_postgres_bus_agree_and_drop_a_killed_one() {
    let database = TestDatabase::create(Setup::Postgres).await;
    across_instances(&database.url, &postgres_bus()).await;
}

#[cfg(feature = "redis")]
async fn three_instances_on_the_redis_bus_agree_and_drop_a_killed_one() {
    let mut server = RedisServer::start().await;
    let database = TestDatabase::create(Setup::Postgres).await;
    across_instances(&database.url, &redis_bus(&server)).await;
    server.stop().await;
}

/// Behind Pushpin the app sees each proxied stream's requests only: a join
/// at its first request, and its next link followed at least once per
/// `grip_link_timeout_secs` (5 s here, the shortest allowed) while it is
/// open, whatever its channels carry. A reader stays counted past several
/// link timeouts, and one who closed leaves within the proxied lease
/// (2 × 5 s + 5 s). A proxied stream that asked for presence gets its
/// events through the proxy; one that did not gets none.
async fn counts_follow_streams_held_by_pushpin() {
    let app = spawn_app(
        App::on(Setup::Pushpin)
            .with("eventstream.grip_link_timeout_secs", 5)
            .with("eventstream.keepalive_secs", 1),
    )
    .await;
    let http = &app.http;
    let through = app.base.as_str();
    let origin = app.origin.as_str();
    let mut ana = open(http, through, "lobby", Some("ana"), true).await;
    let first = next_presence(&mut ana, Duration::from_secs(5)).await;
    assert_eq!(first["present"], json!(["ana"]), "{first}");
    let bob = open(http, through, "lobby", Some("bob"), false).await;
    let cat = open(http, through, "lobby", Some("cat"), false).await;
    let mut anonymous = open(http, through, "lobby", None, false).await;
    let joined = until_presence(
        http,
        origin,
        "lobby",
        (4, 3, &["ana", "bob", "cat"]),
        Duration::from_secs(2),
    )
    .await;
    loop {
        let event = next_presence(&mut ana, Duration::from_secs(5)).await;
        if event["streams"] == 4 {
            break;
        }
    }
    // Every channel of cat's stream busy (the lobby, and his own user
    // channel, which carries a keep-alive for each event withheld from
    // him): the proxy then re-fetches his link only because of the channel
    // nothing is ever published on.
    let busy = {
        let events = app.events.clone();
        tokio::spawn(async move {
            let skip_cat = SendOptions::new().skip_user_ids(["cat"]);
            loop {
                let _ = events.send_event("lobby", "message", &json!("busy")).await;
                let _ = events
                    .send_event_with("lobby", "message", &json!("not for cat"), skip_cat.clone())
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    drop(bob);
    let closed_at = Instant::now();
    until_presence(
        http,
        origin,
        "lobby",
        (3, 2, &["ana", "cat"]),
        Duration::from_secs(20),
    )
    .await;
    let left = closed_at.elapsed();
    let event = loop {
        let event = next_presence(&mut ana, Duration::from_secs(5)).await;
        if event["streams"] == 3 {
            break event;
        }
    };
    // Behind a proxy every event carries the whole list.
    assert_eq!(event["present"], json!(["ana", "cat"]), "{event}");
    // Three link timeouts later ana, cat and the anonymous reader still
    // count.
    let held_until = closed_at + Duration::from_secs(17);
    while Instant::now() < held_until {
        let now = presence(http, origin, "lobby").await;
        assert_eq!(
            (now["streams"].clone(), now["users"].clone()),
            (json!(3), json!(2)),
            "open proxied streams stay counted: {now}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    busy.abort();
    eprintln!(
        "behind Pushpin: joins counted within {joined:?}, a closed stream left within {left:?} (proxied lease 15 s)"
    );
    // The lease, and one presence interval.
    assert!(left <= Duration::from_secs(17), "{left:?}");
    // The stream that did not ask saw no presence event.
    app.send_event("lobby", json!("the end")).await;
    loop {
        let frame = anonymous.next_event().await;
        assert_ne!(frame.event(), "stream-presence", "{frame:?}");
        if frame.data.contains("the end") {
            break;
        }
    }
    drop((ana, cat, anonymous));
    app.stop().await;
}
