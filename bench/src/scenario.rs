//! The scenarios: open subscribers, publish, and tally what arrived.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::Options;
use crate::publish::{Publisher, now_ns};
use crate::sse::{Kind, Subscriber};

/// Most subscribers one run may open (the open-file limit here is ~20,000).
const MAX_SUBSCRIBERS: u64 = 19_000;

/// Where to connect and publish.
struct Target {
    addr: SocketAddr,
    stream_path: String,
    publisher: Publisher,
}

fn target(options: &Options) -> Result<Target, String> {
    let url = options.text("url", "http://127.0.0.1:8000");
    let host = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?
        .trim_end_matches('/');
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address; this tool only loads this machine"
        ));
    }
    let channel = options.text("channel", "bench");
    let stream_path = options.text("stream-path", &format!("/events/{channel}"));
    let publish_url = options.text("publish-url", &format!("http://{host}/events/{channel}"));
    Ok(Target {
        addr,
        stream_path,
        publisher: Publisher::new(publish_url, options.maybe("publish-key")),
    })
}

/// What one subscriber saw.
struct Tally {
    received: u64,
    lost: u64,
    duplicated: u64,
    resets: u64,
    last_at: Option<Instant>,
    latency_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Opens `count` streams, each read up to its `stream-open`.
async fn subscribe_all(target: &Target, count: u64) -> Result<Vec<Subscriber>, String> {
    if count > MAX_SUBSCRIBERS {
        return Err(format!("at most {MAX_SUBSCRIBERS} subscribers per process"));
    }
    let mut subscribers = Vec::with_capacity(count as usize);
    let mut remaining = count;
    while remaining > 0 {
        let wave = remaining.min(256);
        let connects: Vec<_> = (0..wave)
            .map(|_| {
                let addr = target.addr;
                let path = target.stream_path.clone();
                tokio::spawn(async move {
                    let mut subscriber = Subscriber::connect(addr, &path, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    match subscriber.next_frame().await.map_err(|e| e.to_string())? {
                        Some(frame) if frame.kind == Kind::Open => Ok(subscriber),
                        other => Err(format!("expected stream-open, got {other:?}")),
                    }
                })
            })
            .collect();
        for connect in connects {
            subscribers.push(connect.await.map_err(|e| e.to_string())??);
        }
        remaining -= wave;
    }
    Ok(subscribers)
}

/// Reads each subscriber until it has `expected` events or `deadline`.
fn read_all(
    subscribers: Vec<Subscriber>,
    expected: u64,
    deadline: Instant,
) -> Vec<JoinHandle<Tally>> {
    subscribers
        .into_iter()
        .map(|mut subscriber| {
            tokio::spawn(async move {
                let mut tally = Tally {
                    received: 0,
                    lost: 0,
                    duplicated: 0,
                    resets: 0,
                    last_at: None,
                    latency_us: histogram(),
                };
                let mut last_seq: Option<u64> = None;
                while tally.received < expected {
                    let Ok(Ok(Some(frame))) = timeout_at(deadline, subscriber.next_frame()).await
                    else {
                        break;
                    };
                    match frame.kind {
                        Kind::Message => {}
                        Kind::Reset => {
                            tally.resets += 1;
                            continue;
                        }
                        _ => continue,
                    }
                    let now = now_ns();
                    tally.last_at = Some(Instant::now());
                    if let (Some(seq), Some(last)) = (frame.seq, last_seq) {
                        if seq <= last {
                            tally.duplicated += 1;
                            continue;
                        }
                        tally.lost += seq - last - 1;
                    }
                    last_seq = frame.seq.or(last_seq);
                    tally.received += 1;
                    if let Some(sent) = frame.sent_ns {
                        let _ = tally
                            .latency_us
                            .record((now.saturating_sub(sent) / 1000).max(1));
                    }
                }
                tally.lost += expected.saturating_sub(tally.received + tally.lost);
                tally
            })
        })
        .collect()
}

/// The totals over all subscribers.
struct Summary {
    received: u64,
    lost: u64,
    duplicated: u64,
    resets: u64,
    last_at: Option<Instant>,
    latency_us: Histogram<u64>,
}

async fn summarize(readers: Vec<JoinHandle<Tally>>) -> Result<Summary, String> {
    let mut summary = Summary {
        received: 0,
        lost: 0,
        duplicated: 0,
        resets: 0,
        last_at: None,
        latency_us: histogram(),
    };
    for reader in readers {
        let tally = reader.await.map_err(|e| e.to_string())?;
        summary.received += tally.received;
        summary.lost += tally.lost;
        summary.duplicated += tally.duplicated;
        summary.resets += tally.resets;
        summary.last_at = summary.last_at.max(tally.last_at);
        summary
            .latency_us
            .add(&tally.latency_us)
            .map_err(|e| e.to_string())?;
    }
    Ok(summary)
}

fn latency_json(latency: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| us as f64 / 1000.0;
    serde_json::json!({
        "p50_ms": ms(latency.value_at_quantile(0.50)),
        "p99_ms": ms(latency.value_at_quantile(0.99)),
        "p999_ms": ms(latency.value_at_quantile(0.999)),
        "max_ms": ms(latency.max()),
    })
}

/// Publishes `count` events as fast as `in_flight` concurrent requests allow.
async fn publish_burst(publisher: &Publisher, count: u64, in_flight: u64) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(in_flight as usize));
    let mut tasks = Vec::with_capacity(count as usize);
    for index in 0..count {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let result = publisher.publish(index).await;
            drop(permit);
            result
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Fan-out: `subscribers` on one channel, `events` published as fast as
/// possible; reports delivered frames per second and loss.
pub(crate) async fn fanout(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let subscribers = options.number("subscribers", 1000)?;
    let events = options.number("events", 1000)?;
    let in_flight = options.number("in-flight", 64)?.max(1);
    let limit = Duration::from_secs(options.number("seconds", 60)?);
    let streams = subscribe_all(&target, subscribers).await?;
    let started = Instant::now();
    let readers = read_all(streams, events, started + limit);
    publish_burst(&target.publisher, events, in_flight).await?;
    let published_in = started.elapsed();
    let summary = summarize(readers).await?;
    let elapsed = summary.last_at.map_or(limit, |at| at - started);
    Ok(serde_json::json!({
        "scenario": "fanout",
        "subscribers": subscribers,
        "events": events,
        "in_flight": in_flight,
        "delivered_frames": summary.received,
        "frames_per_sec": (summary.received as f64 / elapsed.as_secs_f64()).round(),
        "publish_per_sec": (events as f64 / published_in.as_secs_f64()).round(),
        "lost": summary.lost,
        "duplicated": summary.duplicated,
        "resets": summary.resets,
        "seconds": elapsed.as_secs_f64(),
        "latency": latency_json(&summary.latency_us),
    })
    .to_string())
}

/// Latency: `subscribers` on one channel, `rate` events per second for
/// `seconds`; reports publish-to-parse latency percentiles.
pub(crate) async fn latency(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let subscribers = options.number("subscribers", 100)?;
    let rate = options.number("rate", 100)?.max(1);
    let seconds = options.number("seconds", 10)?.max(1);
    let events = rate * seconds;
    let streams = subscribe_all(&target, subscribers).await?;
    let started = Instant::now();
    let readers = read_all(streams, events, started + Duration::from_secs(seconds + 30));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    let mut sends = Vec::with_capacity(events as usize);
    for index in 0..events {
        ticker.tick().await;
        let publisher = target.publisher.clone();
        sends.push(tokio::spawn(async move { publisher.publish(index).await }));
    }
    for send in sends {
        send.await.map_err(|e| e.to_string())??;
    }
    let summary = summarize(readers).await?;
    Ok(serde_json::json!({
        "scenario": "latency",
        "subscribers": subscribers,
        "rate": rate,
        "seconds": seconds,
        "delivered_frames": summary.received,
        "lost": summary.lost,
        "duplicated": summary.duplicated,
        "resets": summary.resets,
        "latency": latency_json(&summary.latency_us),
    })
    .to_string())
}
