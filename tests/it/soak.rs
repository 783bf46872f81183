//! The soak: everything failing while events flow, then an exact account.
//!
//! Three app instances (child processes) share an event log on a private
//! PostgreSQL cluster and a bus (PostgreSQL, or a private Redis), or one
//! instance serves its clients through a private Pushpin (GRIP);
//! subscribers resume with `Last-Event-ID` on another instance than the one
//! they left, one subscriber stops reading for a while, publishers send
//! through every instance. Each minute (the short profile runs one, in
//! `.ci/run`; `EVENTSTREAM_SOAK_SECS=1800` runs the long one) these faults
//! are injected in turn:
//!
//! 1. an instance is killed with SIGKILL and started again;
//! 2. the instances' database connections are terminated;
//! 3. the bus is cut (PostgreSQL: the listeners terminated; Redis: the
//!    server down for a while under the publish load, then back empty;
//!    GRIP: Pushpin down for a while under the publish load, then back);
//! 4. PostgreSQL restarts (fast shutdown);
//! 5. another instance is killed and started again;
//! 6. PostgreSQL crashes (immediate stop) and comes back.
//!
//! Two instances run with `durability = "process"`, one with `"power"`.
//! At the end, per subscriber, the ids received are exactly the stored
//! ones, once, in order, except after an explicit `stream-reset` (counted,
//! and the stream must continue exactly from its position). Per send: a
//! 201 is stored exactly once under its id; a storage error is not stored;
//! an indeterminate answer or a cut connection is looked up and counted.
//! The instances' memory stays under [`MEMORY_BOUND_KIB`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::watch;

#[cfg(feature = "redis")]
use crate::helpers::RedisServer;
use crate::helpers::{
    Cluster, Instance, LINK_KEY, PUBLISH_KEY, PUSHPIN_SIG_KEY, Pushpin, Sse, closed_port,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_postgres => [soak_on_the_postgres_bus],
        needs_pushpin => [soak_through_pushpin],
        needs_redis => [
            soak_on_the_redis_bus,
        ],
    ]
}

/// The most resident memory one instance may reach, in KiB.
const MEMORY_BOUND_KIB: u64 = 128 * 1024;
const CHANNELS: [&str; 2] = ["soak-a", "soak-b"];
const SUBSCRIBERS: usize = 12;
const PUBLISHERS: usize = 3;

/// How long the soak runs: `EVENTSTREAM_SOAK_SECS`, 40 s by default.
fn duration() -> Duration {
    let secs = std::env::var("EVENTSTREAM_SOAK_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(40);
    Duration::from_secs(secs)
}

/// How the instances reach each other's clients.
enum Bus {
    /// Three instances, `broadcast = "postgres"`.
    Postgres,
    /// Three instances, `broadcast = "redis"` on a private Redis.
    #[cfg(feature = "redis")]
    Redis(RedisServer),
    /// One instance behind a private Pushpin on `port` (GRIP): clients
    /// connect to Pushpin, publishers to the instance.
    Grip { pushpin: Pushpin, port: u16 },
}

impl Bus {
    fn instances(&self) -> usize {
        match self {
            Bus::Grip { .. } => 1,
            _ => 3,
        }
    }
}

async fn soak_on_the_postgres_bus() {
    soak(Bus::Postgres).await;
}

#[cfg(feature = "redis")]
async fn soak_on_the_redis_bus() {
    soak(Bus::Redis(RedisServer::start().await)).await;
}

async fn soak_through_pushpin() {
    let port = closed_port();
    soak(Bus::Grip {
        pushpin: Pushpin::reserve(),
        port,
    })
    .await;
}

/// The instances, by slot, and what each one's settings are.
struct Fleet {
    url: String,
    bus: Bus,
    instances: Vec<Option<Instance>>,
    /// Where subscribers connect, by slot (Pushpin for every slot with GRIP).
    streams: Arc<Mutex<Vec<String>>>,
    /// Where publishers send, by slot.
    publish: Arc<Mutex<Vec<String>>>,
    peak_kib: u64,
}

impl Fleet {
    fn settings(&self, slot: usize) -> Vec<(&'static str, Value)> {
        let durability = if slot == 2 { "power" } else { "process" };
        let mut settings = vec![
            ("eventstream.broadcast_poll_secs", Value::from(1)),
            ("eventstream.durability", durability.into()),
            // A stalled client falls back to storage early.
            ("eventstream.max_queued_bytes", Value::from(64 * 1024)),
        ];
        match &self.bus {
            Bus::Postgres => settings.push(("eventstream.broadcast", "postgres".into())),
            #[cfg(feature = "redis")]
            Bus::Redis(server) => {
                settings.push(("eventstream.broadcast", "redis".into()));
                settings.push(("eventstream.redis_url", server.url().into()));
            }
            Bus::Grip { pushpin, port } => {
                // The port Pushpin routes to, the same after a restart.
                settings.push(("port", Value::from(*port)));
                settings.push((
                    "eventstream.grip_proxies",
                    json!([{
                        "control_uri": pushpin.control,
                        "verify_iss": "pushpin",
                        "verify_key": PUSHPIN_SIG_KEY,
                    }]),
                ));
                settings.push(("eventstream.link_key", LINK_KEY.into()));
            }
        }
        settings
    }

    async fn start(&mut self, slot: usize) {
        let instance = Instance::start(&self.url, &self.settings(slot)).await;
        let streams = match &mut self.bus {
            Bus::Grip { pushpin, port } => {
                if pushpin.origin_port().is_none() {
                    pushpin.start(*port);
                }
                pushpin.http.clone()
            }
            _ => instance.url.clone(),
        };
        let count = self.bus.instances();
        for index in (0..3).filter(|index| index % count == slot) {
            self.streams.lock().expect("slots")[index] = streams.clone();
            self.publish.lock().expect("slots")[index] = instance.url.clone();
        }
        self.instances[slot] = Some(instance);
    }

    async fn kill_and_restart(&mut self, slot: usize) {
        if let Some(instance) = self.instances[slot].take() {
            instance.kill().await;
        }
        self.start(slot).await;
    }

    /// Records the instances' resident memory.
    fn measure(&mut self) {
        fleet_memory(&self.instances, &mut self.peak_kib);
    }
}

/// Raises `peak_kib` to the largest resident memory of `instances`.
fn fleet_memory(instances: &[Option<Instance>], peak_kib: &mut u64) {
    for instance in instances.iter().flatten() {
        if let Some(kib) = instance.pid().and_then(crate::helpers::rss_kib) {
            *peak_kib = (*peak_kib).max(kib);
        }
    }
}

async fn admin(cluster: &Cluster) -> sqlx::PgPool {
    sqlx::PgPool::connect(&cluster.url("postgres"))
        .await
        .expect("the private cluster answers")
}

/// Ends every connection to the event log; `listeners`: the bus
/// listeners only, else everything but them.
async fn terminate(cluster: &Cluster, listeners: bool) -> usize {
    let admin = admin(cluster).await;
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = 'events' AND pid <> pg_backend_pid() \
         AND (application_name = 'eventstream bus') = $1",
    )
    .bind(listeners)
    .fetch_all(&admin)
    .await
    .expect("terminate connections");
    admin.close().await;
    ended.into_iter().filter(|ended| *ended).count()
}

/// What a publisher learned of each send, by tag.
#[derive(Default)]
struct Sends {
    /// 201: the id the event got.
    stored: BTreeMap<String, (String, u64)>,
    /// 500 with `internal-error`: nothing stored.
    refused: BTreeSet<String>,
    /// 500 with `indeterminate`, or no answer (the connection was cut).
    unknown: BTreeSet<String>,
}

async fn publish(
    index: usize,
    slots: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Sends {
    let http = reqwest::Client::new();
    let mut sends = Sends::default();
    let mut slot = index;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        pace.tick().await;
        let channel = CHANNELS[n % CHANNELS.len()];
        let tag = format!("p{index}-{n}");
        let url = slots.lock().expect("slots")[slot].clone();
        let answer = http
            .post(format!("{url}/events/{channel}"))
            .bearer_auth(PUBLISH_KEY)
            .json(&json!({ "type": "message", "data": { "tag": tag } }))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(error) if error.is_connect() => {
                // Nothing was sent: try the next instance with the same
                // event under a new tag.
                slot = (slot + 1) % 3;
                continue;
            }
            Err(_) => {
                sends.unknown.insert(tag);
                slot = (slot + 1) % 3;
                continue;
            }
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match (status, body["error"].as_str()) {
            (201, _) => {
                let id = body["id"].as_str().expect("an id").to_owned();
                let (channel, seq) = id.rsplit_once(':').expect("channel:seq");
                let seq = seq.parse().expect("a number");
                sends.stored.insert(tag, (channel.to_owned(), seq));
                sent.fetch_add(1, Ordering::SeqCst);
            }
            (_, Some("indeterminate")) => {
                sends.unknown.insert(tag);
            }
            (500, Some("internal-error")) => {
                sends.refused.insert(tag);
                slot = (slot + 1) % 3;
            }
            (status, _) => {
                // A dying instance may answer anything but a lie: the
                // outcome is unknown and is looked up at the end.
                sends.unknown.insert(tag);
                assert!(status >= 500, "unexpected answer {status}: {body}");
                slot = (slot + 1) % 3;
            }
        }
    }
    sends
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Received {
    channel: String,
    /// (id, tag) of every event, in order.
    events: Vec<(u64, String)>,
    /// Positions announced by `stream-reset`, and where the stream was.
    resets: Vec<(u64, u64)>,
    /// Ids that were not the next one (without a reset before them).
    out_of_line: Vec<(u64, u64)>,
}

async fn subscribe(
    index: usize,
    slots: Arc<Mutex<Vec<String>>>,
    mut target: watch::Receiver<Option<BTreeMap<String, u64>>>,
    mut stall: Option<Arc<tokio::sync::Notify>>,
) -> Received {
    let channel = CHANNELS[index % CHANNELS.len()];
    let mut received = Received {
        channel: channel.to_owned(),
        ..Received::default()
    };
    let http = reqwest::Client::new();
    let mut slot = index;
    let mut leave_after = 5 + index as u64 * 3;
    let mut last = 0_u64;
    let done = |last: u64, target: &Option<BTreeMap<String, u64>>| {
        target
            .as_ref()
            .is_some_and(|ends| ends.get(channel).copied().unwrap_or(0) <= last)
    };
    loop {
        if done(last, &target.borrow()) {
            return received;
        }
        slot = (slot + 1) % 3;
        let url = slots.lock().expect("slots")[slot].clone();
        let request = http
            .get(format!("{url}/events/{channel}"))
            .header("Last-Event-ID", format!("{channel}:{last}"))
            .send();
        let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(5), request).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = Sse::from_response(response);
        let mut read = 0;
        if let Some(stall) = stall.take() {
            // Once: stop reading while the socket fills, until told to go
            // on.
            stall.notified().await;
        }
        loop {
            let frame = tokio::select! {
                frame = stream.try_next_within(Duration::from_secs(120)) => frame,
                _ = target.changed() => {
                    if done(last, &target.borrow()) {
                        return received;
                    }
                    continue;
                }
            };
            let Some(Some(frame)) = frame else {
                break;
            };
            if frame.comment {
                continue;
            }
            let id_seq = || {
                frame
                    .id
                    .as_deref()
                    .and_then(|id| id.rsplit_once(':'))
                    .and_then(|(_, seq)| seq.parse::<u64>().ok())
            };
            match frame.event() {
                "message" => {
                    let seq = id_seq().expect("an event id");
                    if seq != last + 1 {
                        received.out_of_line.push((last, seq));
                    }
                    let tag = frame.json()["tag"].as_str().unwrap_or_default().to_owned();
                    received.events.push((seq, tag));
                    last = seq;
                    read += 1;
                    if done(last, &target.borrow()) {
                        return received;
                    }
                    if read >= leave_after {
                        leave_after = 5 + (leave_after * 7) % 23;
                        break;
                    }
                }
                "stream-reset" => {
                    let position = id_seq().unwrap_or(last);
                    received.resets.push((last, position));
                    last = position;
                }
                "stream-error" => panic!("subscriber {index} was told {}", frame.data),
                _ => {}
            }
        }
        if read == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn soak(bus: Bus) {
    let run_for = duration();
    let cluster = Cluster::create("es_soak", &[]);
    cluster.create_database("events").await;
    let count = bus.instances();
    let mut fleet = Fleet {
        url: cluster.url("events"),
        bus,
        instances: (0..count).map(|_| None).collect(),
        streams: Arc::new(Mutex::new(vec![String::new(); 3])),
        publish: Arc::new(Mutex::new(vec![String::new(); 3])),
        peak_kib: 0,
    };
    for slot in 0..count {
        fleet.start(slot).await;
    }
    let (set_target, target) = watch::channel(None);
    let stall = Arc::new(tokio::sync::Notify::new());
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|index| {
            let stall = (index == 0).then(|| Arc::clone(&stall));
            tokio::spawn(subscribe(
                index,
                Arc::clone(&fleet.streams),
                target.clone(),
                stall,
            ))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|index| {
            tokio::spawn(publish(
                index,
                Arc::clone(&fleet.publish),
                Arc::clone(&stop),
                Arc::clone(&sent),
            ))
        })
        .collect();

    let minutes = (run_for.as_secs() / 60).max(1);
    let step = run_for / (7 * minutes as u32);
    let mut faults = Vec::new();
    for minute in 0..minutes {
        for fault in 1..=6 {
            tokio::time::sleep(step).await;
            fleet.measure();
            match fault {
                1 => fleet.kill_and_restart((minute as usize) % count).await,
                2 => {
                    let ended = terminate(&cluster, false).await;
                    faults.push(format!("{ended} database connections terminated"));
                    continue;
                }
                3 => match &mut fleet.bus {
                    Bus::Postgres => {
                        let ended = terminate(&cluster, true).await;
                        assert!(ended > 0, "bus listeners were found");
                    }
                    // An outage as long as half the pause between faults,
                    // while the publishers go on; memory is measured at
                    // its end.
                    #[cfg(feature = "redis")]
                    Bus::Redis(server) => {
                        server.stop().await;
                        tokio::time::sleep(step / 2).await;
                        fleet_memory(&fleet.instances, &mut fleet.peak_kib);
                        server.start_again().await;
                    }
                    Bus::Grip { pushpin, port } => {
                        tokio::task::block_in_place(|| pushpin.stop());
                        tokio::time::sleep(step / 2).await;
                        fleet_memory(&fleet.instances, &mut fleet.peak_kib);
                        // Blocking: the harness waits until Pushpin holds
                        // streams again.
                        tokio::task::block_in_place(|| pushpin.start(*port));
                    }
                },
                4 => {
                    cluster.restart();
                    // The stalled subscriber reads again.
                    stall.notify_one();
                }
                5 => fleet.kill_and_restart((minute as usize + 1) % count).await,
                _ => {
                    cluster.crash();
                    cluster.start();
                }
            }
            faults.push(format!("fault {fault}"));
        }
    }
    tokio::time::sleep(step).await;
    fleet.measure();
    stop.store(true, Ordering::SeqCst);
    let mut sends = Sends::default();
    for publisher in publishers {
        let part = publisher.await.expect("publisher");
        sends.stored.extend(part.stored);
        sends.refused.extend(part.refused);
        sends.unknown.extend(part.unknown);
    }
    stall.notify_one();

    // The stored log: per channel, id -> tag.
    let storage = sqlx::PgPool::connect(&fleet.url)
        .await
        .expect("the event log");
    let rows = sqlx::query("SELECT channel, id, data FROM eventstream_events ORDER BY channel, id")
        .fetch_all(&storage)
        .await
        .expect("the stored events");
    storage.close().await;
    let mut log: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    for row in &rows {
        let data: Value = serde_json::from_str(row.get::<&str, _>("data")).expect("JSON");
        log.entry(row.get("channel")).or_default().insert(
            row.get::<i64, _>("id") as u64,
            data["tag"].as_str().unwrap_or_default().to_owned(),
        );
    }
    let mut where_stored: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (channel, events) in &log {
        let ids: Vec<u64> = events.keys().copied().collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "{channel}: gap-free ids"
        );
        for (seq, tag) in events {
            where_stored.entry(tag).or_default().push((channel, *seq));
        }
    }
    // Every acknowledged send is stored once, under its id.
    for (tag, (channel, seq)) in &sends.stored {
        assert_eq!(
            where_stored.get(tag.as_str()).map(Vec::as_slice),
            Some(&[(channel.as_str(), *seq)][..]),
            "acknowledged {tag} stored exactly once as {channel}:{seq}"
        );
    }
    for tag in &sends.refused {
        assert!(
            !where_stored.contains_key(tag.as_str()),
            "refused {tag} was stored"
        );
    }
    let unknown_stored = sends
        .unknown
        .iter()
        .filter(|tag| {
            where_stored
                .get(tag.as_str())
                .is_some_and(|places| places.len() == 1)
        })
        .count();
    for tag in &sends.unknown {
        let copies = where_stored.get(tag.as_str()).map_or(0, Vec::len);
        assert!(copies <= 1, "{tag} stored {copies} times");
    }

    let ends: BTreeMap<String, u64> = log
        .iter()
        .map(|(channel, events)| (channel.clone(), events.len() as u64))
        .collect();
    set_target
        .send(Some(ends.clone()))
        .expect("subscribers listen");
    let mut resets = 0;
    let mut delivered = 0;
    for (index, subscriber) in subscribers.into_iter().enumerate() {
        let received = tokio::time::timeout(Duration::from_secs(90), subscriber)
            .await
            .unwrap_or_else(|_| panic!("subscriber {index} did not catch up within 90 s"))
            .expect("subscriber");
        let events = &log[&received.channel];
        assert!(
            received.out_of_line.is_empty(),
            "subscriber {index}: ids out of line (at, got): {:?}",
            received.out_of_line
        );
        for (seq, tag) in &received.events {
            assert_eq!(
                events.get(seq),
                Some(tag),
                "subscriber {index}: {seq} carries {tag}"
            );
        }
        resets += received.resets.len();
        delivered += received.events.len();
    }
    fleet.measure();
    let report = json!({
        "seconds": run_for.as_secs(),
        "instances": count,
        "via": match &fleet.bus {
            Bus::Postgres => "postgres bus",
            #[cfg(feature = "redis")]
            Bus::Redis(_) => "redis bus",
            Bus::Grip { .. } => "pushpin",
        },
        "subscribers": SUBSCRIBERS,
        "publishers": PUBLISHERS,
        "faults": faults.len(),
        "stored": ends,
        "acknowledged": sends.stored.len(),
        "refused": sends.refused.len(),
        "unknown": sends.unknown.len(),
        "unknown_found_stored": unknown_stored,
        "delivered": delivered,
        "lost": 0,
        "duplicated": 0,
        "resets": resets,
        "peak_rss_kib": fleet.peak_kib,
    });
    eprintln!("soak: {report}");
    assert!(
        fleet.peak_kib <= MEMORY_BOUND_KIB,
        "an instance reached {} KiB (bound {MEMORY_BOUND_KIB})",
        fleet.peak_kib
    );
    assert!(sends.stored.len() as u64 >= sent.load(Ordering::SeqCst));
    drop(fleet);
}
