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

mod grip;
mod secret;

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rocket::figment::value::{Dict, Value};
use rocket::figment::{Figment, providers::Serialized};
use serde::Deserialize;

#[cfg(test)]
pub(crate) use grip::FASTLY_PUBLIC_KEY;
pub use grip::GripProxyConfig;
pub(crate) use grip::decode_key;
pub use secret::Secret;
pub(crate) use secret::redact_url;

/// Flat, django-eventstream-style names (matched case-insensitively at the
/// top level of the profile) and the `[eventstream]` key each stands for.
const ALIASES: &[(&str, &str)] = &[
    ("eventstream_authorizer", "authorizer"),
    ("eventstream_channelmanager_class", "authorizer"),
    ("eventstream_authorizer_class", "authorizer"),
    ("eventstream_allow_origin", "allow_origins"),
    ("eventstream_allow_origins", "allow_origins"),
    ("eventstream_allow_credentials", "allow_credentials"),
    ("eventstream_allow_headers", "allow_headers"),
    ("grip_proxies", "grip_proxies"),
    ("grip_url", "grip_url"),
];

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
    /// Where the stream and the publish API are mounted.
    pub mount: String,
    /// The registered authorizer to use, by name (its Rust path).
    pub authorizer: Option<String>,
    /// Most channels one stream may subscribe to.
    pub channel_limit: usize,
    /// Seconds without output after which a `keep-alive` event is sent.
    pub keepalive_secs: u64,
    /// Send a 2 KB comment first, for very old browsers.
    pub padding: bool,
    /// Cross-origin callers allowed to connect.
    pub allow_origins: AllowedOrigins,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// Request headers a cross-origin caller may send.
    pub allow_headers: HeaderList,
    /// HS256 secret for the built-in JWT identity; tokens are refused
    /// without it.
    pub jwt_secret: Option<Secret>,
    /// When set, user tokens must carry this `iss`; `Events::token_for`
    /// signs it in.
    pub jwt_issuer: Option<String>,
    /// When set, user tokens must carry this `aud`; `Events::token_for`
    /// signs it in.
    pub jwt_audience: Option<String>,
    /// Bearer key for the publish HTTP API; the API is off without it.
    pub publish_key: Option<Secret>,
    /// Largest encoded event data accepted, in bytes.
    pub max_event_bytes: usize,
    /// What a committed event survives.
    pub durability: Durability,
    /// Events older than this many seconds are trimmed.
    pub retention_secs: u64,
    /// At most this many events are kept per channel (unlimited if unset).
    pub retention_count: Option<u64>,
    /// How often the trimming task runs.
    pub trim_interval_secs: u64,
    /// Most streams this process holds open at once; unlimited if unset.
    /// Over it, clients are told to retry later.
    pub max_streams: Option<usize>,
    /// Most streams from one client address (the peer address, or
    /// `trusted_ip_header`); unlimited if unset.
    pub max_streams_per_ip: Option<usize>,
    /// A header a trusted proxy in front sets to the client's address, e.g.
    /// `X-Forwarded-For` (its rightmost entry counts, the one the proxy
    /// added). Unset: the peer address; `X-Real-IP` is never trusted on
    /// its own, since any client can send it.
    pub trusted_ip_header: Option<String>,
    /// Frames a subscriber may have queued before it falls back to replaying
    /// from storage.
    pub queue_capacity: usize,
    /// Frame bytes a subscriber may have queued before it falls back to
    /// replaying from storage (with `queue_capacity`, whichever comes first).
    pub max_queued_bytes: usize,
    /// Longest id vector a stream may carry: its persistent channels'
    /// quoted names, counting 20 digits per sequence. Every event of a
    /// multi-channel stream repeats it, so it bounds what one event costs.
    pub max_id_vector_bytes: usize,
    /// Size of the body chunks queued frames are coalesced into.
    pub chunk_size: usize,
    /// Events read from storage per query while replaying.
    pub replay_page: usize,
    /// Most events committed in one transaction.
    pub commit_batch: usize,
    /// Name of the database under `[databases]` that holds the event log.
    pub database: String,
    /// How live events reach other instances: `local` (one instance),
    /// `postgres` (instances sharing a PostgreSQL event log) or `redis`.
    pub broadcast: Broadcast,
    /// With a bus (`postgres` or `redis`): how often each instance compares the
    /// channels its streams listen to with the event log, so that an event
    /// whose notification was lost reaches them at most this late.
    pub broadcast_poll_secs: u64,
    /// With `broadcast = "redis"`: the Redis server, e.g.
    /// `redis://:password@host:6379/0` (default `redis://127.0.0.1:6379`).
    /// django-eventstream's `EVENTSTREAM_REDIS` table (`host`, `port`,
    /// `db`, `password`) is accepted instead.
    pub redis_url: Option<Secret>,
    /// With a bus (`postgres` or `redis`): the secret every instance of the
    /// deployment shares (at least 16 bytes, the same on each). It seals
    /// what instances tell each other, so that nobody else who can
    /// `NOTIFY` on the database or `PUBLISH` on the Redis server can write
    /// into streams, end them or stall them; with the event log's own id it
    /// also names the bus channel, so deployments sharing a server never
    /// hear each other. Required with a bus.
    pub bus_key: Option<Secret>,
    /// With `broadcast = "redis"` and SQLite storage: every instance opens
    /// the same SQLite file on one host (the library cannot tell two paths
    /// to one file from two files, so it must be told).
    pub broadcast_shared_sqlite: bool,
    /// Where the health check answers (e.g. `/healthz`); off when unset.
    /// Must not fall under `mount`.
    pub health_path: Option<String>,
    /// Where Prometheus scrapes the counters (e.g. `/metrics`); off when
    /// unset. Must not fall under `mount`.
    pub metrics_path: Option<String>,
    /// Record where delivery time goes, step by step, in the
    /// `eventstream_delivery_stage_seconds` histogram of `metrics_path`.
    /// Off by default: it costs clock reads per event and a histogram
    /// update per stream and event.
    pub delivery_timing: bool,
    /// GRIP proxies (Pushpin, Fastly Fanout) that hold connections and
    /// receive every published event.
    pub grip_proxies: Vec<GripProxyConfig>,
    /// One GRIP proxy as a URL, e.g. `http://127.0.0.1:5561?verify-key=<sig_key>`
    /// or `https://api.fastly.com/service/<id>?verify-iss=fastly:<id>&key=<token>`.
    pub grip_url: Option<Secret>,
    /// Secret that signs the next links handed to GRIP proxies. Must be
    /// stable across restarts and the same on every instance.
    pub link_key: Option<Secret>,
    /// Seconds after which an idle proxied stream re-fetches its next link
    /// (which re-checks permissions). Pushpin's default is 120.
    pub grip_link_timeout_secs: u64,
    /// Path the proxy puts in front of the app's paths (e.g. `/api` when
    /// the proxy maps `/api/events/` to the app's `/events/`); next links
    /// are built with it.
    pub grip_path_prefix: String,
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
            delivery_timing: false,
            grip_proxies: Vec::new(),
            grip_url: None,
            link_key: None,
            grip_link_timeout_secs: 120,
            grip_path_prefix: String::new(),
        }
    }
}

/// A setting that aborts launch: the key (as written under
/// `[eventstream]`, e.g. `eventstream.channel_limit`, or another table's
/// key such as `databases.eventstream.url`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The full key, e.g. `eventstream.channel_limit`.
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl ConfigError {
    /// An error about `eventstream.<key>`.
    pub(crate) fn new(key: impl fmt::Display, reason: impl fmt::Display) -> Self {
        ConfigError {
            key: format!("eventstream.{key}"),
            reason: reason.to_string(),
        }
    }

    /// An error about a key outside `[eventstream]`.
    pub(crate) fn other(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    /// Names the key figment stopped at (an unknown field, a bad value);
    /// figment's path already ends with it.
    fn from_figment(error: rocket::figment::Error) -> Self {
        let key = if error.path.is_empty() {
            "eventstream".to_owned()
        } else {
            format!("eventstream.{}", error.path.join("."))
        };
        ConfigError {
            key,
            reason: error.kind.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A non-negative whole number, however TOML or an environment variable
/// typed it.
fn whole(value: &Value) -> Option<u64> {
    let number = value.to_num_lossy()?;
    number
        .to_u128()
        .or_else(|| number.to_i128().and_then(|n| u128::try_from(n).ok()))
        .and_then(|n| u64::try_from(n).ok())
}

/// django-eventstream's `EVENTSTREAM_REDIS = {host, port, db, password}` as
/// a `redis_url`.
fn redis_url_from_table(key: &str, value: &Value) -> Result<Value, ConfigError> {
    let Value::Dict(_, table) = value else {
        return Err(ConfigError::other(
            key,
            "must be a table like { host = \"127.0.0.1\", port = 6379, db = 0, password = \"...\" }",
        ));
    };
    let mut host = "127.0.0.1".to_owned();
    let mut port = 6379_u64;
    let mut db = 0_u64;
    let mut password = None;
    for (field, value) in table {
        let wrong =
            |what: &str| ConfigError::other(format!("{key}.{field}"), format!("must be {what}"));
        match (field.to_ascii_lowercase().as_str(), value) {
            ("host", Value::String(_, text)) => host = text.clone(),
            ("port", value) => port = whole(value).ok_or_else(|| wrong("a port number"))?,
            ("db", value) => db = whole(value).ok_or_else(|| wrong("a database number"))?,
            ("password", Value::String(_, text)) => password = Some(text.clone()),
            ("host" | "password", _) => return Err(wrong("a string")),
            _ => {
                return Err(ConfigError::other(
                    format!("{key}.{field}"),
                    "unknown field; expected host, port, db or password",
                ));
            }
        }
    }
    // Everything but RFC 3986's unreserved characters is escaped.
    const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let auth = password.map_or(String::new(), |password| {
        format!(":{}@", utf8_percent_encode(&password, USERINFO))
    });
    Ok(Value::from(format!("redis://{auth}{host}:{port}/{db}")))
}

impl Config {
    /// Reads and validates the configuration from Rocket's figment.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let profile: Dict = figment.extract().map_err(|e| {
            ConfigError::other("(profile)", format!("cannot read configuration: {e}"))
        })?;
        let mut merged: BTreeMap<String, (String, Value)> = BTreeMap::new();
        if let Some(nested) = profile.get("eventstream") {
            let Value::Dict(_, nested) = nested else {
                return Err(ConfigError::other(
                    "eventstream",
                    "must be a table of settings",
                ));
            };
            for (key, value) in nested {
                merged.insert(key.clone(), (format!("eventstream.{key}"), value.clone()));
            }
        }
        for (key, value) in &profile {
            let lower = key.to_ascii_lowercase();
            let (canonical, value) = if lower == "eventstream_redis" {
                ("redis_url", redis_url_from_table(key, value)?)
            } else {
                let Some((_, canonical)) = ALIASES.iter().find(|(alias, _)| *alias == lower) else {
                    continue;
                };
                (*canonical, value.clone())
            };
            let value = &value;
            match merged.get(canonical) {
                Some((other, existing)) if !same_value(existing, value) => {
                    return Err(ConfigError::new(
                        canonical,
                        format!("`{key}` and `{other}` both set it, to different values"),
                    ));
                }
                Some(_) => {}
                None => {
                    merged.insert(canonical.into(), (key.clone(), value.clone()));
                }
            }
        }
        let dict: Dict = merged
            .into_iter()
            .map(|(key, (_, value))| (key, value))
            .collect();
        let mut config: Config = Figment::from(Serialized::defaults(dict))
            .extract()
            .map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        fn bad(key: &str, why: impl fmt::Display) -> Result<(), ConfigError> {
            Err(ConfigError::new(key, why))
        }
        let mount = self.mount.trim_end_matches('/');
        if !self.mount.starts_with('/') || self.mount.contains(['?', '#', '<', '>']) {
            return bad(
                "mount",
                format!("{:?} must be a path starting with '/'", self.mount),
            );
        }
        self.mount = if mount.is_empty() {
            "/".into()
        } else {
            mount.into()
        };
        if !(1..=MAX_CHANNEL_LIMIT).contains(&self.channel_limit) {
            return bad(
                "channel_limit",
                format!(
                    "must be between 1 and {MAX_CHANNEL_LIMIT}, got {}",
                    self.channel_limit
                ),
            );
        }
        if self.keepalive_secs == 0 {
            return bad("keepalive_secs", "must be at least 1");
        }
        if self.allow_origins == AllowedOrigins::Any && self.allow_credentials {
            return bad(
                "allow_origins",
                "\"*\" cannot be combined with allow_credentials = true (browsers refuse it); list the origins instead",
            );
        }
        if let AllowedOrigins::List(origins) = &self.allow_origins {
            for origin in origins {
                let valid = origin.split_once("://").is_some_and(|(scheme, host)| {
                    !scheme.is_empty() && !host.is_empty() && !host.contains('/')
                });
                if !valid {
                    return bad(
                        "allow_origins",
                        format!("{origin:?} is not an origin like \"https://example.com\""),
                    );
                }
            }
        }
        let is_header_name = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if let Some(header) = self
            .allow_headers
            .0
            .iter()
            .find(|name| !is_header_name(name))
        {
            return bad("allow_headers", format!("{header:?} is not a header name"));
        }
        if let Some(header) = self
            .trusted_ip_header
            .as_deref()
            .filter(|name| !is_header_name(name))
        {
            return bad(
                "trusted_ip_header",
                format!("{header:?} is not a header name"),
            );
        }
        for (key, limit) in [
            ("max_streams", self.max_streams),
            ("max_streams_per_ip", self.max_streams_per_ip),
        ] {
            if limit == Some(0) {
                return bad(key, "must be at least 1 (leave it unset for no limit)");
            }
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < 16)
        {
            return bad("jwt_secret", "must be at least 16 bytes long");
        }
        for (key, pin) in [
            ("jwt_issuer", &self.jwt_issuer),
            ("jwt_audience", &self.jwt_audience),
        ] {
            if pin.as_deref().is_some_and(|pin| pin.trim().is_empty()) {
                return bad(key, "must not be empty (leave it unset to accept any)");
            }
        }
        if self
            .publish_key
            .as_ref()
            .is_some_and(|key| key.expose().len() < 16)
        {
            return bad("publish_key", "must be at least 16 characters long");
        }
        if self
            .authorizer
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return bad("authorizer", "must name a registered authorizer");
        }
        let ranges: [(&str, u64, u64, u64); 10] = [
            (
                "max_queued_bytes",
                self.max_queued_bytes as u64,
                1024,
                1 << 30,
            ),
            (
                "max_id_vector_bytes",
                self.max_id_vector_bytes as u64,
                64,
                1 << 20,
            ),
            (
                "max_event_bytes",
                self.max_event_bytes as u64,
                1,
                16 * 1024 * 1024,
            ),
            ("retention_secs", self.retention_secs, 1, u64::MAX / 1000),
            (
                "trim_interval_secs",
                self.trim_interval_secs,
                1,
                7 * 24 * 3600,
            ),
            ("queue_capacity", self.queue_capacity as u64, 1, 1 << 20),
            ("chunk_size", self.chunk_size as u64, 512, 1 << 24),
            ("replay_page", self.replay_page as u64, 1, 100_000),
            // SQLite binds at most 32,766 values per statement: 8 per event.
            ("commit_batch", self.commit_batch as u64, 1, 4000),
            ("broadcast_poll_secs", self.broadcast_poll_secs, 1, 3600),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return bad(key, format!("must be between {min} and {max}, got {value}"));
            }
        }
        if self.retention_count == Some(0) {
            return bad(
                "retention_count",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        if self.database.trim().is_empty() {
            return bad("database", "must name a database under [databases]");
        }
        if self.broadcast == Broadcast::Redis && !cfg!(feature = "redis") {
            return bad(
                "broadcast",
                "\"redis\" needs eventstream-rocket's `redis` cargo feature, which this build lacks: \
                 add features = [\"redis\"] to its dependency, or use broadcast = \"postgres\"",
            );
        }
        if self.broadcast != Broadcast::Local {
            match &self.bus_key {
                None => {
                    return bad(
                        "bus_key",
                        "instances on a bus seal what they tell each other with a shared secret: \
                         set bus_key (at least 16 bytes, the same on every instance)",
                    );
                }
                Some(key) if key.expose().len() < 16 => {
                    return bad("bus_key", "must be at least 16 bytes long");
                }
                Some(_) => {}
            }
        }
        if let Some(url) = &self.redis_url
            && !url.expose().starts_with("redis://")
            && !url.expose().starts_with("rediss://")
        {
            return bad(
                "redis_url",
                format!(
                    "{} must start with redis:// or rediss://",
                    redact_url(url.expose())
                ),
            );
        }
        for (key, path) in [
            ("health_path", &self.health_path),
            ("metrics_path", &self.metrics_path),
        ] {
            let Some(path) = path else { continue };
            let malformed = rocket::http::uri::Origin::parse(path)
                .map_or(true, |origin| origin.query().is_some());
            if !path.starts_with('/') || path.len() < 2 || path.contains(['<', '>']) || malformed {
                return bad(
                    key,
                    format!(
                        "{path:?} must be a path like \"/{}\"",
                        &key[..key.len() - 5]
                    ),
                );
            }
            let under_mount = self.mount == "/"
                || path == &self.mount
                || path.starts_with(&format!("{}/", self.mount));
            if under_mount {
                return bad(
                    key,
                    format!(
                        "{path:?} falls under mount {:?}, where it would hide a channel of that name; use a path outside it",
                        self.mount
                    ),
                );
            }
        }
        if self.health_path.is_some() && self.health_path == self.metrics_path {
            return bad("metrics_path", "must differ from health_path");
        }
        self.validate_grip()
    }

    /// Folds `grip_url` into `grip_proxies`, completes every entry and
    /// checks the settings GRIP needs.
    fn validate_grip(&mut self) -> Result<(), ConfigError> {
        if let Some(url) = &self.grip_url {
            let proxy = grip::parse_grip_url(url.expose())
                .map_err(|why| ConfigError::new("grip_url", why))?;
            self.grip_proxies.push(proxy);
            self.grip_url = None;
        }
        if self.grip_proxies.is_empty() {
            return Ok(());
        }
        for (index, proxy) in self.grip_proxies.iter_mut().enumerate() {
            grip::complete_proxy(proxy)
                .map_err(|why| ConfigError::new(format!("grip_proxies[{index}]"), why))?;
        }
        if self.channel_limit > grip::MAX_GRIP_CHANNELS {
            return Err(ConfigError::new(
                "channel_limit",
                format!(
                    "with GRIP at most {} channels fit in a connection (Pushpin allows 20 subscriptions and the user channel takes one), got {}",
                    grip::MAX_GRIP_CHANNELS,
                    self.channel_limit
                ),
            ));
        }
        match &self.link_key {
            None => {
                return Err(ConfigError::new(
                    "link_key",
                    "GRIP needs a stable secret (at least 16 bytes) to sign next links",
                ));
            }
            Some(key) if key.expose().len() < 16 => {
                return Err(ConfigError::new(
                    "link_key",
                    "must be at least 16 bytes long",
                ));
            }
            Some(_) => {}
        }
        if !(5..=86_400).contains(&self.grip_link_timeout_secs) {
            return Err(ConfigError::new(
                "grip_link_timeout_secs",
                format!(
                    "must be between 5 and 86400, got {}",
                    self.grip_link_timeout_secs
                ),
            ));
        }
        if !self.grip_path_prefix.is_empty() && !self.grip_path_prefix.starts_with('/') {
            return Err(ConfigError::new(
                "grip_path_prefix",
                format!("{:?} must start with '/'", self.grip_path_prefix),
            ));
        }
        self.grip_path_prefix = self.grip_path_prefix.trim_end_matches('/').to_owned();
        Ok(())
    }

    /// Whether any GRIP proxy is configured.
    pub fn grip_enabled(&self) -> bool {
        !self.grip_proxies.is_empty() || self.grip_url.is_some()
    }
}

/// Compares two configuration values by content, ignoring where they came from.
fn same_value(left: &Value, right: &Value) -> bool {
    match (serde_json::to_value(left), serde_json::to_value(right)) {
        (Ok(left), Ok(right)) => left == right,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket::figment::providers::{Format, Toml};

    fn load(toml: &str) -> Result<Config, String> {
        Config::from_figment(&Figment::from(Toml::string(toml))).map_err(|e| e.to_string())
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
            "[eventstream]\n{pushpin}\nlink_key = '0123456789abcdef0'\nchannel_limit = 20\n"
        ))
        .expect_err("too many channels for Pushpin");
        assert!(
            error.contains("channel_limit") && error.contains("19"),
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
