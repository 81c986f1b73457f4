//! Upstream responses as the filter meters them: an event stream fed to
//! `SseScanner` in fuzz-chosen chunks (the usage found must not depend on
//! the chunking), and the bytes as one JSON document for `usage_in`; the
//! reported tokens then priced with the multipliers validation allows.
//!
//! Input: `max_line` selector, chunking byte, then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::cost;
use quota_core::metering::{usage_in, SseScanner, TokenUsage};
use serde_json::Value;

fn price(usage: Option<TokenUsage>) {
    if let Some(tokens) = usage.and_then(|u| u.tokens()) {
        for factor in [0.000_001, 0.5, 1.0, 10.0, 1_000_000.0] {
            assert!(cost::scale(tokens, factor) >= 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[line, chunking], stream)) = data.split_first_chunk::<2>() else { return };
    // The filter scans with 64 KiB lines; short limits reach the overflow path.
    let max_line = if line == 255 { 64 * 1024 } else { usize::from(line) * 4 };
    let mut whole = SseScanner::new(max_line);
    whole.feed(stream);
    let mut chunked = SseScanner::new(max_line);
    let sizes = [usize::from(chunking & 15), 1 + usize::from(chunking >> 4) * 7];
    let (mut at, mut i) = (0, 0);
    while at < stream.len() {
        let n = sizes[i % 2].min(stream.len() - at);
        chunked.feed(&stream[at..at + n]);
        at += n;
        i += 1;
    }
    assert_eq!(whole.usage(), chunked.usage(), "the chunking changed the usage found");
    price(whole.usage());
    if let Ok(doc) = serde_json::from_slice::<Value>(stream) {
        price(usage_in(&doc));
    }
});
