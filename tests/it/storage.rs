//! The event log: gap-free ids under concurrency, snapshots, durability
//! across restarts, migrations next to the application's own.

use std::collections::BTreeSet;

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{App, Setup, TestDatabase, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_both_backends => [
            concurrent_publishers_on_two_instances_get_gap_free_unique_ids,
            snapshot_returns_history_and_the_vector_to_listen_from,
            events_survive_a_restart_under_power_durability,
            migrations_coexist_with_the_applications_migrator,
            an_application_pool_can_hold_the_event_log,
        ],
        on_every_path => [events_from_another_instance_reach_live_streams_through_the_gap_check],
        needs_nothing => [
            retention_trims_events_older_than_retention_secs,
            a_one_connection_sqlite_pool_serves_sends_and_replays,
            a_sqlite_batch_that_fails_part_way_stores_only_its_good_events,
            shutdown_waits_for_no_connection_the_writer_keeps,
        ],
    ]
}

async fn concurrent_publishers_on_two_instances_get_gap_free_unique_ids(backend: Setup) {
    let first = spawn_app(App::on(backend)).await;
    let second = spawn_app(App::sharing_database(first.database_url())).await;
    let mut tasks = Vec::new();
    for publisher in 0..8 {
        let events = if publisher % 2 == 0 {
            first.events.clone()
        } else {
            second.events.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..50 {
                let id = events
                    .send_event("hot", "message", &json!([publisher, n]))
                    .await
                    .expect("send");
                ids.push(id.expect("persisted").seq());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let ids = task.await.expect("publisher");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one publisher's ids increase"
        );
        all.extend(ids);
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "no id was handed out twice");
    assert_eq!(unique, (1..=400).collect::<BTreeSet<u64>>(), "no gaps");
    second.stop().await;
    first.stop().await;
}

async fn events_from_another_instance_reach_live_streams_through_the_gap_check(backend: Setup) {
    let first = spawn_app(App::on(backend)).await;
    let second = spawn_app(App::sharing_database(first.database_url())).await;
    let mut stream = first.stream("/events/shared", &[]).await;
    stream.next().await.expect("open");
    second
        .send_event("shared", json!("from the second instance"))
        .await;
    first
        .send_event("shared", json!("from the first instance"))
        .await;
    let got = [stream.next_event().await, stream.next_event().await];
    assert_eq!(
        got.iter()
            .map(|f| f.id.clone().expect("id"))
            .collect::<Vec<_>>(),
        ["shared:1", "shared:2"]
    );
    assert_eq!(got[0].json(), json!("from the second instance"));
    second.stop().await;
    first.stop().await;
}

async fn snapshot_returns_history_and_the_vector_to_listen_from(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    for n in 1..=3 {
        app.send_event("a", json!(n)).await;
    }
    app.send_event("b", json!("b1")).await;
    let (events, ids) = app
        .events
        .snapshot(&["a", "b", "empty"], 2)
        .await
        .expect("snapshot");
    let seen: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.contains(&"a:2".into())
            && seen.contains(&"a:3".into())
            && seen.contains(&"b:1".into()),
        "{seen:?}"
    );
    assert_eq!(ids.to_string(), "a:3,b:1,empty:0");
    assert_eq!(
        events
            .iter()
            .find(|e| e.id.to_string() == "b:1")
            .map(|e| e.data.as_str()),
        Some("\"b1\"")
    );
    assert_eq!(
        app.events
            .current_id(&["a", "empty"])
            .await
            .expect("current")
            .to_string(),
        "a:3,empty:0"
    );
    // Listening from the snapshot's vector yields exactly what follows it.
    let mut stream = app
        .stream(
            "/events/?channel=a&channel=b&channel=empty",
            &[("Last-Event-ID", &ids.to_string())],
        )
        .await;
    stream.next().await.expect("open");
    app.send_event("b", json!("b2")).await;
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some("a:3,b:2,empty:0")
    );
    app.stop().await;
}

async fn events_survive_a_restart_under_power_durability(backend: Setup) {
    let app = spawn_app(App::on(backend).with("eventstream.durability", "power")).await;
    for n in 1..=5 {
        app.send_event("d", json!(n)).await;
    }
    let database = app.stop_keep_database().await;
    let restarted =
        spawn_app(App::on_database(database).with("eventstream.durability", "power")).await;
    let mut stream = restarted
        .stream("/events/d", &[("Last-Event-ID", "d:0")])
        .await;
    stream.next().await.expect("open");
    for n in 1..=5 {
        let event = stream.next_event().await;
        assert_eq!(
            (event.id.clone(), event.json()),
            (Some(format!("d:{n}")), json!(n))
        );
    }
    assert_eq!(
        restarted.send_event("d", json!(6)).await,
        "d:6",
        "the counter continues"
    );
    restarted.stop().await;
}

async fn migrations_coexist_with_the_applications_migrator(backend: Setup) {
    use rocket_db_pools::sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;

    let app = spawn_app(App::on(backend)).await;
    let database = app.stop_keep_database().await;
    let app_migrator = Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            20260101000000,
            Cow::Borrowed("app table"),
            MigrationType::Simple,
            Cow::Borrowed("CREATE TABLE app_messages (id BIGINT PRIMARY KEY, text TEXT NOT NULL)"),
        )]),
        ignore_missing: true,
        locking: true,
    };
    match backend {
        Setup::Sqlite | Setup::Pushpin => {
            let pool = rocket_db_pools::sqlx::SqlitePool::connect(&database.url)
                .await
                .expect("connect");
            app_migrator
                .run(&pool)
                .await
                .expect("the app's migrator ignores the library's versions");
            pool.close().await;
        }
        Setup::Postgres => {
            let pool = rocket_db_pools::sqlx::PgPool::connect(&database.url)
                .await
                .expect("connect");
            app_migrator
                .run(&pool)
                .await
                .expect("the app's migrator ignores the library's versions");
            pool.close().await;
        }
    }
    // And the library still starts on the database the app migrated.
    let restarted = spawn_app(App::on_database(database)).await;
    assert_eq!(restarted.send_event("m", json!(1)).await, "m:1");
    restarted.stop().await;
}

async fn an_application_pool_can_hold_the_event_log(backend: Setup) {
    let database = TestDatabase::create(backend).await;
    let stage = match backend {
        Setup::Sqlite | Setup::Pushpin => eventstream_rocket::Stage::new().pool(
            rocket_db_pools::sqlx::SqlitePool::connect(&format!("{}?mode=rwc", database.url))
                .await
                .expect("pool"),
        ),
        Setup::Postgres => eventstream_rocket::Stage::new().pool(
            rocket_db_pools::sqlx::PgPool::connect(&database.url)
                .await
                .expect("pool"),
        ),
    };
    // The configured URL points elsewhere: the given pool must win.
    let app = spawn_app(
        App::on_database(database)
            .stage(stage)
            .with("databases.eventstream.url", "sqlite::memory:"),
    )
    .await;
    assert_eq!(app.send_event("p", json!(1)).await, "p:1");
    let mut stream = app.stream("/events/p", &[("Last-Event-ID", "p:0")]).await;
    stream.next().await.expect("open");
    assert_eq!(stream.next_event().await.id.as_deref(), Some("p:1"));
    app.stop().await;
}

async fn retention_trims_events_older_than_retention_secs() {
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with("eventstream.retention_secs", 1)
            .with("eventstream.trim_interval_secs", 1),
    )
    .await;
    for n in 1..=3 {
        app.send_event("old", json!(n)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app
        .events
        .snapshot(&["old"], 10)
        .await
        .expect("snapshot")
        .0
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "events older than 1 s were not trimmed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The counter survives trimming; the old position is now a reset.
    assert_eq!(app.send_event("old", json!(4)).await, "old:4");
    let mut stream = app
        .stream("/events/old", &[("Last-Event-ID", "old:0")])
        .await;
    stream.next().await.expect("open");
    let reset = stream.next_event().await;
    assert_eq!(
        (reset.event(), reset.id.as_deref()),
        ("stream-reset", Some("old:4"))
    );
    app.stop().await;
}

/// The writer keeps a SQLite connection between batches only when the pool
/// can spare one: with a single connection, replays and sends still take
/// turns on it.
async fn a_one_connection_sqlite_pool_serves_sends_and_replays() {
    let app =
        spawn_app(App::on(Setup::Sqlite).with("databases.eventstream.max_connections", 1)).await;
    for n in 0..3 {
        app.send_event("pool", json!(n)).await;
    }
    let mut stream = app
        .stream("/events/?channel=pool", &[("Last-Event-ID", "pool:0")])
        .await;
    assert_eq!(stream.next_event().await.event(), "stream-open");
    for n in 0..3 {
        assert_eq!(stream.next_event().await.data, n.to_string());
    }
    app.send_event("pool", json!(3)).await;
    let mut again = app
        .stream("/events/?channel=pool", &[("Last-Event-ID", "pool:3")])
        .await;
    assert_eq!(again.next_event().await.event(), "stream-open");
    assert_eq!(stream.next_event().await.data, "3");
    assert_eq!(again.next_event().await.data, "3");
    app.stop().await;
}

/// On SQLite a batch is one multi-statement query: when a statement in it
/// fails (here a trigger refuses one event), the transaction it left open
/// must not commit later nor hold the write lock, and the batch's other
/// events are stored one by one. Every good send gets a gap-free id, the
/// refused one an error, and the streams get exactly the stored events.
async fn a_sqlite_batch_that_fails_part_way_stores_only_its_good_events() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let pool = sqlx::SqlitePool::connect(app.database_url())
        .await
        .expect("the event log");
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON eventstream_events \
         WHEN NEW.data LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .execute(&pool)
    .await
    .expect("a trigger");
    pool.close().await;
    let mut stream = app.stream("/events/?channel=b", &[]).await;
    assert_eq!(stream.next_event().await.event(), "stream-open");
    let sends = (0..20).map(|n| {
        let events = app.events.clone();
        tokio::spawn(async move {
            let data = if n == 7 { json!("poison") } else { json!(n) };
            events.send_event("b", "message", &data).await
        })
    });
    let mut ids = BTreeSet::new();
    for (n, send) in sends.collect::<Vec<_>>().into_iter().enumerate() {
        let sent = send.await.expect("the send task");
        if n == 7 {
            let error = sent.expect_err("the refused event");
            assert!(error.to_string().contains("poisoned"), "{error}");
        } else {
            let id = sent.expect("a good event").expect("persisted");
            ids.insert(id.to_string());
        }
    }
    let expected: BTreeSet<String> = (1..=19).map(|n| format!("b:{n}")).collect();
    assert_eq!(ids, expected, "19 gap-free ids");
    let mut received = Vec::new();
    for _ in 0..19 {
        let frame = stream.next_event().await;
        assert_ne!(frame.data, "\"poison\"");
        received.push(frame.id.expect("an id"));
    }
    let in_order: Vec<String> = (1..=19).map(|n| format!("b:{n}")).collect();
    assert_eq!(received, in_order);
    assert_eq!(app.send_event("b", json!("after")).await, "b:20");
    app.stop().await;
}

/// Rocket's shutdown closes the database pool, which waits for every
/// connection to come back: the writer must let go of the SQLite
/// connection it keeps between batches, or shutdown hangs.
async fn shutdown_waits_for_no_connection_the_writer_keeps() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    app.send_event("kept", json!(1)).await;
    app.stop_within(std::time::Duration::from_secs(5)).await;
}
