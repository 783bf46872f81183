//! The scenarios: open subscribers, publish, and tally what arrived.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::Options;
use crate::publish::{Publisher, now_ns};
use crate::sse::{Frame, Kind, Subscriber};
use crate::stages;

/// Most subscribers one run may open (the open-file limit here is ~20,000).
const MAX_SUBSCRIBERS: u64 = 19_000;

/// Where to connect and publish.
struct Target {
    addr: SocketAddr,
    channel: String,
    stream_path: String,
    publish_base: String,
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
    let publish_base = options.text("publish-base", &format!("http://{host}/events"));
    let publish_url = options.text("publish-url", &format!("{publish_base}/{channel}"));
    Ok(Target {
        addr,
        channel,
        stream_path,
        publish_base,
        publisher: Publisher::new(publish_url, options.maybe("publish-key")),
    })
}

/// What one subscriber saw, or all of them together. Every subscriber
/// records the ids it received, so a repeat, a late arrival and a miss are
/// told apart: `duplicated` counts ids seen twice, `out_of_order` ids that
/// arrived after a higher one (first time seen), `lost` ids never seen.
struct Tally {
    /// Distinct events received.
    received: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    resets: u64,
    /// Streams that ended early and were resumed.
    reconnects: u64,
    last_at: Option<Instant>,
    latency_us: Histogram<u64>,
    /// `(index, parsed at, ns)` of each measured event, kept only when the
    /// run splits its latency (`--split`).
    arrivals: Option<Vec<(u64, u64)>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            received: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            resets: 0,
            reconnects: 0,
            last_at: None,
            latency_us: histogram(),
            arrivals: None,
        }
    }

    /// A tally that also keeps when each measured event was parsed.
    fn keeping_arrivals() -> Tally {
        Tally {
            arrivals: Some(Vec::new()),
            ..Tally::new()
        }
    }

    /// Counts one frame a subscriber read (`seen`: the ids it has read
    /// before). Latency is recorded for events whose index (`i`) is at
    /// least `measured_from`.
    fn take(&mut self, seen: &mut Seen, frame: &Frame, measured_from: u64) {
        match frame.kind {
            Kind::Message => {}
            Kind::Reset => {
                self.resets += 1;
                return;
            }
            _ => return,
        }
        let now = now_ns();
        self.last_at = Some(Instant::now());
        if let Some(seq) = frame.seq {
            match seen.record(seq) {
                Arrival::Repeated => {
                    self.duplicated += 1;
                    return;
                }
                Arrival::Late => self.out_of_order += 1,
                Arrival::InOrder => {}
            }
        }
        self.received += 1;
        if frame.index.is_some_and(|index| index < measured_from) {
            return;
        }
        if let Some(sent) = frame.sent_ns {
            let _ = self
                .latency_us
                .record((now.saturating_sub(sent) / 1000).max(1));
        }
        if let (Some(arrivals), Some(index)) = (&mut self.arrivals, frame.index) {
            arrivals.push((index, now));
        }
    }

    /// `report` with what every reading scenario says about arrivals.
    fn added_to(&self, mut report: serde_json::Value) -> String {
        report["delivered_frames"] = self.received.into();
        report["lost"] = self.lost.into();
        report["duplicated"] = self.duplicated.into();
        report["out_of_order"] = self.out_of_order.into();
        report["resets"] = self.resets.into();
        report["reconnects"] = self.reconnects.into();
        report["latency"] = latency_json(&self.latency_us);
        report.to_string()
    }
}

/// The ids one subscriber has seen: a bit per sequence number.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    highest: Option<u64>,
}

/// How an arriving id relates to what was seen before.
#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    InOrder,
    Late,
    Repeated,
}

impl Seen {
    fn record(&mut self, seq: u64) -> Arrival {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) != 0 {
            return Arrival::Repeated;
        }
        self.bits[word] |= 1 << bit;
        let late = self.highest.is_some_and(|highest| seq < highest);
        self.highest = self.highest.max(Some(seq));
        if late {
            Arrival::Late
        } else {
            Arrival::InOrder
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Opens `count` streams, each read up to its `stream-open`, `wave` at a
/// time. A proxy that answers 502 or 503 to a burst of connects (Pushpin
/// does, before it is ready and under bursts) is retried with backoff, as
/// a reconnecting client would; the retries are counted.
async fn subscribe_all(target: &Target, count: u64, wave: u64) -> Result<Vec<Subscriber>, String> {
    let (subscribers, _, _) = subscribe_all_at(target, count, wave).await?;
    Ok(subscribers)
}

/// [`subscribe_all`], also returning the position each `stream-open` named.
async fn subscribe_all_at(
    target: &Target,
    count: u64,
    wave: u64,
) -> Result<(Vec<Subscriber>, Vec<u64>, u64), String> {
    let (opened, retries) = open_in_waves(target, count, wave, |subscriber, start| async move {
        (subscriber, start)
    })
    .await?;
    let mut subscribers = Vec::with_capacity(opened.len());
    let mut starts = Vec::with_capacity(opened.len());
    for task in opened {
        let (subscriber, start) = task.await.map_err(|e| e.to_string())??;
        subscribers.push(subscriber);
        starts.push(start);
    }
    Ok((subscribers, starts, retries))
}

/// Opens `count` streams, `wave` at a time (the next wave once this one's
/// streams are open), and goes on with `then` on each stream, in its own
/// task, the moment its `stream-open` arrived; returns those tasks and the
/// 502/503 answers retried.
async fn open_in_waves<T, F, Fut>(
    target: &Target,
    count: u64,
    wave: u64,
    then: F,
) -> Result<(Vec<JoinHandle<Result<T, String>>>, u64), String>
where
    F: Fn(Subscriber, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    if count > MAX_SUBSCRIBERS {
        return Err(format!("at most {MAX_SUBSCRIBERS} subscribers per process"));
    }
    let mut tasks = Vec::with_capacity(count as usize);
    let mut retries = 0;
    let mut remaining = count;
    while remaining > 0 {
        let wave = remaining.min(wave.max(1));
        let opening: Vec<_> = (0..wave)
            .map(|_| {
                let (opened_tx, opened) = tokio::sync::oneshot::channel();
                let (addr, path, then) = (target.addr, target.stream_path.clone(), then.clone());
                let task = tokio::spawn(async move {
                    let (subscriber, start, retries) = open_one(addr, path).await?;
                    let _ = opened_tx.send(retries);
                    Ok(then(subscriber, start).await)
                });
                (opened, task)
            })
            .collect();
        for (opened, task) in opening {
            match opened.await {
                Ok(tries) => retries += tries,
                // It ended before its stream opened: say why.
                Err(_) => {
                    return Err(match task.await {
                        Ok(Err(why)) => why,
                        Ok(Ok(_)) => "a stream ended before it opened".into(),
                        Err(panicked) => panicked.to_string(),
                    });
                }
            }
            tasks.push(task);
        }
        remaining -= wave;
    }
    Ok((tasks, retries))
}

/// How long a new stream may take to send its `stream-open`.
const OPEN_WITHIN: Duration = Duration::from_secs(10);
const NO_OPEN: &str = "no stream-open within 10 s";

/// Opens one stream and reads it up to its `stream-open`; returns it, the
/// position the `stream-open` names and how many 502/503 answers were
/// retried first.
async fn open_one(addr: SocketAddr, path: String) -> Result<(Subscriber, u64, u64), String> {
    let mut retries = 0;
    loop {
        let error = match Subscriber::connect(addr, &path, None).await {
            Ok(mut subscriber) => {
                let opening = async {
                    // Padding (a comment block) may come first.
                    let mut first = subscriber.next_frame().await?;
                    if first.is_some_and(|frame| frame.kind == Kind::Other) {
                        first = subscriber.next_frame().await?;
                    }
                    Ok::<_, std::io::Error>(first)
                };
                match tokio::time::timeout(OPEN_WITHIN, opening).await {
                    Ok(Ok(Some(frame))) if frame.kind == Kind::Open => {
                        return Ok((subscriber, frame.seq.unwrap_or(0), retries));
                    }
                    Ok(Ok(other)) => return Err(format!("expected stream-open, got {other:?}")),
                    Ok(Err(error)) => return Err(error.to_string()),
                    // Retried rather than waited for forever.
                    Err(_) => NO_OPEN.to_owned(),
                }
            }
            Err(error) => error.to_string(),
        };
        let retryable = error.contains(" 502 ") || error.contains(" 503 ") || error == NO_OPEN;
        if !retryable || retries == 8 {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(50 << retries.min(5))).await;
        retries += 1;
    }
}

/// Where a reader reconnects when its stream ends, as EventSource does
/// (with `Last-Event-ID`): Pushpin 1.36 now and then cancels a connection
/// during a connect burst. Reconnects are counted, never hidden.
#[derive(Clone)]
struct Reconnect {
    addr: SocketAddr,
    path: String,
    channel: String,
}

fn reconnect(target: &Target) -> Reconnect {
    Reconnect {
        addr: target.addr,
        path: target.stream_path.clone(),
        channel: target.channel.clone(),
    }
}

/// Reconnects allowed per subscriber and run.
const RECONNECTS: u64 = 5;

/// Reads each subscriber until it has the `expected` events or `deadline`,
/// recording latency only for events whose index (`i`) is at least
/// `measured_from` (the ones before warm the path up), and reconnecting
/// streams that end early when told how.
fn read_all(
    subscribers: Vec<(Subscriber, u64)>,
    expected: u64,
    measured_from: u64,
    deadline: Instant,
    reconnect: Option<Reconnect>,
    keep_arrivals: bool,
) -> Vec<JoinHandle<Tally>> {
    subscribers
        .into_iter()
        .map(|(mut subscriber, start)| {
            let reconnect = reconnect.clone();
            tokio::spawn(async move {
                let mut tally = if keep_arrivals {
                    Tally::keeping_arrivals()
                } else {
                    Tally::new()
                };
                let mut seen = Seen::default();
                while tally.received < expected {
                    let frame = match timeout_at(deadline, subscriber.next_frame()).await {
                        Ok(Ok(Some(frame))) => frame,
                        Ok(Ok(None)) | Ok(Err(_)) => {
                            // From the last id seen, which before any event
                            // is the `stream-open`'s, as EventSource does.
                            let Some(to) = &reconnect else {
                                break;
                            };
                            let last = seen.highest.unwrap_or(start);
                            if tally.reconnects == RECONNECTS {
                                break;
                            }
                            tally.reconnects += 1;
                            let last_id = format!("{}:{last}", to.channel);
                            match Subscriber::connect(to.addr, &to.path, Some(&last_id)).await {
                                Ok(resumed) => subscriber = resumed,
                                Err(_) => break,
                            }
                            continue;
                        }
                        Err(_) => break,
                    };
                    tally.take(&mut seen, &frame, measured_from);
                }
                tally.lost = expected.saturating_sub(tally.received);
                tally
            })
        })
        .collect()
}

async fn summarize(readers: Vec<JoinHandle<Tally>>) -> Result<Tally, String> {
    let mut tallies = Vec::with_capacity(readers.len());
    for reader in readers {
        tallies.push(reader.await.map_err(|e| e.to_string())?);
    }
    total(tallies)
}

/// The readers' tallies added up.
fn total(tallies: Vec<Tally>) -> Result<Tally, String> {
    let mut summary = Tally::new();
    for tally in tallies {
        summary.received += tally.received;
        summary.lost += tally.lost;
        summary.duplicated += tally.duplicated;
        summary.out_of_order += tally.out_of_order;
        summary.resets += tally.resets;
        summary.reconnects += tally.reconnects;
        summary.last_at = summary.last_at.max(tally.last_at);
        summary
            .latency_us
            .add(&tally.latency_us)
            .map_err(|e| e.to_string())?;
        if let Some(arrivals) = tally.arrivals {
            summary
                .arrivals
                .get_or_insert_with(Vec::new)
                .extend(arrivals);
        }
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

/// Starts publishing event `index` once one of `permits` is free; the
/// permit is held until the request ends. The event is stamped with
/// `due_ns`, or else with the moment its request is sent; the stamp is
/// also stored in `stamps[index]`, if given.
async fn publish_when_permitted(
    permits: &Arc<Semaphore>,
    publisher: &Publisher,
    index: u64,
    due_ns: Option<u64>,
    stamps: Option<&Arc<[AtomicU64]>>,
    acks: Option<&Arc<[AtomicU64]>>,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = publisher.clone();
    let acks = acks.map(Arc::clone);
    let stamps = stamps.map(Arc::clone);
    Ok(tokio::spawn(async move {
        let stamp = due_ns.unwrap_or_else(now_ns);
        if let Some(slot) = stamps
            .as_ref()
            .and_then(|stamps| stamps.get(usize::try_from(index).ok()?))
        {
            slot.store(stamp, Ordering::Relaxed);
        }
        let result = publisher.publish_stamped(index, stamp).await;
        // When the server answered: it has committed the event.
        if let (Some(acks), Ok(())) = (&acks, &result)
            && let Some(ack) = usize::try_from(index).ok().and_then(|i| acks.get(i))
        {
            ack.store(now_ns(), Ordering::Relaxed);
        }
        drop(permit);
        result
    }))
}

/// Waits for every publish request and fails with the first failure.
async fn all_published(tasks: Vec<JoinHandle<Result<(), String>>>) -> Result<(), String> {
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Publishes `count` events as fast as `in_flight` concurrent requests allow.
async fn publish_burst(publisher: &Publisher, count: u64, in_flight: u64) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(in_flight as usize));
    let mut tasks = Vec::with_capacity(count as usize);
    for index in 0..count {
        tasks.push(publish_when_permitted(&permits, publisher, index, None, None, None).await?);
    }
    all_published(tasks).await
}

/// Fan-out: `subscribers` on one channel, `events` published as fast as
/// possible; reports delivered frames per second and loss.
pub(crate) async fn fanout(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let subscribers = options.number("subscribers", 1000)?;
    let events = options.number("events", 1000)?;
    let in_flight = options.number("in-flight", 64)?.max(1);
    let limit = Duration::from_secs(options.number("seconds", 60)?);
    let wave = options.number("wave", 256)?;
    let (streams, starts, connect_retries) = subscribe_all_at(&target, subscribers, wave).await?;
    let started = Instant::now();
    let readers = read_all(
        streams.into_iter().zip(starts).collect(),
        events,
        0,
        started + limit,
        Some(reconnect(&target)),
        false,
    );
    publish_burst(&target.publisher, events, in_flight).await?;
    let published_in = started.elapsed();
    let summary = summarize(readers).await?;
    let elapsed = summary.last_at.map_or(limit, |at| at - started);
    Ok(summary.added_to(serde_json::json!({
        "scenario": "fanout",
        "subscribers": subscribers,
        "events": events,
        "in_flight": in_flight,
        "frames_per_sec": (summary.received as f64 / elapsed.as_secs_f64()).round(),
        "publish_per_sec": (events as f64 / published_in.as_secs_f64()).round(),
        "connect_retries": connect_retries,
        "seconds": elapsed.as_secs_f64(),
    })))
}

/// Latency: `subscribers` on one channel, `rate` events per second for
/// `seconds`; reports due-to-parse latency percentiles (from the moment
/// each event was due on the schedule). With
/// `--warmup S`, the rate runs S seconds longer first, unmeasured (behind
/// Pushpin, a channel's first subscription makes every stream on it
/// refresh its next link about a second later). With `--in-flight N`, at
/// most N publish requests are outstanding (a tick waits for one to end,
/// and the wait counts as latency): for servers that refuse concurrent
/// publishers. With `--split 1`, also when the server answered each
/// publish request, and the latency split there (see
/// [`split_at_the_answer`]). With `--stages URL` (eventstream-rocket's
/// `metrics_path` with `delivery_timing` on), also the server's own
/// breakdown of the run's events, step by step (see [`stages`]). With
/// `--from send`, latency counts from the moment each request is sent
/// rather than from the schedule.
pub(crate) async fn latency(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let subscribers = options.number("subscribers", 100)?;
    let rate = options.number("rate", 100)?.max(1);
    let seconds = options.number("seconds", 10)?.max(1);
    let warmup = options.number("warmup", 0)?;
    let measured_from = rate * warmup;
    let events = rate * (warmup + seconds);
    let wave = options.number("wave", 256)?;
    let split = options.number("split", 0)? != 0;
    let subscribing = Instant::now();
    let (streams, starts, connect_retries) = subscribe_all_at(&target, subscribers, wave).await?;
    let started = Instant::now();
    // How long the subscribers took to connect: behind Pushpin, a fresh
    // channel's streams are refreshed a second after the first one.
    let subscribed_in = started - subscribing;
    let readers = read_all(
        streams.into_iter().zip(starts).collect(),
        events,
        measured_from,
        started + Duration::from_secs(warmup + seconds + 30),
        Some(reconnect(&target)),
        split,
    );
    // With `--split 1`: when the server answered each publish request.
    let acks: Option<Arc<[AtomicU64]>> =
        split.then(|| (0..events).map(|_| AtomicU64::new(0)).collect());
    let in_flight = match options.maybe("in-flight") {
        Some(_) => Some(options.number("in-flight", 1)?.max(1)),
        None => None,
    };
    let permits = Arc::new(Semaphore::new(in_flight.map_or(
        Semaphore::MAX_PERMITS,
        |n| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS)
        },
    )));
    // Before the schedule starts: the scrape takes a while.
    let stages_url = options.maybe("stages");
    let stages_before = match &stages_url {
        Some(url) => Some(stages::scrape(url).await?),
        None => None,
    };
    // Events are due on a fixed schedule and stamped with the moment they
    // were due, not the moment a request could be sent: a server whose
    // publish requests take longer than the period (with an in-flight cap)
    // shows it as latency, instead of slowing the load down and leaving
    // the wait out (coordinated omission). A late sender catches up.
    let period_ns = 1_000_000_000 / rate;
    let mut ticker = tokio::time::interval(Duration::from_nanos(period_ns));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    //
    // With `--from send`, events are stamped when their request is sent
    // instead: the ticker's own lateness (tokio's timer has a 1 ms grain)
    // is then left out, which is right only while nothing holds a request
    // back (no `--in-flight`).
    let from_send = match options.maybe("from").as_deref() {
        None | Some("due") => false,
        Some("send") if in_flight.is_none() => true,
        Some("send") => return Err("--from send cannot be used with --in-flight".into()),
        Some(other) => return Err(format!("--from must be due or send, got {other:?}")),
    };
    let stamps: Arc<[AtomicU64]> = (0..events).map(|_| AtomicU64::new(0)).collect();
    let first_due = now_ns();
    let mut sends = Vec::with_capacity(events as usize);
    for index in 0..events {
        ticker.tick().await;
        let due = (!from_send).then_some(first_due + index * period_ns);
        sends.push(
            publish_when_permitted(
                &permits,
                &target.publisher,
                index,
                due,
                Some(&stamps),
                acks.as_ref(),
            )
            .await?,
        );
    }
    all_published(sends).await?;
    let mut summary = summarize(readers).await?;
    let split = acks.map(|acks| {
        split_at_the_answer(
            &acks,
            summary.arrivals.take().unwrap_or_default(),
            |index| stamps[index as usize].load(Ordering::Relaxed),
            measured_from,
        )
    });
    let mut report = serde_json::json!({
        "scenario": "latency",
        "subscribers": subscribers,
        "rate": rate,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "in_flight": in_flight,
        "from": if from_send { "send" } else { "due" },
        "frames_per_sec": (subscribers * rate),
        "connect_retries": connect_retries,
        "subscribe_seconds": subscribed_in.as_secs_f64(),
    });
    if let Some(split) = split {
        report["split"] = split;
    }
    if let (Some(url), Some(before)) = (&stages_url, stages_before) {
        report["stages"] = stages::difference(&before, &stages::scrape(url).await?)?;
    }
    Ok(summary.added_to(report))
}

/// The latency split at the moment the server answered the publish
/// request (it answers once the event is committed): due → answered is the
/// publishing side (the request, the writer's queue, the commit), answered
/// → parsed the delivering side (fan-out, the stream's wake-up, Rocket, the
/// socket, the client's parse). Both from this process's clock, so only
/// valid with the server on this machine. An event parsed before its
/// answer arrived counts as 1 µs on the delivering side, and is counted.
fn split_at_the_answer(
    acks: &[AtomicU64],
    arrivals: Vec<(u64, u64)>,
    due: impl Fn(u64) -> u64,
    measured_from: u64,
) -> serde_json::Value {
    let (mut publishing, mut delivering) = (histogram(), histogram());
    let acked = |index: u64| {
        usize::try_from(index)
            .ok()
            .and_then(|i| acks.get(i))
            .map(|ack| ack.load(Ordering::Relaxed))
            .filter(|ack| *ack > 0)
    };
    for index in measured_from..acks.len() as u64 {
        if let Some(ack) = acked(index) {
            let _ = publishing.record((ack.saturating_sub(due(index)) / 1000).max(1));
        }
    }
    let mut parsed_first = 0_u64;
    for (index, parsed) in arrivals {
        if let Some(ack) = acked(index) {
            parsed_first += u64::from(parsed < ack);
            let _ = delivering.record((parsed.saturating_sub(ack) / 1000).max(1));
        }
    }
    serde_json::json!({
        "due_to_answered": latency_json(&publishing),
        "answered_to_parsed": latency_json(&delivering),
        "parsed_before_answered": parsed_first,
    })
}

/// Join storm: events flow on one channel at `rate` per second; after
/// `warmup` seconds, `subscribers` connect (`wave` at a time) while they
/// flow, and publishing goes on `seconds` longer. Every joiner must get
/// every event after its `stream-open` once, in order; reports how late
/// the events reached the joiners.
pub(crate) async fn join(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let subscribers = options.number("subscribers", 1000)?;
    let rate = options.number("rate", 50)?.max(1);
    let seconds = options.number("seconds", 5)?.max(1);
    let warmup = options.number("warmup", 2)?.max(1);
    let wave = options.number("wave", 256)?;
    let warm = Arc::new(tokio::sync::Notify::new());
    let joined = Arc::new(tokio::sync::Notify::new());
    let publisher = {
        let (publisher, warm, joined) = (
            target.publisher.clone(),
            Arc::clone(&warm),
            Arc::clone(&joined),
        );
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            let mut sends = Vec::new();
            let all_joined = joined.notified();
            tokio::pin!(all_joined);
            // The warm-up, the joining, then `seconds` more.
            let (mut sent, mut last) = (0, None);
            while last.is_none_or(|last| sent < last) {
                ticker.tick().await;
                let publisher = publisher.clone();
                sends.push(tokio::spawn(async move { publisher.publish(sent).await }));
                sent += 1;
                if sent == rate * warmup {
                    warm.notify_one();
                }
                if last.is_none() && sent > rate * warmup && is_ready(&mut all_joined) {
                    last = Some(sent + rate * seconds);
                }
            }
            for send in sends {
                send.await.map_err(|e| e.to_string())??;
            }
            Ok::<u64, String>(sent)
        })
    };
    warm.notified().await;
    // `--presence-watch 1`: one more stream, open before the joins and
    // asking for presence events, counts the `stream-presence` events the
    // joins cause.
    let watcher = match options.number("presence-watch", 0)? {
        0 => None,
        _ => {
            let path = with_query(&target.stream_path, "presence=1");
            let mut watcher = Subscriber::connect(target.addr, &path, None)
                .await
                .map_err(|e| format!("the presence watcher could not connect: {e}"))?;
            // Its own snapshot first.
            loop {
                match watcher.next_frame().await {
                    Ok(Some(frame)) if frame.kind == Kind::Presence => break,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Err("the presence watcher's stream ended".into()),
                }
            }
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let counting = tokio::spawn(count_presence(watcher, stop_rx));
            Some((stop_tx, counting))
        }
    };
    let started = Instant::now();
    let (last_tx, last_rx) = tokio::sync::watch::channel(None);
    // Each joiner is read from the moment its stream opened, so an event's
    // latency is when it reached the joiner, not when this process got
    // round to reading it after the last wave.
    let (readers, connect_retries) =
        open_in_waves(&target, subscribers, wave, move |subscriber, start| {
            read_until_last(subscriber, start, last_rx.clone())
        })
        .await?;
    let joined_in = started.elapsed();
    joined.notify_one();
    // Ids are 1-based: the channel is fresh, so `sent` is the last id.
    let sent = publisher.await.map_err(|e| e.to_string())??;
    last_tx.send_replace(Some(sent));
    let mut tallies = Vec::with_capacity(readers.len());
    for reader in readers {
        tallies.push(reader.await.map_err(|e| e.to_string())??);
    }
    let summary = total(tallies)?;
    let presence = match watcher {
        None => serde_json::Value::Null,
        Some((stop, counting)) => {
            let _ = stop.send(());
            let (events, first, last) = counting.await.map_err(|e| e.to_string())?;
            let span = match (first, last) {
                (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
                _ => 0.0,
            };
            serde_json::json!({
                "events": events,
                "from_first_to_last_seconds": span,
            })
        }
    };
    Ok(summary.added_to(serde_json::json!({
        "scenario": "join",
        "presence_watcher": presence,
        "subscribers": subscribers,
        "rate": rate,
        "joined_seconds": joined_in.as_secs_f64(),
        "events": sent,
        "connect_retries": connect_retries,
    })))
}

/// `path` with `pair` added to its query, unless it is there already.
fn with_query(path: &str, pair: &str) -> String {
    let query = path.split_once('?').map_or("", |(_, query)| query);
    if query.split('&').any(|item| item == pair) {
        return path.to_owned();
    }
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{pair}")
}

/// Counts `stream-presence` events until told to stop: how many, and
/// when the first and the last arrived.
async fn count_presence(
    mut watcher: Subscriber,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (u64, Option<Instant>, Option<Instant>) {
    let (mut events, mut first, mut last) = (0, None, None);
    loop {
        tokio::select! {
            _ = &mut stop => return (events, first, last),
            frame = watcher.next_frame() => match frame {
                Ok(Some(frame)) if frame.kind == Kind::Presence => {
                    events += 1;
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return (events, first, last),
            },
        }
    }
}

/// Reads one joiner from its `stream-open` at `start` until it has every
/// event up to the last id, once `last` says which that is (or 30 s have
/// passed since).
async fn read_until_last(
    mut subscriber: Subscriber,
    start: u64,
    mut last: tokio::sync::watch::Receiver<Option<u64>>,
) -> Tally {
    let mut tally = Tally::new();
    let mut seen = Seen::default();
    let mut deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        if let Some(last) = *last.borrow_and_update() {
            if tally.received >= last.saturating_sub(start) {
                tally.lost = 0;
                return tally;
            }
            tally.lost = last.saturating_sub(start) - tally.received;
        }
        tokio::select! {
            frame = timeout_at(deadline, subscriber.next_frame()) => {
                let Ok(Ok(Some(frame))) = frame else { return tally };
                tally.take(&mut seen, &frame, 0);
            }
            changed = last.changed() => {
                if changed.is_err() {
                    return tally;
                }
                deadline = Instant::now() + Duration::from_secs(30);
            }
        }
    }
}

/// Whether `future` is ready now (polled once, without waiting).
fn is_ready<F: std::future::Future>(future: &mut std::pin::Pin<&mut F>) -> bool {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    future.as_mut().poll(&mut context).is_ready()
}

/// Durable publishing: `publishers` tasks, each keeping `in-flight`
/// requests going, over `channels` channels for `seconds`.
pub(crate) async fn publish(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let publishers = options.number("publishers", 8)?.max(1);
    let in_flight = options.number("in-flight", 32)?.max(1);
    let channels = options.number("channels", 1000)?.max(1);
    let seconds = options.number("seconds", 10)?.max(1);
    let base = options.text("publish-base", &target.publish_base);
    let key = options.maybe("publish-key");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let latency = Arc::new(std::sync::Mutex::new(histogram()));
    let mut workers = Vec::new();
    for publisher in 0..publishers {
        for lane in 0..in_flight {
            let (sent, failed, latency) =
                (Arc::clone(&sent), Arc::clone(&failed), Arc::clone(&latency));
            let publishers: Vec<Publisher> = (0..channels.min(64))
                .map(|n| {
                    Publisher::new(
                        format!(
                            "{base}/bench-{}",
                            (publisher * in_flight + lane + n * 97) % channels
                        ),
                        key.clone(),
                    )
                })
                .collect();
            workers.push(tokio::spawn(async move {
                let mut index = 0_u64;
                let mut local = histogram();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let publisher = &publishers[(index as usize) % publishers.len()];
                    match publisher.publish(index).await {
                        Ok(()) => {
                            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let _ = local.record(started.elapsed().as_micros().max(1) as u64);
                        }
                        Err(_) => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    index += 1;
                }
                if let Ok(mut total) = latency.lock() {
                    let _ = total.add(&local);
                }
            }));
        }
    }
    let started = Instant::now();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    let latency = latency.lock().map_err(|e| e.to_string())?.clone();
    Ok(serde_json::json!({
        "scenario": "publish",
        "publishers": publishers,
        "in_flight": in_flight,
        "channels": channels,
        "seconds": elapsed,
        "events": sent,
        "failed": failed.load(std::sync::atomic::Ordering::Relaxed),
        "events_per_sec": (sent as f64 / elapsed).round(),
        "publish_latency": latency_json(&latency),
    })
    .to_string())
}

/// Replay: `events` stored on a fresh channel, then `runs` clients in turn
/// resume from its start; the time from connecting to the last event.
pub(crate) async fn replay(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let events = options.number("events", 1000)?.max(1);
    let runs = options.number("runs", 50)?.max(1);
    publish_burst(&target.publisher, events, 32).await?;
    let mut times = histogram();
    let mut lost = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let mut subscriber = Subscriber::connect(
            target.addr,
            &target.stream_path,
            Some(&format!("{}:0", target.channel)),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut received = 0;
        while received < events {
            match timeout_at(started + Duration::from_secs(30), subscriber.next_frame()).await {
                Ok(Ok(Some(frame))) if frame.kind == Kind::Message => received += 1,
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
        lost += events - received;
        let _ = times.record(started.elapsed().as_micros().max(1) as u64);
    }
    Ok(serde_json::json!({
        "scenario": "replay",
        "missed_events": events,
        "runs": runs,
        "lost": lost,
        "replay": latency_json(&times),
    })
    .to_string())
}

/// Reconnect storm: `clients` reconnect at once with a `Last-Event-ID`
/// `missed` events back; the time until every one has caught up.
pub(crate) async fn storm(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let clients = options.number("clients", 10_000)?.min(MAX_SUBSCRIBERS);
    let missed = options.number("missed", 10)?.max(1);
    publish_burst(&target.publisher, missed, 16).await?;
    // Where the channel is now: a fresh stream's stream-open carries it.
    let mut probe = Subscriber::connect(target.addr, &target.stream_path, None)
        .await
        .map_err(|e| e.to_string())?;
    let current = probe
        .next_frame()
        .await
        .map_err(|e| e.to_string())?
        .and_then(|frame| frame.seq)
        .unwrap_or(missed);
    drop(probe);
    let resume = format!("{}:{}", target.channel, current - missed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let permits = Arc::new(Semaphore::new(1024));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, path, resume, permits) = (
                target.addr,
                target.stream_path.clone(),
                resume.clone(),
                Arc::clone(&permits),
            );
            tokio::spawn(async move {
                // Bounds simultaneous connect()s (the accept backlog), not
                // connections: each permit is released once connected.
                let permit = permits.acquire_owned().await.ok()?;
                let mut subscriber = Subscriber::connect(addr, &path, Some(&resume)).await.ok()?;
                drop(permit);
                let mut received = 0;
                while received < missed {
                    match timeout_at(deadline, subscriber.next_frame()).await {
                        Ok(Ok(Some(frame))) if frame.kind == Kind::Message => received += 1,
                        Ok(Ok(Some(_))) => {}
                        _ => break,
                    }
                }
                Some((received, Instant::now()))
            })
        })
        .collect();
    let mut resumed = 0;
    let mut lost = 0;
    let mut failed = 0;
    let mut last = started;
    for task in tasks {
        match task.await.map_err(|e| e.to_string())? {
            Some((received, at)) => {
                resumed += u64::from(received == missed);
                lost += missed - received;
                last = last.max(at);
            }
            None => failed += 1,
        }
    }
    Ok(serde_json::json!({
        "scenario": "storm",
        "clients": clients,
        "missed_events": missed,
        "resumed": resumed,
        "failed_connections": failed,
        "lost": lost,
        "all_resumed_seconds": (last - started).as_secs_f64(),
    })
    .to_string())
}

fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("server pid {pid}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

/// Kernel slab memory (socket structures live there), in KiB, from
/// `/proc/meminfo`. Machine-wide: it includes the client's sockets too, so
/// the per-connection figure covers both ends of each connection.
fn kernel_slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("Slab:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Memory: `subscribers` idle streams; the server's RSS growth per stream.
pub(crate) async fn memory(options: &Options) -> Result<String, String> {
    let target = target(options)?;
    let subscribers = options.number("subscribers", 10_000)?;
    let pid =
        u32::try_from(options.number("server-pid", 0)?).map_err(|_| "--server-pid is too large")?;
    if pid == 0 {
        return Err("memory needs --server-pid".into());
    }
    let rss_before = vm_rss_kib(pid)?;
    let kernel_before = kernel_slab_kib();
    let streams = subscribe_all(&target, subscribers, 256).await?;
    // Let the server settle (allocations of the first writes) before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = vm_rss_kib(pid)?;
    let kernel_after = kernel_slab_kib();
    drop(streams);
    let per = |kib: u64| (kib as f64 * 1024.0 / subscribers.max(1) as f64).round();
    Ok(serde_json::json!({
        "scenario": "memory",
        "subscribers": subscribers,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_bytes_per_connection": per(rss_after.saturating_sub(rss_before)),
        "kernel_slab_bytes_per_connection_both_ends": per(kernel_after.saturating_sub(kernel_before)),
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_splits_where_the_server_answered() {
        const MS: u64 = 1_000_000;
        // Event 0: due at 0, answered at 10 ms, parsed at 12 ms. Event 1:
        // never answered. Event 2: due at 20 ms, answered at 30 ms, parsed
        // at 29 ms, before its answer arrived.
        let acks: Arc<[AtomicU64]> = [10 * MS, 0, 30 * MS]
            .into_iter()
            .map(AtomicU64::new)
            .collect();
        let arrivals = vec![(0, 12 * MS), (1, 15 * MS), (2, 29 * MS)];
        let split = split_at_the_answer(&acks, arrivals, |index| index * 10 * MS, 0);
        let ms = |part: &str, key: &str| split[part][key].as_f64().expect("a figure");
        assert!(
            (ms("due_to_answered", "p50_ms") - 10.0).abs() < 0.1,
            "{split}"
        );
        assert!(
            (ms("due_to_answered", "max_ms") - 10.0).abs() < 0.1,
            "{split}"
        );
        assert!(
            (ms("answered_to_parsed", "max_ms") - 2.0).abs() < 0.01,
            "{split}"
        );
        assert!(ms("answered_to_parsed", "p50_ms") < 0.01, "{split}");
        assert_eq!(split["parsed_before_answered"], 1);
        // Events before the measured ones are left out.
        let none = split_at_the_answer(&acks, Vec::new(), |index| index * 10 * MS, 3);
        assert_eq!(none["due_to_answered"]["max_ms"], 0.0, "{none}");
    }

    #[test]
    fn arrivals_are_told_apart() {
        let mut seen = Seen::default();
        assert_eq!(seen.record(1), Arrival::InOrder);
        assert_eq!(seen.record(3), Arrival::InOrder);
        assert_eq!(seen.record(2), Arrival::Late);
        assert_eq!(seen.record(3), Arrival::Repeated);
        assert_eq!(seen.record(2), Arrival::Repeated);
        assert_eq!(seen.record(200), Arrival::InOrder);
    }
}
