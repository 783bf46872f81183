//! Channel names: what is allowed, and how a name is written inside an event id.
//!
//! A name is 1 to 255 characters of any Unicode except control characters.
//! Inside an `id:` line it is percent-encoded exactly like Python's
//! `urllib.parse.quote(name, safe="/")`, so that `,` (which separates the
//! channels of an id vector) and `:` (which separates a channel from its
//! sequence number) can never appear unescaped:
//!
//! ```text
//! room-1      -> room-1
//! a b,c:d%    -> a%20b%2Cc%3Ad%25
//! café/x      -> caf%C3%A9/x
//! ```

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Longest channel name accepted, in characters.
pub const MAX_CHANNEL_CHARS: usize = 255;

/// The characters Python's `quote` leaves alone with `safe="/"`: letters,
/// digits and `_.-~/`. Everything else is written as `%XX` of its UTF-8 bytes.
const QUOTE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// Why a channel name, or a stream's list of them, is refused. Its text
/// completes "Invalid request: ..." in a `bad-request` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelError {
    /// An empty name.
    Empty,
    /// A name longer than [`MAX_CHANNEL_CHARS`] characters.
    TooLong { chars: usize },
    /// A name with a control character.
    ControlCharacter { name: String },
    /// A stream without any channel.
    NoChannels,
    /// A stream with more channels than allowed.
    TooMany { count: usize, limit: usize },
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Empty => f.write_str("channel names must not be empty"),
            ChannelError::TooLong { chars } => write!(
                f,
                "channel name is {chars} characters long; at most {MAX_CHANNEL_CHARS} are allowed"
            ),
            ChannelError::ControlCharacter { name } => write!(
                f,
                "channel name {:?} contains a control character",
                name.escape_debug().to_string()
            ),
            ChannelError::NoChannels => f.write_str("No channels specified"),
            ChannelError::TooMany { count, limit } => write!(
                f,
                "Channel limit exceeded ({count} channels; at most {limit})"
            ),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Checks a channel name against the rules in `PROTOCOL.md`.
pub(crate) fn validate(name: &str) -> Result<(), ChannelError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ChannelError::Empty);
    }
    if chars > MAX_CHANNEL_CHARS {
        return Err(ChannelError::TooLong { chars });
    }
    if name.chars().any(char::is_control) {
        return Err(ChannelError::ControlCharacter {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Percent-encodes a channel name for use inside an event id.
pub(crate) fn quote(name: &str) -> String {
    utf8_percent_encode(name, QUOTE_SET).to_string()
}

/// Sorts and deduplicates the channel list of a stream, and checks it: 1 to
/// `limit` valid names.
pub(crate) fn validate_list(
    mut channels: Vec<String>,
    limit: usize,
) -> Result<Vec<String>, ChannelError> {
    channels.sort();
    channels.dedup();
    if channels.is_empty() {
        return Err(ChannelError::NoChannels);
    }
    if channels.len() > limit {
        return Err(ChannelError::TooMany {
            count: channels.len(),
            limit,
        });
    }
    validate_all(channels)
}

/// Checks every name of a list, keeping it as it is.
pub(crate) fn validate_all<S: AsRef<str>>(
    names: impl IntoIterator<Item = S>,
) -> Result<Vec<String>, ChannelError> {
    names
        .into_iter()
        .map(|name| {
            let name = name.as_ref();
            validate(name)?;
            Ok(name.to_owned())
        })
        .collect()
}

/// The longest id vector these persistent channels can produce: each
/// quoted name, `:`, 20 digits (a `u64`), and the commas between them.
pub(crate) fn id_vector_bytes<'a>(persistent: impl IntoIterator<Item = &'a str>) -> usize {
    let mut entries: usize = 0;
    let bytes: usize = persistent
        .into_iter()
        .map(|name| {
            entries += 1;
            quote(name).len() + 1 + 20
        })
        .sum();
    bytes + entries.saturating_sub(1)
}

/// Reverses [`quote`]; `None` when the escapes do not decode to UTF-8.
pub(crate) fn unquote(encoded: &str) -> Option<String> {
    percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|name| name.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_python_urllib_quote() {
        // Expected values produced by `urllib.parse.quote(s)` in CPython 3.11.
        assert_eq!(quote("room-1"), "room-1");
        assert_eq!(quote("a b,c:d%"), "a%20b%2Cc%3Ad%25");
        assert_eq!(quote("café/x"), "caf%C3%A9/x");
        assert_eq!(quote("_.-~"), "_.-~");
        assert_eq!(quote("a+b=c&d?e#f"), "a%2Bb%3Dc%26d%3Fe%23f");
        assert_eq!(quote("日本"), "%E6%97%A5%E6%9C%AC");
    }

    #[test]
    fn id_vectors_are_measured_at_their_longest() {
        assert_eq!(id_vector_bytes([]), 0);
        assert_eq!(id_vector_bytes(["a"]), 22);
        // "a b" quotes to "a%20b": 5 + 1 + 20, twice, and a comma.
        assert_eq!(id_vector_bytes(["a b", "a b"]), 53);
    }

    #[test]
    fn unquote_reverses_quote() {
        for name in ["room-1", "a b,c:d%", "café/x", "日本", "%41"] {
            assert_eq!(unquote(&quote(name)).as_deref(), Some(name));
        }
        assert_eq!(unquote("%FF"), None);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate("room").is_ok());
        assert!(validate("a b,c:d%日本").is_ok());
        assert!(validate(&"x".repeat(255)).is_ok());
        assert!(validate(&"é".repeat(255)).is_ok());
        assert!(validate("").is_err());
        assert!(validate(&"x".repeat(256)).is_err());
        assert!(validate("a\nb").is_err());
        assert!(validate("a\u{0}b").is_err());
        assert!(validate("a\u{7f}b").is_err());
    }
}
