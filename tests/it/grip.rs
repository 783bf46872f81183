//! GRIP specifics against a real Pushpin: instructions only for verified
//! proxies, keep-alives, kicks, recovery after an app restart, and counted
//! publish failures. (The stream contract itself runs through Pushpin in
//! every test listed under `on_every_path`.)

use std::time::Duration;

use serde_json::json;

use eventstream_rocket::User;
use libtest_mimic::Trial;

use crate::helpers::{
    AnnUntilRevoked, App, Backend, PUSHPIN_SIG_KEY, Sse, grip_sig, spawn_app, token,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_pushpin => [
            only_a_verified_grip_sig_gets_grip_instructions,
            next_links_carry_the_proxys_path_prefix,
            keep_alives_arrive_through_pushpin,
            revoking_permission_kicks_proxied_streams_of_that_user_only,
            an_app_restart_while_clients_stay_on_pushpin_loses_nothing,
        ],
        needs_nothing => [publish_failures_are_retried_counted_and_do_not_block_sends],
    ]
}

async fn only_a_verified_grip_sig_gets_grip_instructions() {
    let app = spawn_app(App::on(Backend::Pushpin)).await;
    // Straight to the app, a forged or wrongly keyed header is direct mode.
    for forged in [
        "forged.by.client".to_owned(),
        grip_sig("wrong-key", 60),
        grip_sig(PUSHPIN_SIG_KEY, -120),
    ] {
        let response = app
            .http
            .get(format!("{}/events/a", app.origin))
            .header("Grip-Sig", forged)
            .send()
            .await
            .expect("response");
        assert!(response.headers().get("grip-hold").is_none());
        let mut stream = Sse::from_response(response);
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
        app.send_event("a", json!("live, not held")).await;
        assert_eq!(stream.next_event().await.json(), json!("live, not held"));
    }
    // A valid one gets a finite body and the instructions.
    app.send_event("b c", json!(1)).await;
    let response = app
        .http
        .get(format!(
            "{}/events/?channel=b%20c&channel=live-x",
            app.origin
        ))
        .header("Grip-Sig", grip_sig(PUSHPIN_SIG_KEY, 60))
        .header("Last-Event-ID", "b%20c:0")
        .send()
        .await
        .expect("response");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("grip-hold"), "stream");
    assert_eq!(
        header("grip-channel"),
        "events-b%20c; prev-id=1; filter=build-id; filter=skip-users, events-live-x; filter=skip-users, user-anonymous; filter=require-sub"
    );
    assert_eq!(
        header("grip-set-meta"),
        "id_format=\"b%%20c:%(events-b%20c)s\", user=\"anonymous\""
    );
    assert_eq!(
        header("grip-keep-alive"),
        "event: keep-alive\\ndata:\\n\\n; format=cstring; timeout=20"
    );
    let link = header("grip-link");
    assert!(
        link.starts_with("</events/?link=next&recover=true&es-meta="),
        "{link}"
    );
    assert!(link.ends_with(">; rel=next; timeout=120"), "{link}");
    let body = response.text().await.expect("a finite body");
    assert_eq!(
        body,
        "id: b%%20c:0\nevent: stream-open\ndata:\n\nid: b%%20c:1\nevent: message\ndata: 1\n\n",
        "% is escaped for the proxy's build-id filter"
    );
    app.stop().await;
}

async fn next_links_carry_the_proxys_path_prefix() {
    let app =
        spawn_app(App::on(Backend::Pushpin).with("eventstream.grip_path_prefix", "/api/")).await;
    let response = app
        .http
        .get(format!("{}/events/a", app.origin))
        .header("Grip-Sig", grip_sig(PUSHPIN_SIG_KEY, 60))
        .send()
        .await
        .expect("response");
    let link = response
        .headers()
        .get("grip-link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        link.starts_with("</api/events/a?link=next&recover=true&es-meta="),
        "{link}"
    );
    app.stop().await;
}

async fn keep_alives_arrive_through_pushpin() {
    let app = spawn_app(App::on(Backend::Pushpin).with("eventstream.keepalive_secs", 1)).await;
    let mut stream = app.stream("/events/quiet", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    let frame = stream
        .next_within(Duration::from_secs(5))
        .await
        .expect("a keep-alive");
    assert_eq!(frame.event(), "keep-alive");
    app.stop().await;
}

async fn revoking_permission_kicks_proxied_streams_of_that_user_only() {
    let (stage, revoked) = AnnUntilRevoked::stage();
    let app = spawn_app(App::on(Backend::Pushpin).stage(stage)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let bob = format!("Bearer {}", token("bob", 60));
    let mut ann_stream = app.stream("/events/room", &[("Authorization", &ann)]).await;
    let mut bob_stream = app.stream("/events/room", &[("Authorization", &bob)]).await;
    for stream in [&mut ann_stream, &mut bob_stream] {
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    app.events
        .channel_permission_changed(Some(&User::new("ann")), "room")
        .await;
    let frames = ann_stream.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "one error, then the proxy closes the stream: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(
        frames[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: room", "channels": ["room"]})
    );
    app.send_event("room", json!("bob still listens")).await;
    assert_eq!(
        bob_stream.next_event().await.json(),
        json!("bob still listens")
    );
    app.stop().await;
}

async fn an_app_restart_while_clients_stay_on_pushpin_loses_nothing() {
    let app = spawn_app(App::on(Backend::Pushpin)).await;
    let mut stream = app.stream("/events/r", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.send_event("r", json!(1)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("r:1"));

    // The app goes away; Pushpin keeps the client. Events are stored by an
    // instance that publishes to no proxy, as if the app had crashed
    // between commit and publish.
    let (pushpin, database) = app.stop_app_only().await;
    let bystander = spawn_app(App::sharing_database(&database.url)).await;
    for n in 2..=4 {
        bystander.send_event("r", json!(n)).await;
    }
    bystander.stop().await;

    // Back up behind the same Pushpin: at start it asks Pushpin to make
    // every client recover.
    let app = spawn_app(App::on_database(database).pushpin(pushpin)).await;
    for n in 2..=4 {
        let event = stream.next_event().await;
        assert_eq!(
            (event.id.clone(), event.json()),
            (Some(format!("r:{n}")), json!(n))
        );
    }
    app.send_event("r", json!(5)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("r:5"));
    app.stop().await;
}

async fn publish_failures_are_retried_counted_and_do_not_block_sends() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let app =
        spawn_app(App::on(Backend::Sqlite).grip_proxy_at(&format!("http://127.0.0.1:{closed}")))
            .await;
    let started = std::time::Instant::now();
    assert_eq!(app.send_event("c", json!(1)).await, "c:1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "send does not wait for the proxy"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.events.metrics().grip_failed == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the failure was never given up and counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.events.metrics();
    assert!(metrics.grip_retries >= 5, "{metrics:?}");
    assert_eq!(metrics.grip_published, 0);
    app.stop().await;
}
