//! The host calls an admitted, header-classified request makes, counted in
//! the test host, against the floor filter (`bench/floor-filter/`), which
//! makes exactly those calls and nothing else: a change to either fails here,
//! so `make bench`'s floor stays the real filter's floor.

use std::path::PathBuf;

use host_tests::Host;

use crate::util::{demo_config, quota_host, quota_vm};

/// The command that builds the floor filter (as `make bench` and `make test-host` do).
pub const FLOOR_BUILD: &str = "cargo build --release --target wasm32-wasip1 \
    --manifest-path bench/floor-filter/Cargo.toml --target-dir target/bench-floor";

fn floor_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-floor/wasm32-wasip1/release/floor_filter.wasm")
}

/// The load benchmark's `quota` case: the demo matrix plus the tier `bench`.
fn bench_config() -> serde_json::Value {
    let mut config = demo_config();
    let tier = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/bench-tier.json");
    let tier = std::fs::read_to_string(tier).unwrap();
    config["tiers"]["bench"] = serde_json::from_str(&tier).unwrap();
    config["tier_order"].as_array_mut().unwrap().push("bench".into());
    config
}

/// `bench/headers.lua`'s request, answered as the benchmark's upstream answers.
fn bench_request(vm: &host_tests::Vm) -> host_tests::Exchange {
    vm.request()
        .method("POST")
        .path("/v1/projects/p1/drafts")
        .header("x-user-id", "bench-user")
        .header("x-plan", "bench")
        .respond(200, [("content-type", "application/json")], [r#"{"id":"bench","object":"chat.completion"}"#])
        .send()
}

/// The host calls of one request (the second: the first may set up what
/// every later one finds), after any tick that was due.
fn calls_of_one_request(host: &Host, vm: &host_tests::Vm) -> Vec<&'static str> {
    bench_request(vm);
    host.run_pending();
    vm.record_hostcalls();
    let exchange = bench_request(vm);
    let calls = vm.take_hostcalls();
    assert!(exchange.trap().is_none(), "{:?}", exchange.trap());
    calls
}

#[test]
fn an_admitted_header_request_makes_the_floor_filters_calls_and_no_more() {
    let host = quota_host();
    let vm = quota_vm(&host, &bench_config());
    let quota = calls_of_one_request(&host, &vm);
    // The request was admitted with the whole header contract.
    let exchange = bench_request(&vm);
    exchange.assert_allowed();
    assert_eq!(exchange.response_header("x-quota-state"), Some("ok"));
    eprintln!("quota filter: {} host calls: {quota:#?}", quota.len());
    eprintln!("DEBUG headers {:?}", exchange.response_headers());
    eprintln!("DEBUG shared {:?}", host.shared_data().entries("quota"));
    eprintln!("DEBUG ledger {:?}", exchange.record());

    let path = floor_path();
    assert!(path.exists(), "{} is missing: build it with `{FLOOR_BUILD}` (or `make test-host`)", path.display());
    let floor_host = Host::with_wasm_file(path);
    let floor_vm = floor_host.vm("{}").unwrap();
    let floor = calls_of_one_request(&floor_host, &floor_vm);
    assert_eq!(quota, floor, "the floor filter (bench/floor-filter/src/lib.rs) must make the quota filter's calls");
}
