//! Launch-time configuration checks: a bad setting aborts launch, and the
//! logged reason names the setting.

use libtest_mimic::Trial;

use crate::helpers::{App, LogMark, Setup, closed_port, launch_error, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            bad_settings_abort_launch,
            an_authorizer_is_chosen_by_its_rust_path,
            secrets_never_reach_logs_or_error_bodies,
        ],
    ]
}

async fn bad_settings_abort_launch() {
    let sqlite = || App::on(Setup::Sqlite);
    // The app, the key the error must name, and what else it must mention.
    for (app, key, also) in [
        (
            sqlite().with("eventstream.authorizer", "nope::Missing"),
            "eventstream.authorizer",
            None,
        ),
        (
            sqlite()
                .with("eventstream.allow_origins", "*")
                .with("eventstream.allow_credentials", true),
            "eventstream.allow_origins",
            None,
        ),
        (
            sqlite()
                .with("EVENTSTREAM_AUTHORIZER", "a::B")
                .with("eventstream.authorizer", "c::D"),
            "eventstream.authorizer",
            Some("EVENTSTREAM_AUTHORIZER"),
        ),
        (
            sqlite().with("eventstream.no_such_key", 1),
            "eventstream.no_such_key",
            None,
        ),
        (
            sqlite().with("eventstream.durability", "sometimes"),
            "eventstream.durability",
            None,
        ),
        (
            sqlite().with("databases.eventstream.url", "mysql://localhost/x"),
            "databases.eventstream.url",
            None,
        ),
    ] {
        let error = launch_error(app).await;
        // Rocket only says FailedFairings; the library logs
        // `eventstream: <key>: <reason>` first. Other tests log at the same
        // time, so look for this key rather than at the last line.
        let named = format!("eventstream: {key}:");
        assert!(
            error
                .logged
                .iter()
                .any(|line| line.contains(&named) && also.is_none_or(|word| line.contains(word))),
            "launch was aborted, but no logged error names {key}{}: {error}",
            also.map(|word| format!(" and mentions {word}"))
                .unwrap_or_default()
        );
    }
}

async fn an_authorizer_is_chosen_by_its_rust_path() {
    // Registered with `.authorizer::<TestAuthorizer>()`: found by its path
    // as the template writes it, by the type's own name, and by a path it
    // could move to.
    for name in [
        "it::helpers::TestAuthorizer",
        "TestAuthorizer",
        "it::moved::elsewhere::TestAuthorizer",
    ] {
        let app =
            spawn_app(App::on(Setup::Sqlite).with("EVENTSTREAM_AUTHORIZER_CLASS", name)).await;
        let mut stream = app.stream("/events/_private", &[]).await;
        assert_eq!(
            stream.next().await.expect("error").event(),
            "stream-error",
            "{name} chose the test authorizer"
        );
        app.stop().await;
    }
    let app = spawn_app(App::on(Setup::Sqlite).with(
        "eventstream_channelmanager_class",
        "eventstream_rocket::AllowAll",
    ))
    .await;
    let mut stream = app.stream("/events/_private", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.stop().await;
}

/// Every secret is used, never printed: launch errors (bad GRIP URLs,
/// database URLs with passwords, secrets too short), the configuration's
/// `Debug`, publish failures and the answers clients get.
async fn secrets_never_reach_logs_or_error_bodies() {
    let launches = [
        (
            App::on(Setup::Sqlite)
                .with(
                    "eventstream.grip_url",
                    "ftp://proxy.example?key=grip-url-secret-0001",
                )
                .with("eventstream.link_key", "link-key-secret-0002-0123456789"),
            vec!["grip-url-secret-0001", "link-key-secret-0002-0123456789"],
        ),
        (
            App::on(Setup::Sqlite)
                .with(
                    "eventstream.grip_url",
                    "http://127.0.0.1:5561?key=grip-url-secret-0003&color=red",
                )
                .with("eventstream.link_key", "link-key-secret-0004-0123456789"),
            vec!["grip-url-secret-0003", "link-key-secret-0004-0123456789"],
        ),
        (
            App::on(Setup::Sqlite).with(
                "databases.eventstream.url",
                "mysql://app:db-password-0005@localhost/x",
            ),
            vec!["db-password-0005"],
        ),
        (
            App::on(Setup::Sqlite).with(
                "databases.eventstream.url",
                "postgres://app:db-password-0006@127.0.0.1:1/x",
            ),
            vec!["db-password-0006"],
        ),
        (
            App::on(Setup::Sqlite).with("eventstream.jwt_secret", "short-0007"),
            vec!["short-0007"],
        ),
        (
            App::on(Setup::Sqlite).with("eventstream.publish_key", "short-0008"),
            vec!["short-0008"],
        ),
    ];
    for (app, secrets) in launches {
        let error = launch_error(app).await;
        assert!(!error.logged.is_empty(), "the refusal is logged: {error}");
        let everything = format!("{error}");
        for secret in secrets {
            assert!(
                !everything.contains(secret),
                "{secret} leaked: {everything}"
            );
        }
    }

    // A running server with every kind of secret, publishing to a proxy
    // that does not answer (its URL carries credentials).
    let closed = closed_port();
    let mark = LogMark::now();
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .grip_proxy_at(&format!(
                "http://user:proxy-password-0009@127.0.0.1:{closed}"
            ))
            .with("eventstream.jwt_secret", "jwt-secret-0010-0123456789"),
    )
    .await;
    let config = format!("{:?}", app.events.config());
    let secrets = [
        "proxy-password-0009",
        "jwt-secret-0010-0123456789",
        crate::helpers::PUBLISH_KEY,
        crate::helpers::LINK_KEY,
        crate::helpers::PUSHPIN_SIG_KEY,
    ];
    for secret in secrets {
        assert!(
            !config.contains(secret),
            "{secret} in Config's Debug: {config}"
        );
    }
    app.send_event("c", serde_json::json!(1)).await;
    app.wait_for_metrics(
        "no publish retry was logged",
        std::time::Duration::from_secs(20),
        |metrics| metrics.grip_retries > 0,
    )
    .await;
    let wrong = app
        .http
        .post(app.url("/events/c"))
        .bearer_auth("a-wrong-key-0011-0123456789")
        .body(r#"{"data":1}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(wrong.status(), 403);
    let body = wrong.text().await.expect("a body");
    let forged = app
        .stream("/events/c?token=not.a.jwt-0012", &[])
        .await
        .until_end()
        .await;
    let answers = format!("{body} {forged:?}");
    let logged = mark.lines_since().join("\n");
    assert!(
        logged.contains("publish to"),
        "the publish failure is logged: {logged}"
    );
    for secret in secrets.iter().chain(&["a-wrong-key-0011-0123456789"]) {
        assert!(!logged.contains(secret), "{secret} in the log: {logged}");
        assert!(
            !answers.contains(secret),
            "{secret} in an answer: {answers}"
        );
    }
    app.stop().await;
}
