//! [`Secret`]: a setting that is used but never printed. Every secret of
//! the configuration (`jwt_secret`, `publish_key`, `link_key`, GRIP keys,
//! `grip_url`, which carries keys in its query) is one, so `Debug` output
//! of the configuration, launch errors and logs show `***` instead.

use std::fmt;

use serde::Deserialize;

/// A secret string. `Debug` and `Display` print `***`; read the value with
/// [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the code that signs, verifies or compares with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `scheme://user:password@host/...` with the password replaced by `***`,
/// for messages about database and proxy URLs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    // A query may carry keys (`?key=...`, `?password=...`): leave it out.
    let tail = tail.split_once('?').map_or(tail, |(path, _)| path);
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2-hunter2-hunter2");
    }

    #[test]
    fn urls_lose_their_password_and_query() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/events?sslmode=require&password=x"),
            "postgres://app:***@db.example:5432/events"
        );
        assert_eq!(
            redact_url("postgres://app@db/events"),
            "postgres://app@db/events"
        );
        assert_eq!(redact_url("sqlite://events.db"), "sqlite://events.db");
        assert_eq!(redact_url("http://h:1?key=k"), "http://h:1");
        assert_eq!(redact_url("no scheme"), "no scheme");
    }
}
