//! When to reconnect: jittered backoff, honouring the server's `retry:`.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// When to reconnect. The base is `min_delay`, or the server's `retry:`
/// once it sent one; each failed attempt doubles the delay up to
/// `max_delay` (or the base, if larger), and a connection that delivered a
/// frame starts it over at the base.
#[derive(Debug)]
pub(crate) struct Pacing {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) delay: Duration,
}

impl Pacing {
    pub(crate) fn new(min: Duration, max: Duration) -> Pacing {
        Pacing {
            base: min,
            max,
            delay: min,
        }
    }

    /// The server's `retry:`.
    pub(crate) fn retry(&mut self, delay: Duration) {
        self.base = delay;
        self.delay = delay;
    }

    /// A connection delivered: the next pause is the base one.
    pub(crate) fn delivered(&mut self) {
        self.delay = self.base;
    }

    /// The pause before the next attempt; `failed`: this one got nothing,
    /// so the one after waits longer.
    pub(crate) fn pause(&mut self, failed: bool) -> Duration {
        let pause = jittered(self.delay);
        if failed {
            self.delay = (self.delay * 2).min(self.max.max(self.base));
        }
        pause
    }
}

/// A delay between `delay / 2` and `delay`.
pub(crate) fn jittered(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now()) % 1000;
    delay / 2 + delay.mul_f64(random as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn backoff_grows_on_failures_and_starts_over_after_a_delivery() {
        let ms = Duration::from_millis;
        let mut pacing = Pacing::new(ms(100), ms(400));
        // Jittered into [delay/2, delay].
        let within = |pause: Duration, delay: Duration| pause >= delay / 2 && pause <= delay;
        assert!(within(pacing.pause(true), ms(100)));
        assert!(within(pacing.pause(true), ms(200)));
        assert!(within(pacing.pause(true), ms(400)));
        assert!(within(pacing.pause(true), ms(400)), "capped");
        pacing.delivered();
        assert!(
            within(pacing.pause(false), ms(100)),
            "a working connection starts over"
        );
        pacing.retry(ms(1000));
        assert!(
            within(pacing.pause(true), ms(1000)),
            "the server's retry: is the base"
        );
        assert!(within(pacing.pause(true), ms(1000)), "never below it");
        pacing.delivered();
        assert!(within(pacing.pause(false), ms(1000)));
    }
}
