//! Shared data between VMs (Envoy workers): CAS, interleavings, injected failures.

use std::sync::{Arc, Mutex};

use crate::util::echo_host;
use host_tests::{Status, Vm};

fn count(host: &host_tests::Host, user: &str) -> u64 {
    let (value, _) = host.shared_data().get("", &format!("count:{user}")).unwrap();
    String::from_utf8(value).unwrap().parse().unwrap()
}

#[test]
fn two_vms_share_one_store() {
    let host = echo_host();
    let a = host.vm("{}").unwrap();
    let b = host.vm("{}").unwrap();
    for vm in [&a, &b, &a, &b] {
        vm.request().header("x-user-id", "alice").send().assert_allowed();
    }
    assert_eq!(count(&host, "alice"), 4);
}

#[test]
fn a_vm_with_another_vm_id_has_its_own_store() {
    let host = echo_host();
    let a = host.vm("{}").unwrap();
    let b = host.vm_builder().vm_id("other").plugin_config("{}").start().unwrap();
    a.request().header("x-user-id", "u").send();
    let r = b.request().header("x-user-id", "u").send();
    assert_eq!(r.response_header("x-echo-count"), Some("1"));
    assert_eq!(host.shared_data().entries("other").len(), 1);
}

#[test]
fn another_workers_write_between_read_and_write_forces_a_retry_not_a_lost_update() {
    let host = echo_host();
    let a = host.vm("{}").unwrap();
    let b = host.vm("{}").unwrap();
    a.request().header("x-user-id", "carol").send().assert_allowed();

    // While A is between its get and its set, B runs a whole request.
    let b_result = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&b_result);
    let b_clone: Vm = b.clone();
    host.shared_data().before_next_set(move |attempt| {
        assert_eq!(attempt.key, "count:carol");
        let r = b_clone.request().header("x-user-id", "carol").send();
        *slot.lock().unwrap() = r.response_header("x-echo-count").map(str::to_string);
    });
    let r = a.request().header("x-user-id", "carol").send();
    r.assert_allowed();

    assert_eq!(b_result.lock().unwrap().as_deref(), Some("2"));
    assert_eq!(r.response_header("x-echo-count"), Some("3"), "A retried on top of B");
    assert_eq!(count(&host, "carol"), 3);
    assert_eq!(host.shared_data().stats().cas_mismatches, 1);
}

#[test]
fn vms_on_threads_lose_no_update() {
    let host = echo_host();
    host.shared_data().set("", "count:dave", b"0", 0).unwrap();
    let vms: Vec<Vm> = (0..2).map(|_| host.vm("{}").unwrap()).collect();
    let threads: Vec<_> = vms
        .into_iter()
        .map(|vm| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    vm.request().header("x-user-id", "dave").send().assert_allowed();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count(&host, "dave"), 100);
}

#[test]
fn injected_cas_mismatches_drive_the_give_up_path() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    host.shared_data().fail_next_sets(Some("count:erin"), 10, Status::CasMismatch);
    let r = vm.request().header("x-user-id", "erin").send();
    r.assert_allowed();
    assert!(r.log_contains("CAS gave up on count:erin"));
    assert_eq!(r.response_header("x-echo-count"), Some("0"));
    assert!(host.shared_data().get("", "count:erin").is_none());
}

#[test]
fn an_injected_status_the_sdk_does_not_expect_kills_the_vm() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    host.shared_data().fail_next_gets(None, 1, Status::InternalFailure);
    let r = vm.request().header("x-user-id", "frank").send();
    assert!(r.trap().is_some(), "{r:?}");
    assert!(vm.is_dead());
}
