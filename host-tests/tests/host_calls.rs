//! The host calls an admitted, header-classified request makes, counted in
//! the test host, against the floor filter (`bench/floor-filter/`), which
//! makes exactly those calls and nothing else: a change to either fails here,
//! so `make bench`'s floor stays the real filter's floor.

use std::path::PathBuf;
use std::time::Duration;

use host_tests::Host;

use crate::util::{demo_config, quota_host, quota_vm};

/// How long the filter holds the stats it counts (filter/src/root.rs, `METRICS_FLUSH_MS`).
const METRICS_FLUSH: Duration = Duration::from_millis(100);

/// The command that builds the floor filter (as `make bench` and `make test-host` do).
pub const FLOOR_BUILD: &str = "cargo build --release --target wasm32-wasip1 \
    --manifest-path bench/floor-filter/Cargo.toml --target-dir target/bench-floor";

/// A test host running the floor filter (built by `make test-host`).
fn floor_host() -> Host {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-floor/wasm32-wasip1/release/floor_filter.wasm");
    assert!(path.exists(), "{} is missing: build it with `{FLOOR_BUILD}` (or `make test-host`)", path.display());
    Host::with_wasm_file(path)
}

/// The calls of an admitted header request: the list bench/floor-filter/src/lib.rs documents.
const HEADER_REQUEST_CALLS: [&str; 9] = [
    "proxy_get_header_map_pairs",
    "proxy_get_current_time_nanoseconds",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_get_header_map_pairs",
    "proxy_get_property",
    "proxy_set_header_map_pairs",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_property",
];

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
    assert_eq!(quota, HEADER_REQUEST_CALLS, "update bench/floor-filter/ and this list together");

    let floor_host = floor_host();
    let floor_vm = floor_host.vm("{}").unwrap();
    let floor = calls_of_one_request(&floor_host, &floor_vm);
    assert_eq!(quota, floor, "the floor filter (bench/floor-filter/src/lib.rs) must make the quota filter's calls");
}

#[test]
fn stats_reach_envoy_on_the_next_tick_every_one_of_them_and_no_request_pays_a_metric_call() {
    let host = quota_host();
    let vm = quota_vm(&host, &bench_config());
    vm.record_hostcalls();
    for _ in 0..500 {
        bench_request(&vm).assert_allowed();
    }
    assert!(!vm.take_hostcalls().contains(&"proxy_increment_metric"), "a request paid for a stat");
    // Counted in the VM, not yet in Envoy.
    assert_eq!(host.counter("quota.drafts.bench.requests"), 0);
    host.advance(METRICS_FLUSH - Duration::from_millis(1));
    assert_eq!(host.counter("quota.drafts.bench.requests"), 0);
    // One tick later, all of them, with one call per stat that moved.
    vm.record_hostcalls();
    host.advance(Duration::from_millis(1));
    assert_eq!(host.counter("quota.drafts.bench.requests"), 500);
    assert_eq!(host.counter("quota.drafts.bench.units"), 500);
    let increments = |calls: Vec<&str>| calls.iter().filter(|c| **c == "proxy_increment_metric").count();
    assert_eq!(increments(vm.take_hostcalls()), 2);
    // Nothing moved: the next tick adds nothing.
    vm.record_hostcalls();
    host.advance(METRICS_FLUSH);
    assert_eq!(increments(vm.take_hostcalls()), 0);
    assert_eq!(host.counter("quota.drafts.bench.requests"), 500);
    // Refusals of callers without an identity are counted the same way.
    for _ in 0..3 {
        vm.request().method("POST").path("/v1/projects/p1/drafts").send().assert_blocked(401);
    }
    host.advance(METRICS_FLUSH);
    assert_eq!(host.counter("quota.identity_missing"), 3);
}

#[test]
fn with_metrics_off_no_request_or_tick_calls_a_metric() {
    let host = quota_host();
    let mut config = bench_config();
    config["observability"] = serde_json::json!({ "metrics": false });
    let vm = quota_vm(&host, &config);
    vm.record_hostcalls();
    bench_request(&vm).assert_allowed();
    host.advance(Duration::from_secs(1));
    let calls = vm.take_hostcalls();
    assert!(!calls.contains(&"proxy_increment_metric"), "{calls:?}");
    assert!(host.metrics().iter().all(|m| m.value == 0), "{:?}", host.metrics());
}

#[test]
fn each_floor_variant_leaves_out_or_changes_the_calls_it_names() {
    let host = floor_host();
    let calls = |variant: &str| {
        let vm = host.vm(variant).unwrap();
        calls_of_one_request(&host, &vm)
    };
    let floor = calls("");
    let without = |left_out: &[usize]| -> Vec<&str> {
        floor.iter().enumerate().filter(|(i, _)| !left_out.contains(i)).map(|(_, c)| *c).collect()
    };
    assert_eq!(floor, calls("{}"));
    // The quota filter's configuration (make bench's instruction count passes it): the floor.
    assert_eq!(floor, calls(&bench_config().to_string()));
    assert_eq!(calls("no_shared"), without(&[2, 3]));
    assert_eq!(calls("no_flags"), without(&[5]));
    assert_eq!(calls("no_response"), without(&[4, 5, 6]));
    assert_eq!(calls("no_ledger"), without(&[7, 8]));
    assert_eq!(calls("copies"), floor);
    assert_eq!(calls("no_flags, no_ledger"), without(&[5, 7, 8]));
    // The response's map read and written whole, or :status read and each header on its own.
    let each = |call: &'static str| -> Vec<&str> {
        let mut expected: Vec<&str> = floor[..4].to_vec();
        expected.push("proxy_get_header_map_value");
        expected.push("proxy_get_property");
        expected.extend([call; 14]);
        expected.extend(&floor[7..]);
        expected
    };
    assert_eq!(calls("add_each"), each("proxy_add_header_map_value"));
    assert_eq!(calls("replace_each"), each("proxy_replace_header_map_value"));
    // A word it does not know is refused, not ignored.
    assert!(host.vm("no_sharde").is_err());
}

/// `bench/load.py`'s body workload (`body.lua`): classified by its 2 KB JSON
/// body, the headers held until it is read (`hold_headers_for_body`).
fn bench_body_request(vm: &host_tests::Vm) -> host_tests::Exchange {
    let body = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/body-2k.json");
    vm.request()
        .method("POST")
        .path("/v1/chat/completions")
        .header("x-user-id", "bench-user")
        .header("x-plan", "bench")
        .json_body(&std::fs::read_to_string(body).unwrap())
        .respond(200, [("content-type", "application/json")], [r#"{"id":"bench","object":"chat.completion"}"#])
        .send()
}

/// A VM of `host` with `config`, as `bench/load.py` starts the body cases
/// (the plugin may stop iteration on the headers).
fn holding_vm(host: &Host, config: &str) -> host_tests::Vm {
    host.vm_builder()
        .vm_id("bench")
        .root_id("bench")
        .plugin_config(config)
        .allow_on_headers_stop_iteration(true)
        .start()
        .unwrap()
}

#[test]
fn an_admitted_body_request_makes_the_body_floors_calls_and_no_more() {
    let calls = |host: &Host, vm: &host_tests::Vm| {
        bench_body_request(vm);
        host.run_pending();
        vm.record_hostcalls();
        let exchange = bench_body_request(vm);
        assert!(exchange.trap().is_none(), "{:?}", exchange.trap());
        exchange.assert_allowed();
        assert_eq!(exchange.response_header("x-quota-state"), Some("ok"));
        vm.take_hostcalls()
    };
    let host = quota_host();
    let quota = calls(&host, &holding_vm(&host, &bench_config().to_string()));
    // The header request's calls, with the body read and the decision's clock
    // after the headers' two.
    let mut expected = HEADER_REQUEST_CALLS.to_vec();
    expected.splice(2..2, ["proxy_get_buffer_bytes", "proxy_get_current_time_nanoseconds"]);
    assert_eq!(quota, expected, "update bench/floor-filter/ (its `body` variant) and this list together");

    let floor_host = floor_host();
    let floor = calls(&floor_host, &holding_vm(&floor_host, "body"));
    assert_eq!(quota, floor, "the floor filter's `body` variant must make the quota filter's calls");
}
