//! The in-process hub: which live streams listen to which channel, and the
//! bounded inbox of each.
//!
//! Publishing an event is synchronous and never blocks on a slow client: the
//! hub appends one shared `Arc` to each subscriber's inbox and wakes it. An
//! inbox that is full (`queue_capacity` entries or `max_queued_bytes` of
//! frames) is not grown; the subscriber is marked as having
//! overflowed on that channel instead, and catches up from storage (or, for
//! channels without storage, is told with `stream-reset`). Memory per
//! subscriber therefore stays bounded and no event is ever dropped silently.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::access::presence_rule::PresenceView;
use crate::delivery::fanout::{Kick, LiveEvent, Outlet};
use crate::error::StreamError;
use crate::measure::kicks::KickRecord;
use crate::measure::metrics::Metrics;
use crate::storage::now_ms;
use crate::wire::channel_set::ChannelSet;

/// One queued event, tagged with the index of its channel in the
/// subscriber's channel list.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) channel: usize,
    pub(crate) event: Arc<LiveEvent>,
}

/// What a subscriber finds when it empties its inbox.
#[derive(Debug, Default)]
pub(crate) struct Mail {
    /// Channels whose events were dropped because the inbox was full.
    pub(crate) overflowed: ChannelSet,
    /// The subscriber must end with this error (permission revoked).
    pub(crate) kicked: Option<StreamError>,
    /// `stream-presence` frames, by channel index: the latest of each.
    pub(crate) presence: Vec<(usize, Bytes)>,
}

#[derive(Debug, Default)]
struct Inbox {
    queue: VecDeque<Delivery>,
    /// The frame bytes `queue` holds.
    bytes: usize,
    overflowed: ChannelSet,
    kicked: Option<StreamError>,
    /// The latest `stream-presence` frame per watched channel index (a
    /// newer one replaces it: at most one per channel waits).
    presence: Vec<(usize, Bytes)>,
    /// Kicks may have been missed: ask the authorizer again.
    recheck: bool,
    /// The stream's task, waiting for any of the above. Kept under the
    /// same lock as what it waits for, so a delivery cannot slip between
    /// the stream's last look and its going to sleep.
    waiter: Option<Waker>,
}

impl Inbox {
    fn has_mail(&self) -> bool {
        !self.queue.is_empty()
            || !self.overflowed.is_empty()
            || self.kicked.is_some()
            || !self.presence.is_empty()
            || self.recheck
    }
}

/// How much one inbox may hold before its stream catches up from storage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InboxLimits {
    /// Queued events, at most.
    pub(crate) entries: usize,
    /// Queued frame bytes, at most (one event is always let in).
    pub(crate) bytes: usize,
}

/// A live stream's registration.
#[derive(Debug)]
pub(crate) struct Subscriber {
    key: u64,
    user_id: Option<String>,
    channels: Vec<String>,
    limits: InboxLimits,
    /// The live-only channels (nothing to catch up from), as a [`ChannelSet`]'s bits.
    live_only: AtomicU64,
    /// Per channel index: what the stream sees of its presence (set once,
    /// by streams that ask for presence).
    presence: OnceLock<Vec<PresenceView>>,
    inbox: Mutex<Inbox>,
}

impl Subscriber {
    /// Marks which of its channels are live-only.
    pub(crate) fn set_live_only(&self, live_only: ChannelSet) {
        self.live_only.store(live_only.bits(), Ordering::Relaxed);
    }

    /// Sets, once, what the stream sees of each channel's presence.
    pub(crate) fn watch_presence(&self, views: Vec<PresenceView>) {
        let _ = self.presence.set(views);
    }

    fn presence_view(&self, index: usize) -> PresenceView {
        self.presence
            .get()
            .and_then(|views| views.get(index).copied())
            .unwrap_or(PresenceView::Hidden)
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deliver(&self, channel: usize, event: &Arc<LiveEvent>) {
        self.tell(|inbox| {
            let size = event.frame.with_id.len();
            let fits = inbox.queue.len() < self.limits.entries
                && (inbox.queue.is_empty() || inbox.bytes + size <= self.limits.bytes);
            if fits {
                inbox.queue.push_back(Delivery {
                    channel,
                    event: Arc::clone(event),
                });
                inbox.bytes += size;
            } else {
                inbox.overflowed.insert(channel);
            }
        });
    }

    /// Changes the inbox with `change` and wakes the stream, once the lock
    /// is released.
    fn tell(&self, change: impl FnOnce(&mut Inbox)) {
        let waiter = {
            let mut inbox = self.inbox();
            change(&mut inbox);
            inbox.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Moves everything queued into `into` (which keeps its capacity for the
    /// next round) and returns the flags.
    pub(crate) fn take(&self, into: &mut VecDeque<Delivery>) -> Mail {
        let mut inbox = self.inbox();
        std::mem::swap(&mut inbox.queue, into);
        inbox.bytes = 0;
        Mail {
            overflowed: std::mem::take(&mut inbox.overflowed),
            kicked: inbox.kicked.take(),
            presence: std::mem::take(&mut inbox.presence),
        }
    }

    /// The kick waiting for this stream, if any, leaving the queue alone.
    pub(crate) fn take_kick(&self) -> Option<StreamError> {
        self.inbox().kicked.take()
    }

    /// Whether the stream must ask the authorizer again (kicks may have
    /// been missed), clearing the request.
    pub(crate) fn take_recheck(&self) -> bool {
        std::mem::take(&mut self.inbox().recheck)
    }

    /// Resolves once the inbox holds anything: events, flags, a kick or a
    /// recheck.
    pub(crate) fn woken(&self) -> Woken<'_> {
        Woken(self)
    }

    /// The channels this stream listens to, in subscription order.
    pub(crate) fn channels(&self) -> &[String] {
        &self.channels
    }
}

/// The future of [`Subscriber::woken`].
#[derive(Debug)]
pub(crate) struct Woken<'a>(&'a Subscriber);

impl Future for Woken<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inbox = self.0.inbox();
        if inbox.has_mail() {
            return Poll::Ready(());
        }
        match &mut inbox.waiter {
            Some(waiter) if waiter.will_wake(cx.waker()) => {}
            waiter => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// One channel's `stream-presence` frames for one round: the counts alone,
/// the change since the previous round, and the whole list.
#[derive(Debug, Clone)]
pub(crate) struct PresenceFrames {
    pub(crate) counts: Bytes,
    pub(crate) change: Bytes,
    pub(crate) snapshot: Bytes,
}

/// A channel's streams in this process, as the delivery trace shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backlog {
    pub(crate) streams: usize,
    /// The most events one stream has waiting in its inbox.
    pub(crate) most_queued: usize,
    /// Streams whose inbox overflowed: they catch up from storage.
    pub(crate) overflowed: usize,
}

/// The subscribers of one channel, by key, each with the index the
/// channel has in its own channel list.
type Listeners = HashMap<u64, (Arc<Subscriber>, usize)>;

/// The registry of live subscribers by channel.
#[derive(Debug)]
pub(crate) struct Hub {
    channels: RwLock<HashMap<String, Listeners>>,
    next_key: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Keeps a subscriber registered; dropping it (when the stream ends or the
/// client disconnects) removes it from the hub.
#[derive(Debug)]
pub(crate) struct Registration {
    hub: Arc<Hub>,
    subscriber: Arc<Subscriber>,
}

impl std::ops::Deref for Registration {
    type Target = Subscriber;

    fn deref(&self) -> &Subscriber {
        &self.subscriber
    }
}

impl Registration {
    /// Has the stream check its permissions again after `delay` (its
    /// authorizer could not tell); nothing happens if it ended meanwhile.
    pub(crate) fn recheck_in(&self, delay: std::time::Duration) {
        let subscriber = Arc::downgrade(&self.subscriber);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(subscriber) = subscriber.upgrade() {
                subscriber.tell(|inbox| inbox.recheck = true);
            }
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.subscriber);
    }
}

impl Hub {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Hub {
        Hub {
            channels: RwLock::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            metrics,
        }
    }

    /// Registers a stream for `channels` (at most 64) with an inbox bounded
    /// by `limits`.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        user_id: Option<String>,
        channels: Vec<String>,
        limits: InboxLimits,
    ) -> Registration {
        let subscriber = Arc::new(Subscriber {
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
            user_id,
            channels,
            limits,
            live_only: AtomicU64::new(0),
            presence: OnceLock::new(),
            inbox: Mutex::new(Inbox::default()),
        });
        {
            let mut map = self
                .channels
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (index, channel) in subscriber.channels.iter().enumerate() {
                map.entry(channel.clone())
                    .or_default()
                    .insert(subscriber.key, (Arc::clone(&subscriber), index));
            }
        }
        self.metrics.subscriber_opened();
        Registration {
            hub: Arc::clone(self),
            subscriber,
        }
    }

    fn unsubscribe(&self, subscriber: &Subscriber) {
        let mut map = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for channel in &subscriber.channels {
            if let Some(listeners) = map.get_mut(channel) {
                listeners.remove(&subscriber.key);
                if listeners.is_empty() {
                    map.remove(channel);
                }
            }
        }
        drop(map);
        self.metrics.subscriber_closed();
    }

    /// Queues `event` for every subscriber of its channel. Callers publish a
    /// channel's events in id order, so every inbox receives them in order.
    pub(crate) fn publish(&self, event: &Arc<LiveEvent>) {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(listeners) = map.get(&event.channel) {
            for (subscriber, index) in listeners.values() {
                subscriber.deliver(*index, event);
            }
        }
    }

    /// Gives the streams of `channel` that watch its presence their frame,
    /// at most one waiting per stream and channel: counts replace counts;
    /// for those who may see users, the change since the previous event,
    /// or, when one is still waiting (the stream is behind), the whole
    /// list, since two changes cannot be told as one.
    pub(crate) fn presence(&self, channel: &str, frames: &PresenceFrames) {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        let Some(listeners) = map.get(channel) else {
            return;
        };
        for (subscriber, index) in listeners.values() {
            let (first, again) = match subscriber.presence_view(*index) {
                PresenceView::Hidden => continue,
                PresenceView::Counts => (&frames.counts, &frames.counts),
                PresenceView::Users => (&frames.change, &frames.snapshot),
            };
            subscriber.tell(
                |inbox| match inbox.presence.iter_mut().find(|(at, _)| at == index) {
                    Some(waiting) => waiting.1 = again.clone(),
                    None => inbox.presence.push((*index, first.clone())),
                },
            );
        }
    }

    /// Whether any stream of this process listens to `channel`.
    pub(crate) fn has_listeners(&self, channel: &str) -> bool {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        map.contains_key(channel)
    }

    /// The channels streams of this process listen to.
    pub(crate) fn listened_channels(&self) -> Vec<String> {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// Tells every stream of `channel` that it missed an event it cannot
    /// be given (a live-only event another instance could not relay): as
    /// with an overflowed inbox, a persistent channel catches up from
    /// storage and a live-only one gets `stream-reset`.
    pub(crate) fn missed(&self, channel: &str) {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(listeners) = map.get(channel) {
            for (subscriber, index) in listeners.values() {
                subscriber.tell(|inbox| inbox.overflowed.insert(*index));
            }
        }
    }

    /// Tells every stream of a live-only channel that it may have missed
    /// events (the bus was away: what other instances sent meanwhile is
    /// gone): each gets `stream-reset` for those channels. Streams of
    /// persistent channels are left alone (the bus catches them up from
    /// storage).
    pub(crate) fn missed_live_only(&self) {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        let mut told = std::collections::HashSet::new();
        for listeners in map.values() {
            for (subscriber, _) in listeners.values() {
                let live_only = ChannelSet::from_bits(subscriber.live_only.load(Ordering::Relaxed));
                if !live_only.is_empty() && told.insert(subscriber.key) {
                    subscriber.tell(|inbox| inbox.overflowed.extend(live_only));
                }
            }
        }
    }

    /// Asks every stream to check its permissions again: kicks sent while
    /// this process could not hear them (another instance's, while the bus
    /// listener was reconnecting) are found that way.
    pub(crate) fn recheck_all(&self) {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        for listeners in map.values() {
            for (subscriber, _) in listeners.values() {
                subscriber.tell(|inbox| inbox.recheck = true);
            }
        }
    }

    /// The frame bytes queued in every inbox right now. Walks every
    /// subscriber, so it is for metrics, not for the hot path.
    pub(crate) fn queued_bytes(&self) -> u64 {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        let mut seen = std::collections::HashSet::new();
        let mut total = 0_u64;
        for listeners in map.values() {
            for (key, (subscriber, _)) in listeners {
                if seen.insert(*key) {
                    total += subscriber.inbox().bytes as u64;
                }
            }
        }
        total
    }

    /// Ends, with `error`, every stream of `user_id` on `channel`. Returns
    /// how many streams were told.
    pub(crate) fn kick(&self, user_id: Option<&str>, channel: &str, error: &StreamError) -> usize {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        let mut kicked = 0;
        if let Some(listeners) = map.get(channel) {
            for (subscriber, _) in listeners.values() {
                if subscriber.user_id.as_deref() == user_id {
                    subscriber.tell(|inbox| inbox.kicked = Some(error.clone()));
                    kicked += 1;
                }
            }
        }
        self.metrics.kicked(kicked);
        self.metrics.kick_log.record(KickRecord {
            at_ms: now_ms(),
            channel: channel.to_owned(),
            user_id: user_id.map(str::to_owned),
            streams: kicked,
        });
        kicked
    }

    /// This process's streams of `channel`: how many, the most events one
    /// of them has queued, and how many overflowed (they are reading
    /// storage to catch up). Walks the channel's streams: for the delivery
    /// trace, not the hot path.
    pub(crate) fn backlog(&self, channel: &str) -> Backlog {
        let map = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        let mut backlog = Backlog::default();
        for (subscriber, index) in map
            .get(channel)
            .into_iter()
            .flat_map(|listeners| listeners.values())
        {
            let inbox = subscriber.inbox();
            backlog.streams += 1;
            backlog.most_queued = backlog.most_queued.max(inbox.queue.len());
            if inbox.overflowed.contains(*index) {
                backlog.overflowed += 1;
            }
        }
        backlog
    }
}

/// The hub is the outlet for this process's own streams.
impl Outlet for Hub {
    fn event(&self, event: &Arc<LiveEvent>) {
        self.publish(event);
    }

    fn kick(&self, kick: &Kick) -> usize {
        Hub::kick(self, kick.user_id.as_deref(), &kick.channel, &kick.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::encode_body;

    fn event(channel: &str, seq: u64) -> Arc<LiveEvent> {
        Arc::new(LiveEvent::new(
            channel.into(),
            Some(seq),
            encode_body("m", "{}"),
            vec![],
        ))
    }

    fn entries(entries: usize) -> InboxLimits {
        InboxLimits {
            entries,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn queued_bytes_are_bounded_too() {
        let hub = Arc::new(Hub::new(Arc::default()));
        let frame_bytes = event("a", 1).frame.with_id.len();
        let limits = InboxLimits {
            entries: 100,
            bytes: 3 * frame_bytes,
        };
        let sub = hub.subscribe(None, vec!["a".into()], limits);
        for seq in 1..=10 {
            hub.publish(&event("a", seq));
        }
        assert_eq!(hub.queued_bytes(), 3 * frame_bytes as u64);
        let mut queue = VecDeque::new();
        let mail = sub.take(&mut queue);
        assert_eq!(queue.len(), 3);
        assert_eq!(
            mail.overflowed,
            ChannelSet::of(0),
            "the rest comes from storage"
        );
        assert_eq!(hub.queued_bytes(), 0);
    }

    #[test]
    fn delivers_in_order_and_flags_overflow_instead_of_growing() {
        let hub = Arc::new(Hub::new(Arc::default()));
        let sub = hub.subscribe(None, vec!["a".into(), "b".into()], entries(2));
        for seq in 1..=3 {
            hub.publish(&event("b", seq));
        }
        hub.publish(&event("c", 1));
        let mut queue = VecDeque::new();
        let mail = sub.take(&mut queue);
        let seqs: Vec<_> = queue.iter().map(|d| (d.channel, d.event.seq)).collect();
        assert_eq!(seqs, [(1, Some(1)), (1, Some(2))]);
        assert_eq!(mail.overflowed, ChannelSet::of(1));
        assert!(mail.kicked.is_none());
    }

    #[test]
    fn dropping_the_registration_unsubscribes() {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(Arc::clone(&metrics)));
        let sub = hub.subscribe(Some("u".into()), vec!["a".into()], entries(4));
        assert_eq!(metrics.snapshot().live_subscribers, 1);
        drop(sub);
        assert_eq!(metrics.snapshot().live_subscribers, 0);
        assert!(hub.channels.read().expect("not poisoned").is_empty());
    }

    #[test]
    fn a_missed_event_flags_only_that_channel() {
        let hub = Arc::new(Hub::new(Arc::default()));
        let sub = hub.subscribe(None, vec!["a".into(), "b".into()], entries(4));
        assert!(hub.has_listeners("b") && !hub.has_listeners("c"));
        hub.missed("b");
        hub.missed("c");
        let mut queue = VecDeque::new();
        assert_eq!(sub.take(&mut queue).overflowed, ChannelSet::of(1));
        drop(sub);
        assert!(hub.listened_channels().is_empty());
    }

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_stream_sleeps_only_on_an_empty_inbox_and_anything_wakes_it() {
        let hub = Arc::new(Hub::new(Arc::default()));
        let sub = hub.subscribe(Some("u".into()), vec!["a".into()], entries(4));
        let counter = Arc::new(Counter(Default::default()));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let woken = |sub: &Registration, cx: &mut Context<'_>| {
            let mut future = sub.woken();
            Pin::new(&mut future).poll(cx).is_ready()
        };
        let mut queue = VecDeque::new();
        let mut rounds = 0;
        let tells: [&dyn Fn(); 4] = [
            &|| hub.publish(&event("a", 1)),
            &|| hub.missed("a"),
            &|| hub.recheck_all(),
            &|| {
                hub.kick(Some("u"), "a", &StreamError::forbidden(vec!["a".into()]));
            },
        ];
        for tell in tells {
            assert!(!woken(&sub, &mut cx), "nothing to take yet");
            tell();
            rounds += 1;
            assert_eq!(counter.0.load(Ordering::Relaxed), rounds, "woken once");
            assert!(woken(&sub, &mut cx), "mail waits to be taken");
            sub.take(&mut queue);
            queue.clear();
            sub.take_recheck();
        }
    }

    #[test]
    fn kick_reaches_only_that_users_streams_on_that_channel() {
        let hub = Arc::new(Hub::new(Arc::default()));
        let alice = hub.subscribe(Some("alice".into()), vec!["_x".into()], entries(4));
        let bob = hub.subscribe(Some("bob".into()), vec!["_x".into()], entries(4));
        let error = StreamError::forbidden(vec!["_x".into()]);
        assert_eq!(hub.kick(Some("alice"), "_x", &error), 1);
        let mut queue = VecDeque::new();
        assert_eq!(alice.take(&mut queue).kicked, Some(error));
        assert!(bob.take(&mut queue).kicked.is_none());
    }
}
