//! The sequencer: the one door into the hub when several instances write.
//!
//! Two sources feed this process's streams with committed events: its own
//! writer (through the fan-out) and the bus (events other instances
//! committed, read from storage). Both go through here, under one lock, so
//! every channel reaches the hub in id order and each id once:
//!
//! - an event at `delivered + 1` is published and advances the channel;
//! - one at or below `delivered` was already published (a fill read it
//!   from storage before the writer got to it) and is dropped;
//! - a local event past a gap (another instance committed the ids between,
//!   and its notice has not arrived) waits here while the bus reads the gap
//!   from storage once, for every stream of the channel, instead of each
//!   stream going to storage on its own.
//!
//! Only channels that streams of this process listen to are tracked; a
//! channel nobody listens to costs nothing.
//!
//! Only storage and this process's own writer move a channel here: a
//! notice says where to look, and what the bus reads from storage is what
//! is published. The sequencer remembers the append token of the newest
//! event it published per channel, so that when the log goes back in time
//! under it (a restore, a failover to a replica that was behind) and ids it
//! published are given to other events, it notices instead of taking them
//! for repeats: it forgets the channel and tells every stream of it to
//! read storage again, where each finds its own `stream-reset`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::delivery::fanout::{Kick, LiveEvent, Outlet};
use crate::delivery::hub::Hub;
use crate::storage::ChannelState;
use crate::stream::replay::Mark;

/// Local events one channel may hold back while its gap is filled; past
/// it they are published as they are, and each stream fills the gap from
/// storage itself (slower, still exact).
const MAX_WAITING: usize = 4096;

#[derive(Debug, Default)]
struct Track {
    /// The newest id published to the hub.
    delivered: u64,
    /// The newest event published whose append token is known.
    mark: Option<Mark>,
    /// Local events past a gap, by id.
    waiting: BTreeMap<u64, Arc<LiveEvent>>,
}

impl Track {
    fn at(delivered: u64) -> Track {
        Track {
            delivered,
            ..Track::default()
        }
    }

    /// `event` was published.
    fn published(&mut self, seq: u64, event: &LiveEvent) {
        self.delivered = seq;
        if let Some(token) = event.token {
            self.mark = Some(Mark { seq, token });
        }
    }

    /// Where reading this channel from storage starts.
    fn read(&self) -> Read {
        Read {
            after: self.delivered,
            mark: self.mark.filter(|mark| mark.seq == self.delivered),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    tracks: HashMap<String, Track>,
    /// Channels whose waiting events need the bus to read a gap.
    gaps: BTreeSet<String>,
    /// Channels where an event at or below the published id arrived that
    /// may be a repeat or may be the log gone back in time: storage tells.
    suspects: BTreeSet<String>,
}

/// Where the bus reads a channel from: the events after `after`. A `mark`
/// is always at `after` (see [`Track::read`]): the row there must still be
/// the event published there, or the log went back in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) after: u64,
    pub(crate) mark: Option<Mark>,
}

/// What the bus knows of a channel before it reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Claim {
    /// A notice announced ids `first..=last` (a hint: what storage holds
    /// decides).
    Announced { first: u64, last: u64 },
    /// The counter row, read from storage by the poll.
    Stored(ChannelState),
}

/// A gap the bus must read from storage: ids `after + 1 ..= before - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) channel: String,
    pub(crate) after: u64,
    pub(crate) before: u64,
}

/// Orders committed events from the writer and from the bus into the hub.
#[derive(Debug)]
pub(crate) struct Sequencer {
    hub: Arc<Hub>,
    state: Mutex<State>,
    /// Woken when a channel has a gap to read.
    gap_found: Notify,
}

impl Sequencer {
    pub(crate) fn new(hub: Arc<Hub>) -> Sequencer {
        Sequencer {
            hub,
            state: Mutex::default(),
            gap_found: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An event this process committed (or sent live-only).
    fn local(&self, event: &Arc<LiveEvent>) {
        let Some(seq) = event.seq else {
            self.hub.publish(event);
            return;
        };
        let mut state = self.state();
        let State {
            tracks,
            gaps,
            suspects,
        } = &mut *state;
        let Some(track) = tracks.get_mut(&event.channel) else {
            if self.hub.has_listeners(&event.channel) {
                let mut track = Track::default();
                track.published(seq, event);
                tracks.insert(event.channel.clone(), track);
            }
            self.hub.publish(event);
            return;
        };
        if seq <= track.delivered {
            match (track.mark, event.token) {
                // This writer's appends get growing tokens: one older than
                // the mark was published before it (a fill read it first).
                (Some(mark), Some(token)) if mark.token.writer == token.writer => {
                    if token.seq > mark.token.seq {
                        // Appended after the mark, under an id already
                        // published: the log went back in time. Streams
                        // tell it from their own marks, as without a bus.
                        self.hub.publish(event);
                        track.published(seq, event);
                        track.waiting.clear();
                    }
                }
                // Another writer's mark: storage tells a repeat from a
                // rewritten log.
                _ => {
                    if suspects.insert(event.channel.clone()) {
                        self.gap_found.notify_one();
                    }
                }
            }
            return;
        }
        if seq == track.delivered + 1 {
            self.hub.publish(event);
            track.published(seq, event);
            self.release(track);
            return;
        }
        track.waiting.insert(seq, Arc::clone(event));
        if track.waiting.len() > MAX_WAITING {
            self.flush(track);
        } else if gaps.insert(event.channel.clone()) {
            self.gap_found.notify_one();
        }
    }

    /// Publishes the waiting events that are now next in line.
    fn release(&self, track: &mut Track) {
        while let Some(entry) = track.waiting.first_entry() {
            let seq = *entry.key();
            if seq > track.delivered + 1 {
                break;
            }
            let event = entry.remove();
            if seq == track.delivered + 1 {
                self.hub.publish(&event);
                track.published(seq, &event);
            }
        }
    }

    /// Publishes every waiting event, gap or not: streams that see the gap
    /// read it from storage themselves.
    fn flush(&self, track: &mut Track) {
        for (seq, event) in std::mem::take(&mut track.waiting) {
            self.hub.publish(&event);
            track.published(seq, &event);
        }
    }

    /// Where the bus should start reading `channel`, and up to which id:
    /// `None` when there is nothing to read (nobody listens here, or it
    /// was all delivered). A notice's range that starts at or below what
    /// was published is read from the published id again, which checks
    /// the row there (a late notice, or the log gone back in time). Without
    /// a notice (a poll), an untracked channel reads only its newest event,
    /// which tells each stream whether it is behind; a tracked one whose
    /// counter is behind what was published, or whose newest event is not
    /// the one published under its id, went back in time: see
    /// [`Sequencer::rewind`].
    pub(crate) fn read_from(&self, channel: &str, claim: Claim) -> Option<(Read, u64)> {
        let mut state = self.state();
        if !self.hub.has_listeners(channel) {
            state.tracks.remove(channel);
            return None;
        }
        let track = state.tracks.get(channel);
        match (claim, track) {
            // Read from what was published (checking the row there): the
            // new ids, or, for a late notice, only that check.
            (Claim::Announced { last, .. }, Some(track)) => {
                Some((track.read(), last.max(track.delivered)))
            }
            (Claim::Announced { first, last }, None) if last > 0 => Some((
                Read {
                    after: first.saturating_sub(1).min(last - 1),
                    mark: None,
                },
                last,
            )),
            (Claim::Stored(stored), Some(track)) => {
                let rewritten = stored.last_id < track.delivered
                    || track.mark.is_some_and(|mark| {
                        mark.seq == stored.last_id
                            && stored.last_token.is_some_and(|token| token != mark.token)
                    });
                if rewritten {
                    drop(state);
                    self.rewind(channel);
                    return None;
                }
                (stored.last_id > track.delivered).then(|| (track.read(), stored.last_id))
            }
            (Claim::Stored(stored), None) if stored.last_id > 0 => Some((
                Read {
                    after: stored.last_id - 1,
                    mark: None,
                },
                stored.last_id,
            )),
            _ => None,
        }
    }

    /// The log of `channel` went back in time under what was published:
    /// forgets the channel, and has every stream of it read storage again,
    /// where each one compares its own position and mark with the log and
    /// gets `stream-reset` where they no longer hold.
    pub(crate) fn rewind(&self, channel: &str) {
        log::warn!(
            "eventstream: the event log of {channel:?} went back in time (a restore, or a failover to a replica that was behind); its streams read it again"
        );
        let mut state = self.state();
        state.tracks.remove(channel);
        state.suspects.remove(channel);
        state.gaps.remove(channel);
        drop(state);
        self.hub.missed(channel);
    }

    /// Channels to check against storage: where to read each from.
    pub(crate) fn take_suspects(&self) -> Vec<(String, Read)> {
        let mut state = self.state();
        let State {
            tracks, suspects, ..
        } = &mut *state;
        std::mem::take(suspects)
            .into_iter()
            .filter_map(|channel| {
                let read = tracks.get(&channel)?.read();
                Some((channel, read))
            })
            .collect()
    }

    /// Events of `channel` read from storage, in id order, covering every
    /// id up to `through`, which storage showed (its newest id, or the end
    /// of what it trimmed): published where they are next in line, then
    /// any waiting local events behind them.
    pub(crate) fn remote(&self, channel: &str, events: &[Arc<LiveEvent>], through: u64) -> usize {
        let mut state = self.state();
        let track = state.tracks.entry(channel.to_owned()).or_insert_with(|| {
            Track::at(
                events
                    .first()
                    .and_then(|event| event.seq)
                    .map_or(through, |seq| seq - 1),
            )
        });
        let mut published = 0;
        for event in events {
            let Some(seq) = event.seq else { continue };
            if seq <= track.delivered {
                continue;
            }
            // A hole storage cannot fill (trimmed meanwhile): publish
            // anyway; each stream turns it into a reset from storage.
            self.hub.publish(event);
            track.published(seq, event);
            published += 1;
        }
        track.delivered = track.delivered.max(through);
        self.release(track);
        published
    }

    /// Resolves when some channel has a gap to read, or a suspect to check.
    pub(crate) async fn gap_found(&self) {
        self.gap_found.notified().await;
    }

    /// The gaps waiting to be read, taken.
    pub(crate) fn take_gaps(&self) -> Vec<Gap> {
        let mut state = self.state();
        let State { tracks, gaps, .. } = &mut *state;
        std::mem::take(gaps)
            .into_iter()
            .filter_map(|channel| {
                let track = tracks.get(&channel)?;
                let (&before, _) = track.waiting.first_key_value()?;
                Some(Gap {
                    after: track.delivered,
                    before,
                    channel,
                })
            })
            .collect()
    }

    /// Gives up on the gap of `channel`: publishes what waits behind it.
    /// For when storage cannot be read; streams then read it themselves.
    pub(crate) fn skip_gap(&self, channel: &str) {
        if let Some(track) = self.state().tracks.get_mut(channel) {
            self.flush(track);
        }
    }

    /// Forgets channels nobody listens to any more.
    pub(crate) fn prune(&self) {
        let mut state = self.state();
        state.tracks.retain(|channel, track| {
            let listened = self.hub.has_listeners(channel);
            if !listened {
                self.flush(track);
            }
            listened
        });
    }
}

/// The sequencer stands in for the hub in the fan-out.
impl Outlet for Sequencer {
    fn event(&self, event: &Arc<LiveEvent>) {
        self.local(event);
    }

    fn kick(&self, kick: &Kick) -> usize {
        self.hub
            .kick(kick.user_id.as_deref(), &kick.channel, &kick.error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::delivery::hub::{InboxLimits, Registration};
    use crate::storage::AppendToken;
    use crate::wire::frame::encode_body;

    fn event(seq: u64) -> Arc<LiveEvent> {
        Arc::new(LiveEvent::new(
            "a".into(),
            Some(seq),
            encode_body("m", "{}"),
            vec![],
        ))
    }

    fn setup() -> (Sequencer, Registration) {
        let hub = Arc::new(Hub::new(Arc::default()));
        let limits = InboxLimits {
            entries: 100,
            bytes: usize::MAX,
        };
        let registration = hub.subscribe(None, vec!["a".into()], limits);
        (Sequencer::new(hub), registration)
    }

    fn received(registration: &Registration) -> Vec<u64> {
        let mut queue = VecDeque::new();
        registration.take(&mut queue);
        queue.iter().filter_map(|d| d.event.seq).collect()
    }

    #[test]
    fn a_local_event_past_a_gap_waits_for_the_gap_once() {
        let (sequencer, registration) = setup();
        sequencer.local(&event(1));
        sequencer.local(&event(4));
        sequencer.local(&event(5));
        assert_eq!(received(&registration), [1]);
        let gaps = sequencer.take_gaps();
        assert_eq!(
            gaps,
            [Gap {
                channel: "a".into(),
                after: 1,
                before: 4
            }]
        );
        assert!(sequencer.take_gaps().is_empty(), "asked once");
        sequencer.remote("a", &[event(2), event(3)], 3);
        assert_eq!(received(&registration), [2, 3, 4, 5]);
    }

    fn announced(first: u64, last: u64) -> Claim {
        Claim::Announced { first, last }
    }

    fn stored(last_id: u64, token: Option<AppendToken>) -> Claim {
        Claim::Stored(ChannelState {
            last_id,
            trimmed_through: 0,
            last_token: token,
        })
    }

    fn span(read: Option<(Read, u64)>) -> Option<(u64, u64)> {
        read.map(|(read, through)| (read.after, through))
    }

    fn appended(seq: u64, writer: i64, append: i64) -> Arc<LiveEvent> {
        let token = AppendToken {
            writer,
            seq: append,
        };
        let live = LiveEvent::new("a".into(), Some(seq), encode_body("m", "{}"), vec![]);
        Arc::new(LiveEvent {
            token: Some(token),
            ..live
        })
    }

    #[test]
    fn what_a_fill_delivered_is_not_delivered_again() {
        let (sequencer, registration) = setup();
        assert_eq!(
            span(sequencer.read_from("a", announced(1, 3))),
            Some((0, 3))
        );
        sequencer.remote("a", &[event(1), event(2), event(3)], 3);
        sequencer.local(&event(3));
        sequencer.local(&event(4));
        assert_eq!(
            span(sequencer.read_from("a", announced(2, 3))),
            Some((4, 4)),
            "a late notice: the published id is checked, nothing read"
        );
        assert_eq!(received(&registration), [1, 2, 3, 4]);
    }

    #[test]
    fn a_poll_of_an_untracked_channel_reads_its_newest_event() {
        let (sequencer, registration) = setup();
        assert_eq!(
            span(sequencer.read_from("a", stored(7, None))),
            Some((6, 7))
        );
        assert_eq!(span(sequencer.read_from("a", stored(0, None))), None);
        assert_eq!(
            span(sequencer.read_from("b", stored(7, None))),
            None,
            "nobody listens"
        );
        drop(registration);
        assert_eq!(span(sequencer.read_from("a", stored(7, None))), None);
    }

    #[test]
    fn an_append_of_this_writer_under_a_published_id_is_published() {
        let (sequencer, registration) = setup();
        for seq in 1..=5 {
            sequencer.local(&appended(seq, 1, seq as i64));
        }
        // A repeat of an older append is dropped ...
        sequencer.local(&appended(4, 1, 4));
        // ... but a newer append given id 3 means the log went back.
        sequencer.local(&appended(3, 1, 6));
        assert_eq!(received(&registration), [1, 2, 3, 4, 5, 3]);
        sequencer.local(&appended(4, 1, 7));
        assert_eq!(received(&registration), [4], "and it goes on from there");
    }

    #[test]
    fn a_counter_behind_what_was_published_rewinds_the_channel() {
        let (sequencer, registration) = setup();
        for seq in 1..=5 {
            sequencer.local(&appended(seq, 1, seq as i64));
        }
        received(&registration);
        assert_eq!(span(sequencer.read_from("a", stored(3, None))), None);
        let mut queue = VecDeque::new();
        assert_eq!(
            registration.take(&mut queue).overflowed.bits(),
            1,
            "the stream reads storage again"
        );
        // Untracked now: the next event starts the channel again.
        sequencer.local(&appended(4, 1, 9));
        assert_eq!(received(&registration), [4]);
    }

    #[test]
    fn another_writers_event_at_the_published_id_rewinds_the_channel() {
        let (sequencer, registration) = setup();
        sequencer.local(&appended(1, 1, 1));
        let other = AppendToken { writer: 2, seq: 1 };
        assert_eq!(span(sequencer.read_from("a", stored(1, Some(other)))), None);
        let mut queue = VecDeque::new();
        assert_eq!(registration.take(&mut queue).overflowed.bits(), 1);
    }

    #[test]
    fn an_event_of_another_writer_under_the_published_id_is_checked() {
        let (sequencer, registration) = setup();
        sequencer.local(&appended(1, 1, 1));
        sequencer.local(&appended(1, 2, 1));
        let suspects = sequencer.take_suspects();
        assert_eq!(suspects.len(), 1);
        assert_eq!(suspects[0].1.after, 1);
        assert!(suspects[0].1.mark.is_some(), "the row at 1 is checked");
        assert_eq!(received(&registration), [1]);
    }

    #[test]
    fn an_unfillable_gap_releases_what_waits() {
        let (sequencer, registration) = setup();
        sequencer.local(&event(1));
        sequencer.local(&event(3));
        sequencer.skip_gap("a");
        assert_eq!(received(&registration), [1, 3]);
    }
}
