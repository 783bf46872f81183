//! Checking a configuration: values that parse but make no sense are
//! refused at launch, naming the key. A few settings are first put into
//! one form (`mount` without a trailing `/`, `grip_url` folded into
//! `grip_proxies`), then each group of settings has a check of its own.

use std::fmt;

use super::grip::{self, MAX_GRIP_CHANNELS};
use super::{AllowedOrigins, Broadcast, Config, ConfigError, MAX_CHANNEL_LIMIT, redact_url};

fn bad(key: &str, why: impl fmt::Display) -> Result<(), ConfigError> {
    Err(ConfigError::new(key, why))
}

impl Config {
    /// Puts the settings that have several spellings into one form, then
    /// checks values that parse but make no sense, naming the key.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.normalize_mount()?;
        self.fold_grip_url()?;
        check_limits(self)?;
        check_cors(self)?;
        check_access(self)?;
        check_sizes_and_times(self)?;
        check_broadcast(self)?;
        check_operator_paths(self)?;
        self.check_grip()
    }

    /// `mount`: a path, kept without a trailing `/` (but `/` itself).
    fn normalize_mount(&mut self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// `grip_url` (django-eventstream's single-proxy form) becomes an entry
    /// of `grip_proxies`.
    fn fold_grip_url(&mut self) -> Result<(), ConfigError> {
        if let Some(url) = &self.grip_url {
            let proxy = grip::parse_grip_url(url.expose())
                .map_err(|why| ConfigError::new("grip_url", why))?;
            self.grip_proxies.push(proxy);
            self.grip_url = None;
        }
        Ok(())
    }

    /// Every GRIP proxy completed (Fastly's defaults, how publishes
    /// authenticate) and checked, with the settings GRIP needs.
    fn check_grip(&mut self) -> Result<(), ConfigError> {
        if self.grip_proxies.is_empty() {
            return Ok(());
        }
        for (index, proxy) in self.grip_proxies.iter_mut().enumerate() {
            grip::complete_proxy(proxy)
                .map_err(|why| ConfigError::new(format!("grip_proxies[{index}]"), why))?;
        }
        if self.channel_limit > MAX_GRIP_CHANNELS {
            return Err(ConfigError::new(
                "channel_limit",
                format!(
                    "with GRIP at most {} channels fit in a connection (Pushpin allows 20 subscriptions and the user and lease channels take two), got {}",
                    MAX_GRIP_CHANNELS, self.channel_limit
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
}

/// Channels per stream, streams per process and per client, keep-alives.
fn check_limits(config: &Config) -> Result<(), ConfigError> {
    if !(1..=MAX_CHANNEL_LIMIT).contains(&config.channel_limit) {
        return bad(
            "channel_limit",
            format!(
                "must be between 1 and {MAX_CHANNEL_LIMIT}, got {}",
                config.channel_limit
            ),
        );
    }
    if !(100..=60_000).contains(&config.presence_interval_ms) {
        return bad(
            "presence_interval_ms",
            format!(
                "{} must be between 100 and 60000",
                config.presence_interval_ms
            ),
        );
    }
    if config.presence_list_max > 10_000 {
        return bad(
            "presence_list_max",
            format!("{} must be at most 10000", config.presence_list_max),
        );
    }
    if !(3..=3_600).contains(&config.presence_lease_secs) {
        return bad(
            "presence_lease_secs",
            format!("{} must be between 3 and 3600", config.presence_lease_secs),
        );
    }
    // Instances renew their lease on the report tick, three times a lease.
    if config.presence_interval_ms * 3 > config.presence_lease_secs * 1000 {
        return bad(
            "presence_interval_ms",
            format!(
                "{} must be at most a third of presence_lease_secs ({} s), or instances' readers flap in and out of the counts",
                config.presence_interval_ms, config.presence_lease_secs
            ),
        );
    }
    if config.keepalive_secs == 0 {
        return bad("keepalive_secs", "must be at least 1");
    }
    for (key, limit) in [
        ("max_streams", config.max_streams),
        ("max_streams_per_ip", config.max_streams_per_ip),
    ] {
        if limit == Some(0) {
            return bad(key, "must be at least 1 (leave it unset for no limit)");
        }
    }
    Ok(())
}

/// Who may call from another origin, and the headers named.
fn check_cors(config: &Config) -> Result<(), ConfigError> {
    if config.allow_origins == AllowedOrigins::Any && config.allow_credentials {
        return bad(
            "allow_origins",
            "\"*\" cannot be combined with allow_credentials = true (browsers refuse it); list the origins instead",
        );
    }
    if let AllowedOrigins::List(origins) = &config.allow_origins {
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
    if let Some(header) = config
        .allow_headers
        .0
        .iter()
        .find(|name| !is_header_name(name))
    {
        return bad("allow_headers", format!("{header:?} is not a header name"));
    }
    if let Some(header) = config
        .trusted_ip_header
        .as_deref()
        .filter(|name| !is_header_name(name))
    {
        return bad(
            "trusted_ip_header",
            format!("{header:?} is not a header name"),
        );
    }
    Ok(())
}

/// Tokens, the publish key and the authorizer's name.
fn check_access(config: &Config) -> Result<(), ConfigError> {
    if config
        .jwt_secret
        .as_ref()
        .is_some_and(|secret| secret.expose().len() < 16)
    {
        return bad("jwt_secret", "must be at least 16 bytes long");
    }
    for (key, pin) in [
        ("jwt_issuer", &config.jwt_issuer),
        ("jwt_audience", &config.jwt_audience),
    ] {
        if pin.as_deref().is_some_and(|pin| pin.trim().is_empty()) {
            return bad(key, "must not be empty (leave it unset to accept any)");
        }
    }
    if config
        .publish_key
        .as_ref()
        .is_some_and(|key| key.expose().len() < 16)
    {
        return bad("publish_key", "must be at least 16 characters long");
    }
    if config
        .authorizer
        .as_deref()
        .is_some_and(|name| name.trim().is_empty())
    {
        return bad("authorizer", "must name a registered authorizer");
    }
    if config.identity_cookie.is_some() && !cfg!(feature = "cookies") {
        return bad(
            "identity_cookie",
            "the sign-in cookie needs eventstream-rocket's `cookies` cargo feature, which this \
             build lacks: add features = [\"cookies\"] to its dependency",
        );
    }
    if let Some(name) = &config.identity_cookie {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return bad(
                "identity_cookie",
                format!("{name:?} is not a cookie name (1-64 letters, digits, '_' or '-')"),
            );
        }
    }
    Ok(())
}

/// Sizes, counts and intervals, each within its range.
fn check_sizes_and_times(config: &Config) -> Result<(), ConfigError> {
    let ranges: [(&str, u64, u64, u64); 10] = [
        (
            "max_queued_bytes",
            config.max_queued_bytes as u64,
            1024,
            1 << 30,
        ),
        (
            "max_id_vector_bytes",
            config.max_id_vector_bytes as u64,
            64,
            1 << 20,
        ),
        (
            "max_event_bytes",
            config.max_event_bytes as u64,
            1,
            16 * 1024 * 1024,
        ),
        ("retention_secs", config.retention_secs, 1, u64::MAX / 1000),
        (
            "trim_interval_secs",
            config.trim_interval_secs,
            1,
            7 * 24 * 3600,
        ),
        ("queue_capacity", config.queue_capacity as u64, 1, 1 << 20),
        ("chunk_size", config.chunk_size as u64, 512, 1 << 24),
        ("replay_page", config.replay_page as u64, 1, 100_000),
        // SQLite binds at most 32,766 values per statement: 8 per event.
        ("commit_batch", config.commit_batch as u64, 1, 4000),
        ("broadcast_poll_secs", config.broadcast_poll_secs, 1, 3600),
    ];
    for (key, value, min, max) in ranges {
        if !(min..=max).contains(&value) {
            return bad(key, format!("must be between {min} and {max}, got {value}"));
        }
    }
    if config.retention_count == Some(0) {
        return bad(
            "retention_count",
            "must be at least 1 (leave it unset for no limit)",
        );
    }
    if config.database.trim().is_empty() {
        return bad("database", "must name a database under [databases]");
    }
    Ok(())
}

/// A bus: its cargo feature, its key, its URL.
fn check_broadcast(config: &Config) -> Result<(), ConfigError> {
    if config.broadcast == Broadcast::Redis && !cfg!(feature = "redis") {
        return bad(
            "broadcast",
            "\"redis\" needs eventstream-rocket's `redis` cargo feature, which this build lacks: \
             add features = [\"redis\"] to its dependency, or use broadcast = \"postgres\"",
        );
    }
    if config.broadcast != Broadcast::Local {
        match &config.bus_key {
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
    if let Some(url) = &config.redis_url
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
    Ok(())
}

/// The health and metrics paths: paths, outside the mount, distinct.
fn check_operator_paths(config: &Config) -> Result<(), ConfigError> {
    for (key, path, example) in [
        ("health_path", &config.health_path, "/health"),
        ("metrics_path", &config.metrics_path, "/metrics"),
        ("explain_path", &config.explain_path, "/explain"),
    ] {
        let Some(path) = path else { continue };
        let malformed =
            rocket::http::uri::Origin::parse(path).map_or(true, |origin| origin.query().is_some());
        if !path.starts_with('/') || path.len() < 2 || path.contains(['<', '>']) || malformed {
            return bad(key, format!("{path:?} must be a path like {example:?}"));
        }
        let under_mount = config.mount == "/"
            || path == &config.mount
            || path.starts_with(&format!("{}/", config.mount));
        if under_mount {
            return bad(
                key,
                format!(
                    "{path:?} falls under mount {:?}, where it would hide a channel of that name; use a path outside it",
                    config.mount
                ),
            );
        }
    }
    if config.health_path.is_some() && config.health_path == config.metrics_path {
        return bad("metrics_path", "must differ from health_path");
    }
    if let Some(path) = &config.explain_path {
        if [&config.health_path, &config.metrics_path]
            .iter()
            .any(|other| other.as_ref() == Some(path))
        {
            return bad(
                "explain_path",
                "must differ from health_path and metrics_path",
            );
        }
        if config.explain_key.is_none() && config.publish_key.is_none() {
            return bad(
                "explain_path",
                "the delivery trace needs a key: set explain_key (or publish_key)",
            );
        }
    }
    if config
        .explain_key
        .as_ref()
        .is_some_and(|key| key.expose().len() < 16)
    {
        return bad("explain_key", "must be at least 16 characters long");
    }
    Ok(())
}
