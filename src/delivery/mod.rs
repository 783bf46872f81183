//! Where committed events go: the fan-out step that hands each event to
//! its outlets, and the hub, the outlet that holds this process's streams.
//!
//! Imports storage and the leaves. The GRIP publisher and the bus sender
//! are outlets too, in layers above; the fan-out knows them only as
//! [`fanout::Outlet`]s.

pub(crate) mod fanout;
pub(crate) mod hub;
