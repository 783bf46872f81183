#![no_main]
//! Fuzz target: an event encoded by the library and read back by an
//! independent SSE parser (`eventsource-stream`, WHATWG rules) is the event
//! that was sent.

use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt, stream};
use libfuzzer_sys::fuzz_target;

use eventstream_rocket::internals::fuzz::{event_frame, expected_event};

fuzz_target!(|input: (&str, &str, &str, u64)| {
    let (event_type, data, channel, seq) = input;
    let Some(bytes) = event_frame(event_type, data, channel, seq) else {
        return;
    };
    let parsed: Vec<_> = stream::iter([Ok::<_, std::convert::Infallible>(bytes)])
        .eventsource()
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready");
    assert_eq!(parsed.len(), 1, "one event: {parsed:?}");
    let event = parsed[0].as_ref().expect("parses");
    let [event_type, data, id] = expected_event(event_type, data, channel, seq);
    assert_eq!((&event.event, &event.data, &event.id), (&event_type, &data, &id));
});
