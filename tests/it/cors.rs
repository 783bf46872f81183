//! CORS: origins matched against `Origin`, credentials, preflight.

use libtest_mimic::Trial;

use crate::helpers::{App, Setup, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            listed_origins_are_echoed_and_others_get_nothing,
            wildcard_origin_and_no_cors_by_default,
        ],
    ]
}

async fn listed_origins_are_echoed_and_others_get_nothing() {
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with(
                "eventstream.allow_origins",
                vec!["https://app.example", "http://localhost:3000"],
            )
            .with("eventstream.allow_credentials", true),
    )
    .await;
    let allowed = app
        .stream("/events/c", &[("Origin", "https://app.example")])
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("Last-Event-ID, Authorization")
    );
    let other = app
        .stream("/events/c", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-credentials"), None);
    assert_eq!(other.header("vary"), Some("Origin"));
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/events/c"))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "last-event-id")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 204);
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(
        header("access-control-allow-methods").as_deref(),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("Last-Event-ID, Authorization")
    );
    let root_preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/events"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .expect("preflight");
    assert_eq!(root_preflight.status(), 204);
    app.stop().await;
}

async fn wildcard_origin_and_no_cors_by_default() {
    let app = spawn_app(App::on(Setup::Sqlite).with("EVENTSTREAM_ALLOW_ORIGIN", "*")).await;
    let any = app
        .stream("/events/c", &[("Origin", "https://x.example")])
        .await;
    assert_eq!(any.header("access-control-allow-origin"), Some("*"));
    assert_eq!(any.header("access-control-allow-credentials"), None);
    app.stop().await;
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let none = app
        .stream("/events/c", &[("Origin", "https://x.example")])
        .await;
    assert_eq!(none.header("access-control-allow-origin"), None);
    app.stop().await;
}
