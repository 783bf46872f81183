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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::{GripProxyConfig, Secret, decode_key, redact_url};
use crate::fanout::{Kick, LiveEvent, Outlet};
use crate::frame::{self, Frame, IdLine};
use crate::metrics::Metrics;

use super::pending::Pending;
use super::tail::TailWatch;
use super::{events_channel, user_key};

/// The id line of a published event: the proxy's `build-id` filter
/// replaces it with each subscriber's own id vector.
const ID_PLACEHOLDER: &str = "%I";

/// Items waiting per proxy before new ones are replaced by a hint.
const QUEUE_DEPTH: usize = 64 * 1024;
/// Bytes of items waiting per proxy (queued, or in the batch being sent)
/// before new ones are replaced by a hint.
pub(crate) const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Items per publish request, at most.
const BATCH_ITEMS: usize = 512;
/// Pushpin refuses bodies over 1,000,000 bytes; stay below with room.
const BATCH_BYTES: usize = 900_000;
/// Attempts per batch before it is given up (and hinted).
const ATTEMPTS: u32 = 6;
/// Attempts at the start-up `/recover` (about a minute of backoff).
const STARTUP_RECOVER_ATTEMPTS: u32 = 16;
/// Lifetime of a publish JWT.
const PUBLISH_TOKEN_SECS: u64 = 600;

/// An item, the channel it goes to (for hints) and the event's id on its
/// eventstream channel (to settle it in [`Pending`]).
#[derive(Debug)]
struct Queued {
    channel: String,
    event: Option<(String, u64)>,
    item: Value,
    /// What it counts against [`QUEUE_BYTES`].
    weight: usize,
}

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
}

/// How publishing to one proxy is going, for the health check.
#[derive(Debug, Clone)]
pub(crate) struct ProxyStatus {
    /// The control URI, without credentials.
    pub(crate) proxy: String,
    /// Items waiting to be published.
    pub(crate) queued: usize,
    /// What they weigh, with the batch being sent (at most
    /// [`QUEUE_BYTES`]).
    pub(crate) queued_bytes: usize,
    /// Why the last publish request failed, unless one succeeded since:
    /// the status the proxy answered, or that it did not answer (never
    /// what it said: that goes to the log).
    pub(crate) last_error: Option<String>,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    lanes: Vec<Lane>,
}

/// `%` is special to the proxy's `build-id` filter; `%%` is a literal `%`.
pub(crate) fn escape_percent(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for byte in bytes {
        out.push(*byte);
        if *byte == b'%' {
            out.push(b'%');
        }
    }
    out
}

impl Publisher {
    /// Starts one task per proxy.
    pub(crate) fn spawn(proxies: &[GripProxyConfig], metrics: Arc<Metrics>) -> Publisher {
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
                tokio::spawn(run(
                    target,
                    items,
                    Shared {
                        overflowed: Arc::clone(&overflowed),
                        pending: Arc::clone(&pending),
                        last_error: Arc::clone(&last_error),
                        bytes: Arc::clone(&bytes),
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
                }
            })
            .collect();
        Publisher { lanes }
    }

    /// What each proxy has in flight, in the order of the proxies.
    pub(crate) fn pending(&self) -> Vec<Arc<Pending>> {
        self.lanes
            .iter()
            .map(|lane| Arc::clone(&lane.pending))
            .collect()
    }

    /// How publishing to each proxy is going.
    pub(crate) fn status(&self) -> Vec<ProxyStatus> {
        self.lanes
            .iter()
            .map(|lane| ProxyStatus {
                proxy: lane.label.clone(),
                queued: lane.queue.max_capacity() - lane.queue.capacity(),
                queued_bytes: lane.bytes.load(Ordering::Acquire),
                last_error: lane
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
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

/// Every event and kick also goes to the proxies.
impl Outlet for Publisher {
    fn event(&self, event: &Arc<LiveEvent>) {
        self.publish(event);
    }

    fn kick(&self, kick: &Kick) -> usize {
        self.end_streams(kick);
        // Proxied streams are ended by the proxy, not counted here.
        0
    }
}

static KICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why a request to a proxy failed.
#[derive(Debug)]
enum PublishError {
    /// The proxy answered with this status.
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    /// No answer: connection refused, timeout, TLS.
    Transport(reqwest::Error),
}

impl PublishError {
    /// What the health check shows: the status, or which way no answer
    /// came; never the proxy's body or the URL.
    fn summary(&self) -> String {
        match self {
            PublishError::Status { status, .. } => format!("the proxy answered {status}"),
            PublishError::Transport(error) if error.is_connect() => {
                "no connection to the proxy".into()
            }
            PublishError::Transport(error) if error.is_timeout() => {
                "no answer from the proxy in time".into()
            }
            PublishError::Transport(_) => "the request to the proxy failed".into(),
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Status { status, body } => write!(f, "{status}: {body}"),
            PublishError::Transport(error) => write!(f, "{error}"),
        }
    }
}

/// Where and how to publish to one proxy.
struct Target {
    publish_url: String,
    recover_url: String,
    /// The control URI for log lines: without credentials or query.
    label: String,
    auth: Auth,
    client: reqwest::Client,
}

enum Auth {
    None,
    Bearer(Secret),
    Jwt { iss: String, key: Vec<u8> },
}

impl Target {
    fn new(proxy: &GripProxyConfig, client: reqwest::Client) -> Target {
        let auth = match (&proxy.control_iss, &proxy.key) {
            (Some(iss), Some(key)) => match decode_key(key.expose()) {
                Ok(key) => Auth::Jwt {
                    iss: iss.clone(),
                    key,
                },
                Err(_) => Auth::None,
            },
            (None, Some(key)) => Auth::Bearer(key.clone()),
            _ => Auth::None,
        };
        Target {
            publish_url: format!("{}/publish/", proxy.control_uri),
            recover_url: format!("{}/recover", proxy.control_uri),
            label: redact_url(&proxy.control_uri),
            auth,
            client,
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Jwt { iss, key } => {
                let claims = json!({ "iss": iss, "exp": jsonwebtoken::get_current_timestamp() + PUBLISH_TOKEN_SECS });
                match jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims,
                    &EncodingKey::from_secret(key),
                ) {
                    Ok(token) => request.bearer_auth(token),
                    Err(e) => {
                        log::error!("eventstream: cannot sign a publish token: {e}");
                        request
                    }
                }
            }
        }
    }

    /// `POST /recover`: every held stream re-fetches its next link.
    async fn recover(&self) -> Result<(), PublishError> {
        match self.post(&self.recover_url, String::new()).await {
            // Proxies without `/recover` (Fastly) have nothing to do.
            Err(PublishError::Status { status, .. })
                if status == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn post(&self, url: &str, body: String) -> Result<(), PublishError> {
        let request = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            // Pushpin answers 411 to a bodiless POST without it.
            .header("Content-Length", body.len().to_string())
            .body(body);
        let response = self
            .authorize(request)
            .send()
            .await
            // reqwest's errors name the URL, which may carry credentials.
            .map_err(|e| PublishError::Transport(e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = response.text().await.unwrap_or_default().trim().to_owned();
            Err(PublishError::Status { status, body })
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(6))
}

/// Splits items into request bodies under the proxy's size limit.
fn bodies(items: &[Value]) -> Vec<(String, Vec<usize>)> {
    let mut bodies = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut indexes = Vec::new();
    let mut size = 0;
    for (index, item) in items.iter().enumerate() {
        let text = item.to_string();
        if !current.is_empty() && size + text.len() + 16 > BATCH_BYTES {
            bodies.push((
                format!("{{\"items\":[{}]}}", current.join(",")),
                std::mem::take(&mut indexes),
            ));
            current.clear();
            size = 0;
        }
        size += text.len() + 1;
        current.push(text);
        indexes.push(index);
    }
    if !current.is_empty() {
        bodies.push((format!("{{\"items\":[{}]}}", current.join(",")), indexes));
    }
    bodies
}

/// Waits until `due`, or forever if nothing is.
async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

fn hint(channel: &str) -> Value {
    json!({ "channel": channel, "formats": {"http-stream": {"action": "hint"}} })
}

/// What one proxy's task shares with the sending side.
struct Shared {
    /// Channels whose items could not be queued: hinted next.
    overflowed: Arc<Mutex<BTreeSet<String>>>,
    pending: Arc<Pending>,
    last_error: Arc<Mutex<Option<String>>>,
    /// What the queue and the batch weigh; a batch gives its share back
    /// once it is published or given up.
    bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

async fn run(target: Target, mut items: mpsc::Receiver<Queued>, shared: Shared) {
    let Shared {
        overflowed,
        pending,
        last_error,
        bytes,
        metrics,
    } = shared;
    // What the health check shows: the last failure, cleared by a success.
    let record_outcome = |why: Option<String>| {
        *last_error.lock().unwrap_or_else(PoisonError::into_inner) = why;
    };
    // Clients may have missed events committed before a crash (or while the
    // proxy was unreachable): make every one of them ask the app. Pushpin
    // has `/recover`; proxies without it answer 404, which is fine. At start
    // it is retried in the background, without holding items back; after a
    // batch is given up it is retried before the next batch.
    let target = Arc::new(target);
    let startup = Arc::clone(&target);
    tokio::spawn(async move {
        for attempt in 0..STARTUP_RECOVER_ATTEMPTS {
            match startup.recover().await {
                Ok(()) => return,
                Err(why) => {
                    log::warn!(
                        "eventstream: asking {} to recover failed ({why}); retrying",
                        startup.label
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    });
    let mut recover_pending = false;
    let mut hints: BTreeSet<String> = BTreeSet::new();
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH_ITEMS);
    let mut tail = TailWatch::default();
    loop {
        tokio::select! {
            received = items.recv_many(&mut batch, BATCH_ITEMS) => if received == 0 {
                return;
            },
            () = until(tail.next_due()) => {}
        }
        hints.extend(tail.take_due(Instant::now()));
        if recover_pending {
            match target.recover().await {
                Ok(()) => recover_pending = false,
                Err(why) => log::warn!(
                    "eventstream: asking {} to recover failed ({why}); will retry",
                    target.label
                ),
            }
        }
        hints.extend(std::mem::take(
            &mut *overflowed.lock().unwrap_or_else(PoisonError::into_inner),
        ));
        let mut channels: Vec<&str> = Vec::new();
        let mut events: Vec<Option<&(String, u64)>> = Vec::new();
        let mut payload: Vec<Value> = Vec::new();
        for channel in &hints {
            channels.push(channel);
            events.push(None);
            payload.push(hint(channel));
        }
        for queued in &batch {
            channels.push(&queued.channel);
            events.push(queued.event.as_ref());
            payload.push(queued.item.clone());
        }
        let mut given_up: BTreeSet<String> = BTreeSet::new();
        for (body, indexes) in bodies(&payload) {
            let mut attempt = 0;
            // Accepted or given up (and hinted), these events are settled.
            let settle = || {
                for (name, seq) in indexes.iter().filter_map(|index| events[*index]) {
                    pending.settled(name, *seq);
                }
            };
            loop {
                match target.post(&target.publish_url, body.clone()).await {
                    Ok(()) => {
                        metrics.grip_publish_request();
                        metrics.grip_published(indexes.len() as u64);
                        record_outcome(None);
                        settle();
                        break;
                    }
                    Err(why) if attempt + 1 < ATTEMPTS => {
                        record_outcome(Some(why.summary()));
                        metrics.grip_retry();
                        log::warn!(
                            "eventstream: publish to {} failed ({why}); retrying",
                            target.label
                        );
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(why) => {
                        record_outcome(Some(why.summary()));
                        metrics.grip_failed(indexes.len() as u64);
                        log::error!(
                            "eventstream: giving up on {} items for {} ({why}); their channels will be hinted",
                            indexes.len(),
                            target.label
                        );
                        given_up.extend(indexes.iter().map(|index| channels[*index].to_owned()));
                        settle();
                        // Whatever else it missed, the proxy recovers once back.
                        recover_pending = true;
                        break;
                    }
                }
            }
        }
        // Hints that went out are done; anything given up is hinted next time.
        hints = given_up;
        let now = Instant::now();
        for queued in batch.iter().filter(|queued| queued.event.is_some()) {
            tail.published(&queued.channel, 1, now);
        }
        let weight: usize = batch.iter().map(|queued| queued.weight).sum();
        bytes.fetch_sub(weight, Ordering::AcqRel);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_doubled_for_build_id() {
        assert_eq!(escape_percent(b"a%20b %I"), b"a%%20b %%I");
    }

    #[test]
    fn bodies_stay_under_the_proxy_limit() {
        let big = "x".repeat(300_000);
        let items: Vec<Value> = (0..5)
            .map(|n| json!({ "channel": "c", "n": n, "pad": big }))
            .collect();
        let split = bodies(&items);
        assert!(split.len() >= 2);
        assert!(split.iter().all(|(body, _)| body.len() < 1_000_000));
        let indexes: Vec<usize> = split
            .iter()
            .flat_map(|(_, indexes)| indexes.clone())
            .collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4], "order is kept");
    }
}
