//! django-eventstream's setting names, accepted as aliases: flat keys at
//! the top of a profile (in any case), folded into `[eventstream]` before
//! it is read. An alias and its nested key may both be set only to the
//! same value.

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

/// The `[eventstream]` table with every alias folded in, each value keyed
/// by its `[eventstream]` name.
pub(super) fn merged(figment: &Figment) -> Result<Dict, ConfigError> {
    let profile: Dict = figment
        .extract()
        .map_err(|e| ConfigError::other("(profile)", format!("cannot read configuration: {e}")))?;
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
    Ok(merged
        .into_iter()
        .map(|(key, (_, value))| (key, value))
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
