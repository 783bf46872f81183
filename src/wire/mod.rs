//! What travels: channel names, event ids and id vectors, SSE frames, and
//! the notices instances send each other over the bus.
//!
//! Leaves of the data path: these modules import only [`crate::error`] and
//! each other, and everything above builds on them.

pub(crate) mod channel;
pub(crate) mod channel_set;
pub(crate) mod event_id;
pub(crate) mod frame;
pub(crate) mod notice;
pub(crate) mod presence_report;
