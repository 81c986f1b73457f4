//! Helpers shared by the host's tests.
#![allow(dead_code, clippy::panic)]

use std::path::PathBuf;

use host_tests::{Host, HostError};

/// The command that builds the echo fixture (a test-host self-check filter).
pub const FIXTURE_BUILD: &str = "CARGO_TARGET_DIR=target/fixtures cargo build --release \
    --target wasm32-wasip1 --manifest-path host-tests/fixtures/echo-filter/Cargo.toml";

pub fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target/fixtures/wasm32-wasip1/release/echo_filter.wasm")
}

/// A host running the echo fixture; fails the test with the build command when the
/// fixture is missing.
pub fn echo_host() -> Host {
    let path = fixture_path();
    if !path.exists() {
        panic!(
            "echo fixture not built: {} is missing.\nBuild it (from the workspace root) with:\n  {}\n(or `make fixtures`)",
            path.display(),
            FIXTURE_BUILD
        );
    }
    Host::with_wasm_file(path)
}

/// The quota filter's host, or `None` (with a note on stderr) when its `.wasm`
/// has not been built.
pub fn quota_host_if_built() -> Option<Host> {
    let path = host_tests::quota_filter_path();
    if path.exists() {
        Some(Host::new())
    } else {
        eprintln!("skipping: {} not built; build it with `{}`", path.display(), host_tests::BUILD_COMMAND);
        None
    }
}

pub fn expect_config_rejected(result: Result<host_tests::Vm, HostError>) -> HostError {
    match result {
        Err(error @ HostError::ConfigRejected { .. }) => error,
        Err(other) => panic!("expected a rejected configuration, got: {other}"),
        Ok(_) => panic!("expected a rejected configuration, but the VM started"),
    }
}

/// The quota filter's host; fails the test with the build command when the
/// `.wasm` is missing (feature tests need the real filter).
pub fn quota_host() -> Host {
    let path = host_tests::quota_filter_path();
    if !path.exists() {
        panic!("{} is missing: build it with `{}` (or `make build`)", path.display(), host_tests::BUILD_COMMAND);
    }
    Host::new()
}

/// A VM of the quota filter with `config`, vm_id "quota" as in the README's Envoy
/// config, and `allow_on_headers_stop_iteration` on (needed by
/// `hold_headers_for_body`). Panics with the filter's log if the config is refused.
pub fn quota_vm(host: &Host, config: &serde_json::Value) -> host_tests::Vm {
    match start_quota_vm(host, config) {
        Ok(vm) => vm,
        Err(error) => panic!("the quota filter refused to start: {error}"),
    }
}

pub fn start_quota_vm(host: &Host, config: &serde_json::Value) -> Result<host_tests::Vm, HostError> {
    host.vm_builder()
        .vm_id("quota")
        .root_id("quota")
        .plugin_config(config.to_string())
        .allow_on_headers_stop_iteration(true)
        .start()
}

/// A small matrix: one tier, one class per window kind, each `hard` per window.
pub fn windows_config(hard: u64) -> serde_json::Value {
    serde_json::json!({
        "identity": {
            "user": [{ "header": "x-user-id" }],
            "default_tier": "free"
        },
        "classes": [
            { "name": "daily", "unit": "draft", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/daily" } }] },
            { "name": "monthly", "unit": "report", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/monthly" } }] },
            { "name": "weekly", "unit": "digest", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/weekly" } }] },
            { "name": "burst", "unit": "burst", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/burst" } }] }
        ],
        "tiers": {
            "free": {
                "upgrade_url": "https://example.com/upgrade",
                "limits": {
                    "daily": { "hard": hard, "window": "day" },
                    "monthly": { "hard": hard, "window": "month" },
                    "weekly": { "hard": hard, "window": "week" },
                    "burst": { "hard": hard, "window": "5h" }
                }
            }
        }
    })
}

/// One POST to `path` as `user`.
pub fn post(vm: &host_tests::Vm, path: &str, user: &str) -> host_tests::Exchange {
    vm.request()
        .method("POST")
        .path(path)
        .header("x-user-id", user)
        .json_body(r#"{"model":"gpt-4o","messages":[]}"#)
        .send()
}

/// The demo configuration shipped with the repository (README's complete example).
pub fn demo_config() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../envoy/demo-config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A counter as Envoy shows it once `vm` has flushed the stats it counted
/// (the filter adds them to Envoy's counters on its root context's tick,
/// fired here at once).
pub fn flushed_counter(host: &Host, vm: &host_tests::Vm, name: &str) -> u64 {
    if let Err(error) = vm.tick() {
        panic!("the tick failed: {error}");
    }
    host.counter(name)
}
