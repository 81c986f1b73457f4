//! What callers see: quota headers on admitted responses, and at the wall a 429
//! that never reaches the upstream, with the headers and the friendly body.

use crate::util::{demo_config, post, quota_host, quota_vm, windows_config};

#[test]
fn admitted_responses_carry_the_quota_headers() {
    let host = quota_host();
    host.set_time_rfc3339("2024-03-05T20:00:00Z");
    let vm = quota_vm(&host, &windows_config(10));
    let r = post(&vm, "/v1/daily", "pat");
    r.assert_allowed();
    for (name, value) in [
        ("x-quota-class", "daily"),
        ("x-quota-tier", "free"),
        ("x-quota-scope", "user"),
        ("x-quota-used", "1"),
        ("x-quota-limit", "10"),
        ("x-quota-remaining", "9"),
        ("x-quota-reset", "2024-03-06T00:00:00Z"),
        ("x-quota-reset-after", "14400"),
        ("x-quota-state", "ok"),
        ("x-quota-cost", "1"),
        ("ratelimit-policy", "\"daily\";q=10;w=86400"),
        ("ratelimit", "\"daily\";r=9;t=14400"),
    ] {
        assert_eq!(r.response_header(name), Some(value), "{name}\n{r:?}");
    }
}

#[test]
fn the_upstreams_headers_stay_as_they_were_and_its_quota_headers_give_way() {
    let host = quota_host();
    host.set_time_rfc3339("2024-03-05T20:00:00Z");
    let vm = quota_vm(&host, &windows_config(10));
    let r = vm
        .request()
        .method("POST")
        .path("/v1/daily")
        .header("x-user-id", "pat")
        .respond(
            200,
            [
                ("content-type", "application/json"),
                ("set-cookie", "a=1"),
                ("RateLimit", "\"upstream\";r=0;t=1"),
                ("set-cookie", "b=2"),
                ("x-quota-remaining", "999"),
                ("x-request-id", "r-1"),
            ],
            [r#"{"ok":true}"#],
        )
        .send();
    r.assert_allowed();
    let client = r.response_headers();
    assert_eq!(client.get_all("set-cookie"), ["a=1", "b=2"], "{client:?}");
    assert_eq!(client.get(":status"), Some("200"));
    assert_eq!(client.get("content-type"), Some("application/json"));
    assert_eq!(client.get("x-request-id"), Some("r-1"));
    // The filter's own values replace the upstream's copies, one value each.
    assert_eq!(client.get_all("ratelimit"), ["\"daily\";r=9;t=14400"], "{client:?}");
    assert_eq!(client.get_all("x-quota-remaining"), ["9"], "{client:?}");
}

#[test]
fn blocked_request_gets_a_429_with_headers_and_a_friendly_body() {
    let host = quota_host();
    host.set_time_rfc3339("2024-03-05T20:00:00Z");
    let vm = quota_vm(&host, &windows_config(2));
    post(&vm, "/v1/daily", "quinn").assert_allowed();
    post(&vm, "/v1/daily", "quinn").assert_allowed();

    let r = post(&vm, "/v1/daily", "quinn");
    r.assert_blocked(429);
    assert!(r.upstream().is_none(), "the upstream never saw the blocked request");
    assert_eq!(r.status(), Some(429));
    for (name, value) in [
        ("x-quota-state", "blocked"),
        ("x-quota-used", "2"),
        ("x-quota-remaining", "0"),
        ("x-quota-cost", "0"),
        ("retry-after", "14400"),
        ("ratelimit", "\"daily\";r=0;t=14400"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(r.response_header(name), Some(value), "{name}\n{r:?}");
    }
    let body = r.response_json();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["quota"]["used"], 2);
    assert_eq!(body["error"]["quota"]["reset"], "2024-03-06T00:00:00Z");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("You've used your 2 drafts for today"), "{message}");
    assert!(message.contains("4 h"), "the reset time in words: {message}");
    // A single-tier matrix has nothing to upgrade to: no hint.
    assert_eq!(r.response_header("x-quota-upgrade"), None);
    // Counted once per crossing, never charged for the refusal.
    let mut buckets = host.shared_data().entries("quota");
    // Beside the buckets, the process's seed for placing counters in them.
    assert!(buckets.remove(quota_core::table::SEED_KEY).is_some());
    assert_eq!(buckets.len(), 1, "one bucket of the counter table");
    let counters: usize = buckets.values().map(|v| quota_core::table::entries(v).len()).sum();
    assert_eq!(counters, 1, "one counter record for (user, class)");
}

#[test]
fn the_block_body_follows_accept() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(1));
    post(&vm, "/v1/daily", "ray").assert_allowed();
    let r = vm
        .request()
        .method("POST")
        .path("/v1/daily")
        .header("x-user-id", "ray")
        .header("accept", "application/problem+json")
        .send();
    r.assert_blocked(429);
    assert_eq!(r.response_header("content-type"), Some("application/problem+json"));
    assert_eq!(r.response_json()["violated-policies"][0], "daily");
}

#[test]
fn client_sent_quota_headers_never_reach_the_upstream() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(5));
    let r = vm
        .request()
        .method("POST")
        .path("/v1/daily")
        .header("x-user-id", "sam")
        .header("x-quota-used", "0")
        .header("x-quota-state", "ok")
        .send();
    r.assert_allowed();
    assert_eq!(r.upstream_header("x-quota-used"), None);
    assert_eq!(r.upstream_header("x-quota-state"), None);
    assert_eq!(r.upstream_header("x-user-id"), Some("sam"));
}

#[test]
fn classification_by_body_holds_the_headers_until_the_decision() {
    // The demo config reads the body's model (hold_headers_for_body: true).
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    let r = vm
        .request()
        .method("POST")
        .path("/v1/chat/completions")
        .header("x-user-id", "tia")
        .json_body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
        .send();
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-class"), Some("summaries"));
    assert_eq!(r.upstream_json()["model"], "gpt-4o-mini");
}

#[test]
fn without_allow_on_headers_stop_iteration_a_held_request_hangs_as_in_envoy() {
    // What the README warns about: Envoy stops delivering the body to a filter
    // that paused the headers, unless the plugin allows it.
    let host = quota_host();
    let vm = host.vm_builder().vm_id("quota").plugin_config(demo_config().to_string()).start().unwrap();
    let r = vm
        .request()
        .method("POST")
        .path("/v1/chat/completions")
        .header("x-user-id", "uma")
        .json_body(r#"{"model":"gpt-4o-mini"}"#)
        .send();
    assert!(r.stalled(), "{r:?}");
    assert!(r.upstream().is_none());
}

#[test]
fn a_blocked_request_classified_by_its_body_sends_nothing_upstream() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    let send = || {
        vm.request()
            .method("POST")
            .path("/v1/chat/completions")
            .header("x-user-id", "val")
            .json_body(r#"{"model":"gpt-4o-mini"}"#)
            .send()
    };
    for _ in 0..5 {
        send().assert_allowed();
    }
    let r = send();
    r.assert_blocked(429);
    assert!(r.upstream().is_none());
    assert!(!r.record().upstream_reset);
}
