//! Several app instances on one PostgreSQL event log (`broadcast =
//! "postgres"`): live events, live-only events and kicks cross from one
//! instance to the others, and nothing is lost, repeated or reordered while
//! listeners are cut, instances are killed and PostgreSQL restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventstream_rocket::User;
use libtest_mimic::Trial;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::{Notify, watch};

use crate::helpers::{
    AnnUntilRevoked, App, BusSettings, Cluster, Instance, PUBLISH_KEY, Setup, TestApp,
    TestDatabase, launch_error, on_bus, postgres_bus, spawn_app, token,
};
#[cfg(feature = "redis")]
use crate::helpers::{LogMark, RedisServer, redis_bus};
use crate::on_backend;

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [broadcast_settings_are_checked_at_launch],
        needs_postgres => [
            events_sent_on_one_instance_reach_streams_on_another,
            a_kick_on_one_instance_ends_the_stream_on_another,
            a_live_event_too_large_to_relay_resets_remote_streams,
            three_instances_lose_nothing_under_faults,
        ],
        needs_redis => [
            events_cross_instances_over_redis,
            instances_on_one_sqlite_file_share_events_over_redis,
            a_kick_crosses_instances_over_redis,
            three_instances_over_redis_lose_nothing_under_faults,
            a_redis_password_never_reaches_logs,
        ],
    ]
}

async fn broadcast_settings_are_checked_at_launch() {
    let sqlite = || App::on(Setup::Sqlite);
    for (app, key, mentions) in [
        // Without the feature it names the feature; with it, SQLite needs
        // broadcast_shared_sqlite.
        (
            sqlite().with("eventstream.broadcast", "redis"),
            "eventstream.broadcast",
            if cfg!(feature = "redis") {
                &["broadcast_shared_sqlite"][..]
            } else {
                &["`redis` cargo feature"][..]
            },
        ),
        (
            sqlite().with("eventstream.broadcast", "postgres"),
            "eventstream.broadcast",
            &["PostgreSQL", "SQLite", "broadcast = \"local\""][..],
        ),
        (
            App::on(Setup::Postgres)
                .with("eventstream.broadcast", "postgres")
                .without("eventstream.bus_key"),
            "eventstream.bus_key",
            &["shared secret", "at least 16 bytes"][..],
        ),
        (
            App::on(Setup::Postgres)
                .with("eventstream.broadcast", "postgres")
                .with("eventstream.bus_key", "short"),
            "eventstream.bus_key",
            &["at least 16 bytes"][..],
        ),
        (
            sqlite().with("eventstream.broadcast_poll_secs", 0),
            "eventstream.broadcast_poll_secs",
            &["between 1 and 3600"][..],
        ),
        (
            sqlite().with("eventstream.broadcast", "sometimes"),
            "eventstream.broadcast",
            &["`local`", "`postgres`", "`redis`"][..],
        ),
        (
            sqlite()
                .with("eventstream.broadcast", "redis")
                .with("eventstream.redis_url", "http://127.0.0.1:6379"),
            "eventstream.redis_url",
            &["redis://"][..],
        ),
        (
            sqlite()
                .with("eventstream.health_path", "/events/health")
                .with("eventstream.mount", "/events"),
            "eventstream.health_path",
            &["falls under mount"][..],
        ),
    ] {
        let error = launch_error(app).await;
        let named = format!("eventstream: {key}:");
        assert!(
            error.logged.iter().any(
                |line| line.contains(&named) && mentions.iter().all(|word| line.contains(word))
            ),
            "no logged error names {key} and mentions {mentions:?}: {error}"
        );
    }
}

/// The ids and data of the `message` events read from `stream` until it
/// has `count` of them.
async fn messages(stream: &mut crate::helpers::Sse, count: usize) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = stream.next_event().await;
        if frame.event() == "message" {
            got.push((frame.id.clone().unwrap_or_default(), frame.json()));
        }
    }
    got
}

async fn events_sent_on_one_instance_reach_streams_on_another() {
    delivery(Setup::Postgres, &postgres_bus()).await;
}

#[cfg(feature = "redis")]
async fn events_cross_instances_over_redis() {
    let mut server = RedisServer::start().await;
    delivery(Setup::Postgres, &redis_bus(&server)).await;
    server.stop().await;
}

/// Two instances on one SQLite file on one host, which the setting says.
#[cfg(feature = "redis")]
async fn instances_on_one_sqlite_file_share_events_over_redis() {
    let mut server = RedisServer::start().await;
    let mut bus = redis_bus(&server);
    bus.push(("eventstream.broadcast_shared_sqlite", true.into()));
    delivery(Setup::Sqlite, &bus).await;
    server.stop().await;
}

/// On `app`, two events (`{"n": first}` and the next) sent in one
/// application transaction and committed, then one sent in a transaction
/// that is dropped: it must never reach anyone.
async fn send_in_transactions(app: &TestApp, storage: Setup, first: u64) {
    on_backend!(storage, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        for n in first..first + 2 {
            tx.send_event("feed", "message", &json!({ "n": n }))
                .await
                .expect("send in the transaction");
        }
        tx.commit().await.expect("commit");
        let mut dropped = app.events.begin::<Db>().await.expect("begin");
        dropped
            .send_event("feed", "message", &json!("rolled back"))
            .await
            .expect("send in the transaction");
        drop(dropped);
    })
}

/// Subscribers on A, events sent on B (and one on A), over `bus`, with the
/// event log on `storage`. B also commits two events in an application
/// transaction: they cross like the writer's (PostgreSQL: the NOTIFY inside
/// the transaction; Redis: the sender after the commit).
async fn delivery(storage: Setup, bus: &BusSettings) {
    let database = TestDatabase::create(storage).await;
    let a = spawn_app(on_bus(&database.url, bus)).await;
    let b = spawn_app(on_bus(&database.url, bus)).await;
    let mut on_a = Vec::new();
    for _ in 0..20 {
        let mut stream = a.stream("/events/?channel=feed", &[]).await;
        stream.next_event().await; // stream-open
        on_a.push(stream);
    }
    let mut live_on_a = a.stream("/events/?channel=live-feed", &[]).await;
    live_on_a.next_event().await;
    let mut on_b = b.stream("/events/?channel=feed", &[]).await;
    on_b.next_event().await;

    // Sent on B, concurrently, so that batches hold several events.
    let sends = (0..50).map(|n| {
        let events = b.events.clone();
        tokio::spawn(async move {
            events
                .send_event("feed", "message", &json!({ "n": n }))
                .await
                .expect("send")
        })
    });
    for send in sends {
        send.await.expect("sent");
    }
    // Two more in an application transaction on B, and one rolled back.
    send_in_transactions(&b, storage, 50).await;
    b.send_event("live-feed", json!("live")).await;
    // One more on A itself: it follows B's events, in order.
    a.send_event("feed", json!({ "n": 52 })).await;

    let expected: Vec<String> = (1..=53).map(|seq| format!("feed:{seq}")).collect();
    for stream in on_a.iter_mut().chain([&mut on_b]) {
        let (ids, data): (Vec<String>, Vec<Value>) = messages(stream, 53).await.into_iter().unzip();
        assert_eq!(ids, expected, "every event once, in id order");
        assert!(
            !data.contains(&json!("rolled back")),
            "a rolled-back event never crosses"
        );
    }
    let live = live_on_a.next_event().await;
    assert_eq!((live.event(), live.json()), ("message", json!("live")));
    let metrics = a.events.metrics();
    assert_eq!(
        metrics.bus_recovered, 0,
        "delivered by notifications, not found by a poll: {metrics:?}"
    );
    assert!(metrics.bus_delivered >= 50, "{metrics:?}");
    assert_eq!(
        metrics.replay_fallbacks, 0,
        "no stream went to storage on its own: {metrics:?}"
    );
    a.stop().await;
    b.stop().await;
    database.remove().await;
}

async fn a_kick_on_one_instance_ends_the_stream_on_another() {
    kick_across(&postgres_bus()).await;
}

#[cfg(feature = "redis")]
async fn a_kick_crosses_instances_over_redis() {
    let mut server = RedisServer::start().await;
    kick_across(&redis_bus(&server)).await;
    server.stop().await;
}

async fn kick_across(bus: &BusSettings) {
    let database = TestDatabase::create(Setup::Postgres).await;
    let (stage, revoked) = AnnUntilRevoked::stage();
    let a = spawn_app(on_bus(&database.url, bus).stage(stage)).await;
    let (stage_b, _) = AnnUntilRevoked::stage();
    let b = spawn_app(on_bus(&database.url, bus).stage(stage_b)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let bob = format!("Bearer {}", token("bob", 60));
    let mut ann_on_b = b
        .stream("/events/?channel=room", &[("Authorization", &ann)])
        .await;
    let mut bob_on_b = b
        .stream("/events/?channel=room", &[("Authorization", &bob)])
        .await;
    ann_on_b.next_event().await;
    bob_on_b.next_event().await;

    // Revoked where the application decided it: A. B's own authorizer
    // still lets ann in; the kick carries A's decision.
    revoked.store(true, Ordering::SeqCst);
    let ended_on_a = a
        .events
        .channel_permission_changed(Some(&User::new("ann")), "room")
        .await;
    assert_eq!(ended_on_a, 0, "only streams of this process are counted");
    let frames = ann_on_b.until_end().await;
    let errors: Vec<_> = frames
        .iter()
        .filter(|frame| frame.event() == "stream-error")
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one forbidden error, then the end: {frames:?}"
    );
    assert_eq!(
        errors[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: room", "channels": ["room"]})
    );
    a.send_event("room", json!("after")).await;
    let after = messages(&mut bob_on_b, 1).await;
    assert_eq!(after[0].1, json!("after"), "bob's stream goes on");
    a.stop().await;
    b.stop().await;
    database.remove().await;
}

async fn a_live_event_too_large_to_relay_resets_remote_streams() {
    let database = TestDatabase::create(Setup::Postgres).await;
    let a = spawn_app(on_bus(&database.url, &postgres_bus())).await;
    let b = spawn_app(on_bus(&database.url, &postgres_bus())).await;
    let mut on_a = a.stream("/events/?channel=live-big", &[]).await;
    let mut on_b = b.stream("/events/?channel=live-big", &[]).await;
    on_a.next_event().await;
    on_b.next_event().await;
    // Larger than a notification can carry (8,000 bytes).
    let big = "x".repeat(9_000);
    a.send_event("live-big", json!(big)).await;
    let local = on_a.next_event().await;
    assert_eq!(local.json(), json!(big), "delivered where it was sent");
    let remote = on_b.next_event().await;
    assert_eq!(remote.event(), "stream-reset", "told, not silently dropped");
    assert_eq!(a.events.metrics().bus_unrelayed, 1);
    // A small one still crosses.
    a.send_event("live-big", json!("small")).await;
    assert_eq!(messages(&mut on_b, 1).await[0].1, json!("small"));
    a.stop().await;
    b.stop().await;
    database.remove().await;
}

/// The instances of the fault test, by slot; a killed one is started
/// again in its slot.
type Slots = Arc<Mutex<Vec<String>>>;

const CHANNEL: &str = "feed";

/// What one subscriber saw: ids and data of every `message`, in order.
type Seen = Vec<(u64, Value)>;

/// Subscribes with `Last-Event-ID` through the instances in turn, leaving
/// after a few events (or when the instance goes away) and resuming on
/// the next one, until it has seen `target`. Every event after its last
/// resume reaches it live, whichever instance committed it.
async fn subscriber(index: usize, slots: Slots, mut target: watch::Receiver<u64>) -> Seen {
    let http = reqwest::Client::new();
    let mut seen: Seen = Vec::new();
    let mut slot = index;
    // A small deterministic generator: how many events before leaving.
    let mut state = index as u64 * 7919 + 17;
    let mut next_leave = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        3 + (state >> 33) % 25
    };
    loop {
        let last = seen.last().map_or(0, |(seq, _)| *seq);
        if last >= *target.borrow() {
            return seen;
        }
        slot = (slot + 1) % 3;
        let url = slots.lock().expect("slots")[slot].clone();
        let request = http
            .get(format!("{url}/events/?channel={CHANNEL}"))
            .header("Last-Event-ID", format!("{CHANNEL}:{last}"))
            .send();
        let response = match tokio::time::timeout(Duration::from_secs(5), request).await {
            Ok(Ok(response)) => response,
            // Killed, or the database is restarting: try the next one.
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut stream = crate::helpers::Sse::from_response(response);
        let leave_after = next_leave();
        let mut read = 0;
        loop {
            // No reconnecting when it is quiet: what this instance does not
            // deliver live, the test sees missing.
            let frame = tokio::select! {
                frame = stream.try_next_within(Duration::from_secs(120)) => frame,
                _ = target.changed() => {
                    if seen.last().is_some_and(|(seq, _)| *seq >= *target.borrow()) {
                        return seen;
                    }
                    continue;
                }
            };
            let Some(Some(frame)) = frame else {
                break; // the instance went away: resume on the next one
            };
            if frame.comment {
                continue;
            }
            match frame.event() {
                "message" => {
                    let id = frame.id.as_deref().expect("an id");
                    let seq: u64 = id
                        .strip_prefix("feed:")
                        .and_then(|seq| seq.parse().ok())
                        .unwrap_or_else(|| panic!("subscriber {index}: odd id {id:?}"));
                    seen.push((seq, frame.json()));
                    read += 1;
                    if seq >= *target.borrow() {
                        return seen;
                    }
                    if read >= leave_after {
                        break;
                    }
                }
                "stream-reset" | "stream-error" => {
                    panic!(
                        "subscriber {index} was told {:?}: {}",
                        frame.event(),
                        frame.data
                    )
                }
                _ => {}
            }
        }
        if read == 0 {
            // Deferred (the event log is restarting) or cut at once: do
            // not spin through the instances.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Publishes through the publish API of the instances in turn until
/// `stop`, counting acknowledged events; a failed request goes to the next
/// instance.
async fn publisher(
    index: usize,
    slots: Slots,
    stop: Arc<AtomicBool>,
    published: Arc<(AtomicU64, Notify)>,
) {
    let http = reqwest::Client::new();
    let mut slot = index;
    let mut n = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(15));
    while !stop.load(Ordering::SeqCst) {
        pace.tick().await;
        let url = slots.lock().expect("slots")[slot].clone();
        let sent = http
            .post(format!("{url}/events/{CHANNEL}"))
            .bearer_auth(PUBLISH_KEY)
            .json(&json!({ "type": "message", "data": { "p": index, "n": n } }))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().as_u16() == 201 => {
                n += 1;
                published.0.fetch_add(1, Ordering::SeqCst);
                published.1.notify_waiters();
            }
            // Refused, killed, restarting: another instance.
            _ => slot = (slot + 1) % 3,
        }
    }
}

async fn wait_until_published(published: &(AtomicU64, Notify), count: u64) {
    let wait = async {
        loop {
            let notified = published.1.notified();
            if published.0.load(Ordering::SeqCst) >= count {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("{count} events were not published within 60 s"));
}

/// The servers the fault test cuts and restarts: a private PostgreSQL
/// cluster (event log and bus), or a private Redis (the bus; the event log
/// is a database on the shared PostgreSQL, which is not restarted).
enum Faults {
    Postgres(Cluster),
    #[cfg(feature = "redis")]
    Redis(RedisServer, TestDatabase),
}

impl Faults {
    fn database_url(&self) -> String {
        match self {
            Faults::Postgres(cluster) => cluster.url("events"),
            #[cfg(feature = "redis")]
            Faults::Redis(_, database) => database.url.clone(),
        }
    }

    fn settings(&self) -> Vec<(&'static str, Value)> {
        let mut settings = vec![("eventstream.broadcast_poll_secs", Value::from(1))];
        match self {
            Faults::Postgres(_) => settings.push(("eventstream.broadcast", "postgres".into())),
            #[cfg(feature = "redis")]
            Faults::Redis(server, _) => {
                settings.push(("eventstream.broadcast", "redis".into()));
                settings.push(("eventstream.redis_url", server.url().into()));
            }
        }
        settings
    }

    /// Ends bus listener connections behind the instances' backs.
    async fn cut_listeners(&self) {
        match self {
            Faults::Postgres(cluster) => {
                let admin = sqlx::PgPool::connect(&cluster.url("postgres"))
                    .await
                    .expect("the private cluster answers");
                // One instance's listener.
                let terminated: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM \
                     (SELECT pid FROM pg_stat_activity WHERE application_name = 'eventstream bus' LIMIT 1) AS one",
                )
                .fetch_all(&admin)
                .await
                .expect("terminate a listener");
                assert_eq!(
                    terminated,
                    [true],
                    "a listener connection was found and ended"
                );
                admin.close().await;
            }
            #[cfg(feature = "redis")]
            Faults::Redis(server, _) => {
                // Every instance's subscription.
                let reply = server
                    .command("CLIENT KILL TYPE pubsub")
                    .await
                    .expect("Redis answers");
                assert!(
                    reply.starts_with(':') && !reply.starts_with(":0"),
                    "subscriber connections were found and ended: {reply:?}"
                );
            }
        }
    }

    /// The server the bus runs on crashes and comes back.
    async fn restart(&mut self) {
        match self {
            Faults::Postgres(cluster) => {
                cluster.crash();
                cluster.start();
            }
            #[cfg(feature = "redis")]
            Faults::Redis(server, _) => server.restart().await,
        }
    }

    async fn remove(self) {
        match self {
            Faults::Postgres(cluster) => drop(cluster),
            #[cfg(feature = "redis")]
            Faults::Redis(mut server, database) => {
                server.stop().await;
                database.remove().await;
            }
        }
    }
}

async fn three_instances_lose_nothing_under_faults() {
    let cluster = Cluster::create("es_bus", &[]);
    cluster.create_database("events").await;
    under_faults(Faults::Postgres(cluster)).await;
}

#[cfg(feature = "redis")]
async fn three_instances_over_redis_lose_nothing_under_faults() {
    let server = RedisServer::start().await;
    let database = TestDatabase::create(Setup::Postgres).await;
    under_faults(Faults::Redis(server, database)).await;
}

/// Three instances, subscribers resuming on another instance than the one
/// they left, publishers on all three; mid-run the listeners are cut, an
/// instance is killed and started again, and the bus's server restarts.
async fn under_faults(mut faults: Faults) {
    let url = faults.database_url();
    let settings = faults.settings();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Some(Instance::start(&url, &settings).await));
    }
    let slots: Slots = Arc::new(Mutex::new(
        instances
            .iter()
            .map(|instance| instance.as_ref().expect("started").url.clone())
            .collect(),
    ));
    let (set_target, target) = watch::channel(u64::MAX);
    let subscribers: Vec<_> = (0..12)
        .map(|index| tokio::spawn(subscriber(index, Arc::clone(&slots), target.clone())))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new((AtomicU64::new(0), Notify::new()));
    let publishers: Vec<_> = (0..3)
        .map(|index| {
            tokio::spawn(publisher(
                index,
                Arc::clone(&slots),
                Arc::clone(&stop),
                Arc::clone(&published),
            ))
        })
        .collect();

    wait_until_published(&published, 60).await;
    // 1. Listener connections are ended.
    faults.cut_listeners().await;

    wait_until_published(&published, 120).await;
    // 2. An instance is killed and started again.
    instances[2].take().expect("running").kill().await;
    let again = Instance::start(&url, &settings).await;
    slots.lock().expect("slots")[2] = again.url.clone();
    instances[2] = Some(again);

    wait_until_published(&published, 180).await;
    // 3. The bus's server (PostgreSQL: also the event log) crashes and
    // comes back.
    faults.restart().await;

    wait_until_published(&published, 240).await;
    stop.store(true, Ordering::SeqCst);
    for publisher in publishers {
        publisher.await.expect("publisher");
    }

    let storage = sqlx::PgPool::connect(&url).await.expect("the event log");
    let rows =
        sqlx::query("SELECT id, data FROM eventstream_events WHERE channel = $1 ORDER BY id")
            .bind(CHANNEL)
            .fetch_all(&storage)
            .await
            .expect("the stored events");
    storage.close().await;
    let stored: BTreeMap<u64, Value> = rows
        .iter()
        .map(|row| {
            let id: i64 = row.get("id");
            let data: String = row.get("data");
            (id as u64, serde_json::from_str(&data).expect("JSON data"))
        })
        .collect();
    let last = stored.len() as u64;
    assert!(last >= 240, "{last} stored");
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    set_target.send(last).expect("subscribers listen");

    let expected: Seen = stored.into_iter().collect();
    for (index, subscriber) in subscribers.into_iter().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(60), subscriber)
            .await
            .unwrap_or_else(|_| panic!("subscriber {index} did not reach id {last} within 60 s"))
            .expect("subscriber");
        if seen != expected {
            let ids: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
            panic!(
                "subscriber {index} saw {} events, not exactly 1..={last} once in order: {ids:?}",
                ids.len()
            );
        }
    }
    drop(instances);
    faults.remove().await;
}

/// A Redis password is a secret: what the library logs while Redis refuses
/// it, or cannot be reached, never shows it.
#[cfg(feature = "redis")]
async fn a_redis_password_never_reaches_logs() {
    let mut server = RedisServer::start().await;
    server.stop().await; // nothing answers on its port now
    let password = "s3cret-redis-password-0451";
    let mark = LogMark::now();
    let app = spawn_app(
        App::on(Setup::Postgres)
            .with("eventstream.broadcast", "redis")
            .with(
                "eventstream.redis_url",
                format!("redis://:{password}@127.0.0.1:{}/0", server.port),
            )
            .with("eventstream.health_path", "/healthz"),
    )
    .await;
    let health: Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(!health.to_string().contains(password));
    let logged = mark.lines_since();
    assert!(
        logged.iter().any(|line| line.contains("Redis")),
        "the unreachable Redis was logged: {logged:?}"
    );
    for line in &logged {
        assert!(!line.contains(password), "the password was logged: {line}");
    }
    app.stop().await;
}
