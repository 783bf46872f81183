//! One client's stream: authorize, resume from storage, hand over to live
//! delivery without a gap or a duplicate, and keep going until the client
//! leaves, its permission is revoked, or Rocket shuts down.
//!
//! The hand-over works because the stream registers with the hub *before*
//! it reads storage: an event committed after the read is necessarily
//! published after the registration, so it is in the inbox; an event that
//! is both read and queued is recognised by its id and written once. Live
//! events are written only when their id is exactly the next one; anything
//! else (an overflowed inbox, an id gap left by another process writing to
//! the same database) sends the stream back to storage from its last
//! position, which also notices retention racing the read and turns it into
//! a `stream-reset` instead of a silent gap.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rocket::Shutdown;
use tokio::time::{Duration, Instant, Sleep, sleep};

use crate::access::authorizer::{self, Denied};
use crate::access::identity::User;
use crate::access::limits::StreamPermit;
use crate::context::Context;
use crate::delivery::fanout::LiveEvent;
use crate::delivery::hub::{Delivery, InboxLimits, Registration};
use crate::error::StreamError;
use crate::measure::timing;
use crate::presence::Attendance;
use crate::stream::admit::admit;
pub(crate) use crate::stream::refusal::Refusal;
use crate::stream::replay::{self, Mark, Reader};
use crate::wire::channel_set::ChannelSet;
use crate::wire::event_id::{IdVector, Resume, ResumeError};
use crate::wire::frame::{self, IdLine};

/// What a stream was asked for, checked before anything is written.
pub(crate) struct Plan {
    pub(crate) context: Arc<Context>,
    pub(crate) channels: Result<Vec<String>, StreamError>,
    pub(crate) user: Result<Option<User>, StreamError>,
    pub(crate) resume: Result<Resume, ResumeError>,
    pub(crate) shutdown: Shutdown,
    /// The client's address, for `max_streams_per_ip`.
    pub(crate) address: Option<IpAddr>,
    /// The stream asked for `stream-presence` events (`presence=1`).
    pub(crate) presence: bool,
}

/// How soon a stream asks again after its authorizer could not tell.
const RECHECK_RETRY: Duration = Duration::from_secs(5);

/// A stream being served.
pub(crate) struct Session {
    context: Arc<Context>,
    registration: Registration,
    /// Who the stream is for: whose skip lists apply, and whom to ask the
    /// authorizer about again when kicks may have been missed.
    user: Option<User>,
    /// Per channel index: whether it is persisted.
    reliable: Vec<bool>,
    /// The last event written, per persistent channel.
    positions: IdVector,
    /// Channels that must catch up from storage before live events.
    behind: ChannelSet,
    inbox: VecDeque<Delivery>,
    keepalive: Duration,
    /// When the stream last wrote anything.
    last_output: Instant,
    /// Fires at `last_output + keepalive` or later; re-armed only when it
    /// fires, so a busy stream does not touch the timer wheel per chunk.
    keepalive_timer: Pin<Box<Sleep>>,
    shutdown: Shutdown,
    finished: bool,
    /// This stream's place under `max_streams` / `max_streams_per_ip`.
    _permit: StreamPermit,
    /// This stream's place in its channels' presence.
    _attendance: Attendance,
    /// Events to read per replay page: `replay_page`, or fewer after a
    /// page of large events hit the chunk's byte budget.
    page_limit: usize,
    /// Per channel index: the append token of the newest event the last
    /// read of storage saw (`replay::was_read`).
    marks: Vec<Option<Mark>>,
    /// With `delivery_timing`: when timed events were taken from the inbox
    /// for the chunk being written.
    timed_take: Option<std::time::Instant>,
}

/// The most bytes of stored events one body chunk carries: a replay page
/// is cut there, so a stream never holds more than this at once (and at
/// least one event, however large).
pub(crate) fn max_chunk_bytes(chunk_size: usize) -> usize {
    8 * chunk_size
}

impl Plan {
    /// Opens the stream. Returns the first chunk (`stream-open`, any reset,
    /// or a lone `stream-error`) and the session that continues it, if any.
    pub(crate) async fn open(self) -> (Bytes, Option<Session>) {
        let context = Arc::clone(&self.context);
        match self.try_open().await {
            Ok(opened) => opened,
            Err(refusal) => (refusal.into_frame(&context.metrics), None),
        }
    }

    async fn try_open(self) -> Result<(Bytes, Option<Session>), Refusal> {
        let Plan {
            context,
            channels,
            user,
            resume,
            shutdown,
            address,
            presence,
        } = self;
        let channels = channels?;
        let requested = resume
            .map_err(|why| StreamError::bad_request(why.to_string()))?
            .into_positions();
        let user = user?;
        // Before any work for it: the stream needs a place under the limits.
        let permit = context.limits.acquire(address)?;
        let reliable = admit(&context, user.as_ref(), &channels).await?;
        // Register before reading positions: see the module docs.
        let registration = context.hub.subscribe(
            user.as_ref().map(|user| user.id.clone()),
            channels.clone(),
            InboxLimits {
                entries: context.config.queue_capacity,
                bytes: context.config.max_queued_bytes,
            },
        );
        registration.set_live_only(
            reliable
                .iter()
                .enumerate()
                .filter(|(_, reliable)| !**reliable)
                .map(|(index, _)| index)
                .collect(),
        );
        // A permission revoked between the check above and the
        // registration was kicked while this stream was not listening:
        // ask again now that any later kick reaches it.
        authorizer::authorize(context.authorizer.as_ref(), user.as_ref(), &channels).await?;
        let reader = Reader::new(&context, user.as_ref(), channels.len());
        let start = reader.start(&channels, &reliable, &requested).await?;
        let mut first = BytesMut::new();
        start.write_opening(&mut first, context.config.padding);
        let rules =
            authorizer::presence_rules(context.authorizer.as_ref(), user.as_ref(), &channels);
        if presence {
            registration.watch_presence(rules.iter().map(|rule| rule.view).collect());
        }
        let (attendance, snapshots) =
            context
                .presence
                .attend(user.as_ref(), &channels, &rules, presence);
        for snapshot in snapshots {
            first.extend_from_slice(&snapshot);
        }
        let keepalive = Duration::from_secs(context.config.keepalive_secs);
        let session = Session {
            registration,
            user,
            reliable,
            positions: start.positions,
            behind: start.behind,
            marks: start.marks,
            timed_take: None,
            inbox: VecDeque::new(),
            keepalive,
            last_output: Instant::now(),
            keepalive_timer: Box::pin(sleep(keepalive)),
            shutdown,
            finished: false,
            _permit: permit,
            _attendance: attendance,
            page_limit: context.config.replay_page,
            context,
        };
        Ok((first.freeze(), Some(session)))
    }
}

impl Session {
    fn channel(&self, index: usize) -> &str {
        &self.registration.channels()[index]
    }

    fn is_multi(&self) -> bool {
        self.reliable.len() > 1
    }

    fn skipped(&self, event: &LiveEvent) -> bool {
        let user_id = self.user.as_ref().map(|user| user.id.as_str());
        replay::is_skipped(user_id, &event.skip_users)
    }

    /// The id line this stream's frames carry.
    fn id_line(&self) -> IdLine<'_> {
        if self.is_multi() {
            IdLine::Vector(&self.positions)
        } else {
            IdLine::Own
        }
    }

    /// The next chunk of the body; `None` ends the stream.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            // Boxed here and below: this future lives as long as the stream
            // (see `response`), and the authorizer's and the replay's
            // futures would otherwise make it several times larger.
            if self.registration.take_recheck() {
                let verdict = Box::pin(authorizer::authorize(
                    self.context.authorizer.as_ref(),
                    self.user.as_ref(),
                    self.registration.channels(),
                ))
                .await;
                match verdict {
                    Ok(_) => {}
                    Err(Denied::Forbidden(error)) => {
                        self.finished = true;
                        return Some(frame::stream_error(&error));
                    }
                    // Nothing decided: the stream goes on, and asks again.
                    Err(Denied::CannotTell) => self.registration.recheck_in(RECHECK_RETRY),
                }
            }
            let mut out = BytesMut::new();
            if !self.behind.is_empty() {
                // A stream that stays behind may never drain its inbox:
                // look for a kick before every page.
                if let Some(error) = self.registration.take_kick() {
                    self.finished = true;
                    return Some(frame::stream_error(&error));
                }
                Box::pin(self.catch_up(&mut out)).await;
            } else if let Some(shared) = self.drain_inbox(&mut out) {
                self.last_output = Instant::now();
                self.handing_over();
                return Some(shared);
            }
            if !out.is_empty() {
                self.last_output = Instant::now();
                self.context.metrics.chunk_written(out.len());
                self.handing_over();
                return Some(out.freeze());
            }
            if !self.behind.is_empty() {
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut self.shutdown => return None,
                _ = self.registration.woken() => {}
                _ = self.keepalive_timer.as_mut() => {
                    let due = self.last_output + self.keepalive;
                    if Instant::now() >= due {
                        self.last_output = Instant::now();
                        self.keepalive_timer.as_mut().reset(self.last_output + self.keepalive);
                        return Some(Bytes::from_static(frame::KEEP_ALIVE));
                    }
                    self.keepalive_timer.as_mut().reset(due);
                }
            }
        }
    }

    /// Records `write` for timed events in the chunk about to be returned
    /// (Rocket copies it into its body buffer in the same poll).
    fn handing_over(&mut self) {
        if let Some(taken) = self.timed_take.take() {
            timing::handed_over(taken, &self.context.metrics.stage_seconds);
        }
    }

    /// With `delivery_timing`: records `wake` for the timed events just
    /// taken from the inbox. (Without it no event is timed, and the inbox
    /// is not looked at.)
    fn taken(&mut self, inbox: &VecDeque<Delivery>) {
        if !self.context.config.delivery_timing {
            return;
        }
        let now = std::time::Instant::now();
        for delivery in inbox {
            if let Some(stamps) = delivery.event.stamps {
                stamps.taken_by_stream(now, &self.context.metrics.stage_seconds);
                self.timed_take = Some(now);
            }
        }
    }

    /// Writes what the hub queued, in order, skipping what was already
    /// written and sending channels with a gap back to storage.
    ///
    /// The common case of one queued event for a single-channel stream
    /// returns the event's shared frame itself (no copy, no allocation):
    /// with thousands of subscribers, that is most wake-ups.
    fn drain_inbox(&mut self, out: &mut BytesMut) -> Option<Bytes> {
        let mut inbox = std::mem::take(&mut self.inbox);
        let mail = self.registration.take(&mut inbox);
        self.taken(&inbox);
        if let Some(error) = mail.kicked {
            self.inbox = inbox;
            self.inbox.clear();
            out.extend_from_slice(&frame::stream_error(&error));
            self.finished = true;
            return None;
        }
        if mail.overflowed.is_empty()
            && mail.presence.is_empty()
            && inbox.len() == 1
            && !self.is_multi()
        {
            let event = &inbox[0].event;
            let next = match event.seq {
                Some(seq) => self
                    .positions
                    .get(&event.channel)
                    .is_some_and(|position| seq == position + 1),
                None => true,
            };
            if next && !self.skipped(event) {
                let shared = event.frame.with_id.clone();
                if let Some(seq) = event.seq {
                    self.positions.advance(&event.channel, seq);
                    self.marks[0] = event.token.map(|token| Mark { seq, token });
                }
                inbox.clear();
                self.inbox = inbox;
                return Some(shared);
            }
        }
        let mut lost_live = Vec::new();
        for index in 0..self.reliable.len() {
            if mail.overflowed.contains(index) {
                if self.reliable[index] {
                    self.fall_back(index);
                } else {
                    lost_live.push(self.channel(index).to_owned());
                }
            }
        }
        for delivery in inbox.drain(..) {
            let event = &delivery.event;
            if let Some(seq) = event.seq {
                if self.behind.contains(delivery.channel) {
                    continue; // storage will provide it
                }
                let position = self.positions.get(&event.channel).unwrap_or(0);
                if seq <= position {
                    if replay::was_read(self.marks[delivery.channel], event.token) {
                        continue; // already written during replay
                    }
                    // Appended after the log went back in time (a restore,
                    // a failover to a replica that was behind): this id was
                    // already given to another event. Say so, and go on
                    // from here.
                    self.positions.advance(&event.channel, seq - 1);
                    self.context.metrics.reset();
                    frame::stream_reset(out, std::slice::from_ref(&event.channel), &self.positions);
                }
                if seq > position + 1 {
                    self.fall_back(delivery.channel);
                    continue;
                }
                self.positions.advance(&event.channel, seq);
                // Written live: a later event with an older token is a
                // repeat; one with a newer token at or below the position
                // was appended after the log went back in time.
                self.marks[delivery.channel] = event.token.map(|token| Mark { seq, token });
            }
            if !self.skipped(event) {
                event.frame.write(out, self.id_line());
            } else if event.seq.is_some() && self.is_multi() {
                frame::withheld(out, &self.positions);
            }
        }
        self.inbox = inbox;
        if !lost_live.is_empty() {
            // Non-persistent channels cannot be replayed: say so.
            self.context.metrics.reset();
            frame::stream_reset(out, &lost_live, &self.positions);
        }
        // Without an id line: they move no resume position.
        for (_, presence) in mail.presence {
            out.extend_from_slice(&presence);
        }
        None
    }

    fn fall_back(&mut self, index: usize) {
        if !self.behind.contains(index) {
            self.context.metrics.replay_fallback();
        }
        self.behind.insert(index);
    }

    /// Writes one page of stored events for the first channel that is
    /// behind; a short page means it has caught up.
    async fn catch_up(&mut self, out: &mut BytesMut) {
        let Some(index) = self.behind.first() else {
            return;
        };
        let channel = self.channel(index).to_owned();
        let reader = Reader::new(&self.context, self.user.as_ref(), self.reliable.len());
        let limit = self.page_limit;
        let max_bytes = max_chunk_bytes(self.context.config.chunk_size);
        match reader
            .page(
                out,
                &channel,
                &mut self.positions,
                limit,
                max_bytes,
                self.marks[index],
            )
            .await
        {
            Err(unavailable) => {
                let refusal = Refusal::from(unavailable);
                out.extend_from_slice(&refusal.into_frame(&self.context.metrics));
                self.finished = true;
            }
            Ok(page) => {
                self.marks[index] = page.mark;
                if page.complete {
                    self.behind.remove(index);
                }
                // Large events: read only what fits in a chunk next time;
                // small ones: grow back to `replay_page`.
                self.page_limit = if page.cut {
                    page.events.max(1)
                } else if page.events == limit {
                    (limit * 2).min(self.context.config.replay_page)
                } else {
                    limit
                };
            }
        }
    }
}
