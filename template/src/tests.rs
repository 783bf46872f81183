//! The app's own tests: its routes, its authorizer, and a stream round trip,
//! against a real database of the configured kind.

use std::time::Duration;

use eventstream_rocket::{Authorizer, User};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::tokio::io::{AsyncBufReadExt, BufReader, Lines};
use rocket::tokio::time::timeout;

use crate::events::PrivateChannels;

/// A throw-away database for one test.
struct TestDatabase {
    url: String,
{%- if database == "sqlite" %}
    path: std::path::PathBuf,
{%- endif %}
}

impl TestDatabase {
    fn new(name: &str) -> Self {
{%- if database == "postgres" %}
        // Tables are shared between tests here; each test uses its own rooms.
        let _ = name;
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        TestDatabase { url }
{%- else %}
        let path = std::env::temp_dir().join(format!(
            "{}-{name}-{}.db",
            env!("CARGO_PKG_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TestDatabase {
            url: format!("sqlite://{}", path.display()),
            path,
        }
{%- endif %}
    }
}
{%- if database == "sqlite" %}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}
{%- endif %}

async fn client(database: &TestDatabase) -> Client {
    let figment = rocket::Config::figment()
        .merge(("databases.eventstream.url", database.url.as_str()))
        .merge(("log_level", "off"));
    Client::tracked(super::app(figment))
        .await
        .expect("the app launches")
}

/// Reads lines until one satisfies `wanted`, within 10 seconds.
async fn line_where(
    lines: &mut Lines<BufReader<LocalResponse<'_>>>,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Duration::from_secs(10);
    loop {
        let line = timeout(deadline, lines.next_line())
            .await
            .expect("a line within 10 s")
            .expect("readable")
            .expect("the stream is still open");
        if wanted(&line) {
            return line;
        }
    }
}

#[rocket::async_test]
async fn index_shows_the_rooms() {
    let database = TestDatabase::new("index");
    let client = client(&database).await;
    let response = client.get(uri!(crate::pages::index)).dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    let page = response.into_string().await.expect("a page");
    for room in ["lobby", "random", "_staff"] {
        assert!(page.contains(room), "the page lists {room}");
    }
}

#[rocket::async_test]
async fn private_rooms_need_a_signed_in_user() {
    let user = User::new("ann");
    assert!(PrivateChannels.can_read_channel(None, "lobby").await);
    assert!(!PrivateChannels.can_read_channel(None, "_staff").await);
    assert!(
        PrivateChannels
            .can_read_channel(Some(&user), "_staff")
            .await
    );
}

#[rocket::async_test]
async fn a_posted_message_reaches_the_stream() {
    let database = TestDatabase::new("round-trip");
    let client = client(&database).await;
    let stream = client.get("/events/random").dispatch().await;
    assert_eq!(
        stream.content_type(),
        Some(ContentType::new("text", "event-stream"))
    );
    let mut lines = BufReader::new(stream).lines();
    line_where(&mut lines, |line| line == "event: stream-open").await;

    let text = format!("hello from test {}", std::process::id());
    let posted = client
        .post(uri!(crate::chat::post(room = "random")))
        .json(&serde_json::json!({ "author": "tester", "text": text }))
        .dispatch()
        .await;
    assert_eq!(posted.status(), Status::Created);

    let data = line_where(&mut lines, |line| line.starts_with("data: ")).await;
    let message: serde_json::Value =
        serde_json::from_str(&data["data: ".len()..]).expect("JSON data");
    assert_eq!(message["text"], text.as_str());
    assert_eq!(message["author"], "tester (guest)");
    client.rocket().shutdown().notify();
}

#[rocket::async_test]
async fn signing_in_opens_private_rooms() {
    let database = TestDatabase::new("sign-in");
    let client = client(&database).await;
    let anonymous = client
        .get(uri!(crate::pages::room_history(room = "_staff")))
        .dispatch()
        .await;
    assert_eq!(anonymous.status(), Status::Forbidden);
    let refused = client
        .post(uri!(crate::chat::post(room = "_staff")))
        .json(&serde_json::json!({ "text": "hi" }))
        .dispatch()
        .await;
    assert_eq!(refused.status(), Status::Forbidden);

    let session: serde_json::Value = client
        .post(uri!(crate::auth::sign_in))
        .json(&serde_json::json!({ "name": "ann" }))
        .dispatch()
        .await
        .into_json()
        .await
        .expect("a session");
    let token = session["token"].as_str().expect("a token").to_owned();
    let bearer = || Header::new("Authorization", format!("Bearer {token}"));
    let history = client
        .get(uri!(crate::pages::room_history(room = "_staff")))
        .header(bearer())
        .dispatch()
        .await;
    assert_eq!(history.status(), Status::Ok);
    let posted = client
        .post(uri!(crate::chat::post(room = "_staff")))
        .header(bearer())
        .json(&serde_json::json!({ "text": "staff only" }))
        .dispatch()
        .await;
    assert_eq!(posted.status(), Status::Created);

    let forged = client
        .get(uri!(crate::pages::room_history(room = "_staff")))
        .header(Header::new("Authorization", "Bearer not-a-token"))
        .dispatch()
        .await;
    assert_eq!(forged.status(), Status::Forbidden);
}

#[rocket::async_test]
async fn json_routes_refuse_with_an_error_field() {
    let database = TestDatabase::new("refusals");
    let client = client(&database).await;
    let unknown = client
        .post(uri!(crate::chat::post(room = "nowhere")))
        .json(&serde_json::json!({ "text": "hi" }))
        .dispatch()
        .await;
    assert_eq!(unknown.status(), Status::NotFound);
    let body: serde_json::Value = unknown.into_json().await.expect("a JSON body");
    assert_eq!(body["error"], "no such room");

    // Refused by a request guard, before the route runs: the same shape.
    let forged = client
        .get(uri!(crate::pages::room_history(room = "lobby")))
        .header(Header::new("Authorization", "Bearer not-a-token"))
        .dispatch()
        .await;
    assert_eq!(forged.status(), Status::Forbidden);
    let body: serde_json::Value = forged.into_json().await.expect("a JSON body");
    assert_eq!(body["error"], "forbidden");
}

#[rocket::async_test]
async fn history_and_stream_join_without_gap() {
    let database = TestDatabase::new("history");
    let client = client(&database).await;
    let post = |text: &'static str| {
        client
            .post(uri!(crate::chat::post(room = "lobby")))
            .json(&serde_json::json!({ "author": "a", "text": text }))
            .dispatch()
    };
    assert_eq!(post("one").await.status(), Status::Created);
    let history: serde_json::Value = client
        .get(uri!(crate::pages::room_history(room = "lobby")))
        .dispatch()
        .await
        .into_json()
        .await
        .expect("history");
    let last_event_id = history["last_event_id"].as_str().expect("an id").to_owned();
    assert!(
        history["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["text"] == "one")
    );

    assert_eq!(post("two").await.status(), Status::Created);
    let stream = client
        .get("/events/lobby")
        .header(Header::new("Last-Event-ID", last_event_id))
        .dispatch()
        .await;
    let mut lines = BufReader::new(stream).lines();
    let data = line_where(&mut lines, |line| line.starts_with("data: {")).await;
    assert!(
        data.contains("\"text\":\"two\""),
        "the first event after the history is the next one: {data}"
    );
    client.rocket().shutdown().notify();
}

#[rocket::async_test]
async fn history_survives_the_event_log_being_trimmed() {
    use rocket_db_pools::{Database, sqlx};

    let database = TestDatabase::new("retention");
    // Retention keeps one event per room and runs every second.
    let figment = rocket::Config::figment()
        .merge(("databases.eventstream.url", database.url.as_str()))
        .merge(("eventstream.retention_count", 1))
        .merge(("eventstream.trim_interval_secs", 1))
        .merge(("log_level", "off"));
    let client = Client::tracked(super::app(figment))
        .await
        .expect("the app launches");
    let tag = std::process::id();
    let texts: Vec<String> = (1..=3).map(|n| format!("kept {n} ({tag})")).collect();
    for text in &texts {
        let posted = client
            .post(uri!(crate::chat::post(room = "random")))
            .json(&serde_json::json!({ "author": "a", "text": text }))
            .dispatch()
            .await;
        assert_eq!(posted.status(), Status::Created);
    }
    // Wait for a retention pass to trim the room's event log.
    let db = crate::db::Db::fetch(client.rocket()).expect("the pool");
    timeout(Duration::from_secs(10), async {
        loop {
            let stored: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM eventstream_events WHERE channel = 'random'",
            )
            .fetch_one(&**db)
            .await
            .expect("count");
            if stored <= 1 {
                break;
            }
            rocket::tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("retention trims the event log within 10 s");

    let history: serde_json::Value = client
        .get(uri!(crate::pages::room_history(room = "random")))
        .dispatch()
        .await
        .into_json()
        .await
        .expect("history");
    let shown: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .filter(|text| text.ends_with(&format!("({tag})")))
        .collect();
    assert_eq!(shown, texts, "the room still shows its history, in order");

    // And the stream joins it exactly: the next event is the next message.
    let last_event_id = history["last_event_id"].as_str().expect("an id").to_owned();
    let stream = client
        .get("/events/random")
        .header(Header::new("Last-Event-ID", last_event_id))
        .dispatch()
        .await;
    let mut lines = BufReader::new(stream).lines();
    line_where(&mut lines, |line| line == "event: stream-open").await;
    let next = format!("after the trim ({tag})");
    let posted = client
        .post(uri!(crate::chat::post(room = "random")))
        .json(&serde_json::json!({ "author": "a", "text": next }))
        .dispatch()
        .await;
    assert_eq!(posted.status(), Status::Created);
    let data = line_where(&mut lines, |line| line.starts_with("data: {")).await;
    assert!(
        data.contains(&next),
        "the first event after the history is the next message: {data}"
    );
    client.rocket().shutdown().notify();
}

/// The release profile on `database`, without the development secrets
/// (with a `secret_key`, which Rocket requires in release to encrypt the
/// sign-in cookie).
fn release(database: &TestDatabase) -> rocket::figment::Figment {
    rocket::Config::figment()
        .select("release")
        .merge(("databases.eventstream.url", database.url.as_str()))
        .merge(("log_level", "off"))
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="))
}

/// The release profile with real secrets set.
fn configured_release(database: &TestDatabase) -> rocket::figment::Figment {
    release(database)
        .merge(("eventstream.publish_key", "a-real-publish-key-0123456789"))
        .merge(("eventstream.jwt_secret", "a-real-jwt-secret-0123456789"))
}

#[rocket::async_test]
async fn release_refuses_the_development_secrets() {
    let database = TestDatabase::new("release");
    let release = || release(&database);
    // The development values live in [debug.eventstream] only.
    let refused = super::app(release())
        .ignite()
        .await
        .expect_err("no real secrets");
    assert!(matches!(
        refused.kind(),
        rocket::error::ErrorKind::FailedFairings(_)
    ));
    assert!(
        super::app(configured_release(&database))
            .ignite()
            .await
            .is_ok()
    );
}

#[rocket::async_test]
async fn the_demo_sign_in_exists_only_in_debug() {
    let database = TestDatabase::new("demo-sign-in");
    let release = || configured_release(&database);
    // Release without it: anyone signing in as `_staff`'s reader is refused.
    let client = Client::tracked(super::app(release()))
        .await
        .expect("the app launches");
    let response = client
        .post(uri!(crate::auth::sign_in))
        .header(ContentType::JSON)
        .body(r#"{"name":"mallory"}"#)
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::NotFound);
    drop(response);
    drop(client);
    // Release with it switched on does not start at all.
    let refused = super::app(release().merge(("demo_sign_in", true)))
        .ignite()
        .await
        .expect_err("demo sign-in in release");
    assert!(matches!(
        refused.kind(),
        rocket::error::ErrorKind::FailedFairings(_)
    ));
}
