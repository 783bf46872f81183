//! Positions: per channel, the sequence of the last event seen, as the
//! server's id vectors write them (`a%20b:3,c:7`, PROTOCOL.md §4.3).

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but letters, digits and `_.-~/` is escaped, as the server
/// does (so `,` and `:` never appear inside a name).
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// Per channel, the sequence of the last event seen (0: none yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(BTreeMap<String, u64>);

impl Positions {
    /// No positions.
    pub fn new() -> Positions {
        Positions::default()
    }

    /// The position on `channel`, if known.
    pub fn get(&self, channel: &str) -> Option<u64> {
        self.0.get(channel).copied()
    }

    /// Sets the position on `channel`.
    pub fn set(&mut self, channel: impl Into<String>, seq: u64) {
        self.0.insert(channel.into(), seq);
    }

    /// Moves `channel` forward to `seq` (never back); whether it moved.
    pub fn advance(&mut self, channel: &str, seq: u64) -> bool {
        match self.0.get_mut(channel) {
            Some(position) if *position >= seq => false,
            Some(position) => {
                *position = seq;
                true
            }
            None => {
                self.0.insert(channel.to_owned(), seq);
                true
            }
        }
    }

    /// The channels and their positions, by channel name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(channel, seq)| (channel.as_str(), *seq))
    }

    /// Whether no position is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads an id or id vector; `None` when it is not one (`error`, a
    /// missing sequence, a bad escape).
    pub fn parse(text: &str) -> Option<Positions> {
        let mut positions = Positions::new();
        for entry in text.split(',') {
            let (name, seq) = entry.trim().rsplit_once(':')?;
            let channel = percent_decode_str(name).decode_utf8().ok()?;
            if channel.is_empty() {
                return None;
            }
            positions.set(channel.into_owned(), seq.parse().ok()?);
        }
        Some(positions)
    }
}

impl fmt::Display for Positions {
    /// The id vector, sorted by channel name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (channel, seq)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{seq}", utf8_percent_encode(channel, QUOTE))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_print_and_parse_like_the_server_writes_them() {
        let positions = Positions::parse("b:7, a%20z:1").expect("a vector");
        assert_eq!(positions.get("a z"), Some(1));
        assert_eq!(positions.to_string(), "a%20z:1,b:7");
        assert_eq!(Positions::parse(&positions.to_string()), Some(positions));
        for bad in ["error", "a:", ":3", "a:x", "a%FF:1"] {
            assert_eq!(Positions::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn positions_only_move_forward() {
        let mut positions = Positions::new();
        assert!(positions.advance("a", 3));
        assert!(!positions.advance("a", 3));
        assert!(!positions.advance("a", 2));
        assert!(positions.advance("a", 9), "ids may skip");
    }
}
