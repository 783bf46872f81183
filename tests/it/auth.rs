//! Identity and authorization: tokens, forbidden channels, kicks, skip lists.

use serde_json::json;

use eventstream_rocket::{SendOptions, User};
use libtest_mimic::Trial;

use crate::helpers::{AnnUntilRevoked, App, Backend, spawn_app, token};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            private_channels_are_forbidden_to_anonymous_users,
            a_valid_token_in_header_or_query_signs_the_user_in,
            bad_credentials_are_forbidden_never_anonymous,
            permission_checks_that_still_pass_end_no_stream,
            a_kicked_stream_gets_one_forbidden_error_and_ends,
        ],
        on_every_path => [skipped_users_get_neither_the_live_event_nor_its_replay],
    ]
}

async fn private_channels_are_forbidden_to_anonymous_users() {
    let app = spawn_app(App::on(Backend::Sqlite)).await;
    let mut stream = app
        .stream("/events/?channel=public&channel=_b&channel=_a", &[])
        .await;
    assert_eq!(stream.status, 200);
    let frames = stream.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "no stream-open before the error: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(frames[0].id.as_deref(), Some("error"));
    assert_eq!(
        frames[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: _a, _b", "channels": ["_a", "_b"]})
    );
    app.stop().await;
}

async fn a_valid_token_in_header_or_query_signs_the_user_in() {
    let app = spawn_app(App::on(Backend::Sqlite)).await;
    let jwt = token("ann", 60);
    let mut by_header = app
        .stream(
            "/events/_private",
            &[("Authorization", &format!("Bearer {jwt}"))],
        )
        .await;
    let mut by_query = app
        .stream(&format!("/events/_private?token={jwt}"), &[])
        .await;
    for stream in [&mut by_header, &mut by_query] {
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    app.send_event("_private", json!("secret")).await;
    for stream in [&mut by_header, &mut by_query] {
        assert_eq!(stream.next_event().await.json(), json!("secret"));
    }
    app.stop().await;
}

async fn bad_credentials_are_forbidden_never_anonymous() {
    let app = spawn_app(App::on(Backend::Sqlite)).await;
    let expired = token("ann", -3600);
    let forged = {
        let mut parts: Vec<String> = token("ann", 60).split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    let cases = [
        (format!("/events/public?token={expired}"), vec![], "expired"),
        (
            format!("/events/public?token={forged}"),
            vec![],
            "invalid token",
        ),
        (
            "/events/public?token=not-a-jwt".to_owned(),
            vec![],
            "invalid token",
        ),
        (
            "/events/public".to_owned(),
            vec![("Authorization", "Basic YTpi".to_owned())],
            "Bearer",
        ),
    ];
    for (path, headers, text) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let frames = app.stream(&path, &headers).await.until_end().await;
        assert_eq!(frames.len(), 1, "{path}");
        let data = frames[0].json();
        assert_eq!(data["condition"], "forbidden", "{path}: {data}");
        assert!(
            data["text"].as_str().expect("text").contains(text),
            "{path}: {data}"
        );
    }
    app.stop().await;
}

async fn permission_checks_that_still_pass_end_no_stream() {
    let app = spawn_app(App::on(Backend::Sqlite)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let bob = format!("Bearer {}", token("bob", 60));
    let mut ann_own = app
        .stream("/events/_user-ann", &[("Authorization", &ann)])
        .await;
    let mut ann_public = app
        .stream("/events/public", &[("Authorization", &ann)])
        .await;
    let mut bob_public = app
        .stream("/events/public", &[("Authorization", &bob)])
        .await;
    for stream in [&mut ann_own, &mut ann_public, &mut bob_public] {
        stream.next().await.expect("open");
    }
    // Still allowed: nothing happens.
    assert_eq!(
        app.events
            .channel_permission_changed(Some(&User::new("ann")), "public")
            .await,
        0
    );
    // ann still owns `_user-ann`: her stream there stays.
    assert_eq!(
        app.events
            .channel_permission_changed(Some(&User::new("ann")), "_user-ann")
            .await,
        0
    );
    // An anonymous check on a private channel finds no anonymous stream.
    assert_eq!(
        app.events
            .channel_permission_changed(None, "_user-ann")
            .await,
        0
    );
    app.send_event("public", json!("still here")).await;
    assert_eq!(ann_public.next_event().await.json(), json!("still here"));
    assert_eq!(bob_public.next_event().await.json(), json!("still here"));
    app.stop().await;
}

async fn a_kicked_stream_gets_one_forbidden_error_and_ends() {
    let (stage, revoked) = AnnUntilRevoked::stage();
    let app = spawn_app(App::on(Backend::Sqlite).stage(stage)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let mut stream = app.stream("/events/room", &[("Authorization", &ann)]).await;
    stream.next().await.expect("open");
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        app.events
            .channel_permission_changed(Some(&User::new("ann")), "room")
            .await,
        1
    );
    let frames = stream.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "exactly one error, then the end: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(
        frames[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: room", "channels": ["room"]})
    );
    app.stop().await;
}

async fn skipped_users_get_neither_the_live_event_nor_its_replay(backend: Backend) {
    let app = spawn_app(App::on(backend)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let mut ann_live = app.stream("/events/room", &[("Authorization", &ann)]).await;
    let mut anonymous = app.stream("/events/room", &[]).await;
    ann_live.next().await.expect("open");
    anonymous.next().await.expect("open");
    let skip = SendOptions::new().skip_user_ids(["ann"]);
    app.events
        .send_event_with("room", "message", &"not for ann", skip)
        .await
        .expect("send");
    app.send_event("room", json!("for everyone")).await;
    assert_eq!(anonymous.next_event().await.id.as_deref(), Some("room:1"));
    assert_eq!(anonymous.next_event().await.id.as_deref(), Some("room:2"));
    let first_for_ann = ann_live.next_event().await;
    assert_eq!(
        (first_for_ann.id.as_deref(), first_for_ann.json()),
        (Some("room:2"), json!("for everyone"))
    );
    // Replay applies the same rule.
    let mut ann_replay = app
        .stream(
            "/events/room",
            &[("Authorization", &ann), ("Last-Event-ID", "room:0")],
        )
        .await;
    ann_replay.next().await.expect("open");
    assert_eq!(ann_replay.next_event().await.id.as_deref(), Some("room:2"));
    app.stop().await;
}
