//! What the library counts and times: the metrics every layer bumps, the
//! per-step delivery timings, and the throttle that keeps a log line from
//! repeating.
//!
//! Leaves: nothing here imports another layer, so every layer may count.

pub(crate) mod kicks;
pub(crate) mod metrics;
pub(crate) mod proxies;
pub(crate) mod throttle;
pub(crate) mod timing;
