//! The delivery trace: "why didn't it arrive?" answered from what this
//! instance knows, for one channel and optionally one user and one resume
//! position ([`Events::explain`], and `explain_path` for operators).
//!
//! Everything it says comes from the parts that decide delivery: storage
//! (is the channel stored, how far was it trimmed, would that
//! `Last-Event-ID` continue or get `stream-reset`), the authorizer (this
//! user's decision), presence (who reads the channel on which instance),
//! the hub (how far behind this instance's slowest stream is), the kicks
//! this instance carried out, and each GRIP proxy's publishing. It names
//! no user but the one asked about and those presence may name, and no
//! secret.

use serde::Serialize;

use crate::access::authorizer::Decision;
use crate::access::identity::User;
use crate::error::Error;
use crate::events::{self, Events};
use crate::measure::proxies::ProxyState;
use crate::presence::ChannelPresence;
use crate::storage::{ChannelState, now_ms};
use crate::wire::event_id::Resume;

/// The delivery trace of one channel, as [`Events::explain`] gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The channel asked about.
    pub channel: String,
    /// Whether its events are stored (ids, replay, resume); the others are
    /// delivered live only.
    pub persistent: bool,
    /// Stored channels: the newest id and how far retention trimmed.
    pub storage: Option<StoredChannel>,
    /// The resume position asked about, and what a stream opened from it
    /// would get.
    pub resume: Option<ResumeCheck>,
    /// The user asked about (`None`: anonymous) and the authorizer's answer.
    pub access: AccessCheck,
    /// Who reads the channel, across instances and proxies.
    pub presence: ChannelPresence,
    /// Streams per instance: this one first (`"this"`), then the others by
    /// their id on the bus, as their last presence report said.
    pub instances: Vec<InstanceReaders>,
    /// This instance's streams of the channel, and how far behind the
    /// slowest is.
    pub local: LocalStreams,
    /// Kicks on this channel this instance carried out lately, newest
    /// first.
    pub kicks: Vec<KickSeen>,
    /// With GRIP: how publishing to each proxy goes (per proxy; the
    /// publisher does not track channels).
    pub proxies: Vec<ProxyState>,
}

/// A stored channel's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoredChannel {
    /// The newest event's id (0: none yet).
    pub last_id: u64,
    /// Every id up to this one was trimmed by retention (0: none).
    pub trimmed_through: u64,
}

/// What a stream resuming from the position asked about would get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResumeCheck {
    /// The position on this channel the `Last-Event-ID` names (`None`: it
    /// does not name this channel, so the stream starts from now).
    pub position: Option<u64>,
    /// `"continues"`: every event after it is stored and will be sent;
    /// `"stream-reset"`: events after it were trimmed (or it is ahead of
    /// the channel), so the stream says so and continues from the newest;
    /// `"live-only"`: the channel is not stored, nothing is replayed;
    /// `"bad-request"`: the value is not an id, and the stream is refused.
    pub outcome: &'static str,
    /// The same, in words.
    pub why: String,
}

/// The authorizer's answer for the user asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessCheck {
    /// The user asked about.
    pub user: Option<String>,
    /// `"allow"`, `"deny"` (the stream gets `stream-error` `forbidden`) or
    /// `"cannot-tell"` (the authorizer's data is out of reach: the stream
    /// is told to retry later).
    pub decision: &'static str,
}

/// One instance's streams of the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceReaders {
    /// `"this"`, or another instance's id on the bus (hex).
    pub instance: String,
    /// Its streams of the channel.
    pub streams: u64,
}

/// This instance's streams of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LocalStreams {
    /// Streams this instance serves itself.
    pub streams: usize,
    /// The most events one of them has waiting to be written (a slow
    /// client or network).
    pub most_queued: usize,
    /// Streams that fell further behind than their queue holds: they are
    /// reading storage to catch up (on a live-only channel they got
    /// `stream-reset`).
    pub catching_up: usize,
    /// Readers behind a GRIP proxy this instance has seen lately.
    pub proxied: u64,
}

/// A kick on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KickSeen {
    /// How long ago, in milliseconds.
    pub age_ms: u64,
    /// Whether it ended the streams of the user asked about (other users
    /// are not named).
    pub this_user: bool,
    /// Streams of this instance it ended.
    pub streams: usize,
}

impl Events {
    /// The delivery trace of `channel`: whether it is stored and how far it
    /// was trimmed, what a stream of `user` resuming from `last_event_id`
    /// (a `Last-Event-ID` value) would get, the authorizer's decision for
    /// `user`, who reads the channel on which instance, how far behind
    /// this instance's slowest stream is, recent kicks, and each GRIP
    /// proxy's publishing.
    ///
    /// It reveals no secret, and names no user but `user` and those
    /// presence may name. `user` is looked at as given: an authorizer that
    /// decides by roles sees the roles it carries.
    pub async fn explain(
        &self,
        channel: &str,
        user: Option<&User>,
        last_event_id: Option<&str>,
    ) -> Result<Explanation, Error> {
        events::valid(channel)?;
        let context = self.context();
        let persistent = context.authorizer.is_channel_reliable(channel);
        let state = if persistent {
            let names = [channel.to_owned()];
            let states = context.storage.channel_states(&names).await?;
            Some(states.get(channel).copied().unwrap_or_default())
        } else {
            None
        };
        let resume = last_event_id.map(|id| check_resume(channel, id, state));
        let storage = state.map(|state| StoredChannel {
            last_id: state.last_id,
            trimmed_through: state.trimmed_through,
        });
        let decision = match context.authorizer.decide(user, channel).await {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::CannotTell => "cannot-tell",
        };
        let (instances, proxied) = context.presence.instances(channel);
        let instances = instances
            .into_iter()
            .map(|(origin, streams)| InstanceReaders {
                instance: origin.map_or_else(|| "this".to_owned(), |origin| format!("{origin:x}")),
                streams,
            })
            .collect();
        let backlog = context.hub.backlog(channel);
        let now = now_ms();
        let kicks = context
            .metrics
            .kick_log
            .on(channel)
            .into_iter()
            .map(|kick| KickSeen {
                age_ms: (now - kick.at_ms).max(0) as u64,
                this_user: kick.user_id.as_deref() == user.map(|user| user.id.as_str()),
                streams: kick.streams,
            })
            .collect();
        Ok(Explanation {
            channel: channel.to_owned(),
            persistent,
            storage,
            resume,
            access: AccessCheck {
                user: user.map(|user| user.id.clone()),
                decision,
            },
            presence: context.presence.answer(channel),
            instances,
            local: LocalStreams {
                streams: backlog.streams,
                most_queued: backlog.most_queued,
                catching_up: backlog.overflowed,
                proxied,
            },
            kicks,
            proxies: context
                .proxies
                .as_ref()
                .map(|probe| probe.proxy_states())
                .unwrap_or_default(),
        })
    }
}

/// What resuming `channel` (stored: `state`; live only: `None`) from the
/// `Last-Event-ID` value `id` would do; streams decide by the same
/// [`ChannelState::can_resume_from`].
fn check_resume(channel: &str, id: &str, state: Option<ChannelState>) -> ResumeCheck {
    let positions = match Resume::from_request(Some(id), std::iter::empty()) {
        Ok(Resume::AfterError) => {
            return ResumeCheck {
                position: None,
                outcome: "bad-request",
                why: "`error` is the id of a stream-error: resuming after it is refused with HTTP 400".into(),
            };
        }
        Ok(resume) => resume.into_positions(),
        Err(why) => {
            return ResumeCheck {
                position: None,
                outcome: "bad-request",
                why: format!("not an event id: {why}"),
            };
        }
    };
    let position = positions.get(channel);
    let Some(stored) = state else {
        return ResumeCheck {
            position,
            outcome: "live-only",
            why: "the channel is not stored: nothing is replayed, the stream starts with the next event".into(),
        };
    };
    let Some(position) = position else {
        return ResumeCheck {
            position: None,
            outcome: "continues",
            why:
                "the id names no position on this channel: the stream starts from its newest event"
                    .into(),
        };
    };
    let (outcome, why) = if stored.can_resume_from(position) {
        (
            "continues",
            format!(
                "every event after {position} is stored: the stream sends the {} missed, then live ones",
                stored.last_id - position
            ),
        )
    } else if position > stored.last_id {
        (
            "stream-reset",
            format!(
                "{position} is ahead of the channel's newest id {} (the log went back in time, or the id is from another log): stream-reset, then the newest events",
                stored.last_id
            ),
        )
    } else {
        (
            "stream-reset",
            format!(
                "retention trimmed the channel through {}: the events after {position} are gone, so the stream gets stream-reset and continues from {}",
                stored.trimmed_through, stored.last_id
            ),
        )
    };
    ResumeCheck {
        position: Some(position),
        outcome,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(last_id: u64, trimmed_through: u64) -> Option<ChannelState> {
        Some(ChannelState {
            last_id,
            trimmed_through,
            last_token: None,
        })
    }

    #[test]
    fn resume_positions_are_judged_as_streams_would_be() {
        let outcome = |id: &str, state| check_resume("a", id, state).outcome;
        assert_eq!(outcome("a:5", stored(9, 3)), "continues");
        assert_eq!(outcome("a:2", stored(9, 3)), "stream-reset");
        assert_eq!(outcome("a:9", stored(9, 9)), "continues");
        assert_eq!(outcome("a:12", stored(9, 0)), "stream-reset");
        assert_eq!(outcome("b:4", stored(9, 0)), "continues");
        assert_eq!(outcome("a:x", stored(9, 0)), "bad-request");
        assert_eq!(outcome("error", stored(9, 0)), "bad-request");
        assert_eq!(check_resume("a", "a:1", None).outcome, "live-only");
    }
}
