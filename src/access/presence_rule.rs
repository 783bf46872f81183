//! What presence shows of a channel: per reader, what they may see of who
//! else reads it, and whether they are named there. The authorizer decides
//! ([`Authorizer::presence`](crate::Authorizer::presence)); counting never
//! depends on it, naming always does.

/// What a reader of a channel sees of its presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresenceView {
    /// Nothing: a stream that asked for presence gets no `stream-presence`
    /// for this channel.
    Hidden,
    /// How many streams and distinct users read the channel.
    #[default]
    Counts,
    /// The counts, and which users read it (those the authorizer lists).
    Users,
}

/// An [`Authorizer::presence`](crate::Authorizer::presence) answer for one
/// user and channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceRule {
    /// What this user sees of the channel's presence.
    pub view: PresenceView,
    /// Whether this user is named in the channel's presence. A user who is
    /// not is still counted, and never appears in a list, a `joined` or a
    /// `left`. Anonymous readers are never named.
    pub listed: bool,
}

impl PresenceRule {
    /// Sees counts and users, and is named: a chat room's members.
    pub const MEMBER: PresenceRule = PresenceRule {
        view: PresenceView::Users,
        listed: true,
    };
}
