//! The stream contract: headers, the opening frame, ids, data lines,
//! errors, keep-alives, shutdown.

use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{App, Setup, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_every_path => [
            stream_has_sse_headers_and_opens_with_stream_open,
            mount_serves_with_and_without_slash_and_by_path,
            live_event_carries_type_channel_id_and_json_data,
            multi_channel_ids_are_the_sorted_vector_of_all_channels,
            channel_names_are_percent_encoded_in_ids,
        ],
        needs_nothing => [
            data_lines_split_on_cr_lf_and_crlf,
            padding_comment_is_sent_first_when_enabled,
            bad_channel_requests_get_a_bad_request_stream_error,
            channels_for_request_hook_adds_channels,
            app_route_streams_the_channels_it_computed,
            send_rejects_bad_event_types_channels_and_sizes,
            keep_alive_follows_silence,
            streams_end_cleanly_on_shutdown,
            vanished_client_is_unregistered_by_the_next_keep_alive,
            non_persistent_channels_have_no_ids,
        ],
        current_thread => [overflowing_a_non_persistent_channel_resets_it_never_drops_silently],
    ]
}

async fn stream_has_sse_headers_and_opens_with_stream_open(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut stream = app.stream("/events/?channel=news", &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    let first = stream.next().await.expect("a frame");
    assert_eq!(first.event(), "stream-open");
    // The starting position, so a client that drops before any event resumes.
    assert_eq!(first.id.as_deref(), Some("news:0"));
    assert!(
        stream
            .raw
            .starts_with(b"id: news:0\nevent: stream-open\ndata:\n\n")
    );
    app.send_event("news", json!(1)).await;
    let mut two = app
        .stream("/events/?channel=news&channel=live-x", &[])
        .await;
    assert_eq!(
        two.next().await.expect("a frame").id.as_deref(),
        Some("news:1")
    );
    let mut unpersisted = app.stream("/events/live-x", &[]).await;
    assert_eq!(unpersisted.next().await.expect("a frame").id, None);
    app.stop().await;
}

async fn mount_serves_with_and_without_slash_and_by_path(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut plain = app.stream("/events?channel=news", &[]).await;
    let mut slash = app.stream("/events/?channel=news", &[]).await;
    let mut path = app.stream("/events/news", &[]).await;
    for stream in [&mut plain, &mut slash, &mut path] {
        assert_eq!(stream.status, 200);
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    app.send_event("news", json!({"n": 1})).await;
    for stream in [&mut plain, &mut slash, &mut path] {
        let event = stream.next_event().await;
        assert_eq!(event.id.as_deref(), Some("news:1"));
    }
    app.stop().await;
}

async fn live_event_carries_type_channel_id_and_json_data(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut stream = app.stream("/events/room-1", &[]).await;
    stream.next().await.expect("open");
    assert_eq!(
        app.send_event("room-1", json!({"text": "hi"})).await,
        "room-1:1"
    );
    let id = app
        .events
        .send_event("room-1", "chat.typing", &json!({"who": "bo"}))
        .await
        .expect("send");
    assert_eq!(id.expect("persisted").to_string(), "room-1:2");
    let first = stream.next_event().await;
    assert_eq!(
        (first.event(), first.id.as_deref()),
        ("message", Some("room-1:1"))
    );
    assert_eq!(first.json(), json!({"text": "hi"}));
    let second = stream.next_event().await;
    assert_eq!(
        (second.event(), second.id.as_deref()),
        ("chat.typing", Some("room-1:2"))
    );
    // Every event frame names its type explicitly.
    let text = String::from_utf8_lossy(&stream.raw);
    assert!(
        text.contains("id: room-1:1\nevent: message\ndata: {\"text\":\"hi\"}\n\n"),
        "{text}"
    );
    app.stop().await;
}

async fn multi_channel_ids_are_the_sorted_vector_of_all_channels(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    app.send_event("b", json!(0)).await;
    let mut stream = app
        .stream("/events/?channel=b&channel=a%20z&channel=b", &[])
        .await;
    stream.next().await.expect("open");
    app.send_event("a z", json!(1)).await;
    // Behind Pushpin, events of two channels published back to back may
    // be delivered in either order: the second goes once the proxy has the
    // first (as in resume's multi-channel test).
    app.wait_until_the_proxy_has(2).await;
    app.send_event("b", json!(2)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("a%20z:1,b:1"));
    assert_eq!(stream.next_event().await.id.as_deref(), Some("a%20z:1,b:2"));
    app.stop().await;
}

async fn channel_names_are_percent_encoded_in_ids(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let name = "a b,c:d%é/x";
    let mut stream = app
        .stream("/events/?channel=a%20b%2Cc%3Ad%25%C3%A9%2Fx", &[])
        .await;
    stream.next().await.expect("open");
    assert_eq!(
        app.send_event(name, json!(1)).await,
        "a%20b%2Cc%3Ad%25%C3%A9/x:1"
    );
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some("a%20b%2Cc%3Ad%25%C3%A9/x:1")
    );
    let mut by_path = app.stream("/events/caf%C3%A9", &[]).await;
    by_path.next().await.expect("open");
    app.send_event("café", json!(1)).await;
    assert_eq!(
        by_path.next_event().await.id.as_deref(),
        Some("caf%C3%A9:1")
    );
    app.stop().await;
}

async fn data_lines_split_on_cr_lf_and_crlf() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let mut stream = app.stream("/events/text", &[]).await;
    stream.next().await.expect("open");
    let options = eventstream_rocket::SendOptions::new().pre_encoded(true);
    app.events
        .send_event_with("text", "message", "one\rtwo\nthree\r\nfour", options)
        .await
        .expect("send");
    stream.next_event().await;
    let text = String::from_utf8_lossy(&stream.raw);
    assert!(
        text.contains("data: one\ndata: two\ndata: three\ndata: four\n\n"),
        "{text}"
    );
    app.stop().await;
}

async fn padding_comment_is_sent_first_when_enabled() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.padding", true)).await;
    let mut stream = app.stream("/events/x", &[]).await;
    let first = stream.next().await.expect("padding");
    assert!(first.comment);
    let mut expected = b":".to_vec();
    expected.extend(std::iter::repeat_n(b' ', 2048));
    expected.extend(b"\n\n");
    assert!(stream.raw.starts_with(&expected));
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.stop().await;
}

async fn bad_channel_requests_get_a_bad_request_stream_error() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.channel_limit", 3)).await;
    for (path, text) in [
        ("/events/", "No channels specified"),
        (
            "/events/?channel=a&channel=b&channel=c&channel=d",
            "Channel limit exceeded",
        ),
        ("/events/?channel=bad%0Aname", "control character"),
        (&format!("/events/?channel={}", "x".repeat(256)), "255"),
        ("/events/?feed=forbidden&channel=a", "no such feed"),
    ] {
        let mut stream = app.stream(path, &[]).await;
        assert_eq!(stream.status, 200, "{path}");
        let frames = stream.until_end().await;
        assert_eq!(
            frames.len(),
            1,
            "{path}: only the error, no stream-open: {frames:?}"
        );
        assert_eq!(frames[0].event(), "stream-error");
        assert_eq!(frames[0].id.as_deref(), Some("error"));
        let data = frames[0].json();
        assert_eq!(data["condition"], "bad-request", "{path}");
        assert!(
            data["text"].as_str().expect("text").contains(text),
            "{path}: {data}"
        );
    }
    app.stop().await;
}

async fn channels_for_request_hook_adds_channels() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let mut stream = app.stream("/events/?channel=a&feed=sports", &[]).await;
    stream.next().await.expect("open");
    app.send_event("feed-sports", json!(1)).await;
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some("a:0,feed-sports:1")
    );
    app.stop().await;
}

async fn app_route_streams_the_channels_it_computed() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let token = crate::helpers::token("ann", 60);
    let mut mine = app
        .stream(
            "/my-notifications",
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await;
    let mut anonymous = app.stream("/my-notifications", &[]).await;
    mine.next().await.expect("open");
    anonymous.next().await.expect("open");
    app.send_event("_user-ann", json!("for ann")).await;
    app.send_event("public-notices", json!("for all")).await;
    assert_eq!(mine.next_event().await.json(), json!("for ann"));
    assert_eq!(anonymous.next_event().await.json(), json!("for all"));
    app.stop().await;
}

async fn send_rejects_bad_event_types_channels_and_sizes() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.max_event_bytes", 100)).await;
    for bad in [
        "stream-open",
        "stream-reset",
        "stream-error",
        "keep-alive",
        "a\nb",
        "a\rb",
        "a\0b",
        "",
    ] {
        let error = app.events.send_event("c", bad, &1).await.expect_err(bad);
        assert!(
            matches!(error, eventstream_rocket::Error::InvalidEventType(_)),
            "{bad:?}: {error}"
        );
    }
    let error = app
        .events
        .send_event("bad\nchannel", "message", &1)
        .await
        .expect_err("channel");
    assert!(
        matches!(error, eventstream_rocket::Error::InvalidChannel(_)),
        "{error}"
    );
    let error = app
        .events
        .send_event("c", "message", &"x".repeat(200))
        .await
        .expect_err("size");
    assert!(
        matches!(
            error,
            eventstream_rocket::Error::EventTooLarge { max: 100, .. }
        ),
        "{error}"
    );
    // Nothing was stored by the refused sends.
    assert_eq!(
        app.events.current_id(&["c"]).await.expect("read").get("c"),
        Some(0)
    );
    app.stop().await;
}

async fn keep_alive_follows_silence() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.keepalive_secs", 1)).await;
    let mut stream = app.stream("/events/quiet", &[]).await;
    stream.next().await.expect("open");
    let started = std::time::Instant::now();
    let keep_alive = stream
        .next_within(Duration::from_secs(5))
        .await
        .expect("keep-alive");
    assert_eq!(keep_alive.event(), "keep-alive");
    assert_eq!(keep_alive.data, "");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&stream.raw).ends_with("event: keep-alive\ndata:\n\n"));
    app.stop().await;
}

async fn streams_end_cleanly_on_shutdown() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let mut stream = app.stream("/events/a", &[]).await;
    stream.next().await.expect("open");
    let events = app.events.clone();
    let stopping = tokio::spawn(app.stop());
    assert_eq!(
        stream.next_within(Duration::from_secs(10)).await,
        None,
        "the stream ends"
    );
    stopping.await.expect("stopped");
    assert_eq!(events.metrics().live_subscribers, 0);
}

async fn vanished_client_is_unregistered_by_the_next_keep_alive() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.keepalive_secs", 1)).await;
    let mut stream = app.stream("/events/a", &[]).await;
    stream.next().await.expect("open");
    assert_eq!(app.events.metrics().live_subscribers, 1);
    drop(stream);
    app.wait_for_metrics(
        "still registered after 5 s",
        Duration::from_secs(5),
        |metrics| metrics.live_subscribers == 0,
    )
    .await;
    app.stop().await;
}

async fn non_persistent_channels_have_no_ids() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let mut stream = app.stream("/events/live-ticker", &[]).await;
    stream.next().await.expect("open");
    let id = app
        .events
        .send_event("live-ticker", "tick", &1)
        .await
        .expect("send");
    assert_eq!(id, None);
    let tick = stream.next_event().await;
    assert_eq!((tick.event(), tick.id.as_deref()), ("tick", None));
    // Mixed with a persistent channel, the vector covers only that one.
    let mut mixed = app
        .stream("/events/?channel=live-ticker&channel=p", &[])
        .await;
    mixed.next().await.expect("open");
    app.events
        .send_event("live-ticker", "tick", &2)
        .await
        .expect("send");
    assert_eq!(mixed.next_event().await.id.as_deref(), Some("p:0"));
    app.stop().await;
}

// A current-thread runtime: the stream's task cannot run while the test
// publishes without awaiting, so the inbox of 2 overflows deterministically.
async fn overflowing_a_non_persistent_channel_resets_it_never_drops_silently() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.queue_capacity", 2)).await;
    let mut stream = app.stream("/events/live-fast", &[]).await;
    stream.next().await.expect("open");
    for n in 0..200 {
        app.events
            .send_event("live-fast", "tick", &n)
            .await
            .expect("send");
    }
    let mut ticks = 0;
    let mut reset = None;
    while reset.is_none() {
        let frame = stream.next_event().await;
        match frame.event() {
            "tick" => ticks += 1,
            "stream-reset" => reset = Some(frame),
            other => panic!("unexpected {other}"),
        }
    }
    let reset = reset.expect("reset");
    assert_eq!(reset.json(), json!({"channels": ["live-fast"]}));
    assert!(ticks < 200);
    assert!(app.events.metrics().resets >= 1);
    app.stop().await;
}
