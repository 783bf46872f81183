//! Launch-time configuration checks: a bad setting aborts launch, and the
//! logged reason names the setting.

use libtest_mimic::Trial;

use crate::helpers::{App, Backend, LaunchError, spawn_app, try_spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [bad_settings_abort_launch, an_authorizer_is_chosen_by_its_rust_path],
    ]
}

async fn launch_error(app: App) -> LaunchError {
    match try_spawn_app(app).await {
        Ok(app) => {
            app.stop().await;
            panic!("launch should have been aborted");
        }
        Err(error) => error,
    }
}

async fn bad_settings_abort_launch() {
    let sqlite = || App::on(Backend::Sqlite);
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
    // The test authorizer's name is its path as the compiler prints it.
    let app = spawn_app(App::on(Backend::Sqlite).with(
        "EVENTSTREAM_AUTHORIZER_CLASS",
        "it::helpers::TestAuthorizer",
    ))
    .await;
    let mut stream = app.stream("/events/_private", &[]).await;
    assert_eq!(stream.next().await.expect("error").event(), "stream-error");
    app.stop().await;
    let app = spawn_app(App::on(Backend::Sqlite).with(
        "eventstream_channelmanager_class",
        "eventstream_rocket::AllowAll",
    ))
    .await;
    let mut stream = app.stream("/events/_private", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.stop().await;
}
