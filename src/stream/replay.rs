//! How a late subscriber catches up: where a stream starts, and reading the
//! event log page by page from there. Direct streams (`session`) and the
//! responses to a GRIP proxy (`grip::instruct`) both use it, so they agree
//! on positions, resets, skipped users and id lines.
//!
//! A position `p` on a channel is servable when `p <= current` and nothing
//! after `p` has been trimmed; an unservable one is reset to the current id
//! (and announced with `stream-reset`). Catching up reads pages of stored
//! events and checks that the first one is exactly `p + 1`, so retention
//! racing the read becomes a reset, never a silent gap.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use crate::access::identity::User;
use crate::context::Context;
use crate::error::StreamError;
use crate::measure::metrics::Metrics;
use crate::storage::{AppendToken, ChannelState, Storage};
use crate::wire::channel;
use crate::wire::channel_set::ChannelSet;
use crate::wire::event_id::IdVector;
use crate::wire::frame::{self, IdLine};

/// Whether an event that skips `skip_users` is withheld from `user_id`'s
/// stream. Its position advances all the same.
pub(crate) fn is_skipped(user_id: Option<&str>, skip_users: &[String]) -> bool {
    user_id.is_some_and(|user| skip_users.iter().any(|skip| skip == user))
}

/// Refuses a stream whose id vector (its persistent channels, see
/// `channel::id_vector_bytes`) could grow past `max_bytes`: every event of
/// a multi-channel stream carries it, so it bounds what an event costs.
pub(crate) fn check_id_vector(
    channels: &[String],
    reliable: &[bool],
    max_bytes: usize,
) -> Result<(), StreamError> {
    let persistent = channels
        .iter()
        .zip(reliable)
        .filter(|(_, reliable)| **reliable)
        .map(|(channel, _)| channel.as_str());
    let bytes = channel::id_vector_bytes(persistent);
    if bytes > max_bytes {
        return Err(StreamError::bad_request(format!(
            "Invalid request: the id vector of these channels can reach {bytes} bytes; \
             at most {max_bytes} are allowed (max_id_vector_bytes). Use fewer or shorter channel names."
        )));
    }
    Ok(())
}

/// The event log could not be read (the cause is logged): the stream is
/// told to retry later rather than given an error that ends it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

fn unavailable(what: &str, error: impl std::fmt::Display) -> Unavailable {
    log::error!("eventstream: {what} failed: {error}");
    Unavailable
}

/// Where a stream starts.
#[derive(Debug)]
pub(crate) struct Start {
    /// The position of every persistent channel.
    pub(crate) positions: IdVector,
    /// Channels whose requested position could not be served.
    pub(crate) reset: Vec<String>,
    /// Channels with stored events after their position.
    pub(crate) behind: ChannelSet,
    /// Per channel index: the newest event storage held when it was read
    /// (see [`Mark`]).
    pub(crate) marks: Vec<Option<Mark>>,
}

impl Start {
    /// The frames a new stream begins with: the optional padding,
    /// `stream-open` with the starting positions, and a `stream-reset` for
    /// the channels that could not be resumed.
    pub(crate) fn write_opening(&self, out: &mut BytesMut, padding: bool) {
        if padding {
            out.put_slice(&frame::padding());
        }
        frame::stream_open(out, &self.positions);
        self.write_reset(out);
    }

    /// The `stream-reset` alone, if any channel needs it (a GRIP next link
    /// continues a stream that was already opened).
    pub(crate) fn write_reset(&self, out: &mut BytesMut) {
        if !self.reset.is_empty() {
            frame::stream_reset(out, &self.reset, &self.positions);
        }
    }
}

/// The result of writing one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    /// Stored events consumed (written, or withheld from a skipped user).
    pub(crate) events: usize,
    /// The channel has caught up (or was reset): no more pages for now.
    pub(crate) complete: bool,
    /// The page stopped at its byte budget before its last event: read
    /// fewer events next time.
    pub(crate) cut: bool,
    /// The last event consumed (or the newest stored), when its token is
    /// recorded: see [`Mark`].
    pub(crate) mark: Option<Mark>,
}

/// The newest event a stream has seen on a channel: its id and the append
/// token that stored it. A live event at or below the stream's position
/// with a token up to this one (from the same writer) is a repeat; a later
/// one was appended after the log went back in time. And when the stream
/// reads storage from this position again, the row there must still carry
/// this token, or the log was rewritten under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) seq: u64,
    pub(crate) token: AppendToken,
}

/// Whether a live event at or below a stream's position is one its reads
/// of storage already delivered (`mark`: the token of the newest event
/// read), rather than one appended after the log went back in time. Tokens
/// of one writer grow in commit order; across writers nothing is known, and
/// the event is taken as seen.
pub(crate) fn was_read(mark: Option<Mark>, token: Option<AppendToken>) -> bool {
    match (mark.map(|mark| mark.token), token) {
        (Some(mark), Some(token)) if mark.writer == token.writer => token.seq <= mark.seq,
        _ => true,
    }
}

/// One stream's view of the event log: whose stream it is and how its
/// frames carry ids.
pub(crate) struct Reader<'a> {
    pub(crate) storage: &'a Storage,
    pub(crate) metrics: &'a Metrics,
    /// Events that skip this user advance the position but are not written.
    pub(crate) user_id: Option<&'a str>,
    /// A single-channel stream's frames carry the event's own id, others
    /// the whole id vector.
    pub(crate) single: bool,
}

impl<'a> Reader<'a> {
    /// The reader of `user`'s stream of `channels` channels.
    pub(crate) fn new(context: &'a Context, user: Option<&'a User>, channels: usize) -> Reader<'a> {
        Reader {
            storage: &context.storage,
            metrics: &context.metrics,
            user_id: user.map(|user| user.id.as_str()),
            single: channels == 1,
        }
    }

    /// Resolves the requested positions (`channels[i]` persisted when
    /// `reliable[i]`) against storage.
    pub(crate) async fn start(
        &self,
        channels: &[String],
        reliable: &[bool],
        requested: &IdVector,
    ) -> Result<Start, Unavailable> {
        let persistent: Vec<String> = channels
            .iter()
            .zip(reliable)
            .filter(|(_, reliable)| **reliable)
            .map(|(channel, _)| channel.clone())
            .collect();
        let states: BTreeMap<String, ChannelState> = self
            .storage
            .channel_states(&persistent)
            .await
            .map_err(|e| unavailable("reading channel positions", e))?;
        let mut start = Start {
            positions: IdVector::new(),
            reset: Vec::new(),
            behind: ChannelSet::default(),
            marks: vec![None; channels.len()],
        };
        for (index, channel) in channels.iter().enumerate() {
            let Some(state) = states.get(channel) else {
                continue;
            };
            start.marks[index] = state.last_token.map(|token| Mark {
                seq: state.last_id,
                token,
            });
            let position = match requested.get(channel) {
                Some(position) if state.can_resume_from(position) => position,
                Some(_) => {
                    start.reset.push(channel.clone());
                    state.last_id
                }
                None => state.last_id,
            };
            if position < state.last_id {
                start.behind.insert(index);
            }
            start.positions.set(channel.clone(), position);
        }
        if !start.reset.is_empty() {
            self.metrics.reset();
        }
        Ok(start)
    }

    /// Writes up to `limit` stored events of `channel` after its position
    /// in `positions`, advancing it, and stops once it has written
    /// `max_bytes` (after at least one event, so a stream always moves on).
    /// Events trimmed under the stream, or a log rewritten under it (the
    /// row at its position no longer carries `mark`'s token), turn into a
    /// `stream-reset` and a jump to the channel's current id.
    pub(crate) async fn page(
        &self,
        out: &mut BytesMut,
        channel: &str,
        positions: &mut IdVector,
        limit: usize,
        max_bytes: usize,
        mark: Option<Mark>,
    ) -> Result<Page, Unavailable> {
        let position = positions.get(channel).unwrap_or(0);
        // With a mark at the position, read the row there too, to check it.
        let check = mark.filter(|mark| mark.seq == position && position > 0);
        let from = if check.is_some() {
            position - 1
        } else {
            position
        };
        let rows = limit + usize::from(check.is_some());
        let page = self
            .storage
            .events_after(channel, from, rows, max_bytes)
            .await
            .map_err(|e| unavailable("replay", e))?;
        let cut = page.cut;
        let mut events = page.events;
        let mut rewritten = false;
        if let Some(mark) = check
            && events
                .first()
                .is_some_and(|event| event.id.seq() == position)
        {
            let at_position = events.remove(0);
            rewritten = at_position.token.is_some_and(|token| token != mark.token);
        }
        let full = events.len() >= limit;
        let contiguous = !rewritten
            && events
                .first()
                .is_none_or(|event| event.id.seq() == position + 1);
        if contiguous && !events.is_empty() {
            let start = out.len();
            let mut consumed = 0;
            let mut mark = None;
            for event in &events {
                if consumed > 0 && out.len() - start >= max_bytes {
                    return Ok(Page {
                        events: consumed,
                        complete: false,
                        cut: true,
                        mark,
                    });
                }
                consumed += 1;
                mark = event.token.map(|token| Mark {
                    seq: event.id.seq(),
                    token,
                });
                positions.advance(channel, event.id.seq());
                if is_skipped(self.user_id, &event.skip_users) {
                    if !self.single {
                        frame::withheld(out, positions);
                    }
                    continue;
                }
                let id = if self.single {
                    IdLine::Own
                } else {
                    IdLine::Vector(positions)
                };
                frame::write_event(out, &event.event_type, &event.data, &event.id, id);
            }
            return Ok(Page {
                events: consumed,
                complete: !full && !cut,
                cut,
                mark,
            });
        }
        let states = self
            .storage
            .channel_states(&[channel.to_owned()])
            .await
            .map_err(|e| unavailable("reading a channel position", e))?;
        let current = states.get(channel).copied().unwrap_or_default();
        let page = |complete| Page {
            events: 0,
            complete,
            cut: false,
            mark: current.last_token.map(|token| Mark {
                seq: current.last_id,
                token,
            }),
        };
        if rewritten {
            log::warn!(
                "eventstream: the event log of {channel:?} was rewritten under a stream at {position}: resetting it"
            );
        }
        if contiguous && current.last_id == position {
            Ok(page(true))
        } else if contiguous && current.can_resume_from(position) && !rewritten {
            // Committed between the two reads: the next read finds it.
            Ok(page(false))
        } else {
            self.metrics.reset();
            positions.set(channel, current.last_id);
            frame::stream_reset(out, &[channel.to_owned()], positions);
            Ok(page(true))
        }
    }
}
