//! Presence: how many streams and which users read a channel right now,
//! across instances and behind proxies, and the coalesced
//! `stream-presence` events of the streams that ask for them.
//!
//! Three sources make one view:
//!
//! - this process's own streams, counted when they open and when they
//!   close (an [`Attendance`] each), never per event: the fan-out does no
//!   presence work;
//! - other instances, from their reports over the bus
//!   ([`crate::wire::presence_report`]), each standing for its sender's
//!   lease, so a killed instance drops out without cleanup;
//! - streams a GRIP proxy holds, seen whenever their request reaches the
//!   app (the first one, and every next link the proxy follows), each
//!   standing for the proxied lease: a join is seen at once, a leave only
//!   when the proxy stops asking.
//!
//! Every `presence_interval_ms` the [`ticker`] drops what outlived its
//! lease and gives each channel whose view changed one `stream-presence`
//! event, for the whole interval, however many joined or left: its cost
//! follows the channels that change, not the audience. Streams held by a
//! proxy get theirs as items on the channel's presence channels, from one
//! instance only (the one with the lowest id on the bus).

mod answer;
mod event;
mod tally;
pub(crate) mod ticker;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use self::answer::ChannelPresence;
use self::tally::Tally;
use crate::access::identity::User;
use crate::access::presence_rule::{PresenceRule, PresenceView};
use crate::delivery::hub::{Hub, PresenceFrames};
use crate::wire::presence_report::{
    ChannelReport, Digest, PresenceReport, REPORT_ID_BYTES, REPORT_IDS, escaped_len,
};

/// Other instances remembered, at most.
const MAX_INSTANCES: usize = 256;
/// Channels one other instance may report, at most.
const MAX_REMOTE_CHANNELS: usize = 100_000;
/// Proxied readers (channel and user) tracked, at most.
const MAX_PROXIED: usize = 200_000;
/// A report part's entries weigh at most this many bytes as JSON, so a
/// part fits in one bus notice.
const PART_BYTES: usize = 6_000;
/// Report parts handed to the bus per round, at most (about 200 KB): a
/// full report of many channels is spread over rounds instead of filling
/// the bus's queue, which live-only events share.
const PARTS_PER_ROUND: usize = 32;

/// How presence behaves (from the configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// At most one `stream-presence` per channel per this.
    pub(crate) interval: Duration,
    /// Users named per answer or event, at most.
    pub(crate) list_max: usize,
    /// How long an instance's report stands without a word from it.
    pub(crate) lease: Duration,
    /// How long a proxied stream counts after its last request.
    pub(crate) proxied_lease: Duration,
}

/// Where the `stream-presence` events of streams a proxy holds go (the
/// GRIP publisher).
pub(crate) trait ProxiedPresence: Send + Sync + 'static {
    /// Publishes `channel`'s event: `named` (the whole list) to readers who
    /// may see users, `counts` to those who may see counts.
    fn presence(&self, channel: &str, counts: &Bytes, named: &Bytes);
}

/// The registry behind presence (one per stage).
pub(crate) struct Presence {
    settings: Settings,
    state: Mutex<State>,
    hub: Arc<Hub>,
    /// Set with GRIP.
    proxied: OnceLock<Arc<dyn ProxiedPresence>>,
    /// This instance's id on the bus, if there is one.
    origin: OnceLock<u64>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    local: HashMap<String, Tally>,
    /// Per channel, per proxied reader (user id, `None` anonymous).
    proxied: HashMap<String, HashMap<Option<String>, Sighting>>,
    proxied_count: usize,
    remote: HashMap<u64, Instance>,
    /// With a bus: channels whose share of this instance changed since it
    /// was reported (without one nothing reports, and nothing is kept).
    unreported: BTreeSet<String>,
    reporting: bool,
    /// What the other instances were last told, per channel.
    reported: HashMap<String, ChannelReport>,
    /// Report parts made and not yet handed to the bus: a large report
    /// goes out [`PARTS_PER_ROUND`] parts a round.
    outbox: VecDeque<PresenceReport>,
    full_report_due: bool,
    /// Channels whose view may have changed since their last event.
    unannounced: BTreeSet<String>,
    /// Streams of this process that asked for presence, per channel.
    viewers: HashMap<String, usize>,
    /// Proxied streams that asked for presence and reached this instance,
    /// per channel: until when they count.
    proxied_viewers: HashMap<String, Instant>,
    /// Per channel with viewers: what its last event (or the first
    /// viewer's snapshot) said, with every named user.
    shown: HashMap<String, ChannelPresence>,
}

#[derive(Debug, Clone, Copy)]
struct Sighting {
    expires: Instant,
    listed: bool,
}

#[derive(Debug)]
struct Instance {
    expires: Instant,
    lease: Duration,
    channels: HashMap<String, ChannelReport>,
    /// When a full report was last asked of it.
    asked: Option<Instant>,
}

/// One stream's place in the counts; leaving when dropped.
#[derive(Debug)]
pub(crate) struct Attendance {
    presence: Arc<Presence>,
    user: Option<String>,
    channels: Vec<String>,
    /// Per channel: whether the stream watches its presence.
    watching: Vec<bool>,
    /// Per channel: whether it joined named.
    listed: Vec<bool>,
}

impl Drop for Attendance {
    fn drop(&mut self) {
        let mut state = self.presence.state();
        for ((channel, watching), listed) in
            self.channels.iter().zip(&self.watching).zip(&self.listed)
        {
            if let Some(tally) = state.local.get_mut(channel)
                && tally.leave(self.user.as_deref(), *listed)
            {
                state.local.remove(channel);
            }
            if *watching && let Some(viewers) = state.viewers.get_mut(channel) {
                *viewers -= 1;
                if *viewers == 0 {
                    state.viewers.remove(channel);
                    if !state.watched(channel) {
                        state.shown.remove(channel);
                    }
                }
            }
            state.changed(channel);
        }
    }
}

impl State {
    /// This instance's share of `channel` changed: report it (with a bus)
    /// and announce it.
    fn changed(&mut self, channel: &str) {
        if self.reporting && !self.unreported.contains(channel) {
            self.unreported.insert(channel.to_owned());
        }
        self.announce_later(channel);
    }

    /// `channel`'s view may have changed: the next tick looks at it.
    fn announce_later(&mut self, channel: &str) {
        if !self.unannounced.contains(channel) {
            self.unannounced.insert(channel.to_owned());
        }
    }

    /// Whether some stream a proxy holds, anywhere, watches `channel`.
    fn watched(&self, channel: &str) -> bool {
        self.proxied_viewers.contains_key(channel)
            || self.remote.values().any(|instance| {
                instance
                    .channels
                    .get(channel)
                    .is_some_and(|report| report.watched)
            })
    }

    /// The channel's readers, everywhere, as one answer.
    fn view(&self, channel: &str, list_max: usize) -> ChannelPresence {
        let mut streams = 0;
        let mut more = 0;
        // Per user id: named?
        let mut users: HashMap<&str, bool> = HashMap::new();
        let mut proxied: BTreeSet<Option<&str>> = BTreeSet::new();
        if let Some(tally) = self.local.get(channel) {
            streams += tally.streams;
            for (id, streams) in &tally.users {
                add_user(&mut users, id.as_str(), Tally::named(streams));
            }
        }
        if let Some(readers) = self.proxied.get(channel) {
            for (id, sighting) in readers {
                proxied.insert(id.as_deref());
                if let Some(id) = id {
                    add_user(&mut users, id.as_str(), sighting.listed);
                }
            }
        }
        for instance in self.remote.values() {
            let Some(report) = instance.channels.get(channel) else {
                continue;
            };
            streams += report.streams + report.more_proxied;
            more += report.more_users + report.more_proxied;
            for (id, listed) in &report.users {
                add_user(&mut users, id.as_str(), *listed);
            }
            for (id, listed) in &report.proxied {
                proxied.insert(id.as_deref());
                if let Some(id) = id {
                    add_user(&mut users, id.as_str(), *listed);
                }
            }
        }
        streams += proxied.len() as u64;
        let mut listed: Vec<String> = users
            .iter()
            .filter(|(_, listed)| **listed)
            .map(|(id, _)| (*id).to_owned())
            .collect();
        listed.sort_unstable();
        let truncated = listed.len() > list_max;
        listed.truncate(list_max);
        ChannelPresence {
            channel: channel.to_owned(),
            streams,
            users: users.len() as u64 + more,
            listed,
            truncated,
        }
    }

    /// This instance's share of `channel`, as reported to the others.
    fn share(&self, channel: &str) -> ChannelReport {
        let mut report = ChannelReport {
            channel: channel.to_owned(),
            ..ChannelReport::default()
        };
        if let Some(tally) = self.local.get(channel) {
            report.streams = tally.streams;
            let users: Vec<(String, bool)> = tally
                .users
                .iter()
                .map(|(id, streams)| (id.clone(), Tally::named(streams)))
                .collect();
            let (named, more) = name_some(users);
            report.users = named;
            report.more_users = more;
        }
        if let Some(readers) = self.proxied.get(channel) {
            let mut named = Vec::new();
            let mut anonymous = false;
            for (id, sighting) in readers {
                match id {
                    Some(id) => named.push((id.clone(), sighting.listed)),
                    None => anonymous = true,
                }
            }
            let (named, more) = name_some(named);
            report.proxied = named
                .into_iter()
                .map(|(id, listed)| (Some(id), listed))
                .collect();
            if anonymous {
                report.proxied.insert(0, (None, false));
            }
            report.more_proxied = more;
        }
        report.watched = self.proxied_viewers.contains_key(channel);
        report
    }
}

/// Counts user `id` once, named if any source names it.
fn add_user<'a>(users: &mut HashMap<&'a str, bool>, id: &'a str, listed: bool) {
    *users.entry(id).or_default() |= listed;
}

/// The users a report names (the named-in-presence ones first, then by
/// id; ids that fit), sorted by id, and how many it only counts.
fn name_some(mut users: Vec<(String, bool)>) -> (Vec<(String, bool)>, u64) {
    let total = users.len();
    users.retain(|(id, _)| escaped_len(id) <= REPORT_ID_BYTES);
    users.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    users.truncate(REPORT_IDS);
    users.sort_unstable();
    let more = (total - users.len()) as u64;
    (users, more)
}

impl Presence {
    pub(crate) fn new(settings: Settings, hub: Arc<Hub>) -> Arc<Presence> {
        Arc::new(Presence {
            settings,
            state: Mutex::default(),
            hub,
            proxied: OnceLock::new(),
            origin: OnceLock::new(),
        })
    }

    /// Sends the events of streams a proxy holds to `outlet`.
    pub(crate) fn publish_to(&self, outlet: Arc<dyn ProxiedPresence>) {
        let _ = self.proxied.set(outlet);
    }

    /// This instance's id on the bus: of the instances that hear each
    /// other, the lowest one publishes proxied streams' events.
    pub(crate) fn set_origin(&self, origin: u64) {
        let _ = self.origin.set(origin);
        self.state().reporting = true;
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a stream of `user` on `channels` (`rules` per channel) until
    /// the returned attendance is dropped. With `watching`, the stream
    /// also follows the presence of the channels it may see, and gets
    /// their snapshot frames now (one per channel, in order).
    pub(crate) fn attend(
        self: &Arc<Self>,
        user: Option<&User>,
        channels: &[String],
        rules: &[PresenceRule],
        watching: bool,
    ) -> (Attendance, Vec<Bytes>) {
        let user_id = user.map(|user| user.id.clone());
        let mut snapshots = Vec::new();
        let mut watched = Vec::with_capacity(channels.len());
        let mut named = Vec::with_capacity(channels.len());
        let mut state = self.state();
        for (channel, rule) in channels.iter().zip(rules) {
            let listed = rule.listed && user.is_some();
            named.push(listed);
            state
                .local
                .entry(channel.clone())
                .or_default()
                .join(user_id.as_deref(), listed);
            let watches = watching && rule.view != PresenceView::Hidden;
            if watches {
                *state.viewers.entry(channel.clone()).or_default() += 1;
            }
            state.changed(channel);
            watched.push(watches);
            if watches {
                snapshots.push(self.first_look(&mut state, channel, rule.view));
            }
        }
        drop(state);
        let attendance = Attendance {
            presence: Arc::clone(self),
            user: user_id,
            channels: channels.to_vec(),
            watching: watched,
            listed: named,
        };
        (attendance, snapshots)
    }

    /// Streams of `channel` per instance: this one's own (`None`), then
    /// each other instance's (by its id on the bus), as last reported; and
    /// the proxied readers this instance has seen.
    pub(crate) fn instances(&self, channel: &str) -> (Vec<(Option<u64>, u64)>, u64) {
        let state = self.state();
        let mut instances = vec![(
            None,
            state.local.get(channel).map_or(0, |tally| tally.streams),
        )];
        let mut remote: Vec<(Option<u64>, u64)> = state
            .remote
            .iter()
            .filter_map(|(origin, instance)| {
                let report = instance.channels.get(channel)?;
                Some((Some(*origin), report.streams))
            })
            .collect();
        remote.sort_unstable();
        instances.extend(remote);
        let proxied = state
            .proxied
            .get(channel)
            .map_or(0, |readers| readers.len() as u64);
        (instances, proxied)
    }

    /// Who reads `channel` now.
    pub(crate) fn answer(&self, channel: &str) -> ChannelPresence {
        self.state().view(channel, self.settings.list_max)
    }

    /// A proxied stream of `user` on `channels` (`rules` per channel)
    /// reached the app: it counts for the proxied lease from now. With
    /// `watching`, it follows the presence of the channels it may see
    /// (its first answer carries [`Presence::snapshots`]).
    pub(crate) fn sighted(
        &self,
        user: Option<&User>,
        channels: &[String],
        rules: &[PresenceRule],
        watching: bool,
    ) {
        let expires = Instant::now() + self.settings.proxied_lease;
        let key = user.map(|user| user.id.clone());
        let mut state = self.state();
        if watching {
            for (channel, rule) in channels.iter().zip(rules) {
                if rule.view == PresenceView::Hidden {
                    continue;
                }
                if state
                    .proxied_viewers
                    .insert(channel.clone(), expires)
                    .is_none()
                {
                    state.changed(channel);
                }
            }
        }
        for (channel, rule) in channels.iter().zip(rules) {
            let sighting = Sighting {
                expires,
                listed: rule.listed && user.is_some(),
            };
            let known = state
                .proxied
                .get(channel)
                .is_some_and(|readers| readers.contains_key(&key));
            if !known && state.proxied_count >= MAX_PROXIED {
                continue;
            }
            let before = state
                .proxied
                .entry(channel.clone())
                .or_default()
                .insert(key.clone(), sighting);
            if before.is_none() {
                state.proxied_count += 1;
            }
            if before.is_none_or(|before| before.listed != sighting.listed) {
                state.changed(channel);
            }
        }
    }

    /// A new proxied watcher's snapshot frames of `channels` (`rules` per
    /// channel), for the first answer only: later ones come as proxy
    /// items.
    pub(crate) fn snapshots(&self, channels: &[String], rules: &[PresenceRule]) -> Vec<Bytes> {
        let mut state = self.state();
        channels
            .iter()
            .zip(rules)
            .filter(|(_, rule)| rule.view != PresenceView::Hidden)
            .map(|(channel, rule)| self.first_look(&mut state, channel, rule.view))
            .collect()
    }

    /// A new watcher's snapshot of `channel` (as `view` lets it see); the
    /// channel's later events are told against what it shows.
    fn first_look(&self, state: &mut State, channel: &str, view: PresenceView) -> Bytes {
        let now = state.view(channel, usize::MAX);
        let snapshot = event::snapshot(&now, view == PresenceView::Users, self.settings.list_max);
        state.shown.entry(channel.to_owned()).or_insert(now);
        snapshot
    }

    /// Drops proxied readers and instances whose lease ran out.
    fn expire(&self, state: &mut State, now: Instant) {
        let mut gone = Vec::new();
        state.proxied.retain(|channel, readers| {
            let before = readers.len();
            readers.retain(|_, sighting| sighting.expires > now);
            if readers.len() != before {
                gone.push((channel.clone(), before - readers.len()));
            }
            !readers.is_empty()
        });
        for (channel, count) in gone {
            state.proxied_count -= count;
            state.changed(&channel);
        }
        let unwatched: Vec<String> = state
            .proxied_viewers
            .iter()
            .filter(|(_, expires)| **expires <= now)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in unwatched {
            state.proxied_viewers.remove(&channel);
            state.changed(&channel);
        }
        let dead: Vec<u64> = state
            .remote
            .iter()
            .filter(|(_, instance)| instance.expires <= now)
            .map(|(origin, _)| *origin)
            .collect();
        for origin in dead {
            if let Some(instance) = state.remote.remove(&origin) {
                log::info!(
                    "eventstream: instance {origin:x} sent no presence report for {:?}; its readers leave the counts",
                    instance.lease
                );
                for channel in instance.channels.keys() {
                    state.announce_later(channel);
                }
            }
        }
    }

    /// Takes another instance's report. Returns whether its digest
    /// disagrees with what this instance heard from it, and a full report
    /// should be asked for (at most once per third of its lease).
    pub(crate) fn heard(&self, origin: u64, report: PresenceReport) -> bool {
        let now = Instant::now();
        let lease = Duration::from_millis(report.lease_ms);
        let mut state = self.state();
        if !state.remote.contains_key(&origin) && state.remote.len() >= MAX_INSTANCES {
            log::warn!(
                "eventstream: presence reports from more than {MAX_INSTANCES} instances; instance {origin:x} is not counted"
            );
            return false;
        }
        let instance = state.remote.entry(origin).or_insert_with(|| Instance {
            expires: now,
            lease,
            channels: HashMap::new(),
            asked: None,
        });
        instance.expires = now + lease;
        instance.lease = lease;
        let mut touched: Vec<String> = Vec::new();
        if report.reset {
            touched.extend(instance.channels.drain().map(|(channel, _)| channel));
        }
        for entry in report.channels {
            touched.push(entry.channel.clone());
            if entry.is_empty() {
                instance.channels.remove(&entry.channel);
            } else if instance.channels.len() < MAX_REMOTE_CHANNELS
                || instance.channels.contains_key(&entry.channel)
            {
                instance.channels.insert(entry.channel.clone(), entry);
            }
        }
        let ask = match report.digest {
            Some(digest) if digest != Digest::of(instance.channels.values()) => {
                let due = instance
                    .asked
                    .is_none_or(|asked| now.duration_since(asked) >= lease / 3);
                if due {
                    instance.asked = Some(now);
                }
                due
            }
            _ => false,
        };
        for channel in touched {
            state.announce_later(&channel);
        }
        ask
    }

    /// Another instance asked for everything this one reports.
    pub(crate) fn full_report_due(&self) {
        self.state().full_report_due = true;
    }

    /// What changed in this instance's share since the last call, as
    /// report parts that each fit in a notice (the last one of a report
    /// with the digest), at most [`PARTS_PER_ROUND`] of them; empty when
    /// nothing changed. A report's remaining parts come first next time;
    /// changes meanwhile wait for them.
    pub(crate) fn report_changes(&self) -> Vec<PresenceReport> {
        let mut state = self.state();
        if state.outbox.is_empty() {
            let parts = self.make_report(&mut state);
            state.outbox.extend(parts);
        }
        let count = state.outbox.len().min(PARTS_PER_ROUND);
        state.outbox.drain(..count).collect()
    }

    /// The parts of the next report: everything when a full one is due,
    /// else the channels whose share changed.
    fn make_report(&self, state: &mut State) -> Vec<PresenceReport> {
        let lease_ms = self.settings.lease.as_millis() as u64;
        let full = std::mem::take(&mut state.full_report_due);
        let channels: Vec<String> = if full {
            state.unreported.clear();
            let mut all: BTreeSet<String> = state.local.keys().cloned().collect();
            all.extend(state.proxied.keys().cloned());
            all.into_iter().collect()
        } else {
            std::mem::take(&mut state.unreported).into_iter().collect()
        };
        let mut entries = Vec::new();
        if full {
            state.reported.clear();
        }
        for channel in channels {
            let share = state.share(&channel);
            let before = state.reported.get(&channel);
            if !full && before.is_none_or(ChannelReport::is_empty) && share.is_empty() {
                continue;
            }
            if before == Some(&share) {
                continue;
            }
            if share.is_empty() {
                state.reported.remove(&channel);
            } else {
                state.reported.insert(channel, share.clone());
            }
            entries.push(share);
        }
        if entries.is_empty() && !full {
            return Vec::new();
        }
        let digest = Digest::of(state.reported.values());
        let mut parts: Vec<PresenceReport> = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            let size = serde_json::to_string(&entry).map_or(0, |text| text.len());
            match parts.last_mut() {
                Some(part) if bytes + size <= PART_BYTES => part.channels.push(entry),
                _ => {
                    parts.push(PresenceReport {
                        lease_ms,
                        reset: full && parts.is_empty(),
                        channels: vec![entry],
                        digest: None,
                    });
                    bytes = 0;
                }
            }
            bytes += size;
        }
        if parts.is_empty() {
            parts.push(PresenceReport {
                lease_ms,
                reset: full,
                channels: Vec::new(),
                digest: None,
            });
        }
        if let Some(last) = parts.last_mut() {
            last.digest = Some(digest);
        }
        parts
    }

    /// A report with no change: renews this instance's lease with the
    /// others and lets them check their view of it. `None` while a report
    /// is still going out (its parts renew the lease, and its digest would
    /// not match what the others heard so far).
    pub(crate) fn heartbeat(&self) -> Option<PresenceReport> {
        let state = self.state();
        state.outbox.is_empty().then(|| PresenceReport {
            lease_ms: self.settings.lease.as_millis() as u64,
            reset: false,
            channels: Vec::new(),
            digest: Some(Digest::of(state.reported.values())),
        })
    }

    /// One round of the ticker: expiries, then one event per channel whose
    /// view changed for the streams here that watch it. Returns how many
    /// channels got one.
    pub(crate) fn tick(&self) -> usize {
        let list_max = self.settings.list_max;
        let mut frames = Vec::new();
        {
            let mut state = self.state();
            self.expire(&mut state, Instant::now());
            let leader = self
                .origin
                .get()
                .is_none_or(|me| state.remote.keys().all(|origin| origin > me));
            for channel in std::mem::take(&mut state.unannounced) {
                let direct = state.viewers.contains_key(&channel);
                let watched = state.watched(&channel);
                let proxied = leader && self.proxied.get().is_some() && watched;
                if !direct && !proxied {
                    if !watched {
                        state.shown.remove(&channel);
                    }
                    continue;
                }
                // Uncapped here, so that who joined and left is right
                // however many are named; events cap their lists.
                let now = state.view(&channel, usize::MAX);
                let before = state.shown.get(&channel);
                if before == Some(&now) {
                    continue;
                }
                let (joined, left) = match before {
                    Some(before) => (
                        difference(&now.listed, &before.listed),
                        difference(&before.listed, &now.listed),
                    ),
                    None => (now.listed.iter().map(String::as_str).collect(), Vec::new()),
                };
                let round = PresenceFrames {
                    counts: event::counts(&now),
                    change: event::change(&now, &joined, &left, list_max),
                    snapshot: event::snapshot(&now, true, list_max),
                };
                frames.push((channel.clone(), round, direct, proxied));
                state.shown.insert(channel, now);
            }
        }
        for (channel, round, direct, proxied) in &frames {
            if *direct {
                self.hub.presence(channel, round);
            }
            // Proxied watchers get the whole list every time: their first
            // answer may have come from another instance, and an item the
            // proxy got before their subscription is lost to them.
            if *proxied && let Some(outlet) = self.proxied.get() {
                outlet.presence(channel, &round.counts, &round.snapshot);
            }
        }
        frames.len()
    }
}

/// The names in `a` and not in `b` (both sorted).
fn difference<'a>(a: &'a [String], b: &[String]) -> Vec<&'a str> {
    a.iter()
        .filter(|name| b.binary_search(name).is_err())
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests;
