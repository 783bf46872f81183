//! The bus hears only its own deployment, and trusts nothing it hears:
//! two event logs on one Redis server (different db numbers) or one
//! PostgreSQL database (different schemas) never hear each other; a notice
//! nobody sealed with the deployment's `bus_key` moves nothing; a sealed one
//! heard again is refused; and even a sealed commit notice is only a hint
//! to read storage.

use std::time::Duration;

use hmac::{Hmac, Mac};
use libtest_mimic::Trial;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::postgres::PgListener;

#[cfg(feature = "redis")]
use crate::helpers::RedisServer;
use crate::helpers::{
    BUS_KEY, BusSettings, Setup, Sse, TestApp, TestDatabase, on_bus, postgres_bus, spawn_app, token,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_postgres => [
            two_deployments_in_one_postgres_database_hear_only_their_own,
            forged_and_replayed_notices_move_nothing,
            a_sealed_commit_notice_is_only_a_hint,
        ],
        needs_redis => [
            two_deployments_on_one_redis_server_hear_only_their_own,
        ],
    ]
}

/// One deployment: an event log and its bus.
struct Deployment {
    database_url: String,
    bus: BusSettings,
}

/// Two deployments each run a publisher and a subscriber instance, with a
/// channel of the same name. Each publishes at the same time (X ten times
/// as much): every subscriber gets exactly its own events, by notification
/// (the poll is an hour away).
async fn only_their_own(x: Deployment, y: Deployment) {
    let x_sender = spawn_app(on_bus(&x.database_url, &x.bus)).await;
    let x_reader = spawn_app(on_bus(&x.database_url, &x.bus)).await;
    let y_sender = spawn_app(on_bus(&y.database_url, &y.bus)).await;
    let y_reader = spawn_app(on_bus(&y.database_url, &y.bus)).await;
    let mut on_x = x_reader.stream("/events/news", &[]).await;
    let mut on_y = y_reader.stream("/events/news", &[]).await;
    on_x.next_event().await;
    on_y.next_event().await;

    let sends = |app: &TestApp, from: &'static str, count: u64| {
        (1..=count)
            .map(|n| {
                let events = app.events.clone();
                tokio::spawn(async move {
                    events
                        .send_event("news", "message", &json!({ "from": from, "n": n }))
                        .await
                        .expect("send")
                })
            })
            .collect::<Vec<_>>()
    };
    let x_sends = sends(&x_sender, "x", 300);
    let y_sends = sends(&y_sender, "y", 30);
    for send in x_sends.into_iter().chain(y_sends) {
        send.await.expect("sent");
    }

    for (stream, from, count) in [(&mut on_y, "y", 30), (&mut on_x, "x", 300)] {
        let mut ids = Vec::new();
        while ids.len() < count {
            let frame = stream.next_event().await;
            assert_eq!(frame.event(), "message", "{frame:?}");
            assert_eq!(frame.json()["from"], json!(from), "{frame:?}");
            ids.push(frame.id.clone().unwrap_or_default());
        }
        let expected: Vec<String> = (1..=count).map(|seq| format!("news:{seq}")).collect();
        assert_eq!(ids, expected, "every event of {from} once, in order");
    }
    for app in [x_sender, x_reader, y_sender, y_reader] {
        assert_eq!(app.events.metrics().bus_refused, 0);
        app.stop().await;
    }
}

#[cfg(feature = "redis")]
async fn two_deployments_on_one_redis_server_hear_only_their_own() {
    let mut server = RedisServer::start().await;
    let x_database = TestDatabase::create(Setup::Postgres).await;
    let y_database = TestDatabase::create(Setup::Postgres).await;
    let on_db = |number: u8| -> BusSettings {
        vec![
            ("eventstream.broadcast", "redis".into()),
            (
                "eventstream.redis_url",
                format!("{}/{number}", server.url()).into(),
            ),
        ]
    };
    only_their_own(
        Deployment {
            database_url: x_database.url.clone(),
            bus: on_db(1),
        },
        Deployment {
            database_url: y_database.url.clone(),
            bus: on_db(2),
        },
    )
    .await;
    x_database.remove().await;
    y_database.remove().await;
    server.stop().await;
}

async fn two_deployments_in_one_postgres_database_hear_only_their_own() {
    let database = TestDatabase::create(Setup::Postgres).await;
    let admin = sqlx::PgPool::connect(&database.url)
        .await
        .expect("the database");
    for schema in ["deploy_x", "deploy_y"] {
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("a schema");
    }
    admin.close().await;
    let in_schema = |schema: &str| Deployment {
        database_url: format!("{}?options=-c%20search_path%3D{schema}", database.url),
        bus: postgres_bus(),
    };
    only_their_own(in_schema("deploy_x"), in_schema("deploy_y")).await;
    database.remove().await;
}

/// The bus channel an instance listens on, from its health check.
async fn bus_channel(app: &TestApp) -> String {
    let (_, health) = app.health().await;
    health["bus"]["channel"]
        .as_str()
        .unwrap_or_else(|| panic!("no bus channel in {health}"))
        .to_owned()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// `json` sealed with `key`, as an instance of the deployment would.
fn sealed(key: &str, json: &Value) -> String {
    let json = json.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(json.as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{tag}.{json}")
}

async fn notify(pool: &sqlx::PgPool, channel: &str, payload: &str) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await
        .expect("NOTIFY");
}

/// The next `message` on `stream`, failing on anything else but
/// keep-alives (a `stream-reset` would be a forged `lost` at work).
async fn next_message(stream: &mut Sse) -> (Option<String>, Value) {
    let frame = stream.next_event().await;
    assert_eq!(frame.event(), "message", "{frame:?}");
    (frame.id.clone(), frame.json())
}

/// Two instances A and B on the PostgreSQL bus, A with a health check; on
/// A, an anonymous stream of `news`, ann's stream of the private `_secret`
/// and a stream of the live-only `live-news`, each past its first event
/// from B.
struct Scene {
    database: TestDatabase,
    a: TestApp,
    b: TestApp,
    news: Sse,
    secret: Sse,
    live: Sse,
    /// The database, for NOTIFY as any role that can connect.
    attacker: sqlx::PgPool,
    channel: String,
}

async fn scene() -> Scene {
    let database = TestDatabase::create(Setup::Postgres).await;
    let a = spawn_app(
        on_bus(&database.url, &postgres_bus()).with("eventstream.health_path", "/healthz"),
    )
    .await;
    let b = spawn_app(on_bus(&database.url, &postgres_bus())).await;
    let ann = format!("Bearer {}", token("ann", 600));
    let mut news = a.stream("/events/news", &[]).await;
    let mut secret = a
        .stream("/events/_secret", &[("Authorization", &ann)])
        .await;
    let mut live = a.stream("/events/live-news", &[]).await;
    for stream in [&mut news, &mut secret, &mut live] {
        assert_eq!(stream.next_event().await.event(), "stream-open");
    }
    b.send_event("news", json!("one")).await;
    b.send_event("_secret", json!("one")).await;
    b.send_event("live-news", json!("one")).await;
    assert_eq!(next_message(&mut news).await.1, json!("one"));
    assert_eq!(next_message(&mut secret).await.1, json!("one"));
    assert_eq!(next_message(&mut live).await.1, json!("one"));
    let attacker = sqlx::PgPool::connect(&database.url)
        .await
        .expect("the database");
    let channel = bus_channel(&a).await;
    Scene {
        database,
        a,
        b,
        news,
        secret,
        live,
        attacker,
        channel,
    }
}

impl Scene {
    async fn stop(self) {
        self.attacker.close().await;
        self.a.stop().await;
        self.b.stop().await;
        self.database.remove().await;
    }

    /// Waits until A has refused `count` messages in all.
    async fn refused(&self, count: u64) {
        self.a
            .wait_for_metrics(
                "A did not refuse the forged notices",
                Duration::from_secs(10),
                |metrics| metrics.bus_refused >= count,
            )
            .await;
    }
}

/// Anyone who can connect to the database can NOTIFY: a forged commit
/// notice does not stall a channel, a forged live event does not reach a
/// private stream, a forged `lost` resets nothing, and a sealed notice
/// captured off the bus and sent again is refused.
async fn forged_and_replayed_notices_move_nothing() {
    let mut scene = scene().await;
    let now = now_ms();
    let commit = json!({"o": 1, "t": now, "n": 0, "commit": [{"c": "news", "f": 1_000_000, "l": 1_000_000}]});
    let live = json!({"o": 1, "t": now, "n": 1, "live": {"c": "_secret", "b": "event: message\ndata: \"forged\"\n"}});
    let lost = json!({"o": 1, "t": now, "n": 2, "lost": "news"});
    let mut forged = Vec::new();
    for notice in [&commit, &live, &lost] {
        // Unsealed, sealed with another key, and with a tag that is not
        // the notice's.
        forged.push(notice.to_string());
        forged.push(sealed("some-other-key-0123456789", notice));
        forged.push(format!("{}.{notice}", "ab".repeat(32)));
    }
    for payload in &forged {
        notify(&scene.attacker, &scene.channel, payload).await;
        // Where instances listened before deployments had channels of their own.
        notify(&scene.attacker, "eventstream", payload).await;
    }
    scene.refused(forged.len() as u64).await;

    // A captured sealed live event, sent again.
    let mut listener = PgListener::connect(&scene.database.url)
        .await
        .expect("a listener");
    listener.listen(&scene.channel).await.expect("LISTEN");
    scene.b.send_event("live-news", json!("two")).await;
    assert_eq!(next_message(&mut scene.live).await.1, json!("two"));
    let captured = loop {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("B's notice within 10 s")
            .expect("a notification");
        if notification.payload().contains("two") {
            break notification.payload().to_owned();
        }
    };
    notify(&scene.attacker, &scene.channel, &captured).await;
    scene.refused(forged.len() as u64 + 1).await;

    // Nothing moved: each stream gets the next real event, and nothing
    // before it.
    scene.b.send_event("news", json!("two")).await;
    scene.b.send_event("_secret", json!("two")).await;
    scene.b.send_event("live-news", json!("three")).await;
    assert_eq!(
        next_message(&mut scene.news).await,
        (Some("news:2".into()), json!("two")),
        "the channel is not stalled, and not reset"
    );
    assert_eq!(
        next_message(&mut scene.secret).await,
        (Some("_secret:2".into()), json!("two")),
        "nothing forged reached the private stream"
    );
    assert_eq!(
        next_message(&mut scene.live).await.1,
        json!("three"),
        "the replayed live event was not shown again"
    );
    let metrics = scene.a.events.metrics();
    assert_eq!(metrics.resets, 0, "{metrics:?}");
    scene.stop().await;
}

/// Even a notice sealed with the deployment's key only says where to look:
/// a commit notice for ids storage does not hold moves nothing.
async fn a_sealed_commit_notice_is_only_a_hint() {
    let mut scene = scene().await;
    let notice = json!({
        "o": 1,
        "t": now_ms(),
        "n": 0,
        "commit": [{"c": "news", "f": 2, "l": 1_000_000}, {"c": "_secret", "f": 1_000, "l": 1_000}],
    });
    notify(&scene.attacker, &scene.channel, &sealed(BUS_KEY, &notice)).await;
    scene
        .a
        .wait_for_metrics(
            "A never heard the notice",
            Duration::from_secs(10),
            |metrics| metrics.bus_received >= 4,
        )
        .await;
    for n in 2..=3 {
        scene.b.send_event("news", json!(n)).await;
        assert_eq!(
            next_message(&mut scene.news).await,
            (Some(format!("news:{n}")), json!(n))
        );
    }
    scene.b.send_event("_secret", json!("two")).await;
    assert_eq!(
        next_message(&mut scene.secret).await,
        (Some("_secret:2".into()), json!("two"))
    );
    assert_eq!(scene.a.events.metrics().bus_refused, 0);
    scene.stop().await;
}
