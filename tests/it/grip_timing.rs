//! How late events arrive through a real Pushpin, where it is the proxy,
//! not the app, that can hold them back:
//!
//! - the end of a burst: the proxy drops what overflows a stream's queue,
//!   and nothing after the burst tells the stream it is behind;
//! - the first seconds of a channel: the proxy refreshes every stream of a
//!   channel a second after its first subscription.
//!
//! A reader never reconnects because its stream went quiet: a frame later
//! than the stated bound, or missing, fails the test. A stream the proxy
//! *ends* is reopened with `Last-Event-ID`, as EventSource does (Pushpin
//! 1.36 now and then cancels a connection of a connect burst), and counted;
//! more than [`ENDED_MAX`] of them fail the test. Throughput is measured by
//! `scripts/bench.sh`, not here.

use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{App, Setup, Sse, TestApp, open_after, seq_of, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        alone_with_pushpin => [
            the_tail_of_a_burst_reaches_every_proxied_subscriber_within_seconds,
            a_fresh_channel_delivers_through_pushpin_within_its_bound,
        ],
    ]
}

/// Subscribers connecting at once (Pushpin 1.36 answers 502 to some of a
/// burst of a few hundred simultaneous connects).
const WAVE: usize = 50;

/// Subscribers and events of the burst.
const BURST_SUBSCRIBERS: usize = 1000;
const BURST_EVENTS: u64 = 400;
/// Every frame of the burst arrives within this long of the burst's start.
/// Without a hint at its end, a stream that lost the tail at the proxy
/// waits for its link timeout (120 s). Measured runs end within 2–4 s, and
/// up to 6 s on a busy machine: the bound leaves room for that.
const BURST_BOUND: Duration = Duration::from_secs(10);

/// Subscribers on the fresh channel, and its events, at 50 a second.
const COLD_SUBSCRIBERS: usize = 200;
const COLD_EVENTS: u64 = 200;
const COLD_PACE: Duration = Duration::from_millis(20);
/// Every event of the fresh channel arrives within this long of its send.
/// Pushpin's refresh of a new channel's streams holds events for about a
/// second; the rest is room for a debug build on a busy machine.
const COLD_BOUND: Duration = Duration::from_secs(2);

/// Streams the proxy may end (and the reader reopen) per test.
const ENDED_MAX: usize = 10;

/// How long readers wait past a bound before reporting what is missing.
const GRACE: Duration = Duration::from_secs(5);

/// What one subscriber read: each event's number and when it arrived, and
/// how often the proxy ended its stream.
struct Reading {
    arrivals: Vec<(u64, Instant)>,
    ended: usize,
}

/// Opens a stream on `url`: a fresh start (`after` is `None`, before any
/// event of `channel`), or a resume after event `after` (0 included: a
/// reader the proxy ended before its first event resumes from the start,
/// not from wherever the channel is by then); returns once its
/// `stream-open` names that position.
async fn open(http: reqwest::Client, url: String, channel: &str, after: Option<u64>) -> Sse {
    let (stream, from) = open_after(&http, &url, channel, after, Duration::from_secs(20)).await;
    assert_eq!(from, after.unwrap_or(0), "where it was asked to start");
    stream
}

/// Opens `count` streams on a fresh `channel` at `url`, in waves.
async fn subscribe(app: &TestApp, url: &str, channel: &'static str, count: usize) -> Vec<Sse> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count / WAVE {
        let opens: Vec<_> = (0..WAVE)
            .map(|_| tokio::spawn(open(app.http.clone(), url.to_owned(), channel, None)))
            .collect();
        for opened in opens {
            streams.push(opened.await.expect("subscriber connected"));
        }
    }
    streams
}

/// Reads `stream` until event `last` or `until`, never reconnecting
/// because it is quiet; reopening it if the proxy ends it.
async fn read(
    mut stream: Sse,
    (http, url, channel): (reqwest::Client, String, &'static str),
    last: u64,
    until: tokio::time::Instant,
) -> Reading {
    let mut reading = Reading {
        arrivals: Vec::new(),
        ended: 0,
    };
    while reading.arrivals.last().is_none_or(|(seq, _)| *seq < last) {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match stream.try_next_within(left).await {
            Some(Some(frame)) if frame.event() == "message" => {
                reading
                    .arrivals
                    .push((seq_of(frame.id.as_deref()), Instant::now()));
            }
            Some(Some(_)) => {}
            Some(None) if reading.ended < 3 => {
                reading.ended += 1;
                let position = reading.arrivals.last().map_or(0, |(seq, _)| *seq);
                stream = open(http.clone(), url.clone(), channel, Some(position)).await;
            }
            Some(None) | None => break,
        }
    }
    reading
}

/// The delays of every delivered frame (from `sent_at(seq)`), sorted, and
/// the problems: streams ended, events missing, repeated or out of order.
fn tally(
    readings: &[Reading],
    last: u64,
    sent_at: impl Fn(u64) -> Instant,
) -> (Vec<Duration>, Vec<String>) {
    let mut delays = Vec::new();
    let mut problems = Vec::new();
    let ended: usize = readings.iter().map(|reading| reading.ended).sum();
    if ended > 0 {
        eprintln!("{ended} streams ended by the proxy and reopened");
    }
    if ended > ENDED_MAX {
        problems.push(format!("{ended} streams ended by the proxy"));
    }
    for (index, reading) in readings.iter().enumerate() {
        let seqs: Vec<u64> = reading.arrivals.iter().map(|(seq, _)| *seq).collect();
        let expected: Vec<u64> = (1..=last).collect();
        if seqs != expected {
            let missing = expected.iter().filter(|seq| !seqs.contains(seq)).count();
            problems.push(format!(
                "subscriber {index}: {} received, {missing} missing, first ids {:?}",
                seqs.len(),
                &seqs[..seqs.len().min(5)]
            ));
        }
        delays.extend(
            reading
                .arrivals
                .iter()
                .map(|(seq, at)| at.saturating_duration_since(sent_at(*seq))),
        );
    }
    delays.sort();
    (delays, problems)
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() * per_mille / 1000).min(sorted.len() - 1)]
}

/// Prints the delays and fails on any problem or a delay past `bound`.
fn judge(what: &str, delays: &[Duration], problems: &[String], bound: Duration) {
    assert!(!delays.is_empty(), "{what}: nothing delivered");
    let max = delays[delays.len() - 1];
    eprintln!(
        "{what}: {} frames; delay p50 {:?}, p99 {:?}, p999 {:?}, max {max:?} (bound {bound:?})",
        delays.len(),
        percentile(delays, 500),
        percentile(delays, 990),
        percentile(delays, 999),
    );
    assert!(
        problems.is_empty(),
        "{what}: {} problems, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    let late = delays.iter().filter(|delay| **delay > bound).count();
    assert!(
        late == 0,
        "{what}: {late} frames later than {bound:?}, the longest {max:?}"
    );
}

/// A thousand subscribers, 400 events sent as fast as the app takes them:
/// the proxy drops some of each stream's burst, and every stream still
/// gets all of it, in order, within seconds and without reconnecting.
async fn the_tail_of_a_burst_reaches_every_proxied_subscriber_within_seconds() {
    let app = spawn_app(App::on(Setup::Pushpin)).await;
    let url = app.url("/events/burst");
    let streams = subscribe(&app, &url, "burst", BURST_SUBSCRIBERS).await;

    let started = Instant::now();
    let until = tokio::time::Instant::now() + BURST_BOUND + GRACE;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let again = (app.http.clone(), url.clone(), "burst");
            tokio::spawn(read(stream, again, BURST_EVENTS, until))
        })
        .collect();
    let sends = (1..=BURST_EVENTS).map(|n| {
        let events = app.events.clone();
        async move {
            events
                .send_event("burst", "message", &json!(n))
                .await
                .expect("send")
                .expect("a persistent channel")
        }
    });
    futures_util::future::join_all(sends).await;
    let sent_in = started.elapsed();

    let mut readings = Vec::with_capacity(BURST_SUBSCRIBERS);
    for reader in readers {
        readings.push(reader.await.expect("reader"));
    }
    eprintln!("burst: {BURST_EVENTS} events sent in {sent_in:?}");
    let (delays, problems) = tally(&readings, BURST_EVENTS, |_| started);
    judge(
        "burst through Pushpin, delay from the burst's start",
        &delays,
        &problems,
        BURST_BOUND,
    );
    app.stop().await;
}

/// Two hundred subscribers on a channel nobody has subscribed to before,
/// and events at once, at 50 a second: each arrives within its bound.
async fn a_fresh_channel_delivers_through_pushpin_within_its_bound() {
    let app = spawn_app(App::on(Setup::Pushpin)).await;
    let url = app.url("/events/fresh");
    let streams = subscribe(&app, &url, "fresh", COLD_SUBSCRIBERS).await;

    let mut sent_at = vec![None; COLD_EVENTS as usize + 1];
    let until = tokio::time::Instant::now() + COLD_PACE * COLD_EVENTS as u32 + COLD_BOUND + GRACE;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let again = (app.http.clone(), url.clone(), "fresh");
            tokio::spawn(read(stream, again, COLD_EVENTS, until))
        })
        .collect();
    let mut ticks = tokio::time::interval(COLD_PACE);
    for n in 1..=COLD_EVENTS {
        ticks.tick().await;
        let before = Instant::now();
        let id = app
            .events
            .send_event("fresh", "message", &json!(n))
            .await
            .expect("send")
            .expect("a persistent channel");
        sent_at[id.seq() as usize] = Some(before);
    }

    let mut readings = Vec::with_capacity(COLD_SUBSCRIBERS);
    for reader in readers {
        readings.push(reader.await.expect("reader"));
    }
    let (delays, problems) = tally(&readings, COLD_EVENTS, |seq| {
        sent_at[seq as usize].expect("every event was sent")
    });
    judge(
        "fresh channel through Pushpin, delay from each send",
        &delays,
        &problems,
        COLD_BOUND,
    );
    app.stop().await;
}
