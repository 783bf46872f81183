#![no_main]
//! Fuzz target: `eventstream_rocket::internals::fuzz::config` on arbitrary UTF-8.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    eventstream_rocket::internals::fuzz::config(text);
});
