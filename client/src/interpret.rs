//! What each frame means for the consumer: an event to yield (or a repeat
//! to drop), a reset, an error, a token to renew.

use std::sync::Mutex;

use serde::de::DeserializeOwned;

use crate::item::{Condition, Event, Item, Presence, Reset, StreamError};
use crate::position::Positions;
use crate::sse::Frame;
use crate::subscription::{State, lock};

/// What one frame means for the stream.
pub(crate) enum Outcome<T> {
    Yield(Item<T>),
    Skip,
    End(Item<T>),
}

pub(crate) fn handle<T: DeserializeOwned>(
    frame: Frame,
    channels: &[String],
    state: &Mutex<State>,
) -> Outcome<T> {
    let mut state = lock(state);
    let positions = frame.id.as_deref().and_then(Positions::parse);
    match frame.event.as_str() {
        // A keep-alive may carry the id vector: the position of an event
        // the server withheld from this user moved (PROTOCOL.md §4.3).
        "keep-alive" => {
            for (channel, seq) in positions.iter().flat_map(Positions::iter) {
                state.received.advance(channel, seq);
            }
            Outcome::Skip
        }
        "stream-open" => {
            for (channel, seq) in positions.iter().flat_map(Positions::iter) {
                if state.received.get(channel).is_none() {
                    state.received.set(channel, seq);
                }
            }
            log::debug!(
                "eventstream-client: open, from {}",
                display_positions(&state.received)
            );
            Outcome::Yield(Item::Connected)
        }
        "stream-reset" => {
            let positions = positions.unwrap_or_default();
            for (channel, seq) in positions.iter() {
                state.received.set(channel, seq);
            }
            let channels: Vec<String> = serde_json::from_str::<serde_json::Value>(&frame.data)
                .ok()
                .and_then(|data| serde_json::from_value(data["channels"].clone()).ok())
                .unwrap_or_default();
            log::info!(
                "eventstream-client: reset: {} continue from {}",
                channels.join(", "),
                display_positions(&positions)
            );
            Outcome::Yield(Item::Reset(Reset {
                channels,
                positions,
            }))
        }
        // Live only, without an id: moves no position.
        "stream-presence" => match serde_json::from_str::<Presence>(&frame.data) {
            Ok(presence) => Outcome::Yield(Item::Presence(presence)),
            Err(error) => {
                log::warn!(
                    "eventstream-client: an unreadable stream-presence ({error}) was skipped"
                );
                Outcome::Skip
            }
        },
        "stream-error" => {
            let error = serde_json::from_str(&frame.data).unwrap_or_else(|_| StreamError {
                condition: Condition::InternalError,
                text: frame.data.clone(),
                channels: None,
            });
            Outcome::End(Item::Error(error))
        }
        _ => {
            let (channel, seq, vector) = match positions {
                None => (
                    (channels.len() == 1).then(|| channels[0].clone()),
                    None,
                    None,
                ),
                Some(positions) => {
                    // The entry that moved is the event's channel (a server
                    // moves one entry per frame); one at or below its
                    // position is a repeat. A vector equal to the positions
                    // is a live-only event's.
                    let mut moved = Vec::new();
                    let mut behind = false;
                    for (channel, seq) in positions.iter() {
                        match state.received.get(channel) {
                            Some(position) if seq < position => behind = true,
                            Some(position) if seq == position => {}
                            _ => moved.push((channel.to_owned(), seq)),
                        }
                    }
                    let single = positions.iter().count() == 1;
                    if behind || (moved.is_empty() && single) {
                        return Outcome::Skip;
                    }
                    for (channel, seq) in &moved {
                        state.received.advance(channel, *seq);
                    }
                    let vector = Some(state.received.clone());
                    match moved.as_slice() {
                        [(channel, seq)] => (Some(channel.clone()), Some(*seq), vector),
                        [] => (None, None, None),
                        // Several entries moved: which one is this event's
                        // cannot be told; every position is kept, so that
                        // acknowledging it repeats none of them.
                        _ => {
                            log::warn!(
                                "eventstream-client: an event moved {} channels at once ({}); its channel is unknown",
                                moved.len(),
                                display_positions(&positions)
                            );
                            (None, None, vector)
                        }
                    }
                }
            };
            let event = Event {
                channel,
                seq,
                event_type: frame.event,
                data: frame.data,
                positions: vector,
            };
            Outcome::Yield(match serde_json::from_str::<T>(&event.data) {
                Ok(data) => Item::Event(event.with_data(data)),
                Err(error) => Item::Undecodable {
                    event,
                    error: error.to_string(),
                },
            })
        }
    }
}

/// Positions for a log line (`(start)` when there are none yet).
pub(crate) fn display_positions(positions: &Positions) -> String {
    if positions.is_empty() {
        "(start)".into()
    } else {
        positions.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::cursor::{CursorStore, MemoryCursor};
    use crate::item::{Condition, Item};
    use crate::position::Positions;
    use crate::sse::Frame;
    use crate::subscription::{State, Subscription};

    fn frame(event: &str, id: Option<&str>, data: &str) -> Frame {
        Frame {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    fn state() -> Mutex<State> {
        Mutex::new(State {
            received: Positions::new(),
            acked: Positions::new(),
        })
    }

    fn seqs(
        outcomes: Vec<Outcome<serde_json::Value>>,
    ) -> Vec<Option<(Option<String>, Option<u64>)>> {
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Yield(Item::Event(event)) => Some((event.channel, event.seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn presence_moves_no_position() {
        let channels = ["a".to_owned()];
        let state = state();
        handle::<serde_json::Value>(frame("stream-open", Some("a:2"), ""), &channels, &state);
        let presence = handle::<serde_json::Value>(
            frame(
                "stream-presence",
                None,
                r#"{"channel":"a","streams":2,"users":1,"joined":["ana"],"left":[],"truncated":false}"#,
            ),
            &channels,
            &state,
        );
        match presence {
            Outcome::Yield(Item::Presence(presence)) => {
                assert_eq!(
                    (presence.streams, presence.joined),
                    (2, vec!["ana".to_owned()])
                );
            }
            _ => panic!("a presence item"),
        }
        assert_eq!(lock(&state).received.get("a"), Some(2));
    }

    #[test]
    fn repeats_are_dropped_and_skips_are_not_errors() {
        let channels = ["a".to_owned()];
        let state = state();
        let outcomes = vec![
            handle(frame("stream-open", Some("a:2"), ""), &channels, &state),
            handle(frame("message", Some("a:3"), "1"), &channels, &state),
            handle(frame("message", Some("a:3"), "1"), &channels, &state),
            handle(frame("message", Some("a:2"), "1"), &channels, &state),
            handle(frame("message", Some("a:7"), "1"), &channels, &state),
        ];
        let a = Some("a".to_owned());
        assert_eq!(
            seqs(outcomes),
            [
                None,
                Some((a.clone(), Some(3))),
                None,
                None,
                Some((a, Some(7)))
            ]
        );
    }

    #[test]
    fn in_a_vector_the_entry_that_moved_names_the_channel() {
        let channels = ["a".to_owned(), "b".to_owned()];
        let state = state();
        let outcomes = vec![
            handle(frame("stream-open", Some("a:1,b:5"), ""), &channels, &state),
            handle(frame("message", Some("a:1,b:6"), "1"), &channels, &state),
            handle(frame("message", Some("a:2,b:6"), "1"), &channels, &state),
            // A live-only event repeats the vector.
            handle(frame("message", Some("a:2,b:6"), "1"), &channels, &state),
            // A repeat of b:6 after a:3 went by.
            handle(frame("message", Some("a:3,b:6"), "1"), &channels, &state),
            handle(frame("message", Some("a:2,b:6"), "1"), &channels, &state),
        ];
        assert_eq!(
            seqs(outcomes),
            [
                None,
                Some((Some("b".into()), Some(6))),
                Some((Some("a".into()), Some(2))),
                Some((None, None)),
                Some((Some("a".into()), Some(3))),
                None,
            ]
        );
    }

    #[test]
    fn undecodable_data_is_an_item_and_errors_end_the_stream() {
        let channels = ["a".to_owned()];
        let state = state();
        match handle::<u32>(frame("message", Some("a:1"), "not json"), &channels, &state) {
            Outcome::Yield(Item::Undecodable { event, .. }) => assert_eq!(event.data, "not json"),
            _ => panic!("an undecodable item"),
        }
        let error = r#"{"condition":"forbidden","text":"no","channels":["a"]}"#;
        match handle::<u32>(
            frame("stream-error", Some("error"), error),
            &channels,
            &state,
        ) {
            Outcome::End(Item::Error(error)) => assert_eq!(error.condition, Condition::Forbidden),
            _ => panic!("a stream error"),
        }
        let expired = r#"{"condition":"credentials-expired","text":"token expired"}"#;
        match handle::<u32>(
            frame("stream-error", Some("error"), expired),
            &channels,
            &state,
        ) {
            Outcome::End(Item::Error(error)) => {
                assert_eq!(error.condition, Condition::CredentialsExpired)
            }
            _ => panic!("a stream error"),
        }
        let unknown = r#"{"condition":"on-fire","text":"?"}"#;
        match handle::<u32>(
            frame("stream-error", Some("error"), unknown),
            &channels,
            &state,
        ) {
            Outcome::End(Item::Error(error)) => {
                assert_eq!(error.condition, Condition::Other("on-fire".into()))
            }
            _ => panic!("a stream error"),
        }
    }

    /// A stream of channels `a` and `b` opened at `a:0,b:0`: the channels,
    /// its state, its cursor, and a subscription that acknowledges into it.
    fn opened_on_a_and_b() -> (
        [String; 2],
        Arc<Mutex<State>>,
        Arc<MemoryCursor>,
        Subscription<serde_json::Value>,
    ) {
        let channels = ["a".to_owned(), "b".to_owned()];
        let state = Arc::new(state());
        let cursor = Arc::new(MemoryCursor::default());
        let items = Subscription {
            items: Box::pin(futures_util::stream::empty()),
            state: Arc::clone(&state),
            cursor: Arc::clone(&cursor) as Arc<dyn CursorStore>,
        };
        handle::<serde_json::Value>(frame("stream-open", Some("a:0,b:0"), ""), &channels, &state);
        (channels, state, cursor, items)
    }

    fn yielded(outcome: Outcome<serde_json::Value>) -> Item<serde_json::Value> {
        match outcome {
            Outcome::Yield(item) => item,
            _ => panic!("an item"),
        }
    }

    /// A server that withheld `a:1` from this user and then sent `b:1`
    /// without telling (two entries moved): the event is not attributed to
    /// a guessed channel, and acknowledging it saves both positions, so a
    /// restart from the cursor repeats neither.
    #[test]
    fn an_event_that_moves_two_entries_is_not_misattributed_nor_repeated() {
        let (channels, state, cursor, items) = opened_on_a_and_b();
        let item = yielded(handle(
            frame("message", Some("a:1,b:1"), "1"),
            &channels,
            &state,
        ));
        let Item::Event(event) = &item else {
            panic!("an event: {item:?}")
        };
        assert_eq!(
            (event.channel.as_deref(), event.seq),
            (None, None),
            "not guessed"
        );
        items.ack(&item).expect("saved");
        // A reconnect, and a restart from the cursor, resume after both:
        // the server sends neither again.
        assert_eq!(items.positions().to_string(), "a:1,b:1");
        assert_eq!(cursor.load().expect("loads").to_string(), "a:1,b:1");
    }

    /// What the server sends instead (PROTOCOL.md §4.3): the withheld
    /// event's position in a keep-alive, then `b:1` moving one entry.
    #[test]
    fn a_keep_alive_carries_a_withheld_position_and_the_next_event_is_attributed() {
        let (channels, state, cursor, items) = opened_on_a_and_b();
        assert!(matches!(
            handle::<serde_json::Value>(
                frame("keep-alive", Some("a:1,b:0"), ""),
                &channels,
                &state
            ),
            Outcome::Skip
        ));
        let item = yielded(handle(
            frame("message", Some("a:1,b:1"), "1"),
            &channels,
            &state,
        ));
        let Item::Event(event) = &item else {
            panic!("an event: {item:?}")
        };
        assert_eq!((event.channel.as_deref(), event.seq), (Some("b"), Some(1)));
        items.ack(&item).expect("saved");
        assert_eq!(cursor.load().expect("loads").to_string(), "a:1,b:1");
    }
}
