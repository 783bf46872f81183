//! Where HTTP meets the library: the stream request guard, the routes (the
//! stream, the publish API, the operator endpoints), the health check and
//! the Prometheus page.
//!
//! The top of the data path: these modules may import every layer below,
//! GRIP and the bus included (the health check reports on both).

pub(crate) mod health;
pub(crate) mod prometheus;
pub(crate) mod request;
pub(crate) mod routes;
