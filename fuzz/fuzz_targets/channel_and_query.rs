#![no_main]
//! Fuzz target: `eventstream_rocket::internals::fuzz::channel_and_query` on arbitrary UTF-8.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    eventstream_rocket::internals::fuzz::channel_and_query(text);
});
