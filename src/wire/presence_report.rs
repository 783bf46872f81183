//! Presence reports: what each instance tells the others, over the bus,
//! about who reads which channel through it.
//!
//! Reports are aggregated: one entry per channel whose readers changed,
//! with a count of streams and the distinct users, so their traffic grows
//! with instances and changing channels, not with subscribers. A report
//! carries its sender's lease; an instance not heard within it (a SIGKILL,
//! a network split) drops out of everyone's counts. Each report ends with
//! a digest of everything its sender has said: a receiver that lost a
//! report (its listener reconnected) sees the mismatch and asks for a
//! full one.
//!
//! ```text
//! {"l":15000,"ch":[{"c":"room","s":3,"u":[["ana",true],["bob",false]],"p":[[null,false]]}],"d":{"n":1,"h":…}}
//! ```

use serde::{Deserialize, Serialize};

use super::channel;

/// Users named per list in one channel's entry, at most: the others are
/// counted in `x` (or `q`), so one entry always fits in a notice.
pub(crate) const REPORT_IDS: usize = 32;
/// Longest user id named in a report, in bytes; longer ones are counted.
pub(crate) const REPORT_ID_BYTES: usize = 64;
/// Channel entries in one report, at most (a notice holds far fewer).
const MAX_ENTRIES: usize = 1024;
/// Shortest and longest lease a report may ask for.
const LEASE_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;

/// One channel's readers at one instance. An entry with no reader removes
/// the channel from the sender's share.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct ChannelReport {
    #[serde(rename = "c")]
    pub(crate) channel: String,
    /// Streams this instance serves itself.
    #[serde(rename = "s", default)]
    pub(crate) streams: u64,
    /// Their distinct users (id, named in presence), sorted by id.
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) users: Vec<(String, bool)>,
    /// Distinct users of those streams beyond `users`.
    #[serde(rename = "x", default, skip_serializing_if = "is_zero")]
    pub(crate) more_users: u64,
    /// Readers behind a proxy, by user (`None`: anonymous), as last seen
    /// by this instance, sorted.
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) proxied: Vec<(Option<String>, bool)>,
    /// Proxied readers beyond `proxied`.
    #[serde(rename = "q", default, skip_serializing_if = "is_zero")]
    pub(crate) more_proxied: u64,
    /// Some proxied reader here asked for presence events (the proxy gets
    /// them from one instance).
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) watched: bool,
}

/// How long `id` is in a report (JSON escapes some characters); what
/// [`REPORT_ID_BYTES`] limits, so an entry always fits in a notice.
pub(crate) fn escaped_len(id: &str) -> usize {
    serde_json::to_string(id).map_or(usize::MAX, |text| text.len() - 2)
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl ChannelReport {
    /// Whether the channel has no reader at the sender.
    pub(crate) fn is_empty(&self) -> bool {
        self.streams == 0
            && self.users.is_empty()
            && self.more_users == 0
            && self.proxied.is_empty()
            && self.more_proxied == 0
            && !self.watched
    }

    /// A hash of the entry, the same on every instance.
    fn hash(&self) -> u64 {
        let text = serde_json::to_string(self).unwrap_or_default();
        // FNV-1a: stable across processes and versions, unlike std's.
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn check(&self) -> Result<(), String> {
        channel::validate(&self.channel).map_err(|error| error.to_string())?;
        if self.users.len() > REPORT_IDS || self.proxied.len() > REPORT_IDS {
            return Err(format!("more than {REPORT_IDS} users named"));
        }
        let long = |id: &str| escaped_len(id) > REPORT_ID_BYTES;
        if self.users.iter().any(|(id, _)| long(id))
            || self
                .proxied
                .iter()
                .any(|(id, _)| id.as_deref().is_some_and(long))
        {
            return Err(format!("a user id longer than {REPORT_ID_BYTES} bytes"));
        }
        Ok(())
    }
}

/// A summary of every non-empty entry a sender stands by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Digest {
    /// Channels with readers.
    #[serde(rename = "n")]
    pub(crate) channels: u64,
    /// The entries' hashes, combined.
    #[serde(rename = "h")]
    pub(crate) hash: u64,
}

impl Digest {
    /// The digest of `entries` (the empty ones are left out).
    pub(crate) fn of<'a>(entries: impl IntoIterator<Item = &'a ChannelReport>) -> Digest {
        let mut digest = Digest::default();
        for entry in entries.into_iter().filter(|entry| !entry.is_empty()) {
            digest.channels += 1;
            digest.hash ^= entry.hash();
        }
        digest
    }
}

/// One presence notice's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PresenceReport {
    /// How long the sender's entries stand without a word from it.
    #[serde(rename = "l")]
    pub(crate) lease_ms: u64,
    /// The first part of a full report: forget the sender's earlier entries.
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) reset: bool,
    /// Changed entries.
    #[serde(rename = "ch", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) channels: Vec<ChannelReport>,
    /// The sender's digest once these entries are applied (the last part
    /// of a report, and every heartbeat).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub(crate) digest: Option<Digest>,
}

impl PresenceReport {
    /// Checks what a sealed report may still get wrong: its sizes, lease
    /// and channel names. (Only holders of the bus key can seal one; this
    /// keeps a buggy or older sender from moving counts it should not.)
    pub(crate) fn check(&self) -> Result<(), String> {
        if !LEASE_MS.contains(&self.lease_ms) {
            return Err(format!("a lease of {} ms", self.lease_ms));
        }
        if self.channels.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} channel entries"));
        }
        self.channels.iter().try_for_each(ChannelReport::check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(channel: &str, streams: u64) -> ChannelReport {
        ChannelReport {
            channel: channel.into(),
            streams,
            users: vec![("ana".into(), true)],
            ..ChannelReport::default()
        }
    }

    #[test]
    fn the_digest_ignores_order_and_empty_entries() {
        let a = Digest::of(&[entry("a", 1), entry("b", 2)]);
        let b = Digest::of(&[entry("b", 2), ChannelReport::default(), entry("a", 1)]);
        assert_eq!(a, b);
        assert_eq!(a.channels, 2);
        assert_ne!(a, Digest::of(&[entry("a", 1), entry("b", 3)]));
    }

    #[test]
    fn reports_out_of_bounds_are_refused() {
        let fine = PresenceReport {
            lease_ms: 15_000,
            reset: false,
            channels: vec![entry("room", 2)],
            digest: None,
        };
        assert_eq!(fine.check(), Ok(()));
        let mut long_lease = fine.clone();
        long_lease.lease_ms = u64::MAX;
        assert!(long_lease.check().is_err());
        let mut crowded = fine.clone();
        crowded.channels[0].users = (0..=REPORT_IDS).map(|n| (n.to_string(), true)).collect();
        assert!(crowded.check().is_err());
        let mut escaped = fine.clone();
        escaped.channels[0].users = vec![("\"".repeat(40), true)];
        assert!(escaped.check().is_err(), "40 quotes are 80 bytes in JSON");
        let mut bad_name = fine;
        bad_name.channels[0].channel = String::new();
        assert!(bad_name.check().is_err());
    }
}
