//! Loading, starting and configuring a VM, and how failures surface.

use crate::util::{echo_host, expect_config_rejected};
use host_tests::{Host, HostError, LogLevel, BUILD_COMMAND};

#[test]
fn a_missing_wasm_names_the_command_that_builds_it() {
    let host = Host::with_wasm_file("/nonexistent/quota_filter.wasm");
    let error = host.vm("{}").err().expect("loading must fail");
    assert!(matches!(error, HostError::WasmMissing { .. }));
    let message = error.to_string();
    assert!(message.contains(BUILD_COMMAND), "{message}");
    assert!(message.contains("cargo build --release --target wasm32-wasip1 -p quota-filter"));
    assert!(message.contains("/nonexistent/quota_filter.wasm"));
}

#[test]
fn vm_start_sees_the_vm_configuration_and_configure_the_plugin_configuration() {
    let host = echo_host();
    let vm = host.vm_builder().vm_config("vm-conf").plugin_config("plugin-conf").start().unwrap();
    let lines: Vec<String> = vm.logs().into_iter().map(|r| r.message).collect();
    assert!(lines.contains(&"vm started: vm-conf".to_string()), "{lines:?}");
    assert!(lines.contains(&"configured: plugin-conf".to_string()), "{lines:?}");
}

#[test]
fn a_configure_returning_false_is_a_rejected_config_with_its_log_lines() {
    let host = echo_host();
    let error = expect_config_rejected(host.vm("please reject this"));
    assert!(error.logs_contain("config rejected: it says reject"));
    let line = &error.logs()[error.logs().len() - 1];
    assert_eq!(line.level, LogLevel::Error);
    assert!(error.to_string().contains("configuration rejected"));
}

#[test]
fn reconfiguring_a_running_vm_calls_configure_again() {
    let host = echo_host();
    let vm = host.vm("first").unwrap();
    vm.configure("second").unwrap();
    assert!(!host.logs_containing("configured: second").is_empty());
    assert!(vm.configure("reject").unwrap_err().is_config_rejected());
}

#[test]
fn a_panic_is_a_trap_that_kills_the_vm() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "panic").send();
    let trap = r.trap().expect("the panic must surface as a trap");
    let text = trap.to_string();
    assert!(text.contains("proxy_on_request_headers"), "{text}");
    assert!(trap.logs_contain("echo panic on request"), "{text}");
    assert_eq!(r.status(), Some(503), "Envoy fails the stream");
    assert!(r.upstream().is_none());
    assert!(vm.is_dead());

    // Like Envoy without fail_open, every later request on that worker fails.
    let next = vm.request().send();
    assert!(matches!(next.error(), Some(HostError::VmDead { .. })));
    assert_eq!(next.status(), Some(503));
}

#[test]
fn with_fail_open_a_dead_vm_lets_requests_through_untouched() {
    let host = echo_host();
    host.set_fail_open(true);
    let vm = host.vm("{}").unwrap();
    vm.request().header("x-echo-action", "panic").send();
    let r = vm.request().header("x-strip-me", "1").send();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.upstream_header("x-strip-me"), Some("1"));
    assert_eq!(r.upstream_header("x-echo-seen"), None);
}

#[test]
fn a_second_vm_of_the_same_host_lives_on_when_one_dies() {
    let host = echo_host();
    let a = host.vm("{}").unwrap();
    let b = host.vm("{}").unwrap();
    a.request().header("x-echo-action", "panic").send();
    assert!(a.is_dead());
    b.request().send().assert_allowed();
}

#[test]
fn unknown_imports_are_stubbed_and_recorded() {
    let wasm = wat::parse_str(
        r#"(module
          (import "env" "proxy_fancy_future_call" (func $fancy (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (global $next (mut i32) (i32.const 1024))
          (func (export "malloc") (param $n i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $next))
            (global.set $next (i32.add (global.get $next) (local.get $n)))
            (local.get $p))
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
            ;; Unimplemented (12) from the stub means "start".
            (i32.eq (call $fancy (i32.const 7)) (i32.const 12)))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            ;; ENOSYS (52) from the WASI stub means "configured".
            (i32.eq (call $open (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                               (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0)
                               (i32.const 0))
                    (i32.const 52)))
        )"#,
    )
    .unwrap();
    let host = Host::with_wasm_bytes("stub-test", wasm);
    let vm = host.vm("").unwrap();
    assert_eq!(
        vm.unimplemented_calls(),
        vec!["env::proxy_fancy_future_call".to_string(), "wasi_snapshot_preview1::path_open".to_string()]
    );
}

#[test]
fn a_module_that_is_not_a_proxy_wasm_filter_is_refused() {
    let wasm = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let error = Host::with_wasm_bytes("plain", wasm).vm("").err().unwrap();
    assert!(error.to_string().contains("not a proxy-wasm filter"), "{error}");
}

#[test]
#[ignore = "waits for the 30 s per-call deadline; run with --ignored"]
fn a_guest_stuck_in_a_loop_is_interrupted() {
    let wasm = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (func (export "malloc") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (loop $forever (br $forever))
            (i32.const 1)))"#,
    )
    .unwrap();
    let error = Host::with_wasm_bytes("loop", wasm).vm("").err().unwrap();
    assert!(error.is_trap(), "{error}");
}
