//! Micro-benchmarks of the per-event work: encoding a frame, parsing an id
//! vector, and the hub fanning one event out to many subscribers.
//!
//! `cargo bench --features internals --bench hot_path`

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventstream_rocket::internals::{HubBench, encode_frame, parse_id_vector};

fn frame_encoding(c: &mut Criterion) {
    let data = r#"{"author":"ann","text":"hello, world","room":"lobby","id":12345}"#;
    c.bench_function("frame/encode 80-byte event", |b| {
        b.iter(|| {
            encode_frame(
                black_box("message"),
                black_box(data),
                black_box("lobby:12345"),
            )
        })
    });
    let multiline = "line one\nline two\r\nline three\rline four";
    c.bench_function("frame/encode multi-line data", |b| {
        b.iter(|| encode_frame(black_box("message"), black_box(multiline), black_box("a:1")))
    });
}

fn id_parsing(c: &mut Criterion) {
    c.bench_function("id/parse one channel", |b| {
        b.iter(|| parse_id_vector(black_box("room-1:42")))
    });
    let ten = (0..10)
        .map(|n| format!("channel%20{n}:{}", 1000 + n))
        .collect::<Vec<_>>()
        .join(",");
    c.bench_function("id/parse ten channels", |b| {
        b.iter(|| parse_id_vector(black_box(&ten)))
    });
}

fn hub_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub/publish");
    for subscribers in [1, 100, 1000] {
        let mut hub = HubBench::new(subscribers);
        group.throughput(Throughput::Elements(subscribers as u64 * 16));
        group.bench_with_input(
            BenchmarkId::new("16 events to", subscribers),
            &subscribers,
            |b, _| b.iter(|| hub.publish(16)),
        );
    }
    group.finish();
}

criterion_group!(benches, frame_encoding, id_parsing, hub_publish);
criterion_main!(benches);
