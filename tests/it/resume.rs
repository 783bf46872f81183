//! Resuming: Last-Event-ID and lastEventId, replay then live with no gap
//! and no duplicate, resets for positions that cannot be served.

use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{App, Setup, Sse, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_every_path => [
            resume_from_last_event_id_replays_in_order_then_goes_live,
            header_wins_and_the_last_non_empty_query_value_counts,
            one_id_vector_resumes_every_channel,
            a_future_position_is_reset_to_the_current_id,
            trimmed_positions_reset_and_retained_ones_replay,
            long_backlogs_replay_in_pages_without_loss,
            hand_over_from_replay_to_live_has_no_gap_or_duplicate,
        ],
        needs_nothing => [
            malformed_ids_are_bad_requests_and_error_is_http_400,
            a_slow_subscriber_catches_up_from_storage,
        ],
    ]
}

/// Reads `count` events and returns their ids.
async fn ids(stream: &mut Sse, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(stream.next_event().await.id.expect("an id"));
    }
    ids
}

fn expected(channel: &str, range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| format!("{channel}:{n}")).collect()
}

async fn resume_from_last_event_id_replays_in_order_then_goes_live(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    for n in 1..=5 {
        app.send_event("ch", json!({ "n": n })).await;
    }
    let mut stream = app.stream("/events/ch", &[("Last-Event-ID", "ch:2")]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    let replayed: Vec<_> = {
        let mut frames = Vec::new();
        for _ in 0..3 {
            frames.push(stream.next_event().await);
        }
        frames
    };
    assert_eq!(
        replayed
            .iter()
            .map(|f| f.id.clone().expect("id"))
            .collect::<Vec<_>>(),
        expected("ch", 3..=5)
    );
    assert_eq!(replayed[0].json(), json!({"n": 3}));
    app.send_event("ch", json!({ "n": 6 })).await;
    assert_eq!(ids(&mut stream, 1).await, expected("ch", 6..=6));
    app.stop().await;
}

async fn header_wins_and_the_last_non_empty_query_value_counts(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    for n in 1..=4 {
        app.send_event("q", json!(n)).await;
    }
    let mut by_query = app
        .stream(
            "/events/q?lastEventId=q:1&lastEventId=q:2&lastEventId=",
            &[],
        )
        .await;
    by_query.next().await.expect("open");
    assert_eq!(ids(&mut by_query, 2).await, expected("q", 3..=4));
    let mut by_header = app
        .stream("/events/q?lastEventId=q:1", &[("Last-Event-ID", "q:3")])
        .await;
    by_header.next().await.expect("open");
    assert_eq!(ids(&mut by_header, 1).await, expected("q", 4..=4));
    let mut empty_header = app
        .stream("/events/q?lastEventId=q:3", &[("Last-Event-ID", "")])
        .await;
    empty_header.next().await.expect("open");
    assert_eq!(ids(&mut empty_header, 1).await, expected("q", 4..=4));
    app.stop().await;
}

async fn one_id_vector_resumes_every_channel(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    for n in 1..=3 {
        app.send_event("a", json!(n)).await;
        app.send_event("b", json!(n)).await;
    }
    // The order below is the backlog's: through Pushpin, an event still on
    // its way to the proxy would come live, after the other channel's.
    app.wait_until_the_proxy_has(6).await;
    // `other:9` names a channel not requested: ignored.
    let mut stream = app
        .stream(
            "/events/?channel=a&channel=b",
            &[("Last-Event-ID", "b:1,a:2,other:9")],
        )
        .await;
    stream.next().await.expect("open");
    let got = ids(&mut stream, 3).await;
    // Channel by channel, each in order, with the full vector on every event.
    assert_eq!(got, ["a:3,b:1", "a:3,b:2", "a:3,b:3"]);
    app.send_event("a", json!(4)).await;
    assert_eq!(ids(&mut stream, 1).await, ["a:4,b:3"]);
    app.stop().await;
}

async fn a_future_position_is_reset_to_the_current_id(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    app.send_event("f", json!(1)).await;
    app.send_event("g", json!(1)).await;
    let mut stream = app
        .stream(
            "/events/?channel=f&channel=g",
            &[("Last-Event-ID", "f:7,g:1")],
        )
        .await;
    stream.next().await.expect("open");
    let reset = stream.next_event().await;
    assert_eq!(reset.event(), "stream-reset");
    assert_eq!(reset.id.as_deref(), Some("f:1,g:1"));
    assert_eq!(reset.json(), json!({"channels": ["f"]}));
    app.send_event("f", json!(2)).await;
    assert_eq!(ids(&mut stream, 1).await, ["f:2,g:1"]);
    assert_eq!(app.events.metrics().resets, 1);
    app.stop().await;
}

async fn trimmed_positions_reset_and_retained_ones_replay(backend: Setup) {
    let app = spawn_app(
        App::on(backend)
            .with("eventstream.retention_count", 3)
            .with("eventstream.trim_interval_secs", 1),
    )
    .await;
    // Before anything is trimmed, 0 is a valid position.
    app.send_event("t", json!(1)).await;
    let mut from_zero = app.stream("/events/t", &[("Last-Event-ID", "t:0")]).await;
    from_zero.next().await.expect("open");
    assert_eq!(ids(&mut from_zero, 1).await, expected("t", 1..=1));
    for n in 2..=10 {
        app.send_event("t", json!(n)).await;
    }
    // Wait for the retention task to keep only the newest 3.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (events, _) = app.events.snapshot(&["t"], 100).await.expect("snapshot");
        if events.len() == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run: {} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (position, outcome) in [
        ("t:0", None),
        ("t:6", None),
        ("t:7", Some(8)),
        ("t:9", Some(10)),
        ("t:10", Some(11)),
    ] {
        let mut stream = app
            .stream("/events/t", &[("Last-Event-ID", position)])
            .await;
        stream.next().await.expect("open");
        match outcome {
            None => {
                let reset = stream.next_event().await;
                assert_eq!(reset.event(), "stream-reset", "{position}");
                assert_eq!(reset.id.as_deref(), Some("t:10"));
            }
            Some(first) if first <= 10 => {
                assert_eq!(
                    stream.next_event().await.id,
                    Some(format!("t:{first}")),
                    "{position}"
                );
            }
            Some(_) => {
                // Up to date: the next thing is a live event.
                app.send_event("t", json!(11)).await;
                assert_eq!(stream.next_event().await.id.as_deref(), Some("t:11"));
            }
        }
    }
    app.stop().await;
}

async fn malformed_ids_are_bad_requests_and_error_is_http_400() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    for bad in ["nonsense", "ch:abc", "ch:1:2", "ch:-1", "ch:1,ch:2"] {
        let mut stream = app.stream("/events/ch", &[("Last-Event-ID", bad)]).await;
        let frames = stream.until_end().await;
        assert_eq!(frames.len(), 1, "{bad}");
        assert_eq!(frames[0].event(), "stream-error", "{bad}");
        assert_eq!(frames[0].json()["condition"], "bad-request", "{bad}");
    }
    for request in [
        app.http
            .get(app.url("/events/ch"))
            .header("Last-Event-ID", "error"),
        app.http.get(app.url("/events/ch?lastEventId=error")),
    ] {
        let response = request.send().await.expect("response");
        assert_eq!(response.status(), 400);
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("Can't resume session after stream-error")
        );
    }
    app.stop().await;
}

async fn long_backlogs_replay_in_pages_without_loss(backend: Setup) {
    let app = spawn_app(App::on(backend).with("eventstream.replay_page", 100)).await;
    let sends: Vec<_> = (0..1050)
        .map(|n| {
            let events = app.events.clone();
            async move {
                events
                    .send_event("long", "message", &n)
                    .await
                    .expect("send")
            }
        })
        .collect();
    futures_util::future::join_all(sends).await;
    let mut stream = app
        .stream("/events/long", &[("Last-Event-ID", "long:0")])
        .await;
    stream.next().await.expect("open");
    assert_eq!(ids(&mut stream, 1050).await, expected("long", 1..=1050));
    app.stop().await;
}

async fn hand_over_from_replay_to_live_has_no_gap_or_duplicate(backend: Setup) {
    let app = spawn_app(App::on(backend).with("eventstream.replay_page", 50)).await;
    for n in 1..=200 {
        app.send_event("h", json!(n)).await;
    }
    // Publish continuously while streams connect mid-backlog.
    let publisher = {
        let events = app.events.clone();
        tokio::spawn(async move {
            for n in 201..=600 {
                events.send_event("h", "message", &n).await.expect("send");
            }
        })
    };
    let mut streams = Vec::new();
    for start in [0_u64, 100, 150, 199] {
        let mut stream = app
            .stream("/events/h", &[("Last-Event-ID", &format!("h:{start}"))])
            .await;
        stream.next().await.expect("open");
        streams.push((start, stream));
    }
    publisher.await.expect("publisher");
    for (start, mut stream) in streams {
        let got = ids(&mut stream, (600 - start) as usize).await;
        assert_eq!(got, expected("h", start + 1..=600), "from h:{start}");
    }
    app.stop().await;
}

async fn a_slow_subscriber_catches_up_from_storage() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.queue_capacity", 4)).await;
    let mut stream = app.stream("/events/slow", &[]).await;
    stream.next().await.expect("open");
    // Publish a burst far larger than the inbox before reading anything.
    let sends: Vec<_> = (1..=500)
        .map(|n| {
            let events = app.events.clone();
            async move {
                events
                    .send_event("slow", "message", &n)
                    .await
                    .expect("send")
            }
        })
        .collect();
    futures_util::future::join_all(sends).await;
    assert_eq!(ids(&mut stream, 500).await, expected("slow", 1..=500));
    assert!(
        app.events.metrics().replay_fallbacks >= 1,
        "{:?}",
        app.events.metrics()
    );
    app.send_event("slow", json!("live again")).await;
    assert_eq!(ids(&mut stream, 1).await, expected("slow", 501..=501));
    app.stop().await;
}
