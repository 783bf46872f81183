//! `Events::begin`: events sent inside the application's own transaction
//! commit with its rows or not at all, reach subscribers only after the
//! commit, in id order, once; a long transaction holds only what it locked.

use std::time::Duration;

use eventstream_rocket::Error;
use libtest_mimic::Trial;
use serde_json::json;
use sqlx::Row;

use crate::helpers::{App, Instance, LogMark, Setup, TestApp, TestDatabase, spawn_app};
use crate::on_backend;

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_both_backends => [
            a_transaction_commits_its_rows_and_events_together,
            a_rolled_back_transaction_delivers_nothing_and_its_ids_are_reused,
            sending_outside_an_open_transaction_fails_instead_of_deadlocking,
            a_long_transaction_holds_only_what_it_locked,
            a_commit_whose_caller_stops_waiting_still_fans_out,
            a_crash_between_commit_and_fan_out_delivers_every_event_once,
        ],
        needs_postgres => [a_send_waiting_for_a_held_channel_holds_up_no_other_channel],
    ]
}

const NOTES: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)";

/// Creates the application's `notes` table in the event log's database.
async fn create_notes(app: &TestApp, backend: Setup) {
    on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        sqlx::query(NOTES).execute(&mut **tx).await.expect("notes");
        tx.commit().await.expect("commit");
    })
}

/// The `notes` rows, in id order.
async fn notes(app: &TestApp, backend: Setup) -> Vec<String> {
    macro_rules! read {
        ($pool:ty) => {{
            let pool = <$pool>::connect(app.database_url())
                .await
                .expect("database");
            let rows = sqlx::query("SELECT text FROM notes ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("notes");
            pool.close().await;
            rows.iter()
                .map(|row| row.get::<String, _>("text"))
                .collect()
        }};
    }
    match backend {
        Setup::Postgres => read!(sqlx::PgPool),
        _ => read!(sqlx::SqlitePool),
    }
}

async fn a_transaction_commits_its_rows_and_events_together(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    create_notes(&app, backend).await;
    app.send_event("t", json!("before")).await;
    let mut stream = app.stream("/events/t", &[("Last-Event-ID", "t:1")]).await;
    stream.next().await.expect("open");

    let ids = on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        assert_eq!(tx.position("t").await.expect("position"), 1);
        sqlx::query("INSERT INTO notes (id, text) VALUES ($1, $2)")
            .bind(1_i64)
            .bind("first")
            .execute(&mut **tx)
            .await
            .expect("insert");
        let first = tx.send_event("t", "note", &json!({"n": 1})).await.expect("send");
        let live = tx.send_event("live-t", "note", &json!("live")).await.expect("live");
        let second = tx.send_event("t", "note", &json!({"n": 2})).await.expect("send");
        assert_eq!(first.map(|id| id.to_string()).as_deref(), Some("t:2"));
        assert_eq!(second.map(|id| id.to_string()).as_deref(), Some("t:3"));
        assert_eq!(live, None, "a non-persistent channel has no id");
        // The position includes the transaction's own sends.
        assert_eq!(tx.position("t").await.expect("position"), 3);
        tx.commit().await.expect("commit")
    });
    let ids: Vec<Option<String>> = ids
        .iter()
        .map(|id| id.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(ids, [Some("t:2".to_owned()), None, Some("t:3".to_owned())]);

    for (expected_id, n) in [("t:2", 1), ("t:3", 2)] {
        let frame = stream.next_event().await;
        assert_eq!(frame.id.as_deref(), Some(expected_id));
        assert_eq!(frame.event(), "note");
        assert_eq!(frame.json(), json!({ "n": n }));
    }
    assert_eq!(notes(&app, backend).await, ["first"]);
    // The next send continues the same counter.
    assert_eq!(app.send_event("t", json!("after")).await, "t:4");
    assert_eq!(stream.next_event().await.id.as_deref(), Some("t:4"));
    app.stop().await;
}

async fn a_rolled_back_transaction_delivers_nothing_and_its_ids_are_reused(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    create_notes(&app, backend).await;
    let mut stream = app.stream("/events/t", &[]).await;
    stream.next().await.expect("open");
    let mut live = app.stream("/events/live-t", &[]).await;
    live.next().await.expect("open");

    on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        sqlx::query("INSERT INTO notes (id, text) VALUES (1, 'rolled back')")
            .execute(&mut **tx)
            .await
            .expect("insert");
        tx.send_event("t", "note", &json!("never")).await.expect("send");
        tx.send_event("live-t", "note", &json!("never")).await.expect("send");
        // Dropped: rolled back.
    });
    on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        tx.send_event("t", "note", &json!("never either")).await.expect("send");
        // An error between the send and the commit ends it the same way.
        let failed = sqlx::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut **tx)
            .await;
        assert!(failed.is_err());
        drop(tx);
    });

    // What arrives first is what was sent after the rollbacks, under the
    // id the rolled-back events had been given.
    assert_eq!(app.send_event("t", json!("kept")).await, "t:1");
    let frame = stream.next_event().await;
    assert_eq!(
        (frame.id.as_deref(), frame.json()),
        (Some("t:1"), json!("kept"))
    );
    app.events
        .send_event("live-t", "note", &json!("live kept"))
        .await
        .expect("live send");
    assert_eq!(live.next_event().await.json(), json!("live kept"));
    assert!(notes(&app, backend).await.is_empty());
    app.stop().await;
}

async fn sending_outside_an_open_transaction_fails_instead_of_deadlocking(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        tx.send_event("t", "note", &json!(1)).await.expect("send");
        let outside = tokio::time::timeout(
            Duration::from_secs(10),
            app.events.send_event("t", "note", &json!(2)),
        )
        .await
        .expect("an answer, not a wait for our own transaction");
        assert!(matches!(outside, Err(Error::TransactionOpen)), "{outside:?}");
        let second = tokio::time::timeout(Duration::from_secs(10), app.events.begin::<Db>())
            .await
            .expect("an answer, not a wait for our own transaction");
        assert!(matches!(second, Err(Error::TransactionOpen)), "{second:?}");
        // A non-persistent channel waits for nothing: allowed.
        app.events
            .send_event("live-t", "note", &json!(3))
            .await
            .expect("live send");
        tx.commit().await.expect("commit");
    });
    // Committed: this task may send again.
    assert_eq!(app.send_event("t", json!(4)).await, "t:2");
    // The other backend's transaction type is refused with its name.
    let wrong = match backend {
        Setup::Postgres => app.events.begin::<sqlx::Sqlite>().await.err(),
        _ => app.events.begin::<sqlx::Postgres>().await.err(),
    };
    match wrong {
        Some(Error::WrongBackend { event_log }) => {
            assert_eq!(
                event_log,
                if backend == Setup::Postgres {
                    "postgres"
                } else {
                    "sqlite"
                }
            );
        }
        other => panic!("expected WrongBackend, got {other:?}"),
    }
    app.stop().await;
}

/// A transaction open for 2 s (6 s on SQLite): on PostgreSQL sends to other channels
/// complete meanwhile; on SQLite (one write lock) they wait and complete
/// after it. None fails, none is stored or delivered twice.
async fn a_long_transaction_holds_only_what_it_locked(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let logged = LogMark::now();
    let mut other = app.stream("/events/other", &[]).await;
    other.next().await.expect("open");
    let sends = 20;

    on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        tx.send_event("held", "note", &json!("held")).await.expect("send");
        let events = app.events.clone();
        let mut senders = tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..sends {
                ids.push(events.send_event("other", "n", &json!(n)).await);
            }
            ids
        });
        // The application's slow work inside the transaction: on SQLite
        // longer than its busy timeout (5 s), after which a writer that
        // ran into the write lock instead of waiting its turn would fail.
        let hold = match backend {
            Setup::Postgres => Duration::from_secs(2),
            _ => Duration::from_secs(6),
        };
        let work = tokio::time::sleep(hold);
        tokio::pin!(work);
        // Whichever ends first: the application's work, or the sends.
        let finished_during = tokio::select! {
            _ = &mut work => None,
            ids = &mut senders => Some(ids.expect("senders")),
        };
        match backend {
            Setup::Postgres => assert!(
                finished_during.is_some(),
                "sends to other channels complete while the transaction is open"
            ),
            _ => {
                assert!(finished_during.is_none(), "on SQLite sends wait for the transaction");
                work.await;
            }
        }
        tx.commit().await.expect("commit");
        let ids = match finished_during {
            Some(ids) => ids,
            None => senders.await.expect("senders"),
        };
        let ids: Vec<String> = ids
            .into_iter()
            .map(|id| id.expect("no send fails").expect("persistent").to_string())
            .collect();
        let expected: Vec<String> = (1..=sends).map(|n| format!("other:{n}")).collect();
        assert_eq!(ids, expected);
    });
    for n in 1..=sends {
        assert_eq!(other.next_event().await.id, Some(format!("other:{n}")));
    }
    // Nothing more: the next event is the next id.
    assert_eq!(
        app.send_event("other", json!("last")).await,
        format!("other:{}", sends + 1)
    );
    assert_eq!(
        other.next_event().await.id,
        Some(format!("other:{}", sends + 1))
    );
    let failures: Vec<String> = logged
        .lines_since()
        .into_iter()
        .filter(|line| line.contains("one by one") || line.contains("storing an event"))
        .collect();
    assert!(failures.is_empty(), "no batch failed: {failures:?}");
    app.stop().await;
}

/// PostgreSQL: sends from other tasks to a channel an open transaction
/// holds wait for the transaction's end, and hold up no other channel
/// meanwhile (the writer keeps them aside instead of blocking on the
/// counter row). After a commit they follow the transaction's event, in
/// order; after a rollback the first takes the id the rolled-back event
/// had. One event per batch: more sends wait than one batch lets go.
async fn a_send_waiting_for_a_held_channel_holds_up_no_other_channel() {
    let app = spawn_app(App::on(Setup::Postgres).with("eventstream.commit_batch", 1)).await;
    let mut held = app.stream("/events/held", &[]).await;
    held.next().await.expect("open");
    let mut other = app.stream("/events/other", &[]).await;
    other.next().await.expect("open");
    let mut next_other = 1;

    for commit in [true, false] {
        let mut tx = app.events.begin::<sqlx::Postgres>().await.expect("begin");
        tx.send_event("held", "note", &json!("in the transaction"))
            .await
            .expect("send");
        let mut waiting = Vec::new();
        for n in 1..=2 {
            let events = app.events.clone();
            waiting.push(tokio::spawn(async move {
                events.send_event("held", "note", &json!(n)).await
            }));
            app.wait_for_metrics(
                "the send waits for the transaction",
                Duration::from_secs(10),
                |metrics| metrics.sends_held_back == n,
            )
            .await;
        }
        // Other channels go on while it waits (sent from another task:
        // this one holds the transaction).
        for _ in 0..5 {
            let events = app.events.clone();
            let send =
                tokio::spawn(
                    async move { events.send_event("other", "n", &json!(next_other)).await },
                );
            let sent = tokio::time::timeout(Duration::from_secs(5), send)
                .await
                .expect("not held up by the transaction")
                .expect("the sending task")
                .expect("send");
            assert_eq!(
                sent.map(|id| id.to_string()),
                Some(format!("other:{next_other}"))
            );
            next_other += 1;
        }
        assert!(
            waiting.iter().all(|send| !send.is_finished()),
            "the held channel's sends waited"
        );
        let first = if commit {
            tx.commit().await.expect("commit");
            let frame = held.next_event().await;
            assert_eq!(
                (frame.id.as_deref(), frame.json()),
                (Some("held:1"), json!("in the transaction"))
            );
            2
        } else {
            drop(tx);
            4
        };
        for (n, send) in (1..=2).zip(waiting) {
            let id = send.await.expect("the sending task").expect("send");
            let expected = format!("held:{}", first + n - 1);
            assert_eq!(id.map(|id| id.to_string()), Some(expected.clone()));
            let frame = held.next_event().await;
            assert_eq!(
                (frame.id.as_deref(), frame.json()),
                (Some(expected.as_str()), json!(n))
            );
        }
    }
    for n in 1..next_other {
        assert_eq!(other.next_event().await.id, Some(format!("other:{n}")));
    }
    assert_eq!(app.events.metrics().sends_held_back, 0);
    app.stop().await;
}

async fn a_commit_whose_caller_stops_waiting_still_fans_out(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut stream = app.stream("/events/t", &[]).await;
    stream.next().await.expect("open");
    on_backend!(backend, Db => {
        let mut tx = app.events.begin::<Db>().await.expect("begin");
        tx.send_event("t", "note", &json!("kept")).await.expect("send");
        // Polled once, then dropped: the commit is already on its way.
        let mut commit = Box::pin(tx.commit());
        let first = futures_util::poll!(&mut commit);
        assert!(first.is_pending(), "the commit did not finish within its first poll: {first:?}");
        drop(commit);
    });
    let frame = stream.next_event().await;
    assert_eq!(
        (frame.id.as_deref(), frame.json()),
        (Some("t:1"), json!("kept"))
    );
    app.stop().await;
}

/// The process dies after COMMIT and before the fan-out (a fault point of
/// the `internals` feature). Subscribers of another instance (PostgreSQL,
/// with the bus) get the event; after a restart, a client that resumes
/// gets it once, and the next send takes the next id.
async fn a_crash_between_commit_and_fan_out_delivers_every_event_once(backend: Setup) {
    if !cfg!(feature = "internals") {
        panic!("this test needs the `internals` feature (scripts/test.sh enables it)");
    }
    let database = TestDatabase::create(backend).await;
    let settings = match backend {
        Setup::Postgres => vec![
            ("eventstream.broadcast", json!("postgres")),
            ("eventstream.broadcast_poll_secs", json!(1)),
        ],
        _ => vec![],
    };
    let watcher = match backend {
        Setup::Postgres => Some(
            spawn_app(
                App::sharing_database(&database.url)
                    .with("eventstream.broadcast", "postgres")
                    .with("eventstream.broadcast_poll_secs", 1),
            )
            .await,
        ),
        _ => None,
    };
    let mut watching = match &watcher {
        Some(watcher) => {
            let mut stream = watcher.stream("/events/t", &[]).await;
            stream.next().await.expect("open");
            Some(stream)
        }
        None => None,
    };

    let status = Instance::commit_then_crash(&database.url, &settings, "t").await;
    assert!(
        !status.success(),
        "the instance died at the fault point: {status:?}"
    );

    if let Some(stream) = &mut watching {
        // Another instance's subscriber gets it (within the poll bound).
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.next_event())
            .await
            .expect("delivered within the bus's poll bound");
        assert_eq!(
            (frame.id.as_deref(), frame.json()),
            (Some("t:1"), json!("crashed"))
        );
    }
    let restarted = spawn_app(App::sharing_database(&database.url)).await;
    let mut resumed = restarted
        .stream("/events/t", &[("Last-Event-ID", "t:0")])
        .await;
    resumed.next().await.expect("open");
    let frame = resumed.next_event().await;
    assert_eq!(
        (frame.id.as_deref(), frame.json()),
        (Some("t:1"), json!("crashed"))
    );
    assert_eq!(restarted.send_event("t", json!("next")).await, "t:2");
    assert_eq!(resumed.next_event().await.id.as_deref(), Some("t:2"));
    if let Some(stream) = &mut watching {
        assert_eq!(stream.next_event().await.id.as_deref(), Some("t:2"));
    }
    restarted.stop().await;
    if let Some(watcher) = watcher {
        watcher.stop().await;
    }
    database.remove().await;
}
