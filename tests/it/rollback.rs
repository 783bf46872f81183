//! Storage that goes back in time (a restore from backup, a failover to an
//! asynchronous replica, power loss under SQLite `process`): ids a client
//! saw are given to other events. Nothing may be skipped silently: a live
//! stream gets `stream-reset` for the channel at the first id at or below
//! its position, and a client that reconnects ahead of storage gets it at
//! once.

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{
    App, BusSettings, Setup, TestApp, TestDatabase, on_bus, postgres_bus, run_sql, spawn_app,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_both_backends => [a_stream_catching_up_is_reset_when_the_log_was_rewritten_under_it],
        on_every_path => [
            a_live_stream_is_reset_when_the_log_goes_back_in_time,
            a_client_ahead_of_a_rolled_back_log_is_reset_on_reconnect,
        ],
        needs_postgres => [a_stream_on_the_postgres_bus_is_reset_when_the_log_goes_back_in_time],
        needs_redis => [
            a_stream_on_the_redis_bus_is_reset_when_the_log_goes_back_in_time,
        ],
    ]
}

/// Runs `statements` on the app's database, as a restore would change it.
async fn rewrite_storage(app: &TestApp, statements: &[&str]) {
    run_sql(app.database_url(), statements).await;
}

/// The log of channel `r` as it was after its 5th event.
async fn roll_back_to_five(app: &TestApp) {
    roll_back(app, "r", 5).await;
}

/// The log of `channel` as it was after its event `to`.
async fn roll_back(app: &TestApp, channel: &str, to: u64) {
    let statements = [
        format!("DELETE FROM eventstream_events WHERE channel = '{channel}' AND id > {to}"),
        format!(
            "UPDATE eventstream_channels SET last_id = {to}, \
             last_writer = (SELECT writer_id FROM eventstream_events WHERE channel = '{channel}' AND id = {to}), \
             last_append = (SELECT append_seq FROM eventstream_events WHERE channel = '{channel}' AND id = {to}) \
             WHERE name = '{channel}'"
        ),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    rewrite_storage(app, &statements).await;
}

/// A stream on channel `r` that has received events 1 to 10 live.
async fn live_at_ten(app: &TestApp) -> crate::helpers::Sse {
    let mut stream = app.stream("/events/r", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    for n in 1..=10 {
        app.send_event("r", json!(n)).await;
    }
    for n in 1..=10 {
        assert_eq!(stream.next_event().await.id, Some(format!("r:{n}")));
    }
    stream
}

async fn a_live_stream_is_reset_when_the_log_goes_back_in_time(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut stream = live_at_ten(&app).await;
    roll_back_to_five(&app).await;
    // The next event is given id 6 again: the stream must not skip it.
    assert_eq!(app.send_event("r", json!("after")).await, "r:6");
    let reset = stream.next_event().await;
    assert_eq!(reset.event(), "stream-reset", "{reset:?}");
    assert_eq!(reset.json(), json!({ "channels": ["r"] }));
    match reset.id.as_deref() {
        // Direct: the stream goes on from 5 and gets the new 6 itself.
        Some("r:5") => {
            let after = stream.next_event().await;
            assert_eq!(
                (after.id.as_deref(), after.json()),
                (Some("r:6"), json!("after"))
            );
        }
        // Through a proxy, which recovers from the app: it goes on from
        // the current id, 6.
        Some("r:6") => {}
        other => panic!("reset to {other:?}"),
    }
    // Pushpin drops an item whose id it published in the last minute (7
    // was, before the rollback); the next one shows it the gap, and it
    // fetches both from the app.
    assert_eq!(app.send_event("r", json!("next")).await, "r:7");
    assert_eq!(app.send_event("r", json!("and next")).await, "r:8");
    let wait = std::time::Duration::from_secs(30);
    for seq in [7, 8] {
        let event = loop {
            let frame = stream.next_within(wait).await.expect("the stream goes on");
            if !frame.comment && frame.event() != "keep-alive" {
                break frame;
            }
        };
        assert_eq!(event.id, Some(format!("r:{seq}")), "{event:?}");
    }
    assert!(app.events.metrics().resets >= 1);
    app.stop().await;
}

async fn a_client_ahead_of_a_rolled_back_log_is_reset_on_reconnect(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    for n in 1..=10 {
        app.send_event("r", json!(n)).await;
    }
    roll_back_to_five(&app).await;
    let mut stream = app.stream("/events/r", &[("Last-Event-ID", "r:10")]).await;
    let mut frames = Vec::new();
    while frames.len() < 2 {
        frames.push(stream.next_event().await);
    }
    let reset = frames
        .iter()
        .find(|frame| frame.event() == "stream-reset")
        .unwrap_or_else(|| panic!("a stream-reset: {frames:?}"));
    assert_eq!(reset.id.as_deref(), Some("r:5"));
    assert_eq!(reset.json(), json!({ "channels": ["r"] }));
    // From there on, the new history.
    assert_eq!(app.send_event("r", json!("after")).await, "r:6");
    let after = stream.next_event().await;
    assert_eq!(
        (after.id.as_deref(), after.json()),
        (Some("r:6"), json!("after"))
    );
    app.stop().await;
}

/// The log goes back to 5, and another process (its events reach this one's
/// streams only through storage) writes a new history 6..11. The stream,
/// at 10, sees this process's next event, 12, after a gap and catches up
/// from storage: the row at its position is not the one it delivered, so it
/// gets `stream-reset` instead of 11 and 12 with the new 6..10 skipped.
async fn a_stream_catching_up_is_reset_when_the_log_was_rewritten_under_it(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut stream = live_at_ten(&app).await;
    roll_back_to_five(&app).await;
    let other = spawn_app(App::sharing_database(app.database_url())).await;
    for n in 6..=11 {
        assert_eq!(
            other.send_event("r", json!(format!("new {n}"))).await,
            format!("r:{n}")
        );
    }
    assert_eq!(app.send_event("r", json!("twelve")).await, "r:12");
    let reset = stream.next_event().await;
    assert_eq!(reset.event(), "stream-reset", "{reset:?}");
    assert_eq!(reset.json(), json!({ "channels": ["r"] }));
    assert_eq!(reset.id.as_deref(), Some("r:12"));
    assert_eq!(app.send_event("r", json!("thirteen")).await, "r:13");
    assert_eq!(stream.next_event().await.id.as_deref(), Some("r:13"));
    other.stop().await;
    app.stop().await;
}

async fn a_stream_on_the_postgres_bus_is_reset_when_the_log_goes_back_in_time() {
    reset_on_a_bus(&postgres_bus()).await;
}

#[cfg(feature = "redis")]
async fn a_stream_on_the_redis_bus_is_reset_when_the_log_goes_back_in_time() {
    let mut server = crate::helpers::RedisServer::start().await;
    reset_on_a_bus(&crate::helpers::redis_bus(&server)).await;
    server.stop().await;
}

/// With a bus, the log goes back in time exactly as without one: a live
/// stream gets `stream-reset` and then the new history, and a client
/// ahead of the log gets it on reconnect. Twice over: once when the next
/// event comes from another instance (its notice announces ids the stream's
/// instance already published), once when it comes from the stream's own
/// instance after events of the other one.
async fn reset_on_a_bus(bus: &BusSettings) {
    let database = TestDatabase::create(Setup::Postgres).await;
    let a = spawn_app(on_bus(&database.url, bus)).await;
    let b = spawn_app(on_bus(&database.url, bus)).await;
    for (channel, then_from) in [("r", &b), ("s", &a)] {
        let mut stream = a.stream(&format!("/events/{channel}"), &[]).await;
        assert_eq!(stream.next_event().await.event(), "stream-open");
        for n in 1..=10 {
            b.send_event(channel, json!(n)).await;
        }
        for n in 1..=10 {
            assert_eq!(stream.next_event().await.id, Some(format!("{channel}:{n}")));
        }
        roll_back(&a, channel, 5).await;
        assert_eq!(
            then_from.send_event(channel, json!("after")).await,
            format!("{channel}:6")
        );
        let reset = stream.next_event().await;
        assert_eq!(reset.event(), "stream-reset", "{reset:?}");
        assert_eq!(reset.json(), json!({ "channels": [channel] }));
        // The stream goes on from 5 and gets the new 6, or from 6 (the
        // stream read storage again, which already holds it).
        if reset.id.as_deref() == Some(&format!("{channel}:5")) {
            let after = stream.next_event().await;
            assert_eq!(after.json(), json!("after"), "{after:?}");
        } else {
            assert_eq!(reset.id, Some(format!("{channel}:6")), "{reset:?}");
        }
        assert_eq!(
            then_from.send_event(channel, json!("next")).await,
            format!("{channel}:7")
        );
        let next = stream.next_event().await;
        assert_eq!(
            (next.id.clone(), next.json()),
            (Some(format!("{channel}:7")), json!("next"))
        );
        // A client that saw 10 reconnects: reset to the log as it is.
        let mut again = a
            .stream(
                &format!("/events/{channel}"),
                &[("Last-Event-ID", &format!("{channel}:10"))],
            )
            .await;
        let frames = [again.next_event().await, again.next_event().await];
        assert!(
            frames
                .iter()
                .any(|frame| frame.event() == "stream-reset"
                    && frame.id == Some(format!("{channel}:7"))),
            "{frames:?}"
        );
    }
    a.stop().await;
    b.stop().await;
    database.remove().await;
}
