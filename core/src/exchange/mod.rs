//! A request's journey through the filter as values with no I/O (the
//! sans-I/O shape of `h11` or `quinn-proto`): the filter, the simulator, the
//! fuzzer and the tests feed the same value the events they see and carry
//! out what it returns.
//!
//! - [`response`]: after admission, what the upstream's answer changes about
//!   the charge (refunds, the usage it reports).

pub mod response;
