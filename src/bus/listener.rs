//! What every transport's listener shares: the hand-off to the receiver,
//! the state the health check reads, and the reconnect backoff.
//!
//! A listener's connection can go away (the server restarts, an
//! administrator ends it, a network cut): the listener opens a new one
//! with backoff and then asks the receiver to catch up from storage, since
//! whatever was sent meanwhile is gone. The hand-off to the receiver is
//! bounded: a notice that finds it full is dropped and replaced by a
//! catch-up too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::notice::{NOTIFY_CHANNEL, Notice};
use crate::storage::now_ms;

/// What the listener hands the receiver.
#[derive(Debug)]
pub(crate) enum Heard {
    /// A notice from another instance.
    Notice(Notice),
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
    connected: AtomicBool,
    /// When the last notice from another instance arrived (ms since the
    /// epoch; 0: none yet).
    last_notice_ms: AtomicI64,
    hand_off: mpsc::Sender<Heard>,
}

/// A point-in-time view of [`BusState`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BusHealth {
    pub(crate) kind: &'static str,
    pub(crate) connected: bool,
    /// Milliseconds since the last notice from another instance.
    pub(crate) last_notice_age_ms: Option<i64>,
    /// Notices received and not yet handled.
    pub(crate) lag: usize,
}

impl BusState {
    pub(crate) fn new(kind: &'static str, hand_off: mpsc::Sender<Heard>) -> BusState {
        BusState {
            kind,
            connected: AtomicBool::new(false),
            last_notice_ms: AtomicI64::new(0),
            hand_off,
        }
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    pub(crate) fn health(&self) -> BusHealth {
        let last = self.last_notice_ms.load(Ordering::Acquire);
        BusHealth {
            kind: self.kind,
            connected: self.connected.load(Ordering::Acquire),
            last_notice_age_ms: (last > 0).then(|| (now_ms() - last).max(0)),
            lag: self.hand_off.max_capacity() - self.hand_off.capacity(),
        }
    }
}

/// One listener's link to the receiver.
pub(crate) struct HandOff {
    pub(crate) origin: u64,
    pub(crate) heard: mpsc::Sender<Heard>,
    /// Set when a notice did not fit in `heard`.
    pub(crate) missed: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) state: Arc<BusState>,
}

impl HandOff {
    /// Hands a received payload over, unless it is this instance's own.
    pub(crate) fn payload(&self, payload: &str) {
        let notice = match Notice::decode(payload) {
            Ok(notice) if notice.origin == self.origin => return,
            Ok(notice) => notice,
            Err(error) => {
                log::warn!(
                    "eventstream: ignoring a message on {NOTIFY_CHANNEL:?} that is not a notice ({error})"
                );
                return;
            }
        };
        self.metrics.bus_received();
        self.state.last_notice_ms.store(now_ms(), Ordering::Release);
        if self.heard.try_send(Heard::Notice(notice)).is_err() {
            // The receiver is behind: it will compare with storage instead.
            self.missed.store(true, Ordering::Release);
        }
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
