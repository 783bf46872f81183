#![allow(unreachable_pub, missing_docs)]

//! Integration tests: one binary (one link step), one module per area of
//! the contract. Every test starts a real server on a free port; tests that
//! touch storage run on SQLite and on PostgreSQL, and the stream contract
//! also through Pushpin.
//!
//! The harness is libtest-mimic (`harness = false`): each area module lists
//! its tests with `trials!` in `pub fn tests()`, and the usual flags work
//! (`--list`, a name filter, `--ignored`, `--test-threads`). Tests that
//! need PostgreSQL or Pushpin are ignored where it is missing, and fail
//! under CI (`CI` set).

mod helpers;

mod auth;
mod bus_trust;
mod concurrency;
mod config;
mod contract;
mod cors;
mod durability;
mod environment;
mod explain;
mod grip;
mod grip_scale;
mod grip_timing;
mod handler;
mod hostile;
mod instances;
mod layout;
mod limits;
mod operator;
mod outages;
mod presence;
mod publish_api;
mod resume;
mod retention;
mod rollback;
mod soak;
mod storage;
mod transaction;

fn main() {
    // First: launch-failure tests read what the library logs, and Rocket
    // installs no logger of its own once one is set.
    helpers::capture_logs();
    // A child process of a multi-instance test serves instead.
    helpers::serve_if_asked();
    let args = libtest_mimic::Arguments::from_args();
    helpers::probe_services();
    let mut trials: Vec<_> = [
        auth::tests(),
        bus_trust::tests(),
        concurrency::tests(),
        config::tests(),
        contract::tests(),
        cors::tests(),
        durability::tests(),
        environment::tests(),
        explain::tests(),
        grip::tests(),
        grip_scale::tests(),
        grip_timing::tests(),
        handler::tests(),
        hostile::tests(),
        instances::tests(),
        layout::tests(),
        limits::tests(),
        operator::tests(),
        outages::tests(),
        presence::tests(),
        publish_api::tests(),
        resume::tests(),
        retention::tests(),
        rollback::tests(),
        soak::tests(),
        storage::tests(),
        transaction::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    // In name order, as libtest lists and runs them.
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    libtest_mimic::run(&args, trials).exit();
}
