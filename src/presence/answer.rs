//! [`ChannelPresence`]: the answer to "who reads this channel now".

use serde::Serialize;

/// Who reads a channel right now, across every instance and proxy: the
/// answer of [`Events::presence`](crate::Events::presence) and of
/// `GET <mount>/_presence/<channel>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelPresence {
    /// The channel asked about.
    pub channel: String,
    /// Open streams reading it. Behind a GRIP proxy, readers are told
    /// apart by user: several proxied tabs of one user (or every
    /// anonymous proxied reader) count as one.
    pub streams: u64,
    /// Distinct signed-in users among them (anonymous readers are not
    /// users).
    pub users: u64,
    /// The users the authorizer lets be named
    /// ([`PresenceRule::listed`](crate::PresenceRule::listed)), sorted,
    /// at most `presence_list_max`.
    pub listed: Vec<String>,
    /// Whether `listed` was cut at `presence_list_max`.
    pub truncated: bool,
}
