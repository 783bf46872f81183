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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::fanout::{Kick, LiveEvent, Outlet};
use crate::hub::Hub;

/// Local events one channel may hold back while its gap is filled; past
/// it they are published as they are, and each stream fills the gap from
/// storage itself (slower, still exact).
const MAX_WAITING: usize = 4096;

#[derive(Debug, Default)]
struct Track {
    /// The newest id published to the hub.
    delivered: u64,
    /// Local events past a gap, by id.
    waiting: BTreeMap<u64, Arc<LiveEvent>>,
}

#[derive(Debug, Default)]
struct State {
    tracks: HashMap<String, Track>,
    /// Channels whose waiting events need the bus to read a gap.
    gaps: BTreeSet<String>,
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
        let State { tracks, gaps } = &mut *state;
        let Some(track) = tracks.get_mut(&event.channel) else {
            if self.hub.has_listeners(&event.channel) {
                tracks.insert(
                    event.channel.clone(),
                    Track {
                        delivered: seq,
                        waiting: BTreeMap::new(),
                    },
                );
            }
            self.hub.publish(event);
            return;
        };
        if seq <= track.delivered {
            return;
        }
        if seq == track.delivered + 1 {
            self.hub.publish(event);
            track.delivered = seq;
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
                track.delivered = seq;
            }
        }
    }

    /// Publishes every waiting event, gap or not: streams that see the gap
    /// read it from storage themselves.
    fn flush(&self, track: &mut Track) {
        for (seq, event) in std::mem::take(&mut track.waiting) {
            self.hub.publish(&event);
            track.delivered = seq;
        }
    }

    /// Where the bus should start reading `channel`, which storage holds up
    /// to `last`: `None` when there is nothing to read (nobody listens
    /// here, or it was all delivered). `first` is where a notice's range
    /// starts; without one (a poll), an untracked channel reads only its
    /// newest event, which tells each stream whether it is behind.
    pub(crate) fn read_from(&self, channel: &str, first: Option<u64>, last: u64) -> Option<u64> {
        let mut state = self.state();
        if !self.hub.has_listeners(channel) {
            state.tracks.remove(channel);
            return None;
        }
        match state.tracks.get(channel) {
            Some(track) if track.delivered >= last => None,
            Some(track) => Some(track.delivered),
            None if last == 0 => None,
            None => Some(first.unwrap_or(last).saturating_sub(1).min(last - 1)),
        }
    }

    /// Events of `channel` read from storage, in id order, covering every
    /// id up to `through` that storage still holds: published where they
    /// are next in line, then any waiting local events behind them.
    pub(crate) fn remote(&self, channel: &str, events: &[Arc<LiveEvent>], through: u64) -> usize {
        let mut state = self.state();
        let track = state
            .tracks
            .entry(channel.to_owned())
            .or_insert_with(|| Track {
                delivered: events
                    .first()
                    .and_then(|event| event.seq)
                    .map_or(through, |seq| seq - 1),
                waiting: BTreeMap::new(),
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
            track.delivered = seq;
            published += 1;
        }
        track.delivered = track.delivered.max(through);
        self.release(track);
        published
    }

    /// Resolves when some channel has a gap to read.
    pub(crate) async fn gap_found(&self) {
        self.gap_found.notified().await;
    }

    /// The gaps waiting to be read, taken.
    pub(crate) fn take_gaps(&self) -> Vec<Gap> {
        let mut state = self.state();
        let State { tracks, gaps } = &mut *state;
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
    use crate::frame::encode_body;
    use crate::hub::{InboxLimits, Registration};

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

    #[test]
    fn what_a_fill_delivered_is_not_delivered_again() {
        let (sequencer, registration) = setup();
        assert_eq!(sequencer.read_from("a", Some(1), 3), Some(0));
        sequencer.remote("a", &[event(1), event(2), event(3)], 3);
        sequencer.local(&event(3));
        sequencer.local(&event(4));
        assert_eq!(sequencer.read_from("a", Some(2), 3), None, "late notice");
        assert_eq!(received(&registration), [1, 2, 3, 4]);
    }

    #[test]
    fn a_poll_of_an_untracked_channel_reads_its_newest_event() {
        let (sequencer, registration) = setup();
        assert_eq!(sequencer.read_from("a", None, 7), Some(6));
        assert_eq!(sequencer.read_from("a", None, 0), None);
        assert_eq!(sequencer.read_from("b", None, 7), None, "nobody listens");
        drop(registration);
        assert_eq!(sequencer.read_from("a", None, 7), None);
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
