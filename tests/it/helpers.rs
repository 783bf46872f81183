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

/// Which event-log backend a test runs against, and how clients reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// SQLite, with clients connecting through a real Pushpin (GRIP mode).
    Pushpin,
}

/// Pushpin's default `sig_key`, which the harness configures.
pub const PUSHPIN_SIG_KEY: &str = "changeme";
pub const LINK_KEY: &str = "test-link-key-0123456789abcdef";

/// Starts and stops a throw-away Pushpin (a copy of the team's harness).
const HARNESS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/pushpin-harness.sh"
);

/// A throw-away Pushpin started by `tests/support/pushpin-harness.sh`.
pub struct Pushpin {
    dir: tempfile::TempDir,
    /// Where clients connect, e.g. `http://127.0.0.1:17999`.
    pub http: String,
    /// The control API, e.g. `http://127.0.0.1:5661`.
    pub control: String,
    http_port: u16,
    offset: u16,
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Pushpin {
    /// Chooses free ports: the client port, and an offset whose four
    /// control ports (5560..5563 + offset) are all free.
    pub fn reserve() -> Option<Pushpin> {
        if std::process::Command::new("pushpin")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "Pushpin is required under CI: apt-get install -y pushpin"
            );
            eprintln!("skipping: pushpin is not installed");
            return None;
        }
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        };
        let http_port = free().expect("a free port");
        let offset = (0..200)
            .find_map(|_| {
                let base = free().ok()?;
                let offset = base.checked_sub(5560)?;
                (0..4).all(|n| port_is_free(base + n)).then_some(offset)
            })
            .expect("four free consecutive ports");
        Some(Pushpin {
            dir: tempfile::tempdir().expect("temporary directory"),
            http: format!("http://127.0.0.1:{http_port}"),
            control: format!("http://127.0.0.1:{}", 5561 + offset),
            http_port,
            offset,
        })
    }

    /// The `grip_proxies` entry for this Pushpin.
    pub fn proxy_config(&self) -> Value {
        Value::from(vec![Value::from(rocket::figment::util::map![
            "control_uri" => self.control.clone(),
            "verify_iss" => "pushpin".to_owned(),
            "verify_key" => PUSHPIN_SIG_KEY.to_owned(),
        ])])
    }

    /// Starts Pushpin in front of `origin_port`.
    pub fn start(&self, origin_port: u16) {
        let output = std::process::Command::new("bash")
            .arg(HARNESS)
            .arg("start")
            .arg(self.dir.path())
            .arg(self.http_port.to_string())
            .arg(self.offset.to_string())
            .arg(format!("127.0.0.1:{origin_port}"))
            .arg(PUSHPIN_SIG_KEY)
            .output()
            .expect("the harness runs");
        assert!(
            output.status.success(),
            "pushpin did not start: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The client port answers before Pushpin's proxy can hand holds to
        // its handler ("Accept service unavailable."): wait until a real
        // stream request is held.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.status_of("/events/pushpin-ready") == Some(200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pushpin never held a stream"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status code of a GET through Pushpin (reading only the head).
    fn status_of(&self, path: &str) -> Option<u16> {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            socket,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut head = [0_u8; 12];
        socket.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    pub fn stop(&self) {
        let _ = std::process::Command::new("bash")
            .arg(HARNESS)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        self.stop();
    }
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
            Backend::Sqlite | Backend::Pushpin => {
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

/// Lets `ann` read everything until `revoked` is set (for kick tests).
pub struct AnnUntilRevoked(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

#[rocket::async_trait]
impl Authorizer for AnnUntilRevoked {
    async fn can_read_channel(&self, user: Option<&User>, _channel: &str) -> bool {
        let revoked = self.0.load(std::sync::atomic::Ordering::SeqCst);
        !(revoked && user.is_some_and(|user| user.id == "ann"))
    }
}

impl AnnUntilRevoked {
    /// A stage using it, and the switch that revokes.
    pub fn stage() -> (Stage, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let revoked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let authorizer = AnnUntilRevoked(std::sync::Arc::clone(&revoked));
        (
            Stage::new().authorizer_named("test::AnnUntilRevoked", authorizer),
            revoked,
        )
    }
}

/// An application route that streams channels it computed.
#[rocket::get("/my-notifications")]
async fn my_notifications(stream: StreamRequest) -> EventStream {
    let channel = match stream.user() {
        Some(user) => format!("_user-{}", user.id),
        None => "public-notices".into(),
    };
    stream.channels([channel]).await
}

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef";
pub const PUBLISH_KEY: &str = "test-publish-key-0123456789";

/// An HS256 JWT with `claims` plus `exp` = now + `valid_secs` (negative:
/// expired), signed with `key`.
fn signed(key: &str, mut claims: serde_json::Value, valid_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    claims["exp"] = (now + valid_secs).into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("a signed token")
}

/// A user token for `user`, valid for `valid_secs` (negative: expired).
pub fn token(user: &str, valid_secs: i64) -> String {
    signed(JWT_SECRET, serde_json::json!({ "sub": user }), valid_secs)
}

/// A running server.
pub struct TestApp {
    /// Where clients connect: the app, or Pushpin in front of it.
    pub base: String,
    /// The app itself (equal to `base` without Pushpin).
    pub origin: String,
    pub pushpin: Option<Pushpin>,
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
            origin: format!("http://127.0.0.1:{port}"),
            pushpin: None,
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
        if backend == Backend::Pushpin {
            let pushpin = Pushpin::reserve()?;
            let database = TestDatabase::create(Backend::Sqlite).await?;
            let setup = Setup::new(&database.url)
                .with("eventstream.grip_proxies", pushpin.proxy_config())
                .with("eventstream.link_key", LINK_KEY);
            let mut app = configure(setup).launch().await;
            pushpin.start(app.port());
            app.base = pushpin.http.clone();
            app.pushpin = Some(pushpin);
            app.database = Some(database);
            return Some(app);
        }
        let database = TestDatabase::create(backend).await?;
        let mut app = configure(Setup::new(&database.url)).launch().await;
        app.database = Some(database);
        Some(app)
    }

    /// The app's own port.
    pub fn port(&self) -> u16 {
        self.origin
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("a port")
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
        if let Some(pushpin) = self.pushpin.take() {
            pushpin.stop();
        }
        self.shutdown.clone().notify();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }

    /// Stops the server but keeps its database, for a restart.
    pub async fn stop_keep_database(mut self) -> TestDatabase {
        if let Some(pushpin) = self.pushpin.take() {
            pushpin.stop();
        }
        self.shutdown.clone().notify();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        self.database.take().expect("database")
    }

    /// Stops only the app: Pushpin (and its clients) and the database stay.
    pub async fn stop_app_only(mut self) -> (Option<Pushpin>, TestDatabase) {
        self.shutdown.clone().notify();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        (self.pushpin.take(), self.database.take().expect("database"))
    }
}

/// A Grip-Sig as Pushpin makes it (HS256 with its sig_key, iss `pushpin`).
pub fn grip_sig(key: &str, valid_secs: i64) -> String {
    signed(key, serde_json::json!({ "iss": "pushpin" }), valid_secs)
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

/// Generates one `#[tokio::test]` per backend that runs the test body.
#[macro_export]
macro_rules! backend_tests {
    ($name:ident: $($test:ident => $backend:ident),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$name($crate::helpers::Backend::$backend).await;
                }
            )+
        }
    };
}

/// Runs a test body on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        $crate::backend_tests!($name: sqlite => Sqlite, postgres => Postgres);
    };
}

/// Runs a test body on SQLite, on PostgreSQL, and on SQLite with clients
/// going through Pushpin (GRIP), as three tests: the contract is the same.
#[macro_export]
macro_rules! on_every_path {
    ($name:ident) => {
        $crate::backend_tests!($name: sqlite => Sqlite, postgres => Postgres, through_pushpin => Pushpin);
    };
}
