//! A proxy-wasm HTTP filter that makes the host calls the quota filter makes
//! for an admitted, header-classified request (the load benchmark's `quota`
//! case: `bench/headers.lua` through the demo matrix plus the tier `bench`)
//! and does nothing else: no classifying, no deciding, fixed header values of
//! the same shape. The load benchmark (`bench/load.py`, case `floor`) reads the
//! quota filter against it: what it costs beyond the floor is its own logic.
//!
//! The calls, in order (kept in step with the quota filter by the host test
//! `host_calls` in `host-tests/tests/host_calls.rs`, which runs both in the
//! test host and compares their call logs):
//!
//! On the request headers:
//! 1. `proxy_get_header_map_pairs` (request headers): the request, read once
//! 2. `proxy_get_current_time_nanoseconds`: the time of the decision
//! 3. `proxy_get_shared_data`: the counter's bucket and its CAS
//! 4. `proxy_set_shared_data`: the bucket written back with that CAS
//!
//! On the response headers:
//! 5. `proxy_get_header_map_pairs` (response headers): the upstream's map
//! 6. `proxy_get_property` `response.flags`: for the ledger
//! 7. `proxy_set_header_map_pairs` (response headers): the map with 14 headers
//!    added (the `x-quota-*` family and `RateLimit`/`RateLimit-Policy`)
//!
//! On the access log (`proxy_on_log`):
//! 8. `proxy_get_current_time_nanoseconds`: the ledger record's duration
//! 9. `proxy_set_property` `quota_ledger`: the ledger record (~300 bytes)
//!
//! Stats are not among them: the quota filter counts them in the VM and
//! adds them to Envoy's counters on its root context's tick.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(FloorRoot));
}}

struct FloorRoot;

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorStream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A counter bucket's key and a record of the quota filter's size (40 bytes).
const KEY: &str = "#floor";
const RECORD_LEN: usize = 40;

/// The headers the quota filter adds to an admitted response of the bench tier.
const HEADERS: [(&str, &str); 14] = [
    ("x-quota-class", "drafts"),
    ("x-quota-tier", "bench"),
    ("x-quota-scope", "user"),
    ("x-quota-window", "day"),
    ("x-quota-used", "3"),
    ("x-quota-limit", "1000000000000"),
    ("x-quota-soft-limit", "500000000000"),
    ("x-quota-remaining", "999999999997"),
    ("x-quota-reset", "2024-01-16T00:00:00Z"),
    ("x-quota-reset-after", "43200"),
    ("x-quota-state", "ok"),
    ("x-quota-cost", "1"),
    ("ratelimit-policy", "\"drafts\";q=1000000000000;w=86400"),
    ("ratelimit", "\"drafts\";r=999999999997;t=43200"),
];

/// A ledger record of the quota filter's shape and length.
const LEDGER: &str = concat!(
    r#"{"v":1,"time":"2024-01-15T12:00:00.000Z","user":"bench-user","tier":"bench","class":"drafts","#,
    r#""method":"POST","route":"/v1/projects/p1/drafts","units_requested":1,"units_charged":1,"#,
    r#""units_settled":1,"status":200,"upstream_status":200,"upstream_reached":true,"state":"ok","duration_ms":0}"#
);

struct FloorStream;

impl Context for FloorStream {}

impl HttpContext for FloorStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        let _ = hostcalls::get_current_time();
        if let Ok((value, cas)) = hostcalls::get_shared_data(KEY) {
            let mut record = value.unwrap_or_default();
            record.resize(RECORD_LEN, 0);
            if let Some(count) = record.get_mut(0) {
                *count = count.wrapping_add(1);
            }
            let _ = hostcalls::set_shared_data(KEY, Some(&record), cas);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let upstream = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        let _ = hostcalls::get_property(vec!["response", "flags"]);
        let merged: Vec<(&str, &[u8])> = upstream
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .chain(HEADERS.iter().map(|(n, v)| (*n, v.as_bytes())))
            .collect();
        let _ = hostcalls::set_map_bytes(MapType::HttpResponseHeaders, merged);
        Action::Continue
    }

    fn on_log(&mut self) {
        let _ = hostcalls::get_current_time();
        let _ = hostcalls::set_property(vec!["quota_ledger"], Some(LEDGER.as_bytes()));
    }
}
