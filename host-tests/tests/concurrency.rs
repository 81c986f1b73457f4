//! Two workers (VMs) share the counters: interleaved inside the compare-and-swap
//! loop, racing to create a counter, and on real threads, no update is lost and a
//! hard limit of N admits exactly N. The store giving up follows the fail policy.

use std::sync::{Arc, Mutex};

use host_tests::{Status, Vm};

use crate::util::{post, quota_host, quota_vm, windows_config};

fn used(exchange: &host_tests::Exchange) -> Option<String> {
    exchange.response_header("x-quota-used").map(str::to_string)
}

/// Runs `b`'s whole request while `a` sits between its read and its write.
fn interleave(host: &host_tests::Host, a: &Vm, b: &Vm, user: &str) -> (host_tests::Exchange, Option<String>) {
    let b_used = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&b_used);
    let b = b.clone();
    let user_b = user.to_string();
    host.shared_data().before_next_set(move |_| {
        let r = post(&b, "/v1/daily", &user_b);
        r.assert_allowed();
        *slot.lock().unwrap() = used(&r);
    });
    let r = post(a, "/v1/daily", user);
    let b_used = b_used.lock().unwrap().clone();
    (r, b_used)
}

#[test]
fn a_write_slipped_between_read_and_write_makes_the_first_worker_retry() {
    let host = quota_host();
    let config = windows_config(10);
    let a = quota_vm(&host, &config);
    let b = quota_vm(&host, &config);
    post(&a, "/v1/daily", "ivy").assert_allowed();

    let mismatches_before = host.shared_data().stats().cas_mismatches;
    let (r, b_used) = interleave(&host, &a, &b, "ivy");
    r.assert_allowed();
    assert_eq!(b_used.as_deref(), Some("2"), "B charged on top of A's first request");
    assert_eq!(used(&r).as_deref(), Some("3"), "A retried on top of B: no lost update");
    assert_eq!(host.shared_data().stats().cas_mismatches, mismatches_before + 1);
}

#[test]
fn two_workers_creating_the_same_counter_lose_no_update() {
    // Envoy writes a missing key whatever the cas: the filter must still notice
    // that another worker created the counter between its read and its write.
    let host = quota_host();
    let config = windows_config(10);
    let a = quota_vm(&host, &config);
    let b = quota_vm(&host, &config);

    let (r, b_used) = interleave(&host, &a, &b, "jay");
    r.assert_allowed();
    assert_eq!(b_used.as_deref(), Some("1"));
    assert_eq!(used(&r).as_deref(), Some("2"));
}

#[test]
fn the_last_unit_goes_to_exactly_one_of_two_interleaved_workers() {
    let host = quota_host();
    let config = windows_config(2);
    let a = quota_vm(&host, &config);
    let b = quota_vm(&host, &config);
    post(&a, "/v1/daily", "kim").assert_allowed();

    // B takes the last unit while A is deciding; A must then be refused.
    let (r, b_used) = interleave(&host, &a, &b, "kim");
    assert_eq!(b_used.as_deref(), Some("2"));
    r.assert_blocked(429);
    assert_eq!(r.response_header("x-quota-used"), Some("2"));
}

#[test]
fn a_hard_limit_of_n_admits_exactly_n_across_threads() {
    let host = quota_host();
    let config = windows_config(30);
    let vms: Vec<Vm> = (0..2).map(|_| quota_vm(&host, &config)).collect();
    let threads: Vec<_> = vms
        .into_iter()
        .map(|vm| {
            std::thread::spawn(move || {
                let mut admitted = 0;
                for _ in 0..40 {
                    let r = post(&vm, "/v1/daily", "lee");
                    r.assert_no_trap();
                    match r.status() {
                        Some(200) => admitted += 1,
                        Some(429) => {}
                        other => panic!("unexpected status {other:?}\n{r:?}"),
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 30);
}

#[test]
fn a_contended_counter_that_never_settles_fails_open_by_default() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(5));
    post(&vm, "/v1/daily", "max").assert_allowed();
    host.shared_data().fail_next_sets(None, 1000, Status::CasMismatch);
    let r = post(&vm, "/v1/daily", "max");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-state"), Some("unavailable"));
    host.shared_data().clear_faults();
}

#[test]
fn a_counter_store_that_gives_up_fails_closed_when_configured() {
    let host = quota_host();
    let mut config = windows_config(5);
    config["counters"] = serde_json::json!({ "cas_attempts": 3, "on_error": "fail_closed" });
    let vm = quota_vm(&host, &config);
    host.shared_data().fail_next_sets(None, 3, Status::CasMismatch);
    let r = post(&vm, "/v1/daily", "ned");
    let reply = r.assert_blocked(503);
    assert_eq!(reply.body_json()["error"]["code"], "quota_unavailable");
    assert!(r.response_header("retry-after").is_some());
    assert_eq!(host.shared_data().stats().cas_mismatches, 3, "exactly cas_attempts tries");

    // The faults are used up: the next request is counted normally.
    post(&vm, "/v1/daily", "ned").assert_allowed();
}

#[test]
fn an_unreadable_counter_follows_the_fail_policy_without_killing_the_vm() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(5));
    host.shared_data().fail_next_gets(None, 1, Status::InternalFailure);
    let r = post(&vm, "/v1/daily", "oz");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-state"), Some("unavailable"));
    assert!(!vm.is_dead());
}
