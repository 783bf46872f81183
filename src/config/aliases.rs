//! Flat setting names, folded into `[eventstream]` before it is read:
//! `eventstream_<key>` at the top of a profile (in any case: how
//! `ROCKET_EVENTSTREAM_<KEY>` arrives) for every key, and
//! django-eventstream's names as aliases.
//!
//! The environment overrides `Rocket.toml`, as Rocket's own `ROCKET_*`
//! variables do; two spellings of one key in the same source must agree.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rocket::figment::Figment;
use rocket::figment::value::{Dict, Value};

use super::error::ConfigError;

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

/// A value of one key, where it was written and whether the environment
/// gave it.
struct Setting {
    spelled: String,
    value: Value,
    from_env: bool,
}

/// The `[eventstream]` table with every flat key and alias folded in, each
/// value keyed by its `[eventstream]` name.
pub(super) fn merged(figment: &Figment) -> Result<Dict, ConfigError> {
    let profile: Dict = figment
        .extract()
        .map_err(|e| ConfigError::other("(profile)", format!("cannot read configuration: {e}")))?;
    // Rocket reads `ROCKET_*` variables with a provider of that name.
    let from_env = |value: &Value| {
        figment
            .get_metadata(value.tag())
            .is_some_and(|metadata| metadata.name.contains("environment"))
    };
    let mut merged: BTreeMap<String, Setting> = BTreeMap::new();
    if let Some(nested) = profile.get("eventstream") {
        let Value::Dict(_, nested) = nested else {
            return Err(ConfigError::other(
                "eventstream",
                "must be a table of settings",
            ));
        };
        for (key, value) in nested {
            let setting = Setting {
                spelled: format!("eventstream.{key}"),
                value: value.clone(),
                from_env: from_env(value),
            };
            merged.insert(key.clone(), setting);
        }
    }
    for (key, original) in &profile {
        let value = original;
        let lower = key.to_ascii_lowercase();
        let (canonical, value) = if lower == "eventstream_redis" {
            ("redis_url".to_owned(), redis_url_from_table(key, value)?)
        } else if let Some((_, canonical)) = ALIASES.iter().find(|(alias, _)| *alias == lower) {
            ((*canonical).to_owned(), value.clone())
        } else if let Some(canonical) = lower.strip_prefix("eventstream_") {
            // Any key: an unknown one is refused when the table is read.
            (canonical.to_owned(), value.clone())
        } else {
            continue;
        };
        let setting = Setting {
            spelled: key.clone(),
            // The original's: a value built from a table has no source.
            from_env: from_env(original),
            value,
        };
        match merged.get(&canonical) {
            None => {
                merged.insert(canonical, setting);
            }
            Some(existing) if same_value(&existing.value, &setting.value) => {}
            // The environment overrides a file.
            Some(existing) if existing.from_env != setting.from_env => {
                if setting.from_env {
                    merged.insert(canonical, setting);
                }
            }
            Some(existing) => {
                return Err(ConfigError::new(
                    canonical,
                    format!(
                        "`{}` and `{}` both set it, to different values",
                        setting.spelled, existing.spelled
                    ),
                ));
            }
        }
    }
    Ok(merged
        .into_iter()
        .map(|(key, setting)| (key, setting.value))
        .collect())
}

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

/// Compares two configuration values by content, ignoring where they came from.
fn same_value(left: &Value, right: &Value) -> bool {
    match (serde_json::to_value(left), serde_json::to_value(right)) {
        (Ok(left), Ok(right)) => left == right,
        _ => false,
    }
}
