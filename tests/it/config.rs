//! Launch-time configuration checks: a bad setting aborts launch.

use crate::helpers::{Backend, Setup, TestDatabase};

async fn launch_error(configure: impl FnOnce(Setup) -> Setup) -> String {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
    match configure(Setup::new(&database.url)).try_launch().await {
        Ok(app) => {
            app.stop().await;
            panic!("launch should have been aborted");
        }
        Err(error) => format!("{error:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_abort_launch() {
    for configure in [
        (|s: Setup| s.with("eventstream.authorizer", "nope::Missing")) as fn(Setup) -> Setup,
        |s| {
            s.with("eventstream.allow_origins", "*")
                .with("eventstream.allow_credentials", true)
        },
        |s| {
            s.with("EVENTSTREAM_AUTHORIZER", "a::B")
                .with("eventstream.authorizer", "c::D")
        },
        |s| s.with("eventstream.no_such_key", 1),
        |s| s.with("eventstream.durability", "sometimes"),
        |s| s.with("databases.eventstream.url", "mysql://localhost/x"),
    ] {
        let error = launch_error(configure).await;
        assert!(
            error.contains("FailedFairings") || error.contains("eventstream"),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_is_chosen_by_its_rust_path() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
    // The test authorizer's name is its path as the compiler prints it.
    let app = Setup::new(&database.url)
        .with(
            "EVENTSTREAM_AUTHORIZER_CLASS",
            "it::helpers::TestAuthorizer",
        )
        .launch()
        .await;
    let mut stream = app.stream("/events/_private", &[]).await;
    assert_eq!(stream.next().await.expect("error").event(), "stream-error");
    app.stop().await;
    let app = Setup::new(&database.url)
        .with(
            "eventstream_channelmanager_class",
            "eventstream_rocket::AllowAll",
        )
        .launch()
        .await;
    let mut stream = app.stream("/events/_private", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.stop().await;
}
