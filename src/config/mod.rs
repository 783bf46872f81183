//! Configuration: `[default.eventstream]` in `Rocket.toml`, plus the flat
//! django-eventstream setting names accepted as aliases.
//!
//! ```toml
//! [default.eventstream]
//! mount = "/events"
//! authorizer = "my_app::auth::PrivateChannels"
//! keepalive_secs = 20
//! allow_origins = ["https://app.example.com"]
//!
//! [default]
//! # django-eventstream's names, accepted at the top of a profile in any case:
//! EVENTSTREAM_ALLOW_CREDENTIALS = true
//! ```
//!
//! Every key is validated when Rocket ignites; a bad value, an unknown key,
//! or an alias that disagrees with its nested key aborts launch with a
//! message naming the key.

mod aliases;
mod error;
mod grip;
mod secret;
mod validate;

use rocket::figment::{Figment, providers::Serialized};
use serde::Deserialize;

pub use error::ConfigError;
#[cfg(test)]
pub(crate) use grip::FASTLY_PUBLIC_KEY;
pub use grip::GripProxyConfig;
pub(crate) use grip::MAX_GRIP_PRESENCE_CHANNELS;
pub(crate) use grip::{PublishAuth, decode_key};
pub use secret::Secret;
pub(crate) use secret::redact_url;

/// Largest channel limit: per-subscriber bookkeeping uses a 64-bit mask.
pub(crate) const MAX_CHANNEL_LIMIT: usize = 64;

/// How far a committed event must have travelled before `send_event` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// SQLite (WAL, `synchronous=NORMAL`): survives a crash of the
    /// application; an OS crash or power loss may lose the last commits.
    /// PostgreSQL (`synchronous_commit=local`): the server's WAL is flushed
    /// before `send_event` returns, so it survives crashes of the
    /// application, of PostgreSQL, of the OS and power loss on the primary.
    Process,
    /// SQLite (`synchronous=FULL`): also survives an OS crash and power
    /// loss. PostgreSQL (`synchronous_commit=on`): also waits for the
    /// server's synchronous standbys, if it has any, so losing the primary
    /// loses nothing. Concurrent sends share one commit, so the cost of the
    /// flush is amortized.
    Power,
}

/// How live events reach the streams of other instances of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Broadcast {
    /// One instance: events reach this process's streams (and the GRIP
    /// proxies) only. Other instances on the same database see them when
    /// their clients reconnect, not live.
    #[default]
    Local,
    /// Instances sharing one PostgreSQL event log tell each other over
    /// `LISTEN`/`NOTIFY`: every committed batch, live-only event and kick
    /// reaches the streams of every instance. Needs PostgreSQL storage.
    Postgres,
    /// Instances tell each other over Redis pub/sub (`redis_url`), after
    /// each commit; the event log must still be shared (PostgreSQL, or one
    /// SQLite file on one host with `broadcast_shared_sqlite`). Needs the
    /// crate's `redis` feature.
    Redis,
}

/// Which cross-origin callers may read streams and use the publish API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// No CORS headers are sent (same-origin use only).
    #[default]
    None,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// The request's `Origin` is echoed back when it is one of these.
    List(Vec<String>),
}

/// A list of strings given as a TOML array or as one comma-separated
/// string (the form django-eventstream's settings and `ROCKET_*` variables
/// use), trimmed, without empty entries.
fn string_or_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::One(one) => one.split(',').map(str::to_owned).collect(),
        Raw::Many(many) => many,
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

impl<'de> Deserialize<'de> for AllowedOrigins {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list: Vec<String> = string_or_list(deserializer)?
            .into_iter()
            .map(|origin| origin.trim_end_matches('/').to_owned())
            .collect();
        if list.iter().any(|origin| origin == "*") {
            return if list.len() == 1 {
                Ok(AllowedOrigins::Any)
            } else {
                Err(serde::de::Error::custom(
                    "\"*\" cannot be mixed with other origins",
                ))
            };
        }
        Ok(if list.is_empty() {
            AllowedOrigins::None
        } else {
            AllowedOrigins::List(list)
        })
    }
}

/// Header names, from a list or a comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderList(pub Vec<String>);

impl Default for HeaderList {
    fn default() -> Self {
        HeaderList(vec!["Last-Event-ID".into(), "Authorization".into()])
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        string_or_list(deserializer).map(HeaderList)
    }
}

/// The `[eventstream]` configuration. Every field has a default; see the
/// README's configuration table. Read it with
/// [`Events::config`](crate::Events::config); build one with
/// [`Config::from_figment`] (or `Default` and field assignments).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Where the routes are mounted.
    ///
    /// Default: `"/events"`.
    pub mount: String,
    /// Which registered `Authorizer` to use, by name: its path, or the type's
    /// own name (`PrivateChannels`).
    ///
    /// Default: the only registered one, else `eventstream_rocket::AllowAll`.
    pub authorizer: Option<String>,
    /// Most channels per stream (1–64).
    ///
    /// Default: `10`.
    pub channel_limit: usize,
    /// A `keep-alive` event after this much silence.
    ///
    /// Default: `20`.
    pub keepalive_secs: u64,
    /// Send a 2 KB comment first, for very old browsers.
    ///
    /// Default: `false`.
    pub padding: bool,
    /// CORS origins: a list, a comma-separated string, or `"*"`.
    ///
    /// Default: none.
    pub allow_origins: AllowedOrigins,
    /// `Access-Control-Allow-Credentials: true` (not with `"*"`).
    ///
    /// Default: `false`.
    pub allow_credentials: bool,
    /// `Access-Control-Allow-Headers`.
    ///
    /// Default: `["Last-Event-ID", "Authorization"]`.
    pub allow_headers: HeaderList,
    /// HS256 secret of the built-in identity (≥ 16 bytes); without it, tokens
    /// are refused.
    ///
    /// Default: none.
    pub jwt_secret: Option<Secret>,
    /// When set, user tokens must carry this `iss` / `aud` (and
    /// `Events::token_for` signs them in); `nbf` is always checked.
    ///
    /// Default: none.
    pub jwt_issuer: Option<String>,
    /// When set, user tokens must carry this `iss` / `aud` (and
    /// `Events::token_for` signs them in); `nbf` is always checked.
    ///
    /// Default: none.
    pub jwt_audience: Option<String>,
    /// The private cookie `Events::sign_in` sets; the built-in identity reads
    /// it when a request carries no token (a bad token is refused, cookie or
    /// not). Rocket encrypts it with its `secret_key` (set it in release).
    /// Needs the `cookies` cargo feature.
    ///
    /// Default: none.
    pub identity_cookie: Option<String>,
    /// Bearer key of `POST /events/<channel>` (≥ 16 characters); without it,
    /// the API is not mounted.
    ///
    /// Default: none.
    pub publish_key: Option<Secret>,
    /// Largest event data, for `send` and the publish API.
    ///
    /// Default: `65536`.
    pub max_event_bytes: usize,
    /// PostgreSQL.
    ///
    /// Default: SQLite.
    pub durability: Durability,
    /// Events older than this are trimmed.
    ///
    /// Default: `86400`.
    pub retention_secs: u64,
    /// At most this many events kept per channel.
    ///
    /// Default: unlimited.
    pub retention_count: Option<u64>,
    /// How often retention runs (in the background, never on the send path).
    ///
    /// Default: `60`.
    pub trim_interval_secs: u64,
    /// Most streams this process holds open; over it, clients get `retry:` (1–5
    /// s, jittered) and come back.
    ///
    /// Default: unlimited.
    pub max_streams: Option<usize>,
    /// Most streams per client address (the peer's, or `trusted_ip_header`'s).
    ///
    /// Default: unlimited.
    pub max_streams_per_ip: Option<usize>,
    /// Header a trusted proxy in front sets to the client address, e.g.
    /// `X-Forwarded-For` (rightmost entry); never set it without such a proxy.
    ///
    /// Default: none.
    pub trusted_ip_header: Option<String>,
    /// Live frames a stream may have queued before it catches up from storage
    /// instead.
    ///
    /// Default: `256`.
    pub queue_capacity: usize,
    /// Frame bytes a stream may have queued before it catches up from storage
    /// instead (with `queue_capacity`).
    ///
    /// Default: `1048576`.
    pub max_queued_bytes: usize,
    /// Longest id vector a stream may carry (its persistent channels' quoted
    /// names, 20 digits each); a longer request gets a `bad-request` error.
    ///
    /// Default: `4096`.
    pub max_id_vector_bytes: usize,
    /// Queued frames are coalesced into body chunks of up to this size; a
    /// replay chunk stops at 8 × this (after at least one event). Rocket
    /// reserves this much per stream: `2048` saves about 2 KB of RSS per idle
    /// stream, at about a quarter of fan-out and a third of replay speed
    /// (BENCHMARKS.md).
    ///
    /// Default: `8192`.
    pub chunk_size: usize,
    /// Events read per query while replaying.
    ///
    /// Default: `500`.
    pub replay_page: usize,
    /// Most events committed in one transaction.
    ///
    /// Default: `256`.
    pub commit_batch: usize,
    /// Which `[databases.<name>]` entry holds the event log.
    ///
    /// Default: `"eventstream"`.
    pub database: String,
    /// How live events reach other instances of the app: `"local"` (one
    /// instance), `"postgres"` (instances sharing a PostgreSQL event log tell
    /// each other over `LISTEN`/`NOTIFY`; refused with SQLite) or `"redis"`
    /// (over Redis pub/sub; needs the crate's `redis` feature). See `docs/deploying.md`.
    ///
    /// Default: `"local"`.
    pub broadcast: Broadcast,
    /// With `"postgres"`: how often each instance compares its listened
    /// channels with the event log; an event whose notification was lost
    /// reaches its streams at most this late (1–3600).
    ///
    /// Default: `5`.
    pub broadcast_poll_secs: u64,
    /// With `"redis"`: the server (`redis://:password@host:port/db`; the
    /// password is never logged). django-eventstream's `EVENTSTREAM_REDIS = {
    /// host, port, db, password }` is accepted instead.
    ///
    /// Default: `"redis://127.0.0.1:6379"`.
    pub redis_url: Option<Secret>,
    /// With `"postgres"` or `"redis"`: required, at least 16 bytes, the same on
    /// every instance of the deployment. It seals what instances tell each
    /// other (nobody else who can `NOTIFY` or `PUBLISH` moves a stream) and,
    /// with the event log's own id, names the bus channel, so deployments
    /// sharing a Redis server or a database never hear each other.
    ///
    /// Default: none.
    pub bus_key: Option<Secret>,
    /// With `"redis"` and SQLite storage: every instance opens the same SQLite
    /// file on one host (otherwise refused: resume needs one shared event log).
    ///
    /// Default: `false`.
    pub broadcast_shared_sqlite: bool,
    /// E.g. `"/healthz"`: 200 `ok`, 200 `degraded` (bus or a GRIP proxy down;
    /// streams still work from storage) or 503 `unavailable` (storage down),
    /// with details; must be outside `mount`.
    ///
    /// Default: off.
    pub health_path: Option<String>,
    /// E.g. `"/metrics"`: Prometheus/OpenMetrics text (counters, commit batch
    /// sizes, publish latency; no per-channel labels); must be outside `mount`.
    ///
    /// Default: off.
    pub metrics_path: Option<String>,
    /// E.g. `"/explain"`: the delivery trace (`GET <path>?channel=…`), behind
    /// `explain_key`, or `publish_key` without one; must be outside `mount`.
    ///
    /// Default: off.
    pub explain_path: Option<String>,
    /// Bearer key of `explain_path` (≥ 16 characters), for operators who
    /// should not hold the publish key.
    ///
    /// Default: none (`publish_key`).
    pub explain_key: Option<Secret>,
    /// With `metrics_path`: time each step of a persisted event's way out
    /// (writer queue, commit, hub, fan-out, publish answer, each stream's wake-
    /// up and hand-over to Rocket) in
    /// `eventstream_delivery_stage_seconds{stage=...}`; costs clock reads per
    /// event and a histogram update per stream and event, so it is for
    /// diagnosis.
    ///
    /// Default: `false`.
    pub delivery_timing: bool,
    /// GRIP proxies: `{ control_uri, control_iss, key, verify_iss, verify_key
    /// }` (keys plain or `base64:`).
    ///
    /// Default: none.
    pub grip_proxies: Vec<GripProxyConfig>,
    /// One proxy as a URL with `iss`, `key`, `verify-iss`, `verify-key`
    /// parameters.
    ///
    /// Default: none.
    pub grip_url: Option<Secret>,
    /// Secret that signs next links; stable across restarts and instances.
    ///
    /// Default: none (required with GRIP).
    pub link_key: Option<Secret>,
    /// Idle time after which a proxied stream re-fetches its link.
    ///
    /// Default: `120`.
    pub grip_link_timeout_secs: u64,
    /// Path the proxy adds in front of the app's paths, for next links.
    ///
    /// Default: `""`.
    pub grip_path_prefix: String,
    /// At most one `stream-presence` event per channel per this many
    /// milliseconds, however many readers join or leave meanwhile.
    ///
    /// Default: `1000`.
    pub presence_interval_ms: u64,
    /// Users named in a presence answer or event, at most.
    ///
    /// Default: `100`.
    pub presence_list_max: usize,
    /// How long an instance's presence report stands without a word from
    /// it (it renews every third of this): a killed instance's readers
    /// leave the counts within it.
    ///
    /// Default: `15`.
    pub presence_lease_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mount: "/events".into(),
            authorizer: None,
            channel_limit: 10,
            keepalive_secs: 20,
            padding: false,
            allow_origins: AllowedOrigins::None,
            allow_credentials: false,
            allow_headers: HeaderList::default(),
            jwt_secret: None,
            jwt_issuer: None,
            jwt_audience: None,
            identity_cookie: None,
            publish_key: None,
            max_event_bytes: 64 * 1024,
            durability: Durability::Process,
            retention_secs: 24 * 60 * 60,
            retention_count: None,
            trim_interval_secs: 60,
            max_streams: None,
            max_streams_per_ip: None,
            trusted_ip_header: None,
            queue_capacity: 256,
            max_queued_bytes: 1024 * 1024,
            max_id_vector_bytes: 4096,
            chunk_size: 8 * 1024,
            replay_page: 500,
            commit_batch: 256,
            database: "eventstream".into(),
            broadcast: Broadcast::Local,
            broadcast_poll_secs: 5,
            redis_url: None,
            bus_key: None,
            broadcast_shared_sqlite: false,
            health_path: None,
            metrics_path: None,
            explain_path: None,
            explain_key: None,
            delivery_timing: false,
            grip_proxies: Vec::new(),
            grip_url: None,
            link_key: None,
            grip_link_timeout_secs: 120,
            grip_path_prefix: String::new(),
            presence_interval_ms: 1000,
            presence_list_max: 100,
            presence_lease_secs: 15,
        }
    }
}

impl Config {
    /// How long a stream held by a GRIP proxy counts in presence after its
    /// last request: two link timeouts (the proxy re-fetches a link at
    /// most one timeout after the last, and its update queue may hold it
    /// back) and 5 s.
    pub fn presence_proxied_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.grip_link_timeout_secs * 2 + 5)
    }

    /// Reads and validates the configuration from Rocket's figment.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let dict = aliases::merged(figment)?;
        let mut config: Config = Figment::from(Serialized::defaults(dict))
            .extract()
            .map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Whether any GRIP proxy is configured.
    pub fn grip_enabled(&self) -> bool {
        !self.grip_proxies.is_empty() || self.grip_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;
    use rocket::figment::providers::{Format, Toml};

    /// What launch would print when it refuses a configuration.
    #[derive(Debug)]
    struct Refused(String);

    impl std::ops::Deref for Refused {
        type Target = str;

        fn deref(&self) -> &str {
            &self.0
        }
    }

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    fn load(toml: &str) -> Result<Config, Refused> {
        Config::from_figment(&Figment::from(Toml::string(toml)))
            .map_err(|error| Refused(error.to_string()))
    }

    #[test]
    fn eventstream_redis_is_read_as_a_redis_url() {
        let config = load(
            "EVENTSTREAM_REDIS = { host = 'cache.internal', port = 6380, db = 2, password = 'p@ss word' }\n\
             [eventstream]\nbroadcast = 'postgres'\nbus_key = 'bus-key-0123456789abcdef'\n",
        )
        .expect("valid");
        let url = config.redis_url.clone().expect("set");
        assert_eq!(url.expose(), "redis://:p%40ss%20word@cache.internal:6380/2");
        assert_eq!(format!("{config:?}").matches("p%40ss").count(), 0);
        let error = load("EVENTSTREAM_REDIS = { hots = 'x' }\n").expect_err("unknown field");
        assert!(error.contains("EVENTSTREAM_REDIS.hots"), "{error}");
        let error = load(
            "EVENTSTREAM_REDIS = { host = 'a' }\n[eventstream]\nredis_url = 'redis://b:6379'\n",
        )
        .expect_err("two values");
        assert!(error.contains("eventstream.redis_url"), "{error}");
    }

    #[test]
    #[cfg(not(feature = "redis"))]
    fn redis_needs_its_cargo_feature() {
        let error = load("[eventstream]\nbroadcast = 'redis'\n").expect_err("no feature");
        assert!(
            error.starts_with("eventstream.broadcast:") && error.contains("`redis` cargo feature"),
            "{error}"
        );
    }

    #[test]
    fn operator_paths_stay_outside_the_mount() {
        let error = load("[eventstream]\nmetrics_path = '/events/metrics'\n").expect_err("under");
        assert!(error.starts_with("eventstream.metrics_path:"), "{error}");
        let error = load("[eventstream]\nhealth_path = 'healthz'\n").expect_err("relative");
        assert!(error.starts_with("eventstream.health_path:"), "{error}");
        let config = load("[eventstream]\nhealth_path = '/healthz'\nmetrics_path = '/metrics'\n")
            .expect("valid");
        assert_eq!(config.health_path.as_deref(), Some("/healthz"));
    }

    #[test]
    fn defaults_apply_without_a_section() {
        let config = load("").expect("defaults are valid");
        assert_eq!(config.mount, "/events");
        assert_eq!(config.channel_limit, 10);
        assert_eq!(config.keepalive_secs, 20);
        assert_eq!(config.durability, Durability::Process);
        assert_eq!(config.allow_headers.0, ["Last-Event-ID", "Authorization"]);
    }

    #[test]
    fn aliases_are_case_insensitive_and_merge() {
        let config = load(
            "EVENTSTREAM_AUTHORIZER_CLASS = 'app::Auth'\neventstream_allow_origins = ['https://a.example']\nEventStream_Allow_Credentials = true\nEVENTSTREAM_ALLOW_HEADERS = 'Last-Event-ID, X-Token'\n[eventstream]\nauthorizer = 'app::Auth'\n",
        )
        .expect("valid");
        assert_eq!(config.authorizer.as_deref(), Some("app::Auth"));
        assert_eq!(
            config.allow_origins,
            AllowedOrigins::List(vec!["https://a.example".into()])
        );
        assert!(config.allow_credentials);
        assert_eq!(config.allow_headers.0, ["Last-Event-ID", "X-Token"]);
    }

    #[test]
    fn conflicting_alias_names_both_keys() {
        let error = load("EVENTSTREAM_AUTHORIZER = 'a::B'\n[eventstream]\nauthorizer = 'c::D'\n")
            .expect_err("conflict");
        assert!(error.contains("EVENTSTREAM_AUTHORIZER"), "{error}");
        assert!(error.contains("eventstream.authorizer"), "{error}");
        let error =
            load("EVENTSTREAM_AUTHORIZER = 'a::B'\nEVENTSTREAM_CHANNELMANAGER_CLASS = 'c::D'\n")
                .expect_err("conflict between aliases");
        assert!(
            error.contains("EVENTSTREAM_CHANNELMANAGER_CLASS")
                || error.contains("EVENTSTREAM_AUTHORIZER")
        );
    }

    #[test]
    fn unknown_and_invalid_keys_are_named() {
        let error = load("[eventstream]\nkeepalive = 5\n").expect_err("unknown key");
        assert!(error.starts_with("eventstream.keepalive:"), "{error}");
        let error = load("[eventstream]\ndurability = 'fast'\n").expect_err("bad value");
        assert!(error.starts_with("eventstream.durability:"), "{error}");
        let error = load("[eventstream]\nchannel_limit = 0\n").expect_err("bad range");
        assert!(error.contains("eventstream.channel_limit"), "{error}");
        let error = load("[eventstream]\nallow_origins = '*'\nallow_credentials = true\n")
            .expect_err("wildcard with credentials");
        assert!(error.contains("allow_origins"), "{error}");
        let error =
            load("[eventstream]\nallow_origins = ['example.com']\n").expect_err("not an origin");
        assert!(error.contains("example.com"), "{error}");
    }

    #[test]
    fn origins_accept_string_list_and_wildcard() {
        assert_eq!(
            load("[eventstream]\nallow_origins = '*'\n")
                .expect("valid")
                .allow_origins,
            AllowedOrigins::Any
        );
        assert_eq!(
            load("[eventstream]\nallow_origins = 'https://a.example/, https://b.example'\n")
                .expect("valid")
                .allow_origins,
            AllowedOrigins::List(vec!["https://a.example".into(), "https://b.example".into()])
        );
        assert_eq!(
            load("[eventstream]\nallow_origins = ''\n")
                .expect("valid")
                .allow_origins,
            AllowedOrigins::None
        );
    }

    #[test]
    fn the_delivery_trace_needs_a_key_and_its_own_path() {
        let error = load("[eventstream]\nexplain_path = '/explain'\n").expect_err("no key");
        assert!(error.contains("explain_key"), "{error}");
        let config =
            load("[eventstream]\nexplain_path = '/explain'\npublish_key = '0123456789abcdef0'\n")
                .expect("the publish key serves");
        assert_eq!(config.explain_path.as_deref(), Some("/explain"));
        let error =
            load("[eventstream]\nexplain_path = '/events/x'\nexplain_key = '0123456789abcdef0'\n")
                .expect_err("under mount");
        assert!(error.contains("explain_path"), "{error}");
        let error = load("[eventstream]\nexplain_path = '/explain'\nexplain_key = 'short'\n")
            .expect_err("a short key");
        assert!(error.contains("explain_key"), "{error}");
    }

    #[test]
    fn presence_renews_its_lease_often_enough() {
        let error = load("[eventstream]\npresence_interval_ms = 5000\npresence_lease_secs = 3\n")
            .expect_err("an interval longer than a third of the lease");
        assert!(error.contains("presence_interval_ms"), "{error}");
        load("[eventstream]\npresence_interval_ms = 1000\npresence_lease_secs = 3\n")
            .expect("a third of the lease");
    }

    #[test]
    fn grip_settings_are_checked_at_launch() {
        let pushpin = "grip_proxies = [{ control_uri = 'http://127.0.0.1:5561', verify_iss = 'pushpin', verify_key = 'pushpin-sig-key-0123456789' }]";
        let config = load(&format!(
            "[eventstream]\n{pushpin}\nlink_key = '0123456789abcdef0'\n"
        ))
        .expect("valid");
        assert_eq!(config.grip_proxies.len(), 1);
        let error = load(&format!("[eventstream]\n{pushpin}\n")).expect_err("no link_key");
        assert!(error.contains("link_key"), "{error}");
        let error = load(&format!(
            "[eventstream]\n{pushpin}\nlink_key = '0123456789abcdef0'\nchannel_limit = 19\n"
        ))
        .expect_err("too many channels for Pushpin");
        assert!(
            error.contains("channel_limit") && error.contains("18"),
            "{error}"
        );
        let error = load(
            "[eventstream]\ngrip_url = 'http://127.0.0.1:5561'\nlink_key = '0123456789abcdef0'\n",
        )
        .expect_err("no way to verify Grip-Sig");
        assert!(error.contains("sig_key"), "{error}");
        let error = load("[eventstream]\ngrip_proxies = [{ control_uri = 'x', verify_key = 'k' }]\nlink_key = '0123456789abcdef0'\n")
            .expect_err("bad uri");
        assert!(error.contains("grip_proxies[0]"), "{error}");
        let config = load("GRIP_URL = 'http://127.0.0.1:5561?verify-key=pushpin-sig-key-0123456789'\n[eventstream]\nlink_key = '0123456789abcdef0'\n")
            .expect("the GRIP_URL alias");
        assert_eq!(
            config.grip_proxies[0]
                .verify_key
                .as_ref()
                .map(Secret::expose),
            Some("pushpin-sig-key-0123456789")
        );
    }

    #[test]
    fn mount_is_normalized() {
        assert_eq!(
            load("[eventstream]\nmount = '/sse/'\n")
                .expect("valid")
                .mount,
            "/sse"
        );
        assert!(load("[eventstream]\nmount = 'sse'\n").is_err());
    }
}
