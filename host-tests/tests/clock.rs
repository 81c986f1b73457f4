//! The test clock as the guest sees it, and ticks as time passes.

use std::time::Duration;

use crate::util::echo_host;
use host_tests::parse_rfc3339;

#[test]
fn the_guest_reads_the_hosts_clock() {
    let host = echo_host();
    host.set_time_rfc3339("2024-02-28T23:59:59Z");
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "time").send();
    let expected = parse_rfc3339("2024-02-28T23:59:59Z").unwrap();
    assert_eq!(r.response_header("x-echo-time"), Some(expected.to_string().as_str()));

    host.advance(Duration::from_secs(1));
    assert_eq!(host.now_rfc3339(), "2024-02-29T00:00:00Z");
    let r = vm.request().header("x-echo-action", "time").send();
    assert_eq!(r.response_header("x-echo-time"), Some((expected + 1_000_000_000).to_string().as_str()));
}

#[test]
fn all_vms_of_a_host_share_the_clock_and_hosts_do_not() {
    let one = echo_host();
    let two = echo_host();
    one.set_time_rfc3339("2030-01-01T00:00:00Z");
    let a = one.vm("{}").unwrap();
    let b = one.vm("{}").unwrap();
    let c = two.vm("{}").unwrap();
    let t = |vm: &host_tests::Vm| {
        vm.request().header("x-echo-action", "time").send().response_header("x-echo-time").unwrap().to_string()
    };
    assert_eq!(t(&a), t(&b));
    assert_ne!(t(&a), t(&c));
}

#[test]
fn advancing_time_fires_one_tick_per_period() {
    let host = echo_host();
    let vm = host.vm("tick").unwrap();
    assert_eq!(vm.tick_period(), Some(Duration::from_secs(1)));
    host.advance(Duration::from_millis(3500));
    let ticks = host.logs().into_iter().filter(|l| l.message.starts_with("tick ")).count();
    assert_eq!(ticks, 3);
    assert_eq!(host.shared_data().get("", "ticks").unwrap().0, b"3");
    // Each tick ran at its own instant.
    let start = parse_rfc3339(host_tests::DEFAULT_START).unwrap() / 1_000_000_000;
    assert!(!host.logs_containing(&format!("tick 2 at {}", start + 2)).is_empty());
}

#[test]
fn setting_the_time_fires_no_tick() {
    let host = echo_host();
    host.vm("tick").unwrap();
    host.set_time_rfc3339("2025-01-01T00:00:00Z");
    assert!(host.logs_containing("tick ").is_empty());
}
