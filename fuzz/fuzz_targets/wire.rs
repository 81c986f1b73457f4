//! What a client reads back (`wire.rs`, also compiled into the browser
//! client): RFC 8941 lists in the RateLimit fields, the quota headers, a
//! refusal's JSON body and the usage report, from arbitrary responses.
//!
//! Input: a selector byte, then the text. For headers, one line per header:
//! its first byte picks a name the reader knows, the rest is the value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::wire::{self, READ_HEADERS};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 5 {
        0 => {
            let _ = wire::parse_list(&text);
            let _ = wire::parse_policies(&text);
            let _ = wire::parse_limits(&text);
        }
        1 => {
            let lines: Vec<(&str, String)> = rest
                .split(|b| *b == b'\n')
                .filter_map(|line| line.split_first())
                .map(|(k, value)| {
                    (READ_HEADERS[usize::from(*k) % READ_HEADERS.len()], String::from_utf8_lossy(value).into_owned())
                })
                .collect();
            let _ = wire::read_headers(lines.iter().map(|(n, v)| (*n, v.as_str())));
        }
        2 => {
            let _ = wire::read_refusal(&text);
        }
        3 => {
            let _ = wire::read_usage(&text);
        }
        _ => {
            let _ = wire::WireState::parse(&text);
        }
    }
});
