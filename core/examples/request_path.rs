//! The filter's path for one admitted header request (`bench/load.py`'s
//! header workload: the demo matrix plus the tier `bench`), driven natively
//! through the exchange as the filter drives it, many times over. For
//! instruction-level profiles of the core (`valgrind --tool=callgrind`,
//! `perf`), which the module in Envoy cannot give:
//! `cargo run --release -p quota-core --example request_path -- 100000`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quota_core::config::Config;
use quota_core::exchange::memory::MemoryHost;
use quota_core::exchange::response::Ended;
use quota_core::exchange::{Exchange, ResponseHead};

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read =
        |p: &str| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(root.join(p)).unwrap()).unwrap();
    let mut config = read("envoy/demo-config.json");
    config["tiers"]["bench"] = read("bench/bench-tier.json");
    config["tier_order"].as_array_mut().unwrap().push("bench".into());
    let config = Config::from_json(config.to_string().as_bytes()).expect("the bench config");
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut host = MemoryHost::at(1_764_750_000_000);
    let mut lines = 0usize;
    for _ in 0..n {
        let headers: Vec<(String, Vec<u8>)> = [
            (":authority", "127.0.0.1:10000"),
            (":path", "/v1/projects/p1/drafts"),
            (":method", "POST"),
            (":scheme", "http"),
            ("x-user-id", "bench-user"),
            ("x-plan", "bench"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "5a3c1f0e-8d2b-4f6a-9c7e-1b2d3e4f5a6b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        let mut x = Exchange::new();
        let _ = x.request_head(&config, &mut host, headers, true);
        if x.response_headers().is_some() && (x.reads_response_head(&config, Some(200)) || x.records_response()) {
            let head = ResponseHead { status: Some(200), content_type: None, retry_after: None, flags: 0 };
            let _ = x.response(&config, &mut host, head);
        }
        lines += x.response_headers().map_or(0, |h| h.len());
        x.ended(&config, &mut host, || Ended { response_flags: 0, upstream_connected: true });
        if let Some(record) = x.ledger(|| host.now_ms + 1) {
            lines += record.to_line().len();
        }
        host.notes.clear();
    }
    println!("{n} requests, {lines} header and ledger bytes");
}
