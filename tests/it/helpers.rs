//! Shared set-up, the one place tests get it from: [`spawn_app`] starts a
//! real server on a free port with a fresh database (a temporary SQLite
//! file or a new PostgreSQL database), behind a real Pushpin when asked;
//! tokens and Grip-Sigs are signed here; [`Sse`] reads streams off the
//! socket. The harness that turns test functions into trials is in
//! `harness`, the log capture launch-failure tests read in `logs`.

mod cluster;
mod database;
mod harness;
mod instance;
mod logs;
mod pushpin;
#[cfg(feature = "redis")]
mod redis;
mod relay;
mod sse;

use std::time::Duration;

use eventstream_rocket::StreamError;
use eventstream_rocket::{
    Authorizer, EventStream, Events, MetricsSnapshot, PresenceRule, Stage, StreamRequest, User,
};
use rocket::figment::providers::Serialized;
use rocket::figment::value::Value;
use rocket::{Request, Shutdown};

pub use cluster::Cluster;
pub use database::{TestDatabase, postgres_admin_url};
pub use harness::{Flavor, Service, per_backend, probe_services, trial, trial_name};
pub use instance::{Instance, Launch, rss_kib, serve_if_asked};
pub use logs::{LogMark, capture_logs};
pub use sse::{Frame, Sse, open_after, seq_of};

pub use pushpin::Pushpin;
#[cfg(feature = "redis")]
pub use redis::RedisServer;
pub use relay::{Relay, SilencingRelay};

/// Which event-log backend a test runs against, and how clients reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Sqlite,
    Postgres,
    /// SQLite, with clients connecting through a real Pushpin (GRIP mode).
    Pushpin,
}

/// The `sig_key` the harness configures Pushpin with (Pushpin's own
/// default, "changeme", is public and refused).
pub const PUSHPIN_SIG_KEY: &str = "pushpin-sig-key-0123456789";
pub const LINK_KEY: &str = "test-link-key-0123456789abcdef";
/// The `bus_key` every test instance shares.
pub const BUS_KEY: &str = "test-bus-key-0123456789abcdef";

/// Runs `statements` on the database at `url` (SQLite or PostgreSQL), as
/// an operator or a restore would, behind the app's back.
pub async fn run_sql(url: &str, statements: &[&str]) {
    macro_rules! run {
        ($pool:ty) => {{
            let pool = <$pool>::connect(url).await.expect("the event log");
            for statement in statements {
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .expect(statement);
            }
            pool.close().await;
        }};
    }
    if url.starts_with("sqlite:") {
        run!(sqlx::SqlitePool)
    } else {
        run!(sqlx::PgPool)
    }
}

/// The settings of a bus.
pub type BusSettings = Vec<(&'static str, serde_json::Value)>;

/// A loopback port nothing listens on (bound, then let go): connecting to
/// it is refused, as with a proxy or a server that is down.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub fn postgres_bus() -> BusSettings {
    vec![("eventstream.broadcast", "postgres".into())]
}

#[cfg(feature = "redis")]
pub fn redis_bus(server: &RedisServer) -> BusSettings {
    vec![
        ("eventstream.broadcast", "redis".into()),
        ("eventstream.redis_url", server.url().into()),
    ]
}

/// An instance on `database` with `bus` on; the poll is an hour away, so
/// whatever arrives came through notifications.
pub fn on_bus(database: &str, bus: &BusSettings) -> App {
    let mut app = App::sharing_database(database).with("eventstream.broadcast_poll_secs", 3600);
    for (key, value) in bus {
        let value: Value = serde_json::from_value(value.clone()).expect("a setting");
        app = app.with(key, value);
    }
    app
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

    /// Readers see who else is there; `ghost-` users are never named.
    fn presence(&self, user: Option<&User>, _channel: &str) -> PresenceRule {
        PresenceRule {
            listed: !user.is_some_and(|user| user.id.starts_with("ghost-")),
            ..PresenceRule::MEMBER
        }
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

/// The README's handler, word for word: `Error` answers a failed send.
#[rocket::post("/rooms/<room>", data = "<text>")]
async fn say(
    room: &str,
    text: String,
    events: &rocket::State<Events>,
) -> Result<String, eventstream_rocket::Error> {
    let id = events
        .send_event(room, "message", &serde_json::json!({ "text": text }))
        .await?;
    // `None` on a live-only channel: its events are not stored, so they
    // have no id.
    Ok(id.map(|id| id.to_string()).unwrap_or_default())
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
    token_with(serde_json::json!({ "sub": user }), valid_secs)
}

/// A user token with these claims (and `exp`), signed with the test
/// servers' `jwt_secret`.
pub fn token_with(claims: serde_json::Value, valid_secs: i64) -> String {
    signed(JWT_SECRET, claims, valid_secs)
}

/// The `grip_proxies` setting for one proxy whose control API is at
/// `control_uri` and whose Grip-Sig is signed as Pushpin signs it.
pub fn grip_proxies(control_uri: &str) -> Value {
    Value::from(vec![Value::from(rocket::figment::util::map![
        "control_uri" => control_uri.to_owned(),
        "verify_iss" => "pushpin".to_owned(),
        "verify_key" => PUSHPIN_SIG_KEY.to_owned(),
    ])])
}

/// A Grip-Sig as Pushpin makes it (HS256 with its sig_key, iss `pushpin`).
pub fn grip_sig(key: &str, valid_secs: i64) -> String {
    signed(key, serde_json::json!({ "iss": "pushpin" }), valid_secs)
}

/// What [`spawn_app`] starts: which database, how clients reach the app,
/// the stage and the settings.
///
/// ```text
/// App::on(Setup::Sqlite).with("eventstream.keepalive_secs", 1)
/// App::on(Setup::Pushpin).stage(stage)                  // behind a fresh Pushpin
/// App::sharing_database(first.database_url())             // a second instance
/// App::on_database(kept).pushpin(pushpin)                 // a restart
/// ```
pub struct App {
    database: Database,
    proxy: Proxy,
    stage: Option<Stage>,
    settings: Vec<(String, Value)>,
}

enum Database {
    /// A fresh one for this backend, removed when the app stops.
    Fresh(Setup),
    /// One kept from a stopped app, removed when this one stops.
    Owned(TestDatabase),
    /// One something else owns (another app, the test), left in place.
    Shared(String),
}

enum Proxy {
    /// Clients connect to the app.
    Direct,
    /// Clients connect through Pushpin: a fresh one started in front of
    /// the app, or one still running from a stopped app.
    Pushpin(Option<Pushpin>),
    /// GRIP publishes to a control API that clients never go through.
    PublishOnly(String),
}

impl App {
    fn new(database: Database, proxy: Proxy) -> App {
        App {
            database,
            proxy,
            stage: None,
            settings: vec![
                ("eventstream.jwt_secret".into(), JWT_SECRET.into()),
                ("eventstream.publish_key".into(), PUBLISH_KEY.into()),
                // Read only with a bus.
                ("eventstream.bus_key".into(), BUS_KEY.into()),
            ],
        }
    }

    /// A fresh database of `backend`, removed when the app stops. With
    /// [`Setup::Pushpin`]: a SQLite database, and a fresh Pushpin in front
    /// of the app that clients connect through.
    pub fn on(backend: Setup) -> App {
        let proxy = match backend {
            Setup::Pushpin => Proxy::Pushpin(None),
            Setup::Sqlite | Setup::Postgres => Proxy::Direct,
        };
        App::new(Database::Fresh(backend), proxy)
    }

    /// A restart on `database`, kept from a stopped app; removed when this
    /// app stops.
    pub fn on_database(database: TestDatabase) -> App {
        App::new(Database::Owned(database), Proxy::Direct)
    }

    /// Another instance on a database that something else owns (a running
    /// app, or the test); left in place when this app stops.
    pub fn sharing_database(url: &str) -> App {
        App::new(Database::Shared(url.into()), Proxy::Direct)
    }

    /// Clients connect through `pushpin`, still running from a stopped app:
    /// the app listens on the port Pushpin routes to.
    pub fn pushpin(mut self, pushpin: Pushpin) -> App {
        self.proxy = Proxy::Pushpin(Some(pushpin));
        self
    }

    /// GRIP on, publishing to a proxy whose control API is at
    /// `control_uri` (nothing needs to answer there); clients connect to
    /// the app directly.
    pub fn grip_proxy_at(mut self, control_uri: &str) -> App {
        self.proxy = Proxy::PublishOnly(control_uri.into());
        self
    }

    /// Attaches `stage` instead of the default one (which registers
    /// [`TestAuthorizer`]).
    pub fn stage(mut self, stage: Stage) -> App {
        self.stage = Some(stage);
        self
    }

    /// Adds (or overrides) a setting, e.g. `("eventstream.keepalive_secs", 1)`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> App {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Removes a setting, e.g. the default publish key.
    pub fn without(mut self, key: &str) -> App {
        self.settings.retain(|(name, _)| name != key);
        self
    }
}

/// Why a server did not launch: Rocket's error, and the lines logged at
/// warn or error level while it tried (by this launch, or by a test
/// running at the same time).
#[derive(Debug)]
pub struct LaunchError {
    pub rocket: String,
    pub logged: Vec<String>,
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.rocket)?;
        for line in &self.logged {
            write!(f, "\n  logged: {line}")?;
        }
        Ok(())
    }
}

/// Tries to start `app` and returns why launch was aborted; panics if it
/// launched.
pub async fn launch_error(app: App) -> LaunchError {
    match try_spawn_app(app).await {
        Ok(app) => {
            app.stop().await;
            panic!("launch should have been aborted");
        }
        Err(error) => error,
    }
}

/// Starts `app`; returns once it accepts connections (through Pushpin too).
pub async fn spawn_app(app: App) -> TestApp {
    try_spawn_app(app)
        .await
        .unwrap_or_else(|error| panic!("the server did not launch: {error}"))
}

/// Starts `app`, or returns why launch was aborted.
pub async fn try_spawn_app(app: App) -> Result<TestApp, LaunchError> {
    let App {
        database,
        proxy,
        stage,
        settings,
    } = app;
    let (database_url, database) = match database {
        Database::Fresh(backend) => {
            let database = TestDatabase::create(backend).await;
            (database.url.clone(), Some(database))
        }
        Database::Owned(database) => (database.url.clone(), Some(database)),
        Database::Shared(url) => (url, None),
    };
    let (mut pushpin, grip_control) = match proxy {
        Proxy::Direct => (None, None),
        Proxy::PublishOnly(control) => (None, Some(control)),
        Proxy::Pushpin(kept) => {
            let pushpin = kept.unwrap_or_else(Pushpin::reserve);
            let control = pushpin.control.clone();
            (Some(pushpin), Some(control))
        }
    };
    // A Pushpin kept from a stopped app routes to that app's port.
    let port = pushpin.as_ref().and_then(Pushpin::origin_port).unwrap_or(0);
    let mut figment = rocket::Config::figment()
        .merge(("port", port))
        .merge(("address", "127.0.0.1"))
        .merge(("log_level", "off"))
        .merge(("shutdown.grace", 1))
        .merge(("shutdown.mercy", 1))
        .merge(("databases.eventstream.url", database_url.as_str()))
        .merge(("databases.eventstream.max_connections", 8));
    let grip = grip_control.map(|control| {
        [
            (
                "eventstream.grip_proxies".to_owned(),
                grip_proxies(&control),
            ),
            ("eventstream.link_key".to_owned(), Value::from(LINK_KEY)),
        ]
    });
    for (key, value) in grip.iter().flatten().chain(&settings) {
        figment = figment.merge(Serialized::global(key, value));
    }

    let (ready, started) = tokio::sync::oneshot::channel();
    let ready = std::sync::Mutex::new(Some(ready));
    let stage = stage.unwrap_or_else(|| Stage::new().authorizer::<TestAuthorizer>());
    let rocket = rocket::custom(figment)
        .attach(stage)
        .mount("/", rocket::routes![my_notifications, say])
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
    let mark = LogMark::now();
    let ignited = match rocket.ignite().await {
        Ok(ignited) => ignited,
        Err(error) => return Err(aborted(format!("{error:?}"), mark, database).await),
    };
    let server = tokio::spawn(async move {
        ignited
            .launch()
            .await
            .map(drop)
            .map_err(|error| format!("{error:?}"))
    });
    let started = tokio::time::timeout(Duration::from_secs(30), started)
        .await
        .expect("the server started within 30 s");
    let Ok((port, events, shutdown)) = started else {
        // Liftoff never came: launch failed (the port is taken, say).
        let why = match server.await {
            Ok(Err(why)) => why,
            Ok(Ok(())) => "the server stopped before liftoff".to_owned(),
            Err(error) => error.to_string(),
        };
        return Err(aborted(why, mark, database).await);
    };
    if let Some(pushpin) = pushpin.as_mut()
        && pushpin.origin_port().is_none()
    {
        pushpin.start(port);
    }
    let origin = format!("http://127.0.0.1:{port}");
    Ok(TestApp {
        base: pushpin
            .as_ref()
            .map_or_else(|| origin.clone(), |pushpin| pushpin.http.clone()),
        origin,
        events,
        http: reqwest::Client::new(),
        database_url,
        database,
        pushpin,
        shutdown,
        server,
    })
}

/// The error for a launch that failed, after removing its database.
async fn aborted(rocket: String, mark: LogMark, database: Option<TestDatabase>) -> LaunchError {
    let logged = mark.lines_since();
    if let Some(database) = database {
        database.remove().await;
    }
    LaunchError { rocket, logged }
}

/// A running server.
pub struct TestApp {
    /// Where clients connect: the app, or Pushpin in front of it.
    pub base: String,
    /// The app itself (equal to `base` without Pushpin).
    pub origin: String,
    pub events: Events,
    pub http: reqwest::Client,
    database_url: String,
    database: Option<TestDatabase>,
    pushpin: Option<Pushpin>,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<Result<(), String>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The health check's status code and body (at `/healthz`, where the
    /// tests that turn it on put it).
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(self.url("/healthz"))
            .send()
            .await
            .expect("health answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// The event log's database, for a second instance on it.
    pub fn database_url(&self) -> &str {
        &self.database_url
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

    /// Publishes a `message` through the Rust API and returns the id text
    /// (empty on a non-persistent channel).
    pub async fn send_event(&self, channel: &str, data: serde_json::Value) -> String {
        self.events
            .send_event(channel, "message", &data)
            .await
            .expect("send")
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// Waits until the app's counters satisfy `done`; panics with `what`
    /// (and the counters) if they do not within `within`.
    pub async fn wait_for_metrics(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&MetricsSnapshot) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        loop {
            let metrics = self.events.metrics();
            if done(&metrics) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {metrics:?}"
            );
            ticks.tick().await;
        }
    }

    /// Behind Pushpin, waits until the proxy has accepted `items` items:
    /// a stream opened then finds nothing still on its way to the proxy
    /// (which it would get live, after the backlog of its other channels).
    /// Without a proxy, returns at once.
    pub async fn wait_until_the_proxy_has(&self, items: u64) {
        if self.pushpin.is_some() {
            self.wait_for_metrics(
                "the proxy never accepted every item",
                Duration::from_secs(10),
                |metrics| metrics.grip_published >= items,
            )
            .await;
        }
    }

    /// Shuts the app down; its streams end.
    async fn shut_down(&mut self) {
        self.shutdown.clone().notify();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
    }

    /// Stops the server and fails unless Rocket's shutdown (fairings
    /// included: the database pool waits for every connection to come
    /// back) ends within `within`.
    pub async fn stop_within(mut self, within: Duration) {
        self.shutdown.clone().notify();
        let ended = tokio::time::timeout(within, &mut self.server).await;
        assert!(ended.is_ok(), "Rocket did not shut down within {within:?}");
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }

    /// Stops Pushpin and the server (streams end) and removes the database.
    pub async fn stop(mut self) {
        drop(self.pushpin.take());
        self.shut_down().await;
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }

    /// Stops Pushpin and the server but keeps the database, for a restart
    /// ([`App::on_database`]).
    pub async fn stop_keep_database(mut self) -> TestDatabase {
        drop(self.pushpin.take());
        self.shut_down().await;
        self.database.take().expect("the app owns its database")
    }

    /// Stops only the app: Pushpin (holding its clients) and the database
    /// stay, for a restart behind the same Pushpin ([`App::pushpin`]).
    pub async fn stop_app_only(mut self) -> (Pushpin, TestDatabase) {
        self.shut_down().await;
        (
            self.pushpin.take().expect("a Pushpin in front"),
            self.database.take().expect("the app owns its database"),
        )
    }
}
