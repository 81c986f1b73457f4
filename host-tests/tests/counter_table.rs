//! The counters' table in shared data stays bounded: callers come and go
//! through a fixed set of bucket keys, dead counters make room, counters
//! holding grants stay, and a new caller who finds no room gets the fail
//! policy, a stat and an event, while every live counter keeps counting.

use std::time::Duration;

use quota_core::counter::Counter;
use quota_core::table::{entries, MAX_VALUE_BYTES};
use serde_json::{json, Value};

use crate::util::{flushed_counter, post, quota_host, quota_vm};

const ADMIN_SECRET: &str = "an-admin-secret-of-some-length";

/// One class, "burst", with a first-use `window` of `hard` requests, in a
/// table of `max_counters`.
fn table_config(window: &str, hard: u64, max_counters: u64, on_error: &str) -> Value {
    json!({
        "identity": { "user": [{ "header": "x-user-id" }], "default_tier": "free" },
        "classes": [
            { "name": "burst", "unit": "call", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/burst" } }] }
        ],
        "tiers": { "free": { "limits": { "burst": { "hard": hard, "window": window } } } },
        "counters": { "max_counters": max_counters, "on_error": on_error },
        "admin": { "path": "/admin/grants", "secret": ADMIN_SECRET }
    })
}

/// The shared data of the filter's `vm_id`: (bucket keys, counters in them,
/// value bytes). Besides the buckets it holds only the table's seed.
fn table_size(host: &host_tests::Host) -> (usize, usize, usize) {
    let mut buckets = host.shared_data().entries("quota");
    let seed = buckets.remove(quota_core::table::SEED_KEY).expect("the table's seed is stored");
    assert_eq!(seed.len(), 16);
    let counters = buckets.values().map(|v| entries(v).len()).sum();
    let bytes = buckets.values().map(Vec::len).sum();
    (buckets.len(), counters, bytes)
}

/// The stored counter of `key`, wherever its bucket is.
fn stored(host: &host_tests::Host, key: &str) -> Option<Counter> {
    host.shared_data().entries("quota").values().find_map(|value| {
        entries(value).into_iter().find(|(k, _)| *k == key.as_bytes()).and_then(|(_, r)| Counter::decode(r))
    })
}

fn grant(vm: &host_tests::Vm, user: &str, units: u64) -> host_tests::Exchange {
    vm.request()
        .method("POST")
        .path(&format!("/admin/grants?class=burst&user={user}&units={units}"))
        .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
        .send()
}

#[test]
fn callers_coming_and_going_leave_a_bounded_set_of_keys_and_bytes() {
    let host = quota_host();
    host.set_time_rfc3339("2026-11-22T12:00:00Z");
    // 8 buckets of 32; 100 new callers every 25 s, each with a 10 s window.
    let vm = quota_vm(&host, &table_config("10s", 5, 256, "fail_closed"));
    let mut most = (0, 0, 0);
    for round in 0..40 {
        for i in 0..100 {
            let r = post(&vm, "/v1/burst", &format!("caller-{round}-{i}"));
            r.assert_allowed();
            assert_eq!(r.response_header("x-quota-used"), Some("1"), "round {round}, caller {i}");
        }
        let (keys, counters, bytes) = table_size(&host);
        assert!(keys <= 8, "round {round}: {keys} keys");
        // A round's counters are dead 20 s after it: the next round's writes drop them.
        assert!(counters <= 2 * 100, "round {round}: {counters} counters");
        assert!(bytes <= keys * MAX_VALUE_BYTES, "round {round}: {bytes} bytes");
        most = (most.0.max(keys), most.1.max(counters), most.2.max(bytes));
        host.advance(Duration::from_secs(25));
    }
    // 4,000 callers went through 256 places.
    assert_eq!(most.0, 8);
    assert!(host.shared_data().entries("quota").keys().all(|k| k.starts_with('#') || k == quota_core::table::SEED_KEY));
    assert_eq!(flushed_counter(&host, &vm, "quota.store_full"), 0);
}

#[test]
fn a_new_caller_without_room_is_admitted_uncounted_by_default_and_the_stat_says_so() {
    let host = quota_host();
    host.set_time_rfc3339("2026-11-22T12:00:00Z");
    let vm = quota_vm(&host, &table_config("day", 5, 32, "fail_open"));
    for i in 0..32 {
        post(&vm, "/v1/burst", &format!("early-{i}")).assert_allowed();
    }
    let r = post(&vm, "/v1/burst", "latecomer");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-state"), Some("unavailable"));
    assert!(r.log_contains(r#""event":"store_full""#), "{r:?}");
    assert_eq!(flushed_counter(&host, &vm, "quota.store_full"), 1);
    assert_eq!(flushed_counter(&host, &vm, "quota.burst.free.fail_open"), 1);
    assert_eq!(stored(&host, "burst:u:latecomer"), None);
    // Nobody was evicted or reset: the first caller's second request is their second.
    let again = post(&vm, "/v1/burst", "early-0");
    assert_eq!(again.response_header("x-quota-used"), Some("2"));
    assert_eq!(table_size(&host).1, 32);
    // A grant to a counter that does not exist yet needs room too.
    let refused = grant(&vm, "latecomer", 5);
    let reply = refused.assert_local_reply(503);
    assert_eq!(reply.body_json()["error"]["code"], "quota_unavailable");
    assert_eq!(table_size(&host).1, 32);
}

#[test]
fn a_new_caller_without_room_gets_503_when_the_policy_is_fail_closed_until_dead_counters_make_room() {
    let host = quota_host();
    host.set_time_rfc3339("2026-11-22T12:00:00Z");
    let vm = quota_vm(&host, &table_config("1h", 5, 32, "fail_closed"));
    for i in 0..32 {
        post(&vm, "/v1/burst", &format!("early-{i}")).assert_allowed();
    }
    let r = post(&vm, "/v1/burst", "latecomer");
    let reply = r.assert_blocked(503);
    assert_eq!(reply.body_json()["error"]["code"], "quota_unavailable");
    assert_eq!(r.response_header("retry-after"), Some("1"));
    assert!(r.log_contains(r#""event":"store_full""#), "{r:?}");
    assert_eq!(flushed_counter(&host, &vm, "quota.store_full"), 1);
    assert_eq!(flushed_counter(&host, &vm, "quota.burst.free.fail_closed"), 1);

    // The windows end after an hour, and their counters hold nothing an hour after that.
    host.advance(Duration::from_secs(2 * 3600 - 1));
    post(&vm, "/v1/burst", "latecomer").assert_blocked(503);
    host.advance(Duration::from_secs(1));
    let counted = post(&vm, "/v1/burst", "latecomer");
    counted.assert_allowed();
    assert_eq!(counted.response_header("x-quota-used"), Some("1"));
    assert_eq!(flushed_counter(&host, &vm, "quota.store_full"), 2);
}

#[test]
fn a_counter_holding_grant_units_is_never_reclaimed() {
    let host = quota_host();
    host.set_time_rfc3339("2026-11-22T12:00:00Z");
    let vm = quota_vm(&host, &table_config("10s", 1, 32, "fail_closed"));
    assert_eq!(grant(&vm, "patron", 3).assert_local_reply(200).body_json()["grant"], 3);
    // A week of strangers, 31 at a time (all the room the patron leaves), in one bucket.
    for round in 0..50 {
        host.advance(Duration::from_secs(3 * 3600));
        for i in 0..31 {
            post(&vm, "/v1/burst", &format!("stranger-{round}-{i}")).assert_allowed();
        }
    }
    assert_eq!(stored(&host, "burst:u:patron").map(|c| c.grant), Some(3));
    // The patron's plan unit, then the grant's three, then the wall.
    for _ in 0..4 {
        post(&vm, "/v1/burst", "patron").assert_allowed();
    }
    post(&vm, "/v1/burst", "patron").assert_blocked(429);
    assert_eq!(flushed_counter(&host, &vm, "quota.store_full"), 0);
}

#[test]
fn counters_of_the_one_key_per_counter_layout_are_not_read() {
    let host = quota_host();
    host.set_time_rfc3339("2026-11-22T12:00:00Z");
    let vm = quota_vm(&host, &table_config("day", 5, 32, "fail_closed"));
    // What an earlier release left: a record under the counter's own key.
    let now = 1_795_348_800;
    let old =
        Counter { window_code: 3, window_start: now - 3600, window_end: now + 3600, used: 4, ..Counter::default() };
    host.shared_data().set("quota", "burst:u:veteran", &old.encode(), 0).unwrap();
    let r = post(&vm, "/v1/burst", "veteran");
    assert_eq!(r.response_header("x-quota-used"), Some("1"), "counted from zero");
    assert_eq!(host.shared_data().get("quota", "burst:u:veteran").map(|(v, _)| v), Some(old.encode().to_vec()));
    assert_eq!(stored(&host, "burst:u:veteran").map(|c| c.used), Some(1));
}
