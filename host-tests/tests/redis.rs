//! Counters in Redis through webdis: each request waits for one script call
//! (EVALSHA, EVAL after a NOSCRIPT), its decision comes from the "before"
//! record Redis answers, failures apply `counters.on_error`, corrections go out
//! on the root's tick, and the approximate mode syncs on the tick instead.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use host_tests::{Callout, CalloutPolicy, CalloutReply, CalloutTokens, Headers, Host, LogLevel, Vm};
use quota_core::redis::sha1_hex;
use serde_json::{json, Value};

use crate::util::{expect_config_rejected, post, quota_host, quota_vm, start_quota_vm};

/// The script the filter sends with EVAL, and names by its SHA-1 with EVALSHA.
const SCRIPT: &str = include_str!("../../core/src/redis/quota.lua");

/// Every test runs at 2024-03-05T20:00:00Z: 4 h before the daily reset.
const NOW: &str = "2024-03-05T20:00:00Z";
const NOW_S: i64 = 1_709_668_800;
/// The daily window (code 3) and the monthly one (code 5) open at `NOW`.
const DAY: (i64, i64, i64) = (3, 1_709_596_800, 1_709_683_200);
const MONTH: (i64, i64, i64) = (5, 1_709_251_200, 1_711_929_600);
const TICK: Duration = Duration::from_millis(50);
const ADMIN_SECRET: &str = "grant-secret-0123456789abcdef";

/// Two classes (10 a day, 100 a month), the usage endpoint, counters in Redis.
fn redis_config(on_error: &str) -> Value {
    json!({
        "identity": { "user": [{ "header": "x-user-id" }], "default_tier": "free" },
        "classes": [
            { "name": "daily", "unit": "draft", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/daily" } }] },
            { "name": "monthly", "unit": "report", "match": [{ "methods": ["POST"], "path": { "exact": "/v1/monthly" } }] }
        ],
        "tiers": {
            "free": {
                "limits": {
                    "daily": { "hard": 10, "window": "day" },
                    "monthly": { "hard": 100, "window": "month" }
                }
            }
        },
        "usage_endpoint": "/v1/quota",
        "counters": {
            "store": "redis",
            "on_error": on_error,
            "redis": { "cluster": "webdis", "timeout_ms": 200 }
        }
    })
}

fn approximate_config() -> Value {
    let mut config = redis_config("fail_open");
    config["counters"]["redis"]["mode"] = json!("approximate");
    config["counters"]["redis"]["sync_ms"] = json!(100);
    config
}

fn redis_vm(host: &Host, config: &Value) -> Vm {
    host.set_time_rfc3339(NOW);
    quota_vm(host, config)
}

/// One record of the script's answer: `exists, code, start, end, used, grant_used, grant, warned, flags`.
#[derive(Clone, Copy, Debug)]
struct Record {
    window: (i64, i64, i64),
    used: i64,
    grant: i64,
}

fn day(used: i64) -> Option<Record> {
    Some(Record { window: DAY, used, grant: 0 })
}

fn month(used: i64) -> Option<Record> {
    Some(Record { window: MONTH, used, grant: 0 })
}

fn flat(record: Option<Record>) -> Vec<i64> {
    match record {
        None => vec![0; 9],
        Some(r) => vec![1, r.window.0, r.window.1, r.window.2, r.used, 0, r.grant, 0, 0],
    }
}

/// webdis's 200 answer carrying the script's two records.
fn records(before: Option<Record>, after: Option<Record>) -> CalloutReply {
    let numbers: Vec<i64> = flat(before).into_iter().chain(flat(after)).collect();
    CalloutReply::ok(json!({ "EVALSHA": numbers }).to_string())
}

/// webdis's 200 answer to a view: one record per key read.
fn view_records(records: &[Option<Record>]) -> CalloutReply {
    let numbers: Vec<i64> = records.iter().flat_map(|r| flat(*r)).collect();
    CalloutReply::ok(json!({ "EVALSHA": numbers }).to_string())
}

fn noscript() -> CalloutReply {
    CalloutReply::ok(r#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#)
}

/// One script call as the filter sent it: `EVALSHA/<sha1>/<n>/<key>.../<op>/<args>...`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    verb: String,
    /// The SHA-1 (EVALSHA) or the script itself (EVAL), decoded.
    script: String,
    /// The counter (a view's first).
    key: String,
    /// Every key: the counter and the operation's marker (`<counter>#<id>`), or the counters a view reads.
    keys: Vec<String>,
    op: String,
    args: Vec<String>,
}

impl Call {
    /// The id a charge or correction carries in its marker.
    fn id(&self) -> Option<&str> {
        (self.op != "view").then(|| self.keys.get(1)?.rsplit_once('#').map(|(_, id)| id)).flatten()
    }
}

/// The Redis Cluster hash tag of `key` (the first `{...}` when not empty).
fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}').filter(|len| *len > 0).map(|len| &key[open + 1..open + 1 + len]))
        .unwrap_or(key)
}

fn call_of(callout: &Callout) -> Call {
    let text = callout.body_text();
    let parts: Vec<String> = text.split('/').map(percent_decode).collect();
    assert!(parts.len() >= 5, "not a script call: {text}");
    let n: usize = parts[2].parse().unwrap_or_else(|_| panic!("no key count: {text}"));
    assert!(n >= 1 && parts.len() > 3 + n, "not a script call: {text}");
    let keys = parts[3..3 + n].to_vec();
    // Redis Cluster runs a script only on keys of one slot.
    assert!(keys.iter().all(|k| hash_tag(k) == hash_tag(&keys[0])), "keys of several slots in one call: {keys:?}");
    Call {
        verb: parts[0].clone(),
        script: parts[1].clone(),
        key: keys[0].clone(),
        keys,
        op: parts[3 + n].clone(),
        args: parts[4 + n..].to_vec(),
    }
}

fn calls(vm: &Vm) -> Vec<Call> {
    vm.callouts().iter().map(call_of).collect()
}

fn calls_of(vm: &Vm, op: &str) -> Vec<Call> {
    calls(vm).into_iter().filter(|c| c.op == op).collect()
}

fn strings(items: &[i64]) -> Vec<String> {
    items.iter().map(i64::to_string).collect()
}

/// A held callout's token, found by its operation and key.
fn pending(vm: &Vm, op: &str, key: &str) -> u32 {
    let found: Vec<u32> = vm
        .pending_callouts()
        .iter()
        .filter(|c| {
            let call = call_of(c);
            call.op == op && call.key == key
        })
        .map(|c| c.token)
        .collect();
    assert_eq!(found.len(), 1, "one pending {op} call on {key}, got {found:?}");
    found[0]
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).unwrap_or_else(|| panic!("cut escape at {i} in {text}"));
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape %{hex} in {text}")));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn request_headers(method: &str, path: &str, user: &str) -> Headers {
    Headers::from_pairs([
        (":method", method),
        (":scheme", "https"),
        (":authority", "api.example.com"),
        (":path", path),
        ("x-user-id", user),
    ])
}

/// The charge arguments of one `/v1/daily` request at `NOW` (hard 10, blocks
/// at the wall, one warning level at 7: 70% of 10; 95% is the wall itself).
fn daily_charge_args() -> Vec<String> {
    // ..., hard 10, cap 0 (block), no confirm_above or pace, the ceiling 10, one warning level: 7.
    let mut args = strings(&[NOW_S, 1, 0, DAY.0, DAY.1, DAY.2, 10, 0, -1, -1, -1, 10, 1]);
    args.push("7".into());
    args
}

// ----- a charge -----

#[test]
fn a_charge_calls_webdis_with_evalsha_on_the_callers_key() {
    let host = quota_host();
    host.on_callout("webdis", |_| records(day(4), day(5)));
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "pat");
    r.assert_allowed();
    assert_eq!(r.callouts().len(), 1, "{r:?}");
    let callout = &r.callouts()[0];
    assert_eq!(callout.cluster, "webdis");
    assert_eq!(callout.header(":method"), Some("POST"));
    assert_eq!(callout.header(":path"), Some("/"));
    assert_eq!(callout.header(":authority"), Some("webdis"));
    assert_eq!(callout.timeout, Duration::from_millis(200));
    let call = call_of(callout);
    assert_eq!(call.verb, "EVALSHA");
    assert_eq!(call.script, sha1_hex(SCRIPT.as_bytes()), "EVALSHA names the script by its SHA-1");
    assert_eq!(call.key, "quota:{u:pat}daily");
    assert_eq!(call.op, "charge");
    assert_eq!(call.args, daily_charge_args());
}

#[test]
fn the_request_waits_for_redis_and_resumes_with_headers_from_the_before_record() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "pat"), true).unwrap();
    assert!(stream.record().upstream.headers.is_none(), "paused while Redis charges");
    let token = pending(&vm, "charge", "quota:{u:pat}daily");

    // Other Envoys already used 5 of the 10 drafts.
    vm.respond_to_callout(token, records(day(5), day(6))).unwrap();
    stream.poll().unwrap();
    assert!(stream.request_complete(), "resumed once Redis answered");
    stream.send_response_headers(Headers::from_pairs([(":status", "200")]), true).unwrap();
    let record = stream.finish();
    assert_eq!(record.request_resumes, 1);
    for (name, value) in [
        ("x-quota-class", "daily"),
        ("x-quota-used", "6"),
        ("x-quota-limit", "10"),
        ("x-quota-remaining", "4"),
        ("x-quota-state", "ok"),
        ("x-quota-reset", "2024-03-06T00:00:00Z"),
        ("x-quota-reset-after", "14400"),
    ] {
        assert_eq!(record.client.header(name), Some(value), "{name}: {:?}", record.client.headers);
    }
    assert_eq!(host.counter("quota.store.mismatches"), 0, "the script's after record is the core's");
    assert_eq!(host.counter("quota.store.errors"), 0);
}

#[test]
fn a_before_record_at_the_hard_limit_is_refused_with_429() {
    let host = quota_host();
    host.on_callout("webdis", |_| records(day(10), day(10)));
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "quinn");
    r.assert_blocked(429);
    assert!(r.upstream().is_none(), "the upstream never saw the refused request");
    for (name, value) in [
        ("x-quota-state", "blocked"),
        ("x-quota-used", "10"),
        ("x-quota-remaining", "0"),
        ("x-quota-cost", "0"),
        ("retry-after", "14400"),
    ] {
        assert_eq!(r.response_header(name), Some(value), "{name}\n{r:?}");
    }
    let body = r.response_json();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["quota"]["used"], 10);
    assert_eq!(body["error"]["quota"]["limit"], 10);
    assert_eq!(body["error"]["quota"]["reset"], "2024-03-06T00:00:00Z");
    assert_eq!(host.counter("quota.store.mismatches"), 0, "the script refused too: after = before");
}

// ----- NOSCRIPT -----

#[test]
fn noscript_resends_the_call_once_with_the_script_itself() {
    let host = quota_host();
    host.on_callout("webdis", |c| if call_of(c).verb == "EVALSHA" { noscript() } else { records(day(2), day(3)) });
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "rae");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("3"), "from the EVAL's answer");
    let sent: Vec<Call> = r.callouts().iter().map(call_of).collect();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].verb, "EVALSHA");
    assert_eq!(sent[1].verb, "EVAL");
    assert_eq!(sent[1].script, SCRIPT, "EVAL carries the whole script");
    assert!(!r.callouts()[1].body_text().contains('\n'), "percent-encoded");
    assert_eq!((&sent[1].key, &sent[1].op, &sent[1].args), (&sent[0].key, &sent[0].op, &sent[0].args));
    assert_eq!(host.counter("quota.store.errors"), 0, "a NOSCRIPT is not a store error");
}

#[test]
fn once_the_script_is_loaded_the_next_call_is_evalsha_again() {
    let host = quota_host();
    // Redis lost the script once (a restart), then has it again.
    let answered = AtomicU32::new(0);
    host.on_callout("webdis", move |_| {
        if answered.fetch_add(1, Ordering::SeqCst) == 0 {
            noscript()
        } else {
            records(day(0), day(1))
        }
    });
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    let first = post(&vm, "/v1/daily", "rae");
    first.assert_allowed();
    assert_eq!(first.callouts().len(), 2, "EVALSHA, then EVAL");

    let r = post(&vm, "/v1/daily", "rae");
    r.assert_allowed();
    assert_eq!(r.callouts().len(), 1);
    assert_eq!(call_of(&r.callouts()[0]).verb, "EVALSHA");
}

#[test]
fn a_noscript_after_eval_applies_the_fail_policy_instead_of_looping() {
    let host = quota_host();
    host.on_callout("webdis", |_| noscript());
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "sol");
    r.assert_blocked(503);
    let verbs: Vec<String> = r.callouts().iter().map(|c| call_of(c).verb).collect();
    assert_eq!(verbs, ["EVALSHA", "EVAL"]);
    assert!(r.log_contains("NOSCRIPT after sending the script"), "{r:?}");
    assert_eq!(host.counter("quota.store.errors"), 1);
}

// ----- failures -----

/// What a store can fail with: no answer (timeout, reset), webdis's 503 while
/// Redis is down, a body that is not webdis JSON, a Redis error.
fn failures() -> Vec<(&'static str, CalloutReply)> {
    vec![
        ("no answer", CalloutReply::Failure),
        ("HTTP 503", CalloutReply::status(503, "Service Unavailable")),
        ("garbage JSON", CalloutReply::ok("<html>not json")),
        ("a Redis error", CalloutReply::ok(r#"{"EVALSHA":[false,"ERR busy"]}"#)),
        ("a malformed record", CalloutReply::ok(r#"{"EVALSHA":[1,3,0]}"#)),
    ]
}

#[test]
fn store_failures_admit_as_unavailable_when_failing_open() {
    let host = quota_host();
    let vm = redis_vm(&host, &redis_config("fail_open"));
    let failures = failures();
    for (what, reply) in &failures {
        let reply = reply.clone();
        host.on_callout("webdis", move |_| reply.clone());
        let r = post(&vm, "/v1/daily", "tao");
        r.assert_allowed();
        assert_eq!(r.response_header("x-quota-state"), Some("unavailable"), "{what}\n{r:?}");
        assert!(r.log_contains("the Redis store did not answer"), "{what}\n{r:?}");
    }
    assert_eq!(host.counter("quota.store.errors"), failures.len() as u64);

    // Redis is back: counting resumes on the same VM.
    host.on_callout("webdis", |_| records(day(1), day(2)));
    let r = post(&vm, "/v1/daily", "tao");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-state"), Some("ok"));
    assert_eq!(r.response_header("x-quota-used"), Some("2"));
    assert!(!vm.is_dead());
}

#[test]
fn store_failures_answer_503_when_failing_closed() {
    let host = quota_host();
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    for (what, reply) in failures() {
        host.on_callout("webdis", move |_| reply.clone());
        let r = post(&vm, "/v1/daily", "uma");
        let reply = r.assert_blocked(503);
        assert_eq!(reply.body_json()["error"]["code"], "quota_unavailable", "{what}\n{r:?}");
        assert_eq!(r.response_header("retry-after"), Some("1"), "{what}\n{r:?}");
        assert_eq!(r.response_header("x-quota-state"), Some("unavailable"), "{what}\n{r:?}");
    }

    host.on_callout("webdis", |_| records(day(1), day(2)));
    let r = post(&vm, "/v1/daily", "uma");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("2"));
    assert!(!vm.is_dead());
}

#[test]
fn a_charge_never_answered_leaves_no_trap_and_the_vm_serves_the_next_request() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &redis_config("fail_open"));

    // The client gives up before Envoy's timeout: the stream ends, its call
    // (the root's) stays out, and the charge is cancelled by its id.
    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "val"), true).unwrap();
    let abandoned = stream.finish();
    assert!(abandoned.stalled);
    assert!(abandoned.cancelled_callouts.is_empty(), "no call of the stream's own for its end to cancel");
    assert!(abandoned.error.is_none(), "{:?}", abandoned.error);
    let charge = calls_of(&vm, "charge").remove(0);
    let cancels = calls_of(&vm, "cancel");
    assert_eq!(cancels.len(), 1, "{cancels:#?}");
    assert_eq!((cancels[0].key.as_str(), cancels[0].id()), (charge.key.as_str(), charge.id()));
    // Envoy's timeout for the abandoned call: its answer finds no stream.
    let first = pending(&vm, "charge", "quota:{u:val}daily");
    vm.respond_to_callout(first, CalloutReply::Failure).unwrap();

    // Envoy's timeout: the callout comes back without headers.
    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "val"), true).unwrap();
    let token = pending(&vm, "charge", "quota:{u:val}daily");
    vm.respond_to_callout(token, CalloutReply::Failure).unwrap();
    stream.poll().unwrap();
    assert!(stream.request_complete());
    stream.send_response_headers(Headers::from_pairs([(":status", "200")]), true).unwrap();
    let record = stream.finish();
    assert_eq!(record.client.header("x-quota-state"), Some("unavailable"));
    assert_eq!(calls_of(&vm, "cancel").len(), 1, "fail_open keeps a charge that timed out: the request went on");
    assert!(!vm.is_dead());
}

#[test]
fn a_stream_dying_mid_call_then_a_reused_token_traps_nothing_and_each_stream_gets_its_own_answer() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    // A host whose token counter wrapped: a token is handed out again as soon as its call is over.
    host.set_callout_tokens(CalloutTokens::ReuseFreed);
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    let open = |user: &str| {
        let mut stream = vm.stream().unwrap();
        stream.send_request_headers(request_headers("POST", "/v1/daily", user), true).unwrap();
        let token = pending(&vm, "charge", &format!("quota:{{u:{user}}}daily"));
        (stream, token)
    };
    let (ann, ann_token) = open("ann");
    let (mut bob, bob_token) = open("bob");

    // Ann's client resets while Redis charges her request.
    let record = ann.finish();
    assert!(record.cancelled_callouts.is_empty() && record.error.is_none(), "{record:?}");
    let owners: Vec<(u32, Option<u32>)> = vm.pending_callouts().iter().map(|c| (c.context_id, c.for_stream)).collect();
    assert!(owners.iter().all(|(owner, _)| *owner == vm.root_context_id()), "every call is the root's: {owners:?}");

    // A new stream while Ann's call is out: her token is not free, nothing traps.
    let (mut cat, cat_token) = open("cat");
    assert_ne!(cat_token, ann_token);
    // Envoy's timeout ends Ann's call; the SDK forgets its token...
    vm.respond_to_callout(ann_token, CalloutReply::Failure).unwrap();
    assert!(!vm.is_dead(), "{:?}", vm.dead_reason());
    // ...which the host hands to the next call.
    let (mut dan, dan_token) = open("dan");
    assert_eq!(dan_token, ann_token, "the token is reused");
    assert!(!vm.is_dead(), "{:?}", vm.dead_reason());

    // Each answer reaches the stream that asked.
    for (token, used) in [(dan_token, 8), (bob_token, 3), (cat_token, 6)] {
        vm.respond_to_callout(token, records(day(used - 1), day(used))).unwrap();
    }
    for (stream, used) in [(&mut dan, "8"), (&mut bob, "3"), (&mut cat, "6")] {
        stream.poll().unwrap();
        assert!(stream.request_complete());
        stream.send_response_headers(Headers::from_pairs([(":status", "200")]), true).unwrap();
        assert_eq!(stream.record().client.header("x-quota-used"), Some(used));
    }
    // Ann's charge, if Redis made it, is cancelled by its id.
    let cancels = calls_of(&vm, "cancel");
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].key, "quota:{u:ann}daily");
    let ann_charge = calls_of(&vm, "charge").into_iter().find(|c| c.key == "quota:{u:ann}daily").unwrap();
    assert_eq!(cancels[0].id(), ann_charge.id());
    assert!(!vm.is_dead());
}

#[test]
fn a_request_body_arriving_while_redis_charges_is_held_until_the_decision() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "ivy"), false).unwrap();
    stream.send_request_body(br#"{"model":"gpt-4o"}"#, true).unwrap();
    assert!(stream.record().upstream.headers.is_none(), "nothing reaches the upstream before Redis answers");

    // Redis says the caller is at the wall: the request must never have been forwarded.
    let token = pending(&vm, "charge", "quota:{u:ivy}daily");
    vm.respond_to_callout(token, records(day(10), day(10))).unwrap();
    stream.poll().unwrap();
    let record = stream.finish();
    assert_eq!(record.local_reply.as_ref().map(|r| r.status), Some(429));
    assert!(record.upstream.headers.is_none(), "the refused request never reached the upstream");
}

// ----- the script checked against the core -----

#[test]
fn a_script_that_disagrees_with_the_core_is_counted_and_logged_and_the_core_decides() {
    let host = quota_host();
    // The core charges 4 -> 5; this "script" says it wrote 9.
    host.on_callout("webdis", |_| records(day(4), day(9)));
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "wren");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("5"), "the core's decision from the before record");
    assert_eq!(r.response_header("x-quota-remaining"), Some("5"));
    assert_eq!(host.counter("quota.store.mismatches"), 1);
    let line = r
        .logs()
        .iter()
        .find(|l| l.message.contains("the Redis script and the core disagree on quota:{u:wren}daily"))
        .unwrap_or_else(|| panic!("no mismatch line\n{r:?}"));
    assert!(line.level >= LogLevel::Error, "{line}");
}

#[test]
fn a_script_that_refuses_what_the_core_admits_is_a_mismatch_and_the_request_goes_on() {
    let host = quota_host();
    host.on_callout("webdis", |_| records(day(9), day(9)));
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "xan");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("10"));
    assert_eq!(host.counter("quota.store.mismatches"), 1);
}

// ----- the usage endpoint -----

#[test]
fn the_usage_endpoint_reads_a_scopes_counters_in_one_call_and_reports_what_redis_returned() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("GET", "/v1/quota", "yara"), true).unwrap();
    let views = calls_of(&vm, "view");
    assert_eq!(views.len(), 1, "one call for both of the caller's counters: {views:#?}");
    assert_eq!(views[0].keys, ["quota:{u:yara}daily", "quota:{u:yara}monthly"]);
    assert!(views[0].args.is_empty(), "view takes no argument");
    assert!(!stream.replied_locally(), "waiting for Redis");

    let token = pending(&vm, "view", "quota:{u:yara}daily");
    vm.respond_to_callout(token, view_records(&[day(4), month(42)])).unwrap();
    stream.poll().unwrap();
    let record = stream.finish();
    let reply = record.local_reply.as_ref().expect("the usage report");
    assert_eq!(reply.status, 200);
    let report = reply.body_json();
    assert_eq!(report["user"], "yara");
    let classes = report["classes"].as_array().unwrap();
    assert_eq!(
        (&classes[0]["class"], &classes[0]["used"], &classes[0]["remaining"]),
        (&json!("daily"), &json!(4), &json!(6))
    );
    assert_eq!(classes[0]["reset"], "2024-03-06T00:00:00Z");
    assert_eq!(
        (&classes[1]["class"], &classes[1]["used"], &classes[1]["remaining"]),
        (&json!("monthly"), &json!(42), &json!(58))
    );
    assert_eq!(classes[1]["reset"], "2024-04-01T00:00:00Z");
    assert!(record.upstream.headers.is_none(), "answered by the filter");
}

/// `redis_config`, with the monthly class pooled per workspace.
fn pooled_config() -> Value {
    let mut config = redis_config("fail_closed");
    config["identity"]["workspace"] = json!([{ "header": "x-workspace-id" }]);
    config["tiers"]["free"]["limits"]["monthly"]["scope"] = json!("workspace");
    config
}

#[test]
fn a_plan_with_user_and_pooled_counters_costs_one_call_per_scope() {
    let host = quota_host();
    host.on_callout("webdis", |c| {
        let call = call_of(c);
        let records: Vec<Option<Record>> =
            call.keys.iter().map(|k| if k.ends_with("daily") { day(3) } else { month(30) }).collect();
        view_records(&records)
    });
    let vm = redis_vm(&host, &pooled_config());

    let r = vm.request().path("/v1/quota").header("x-user-id", "zoe").header("x-workspace-id", "acme").send();
    let reply = r.assert_local_reply(200);
    let views: Vec<Call> = r.callouts().iter().map(call_of).collect();
    assert_eq!(views.len(), 2, "{views:#?}");
    assert_eq!(views[0].keys, ["quota:{u:zoe}daily"]);
    assert_eq!(views[1].keys, ["quota:{w:acme}monthly"]);
    let classes = reply.body_json()["classes"].clone();
    assert_eq!((&classes[0]["used"], &classes[1]["used"]), (&json!(3), &json!(30)));
}

#[test]
fn a_counter_redis_could_not_read_shows_as_unavailable_in_the_usage_report() {
    let host = quota_host();
    host.on_callout("webdis", |c| {
        let call = call_of(c);
        if call.key.ends_with("monthly") {
            CalloutReply::status(503, "down")
        } else {
            view_records(&[day(4)])
        }
    });
    let vm = redis_vm(&host, &pooled_config());

    let r = vm.request().path("/v1/quota").header("x-user-id", "zed").header("x-workspace-id", "acme").send();
    let reply = r.assert_local_reply(200);
    let classes = reply.body_json()["classes"].clone();
    assert_eq!(classes[0]["used"], 4);
    assert_eq!(classes[1]["state"], "unavailable");
    assert_eq!(host.counter("quota.store.errors"), 1);
}

// ----- grants -----

#[test]
fn a_grant_is_added_in_redis_and_answers_the_new_balance() {
    let host = quota_host();
    let grant = Some(Record { window: (0, 0, 0), used: 0, grant: 50 });
    host.on_callout("webdis", move |_| records(None, grant));
    let mut config = redis_config("fail_closed");
    config["admin"] = json!({ "path": "/admin/grants", "secret": ADMIN_SECRET });
    let vm = redis_vm(&host, &config);

    let r = vm
        .request()
        .method("POST")
        .path("/admin/grants?class=daily&user=ada&units=50")
        .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
        .send();
    let reply = r.assert_local_reply(200);
    assert_eq!(reply.body_json()["added"], 50);
    assert_eq!(reply.body_json()["grant"], 50, "the balance Redis answered");
    let call = call_of(&r.callouts()[0]);
    assert_eq!(
        (call.key.as_str(), call.op.as_str(), call.args),
        ("quota:{u:ada}daily", "grant", vec!["50".to_string()])
    );
}

#[test]
fn a_grant_request_with_a_body_never_reaches_the_upstream() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let mut config = redis_config("fail_closed");
    config["admin"] = json!({ "path": "/admin/grants", "secret": ADMIN_SECRET });
    let vm = redis_vm(&host, &config);

    let mut stream = vm.stream().unwrap();
    let mut headers = request_headers("POST", "/admin/grants?class=daily&user=ada&units=50", "ops");
    headers.add("authorization", &format!("Bearer {ADMIN_SECRET}"));
    stream.send_request_headers(headers, false).unwrap();
    stream.send_request_body(b"{}", true).unwrap();
    assert!(stream.record().upstream.headers.is_none(), "the admin secret stays in the filter");
    let token = pending(&vm, "grant", "quota:{u:ada}daily");
    vm.respond_to_callout(token, records(None, Some(Record { window: (0, 0, 0), used: 0, grant: 50 }))).unwrap();
    stream.poll().unwrap();
    let record = stream.finish();
    assert_eq!(record.local_reply.as_ref().map(|r| r.status), Some(200));
    assert!(record.upstream.headers.is_none());
}

// ----- corrections -----

/// Answers charges as a first request of the day, `adjust` calls with
/// `adjusts` in order (then 200), and counts the adjust calls.
fn corrections_webdis(host: &Host, adjusts: Vec<CalloutReply>) -> Arc<AtomicU32> {
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    host.on_callout("webdis", move |c| match call_of(c).op.as_str() {
        "adjust" => {
            let n = seen.fetch_add(1, Ordering::SeqCst) as usize;
            adjusts.get(n).cloned().unwrap_or_else(|| records(day(1), day(0)))
        }
        _ => records(None, day(1)),
    });
    count
}

#[test]
fn an_upstream_error_sends_a_refund_at_once_from_the_root() {
    let host = quota_host();
    corrections_webdis(&host, Vec::new());
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    assert_eq!(vm.tick_period(), Some(TICK));

    let r = vm
        .request()
        .method("POST")
        .path("/v1/daily")
        .header("x-user-id", "bo")
        .respond_json(500, r#"{"error":"boom"}"#)
        .send();
    r.assert_allowed();
    // Sent before any tick, by the root: it outlives the stream, and its answer comes to the root.
    let adjusts: Vec<Callout> = vm.callouts().into_iter().filter(|c| call_of(c).op == "adjust").collect();
    assert_eq!(adjusts.len(), 1);
    assert_eq!(adjusts[0].context_id, vm.root_context_id(), "sent by the root: it outlives the stream");
    assert_eq!(adjusts[0].for_stream, None, "from a root callback");
    let call = call_of(&adjusts[0]);
    assert_eq!(call.key, "quota:{u:bo}daily");
    assert_eq!(call.args, strings(&[DAY.1, -1, 9]), "the charged window, one unit back (at most 9 more)");
    assert!(call.id().is_some_and(|id| id != call_of(&r.callouts()[0]).id().unwrap_or("")), "an id of its own");

    host.advance(TICK * 4);
    assert_eq!(calls_of(&vm, "adjust").len(), 1, "sent once");
}

#[test]
fn a_refund_whose_callout_fails_is_retried_with_backoff_under_the_same_id() {
    let host = quota_host();
    let adjusts = corrections_webdis(&host, vec![CalloutReply::Failure, CalloutReply::status(503, "down")]);
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    vm.request()
        .method("POST")
        .path("/v1/daily")
        .header("x-user-id", "cy")
        .respond_json(502, "{}")
        .send()
        .assert_allowed();
    assert_eq!(adjusts.load(Ordering::SeqCst), 1, "the first attempt at once");

    // The second attempt 100 ms after the first failed, the third 200 ms after that.
    host.advance(TICK);
    assert_eq!(adjusts.load(Ordering::SeqCst), 1);
    host.advance(TICK);
    assert_eq!(adjusts.load(Ordering::SeqCst), 2);
    host.advance(TICK * 3);
    assert_eq!(adjusts.load(Ordering::SeqCst), 2);
    host.advance(TICK);
    assert_eq!(adjusts.load(Ordering::SeqCst), 3);
    host.advance(TICK * 40);
    assert_eq!(adjusts.load(Ordering::SeqCst), 3, "done once an attempt succeeded");
    let sent = calls_of(&vm, "adjust");
    assert!(sent.iter().all(|c| *c == sent[0]), "the same correction, the same id, each time: {sent:#?}");
    assert_eq!(host.counter("quota.store.errors"), 2);
    assert_eq!(host.counter("quota.store.corrections_dropped"), 0);
    assert!(!host.logs_containing("correction failed (attempt 2), will retry").is_empty());
}

/// A Redis that runs charges, adjusts and cancels as the script does (ids
/// remembered, a cancel before its charge wins), and whose answers can be
/// lost after it ran the call (a timeout on the way back).
#[derive(Default)]
struct FakeRedis {
    used: i64,
    /// Ids seen, with what a charge took (`None`: cancelled, or a correction).
    seen: std::collections::HashMap<String, Option<i64>>,
    /// Answers to lose: (operation, how many more).
    lose: Vec<(&'static str, u32)>,
}

impl FakeRedis {
    fn answer(&mut self, call: &Call) -> CalloutReply {
        let before = self.used;
        let id = call.id().map(str::to_string);
        match (call.op.as_str(), id) {
            ("charge", Some(id)) if !self.seen.contains_key(&id) => {
                // charge now cost ...
                self.used += call.args[1].parse::<i64>().unwrap();
                self.seen.insert(id, Some(call.args[1].parse().unwrap()));
            }
            ("adjust", Some(id)) if !self.seen.contains_key(&id) => {
                // adjust window_start delta most
                self.used += call.args[1].parse::<i64>().unwrap();
                self.seen.insert(id, None);
            }
            ("cancel", Some(id)) => {
                if let Some(Some(took)) = self.seen.insert(id, None) {
                    self.used -= took;
                }
            }
            _ => {}
        }
        if let Some((_, left)) = self.lose.iter_mut().find(|(op, left)| *op == call.op && *left > 0) {
            *left -= 1;
            return CalloutReply::Failure;
        }
        records(day(before), day(self.used))
    }
}

fn fake_redis(host: &Host, lose: Vec<(&'static str, u32)>) -> Arc<std::sync::Mutex<FakeRedis>> {
    let redis = Arc::new(std::sync::Mutex::new(FakeRedis { lose, ..FakeRedis::default() }));
    let shared = redis.clone();
    host.on_callout("webdis", move |c| shared.lock().unwrap().answer(&call_of(c)));
    redis
}

#[test]
fn a_refund_retried_after_a_lost_answer_applies_once() {
    let host = quota_host();
    // Redis runs the first attempt of the refund, but its answer never comes back.
    let redis = fake_redis(&host, vec![("adjust", 1)]);
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    for status in [200, 500] {
        vm.request().method("POST").path("/v1/daily").header("x-user-id", "ida").respond_json(status, "{}").send();
    }
    assert_eq!(redis.lock().unwrap().used, 1, "charged 2, refunded 1");
    host.advance(Duration::from_secs(1));
    let sent = calls_of(&vm, "adjust");
    assert_eq!(sent.len(), 2, "retried after the lost answer: {sent:#?}");
    assert_eq!(sent[0], sent[1], "under the same id");
    assert_eq!(redis.lock().unwrap().used, 1, "the retry changed nothing");
    assert_eq!(host.counter("quota.store.corrections_dropped"), 0);
}

#[test]
fn a_charge_that_timed_out_under_fail_closed_is_cancelled() {
    let host = quota_host();
    // Redis charges, and the answer is lost: Envoy's timeout.
    let redis = fake_redis(&host, vec![("charge", 1)]);
    let vm = redis_vm(&host, &redis_config("fail_closed"));

    let r = post(&vm, "/v1/daily", "ivo");
    r.assert_blocked(503);
    let charge = call_of(&r.callouts()[0]);
    let cancels = calls_of(&vm, "cancel");
    assert_eq!(cancels.len(), 1, "sent at once: {cancels:#?}");
    assert_eq!((cancels[0].key.as_str(), cancels[0].id()), (charge.key.as_str(), charge.id()));
    assert_eq!(redis.lock().unwrap().used, 0, "refused, and not charged");
    assert!(r.log_contains(&format!("cancelling charge {}", charge.id().unwrap())), "{r:?}");
    // The next request is charged as usual.
    let r = post(&vm, "/v1/daily", "ivo");
    r.assert_allowed();
    assert_eq!(redis.lock().unwrap().used, 1);
}

#[test]
fn a_charge_refused_before_redis_ran_it_is_not_cancelled() {
    let host = quota_host();
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    // webdis without Redis (or no webdis), and a Redis that refuses writes.
    for reply in [
        CalloutReply::status(503, "Service Unavailable"),
        CalloutReply::ok(r#"{"EVALSHA":[false,"READONLY You can't write against a read only replica."]}"#),
    ] {
        host.on_callout("webdis", move |_| reply.clone());
        post(&vm, "/v1/daily", "ike").assert_blocked(503);
    }
    assert!(calls_of(&vm, "cancel").is_empty(), "nothing ran, nothing to give back");
}

#[test]
fn a_charge_that_timed_out_under_fail_open_keeps_its_charge() {
    let host = quota_host();
    let redis = fake_redis(&host, vec![("charge", 1)]);
    let vm = redis_vm(&host, &redis_config("fail_open"));

    let r = post(&vm, "/v1/daily", "ivo");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-state"), Some("unavailable"));
    assert!(calls_of(&vm, "cancel").is_empty(), "the request went on: what Redis charged stands");
    assert_eq!(redis.lock().unwrap().used, 1);
}

#[test]
fn a_full_corrections_queue_drops_the_oldest_and_counts_and_reports_it() {
    let host = quota_host();
    // Redis takes every charge and fails every refund (each waits for its retry).
    host.on_callout("webdis", |c| match call_of(c).op.as_str() {
        "adjust" => CalloutReply::status(503, "down"),
        _ => records(None, day(1)),
    });
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    let refund = |user: &str| {
        vm.request().method("POST").path("/v1/daily").header("x-user-id", user).respond_json(500, "{}").send();
    };
    refund("first");
    let first = calls_of(&vm, "adjust").remove(0);
    // 10,000 corrections wait: the queue's bound.
    for i in 1..10_000 {
        refund(&format!("u{i}"));
    }
    assert_eq!(host.counter("quota.store.corrections_dropped"), 0);
    refund("last");
    assert_eq!(host.counter("quota.store.corrections_dropped"), 1, "the oldest made room");
    let lines = host.logs_containing("quota: correction dropped");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].level >= LogLevel::Error, "{}", lines[0]);
    let record: Value = serde_json::from_str(lines[0].message.split_once("dropped: ").unwrap().1).unwrap();
    assert_eq!(record["event"], "correction_dropped");
    assert_eq!(record["operation"], "adjust");
    assert_eq!(record["correction"], first.id().unwrap());
    assert_eq!((&record["user"], &record["class"], &record["delta"]), (&json!("first"), &json!("daily"), &json!(-1)));
    assert!(record["reason"].as_str().unwrap().contains("queue was full"), "{record}");
    // The event line too (events are logged by default).
    assert_eq!(host.logs_containing("quota-event {\"event\":\"correction_dropped\"").len(), 1);

    // An outage can drop one per request: ten a second are reported in full, the rest counted.
    for i in 0..14 {
        refund(&format!("more{i}"));
    }
    assert_eq!(host.counter("quota.store.corrections_dropped"), 15);
    assert_eq!(host.logs_containing("quota: correction dropped").len(), 10);
    host.advance(Duration::from_secs(1));
    let summary = host.logs_containing("quota: corrections dropped");
    assert_eq!(summary.len(), 1);
    assert!(summary[0].message.contains("\"count\":5"), "{}", summary[0]);
}

#[test]
fn a_correction_failing_past_its_budget_is_dropped_and_reported() {
    let host = quota_host();
    let adjusts = corrections_webdis(&host, vec![CalloutReply::status(503, "down"); 1000]);
    let vm = redis_vm(&host, &redis_config("fail_closed"));
    vm.request().method("POST").path("/v1/daily").header("x-user-id", "eve").respond_json(500, "{}").send();
    // Redis stays away for 150 s.
    host.advance(Duration::from_secs(150));
    let attempts = adjusts.load(Ordering::SeqCst);
    // 8 attempts in the first 11.3 s, backing off, then one every 5 s until 120 s.
    assert_eq!(attempts, 29);
    assert_eq!(host.counter("quota.store.corrections_dropped"), 1);
    let lines = host.logs_containing("quota: correction dropped");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].message.contains("every attempt failed for 120 s"), "{}", lines[0]);
}

// ----- approximate mode -----

#[test]
fn approximate_mode_admits_from_local_counters_without_a_callout() {
    let host = quota_host();
    let vm = redis_vm(&host, &approximate_config());

    let r = post(&vm, "/v1/daily", "dee");
    r.assert_allowed();
    assert!(r.callouts().is_empty(), "{r:?}");
    assert!(!r.paused(), "no request waits for Redis");
    assert_eq!(r.response_header("x-quota-used"), Some("1"));
    assert_eq!(r.response_header("x-quota-remaining"), Some("9"));
}

#[test]
fn approximate_mode_sends_the_admitted_units_on_the_tick() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &approximate_config());
    for _ in 0..3 {
        post(&vm, "/v1/daily", "eli").assert_allowed();
    }
    assert!(vm.callouts().is_empty());

    host.advance(Duration::from_millis(100));
    let sent = calls(&vm);
    assert_eq!(sent.len(), 1, "one add per counter per sync: {sent:#?}");
    assert_eq!(sent[0].verb, "EVALSHA");
    assert_eq!(sent[0].key, "quota:{u:eli}daily");
    assert_eq!(sent[0].op, "add");
    assert_eq!(sent[0].args, strings(&[NOW_S, 3, DAY.0, DAY.1, DAY.2]), "now, the 3 admitted units, the window");
    assert_eq!(vm.callouts()[0].context_id, vm.root_context_id());
}

#[test]
fn a_sync_answer_with_higher_global_usage_raises_the_local_counter() {
    let host = quota_host();
    // Other Envoys admitted 5 more: Redis holds 6 after this Envoy's 1.
    host.on_callout("webdis", |_| records(day(5), day(6)));
    let vm = redis_vm(&host, &approximate_config());
    post(&vm, "/v1/daily", "fay").assert_allowed();

    host.advance(Duration::from_millis(100));
    assert_eq!(calls_of(&vm, "add").len(), 1);
    let r = post(&vm, "/v1/daily", "fay");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("7"));
    assert_eq!(r.response_header("x-quota-remaining"), Some("3"));
}

#[test]
fn a_sync_answer_with_lower_global_usage_never_lowers_the_local_counter() {
    let host = quota_host();
    host.on_callout("webdis", |_| records(None, day(1)));
    let vm = redis_vm(&host, &approximate_config());
    for _ in 0..3 {
        post(&vm, "/v1/daily", "gus").assert_allowed();
    }

    host.advance(Duration::from_millis(100));
    assert_eq!(calls_of(&vm, "add").len(), 1);
    let r = post(&vm, "/v1/daily", "gus");
    assert_eq!(r.response_header("x-quota-used"), Some("4"), "{r:?}");
}

#[test]
fn a_failed_sync_is_retried_under_its_id_and_new_units_follow_in_the_next() {
    let host = quota_host();
    host.on_callout("webdis", |_| CalloutReply::Failure);
    let vm = redis_vm(&host, &approximate_config());
    post(&vm, "/v1/daily", "hal").assert_allowed();
    host.advance(Duration::from_millis(100));
    post(&vm, "/v1/daily", "hal").assert_allowed();

    host.on_callout("webdis", |_| records(day(2), day(4)));
    host.advance(Duration::from_millis(100));
    let adds = calls_of(&vm, "add");
    assert_eq!(adds.len(), 2, "{adds:#?}");
    // The failed sync may have applied: it goes again as it was, and applies once.
    assert_eq!(adds[1], adds[0], "the same sync, the same id");
    assert_eq!(adds[0].args[1], "1");
    // The new unit waited for it, and goes with the next sync.
    host.advance(Duration::from_millis(100));
    let adds = calls_of(&vm, "add");
    assert_eq!(adds.len(), 3, "{adds:#?}");
    assert_eq!(adds[2].args[1], "1");
    assert_ne!(adds[2].id(), adds[0].id());
}

#[test]
fn approximate_mode_bounds_its_unsynced_counters_and_counts_what_it_drops() {
    let host = quota_host();
    let vm = redis_vm(&host, &approximate_config());
    // 10,001 callers before any sync: the last one's unit has no room to wait.
    for i in 0..10_001 {
        post(&vm, "/v1/daily", &format!("u{i}")).assert_allowed();
    }
    assert_eq!(host.counter("quota.store.corrections_dropped"), 1);
    host.advance(Duration::from_millis(100));
    let lines = host.logs_containing("quota: sync deltas dropped");
    assert_eq!(lines.len(), 1, "one line per sync, however many were dropped");
    assert!(lines[0].message.contains("\"counters\":1"), "{}", lines[0]);
    assert!(lines[0].message.contains("\"delta\":1"), "{}", lines[0]);
}

// ----- configuration -----

#[test]
fn a_redis_store_without_its_redis_object_is_refused_with_its_path() {
    let host = quota_host();
    let mut config = redis_config("fail_open");
    config["counters"].as_object_mut().unwrap().remove("redis");
    let error = expect_config_rejected(start_quota_vm(&host, &config));
    let line = error
        .logs()
        .iter()
        .find(|l| l.message.contains("invalid configuration"))
        .unwrap_or_else(|| panic!("no 'invalid configuration' line in:\n{error}"));
    assert!(line.level >= LogLevel::Error, "{line}");
    assert!(line.message.contains("counters.redis"), "{line}");
    assert!(line.message.contains("required"), "{line}");
}

// ----- the lease mode -----

fn lease_config(on_error: &str) -> Value {
    let mut config = redis_config(on_error);
    config["counters"]["redis"]["mode"] = json!("lease");
    config["counters"]["redis"]["lease_ms"] = json!(1000);
    config["counters"]["redis"]["lease_fraction"] = json!(0.5);
    config
}

/// webdis's answer to a lease call: the records (after: `used` spent by
/// all), then granted now, this holder's granted and spent, the others' unspent.
fn lease_answer(after_used: i64, granted_now: i64, granted: i64, spent: i64, others: i64) -> CalloutReply {
    let numbers: Vec<i64> =
        flat(day(0)).into_iter().chain(flat(day(after_used))).chain([granted_now, granted, spent, others]).collect();
    CalloutReply::ok(json!({ "EVALSHA": numbers }).to_string())
}

#[test]
fn a_leased_block_is_asked_for_once_then_spent_without_calls_and_renewed_from_the_root() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &lease_config("fail_closed"));

    // The first request waits for a block: a lease call from this stream's request.
    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "lee"), true).unwrap();
    assert!(stream.record().upstream.headers.is_none(), "paused while Redis grants a block");
    let token = pending(&vm, "lease", "quota:{u:lee}daily");
    let call = calls_of(&vm, "lease").remove(0);
    assert_eq!(call.keys, vec!["quota:{u:lee}daily".to_string()], "no marker: a grant is never retried");
    // now, need 1, the holder, spent 0 in no window, give 0, half of what is left, no bound, warned, flags.
    assert_eq!(&call.args[..2], &strings(&[NOW_S, 1])[..]);
    assert!(call.args[2].bytes().all(|b| b.is_ascii_hexdigit()) && call.args[2].len() == 16, "{:?}", call.args);
    assert_eq!(&call.args[3..10], &strings(&[0, 0, 0, 500_000, -1, 0, 0])[..]);
    // Redis grants 5 (others spent 2 and hold 1 unspent).
    vm.respond_to_callout(token, lease_answer(2, 5, 5, 0, 1)).unwrap();
    stream.poll().unwrap();
    assert!(stream.request_complete());
    stream.send_response_headers(Headers::from_pairs([(":status", "200")]), true).unwrap();
    let record = stream.finish();
    assert_eq!(record.client.header("x-quota-used"), Some("3"), "the others' 2 and this one");
    assert_eq!(record.client.header("x-quota-remaining"), Some("7"));

    // The next two are admitted from the block: no call, nothing paused.
    for used in ["4", "5"] {
        let r = vm.request().method("POST").path("/v1/daily").header("x-user-id", "lee").send();
        r.assert_allowed();
        assert_eq!(r.response_header("x-quota-used"), Some(used));
    }
    // 2 of 5 left after the last: under half the block, so that request
    // asked for the next one, which the root sent at once (no tick needed).
    let renewals: Vec<Callout> = vm.pending_callouts().into_iter().filter(|c| call_of(c).op == "lease").collect();
    assert_eq!(renewals.len(), 1);
    assert_eq!(renewals[0].context_id, vm.root_context_id(), "a renewal outlives the request that asked for it");
    let renewal = call_of(&renewals[0]);
    assert_eq!(renewal.args[1], "0", "asks for no units beyond a block");
    assert_eq!(&renewal.args[3..6], &strings(&[3, DAY.1, 0])[..], "spent 3 in today's window, gives nothing back");
    vm.respond_to_callout(renewals[0].token, lease_answer(5, 2, 7, 3, 0)).unwrap();
    for used in ["6", "7", "8", "9"] {
        let r = vm.request().method("POST").path("/v1/daily").header("x-user-id", "lee").send();
        r.assert_allowed();
        assert_eq!(r.response_header("x-quota-used"), Some(used));
    }
    assert_eq!(host.counter("quota.store.errors"), 0);
}

#[test]
fn a_lease_redis_cannot_grant_is_refused_at_the_wall_and_a_failed_call_applies_the_fail_policy() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &lease_config("fail_closed"));
    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "max"), true).unwrap();
    let token = pending(&vm, "lease", "quota:{u:max}daily");
    // Nothing left: the others spent 7 and hold 3.
    vm.respond_to_callout(token, lease_answer(7, 0, 0, 0, 3)).unwrap();
    stream.poll().unwrap();
    let record = stream.finish();
    assert_eq!(record.client.header(":status"), Some("429"), "{record:?}");
    assert_eq!(record.client.header("x-quota-remaining"), Some("0"));
    assert_eq!(calls_of(&vm, "lease").len(), 1, "one call per request");

    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "nia"), true).unwrap();
    let token = pending(&vm, "lease", "quota:{u:nia}daily");
    vm.respond_to_callout(token, CalloutReply::status(503, "")).unwrap();
    stream.poll().unwrap();
    let record = stream.finish();
    assert_eq!(record.client.header(":status"), Some("503"), "fail closed without a block");
}

#[test]
fn an_idle_block_is_given_back_once_its_lifetime_is_over_by_a_release_retried_under_one_id() {
    let host = quota_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = redis_vm(&host, &lease_config("fail_closed"));
    let mut stream = vm.stream().unwrap();
    stream.send_request_headers(request_headers("POST", "/v1/daily", "ida"), true).unwrap();
    let token = pending(&vm, "lease", "quota:{u:ida}daily");
    vm.respond_to_callout(token, lease_answer(0, 5, 5, 0, 0)).unwrap();
    stream.poll().unwrap();
    stream.send_response_headers(Headers::from_pairs([(":status", "200")]), true).unwrap();
    stream.finish();
    // Within the block's lifetime nothing goes back.
    host.advance(Duration::from_millis(900));
    assert_eq!(calls_of(&vm, "lease").len(), 1);
    // Past it, the root gives the 4 unspent units back, reporting the 1 spent, under an id.
    host.advance(Duration::from_millis(400));
    let releases: Vec<Call> = calls_of(&vm, "lease").into_iter().skip(1).collect();
    assert_eq!(releases.len(), 1, "{releases:?}");
    let release = &releases[0];
    assert_eq!(&release.args[3..6], &strings(&[1, DAY.1, 4])[..], "spent 1, gives back 4");
    let id = release.id().expect("a release carries an id").to_string();
    // Its first attempt fails: retried under the same id, then answered.
    let first = pending(&vm, "lease", "quota:{u:ida}daily");
    vm.respond_to_callout(first, CalloutReply::status(503, "")).unwrap();
    host.advance(Duration::from_millis(150));
    let retry = calls_of(&vm, "lease").into_iter().last().unwrap();
    assert_eq!((retry.id(), &retry.args[5]), (Some(id.as_str()), &"4".to_string()));
    let token = pending(&vm, "lease", "quota:{u:ida}daily");
    vm.respond_to_callout(token, lease_answer(1, 0, 1, 1, 0)).unwrap();
    host.advance(TICK * 10);
    assert_eq!(calls_of(&vm, "lease").len(), 3, "nothing more to give back");
    assert_eq!(host.counter("quota.store.corrections_dropped"), 0);
}
