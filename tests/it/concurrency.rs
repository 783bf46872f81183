//! Many subscribers and publishers on one channel, with subscribers that
//! disconnect at random and resume: every subscriber must end with every
//! event exactly once, in id order.

use std::time::Duration;

use libtest_mimic::Trial;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::helpers::{App, Setup, Sse, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        on_every_path => [every_subscriber_gets_every_event_once_in_order_despite_disconnects],
    ]
}

const PUBLISHERS: u64 = 4;
const EVENTS_PER_PUBLISHER: u64 = 150;
const SUBSCRIBERS: u64 = 12;

async fn every_subscriber_gets_every_event_once_in_order_despite_disconnects(backend: Setup) {
    let app = spawn_app(
        App::on(backend)
            .with("eventstream.queue_capacity", 8)
            .with("eventstream.replay_page", 40),
    )
    .await;
    let total = PUBLISHERS * EVENTS_PER_PUBLISHER;
    let base = app.base.clone();
    let mut subscribers = Vec::new();
    for subscriber in 0..SUBSCRIBERS {
        let base = base.clone();
        subscribers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(subscriber);
            let http = reqwest::Client::new();
            let mut seen: Vec<u64> = Vec::new();
            let mut reconnects = 0;
            while seen.last().copied().unwrap_or(0) < total {
                let mut request = http.get(format!("{base}/events/busy"));
                if let Some(last) = seen.last() {
                    request = request.header("Last-Event-ID", format!("busy:{last}"));
                } else {
                    request = request.header("Last-Event-ID", "busy:0");
                }
                // Bounded, so a proxy that never answers is named as such.
                let response = tokio::time::timeout(Duration::from_secs(30), request.send())
                    .await
                    .unwrap_or_else(|_| panic!("no response head within 30 s ({backend:?})"))
                    .expect("connect");
                let mut stream = Sse::from_response(response);
                assert_eq!(stream.next().await.expect("open").event(), "stream-open");
                // Read a random number of events, then drop the connection.
                let budget = rng.gen_range(1..60);
                for _ in 0..budget {
                    let Some(frame) = stream.next_within(Duration::from_secs(20)).await else {
                        // A proxy may end a held stream cleanly (it gave up on
                        // a next-link fetch under load); clients resume from
                        // their last id as after any disconnect. A direct
                        // stream never ends on its own.
                        assert_eq!(backend, Setup::Pushpin, "a direct stream ended early");
                        break;
                    };
                    if frame.event() == "keep-alive" {
                        continue;
                    }
                    assert_eq!(frame.event(), "message", "{frame:?}");
                    let id = frame.id.expect("id");
                    let seq: u64 = id
                        .strip_prefix("busy:")
                        .expect("channel")
                        .parse()
                        .expect("number");
                    seen.push(seq);
                    if seq == total {
                        break;
                    }
                }
                reconnects += 1;
            }
            (seen, reconnects)
        }));
    }
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let events = app.events.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0..EVENTS_PER_PUBLISHER {
                events
                    .send_event("busy", "message", &(publisher, n))
                    .await
                    .expect("send");
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    for subscriber in subscribers {
        let (seen, reconnects) = tokio::time::timeout(Duration::from_secs(120), subscriber)
            .await
            .expect("subscriber finished")
            .expect("subscriber");
        assert_eq!(
            seen,
            (1..=total).collect::<Vec<u64>>(),
            "after {reconnects} connections"
        );
        assert!(reconnects > 1);
    }
    app.stop().await;
}
