//! Shared set-up: a real server on a free port per test, a fresh database
//! per test (a temporary SQLite file, or a new PostgreSQL database), and an
//! SSE client that parses frames off the socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventstream_rocket::StreamError;
use eventstream_rocket::{Authorizer, EventStream, Events, Stage, StreamRequest, User};
use futures_util::StreamExt;
use rocket::figment::Figment;
use rocket::figment::providers::Serialized;
use rocket::figment::value::Value;
use rocket::{Request, Shutdown};

/// Which event-log backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("EVENTSTREAM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn postgres_url(database: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{database}")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database for one test; removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    // Held so the directory lives as long as the database.
    File(#[allow(dead_code)] tempfile::TempDir),
    Postgres(String),
}

impl TestDatabase {
    /// A fresh database, or `None` when PostgreSQL is not reachable outside
    /// CI (under CI, set by `.ci/run`, a missing service fails the test).
    pub async fn create(backend: Backend) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("events.db").display());
                Some(TestDatabase {
                    url,
                    cleanup: Cleanup::File(dir),
                })
            }
            Backend::Postgres => {
                let name = unique("es_test");
                let admin = match sqlx::PgPool::connect(&postgres_admin_url()).await {
                    Ok(admin) => admin,
                    Err(e) if std::env::var_os("CI").is_none() => {
                        eprintln!(
                            "skipping: PostgreSQL unreachable at {} ({e}); under CI this fails",
                            postgres_admin_url()
                        );
                        return None;
                    }
                    Err(e) => panic!(
                        "PostgreSQL is required under CI but unreachable at {}: {e}",
                        postgres_admin_url()
                    ),
                };
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create a test database");
                admin.close().await;
                Some(TestDatabase {
                    url: postgres_url(&name),
                    cleanup: Cleanup::Postgres(name),
                })
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with their TempDir).
    pub async fn remove(self) {
        if let Cleanup::Postgres(name) = &self.cleanup
            && let Ok(admin) = sqlx::PgPool::connect(&postgres_admin_url()).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}

/// The test authorizer: `_`-prefixed channels need a user, `live-`
/// channels are not persisted, and `?feed=<name>` adds `feed-<name>` to the
/// requested channels (exercising `channels_for_request`).
#[derive(Default)]
pub struct TestAuthorizer;

#[rocket::async_trait]
impl Authorizer for TestAuthorizer {
    async fn can_read_channel(&self, user: Option<&User>, channel: &str) -> bool {
        if let Some(owner) = channel.strip_prefix("_user-") {
            return user.is_some_and(|user| user.id == owner);
        }
        !channel.starts_with('_') || user.is_some()
    }

    fn channels_for_request(
        &self,
        request: &Request<'_>,
        mut requested: Vec<String>,
    ) -> Result<Vec<String>, StreamError> {
        if let Some(Ok(feed)) = request.query_value::<&str>("feed") {
            if feed == "forbidden" {
                return Err(StreamError::bad_request("no such feed"));
            }
            requested.push(format!("feed-{feed}"));
        }
        Ok(requested)
    }

    fn is_channel_reliable(&self, channel: &str) -> bool {
        !channel.starts_with("live-")
    }
}

/// An application route that streams channels it computed.
#[rocket::get("/my-notifications")]
fn my_notifications(stream: StreamRequest) -> EventStream {
    let channel = match stream.user() {
        Some(user) => format!("_user-{}", user.id),
        None => "public-notices".into(),
    };
    stream.channels([channel])
}

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef";
pub const PUBLISH_KEY: &str = "test-publish-key-0123456789";

/// A signed token for `user`, valid for `valid_secs` (negative: expired).
pub fn token(user: &str, valid_secs: i64) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: user,
            exp: now + valid_secs,
        },
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub events: Events,
    pub http: reqwest::Client,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<()>,
    pub database: Option<TestDatabase>,
}

/// How to start a server: its backend database and extra settings.
pub struct Setup {
    pub database_url: String,
    settings: Vec<(String, Value)>,
    stage: Option<Stage>,
}

impl Setup {
    pub fn new(database_url: &str) -> Self {
        Setup {
            database_url: database_url.into(),
            settings: vec![
                ("eventstream.jwt_secret".into(), JWT_SECRET.into()),
                ("eventstream.publish_key".into(), PUBLISH_KEY.into()),
            ],
            stage: None,
        }
    }

    /// Attaches `stage` instead of the default one (which registers
    /// [`TestAuthorizer`]).
    pub fn with_stage(mut self, stage: Stage) -> Self {
        self.stage = Some(stage);
        self
    }

    /// Adds (or overrides) a setting, e.g. `("eventstream.keepalive_secs", 1)`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Removes a setting, e.g. the default publish key.
    pub fn without(mut self, key: &str) -> Self {
        self.settings.retain(|(name, _)| name != key);
        self
    }

    pub fn figment(&self) -> Figment {
        let mut figment = rocket::Config::figment()
            .merge(("port", 0))
            .merge(("address", "127.0.0.1"))
            .merge(("log_level", "off"))
            .merge(("shutdown.grace", 1))
            .merge(("shutdown.mercy", 1))
            .merge(("databases.eventstream.url", self.database_url.as_str()))
            .merge(("databases.eventstream.max_connections", 8));
        for (key, value) in &self.settings {
            figment = figment.merge(Serialized::global(key, value.clone()));
        }
        figment
    }

    /// Starts the server; returns when it accepts connections.
    pub async fn launch(self) -> TestApp {
        self.try_launch().await.expect("the server launches")
    }

    /// Starts the server, or returns Rocket's launch error.
    pub async fn try_launch(mut self) -> Result<TestApp, rocket::Error> {
        let (ready, started) = tokio::sync::oneshot::channel();
        let ready = std::sync::Mutex::new(Some(ready));
        let stage = self
            .stage
            .take()
            .unwrap_or_else(|| Stage::new().authorizer::<TestAuthorizer>());
        let rocket = rocket::custom(self.figment())
            .attach(stage)
            .mount("/", rocket::routes![my_notifications])
            .attach(rocket::fairing::AdHoc::on_liftoff(
                "test ready",
                move |rocket| {
                    Box::pin(async move {
                        let events = rocket
                            .state::<Events>()
                            .cloned()
                            .expect("Events is managed");
                        let info = (rocket.config().port, events, rocket.shutdown());
                        if let Some(ready) = ready.lock().expect("lock").take() {
                            let _ = ready.send(info);
                        }
                    })
                },
            ));
        let ignited = rocket.ignite().await?;
        let server = tokio::spawn(async move {
            let _ = ignited.launch().await;
        });
        let (port, events, shutdown) = tokio::time::timeout(Duration::from_secs(30), started)
            .await
            .expect("server started in time")
            .expect("liftoff");
        Ok(TestApp {
            base: format!("http://127.0.0.1:{port}"),
            events,
            http: reqwest::Client::new(),
            shutdown,
            server,
            database: None,
        })
    }
}

impl TestApp {
    /// A server on a fresh database of `backend`, with `configure` applied
    /// to its settings. `None`: the backend is unavailable (outside CI).
    pub async fn start(
        backend: Backend,
        configure: impl FnOnce(Setup) -> Setup,
    ) -> Option<TestApp> {
        let database = TestDatabase::create(backend).await?;
        let mut app = configure(Setup::new(&database.url)).launch().await;
        app.database = Some(database);
        Some(app)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens a stream at `path` with extra request headers.
    pub async fn stream(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut request = self.http.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("stream request");
        Sse::from_response(response)
    }

    /// Publishes through the Rust API and returns the id text.
    pub async fn send(&self, channel: &str, data: serde_json::Value) -> String {
        self.events
            .send(channel, "message", &data)
            .await
            .expect("send")
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// Stops the server (streams end) and removes the database.
    pub async fn stop(mut self) {
        self.shutdown.clone().notify();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }

    /// Stops the server but keeps its database, for a restart.
    pub async fn stop_keep_database(mut self) -> TestDatabase {
        self.shutdown.clone().notify();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        self.database.take().expect("database")
    }
}

/// One parsed SSE frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub comment: bool,
}

impl Frame {
    pub fn event(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame data {:?} is not JSON: {e}", self.data))
    }
}

/// A stream being read: the response head and a frame parser.
pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    /// Every byte received, for byte-level assertions.
    pub raw: Vec<u8>,
    ended: bool,
}

impl Sse {
    pub fn from_response(response: reqwest::Response) -> Sse {
        Sse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The next frame (comments included), or `None` at the end of the
    /// stream. Panics if nothing arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            if let Some(frame) = self.parse_one() {
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout(wait, self.body.next()).await {
                Err(_) => panic!(
                    "no frame within {wait:?}; received so far: {:?}",
                    String::from_utf8_lossy(&self.raw)
                ),
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.buffer.extend_from_slice(&chunk);
                }
            }
        }
    }

    /// The next frame, within 10 s.
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_within(Duration::from_secs(10)).await
    }

    /// The next frame that is not a keep-alive or comment.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next().await.expect("stream ended early");
            if !frame.comment && frame.event() != "keep-alive" {
                return frame;
            }
        }
    }

    /// Reads until the stream ends, returning the frames.
    pub async fn until_end(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }

    fn parse_one(&mut self) -> Option<Frame> {
        let text = std::str::from_utf8(&self.buffer).ok()?;
        let end = text.find("\n\n")?;
        let block = text[..end].to_owned();
        self.buffer.drain(..end + 2);
        let mut frame = Frame::default();
        let mut data: Vec<&str> = Vec::new();
        for line in block.split('\n') {
            if line.starts_with(':') {
                frame.comment = true;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => frame.event = Some(value.into()),
                "id" => frame.id = Some(value.into()),
                "data" => data.push(value),
                other => panic!("unexpected field {other:?} in {block:?}"),
            }
        }
        frame.data = data.join("\n");
        Some(frame)
    }
}

/// Runs a test body on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
