//! Event ids: one channel's position (`room-1:42`) and the id vector that a
//! multi-channel stream carries (`a:3,b:7`), with their parsing.
//!
//! ```text
//! id        = entry *( "," entry )
//! entry     = quoted-channel ":" sequence
//! sequence  = 1*DIGIT            ; u64, the number of the last event seen
//! ```
//!
//! Entries are written in a deterministic order (sorted by channel name) so
//! that the same position always produces the same id; parsing accepts any
//! order.

use std::fmt;

use crate::wire::channel;

/// The id of one stored event: its channel and its gap-free sequence number
/// within that channel (1, 2, 3, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId {
    channel: String,
    seq: u64,
}

impl EventId {
    pub(crate) fn new(channel: impl Into<String>, seq: u64) -> Self {
        EventId {
            channel: channel.into(),
            seq,
        }
    }

    /// The channel the event was sent to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The event's sequence number in its channel; the first event is 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for EventId {
    /// Writes the id as it appears on the wire, e.g. `room%201:42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", channel::quote(&self.channel), self.seq)
    }
}

/// A position in several channels at once: for each channel, the sequence
/// number of the last event seen (0 for "before the first event").
///
/// Its [`Display`](fmt::Display) form is the value of an `id:` line and of
/// `Last-Event-ID`, e.g. `a:3,b:7`.
// A vector sorted by channel rather than a map: streams name at most
// `channel_limit` channels (10 by default), mostly one, and every live
// stream keeps one of these; a B-tree node is about 400 bytes even for one
// entry, a vector of one is 32.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdVector(Vec<(String, u64)>);

impl IdVector {
    /// An empty vector.
    pub fn new() -> Self {
        IdVector::default()
    }

    /// The position recorded for `channel`, if any.
    pub fn get(&self, channel: &str) -> Option<u64> {
        self.find(channel).ok().map(|index| self.0[index].1)
    }

    /// Records `seq` as the position in `channel`.
    pub fn set(&mut self, channel: impl Into<String>, seq: u64) {
        let channel = channel.into();
        match self.find(&channel) {
            Ok(index) => self.0[index].1 = seq,
            Err(index) => self.insert(index, channel, seq),
        }
    }

    /// Moves `channel`'s position to `seq`, without allocating when the
    /// channel is already in the vector (every event of a live stream).
    pub(crate) fn advance(&mut self, channel: &str, seq: u64) {
        match self.find(channel) {
            Ok(index) => self.0[index].1 = seq,
            Err(index) => self.insert(index, channel.to_owned(), seq),
        }
    }

    /// Adds a channel; the first one gets room for itself only (most
    /// streams have one channel), not the vector's default of four.
    fn insert(&mut self, index: usize, channel: String, seq: u64) {
        if self.0.capacity() == 0 {
            self.0.reserve_exact(1);
        }
        self.0.insert(index, (channel, seq));
    }

    /// Where `channel` is, or where it would go.
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|(name, _)| name.as_str().cmp(channel))
    }

    /// True when no channel has a position.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The channels and positions, sorted by channel name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(channel, seq)| (channel.as_str(), *seq))
    }

    /// Parses an id vector such as `a:3,b%2Cc:7`.
    ///
    /// Every entry must be `quoted-channel:number`; a channel may appear once.
    pub fn parse(text: &str) -> Result<IdVector, IdParseError> {
        let mut vector = IdVector::new();
        for entry in text.split(',') {
            let (quoted, seq) = entry
                .split_once(':')
                .filter(|(_, seq)| !seq.contains(':'))
                .ok_or_else(|| IdParseError::NotAnEntry(entry.to_owned()))?;
            let channel =
                channel::unquote(quoted).ok_or_else(|| IdParseError::NotUtf8(quoted.to_owned()))?;
            channel::validate(&channel)
                .map_err(|why| IdParseError::InvalidChannel(why.to_string()))?;
            if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IdParseError::NotANumber(entry.to_owned()));
            }
            let seq: u64 = seq
                .parse()
                .map_err(|_| IdParseError::TooLarge(entry.to_owned()))?;
            vector.0.push((channel, seq));
        }
        // Sorted once (a long hostile vector must not cost a quadratic
        // number of inserts), then checked for a channel given twice.
        vector.0.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = vector.0.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(IdParseError::Repeated(channel::quote(&pair[0].0)));
        }
        Ok(vector)
    }
}

/// Why an id vector (`Last-Event-ID`, `lastEventId`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdParseError {
    /// An entry is not of the form `channel:number`.
    NotAnEntry(String),
    /// A channel's percent-escapes do not decode to UTF-8.
    NotUtf8(String),
    /// A decoded channel name breaks the naming rules.
    InvalidChannel(String),
    /// An entry's sequence is not a non-negative integer.
    NotANumber(String),
    /// An entry's sequence does not fit in 64 bits.
    TooLarge(String),
    /// A channel appears more than once.
    Repeated(String),
}

impl fmt::Display for IdParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdParseError::NotAnEntry(entry) => {
                write!(f, "{entry:?} is not of the form channel:number")
            }
            IdParseError::NotUtf8(quoted) => {
                write!(f, "{quoted:?} does not percent-decode to UTF-8")
            }
            IdParseError::InvalidChannel(why) => f.write_str(why),
            IdParseError::NotANumber(entry) => {
                write!(
                    f,
                    "{:?} in {entry:?} is not a non-negative integer",
                    sequence(entry)
                )
            }
            IdParseError::TooLarge(entry) => {
                write!(f, "{:?} in {entry:?} is too large", sequence(entry))
            }
            IdParseError::Repeated(quoted) => write!(f, "{quoted:?} appears more than once"),
        }
    }
}

impl std::error::Error for IdParseError {}

/// The sequence part of an entry `channel:sequence`.
fn sequence(entry: &str) -> &str {
    entry.split_once(':').map_or(entry, |(_, seq)| seq)
}

impl fmt::Display for IdVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (channel, seq)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", channel::quote(channel), seq)?;
        }
        Ok(())
    }
}

/// Where a client asked to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// No id given: start with events sent from now on.
    Fresh,
    /// Resume after these positions.
    From(IdVector),
    /// The client's last frame was a `stream-error` (id `error`); resuming is
    /// refused with HTTP 400 so that native `EventSource` stops retrying.
    AfterError,
}

/// A `Last-Event-ID` (or `lastEventId`) that is not an id vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumeError(pub(crate) IdParseError);

impl fmt::Display for ResumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Failed to parse Last-Event-ID or lastEventId: {}",
            self.0
        )
    }
}

impl std::error::Error for ResumeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl Resume {
    /// Picks the resume position from the `Last-Event-ID` header, which wins,
    /// or else the last non-empty `lastEventId` query value (polyfills append
    /// one on every reconnect, sometimes empty).
    pub(crate) fn from_request<'a>(
        header: Option<&'a str>,
        query_values: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Result<Resume, ResumeError> {
        let chosen = header
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .or_else(|| {
                query_values
                    .rev()
                    .map(str::trim)
                    .find(|value| !value.is_empty())
            });
        match chosen {
            None => Ok(Resume::Fresh),
            Some("error") => Ok(Resume::AfterError),
            Some(text) => IdVector::parse(text).map(Resume::From).map_err(ResumeError),
        }
    }

    /// The positions to resume after; empty for a fresh start.
    pub(crate) fn into_positions(self) -> IdVector {
        match self {
            Resume::From(ids) => ids,
            Resume::Fresh | Resume::AfterError => IdVector::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_round_trips_with_encoded_names() {
        let mut vector = IdVector::new();
        vector.set("b", 7);
        vector.set("a:1,x y", 3);
        vector.set("café", 0);
        let text = vector.to_string();
        assert_eq!(text, "a%3A1%2Cx%20y:3,b:7,caf%C3%A9:0");
        assert_eq!(IdVector::parse(&text), Ok(vector));
    }

    #[test]
    fn positions_stay_sorted_whichever_way_they_are_set() {
        let mut ids = IdVector::new();
        ids.set("m", 1);
        ids.advance("b", 2);
        ids.set("z", 3);
        ids.advance("m", 9);
        ids.set("b", 4);
        assert_eq!(ids.to_string(), "b:4,m:9,z:3");
        assert_eq!((ids.get("m"), ids.get("q")), (Some(9), None));
        let many: Vec<String> = (0..2000).rev().map(|n| format!("c{n}:{n}")).collect();
        let parsed = IdVector::parse(&many.join(",")).expect("2,000 channels");
        assert_eq!(parsed.iter().count(), 2000);
        assert_eq!(parsed.get("c1999"), Some(1999));
        assert_eq!(
            IdVector::parse("a:1,b:2,a:3"),
            Err(IdParseError::Repeated("a".into()))
        );
    }

    #[test]
    fn parse_accepts_any_order() {
        let left = IdVector::parse("b:7,a:3").expect("valid");
        let right = IdVector::parse("a:3,b:7").expect("valid");
        assert_eq!(left, right);
        assert_eq!(left.to_string(), "a:3,b:7");
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "a",
            "a:",
            ":3",
            "a:b",
            "a:-1",
            "a:+1",
            "a:1:2",
            "a:1,",
            "a:1,a:2",
            "a:99999999999999999999",
            "%FF:1",
            "a:1 ",
        ] {
            assert!(IdVector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn header_wins_over_query_and_last_non_empty_query_value_counts() {
        assert_eq!(
            Resume::from_request(Some("a:1"), ["a:2"].into_iter()),
            Ok(Resume::From(IdVector::parse("a:1").expect("valid")))
        );
        assert_eq!(
            Resume::from_request(Some(""), ["a:2", "a:3", ""].into_iter()),
            Ok(Resume::From(IdVector::parse("a:3").expect("valid")))
        );
        assert_eq!(
            Resume::from_request(None, [""].into_iter()),
            Ok(Resume::Fresh)
        );
        assert_eq!(
            Resume::from_request(Some("error"), [].into_iter()),
            Ok(Resume::AfterError)
        );
        assert_eq!(
            Resume::from_request(None, ["error"].into_iter()),
            Ok(Resume::AfterError)
        );
        assert!(Resume::from_request(Some("nonsense"), [].into_iter()).is_err());
    }

    #[test]
    fn event_id_displays_quoted() {
        assert_eq!(EventId::new("room 1", 42).to_string(), "room%201:42");
    }
}
