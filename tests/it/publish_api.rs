//! The publish HTTP API.

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{App, PUBLISH_KEY, Setup, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_every_path => [publish_api_stores_and_delivers],
        needs_nothing => [
            publish_api_answers_202_for_non_persistent_channels,
            publish_api_refuses_bad_credentials_and_bad_input,
            publish_api_is_off_without_a_key,
        ],
    ]
}

async fn publish_api_stores_and_delivers(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let mut stream = app.stream("/events/news", &[]).await;
    stream.next().await.expect("open");
    let response = app
        .http
        .post(app.url("/events/news"))
        .bearer_auth(PUBLISH_KEY)
        .json(&json!({"type": "headline", "data": {"title": "hi"}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json"),
        json!({"id": "news:1"})
    );
    let event = stream.next_event().await;
    assert_eq!(
        (event.event(), event.id.as_deref()),
        ("headline", Some("news:1"))
    );
    assert_eq!(event.json(), json!({"title": "hi"}));
    // `type` defaults to "message"; names are percent-decoded from the path.
    let response = app
        .http
        .post(app.url("/events/a%20b"))
        .bearer_auth(PUBLISH_KEY)
        .json(&json!({"data": [1, 2]}))
        .send()
        .await
        .expect("publish");
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json"),
        json!({"id": "a%20b:1"})
    );
    app.stop().await;
}

async fn publish_api_answers_202_for_non_persistent_channels() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let response = app
        .http
        .post(app.url("/events/live-x"))
        .bearer_auth(PUBLISH_KEY)
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json"),
        json!({"id": null})
    );
    app.stop().await;
}

async fn publish_api_refuses_bad_credentials_and_bad_input() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.max_event_bytes", 1000)).await;
    let post = |path: &str| app.http.post(app.url(path));
    let missing = post("/events/c")
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("response");
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().ok()),
        Some(Some("Bearer"))
    );
    let malformed = post("/events/c")
        .header("Authorization", "Basic abc")
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("response");
    assert_eq!(malformed.status(), 401);
    let wrong = post("/events/c")
        .bearer_auth("wrong-key-0123456789")
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("response");
    assert_eq!(wrong.status(), 403);
    let cases: [(&str, String, u16); 6] = [
        ("/events/c", "{not json".into(), 400),
        ("/events/c", r#"{"type":"m"}"#.into(), 400),
        (
            "/events/c",
            r#"{"type":"stream-open","data":1}"#.into(),
            400,
        ),
        ("/events/c", r#"{"type":"a\nb","data":1}"#.into(), 400),
        ("/events/bad%0Achannel", r#"{"data":1}"#.into(), 400),
        (
            "/events/c",
            format!(r#"{{"data":"{}"}}"#, "x".repeat(2000)),
            413,
        ),
    ];
    for (path, body, status) in cases {
        let response = post(path)
            .bearer_auth(PUBLISH_KEY)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), status, "{path} {body}");
        let error: serde_json::Value = response.json().await.expect("JSON error body");
        assert!(error["text"].is_string(), "{error}");
    }
    // None of the refused requests stored anything.
    assert_eq!(
        app.events.current_id(&["c"]).await.expect("read").get("c"),
        Some(0)
    );
    app.stop().await;
}

async fn publish_api_is_off_without_a_key() {
    let app = spawn_app(App::on(Setup::Sqlite).without("eventstream.publish_key")).await;
    let response = app
        .http
        .post(app.url("/events/c"))
        .bearer_auth(PUBLISH_KEY)
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 404);
    app.stop().await;
}
