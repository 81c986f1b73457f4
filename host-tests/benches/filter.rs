//! The per-request cost of the compiled filter inside wasmtime, from request
//! headers through response headers, with the demo matrix: a request decided
//! from its path, one classified by its JSON body, and one refused at the wall.
//! Absolute numbers are wasmtime's, not Envoy's V8; compare runs with each other.
// A benchmark that cannot start should stop loudly, as a test does.
#![allow(clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use host_tests::Host;
use std::path::PathBuf;

fn demo_config() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../envoy/demo-config.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The demo matrix with `bench/load.py`'s tier `bench` (limits never reached).
fn bench_config() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: PathBuf| {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let mut config = read(root.join("envoy/demo-config.json"));
    config["tiers"]["bench"] = read(root.join("bench/bench-tier.json"));
    if let Some(order) = config["tier_order"].as_array_mut() {
        order.push("bench".into());
    }
    config.to_string()
}

/// `bench/load.py`'s header workload (`headers.lua`): one caller on the tier
/// `bench`, a draft classified by its path, admitted every time. The request
/// the Envoy benchmark's floor is measured against.
fn bench_workload(c: &mut Criterion) {
    let host = Host::new();
    let vm = host
        .vm_builder()
        .vm_id("quota")
        .root_id("quota")
        .plugin_config(bench_config())
        .allow_on_headers_stop_iteration(true)
        .start()
        .unwrap_or_else(|e| panic!("the filter did not start: {e}"));
    let send = || {
        vm.request()
            .method("POST")
            .path("/v1/projects/p1/drafts")
            .header("x-user-id", "bench-user")
            .header("x-plan", "bench")
            .send()
    };
    let body_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/body-2k.json");
    let body =
        std::fs::read_to_string(&body_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", body_path.display()));
    // `bench/load.py`'s body workload (`body.lua`): classified by its 2 KB JSON body.
    let send_body = || {
        vm.request()
            .method("POST")
            .path("/v1/chat/completions")
            .header("x-user-id", "bench-user")
            .header("x-plan", "bench")
            .json_body(&body)
            .send()
    };
    // With `HOST_TESTS_FUEL=1`: the module's own instructions per request,
    // exact and the same on every machine (the time below is not).
    if vm.instructions().is_some() {
        const N: u64 = 1000;
        let workloads: [(&str, &dyn Fn() -> _); 2] =
            [("bench_tier_headers_workload", &send), ("bench_tier_2kb_body_workload", &send_body)];
        for (name, send) in workloads {
            let (before, by_export) = (vm.instructions().unwrap_or(0), vm.instructions_by_export());
            for _ in 0..N {
                let _ = send();
            }
            let after = vm.instructions().unwrap_or(before);
            println!("{name}: {} wasm instructions per request", (after - before) / N);
            for (export, n, _) in vm.instructions_by_export() {
                let earlier = by_export.iter().find(|(e, ..)| *e == export).map_or(0, |(_, n, _)| *n);
                if n > earlier {
                    println!("  {export}: {}", (n - earlier) / N);
                }
            }
        }
        return;
    }
    let mut group = c.benchmark_group("filter_in_wasmtime");
    group.bench_function("bench_tier_headers_workload", |b| b.iter(send));
    group.bench_function("bench_tier_2kb_body_workload", |b| b.iter(send_body));
    group.finish();
}

fn per_request(c: &mut Criterion) {
    let host = Host::new();
    let vm = host
        .vm_builder()
        .vm_id("quota")
        .root_id("quota")
        .plugin_config(demo_config())
        .allow_on_headers_stop_iteration(true)
        .start()
        .unwrap_or_else(|e| panic!("the filter did not start: {e}"));
    let mut group = c.benchmark_group("filter_in_wasmtime");
    let mut n = 0u64;
    group.bench_function("classified_by_path", |b| {
        b.iter(|| {
            n += 1;
            let user = format!("path-{}", n % 10_000);
            vm.request()
                .method("POST")
                .path("/v1/batches")
                .header("x-user-id", &user)
                .header("x-plan", "enterprise")
                .send()
        })
    });
    let body = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(2000));
    group.bench_function("classified_by_2kb_json_body", |b| {
        b.iter(|| {
            n += 1;
            let user = format!("body-{}", n % 10_000);
            vm.request()
                .method("POST")
                .path("/v1/chat/completions")
                .header("x-user-id", &user)
                .header("x-plan", "enterprise")
                .json_body(&body)
                .send()
        })
    });
    for _ in 0..20 {
        vm.request().method("POST").path("/v1/summaries").header("x-user-id", "walled").send();
    }
    group.bench_function("refused_at_the_wall", |b| {
        b.iter(|| vm.request().method("POST").path("/v1/summaries").header("x-user-id", "walled").send())
    });
    group.finish();
}

criterion_group!(benches, bench_workload, per_request);
criterion_main!(benches);
