//! Random event sequences fed to the core's `Exchange` (what the filter
//! drives for each stream): a random request head, then body chunks,
//! trailers, body reads, Redis answers (well-formed, NOSCRIPT, errors,
//! junk, for calls made or never made), calls not sent, the response's
//! head and body, the stream's end, an abandoned stream, in any order.
//! Configs: the base three and variants with counters in Redis (exact and
//! approximate modes). The invariants are asserted in
//! `quota_core_fuzz::sequence` (also run natively by its test).
//!
//! Input: read by `arbitrary::Unstructured`, from the config's choice on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core_fuzz::sequence;

fuzz_target!(|data: &[u8]| {
    let _ = sequence::run(data);
});
