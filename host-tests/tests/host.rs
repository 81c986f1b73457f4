//! The test host's own tests and the quota filter's host tests: one binary, one
//! module per feature (see `autotests = false` in Cargo.toml for why).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

// The test host itself, against the echo fixture.
mod bodies;
mod callouts;
mod clock;
mod headers;
mod lifecycle;
mod local_reply;
mod observability;
mod properties;
mod shared_data;
mod smoke;

// The quota filter, through the test host.
mod block_reply;
mod buffer_limit;
mod concurrency;
mod config;
mod counter_table;
mod host_calls;
mod hostile_inputs;
mod ledger;
mod redis;
mod unidentified_callers;
mod upstream_busy;
mod windows;
