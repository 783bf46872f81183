//! GRIP at scale: a thousand subscribers held by a real Pushpin, joining
//! in waves while events flow, and every one of them gets every event
//! after its `stream-open` exactly once, in order.
//!
//! Each subscriber records the ids it saw, so a failure says which kind it
//! is: missing, repeated, or late (arrived after a later one). How fast
//! this goes is measured by `scripts/bench.sh`, not here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::{App, Setup, Sse, open_after, seq_of, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        alone_with_pushpin => [a_thousand_proxied_subscribers_joining_mid_stream_get_every_event_once_in_order],
    ]
}

const SUBSCRIBERS: usize = 1000;
/// Subscribers connecting at once (Pushpin 1.36 answers 502 to some of a
/// burst of a few hundred simultaneous connects).
const WAVE: usize = 50;
/// Events published after the last subscriber joined.
const TAIL_EVENTS: u64 = 50;
/// The publishing pace: 50 events a second.
const PACE: Duration = Duration::from_millis(20);
/// A subscriber that receives nothing for this long reconnects with
/// `Last-Event-ID`, as the native client does after its heartbeat (and a
/// browser's EventSource when the socket finally errors); it is counted.
const STALL: Duration = Duration::from_secs(20);
/// Reconnects a subscriber may make before it gives up, and the events it
/// lacks are reported as missing.
const RECONNECTS: usize = 5;

/// What one subscriber saw, as a problem report if it was not exactly
/// `start + 1 ..= last`.
fn check(start: u64, ids: &[u64], last: u64) -> Option<String> {
    let expected: Vec<u64> = (start + 1..=last).collect();
    if ids == expected {
        return None;
    }
    let mut seen = std::collections::BTreeSet::new();
    let (mut repeated, mut late, mut highest) = (0, 0, start);
    for id in ids {
        if !seen.insert(*id) {
            repeated += 1;
        } else if *id < highest {
            late += 1;
        }
        highest = highest.max(*id);
    }
    let missing = expected.iter().filter(|id| !seen.contains(id)).count();
    Some(format!(
        "from {start} to {last}: {} received, {missing} missing, {repeated} repeated, {late} late",
        ids.len()
    ))
}

/// Opens the stream, resuming after `after` if given; returns it and the
/// position its `stream-open` names.
async fn open(http: reqwest::Client, url: String, after: Option<u64>) -> (Sse, u64) {
    open_after(&http, &url, "scale", after, STALL).await
}

/// What a subscriber read: the ids, and how often its stream ended early
/// or went silent.
struct Reading {
    ids: Vec<u64>,
    reconnects: usize,
    stalls: usize,
    /// The longest wait between two events (or before the first).
    longest_wait: Duration,
}

/// Reads `stream` until it has the last event (once that is known). A
/// stream that ends, or stays silent for [`STALL`], is reopened with
/// `Last-Event-ID`, as the clients do: Pushpin 1.36 now and then cancels a
/// connection handed over from its proxy to its handler during a connect
/// burst ("received message out of sequence"), and the guarantee is that a
/// resume loses nothing. Both are counted and printed; how long events
/// take through the proxy is measured by `scripts/bench.sh`.
async fn read(
    http: reqwest::Client,
    url: String,
    mut stream: Sse,
    start: u64,
    mut last: watch::Receiver<Option<u64>>,
) -> Reading {
    let mut reading = Reading {
        ids: Vec::new(),
        reconnects: 0,
        stalls: 0,
        longest_wait: Duration::ZERO,
    };
    let mut since = tokio::time::Instant::now();
    loop {
        let position = reading.ids.last().copied().unwrap_or(start);
        if let Some(last) = *last.borrow_and_update()
            && position >= last
        {
            return reading;
        }
        tokio::select! {
            frame = stream.try_next_within(STALL) => match frame {
                Some(Some(frame)) if frame.event() == "message" => {
                    reading.ids.push(seq_of(frame.id.as_deref()));
                    reading.longest_wait = reading.longest_wait.max(since.elapsed());
                    since = tokio::time::Instant::now();
                }
                Some(Some(_)) => {}
                ended_or_silent if reading.reconnects + reading.stalls < RECONNECTS => {
                    if ended_or_silent.is_none() {
                        reading.stalls += 1;
                    } else {
                        reading.reconnects += 1;
                    }
                    let (resumed, from) = open(http.clone(), url.clone(), Some(position)).await;
                    assert_eq!(from, position, "resumed where it stopped");
                    stream = resumed;
                }
                // Ended or silent again and again: `check` reports what is
                // missing.
                Some(None) | None => return reading,
            },
            changed = last.changed() => if changed.is_err() {
                return reading;
            },
        }
    }
}

async fn a_thousand_proxied_subscribers_joining_mid_stream_get_every_event_once_in_order() {
    let app = spawn_app(App::on(Setup::Pushpin)).await;
    let joined = Arc::new(AtomicUsize::new(0));

    // Events flow the whole time: subscribers join while they do.
    let events = app.events.clone();
    let publisher = {
        let joined = Arc::clone(&joined);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PACE);
            let (mut sent, mut tail) = (0_u64, 0);
            while tail < TAIL_EVENTS {
                ticks.tick().await;
                sent += 1;
                let id = events
                    .send_event("scale", "message", &json!(sent))
                    .await
                    .expect("send")
                    .expect("a persistent channel");
                assert_eq!(id.seq(), sent);
                if joined.load(Ordering::SeqCst) == SUBSCRIBERS {
                    tail += 1;
                }
            }
            sent
        })
    };

    let url = app.url("/events/scale");
    let (last_tx, last_rx) = watch::channel(None);
    let mut readers = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS / WAVE {
        let opens: Vec<_> = (0..WAVE)
            .map(|_| tokio::spawn(open(app.http.clone(), url.clone(), None)))
            .collect();
        for opened in opens {
            let (stream, start) = opened.await.expect("subscriber connected");
            let reader = read(
                app.http.clone(),
                url.clone(),
                stream,
                start,
                last_rx.clone(),
            );
            readers.push((start, tokio::spawn(reader)));
            joined.fetch_add(1, Ordering::SeqCst);
        }
    }
    let last = publisher.await.expect("publisher");
    last_tx.send_replace(Some(last));

    let mut problems = Vec::new();
    let (mut received, mut reconnects, mut stalls) = (0, 0, 0);
    let mut waits = Vec::with_capacity(SUBSCRIBERS);
    for (start, reader) in readers {
        let reading = reader.await.expect("reader");
        received += reading.ids.len();
        reconnects += reading.reconnects;
        stalls += reading.stalls;
        waits.push(reading.longest_wait);
        if let Some(problem) = check(start, &reading.ids, last) {
            problems.push(problem);
        }
    }
    waits.sort();
    eprintln!(
        "grip scale: {SUBSCRIBERS} subscribers, {last} events, {received} delivered, \
         {reconnects} streams ended by Pushpin and resumed, {stalls} silent for {STALL:?} \
         and resumed; longest wait between two events per subscriber: median {:?}, \
         p99 {:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() * 99 / 100],
        waits[waits.len() - 1],
    );
    assert!(
        problems.is_empty(),
        "{} of {SUBSCRIBERS} subscribers did not get every event once, in order \
         ({received} events received); e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    app.stop().await;
}
