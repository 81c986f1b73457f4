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
//!
//! Variants, to measure what each call costs in Envoy (`bench/profile_envoy.py`'s
//! `floor_*` cases): the plugin configuration is a list of words, each
//! changing one thing; an empty configuration or any JSON object (the quota
//! filter's configuration, as `make bench`'s instruction count passes it) is
//! the floor itself.
//! - `no_shared`: no counter read and write (calls 3 and 4)
//! - `no_flags`: no `response.flags` (call 6)
//! - `no_response`: nothing on the response headers (calls 5 to 7)
//! - `add_each`: the response's `:status` read alone, then each of the 14
//!   headers added by its own call, instead of the map read and written whole
//! - `replace_each`: as `add_each`, with each header replacing any copy the
//!   upstream sent (what the quota filter would need in place of the map)
//! - `no_ledger`: nothing on the access log (calls 8 and 9)
//! - `body`: the body workload's calls (`bench/body.lua`, classified by its
//!   JSON body; the host test `host_calls` keeps them in step too): the
//!   headers held, the body held to its end, then read (`proxy_get_buffer_bytes`)
//!   and the decision's clock, before the counter's read and write
//! - `copies`: 500 copies of 64 bytes in the module's memory on the request
//!   headers (`memory.copy`, which V8 runs as a call into its runtime, in the
//!   Envoy binary), to price the quota filter's own copies

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(FloorRoot(Variant::default())));
}}

/// Which calls this floor makes (see the module's documentation).
#[derive(Clone, Copy, Default)]
struct Variant {
    no_shared: bool,
    no_flags: bool,
    no_response: bool,
    add_each: bool,
    replace_each: bool,
    no_ledger: bool,
    copies: bool,
    body: bool,
}

impl Variant {
    fn read(config: &[u8]) -> Option<Variant> {
        let mut variant = Variant::default();
        let text = std::str::from_utf8(config).ok()?;
        if text.trim_start().starts_with('{') {
            return Some(variant);
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()) {
            match word {
                "no_shared" => variant.no_shared = true,
                "no_flags" => variant.no_flags = true,
                "no_response" => variant.no_response = true,
                "add_each" => variant.add_each = true,
                "replace_each" => variant.replace_each = true,
                "no_ledger" => variant.no_ledger = true,
                "copies" => variant.copies = true,
                "body" => variant.body = true,
                _ => return None,
            }
        }
        Some(variant)
    }
}

struct FloorRoot(Variant);

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Variant::read(&config) {
            Some(variant) => {
                self.0 = variant;
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorStream(self.0)))
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

/// `count` copies of `len` bytes between two buffers, each a `memory.copy`
/// (the length is not known to the compiler, so it is not unrolled).
fn copy_around(count: usize, len: usize) {
    let len = std::hint::black_box(len);
    let mut a = vec![1u8; len];
    let mut b = vec![2u8; len];
    for i in 0..count {
        let (from, to) = if i % 2 == 0 { (&a, &mut b) } else { (&b, &mut a) };
        to.copy_from_slice(from);
    }
    std::hint::black_box((&a, &b));
}

struct FloorStream(Variant);

impl FloorStream {
    /// The counter's read and compare-and-swap write.
    fn charge(&self) {
        if self.0.no_shared {
            return;
        }
        if let Ok((value, cas)) = hostcalls::get_shared_data(KEY) {
            let mut record = value.unwrap_or_default();
            record.resize(RECORD_LEN, 0);
            if let Some(count) = record.get_mut(0) {
                *count = count.wrapping_add(1);
            }
            let _ = hostcalls::set_shared_data(KEY, Some(&record), cas);
        }
    }
}

impl Context for FloorStream {}

impl HttpContext for FloorStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        let _ = hostcalls::get_current_time();
        if self.0.copies {
            copy_around(500, 64);
        }
        if self.0.body && !end_of_stream {
            // Held until the body is read.
            return Action::Pause;
        }
        self.charge();
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.0.body {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
        let _ = hostcalls::get_current_time();
        self.charge();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let variant = self.0;
        if variant.no_response {
            return Action::Continue;
        }
        if variant.add_each || variant.replace_each {
            let _ = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status");
            if !variant.no_flags {
                let _ = hostcalls::get_property(vec!["response", "flags"]);
            }
            for (name, value) in HEADERS {
                let _ = match variant.replace_each {
                    true => hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)),
                    false => hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value),
                };
            }
            return Action::Continue;
        }
        let upstream = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        if !variant.no_flags {
            let _ = hostcalls::get_property(vec!["response", "flags"]);
        }
        let merged: Vec<(&str, &[u8])> = upstream
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .chain(HEADERS.iter().map(|(n, v)| (*n, v.as_bytes())))
            .collect();
        let _ = hostcalls::set_map_bytes(MapType::HttpResponseHeaders, merged);
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.0.no_ledger {
            return;
        }
        let _ = hostcalls::get_current_time();
        let _ = hostcalls::set_property(vec!["quota_ledger"], Some(LEDGER.as_bytes()));
    }
}
