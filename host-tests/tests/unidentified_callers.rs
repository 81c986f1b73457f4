//! What callers can make the filter do for free is bounded. Refusals of callers
//! without an identity write at most `observability.unidentified_events_per_second`
//! events a second per worker; the rest are counted in `quota.events_suppressed`
//! and summed up in one line when writing resumes. Usage-endpoint reads are
//! free but answered at most `usage_reads` often, per caller and per worker;
//! past that, 429 with `Retry-After`, counted in `quota.usage_limited`.
//! Time only moves when the test moves it (`host.advance`).

use std::time::Duration;

use host_tests::{Exchange, Host, Vm};
use serde_json::{json, Value};

use crate::util::{demo_config, flushed_counter, quota_host, quota_vm};

const CHAT: &str = "/v1/chat/completions";

fn anonymous_chat(vm: &Vm) -> Exchange {
    vm.request().method("POST").path("/v1/batches").json_body("{}").send()
}

fn event_lines(host: &Host, event: &str) -> usize {
    host.logs_containing(&format!("quota-event {{\"event\":\"{event}\"")).len()
}

fn with_rate(per_second: u64) -> Value {
    let mut config = demo_config();
    config["observability"] = json!({ "unidentified_events_per_second": per_second });
    config
}

#[test]
fn a_flood_of_unidentified_callers_writes_at_most_the_budget_and_counts_the_rest() {
    let host = quota_host();
    let vm = quota_vm(&host, &with_rate(5));
    for _ in 0..1000 {
        anonymous_chat(&vm).assert_blocked(401);
    }
    // Every refusal answered and counted; five written, the rest counted.
    assert_eq!(flushed_counter(&host, &vm, "quota.identity_missing"), 1000);
    assert_eq!(event_lines(&host, "identity_missing"), 5);
    assert_eq!(flushed_counter(&host, &vm, "quota.events_suppressed"), 995);
    assert!(host.logs_containing("quota: suppressed").is_empty(), "nothing to sum up while suppressing");

    // A fifth of a second later one more may be written: the summary first, once.
    host.advance(Duration::from_millis(199));
    anonymous_chat(&vm).assert_blocked(401);
    assert_eq!(
        (event_lines(&host, "identity_missing"), flushed_counter(&host, &vm, "quota.events_suppressed")),
        (5, 996)
    );
    host.advance(Duration::from_millis(1));
    let r = anonymous_chat(&vm);
    r.assert_blocked(401);
    let summaries = host.logs_containing("quota: suppressed 996 events of callers without an identity");
    assert_eq!(summaries.len(), 1, "{r:?}");
    assert_eq!(event_lines(&host, "identity_missing"), 6);
    assert_eq!(flushed_counter(&host, &vm, "quota.identity_missing"), 1002);
    assert!(host.logs_containing("quota: suppressed").len() == 1);
}

#[test]
fn every_kind_of_unidentified_refusal_shares_the_budget() {
    let host = quota_host();
    let mut config = with_rate(2);
    config["identity"]["unknown_tier"] = json!("reject");
    config["identity"]["user"] = json!([{ "header": "x-user-id" }, { "jwt_claim": "sub" }]);
    let vm = quota_vm(&host, &config);
    vm.request().method("POST").path("/v1/batches").header("x-user-id", "u").header("x-plan", "gold").send();
    vm.request().method("POST").path("/v1/batches").header("authorization", "Basic x").send();
    for _ in 0..10 {
        vm.request().method("POST").path("/v1/batches").header("x-user-id", "u").header("x-plan", "gold").send();
        vm.request().method("POST").path("/v1/batches").header("authorization", "Bearer a Bearer b").send();
        anonymous_chat(&vm);
    }
    let written = ["unknown_tier", "identity_invalid", "identity_missing"].map(|e| event_lines(&host, e));
    assert_eq!(written.iter().sum::<usize>(), 2, "{written:?}");
    assert_eq!(flushed_counter(&host, &vm, "quota.events_suppressed"), 30);
    assert_eq!(
        flushed_counter(&host, &vm, "quota.unknown_tier")
            + flushed_counter(&host, &vm, "quota.identity_invalid")
            + flushed_counter(&host, &vm, "quota.identity_missing"),
        32
    );
}

/// A signed-in caller crossing warning levels and the wall, on `vm`: the
/// event lines it got.
fn ida_events(host: &Host, vm: &Vm) -> usize {
    for _ in 0..12 {
        vm.request().method("POST").path(CHAT).header("x-user-id", "ida").json_body(r#"{"model":"gpt-4o"}"#).send();
    }
    host.logs_containing(r#""user":"ida""#).iter().filter(|l| l.message.starts_with("quota-event ")).count()
}

#[test]
fn identified_callers_events_are_never_suppressed() {
    let quiet = quota_host();
    let unflooded = ida_events(&quiet, &quota_vm(&quiet, &with_rate(1)));
    assert!(unflooded >= 4, "warned twice and blocked: {unflooded}");

    let host = quota_host();
    let vm = quota_vm(&host, &with_rate(1));
    for _ in 0..50 {
        anonymous_chat(&vm);
    }
    assert_eq!(flushed_counter(&host, &vm, "quota.events_suppressed"), 49);
    assert_eq!(ida_events(&host, &vm), unflooded);
    assert_eq!(flushed_counter(&host, &vm, "quota.events_suppressed"), 49);
}

#[test]
fn a_rate_of_zero_writes_no_unidentified_event_but_counts_every_refusal() {
    let host = quota_host();
    let vm = quota_vm(&host, &with_rate(0));
    for _ in 0..20 {
        anonymous_chat(&vm).assert_blocked(401);
    }
    host.advance(Duration::from_secs(3600));
    anonymous_chat(&vm).assert_blocked(401);
    assert_eq!(event_lines(&host, "identity_missing"), 0);
    assert_eq!(
        (flushed_counter(&host, &vm, "quota.identity_missing"), flushed_counter(&host, &vm, "quota.events_suppressed")),
        (21, 21)
    );
}

fn usage_config(usage_reads: Value) -> Value {
    let mut config = demo_config();
    config["usage_reads"] = usage_reads;
    config
}

fn read_usage(vm: &Vm, user: &str) -> Exchange {
    vm.request().method("GET").path("/v1/quota").header("x-user-id", user).send()
}

#[test]
fn usage_reads_past_a_callers_budget_get_429_with_retry_after() {
    let host = quota_host();
    let vm = quota_vm(&host, &usage_config(json!({ "per_minute": 30, "burst": 3 })));
    for _ in 0..3 {
        read_usage(&vm, "ann").assert_local_reply(200);
    }
    let limited = read_usage(&vm, "ann");
    let reply = limited.assert_local_reply(429);
    // Thirty a minute: the next read is two seconds away.
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert_eq!(reply.body_json()["error"]["code"], "usage_rate_limited");
    assert_eq!(flushed_counter(&host, &vm, "quota.usage_limited"), 1);
    // Another caller is not held up by ann.
    read_usage(&vm, "bo").assert_local_reply(200);

    host.advance(Duration::from_millis(1999));
    assert_eq!(read_usage(&vm, "ann").assert_local_reply(429).header("retry-after"), Some("1"));
    host.advance(Duration::from_millis(1));
    read_usage(&vm, "ann").assert_local_reply(200);
    assert_eq!(flushed_counter(&host, &vm, "quota.usage_limited"), 2);
    // Reads charge nothing: after all of them, ann has used nothing anywhere.
    host.advance(Duration::from_secs(60));
    let usage = read_usage(&vm, "ann");
    let classes = usage.response_json()["classes"].as_array().cloned().unwrap_or_default();
    let used: Vec<&Value> = classes.iter().filter_map(|c| c.get("used")).collect();
    assert!(!used.is_empty() && used.iter().all(|u| **u == json!(0)), "{usage:?}");
}

#[test]
fn a_worker_answers_at_most_its_reads_a_second_whoever_asks() {
    let host = quota_host();
    let vm = quota_vm(&host, &usage_config(json!({ "per_worker_per_second": 5 })));
    let statuses: Vec<Option<u16>> = (0..8).map(|i| read_usage(&vm, &format!("caller{i}")).status()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429].map(Some));
    assert_eq!(flushed_counter(&host, &vm, "quota.usage_limited"), 3);
    host.advance(Duration::from_millis(200));
    read_usage(&vm, "caller7").assert_local_reply(200);
}

#[test]
fn default_budgets_bound_a_polling_loop() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    // One caller polling as fast as it can for a minute, a read every 10 ms.
    let mut answered = 0;
    for _ in 0..6000 {
        if read_usage(&vm, "poller").status() == Some(200) {
            answered += 1;
        }
        host.advance(Duration::from_millis(10));
    }
    // The default: a burst of 30, then 120 a minute (the 120th earned only
    // at the minute, after the last read).
    assert_eq!(answered, 30 + 119);
    assert_eq!(flushed_counter(&host, &vm, "quota.usage_limited"), 6000 - 149);
}

#[test]
fn an_unidentified_usage_read_is_a_401_within_the_event_budget() {
    let host = quota_host();
    let vm = quota_vm(&host, &with_rate(2));
    for _ in 0..10 {
        vm.request().method("GET").path("/v1/quota").send().assert_local_reply(401);
    }
    assert_eq!(event_lines(&host, "identity_missing"), 2);
    assert_eq!(flushed_counter(&host, &vm, "quota.usage_limited"), 0);
}
