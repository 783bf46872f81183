//! What every transport's listener shares: the hand-off to the receiver,
//! the state the health check reads, and the reconnect backoff.
//!
//! A listener's connection can go away (the server restarts, an
//! administrator ends it, a network cut): the listener opens a new one
//! with backoff and then asks the receiver to catch up from storage, since
//! whatever was sent meanwhile is gone. The hand-off to the receiver is
//! bounded: a notice that finds it full is dropped and replaced by a
//! catch-up too: it holds at most [`HAND_OFF_DEPTH`] notices and
//! [`HAND_OFF_BYTES`] of them.
//!
//! Only sealed notices get through (see `notice`): a payload whose seal
//! does not verify, or a live, kick or `lost` notice heard before, is
//! dropped here, counted (`bus_refused`), and logged at most once a minute.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::replay_guard::ReplayGuard;
use crate::measure::metrics::Metrics;
use crate::measure::throttle::Throttle;
use crate::storage::now_ms;
use crate::wire::notice::{Body, Notice, Seal};

/// Notices waiting for the receiver, at most; past it the listener asks
/// for a catch-up from storage instead.
pub(crate) const HAND_OFF_DEPTH: usize = 8192;
/// Bytes of notices waiting for the receiver, at most (a notice is at most
/// 7,900 bytes); past it, as past the depth, a catch-up instead.
pub(crate) const HAND_OFF_BYTES: usize = 4 * 1024 * 1024;

/// How long one send on the bus may wait for the server's answer (every
/// transport's sender).
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How often each instance sends itself a heartbeat over the bus.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// A heartbeat older than this makes the health check say the bus link is
/// silent (degraded), before the listener gives up on it at [`SILENCE`].
pub(crate) const HEARTBEAT_LATE: Duration = Duration::from_secs(3);
/// How long a listener may hear nothing, not even its own instance's
/// heartbeat, before its connection is taken for dead (half-open: a
/// network path that dropped it without a word) and replaced.
pub(crate) const SILENCE: Duration = Duration::from_secs(5);

/// What the listener hands the receiver.
#[derive(Debug)]
pub(crate) enum Heard {
    /// A notice from another instance, and the bytes its payload took.
    Notice(Notice, usize),
    /// Notices were missed (the connection was lost): compare every
    /// listened channel with storage, and have every stream ask the
    /// authorizer again, for the kicks.
    CatchUp,
}

/// How the bus is doing, for the health check.
#[derive(Debug)]
pub(crate) struct BusState {
    /// `"postgres"` or `"redis"`.
    pub(crate) kind: &'static str,
    /// The deployment's bus channel (not a secret: the seal protects it).
    pub(crate) channel: String,
    connected: AtomicBool,
    /// When the last notice from another instance arrived (ms since the
    /// epoch; 0: none yet).
    last_notice_ms: AtomicI64,
    hand_off: mpsc::Sender<Heard>,
    /// Payload bytes handed to the receiver and not yet taken.
    hand_off_bytes: AtomicUsize,
    /// When the listener last heard this instance's own heartbeat (ms
    /// since the epoch; 0: not yet).
    heard_self_ms: AtomicI64,
}

/// A point-in-time view of [`BusState`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BusHealth<'a> {
    pub(crate) kind: &'static str,
    pub(crate) channel: &'a str,
    pub(crate) connected: bool,
    /// Milliseconds since the last notice from another instance.
    pub(crate) last_notice_age_ms: Option<i64>,
    /// Milliseconds since the listener heard this instance's own
    /// heartbeat (sent every second): past a few seconds the link is
    /// silent, and past [`SILENCE`] it is replaced.
    pub(crate) heartbeat_age_ms: Option<i64>,
    /// Notices received and not yet handled.
    pub(crate) lag: usize,
}

impl BusState {
    pub(crate) fn new(
        kind: &'static str,
        channel: &str,
        hand_off: mpsc::Sender<Heard>,
    ) -> BusState {
        BusState {
            kind,
            channel: channel.to_owned(),
            connected: AtomicBool::new(false),
            last_notice_ms: AtomicI64::new(0),
            hand_off,
            hand_off_bytes: AtomicUsize::new(0),
            heard_self_ms: AtomicI64::new(0),
        }
    }

    /// The receiver took a notice of `bytes` from the hand-off.
    pub(crate) fn taken(&self, bytes: usize) {
        self.hand_off_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    pub(crate) fn health(&self) -> BusHealth<'_> {
        let last = self.last_notice_ms.load(Ordering::Acquire);
        let heard_self = self.heard_self_ms.load(Ordering::Acquire);
        BusHealth {
            heartbeat_age_ms: (heard_self > 0).then(|| (now_ms() - heard_self).max(0)),
            kind: self.kind,
            channel: &self.channel,
            connected: self.connected.load(Ordering::Acquire),
            last_notice_age_ms: (last > 0).then(|| (now_ms() - last).max(0)),
            lag: self.hand_off.max_capacity() - self.hand_off.capacity(),
        }
    }
}

/// One listener's link to the receiver.
pub(crate) struct HandOff {
    pub(crate) seal: Arc<Seal>,
    pub(crate) guard: Mutex<ReplayGuard>,
    /// Refused notices are logged once a minute at most.
    pub(crate) refusals_logged: Throttle,
    pub(crate) heard: mpsc::Sender<Heard>,
    /// Set when a notice did not fit in `heard`.
    pub(crate) missed: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) state: Arc<BusState>,
}

impl HandOff {
    /// Hands a received payload over, unless it is this instance's own or
    /// is not a sealed, fresh notice of this deployment.
    pub(crate) fn payload(&self, payload: &str) {
        let now = now_ms();
        let notice = match self.seal.open(payload) {
            Ok(notice) if notice.origin == self.seal.origin() => {
                if matches!(notice.body, Body::Ping {}) {
                    self.state.heard_self_ms.store(now, Ordering::Release);
                }
                return;
            }
            // Another instance's heartbeat: for its own listener.
            Ok(Notice {
                body: Body::Ping {},
                ..
            }) => return,
            Ok(notice) => notice,
            Err(why) => return self.refuse(&why, now),
        };
        if !matches!(notice.body, Body::Committed(_)) {
            let admitted = self
                .guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(&notice, now);
            if let Err(why) = admitted {
                return self.refuse(&why, now);
            }
        }
        self.metrics.bus_received();
        self.state.last_notice_ms.store(now, Ordering::Release);
        let bytes = payload.len();
        let held = self.state.hand_off_bytes.fetch_add(bytes, Ordering::AcqRel);
        if held + bytes > HAND_OFF_BYTES
            || self.heard.try_send(Heard::Notice(notice, bytes)).is_err()
        {
            self.state.taken(bytes);
            // The receiver is behind: it will compare with storage instead.
            self.missed.store(true, Ordering::Release);
        }
    }

    /// A payload that moves nothing: counted, and logged at most once a
    /// minute (whoever forges them should not fill the logs too).
    fn refuse(&self, why: &dyn std::fmt::Display, now: i64) {
        self.metrics.bus_refused();
        if self.refusals_logged.allows(now) {
            log::warn!(
                "eventstream: refused a message on the bus channel {:?}: {why}; it had no effect (counted in bus_refused; logged at most once a minute)",
                self.seal.channel()
            );
        }
    }

    /// Resolves once the listener has heard nothing of this instance's
    /// heartbeats for [`SILENCE`], counted from `connected_at` (ms since
    /// the epoch) at the earliest: the connection is then taken for dead,
    /// and health says the bus is disconnected until a new one listens.
    pub(crate) async fn silence(&self, connected_at: i64) {
        let silence_ms = SILENCE.as_millis() as i64;
        loop {
            let heard = self.state.heard_self_ms.load(Ordering::Acquire);
            let due = heard.max(connected_at) + silence_ms;
            let now = now_ms();
            if now >= due {
                break;
            }
            tokio::time::sleep(Duration::from_millis((due - now).unsigned_abs())).await;
        }
        self.state.set_connected(false);
        log::warn!(
            "eventstream: the bus listener heard nothing for {SILENCE:?}, not even this instance's own heartbeat: its connection is taken for dead and replaced"
        );
    }

    /// The connection is back: count it and ask for a catch-up.
    pub(crate) async fn reconnected(&self) {
        self.state.set_connected(true);
        self.metrics.bus_reconnected();
        log::info!("eventstream: the bus listener is connected again; catching up");
        let _ = self.heard.send(Heard::CatchUp).await;
    }
}

/// Pauses between reconnect attempts: 50 ms doubling to 5 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(Duration::from_millis(50))
    }

    /// Waits the current pause, and doubles the next one.
    pub(crate) async fn wait(&mut self, what: &str, error: &(dyn std::fmt::Display + Sync)) {
        log::warn!("eventstream: {what} ({error}); retrying in {:?}", self.0);
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}
