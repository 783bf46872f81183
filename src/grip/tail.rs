//! The end of a burst: when a channel that just carried many items goes
//! quiet, its streams are told to check that they have everything.
//!
//! A proxy keeps a short queue per held stream (Pushpin: 100 items) while
//! the stream's client is slow or while the stream is being refreshed, and
//! drops what does not fit, silently. A stream that lost items in the
//! middle of a burst notices at the next item, whose `prev-id` does not
//! follow its own, and fetches its next link. A stream that lost the *last*
//! items of a burst has no next item to notice by: without help it waits for
//! its link timeout (two minutes by default) or for the channel's next event.
//!
//! So once a channel has carried at least [`BURST`] items and then been
//! quiet for [`SETTLE`], the publisher sends a `hint` on it, and again after
//! each of [`AGAIN`]: the proxy may still be writing the burst out when the
//! first hint comes, and a stream whose queue is full drops the hint too.
//! A hint makes each stream on the channel fetch its next link, which
//! answers with whatever the stream lacks (nothing, for most of them; the
//! proxy merges identical fetches). A channel that carries a few events at a
//! time never gets one: fewer than [`BURST`] items cannot overflow a queue
//! that had drained.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Items on a channel, since it was last quiet, that may have overflowed a
/// stream's queue at the proxy.
pub(crate) const BURST: usize = 32;

/// How long a channel stays quiet before its streams are hinted.
pub(crate) const SETTLE: Duration = Duration::from_millis(500);

/// How long after the previous hint each further one follows.
pub(crate) const AGAIN: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

#[derive(Debug, Default)]
struct Activity {
    /// Items published since the channel was last hinted.
    items: usize,
    /// When the channel will have been quiet for [`SETTLE`].
    quiet_at: Option<Instant>,
    /// When the next hint of the last burst is due.
    again_at: Option<Instant>,
    /// Hints of the last burst sent after the first.
    again_sent: usize,
}

impl Activity {
    fn next_due(&self) -> Option<Instant> {
        match (self.quiet_at, self.again_at) {
            (Some(quiet), Some(again)) => Some(quiet.min(again)),
            (quiet, again) => quiet.or(again),
        }
    }
}

/// Which channels are at the end of a burst, for one proxy.
#[derive(Debug, Default)]
pub(crate) struct TailWatch {
    channels: HashMap<String, Activity>,
}

impl TailWatch {
    /// `items` items on `channel` were published at `now`.
    pub(crate) fn published(&mut self, channel: &str, items: usize, now: Instant) {
        // Looked up before an owned key is made: this runs per item.
        let activity = match self.channels.get_mut(channel) {
            Some(activity) => activity,
            None => self.channels.entry(channel.to_owned()).or_default(),
        };
        activity.items += items;
        activity.quiet_at = Some(now + SETTLE);
    }

    /// When the earliest hint is due, if any is.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.channels.values().filter_map(Activity::next_due).min()
    }

    /// The channels to hint now. A channel quiet after fewer than
    /// [`BURST`] items is forgotten, as is one whose last hint went out.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        self.channels.retain(|channel, activity| {
            let mut hint = false;
            if activity.quiet_at.is_some_and(|at| at <= now) {
                activity.quiet_at = None;
                if activity.items >= BURST {
                    activity.items = 0;
                    activity.again_sent = 0;
                    activity.again_at = Some(now + AGAIN[0]);
                    hint = true;
                }
            }
            if !hint && activity.again_at.is_some_and(|at| at <= now) {
                activity.again_sent += 1;
                activity.again_at = AGAIN.get(activity.again_sent).map(|gap| now + *gap);
                hint = true;
            }
            if hint {
                due.push(channel.clone());
            }
            activity.quiet_at.is_some() || activity.again_at.is_some()
        });
        due.sort();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_events_are_never_hinted() {
        let start = Instant::now();
        let mut watch = TailWatch::default();
        watch.published("room", BURST - 1, start);
        assert_eq!(watch.next_due(), Some(start + SETTLE));
        assert!(watch.take_due(start + SETTLE).is_empty());
        assert_eq!(watch.next_due(), None, "forgotten");
    }

    #[test]
    fn a_burst_is_hinted_three_times_once_quiet() {
        let start = Instant::now();
        let mut watch = TailWatch::default();
        watch.published("room", BURST / 2, start);
        watch.published("room", BURST / 2, start + SETTLE / 2);
        // Still busy: not yet.
        assert!(watch.take_due(start + SETTLE).is_empty());
        let quiet = start + SETTLE / 2 + SETTLE;
        assert_eq!(watch.take_due(quiet), ["room"]);
        assert!(watch.take_due(quiet + AGAIN[0] / 2).is_empty());
        let second = quiet + AGAIN[0];
        assert_eq!(watch.take_due(second), ["room"]);
        assert!(watch.take_due(second + AGAIN[1] / 2).is_empty());
        assert_eq!(watch.take_due(second + AGAIN[1]), ["room"]);
        assert_eq!(watch.next_due(), None, "three hints, then forgotten");
    }

    #[test]
    fn a_hint_covers_what_came_before_it() {
        let start = Instant::now();
        let mut watch = TailWatch::default();
        watch.published("room", BURST, start);
        let first = start + SETTLE;
        assert_eq!(watch.take_due(first), ["room"]);
        // A chat goes on at one event a second after its burst: none of
        // those is hinted; only the burst's own further hints go out.
        let mut hints = 0;
        for tenth in 1..=100 {
            let at = first + Duration::from_millis(100 * tenth);
            if tenth % 10 == 0 {
                watch.published("room", 1, at);
            }
            hints += watch.take_due(at).len();
        }
        assert_eq!(hints, AGAIN.len());
    }

    #[test]
    fn channels_are_told_apart() {
        let start = Instant::now();
        let mut watch = TailWatch::default();
        watch.published("a", BURST, start);
        watch.published("b", BURST, start + SETTLE);
        assert_eq!(watch.take_due(start + SETTLE), ["a"]);
        assert_eq!(watch.take_due(start + SETTLE * 2), ["b"]);
        assert_eq!(watch.take_due(start + SETTLE + AGAIN[0]), ["a"]);
    }
}
