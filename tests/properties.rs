//! The bodies of the fuzz targets in `fuzz/` as proptest properties, so the
//! normal suite exercises them on stable (cargo-fuzz needs nightly). Each
//! runs on arbitrary strings and on strings shaped like the real input, so
//! the interesting branches (a vector that parses, a name that validates,
//! TOML that loads) are reached too.

use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt, stream};
use proptest::prelude::*;

use eventstream_rocket::internals::fuzz;

/// Reads `bytes` with an independent SSE parser (WHATWG rules).
fn parse_sse(bytes: Vec<u8>) -> Vec<eventsource_stream::Event> {
    stream::iter([Ok::<_, std::convert::Infallible>(bytes)])
        .eventsource()
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready")
        .into_iter()
        .map(|event| event.expect("the frame parses"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn id_vectors_print_as_they_parse(text in any::<String>()) {
        fuzz::id_vector(&text);
    }

    #[test]
    fn id_vector_shaped_text_prints_as_it_parses(text in "([a-z%0-9 ]{0,6}:[0-9]{0,21},?){0,4}") {
        fuzz::id_vector(&text);
    }

    #[test]
    fn channels_and_query_values_never_panic(text in any::<String>()) {
        fuzz::channel_and_query(&text);
    }

    #[test]
    fn frames_read_back_as_sent(
        event_type in prop_oneof![any::<String>(), "[a-z\\-]{1,12}"],
        data in prop_oneof![any::<String>(), "(\\{\"[a-z]{0,3}\": ?[0-9]{0,4}\\}|[ \r\n\0a-z]{0,8})*"],
        channel in any::<String>(),
        seq in any::<u64>(),
    ) {
        if let Some(bytes) = fuzz::event_frame(&event_type, &data, &channel, seq) {
            let events = parse_sse(bytes);
            prop_assert_eq!(events.len(), 1);
            let [event_type, data, id] = fuzz::expected_event(&event_type, &data, &channel, seq);
            prop_assert_eq!(&events[0].event, &event_type);
            prop_assert_eq!(&events[0].data, &data);
            prop_assert_eq!(&events[0].id, &id);
        }
    }

    #[test]
    fn no_grip_sig_is_forged(token in prop_oneof![any::<String>(), "eyJ[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,43}"]) {
        fuzz::grip_sig(&token);
    }

    #[test]
    fn any_configuration_loads_or_says_why(
        toml in prop_oneof![
            any::<String>(),
            "(\\[eventstream\\]\n)?([a-z_]{1,22} = (\"[a-z/:0-9.*]{0,12}\"|[0-9]{1,6}|true|\\[\"[a-z:/.]{0,10}\"\\])\n){0,4}",
        ]
    ) {
        fuzz::config(&toml);
    }
}
