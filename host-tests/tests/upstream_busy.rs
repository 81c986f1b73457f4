//! An upstream's own busy answer (429, 503, 529) through the compiled filter:
//! its status and `Retry-After` stay, its body is replaced chunk by chunk by
//! the filter's friendly answer, the charge goes back, and a stat and an
//! event say so. Only the upstream's status decides.

use crate::util::{flushed_counter, quota_host, quota_vm};
use host_tests::{UpstreamResponse, Vm};
use serde_json::{json, Value};

/// `drafts` (1 a request, 10 a day) on the OpenAI path, `messages` on
/// Anthropic's, `chat` metered in tokens.
fn config(extra: Value) -> Value {
    let mut doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "classes": [
            {"name": "drafts", "unit": "draft", "match": [{"methods": ["POST"], "path": {"exact": "/v1/chat/completions"}}]},
            {"name": "messages", "unit": "message", "match": [{"methods": ["POST"], "path": {"exact": "/v1/messages"}}]},
            {"name": "chat", "match": [{"methods": ["POST"], "path": {"exact": "/v1/responses"}}],
             "cost": {"tokens": {"default_max_tokens": 100}}}
        ],
        "tiers": {"free": {"limits": {
            "drafts": {"hard": 10, "window": "day"},
            "messages": {"hard": 10, "window": "day"},
            "chat": {"hard": 100000, "window": "day"}
        }}},
        "observability": {"metrics": true, "log_events": true}
    });
    if let (Value::Object(top), Value::Object(more)) = (&mut doc, extra) {
        top.extend(more);
    }
    doc
}

fn vm(extra: Value) -> (host_tests::Host, Vm) {
    let host = quota_host();
    host.set_time_rfc3339("2024-03-05T20:00:00Z");
    let vm = quota_vm(&host, &config(extra));
    (host, vm)
}

fn send(vm: &Vm, path: &str, response: UpstreamResponse) -> host_tests::Exchange {
    vm.request()
        .method("POST")
        .path(path)
        .header("x-user-id", "pat")
        .json_body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .respond_with(response)
        .send()
}

fn ok(vm: &Vm, path: &str) -> host_tests::Exchange {
    send(vm, path, UpstreamResponse::json(200, r#"{"usage":{"total_tokens":10}}"#))
}

#[test]
fn a_busy_upstream_is_answered_friendly_and_charges_nothing() {
    let (host, vm) = vm(json!({}));
    assert_eq!(ok(&vm, "/v1/chat/completions").response_header("x-quota-used"), Some("1"));
    let upstream = UpstreamResponse::new(
        429,
        [
            ("content-type", "application/json"),
            ("content-length", "52"),
            ("retry-after", "7"),
            ("x-request-id", "req-1"),
            ("content-encoding", "identity"),
        ],
        [&br#"{"error":{"message":"Rate limit reached for "#[..], &br#"org-1 on requests"}}"#[..]],
    );
    let r = send(&vm, "/v1/chat/completions", upstream);
    r.assert_no_trap();
    assert_eq!(r.status(), Some(429));
    let headers = r.response_headers();
    assert_eq!(headers.get("retry-after"), Some("7"), "the upstream's kept\n{headers:?}");
    assert_eq!(headers.get("x-should-retry"), Some("true"));
    assert_eq!(headers.get("x-request-id"), Some("req-1"));
    assert_eq!(headers.get("content-type"), Some("application/json"));
    assert_eq!(headers.get("content-length"), None, "the body changed");
    assert_eq!(headers.get("content-encoding"), None);
    // The standing before the request: it charged nothing.
    assert_eq!(headers.get("x-quota-used"), Some("1"));
    assert_eq!(headers.get("x-quota-cost"), Some("0"));
    let body = r.response_json();
    assert_eq!(body["error"]["code"], "upstream_busy", "{body}");
    assert_eq!(
        body["error"]["message"],
        "The model is busy right now, so this request didn't go through. It didn't count against your allowance. \
         Try again in 7 s."
    );
    assert!(!r.response_text().contains("org-1"), "nothing of the upstream's body passes");
    assert!(
        r.log_contains("replaced the upstream's busy answer (429), which began: {\\\"error\\\""),
        "{}",
        r.describe()
    );
    assert!(r.log_contains("\"event\":\"upstream_busy\""), "{}", r.describe());
    assert_eq!(flushed_counter(&host, &vm, "quota.drafts.free.upstream_busy"), 1);
    // The next request finds its counter as the busy one left it.
    assert_eq!(ok(&vm, "/v1/chat/completions").response_header("x-quota-used"), Some("2"));
}

#[test]
fn a_streamed_busy_answer_is_replaced_without_holding_it() {
    let (_host, vm) = vm(json!({}));
    let events = UpstreamResponse::new(
        503,
        [("content-type", "text/event-stream")],
        (0..50).map(|i| format!("data: {{\"error\": \"overloaded {i}\"}}\n\n").into_bytes()),
    );
    let r = send(&vm, "/v1/responses", events);
    r.assert_no_trap();
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.response_header("retry-after"), Some("2"), "the configured wait, the upstream said none");
    assert_eq!(r.response_header("content-type"), Some("application/json"));
    assert_eq!(r.response_json()["error"]["code"], "upstream_busy");
    assert!(!r.response_text().contains("overloaded"));
    // Every chunk went on as it came (none held).
    assert!(r.actions().iter().all(|(_, a)| *a == host_tests::Action::Continue), "{:?}", r.actions());
    // Nothing of the busy request is left: the next one finds only its own charge.
    let next = ok(&vm, "/v1/responses");
    assert_eq!(next.response_header("x-quota-used"), next.response_header("x-quota-cost"));
}

#[test]
fn a_busy_answer_without_a_body_gets_the_filters_body() {
    let (_host, vm) = vm(json!({}));
    let r = send(&vm, "/v1/messages", UpstreamResponse::new(529, [("x-upstream", "1")], Vec::<Vec<u8>>::new()));
    r.assert_no_trap();
    assert_eq!(r.status(), Some(529));
    let body = r.response_json();
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("overloaded_error")),
        "{body}"
    );
    assert_eq!(r.response_header("x-should-retry"), Some("true"));
    assert_eq!(ok(&vm, "/v1/messages").response_header("x-quota-used"), Some("1"));
}

#[test]
fn an_anthropic_request_gets_anthropics_busy_envelope() {
    let (_host, vm) = vm(json!({}));
    let r = send(
        &vm,
        "/v1/messages",
        UpstreamResponse::json(529, r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
    );
    assert_eq!(r.status(), Some(529));
    let body = r.response_json();
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("The model is busy right now")));
    assert_eq!(body["error"]["quota"]["class"], "messages");
}

#[test]
fn a_success_that_looks_busy_is_charged() {
    // The caller asks to look busy; the upstream answers 200 with a body and
    // headers that say "busy": only the status decides.
    let (host, vm) = vm(json!({}));
    let r = vm
        .request()
        .method("POST")
        .path("/v1/chat/completions")
        .header("x-user-id", "pat")
        .header("x-should-retry", "true")
        .header("x-quota-state", "upstream_busy")
        .json_body(r#"{"model":"m"}"#)
        .respond(
            200,
            [("content-type", "application/json"), ("x-should-retry", "true"), ("retry-after", "1")],
            [r#"{"error":{"type":"overloaded_error","code":"upstream_busy"}}"#],
        )
        .send();
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("1"));
    assert_eq!(r.response_json()["error"]["type"], "overloaded_error", "the upstream's body, untouched");
    assert_eq!(flushed_counter(&host, &vm, "quota.drafts.free.upstream_busy"), 0);
    assert_eq!(ok(&vm, "/v1/chat/completions").response_header("x-quota-used"), Some("2"));
}

#[test]
fn with_busy_answers_off_the_upstreams_body_passes() {
    let (_host, vm) = vm(json!({"upstream_busy": {"enabled": false}}));
    let r = send(&vm, "/v1/chat/completions", UpstreamResponse::json(429, r#"{"error":{"message":"slow down"}}"#));
    assert_eq!(r.status(), Some(429));
    assert_eq!(r.response_json()["error"]["message"], "slow down");
    assert_eq!(r.response_header("x-should-retry"), None);
}

#[test]
fn openai_ratelimit_headers_when_asked_for() {
    let (_host, vm) = vm(json!({"response_headers": {"openai_ratelimit": true}}));
    let r = ok(&vm, "/v1/chat/completions");
    assert_eq!(r.response_header("x-ratelimit-limit-requests"), Some("10"));
    assert_eq!(r.response_header("x-ratelimit-remaining-requests"), Some("9"));
    assert_eq!(r.response_header("x-ratelimit-reset-requests"), Some("4h0m0s"));
    let r = ok(&vm, "/v1/responses");
    assert_eq!(r.response_header("x-ratelimit-limit-tokens"), Some("100000"));
    assert_eq!(r.response_header("x-ratelimit-reset-tokens"), Some("4h0m0s"));
}
