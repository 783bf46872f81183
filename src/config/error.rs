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
        let reason = match &error.kind {
            rocket::figment::error::Kind::UnknownField(field, expected) => {
                match closest(field, expected) {
                    Some(known) => format!("unknown key; did you mean `{known}`?"),
                    None => format!("unknown key; known keys: {}", expected.join(", ")),
                }
            }
            kind => kind.to_string(),
        };
        ConfigError { key, reason }
    }
}

/// The known key nearest to `field` by edits, if it is near enough to be a
/// slip (at most a third of its length), or one it begins (`keepalive` for
/// `keepalive_secs`).
fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edits(field, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= candidate.len().max(3) / 3
                || (field.len() >= 4 && candidate.starts_with(field))
        })
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_names_the_key_meant() {
        let known = ["publish_key", "keepalive_secs", "mount"];
        assert_eq!(closest("publsh_key", &known), Some("publish_key"));
        assert_eq!(closest("keepalive", &known), Some("keepalive_secs"));
        assert_eq!(closest("colour", &known), None);
        assert_eq!(edits("kitten", "sitting"), 3);
    }
}
