//! A subscription: the stream of items a consumer reads, and what it has
//! received and acknowledged.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::cursor::CursorStore;
use crate::item::{Event, Item};
use crate::position::Positions;

#[derive(Debug)]
pub(crate) struct State {
    /// Where the stream resumes after a reconnect: the last event yielded.
    pub(crate) received: Positions,
    /// What the consumer acknowledged (what the cursor holds).
    pub(crate) acked: Positions,
}

/// A running subscription: a [`Stream`] of [`Item`]s, and where the
/// consumer acknowledges them.
pub struct Subscription<T> {
    pub(crate) items: Pin<Box<dyn Stream<Item = Item<T>> + Send>>,
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) cursor: Arc<dyn CursorStore>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Subscription<T> {
    /// Acknowledges `item`: its position (an event's, or a reset's) is
    /// saved in the cursor, and a restarted process resumes after it.
    /// Items without a position (live-only events, errors) need none.
    pub fn ack(&self, item: &Item<T>) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        let moved = match item {
            Item::Event(Event {
                positions: Some(positions),
                ..
            })
            | Item::Undecodable {
                event:
                    Event {
                        positions: Some(positions),
                        ..
                    },
                ..
            } => positions.iter().fold(false, |moved, (channel, seq)| {
                state.acked.advance(channel, seq) || moved
            }),
            Item::Reset(reset) => {
                for (channel, seq) in reset.positions.iter() {
                    state.acked.set(channel, seq);
                }
                true
            }
            _ => false,
        };
        if moved {
            self.cursor.save(&state.acked)?;
        }
        Ok(())
    }

    /// The positions the stream resumes from after a reconnect.
    pub fn positions(&self) -> Positions {
        lock(&self.state).received.clone()
    }
}

impl<T> Stream for Subscription<T> {
    type Item = Item<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item<T>>> {
        self.items.as_mut().poll_next(cx)
    }
}
