//! Arbitrary request headers and bodies against fixed valid configs, through
//! the whole core as the filter runs it: classify, identify, cost, charge
//! (repeatedly, over time, with a store that may fail or hold a foreign
//! record), reply or forward, events, usage, corrections.
//!
//! Input: `flags` `timing` `offset: i32 LE` [`record: 48 bytes` if flags
//! bit 4, see `stored_record`] then header lines (`name value`), an empty line, and the body.
//! flags: bits 0-1 config (demo, seeds, rich), bit 2 confirmed, bit 3 refund,
//! bit 4 preload. timing: bits 0-3 repeats - 1, bits 4-5 store mode, bits
//! 6-7 step between repeats (0, 1 h, 1 day, 31 days). offset: seconds from
//! noon UTC, 2026-11-22.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core_fuzz::{configs, drive, split_request, stored_record, FuzzStore, Plan, StoreMode, NOON_MS};

const STEPS_MS: [i64; 4] = [0, 3_600_000, 86_400_000, 2_678_400_000];

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, timing], rest)) = data.split_first_chunk::<2>() else { return };
    let Some((offset, rest)) = rest.split_first_chunk::<4>() else { return };
    let (preload, rest) = if flags & 0x10 != 0 {
        let Some((record, rest)) = rest.split_first_chunk::<48>() else { return };
        (Some(stored_record(record)), rest)
    } else {
        (None, rest)
    };
    let all = configs();
    let config = &all[usize::from(flags & 3) % all.len()];
    let (head, body) = split_request(rest);
    let plan = Plan {
        now_ms: NOON_MS + i64::from(i32::from_le_bytes(*offset)) * 1000,
        step_ms: STEPS_MS[usize::from(timing >> 6)],
        repeats: 1 + u32::from(timing & 15),
        confirmed: flags & 4 != 0,
        refund: flags & 8 != 0,
    };
    let store = FuzzStore::new(StoreMode::from_bits(timing >> 4), preload);
    drive(config, &head, body, &plan, &store);
});
