//! Publishing to GRIP proxies: every sent event becomes an item on
//! `events-<channel>` at every proxy.
//!
//! ```text
//! {"items":[{"channel":"events-room","id":"7","prev-id":"6",
//!            "formats":{"http-stream":{"content":"id: %I\nevent: message\ndata: {..}\n\n",
//!                                      "content-filters":["build-id"]}},
//!            "meta":{"skip_users":"u-ann"}}]}
//! ```
//!
//! The proxy renders `%I` with each subscriber's own id vector (`build-id`),
//! so one publish serves single- and multi-channel streams alike; `id` and
//! `prev-id` let it notice a missing item and recover it from the app.
//!
//! Each proxy has one ordered queue and one task: a batch is retried with
//! backoff until it succeeds or is given up, and nothing queued behind it is
//! sent first. Sending never waits for a proxy. The queue is bounded in
//! items and in bytes ([`QUEUE_BYTES`], what its items and the batch being
//! sent weigh), so a proxy that is down or slow costs the app a bounded
//! amount of memory, whatever the traffic. What could not be delivered
//! (given up, or not queued because the queue was full) is followed by a
//! `hint` on its channels, which makes the proxy fetch the missed events
//! from the app: a stream behind a proxy that was down reads what it
//! missed from storage, never loses it. At start the task asks the proxy
//! to make every client recover, so an event committed just before a
//! crash still reaches everyone. When a channel goes quiet after a burst,
//! the task hints it too ([`super::tail`]): the proxy may have dropped the
//! burst's last items for a slow stream, and nothing else would tell it.

mod item;
mod proxy;
mod task;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::item::ID_PLACEHOLDER;
use self::proxy::Target;
use self::task::{PublishRecord, Queued, Shared, run};
use super::pending::Pending;
use super::{escape_percent, events_channel, presence_channel, user_key};
use crate::config::GripProxyConfig;
use crate::delivery::fanout::{Kick, LiveEvent, Outlet};
use crate::measure::metrics::Metrics;
use crate::measure::proxies::{ProxyProbe, ProxyState};
use crate::presence::ProxiedPresence;
use crate::wire::frame::{self, Frame, IdLine};

/// Items waiting per proxy before new ones are replaced by a hint.
const QUEUE_DEPTH: usize = 64 * 1024;
/// Bytes of items waiting per proxy (queued, or in the batch being sent)
/// before new ones are replaced by a hint.
pub(crate) const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// One proxy's queue, and the channels that need a hint because an item
/// could not even be queued.
#[derive(Debug, Clone)]
struct Lane {
    queue: mpsc::Sender<Queued>,
    overflowed: Arc<Mutex<BTreeSet<String>>>,
    pending: Arc<Pending>,
    /// The proxy, for the health check, and its last publish failure.
    label: String,
    last_error: Arc<Mutex<Option<String>>>,
    /// What the queued items and the batch being sent weigh.
    bytes: Arc<AtomicUsize>,
    /// The last success and the items given up.
    record: Arc<PublishRecord>,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct GripPublisher {
    lanes: Vec<Lane>,
}

impl GripPublisher {
    /// Starts one task per proxy.
    pub(crate) fn spawn(proxies: &[GripProxyConfig], metrics: Arc<Metrics>) -> GripPublisher {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let lanes = proxies
            .iter()
            .map(|proxy| {
                let (queue, items) = mpsc::channel(QUEUE_DEPTH);
                let overflowed = Arc::new(Mutex::new(BTreeSet::new()));
                let pending = Arc::new(Pending::default());
                let target = Target::new(proxy, client.clone());
                let label = target.label.clone();
                let last_error = Arc::new(Mutex::new(None));
                let bytes = Arc::new(AtomicUsize::new(0));
                let record = Arc::new(PublishRecord::default());
                tokio::spawn(run(
                    target,
                    items,
                    Shared {
                        overflowed: Arc::clone(&overflowed),
                        pending: Arc::clone(&pending),
                        last_error: Arc::clone(&last_error),
                        bytes: Arc::clone(&bytes),
                        record: Arc::clone(&record),
                        metrics: Arc::clone(&metrics),
                    },
                ));
                Lane {
                    queue,
                    overflowed,
                    pending,
                    label,
                    last_error,
                    bytes,
                    record,
                }
            })
            .collect();
        GripPublisher { lanes }
    }

    /// What each proxy has in flight, in the order of the proxies.
    pub(crate) fn pending(&self) -> Vec<Arc<Pending>> {
        self.lanes
            .iter()
            .map(|lane| Arc::clone(&lane.pending))
            .collect()
    }

    /// How publishing to each proxy is going (the health check and the
    /// delivery trace show it). `queued_bytes` is at most [`QUEUE_BYTES`];
    /// `last_error` is the status the proxy answered, or that it did not
    /// answer, never what it said (that goes to the log).
    pub(crate) fn status(&self) -> Vec<ProxyState> {
        let now = crate::storage::now_ms();
        self.lanes
            .iter()
            .map(|lane| {
                let success = lane.record.last_success_ms.load(Ordering::Relaxed);
                ProxyState {
                    proxy: lane.label.clone(),
                    queued: lane.queue.max_capacity() - lane.queue.capacity(),
                    queued_bytes: lane.bytes.load(Ordering::Acquire),
                    given_up: lane.record.given_up.load(Ordering::Relaxed),
                    last_success_age_ms: (success > 0).then(|| (now - success).max(0) as u64),
                    last_error: lane
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                }
            })
            .collect()
    }

    /// Queues `item` (about `weight` bytes) for every proxy; `event` is
    /// the eventstream channel and id it carries, if it is a stored event.
    fn enqueue(&self, channel: &str, event: Option<(&str, u64)>, item: &Value, weight: usize) {
        for lane in &self.lanes {
            let queued = Queued {
                channel: channel.to_owned(),
                event: event.map(|(name, seq)| (name.to_owned(), seq)),
                item: item.clone(),
                weight,
            };
            // Marked before it can be sent (and settled).
            if let Some((name, seq)) = event {
                lane.pending.queued(name, seq);
            }
            let held = lane.bytes.fetch_add(weight, Ordering::AcqRel);
            let refused = held + weight > QUEUE_BYTES || lane.queue.try_send(queued).is_err();
            if refused {
                lane.bytes.fetch_sub(weight, Ordering::AcqRel);
                if let Some((name, seq)) = event {
                    lane.pending.settled(name, seq);
                }
                lane.overflowed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(channel.to_owned());
            }
        }
    }

    /// Publishes an event on `events-<channel>`.
    fn publish(&self, event: &LiveEvent) {
        let grip_channel = events_channel(&event.channel);
        let body = &event.frame.body;
        let mut item = match event.seq {
            Some(seq) => {
                // `%` in the event is literal; only the id line is a template.
                let escaped = Frame::for_event(Bytes::from(escape_percent(body)), None);
                let mut content = BytesMut::new();
                escaped.write(&mut content, IdLine::Literal(ID_PLACEHOLDER));
                json!({
                    "channel": grip_channel,
                    "id": seq.to_string(),
                    "prev-id": (seq - 1).to_string(),
                    "formats": {"http-stream": {
                        "content": String::from_utf8_lossy(&content),
                        "content-filters": ["build-id"],
                    }},
                })
            }
            None => json!({
                "channel": grip_channel,
                "formats": {"http-stream": {
                    "content": String::from_utf8_lossy(body),
                    "content-filters": [],
                }},
            }),
        };
        if !event.skip_users.is_empty() {
            let skipped: Vec<String> = event
                .skip_users
                .iter()
                .map(|user| user_key(Some(user)))
                .collect();
            item["meta"] = json!({ "skip_users": skipped.join(",") });
        }
        let event_id = event.seq.map(|seq| (event.channel.as_str(), seq));
        // The content, the channel twice, ids and the JSON around them.
        let weight = body.len() + 2 * grip_channel.len() + 256;
        self.enqueue(&grip_channel, event_id, &item, weight);
        if event.seq.is_some() {
            self.withheld(event, &grip_channel);
        }
    }

    /// For each user a stored event is withheld from: a `keep-alive`
    /// carrying the stream's id vector, on the user's own channel, for its
    /// streams of the event's channel. The proxy moved their vector past
    /// the withheld event without showing it; this frame shows that move
    /// on its own, so that no frame moves two entries (PROTOCOL.md §4.3).
    fn withheld(&self, event: &LiveEvent, grip_channel: &str) {
        if event.skip_users.is_empty() {
            return;
        }
        let mut content = BytesMut::new();
        Frame::for_event(Bytes::from_static(frame::KEEP_ALIVE), None)
            .write(&mut content, IdLine::Literal(ID_PLACEHOLDER));
        let content = String::from_utf8_lossy(&content);
        for user in &event.skip_users {
            let user_channel = format!("user-{}", user_key(Some(user)));
            let item = json!({
                "channel": user_channel,
                "meta": { "require_sub": grip_channel },
                "formats": {"http-stream": {
                    "content": content,
                    "content-filters": ["build-id"],
                }},
            });
            self.enqueue(&user_channel, None, &item, 512);
        }
    }

    /// Ends the proxied streams of `user` on `channel`: a `stream-error`
    /// (forbidden) and a close, delivered only to connections subscribed to
    /// that channel. Item ids are unique, since proxies drop repeated ids.
    fn end_streams(&self, kick: &Kick) {
        let user_channel = format!("user-{}", user_key(kick.user_id.as_deref()));
        let unique = format!(
            "kick-{}-{}",
            jsonwebtoken::get_current_timestamp(),
            KICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let meta = json!({ "require_sub": events_channel(&kick.channel) });
        let error_frame = frame::stream_error(&kick.error);
        self.enqueue(
            &user_channel,
            None,
            &json!({
                "channel": user_channel,
                "id": format!("{unique}-error"),
                "meta": meta,
                // The user channel runs `build-id`: `%` is escaped.
                "formats": {"http-stream": {
                    "content": String::from_utf8_lossy(&escape_percent(&error_frame)),
                    "content-filters": ["build-id"],
                }},
            }),
            error_frame.len() + 512,
        );
        self.enqueue(
            &user_channel,
            None,
            &json!({
                "channel": user_channel,
                "id": format!("{unique}-close"),
                "meta": meta,
                "formats": {"http-stream": {"action": "close"}},
            }),
            512,
        );
    }
}

/// Kicks published so far: makes each kick's item ids unique.
static KICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Each proxy's publishing, for the delivery trace.
impl ProxyProbe for GripPublisher {
    fn proxy_states(&self) -> Vec<ProxyState> {
        self.status()
    }
}

/// The `stream-presence` events of proxied streams that asked for them,
/// on `presence-u-<channel>` and `presence-c-<channel>`: live only, no id,
/// no filter. One lost to a full queue is followed by a hint, like any
/// item, and the next one carries the counts anew.
impl ProxiedPresence for GripPublisher {
    fn presence(&self, channel: &str, counts: &Bytes, named: &Bytes) {
        for (frame, named) in [(counts, false), (named, true)] {
            let grip_channel = presence_channel(channel, named);
            let item = json!({
                "channel": grip_channel,
                "formats": {"http-stream": {
                    "content": String::from_utf8_lossy(frame),
                    "content-filters": [],
                }},
            });
            self.enqueue(&grip_channel, None, &item, frame.len() + 256);
        }
    }
}

/// Every event and kick also goes to the proxies.
impl Outlet for GripPublisher {
    fn event(&self, event: &Arc<LiveEvent>) {
        self.publish(event);
    }

    fn kick(&self, kick: &Kick) -> usize {
        self.end_streams(kick);
        // Proxied streams are ended by the proxy, not counted here.
        0
    }
}
