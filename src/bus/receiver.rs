//! The receiving half of the bus: turns notices into events for this
//! instance's streams.
//!
//! A commit notice names id ranges; the receiver reads each range from
//! storage once (one query per channel and notice, however many streams
//! listen) and gives it to the sequencer, which publishes it in id order
//! after what was already delivered. Late, repeated and out-of-order
//! notices are absorbed by id. Lost ones are found by comparing storage
//! with what was delivered: every `broadcast_poll_secs`, after the listener
//! reconnects, and when the hand-off from the listener overflowed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::error::BusError;
use super::listener::{BusState, Heard};
use super::sender::Sender;
use super::sequencer::{Claim, Read, Sequencer};
use crate::delivery::fanout::LiveEvent;
use crate::delivery::hub::Hub;
use crate::measure::metrics::Metrics;
use crate::presence::Presence;
use crate::storage::{ChannelState, Event, Storage};
use crate::stream::replay::Mark;
use crate::wire::frame;
use crate::wire::notice::{Body, Range};

/// Events read per query when filling a range.
const READ_PAGE: usize = 1000;
/// Event data read per query, at most.
const READ_BYTES: usize = 4 * 1024 * 1024;
/// Channels whose counters are read per query when catching up.
const STATES_PER_QUERY: usize = 500;
/// Notices taken from the listener at once, so that a burst of them costs
/// one read per channel.
const NOTICES_PER_ROUND: usize = 256;

/// Turns notices into events for the hub.
pub(crate) struct Receiver {
    pub(crate) storage: Storage,
    pub(crate) hub: Arc<Hub>,
    pub(crate) sequencer: Arc<Sequencer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) poll: Duration,
    /// Set by the listener when a notice did not fit in the hand-off.
    pub(crate) missed: Arc<AtomicBool>,
    /// The hand-off's byte count, given back as notices are taken.
    pub(crate) state: Arc<BusState>,
    /// Takes the other instances' presence reports.
    pub(crate) presence: Arc<Presence>,
    /// Asks another instance for a full presence report.
    pub(crate) sender: Arc<Sender>,
    /// This instance's id on the bus.
    pub(crate) origin: u64,
}

impl Receiver {
    /// Runs until the listener is gone.
    pub(crate) async fn run(self, mut heard: mpsc::Receiver<Heard>) {
        let first_poll = tokio::time::Instant::now() + self.poll;
        let mut poll = tokio::time::interval_at(first_poll, self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round = Vec::with_capacity(NOTICES_PER_ROUND);
        loop {
            tokio::select! {
                count = heard.recv_many(&mut round, NOTICES_PER_ROUND) => {
                    if count == 0 {
                        return;
                    }
                    self.handle(std::mem::take(&mut round)).await;
                }
                () = self.sequencer.gap_found() => self.fill_gaps().await,
                _ = poll.tick() => {
                    self.sequencer.prune();
                    self.catch_up().await;
                }
            }
            if self.missed.swap(false, Ordering::AcqRel) {
                self.recover().await;
            }
        }
    }

    async fn handle(&self, round: Vec<Heard>) {
        // Per channel: the lowest first and highest last id announced.
        let mut committed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut catch_up = false;
        for heard in round {
            let notice = match heard {
                Heard::CatchUp => {
                    catch_up = true;
                    continue;
                }
                Heard::Notice(notice, bytes) => {
                    self.state.taken(bytes);
                    notice
                }
            };
            match notice.body {
                Body::Committed(ranges) => {
                    for Range {
                        channel,
                        first,
                        last,
                    } in ranges
                    {
                        let entry = committed.entry(channel).or_insert((first, last));
                        entry.0 = entry.0.min(first);
                        entry.1 = entry.1.max(last);
                    }
                }
                Body::Live {
                    channel,
                    body,
                    skip_users,
                } => {
                    let event = LiveEvent::new(channel, None, Bytes::from(body), skip_users);
                    self.hub.publish(&Arc::new(event));
                    self.metrics.bus_delivered(1, false);
                }
                Body::Lost(channel) => self.hub.missed(&channel),
                // Heartbeats stop at the listener.
                Body::Ping {} => {}
                Body::Presence(report) => match report.check() {
                    Ok(()) => {
                        if self.presence.heard(notice.origin, report) {
                            self.sender.ask_presence(notice.origin);
                        }
                    }
                    Err(why) => {
                        self.metrics.bus_refused();
                        log::warn!(
                            "eventstream: refused a presence report of instance {:x}: {why}",
                            notice.origin
                        );
                    }
                },
                Body::PresenceAsk { origin } => {
                    if origin == self.origin {
                        self.presence.full_report_due();
                    }
                }
                Body::Kick {
                    channel,
                    user_id,
                    error,
                } => {
                    // The sending instance asked its authorizer already.
                    self.hub.kick(user_id.as_deref(), &channel, &error);
                }
            }
        }
        for (channel, (first, last)) in committed {
            let claim = Claim::Announced { first, last };
            if let Some((read, through)) = self.sequencer.read_from(&channel, claim) {
                self.deliver(&channel, read, through, false).await;
            }
        }
        if catch_up {
            self.recover().await;
        }
    }

    /// After notices were missed: events from storage, kicks by every
    /// stream asking the authorizer again, and `stream-reset` on live-only
    /// channels (what other instances sent on them meanwhile is gone).
    async fn recover(&self) {
        self.hub.recheck_all();
        self.hub.missed_live_only();
        self.catch_up().await;
    }

    /// Reads ids `after + 1 ..= through` of `channel` and hands them to the
    /// sequencer, after checking that the row at `after` is still the
    /// event published there. Storage decides how far it goes: `through`
    /// (a notice's word) is only where to stop looking. Returns false when
    /// storage could not be read.
    async fn deliver(&self, channel: &str, read: Read, through: u64, recovered: bool) -> bool {
        let Read { mut after, mark } = read;
        // The row at the mark is read with the first page (one query), or
        // alone when there is nothing after it to read.
        let mut check = mark;
        if let Some(mark) = check
            && after >= through
        {
            return match self.still_holds(channel, mark).await {
                Ok(true) => true,
                Ok(false) => {
                    self.sequencer.rewind(channel);
                    true
                }
                Err(error) => {
                    log::warn!(
                        "eventstream: reading {channel:?} for the other instances' events failed: {error}"
                    );
                    false
                }
            };
        }
        while after < through {
            let want = usize::try_from(through - after).map_or(READ_PAGE, |n| n.min(READ_PAGE));
            let from = if check.is_some() { after - 1 } else { after };
            self.metrics.bus_filled();
            let page = match self
                .storage
                .events_after(
                    channel,
                    from,
                    want + usize::from(check.is_some()),
                    READ_BYTES,
                )
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    log::warn!(
                        "eventstream: reading {channel:?} for the other instances' events failed: {error}"
                    );
                    return false;
                }
            };
            let mut stored = page.events;
            if let Some(mark) = check.take() {
                let holds = self.mark_holds(channel, mark, stored.first()).await;
                match holds {
                    Ok(true) => {
                        if stored
                            .first()
                            .is_some_and(|event| event.id.seq() == mark.seq)
                        {
                            stored.remove(0);
                        }
                    }
                    Ok(false) => {
                        self.sequencer.rewind(channel);
                        return true;
                    }
                    Err(error) => {
                        log::warn!(
                            "eventstream: reading {channel:?} for the other instances' events failed: {error}"
                        );
                        return false;
                    }
                }
            }
            let events: Vec<Arc<LiveEvent>> = stored
                .into_iter()
                .filter(|event| event.id.seq() <= through)
                .map(|event| {
                    let seq = event.id.seq();
                    let body = frame::encode_body(&event.event_type, &event.data);
                    let live =
                        LiveEvent::new(channel.to_owned(), Some(seq), body, event.skip_users);
                    Arc::new(LiveEvent {
                        token: event.token,
                        ..live
                    })
                })
                .collect();
            let reached = match events.last().and_then(|event| event.seq) {
                Some(seq) => seq,
                // Nothing stored after `after`: trimmed (then the streams
                // learn it from storage), or not there at all (a notice
                // that promised more than storage holds).
                None => match self.trimmed_past(channel, after, through).await {
                    Ok(Some(reached)) => reached,
                    Ok(None) => break,
                    Err(error) => {
                        log::warn!(
                            "eventstream: the bus could not read channel positions: {error}"
                        );
                        return false;
                    }
                },
            };
            let published = self.sequencer.remote(channel, &events, reached);
            self.metrics.bus_delivered(published as u64, recovered);
            after = reached;
        }
        true
    }

    /// Whether the row at `mark.seq` still carries the token of the event
    /// published there (or was trimmed, which changes nothing): false when
    /// the log went back in time under it.
    async fn still_holds(&self, channel: &str, mark: Mark) -> Result<bool, BusError> {
        self.metrics.bus_filled();
        let page = self
            .storage
            .events_after(channel, mark.seq - 1, 1, READ_BYTES)
            .await
            .map_err(BusError::Storage)?;
        self.mark_holds(channel, mark, page.events.first()).await
    }

    /// Judges `mark` by `first`, the first stored event from `mark.seq` on:
    /// the event there must carry the mark's token; no event there is fine
    /// only when retention trimmed it (the counter row tells).
    async fn mark_holds(
        &self,
        channel: &str,
        mark: Mark,
        first: Option<&Event>,
    ) -> Result<bool, BusError> {
        if let Some(event) = first.filter(|event| event.id.seq() == mark.seq) {
            return Ok(event.token.is_none_or(|token| token == mark.token));
        }
        let state = self.state_of(channel).await?;
        Ok(state.last_id >= mark.seq && state.trimmed_through >= mark.seq)
    }

    /// Where a channel with nothing stored after `after` may be taken to
    /// have reached: the end of what retention trimmed, up to `through`;
    /// `None` when storage holds nothing there, trimmed or not.
    async fn trimmed_past(
        &self,
        channel: &str,
        after: u64,
        through: u64,
    ) -> Result<Option<u64>, BusError> {
        let state = self.state_of(channel).await?;
        let reached = state.trimmed_through.min(state.last_id).min(through);
        Ok((reached > after).then_some(reached))
    }

    async fn state_of(&self, channel: &str) -> Result<ChannelState, BusError> {
        let states = self
            .storage
            .channel_states(&[channel.to_owned()])
            .await
            .map_err(BusError::Storage)?;
        Ok(states.get(channel).copied().unwrap_or_default())
    }

    /// Reads the gaps local events wait behind, and checks the channels
    /// where an event at or below the published id arrived.
    async fn fill_gaps(&self) {
        for gap in self.sequencer.take_gaps() {
            let read = Read {
                after: gap.after,
                mark: None,
            };
            let filled = self
                .deliver(&gap.channel, read, gap.before - 1, false)
                .await;
            if !filled {
                self.sequencer.skip_gap(&gap.channel);
            }
        }
        for (channel, read) in self.sequencer.take_suspects() {
            let through = read.after;
            self.deliver(&channel, read, through, false).await;
        }
    }

    /// Compares every listened channel's newest stored id with what was
    /// delivered, and delivers the difference.
    async fn catch_up(&self) {
        let channels = self.hub.listened_channels();
        for chunk in channels.chunks(STATES_PER_QUERY) {
            let states = match self.storage.channel_states(chunk).await {
                Ok(states) => states,
                Err(error) => {
                    log::warn!("eventstream: the bus could not read channel positions: {error}");
                    return;
                }
            };
            for (channel, state) in states {
                if let Some((read, through)) =
                    self.sequencer.read_from(&channel, Claim::Stored(state))
                {
                    self.deliver(&channel, read, through, true).await;
                }
            }
        }
    }
}
