//! The error a configuration that cannot launch gives: the key, and why.

use std::fmt;

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
    pub(super) fn from_figment(error: rocket::figment::Error) -> Self {
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
