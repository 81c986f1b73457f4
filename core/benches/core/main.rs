//! Criterion benchmarks of the core, natively, with a manual clock and the
//! in-memory counter store: one module per area. `make bench` runs them
//! with the load benchmark; alone: `cargo bench -p quota-core --bench core`.
//! A filter's name narrows the run: `cargo bench -p quota-core --bench core -- decide/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod classify;
mod decide;
mod fixtures;
mod headers;
mod ledger;
mod window;

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

/// Short runs: these functions take nanoseconds to microseconds, and the
/// whole `make bench` (this plus the load benchmark) stays within minutes.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = core;
    config = config();
    targets = classify::benches, window::benches, decide::benches, headers::benches, ledger::benches
}
criterion_main!(core);
