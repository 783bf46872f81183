//! How a stream finds its starting point and catches up from storage; shared
//! by direct streams and by responses to a GRIP proxy.
//!
//! A position `p` on a channel is servable when `p <= current` and nothing
//! after `p` has been trimmed; an unservable one is reset to the current id
//! (and announced with `stream-reset`). Catching up reads pages of stored
//! events and checks that the first one is exactly `p + 1`, so retention
//! racing the read becomes a reset, never a silent gap.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use crate::error::StreamError;
use crate::event_id::IdVector;
use crate::events::Shared;
use crate::frame::{self, Frame};
use crate::identity::User;
use crate::storage::{ChannelState, Event};

fn unavailable(what: &str, error: impl std::fmt::Display) -> StreamError {
    log::error!("eventstream: {what} failed: {error}");
    StreamError::internal("The event log is unavailable.")
}

/// Checks every channel with the authorizer; returns, per channel, whether
/// it is persisted.
pub(crate) async fn authorize(
    shared: &Shared,
    user: Option<&User>,
    channels: &[String],
) -> Result<Vec<bool>, StreamError> {
    let mut denied = Vec::new();
    for channel in channels {
        if !shared.authorizer.can_read_channel(user, channel).await {
            denied.push(channel.clone());
        }
    }
    if !denied.is_empty() {
        return Err(StreamError::forbidden(denied));
    }
    Ok(channels
        .iter()
        .map(|channel| shared.authorizer.is_channel_reliable(channel))
        .collect())
}

/// Where a stream starts.
pub(crate) struct Start {
    /// The position of every persistent channel.
    pub(crate) positions: IdVector,
    /// Channels whose requested position could not be served.
    pub(crate) reset: Vec<String>,
    /// Bit `i`: channel `i` has stored events after its position.
    pub(crate) behind: u64,
}

/// Resolves the requested positions against storage.
pub(crate) async fn start(
    shared: &Shared,
    channels: &[String],
    reliable: &[bool],
    requested: &IdVector,
) -> Result<Start, StreamError> {
    let persistent: Vec<String> = channels
        .iter()
        .zip(reliable)
        .filter(|(_, reliable)| **reliable)
        .map(|(channel, _)| channel.clone())
        .collect();
    let states: BTreeMap<String, ChannelState> =
        shared
            .storage
            .channel_states(&persistent)
            .await
            .map_err(|e| unavailable("reading channel positions", e))?;
    let mut start = Start {
        positions: IdVector::new(),
        reset: Vec::new(),
        behind: 0,
    };
    for (index, channel) in channels.iter().enumerate() {
        let Some(state) = states.get(channel) else {
            continue;
        };
        let position = match requested.get(channel) {
            Some(position) if state.can_resume_from(position) => position,
            Some(_) => {
                start.reset.push(channel.clone());
                state.last_id
            }
            None => state.last_id,
        };
        if position < state.last_id {
            start.behind |= 1 << index;
        }
        start.positions.set(channel.clone(), position);
    }
    if !start.reset.is_empty() {
        shared.metrics.reset();
    }
    Ok(start)
}

/// One read of stored events.
pub(crate) enum Page {
    /// Events after the position, in order, the first being `position + 1`;
    /// `complete` when fewer than asked for were left.
    Events { events: Vec<Event>, complete: bool },
    /// Nothing after the position.
    CaughtUp,
    /// Events after the position were trimmed: continue from `current`.
    Reset { current: u64 },
}

/// Reads up to `limit` events of `channel` after `position`.
pub(crate) async fn read_page(
    shared: &Shared,
    channel: &str,
    position: u64,
    limit: usize,
) -> Result<Page, StreamError> {
    let events = shared
        .storage
        .events_after(channel, position, limit)
        .await
        .map_err(|e| unavailable("replay", e))?;
    let contiguous = events
        .first()
        .is_none_or(|event| event.id.seq() == position + 1);
    if contiguous && !events.is_empty() {
        let complete = events.len() < limit;
        return Ok(Page::Events { events, complete });
    }
    let states = shared
        .storage
        .channel_states(&[channel.to_owned()])
        .await
        .map_err(|e| unavailable("reading a channel position", e))?;
    let current = states.get(channel).copied().unwrap_or_default();
    if contiguous && current.last_id == position {
        Ok(Page::CaughtUp)
    } else if contiguous && current.can_resume_from(position) {
        // Committed between the two reads: the next read finds it.
        Ok(Page::Events {
            events: Vec::new(),
            complete: false,
        })
    } else {
        shared.metrics.reset();
        Ok(Page::Reset {
            current: current.last_id,
        })
    }
}

/// Writes a stored event as a frame: with its own id on a single-channel
/// stream, with the whole id vector (already advanced) otherwise.
pub(crate) fn write_stored(out: &mut BytesMut, event: &Event, single: bool, positions: &IdVector) {
    if single {
        out.put_slice(
            &Frame::encode(&event.event_type, &event.data, Some(&event.id.to_string())).with_id,
        );
    } else {
        frame::write_id(out, &positions.to_string());
        out.put_slice(&frame::encode_body(&event.event_type, &event.data));
    }
}
