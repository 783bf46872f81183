//! Writing to the event log: the writer's group commit, the gate that
//! says who may write now (SQLite's one lock, the channels an open
//! transaction holds), the sends kept aside for those channels, and
//! retention, which trims in pieces that take turns with the writer.
//!
//! Imports delivery (a commit is handed to the fan-out), storage and the
//! leaves. Sending inside the application's own transaction
//! ([`crate::transaction`]) sits above, beside the public handle it
//! extends.

pub(crate) mod gate;
pub(crate) mod held_back;
pub(crate) mod retention;
pub(crate) mod writer;
