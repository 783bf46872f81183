#![allow(unreachable_pub, missing_docs)]

//! Integration tests: one binary (one link step), one module per area of
//! the contract. Every test starts a real server on a free port; tests that
//! touch storage run on SQLite and on PostgreSQL.

mod helpers;

mod auth;
mod concurrency;
mod config;
mod contract;
mod cors;
mod grip;
mod publish_api;
mod resume;
mod storage;
