//! A body the filter reads never outgrows what Envoy will hold. Envoy adds
//! each chunk of a held body to its buffer before the filter sees it, and
//! answers a plain 413 itself once that passes the stream's buffer limit (the
//! host's `request_buffer_limit`). The filter holds at most `max_body_bytes`,
//! and none of a body whose `content-length` is over the cap; so a stream limit
//! with room for the cap plus one read from the client (what every Envoy config
//! in `envoy/harness.py` gives) means the filter's answer, every time.

use host_tests::{Action, Exchange, Host, Phase, Vm};
use serde_json::{json, Value};

use crate::util::quota_host;

const CHAT: &str = "/v1/chat/completions";
/// The filter's default `max_body_bytes`.
const CAP: usize = 256 * 1024;
/// One large read from a client: the listener's 32 KiB and a 16 KiB slice
/// (what Envoy 1.40 was seen to read at once with a 32 KiB listener limit).
const READ: usize = 48 * 1024;
/// The stream limit the shipped configs set: the cap and twice the listener's limit.
const ROOM: usize = CAP + 2 * 32 * 1024;

/// Two classes on one path, told apart by the body's model (so every body is
/// read): `research`, the strictest, and `chat`.
fn config(unreadable_body: &str, hold_headers: bool) -> Value {
    json!({
        "identity": { "user": [{ "header": "x-user-id" }], "default_tier": "pro" },
        "classes": [
            { "name": "research", "label": "Research", "unit": "call",
              "match": [{ "methods": ["POST"], "path": { "exact": CHAT },
                          "body": [{ "field": "model", "equals": "o3-deep-research" }] }] },
            { "name": "chat", "label": "Chat", "unit": "chat",
              "match": [{ "methods": ["POST"], "path": { "exact": CHAT } }] }
        ],
        "tiers": { "pro": { "limits": {
            "research": { "hard": 1000, "window": "day" },
            "chat": { "hard": 2000, "window": "day" }
        } } },
        "unreadable_body": unreadable_body,
        "hold_headers_for_body": hold_headers
    })
}

fn vm(host: &Host, config: &Value, stream_limit: usize) -> Vm {
    match host
        .vm_builder()
        .vm_id("quota")
        .root_id("quota")
        .plugin_config(config.to_string())
        .allow_on_headers_stop_iteration(true)
        .request_buffer_limit(stream_limit)
        .start()
    {
        Ok(vm) => vm,
        Err(error) => panic!("the quota filter refused to start: {error}"),
    }
}

/// A chat request of exactly `size` bytes, valid JSON.
fn chat_body(model: &str, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":""#);
    let tail = r#""}]}"#;
    let mut body = head.into_bytes();
    body.resize(size - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The worst case for the filter: exactly the cap held, then the largest read.
fn cap_then_reads(body: &[u8]) -> Vec<Vec<u8>> {
    let (first, rest) = body.split_at(CAP);
    std::iter::once(first.to_vec()).chain(rest.chunks(READ).map(<[u8]>::to_vec)).collect()
}

fn post(vm: &Vm, chunks: Vec<Vec<u8>>, content_length: Option<usize>) -> Exchange {
    let mut request = vm.request().method("POST").path(CHAT).header("x-user-id", "ann");
    if let Some(length) = content_length {
        request = request.header("content-length", &length.to_string());
    }
    request.header("content-type", "application/json").body_chunks(chunks).send()
}

fn assert_filters_413(r: &Exchange) {
    assert!(!r.payload_too_large(), "Envoy's own 413: {r:?}");
    let reply = r.assert_blocked(413);
    assert_eq!(reply.body_json()["error"]["code"], "body_too_large", "{r:?}");
}

#[test]
fn a_chunked_body_over_the_cap_gets_the_filters_answer_never_envoys_413() {
    let host = quota_host();
    let body = chat_body("gpt-4o", 2 * 1024 * 1024);
    for hold in [true, false] {
        let strictest = vm(&host, &config("strictest", hold), ROOM);
        let r = post(&strictest, cap_then_reads(&body), None);
        assert!(!r.payload_too_large(), "hold {hold}: {r:?}");
        r.assert_allowed();
        assert_eq!(r.response_header("x-quota-class"), Some("research"), "{r:?}");
        assert!(r.upstream_body() == body.as_slice(), "hold {hold}: the upstream got every byte");

        let refusing = vm(&host, &config("refuse", hold), ROOM);
        assert_filters_413(&post(&refusing, cap_then_reads(&body), None));
    }
}

#[test]
fn a_body_whose_length_is_over_the_cap_is_not_held_at_all() {
    let host = quota_host();
    let body = chat_body("gpt-4o", 2 * 1024 * 1024);
    let megabytes = || body.chunks(1024 * 1024).map(<[u8]>::to_vec).collect::<Vec<_>>();
    // Even a stream limit below the cap cannot be outgrown: nothing is held.
    let tight = 16 * 1024;
    let strictest = vm(&host, &config("strictest", true), tight);
    let r = post(&strictest, megabytes(), Some(body.len()));
    assert!(!r.payload_too_large(), "{r:?}");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-class"), Some("research"), "{r:?}");
    assert!(r.upstream_body() == body.as_slice(), "the upstream got every byte");
    assert_eq!(r.actions().first(), Some(&(Phase::RequestHeaders, Action::Continue)), "decided at the head");
    assert!(!r.actions().contains(&(Phase::RequestBody, Action::Pause)), "no chunk held: {r:?}");

    let refusing = vm(&host, &config("refuse", true), tight);
    let r = post(&refusing, megabytes(), Some(body.len()));
    assert_filters_413(&r);
    assert!(r.upstream().is_none_or(|u| u.body.is_empty()), "nothing forwarded: {r:?}");
}

#[test]
fn a_body_within_the_cap_is_read_and_classified_by_its_model() {
    let host = quota_host();
    let body = chat_body("o3-deep-research", CAP);
    let refusing = vm(&host, &config("refuse", true), ROOM);
    for length in [None, Some(body.len())] {
        let r = post(&refusing, body.chunks(READ).map(<[u8]>::to_vec).collect(), length);
        r.assert_allowed();
        assert_eq!(r.response_header("x-quota-class"), Some("research"), "{r:?}");
    }
}

/// Why the configs give the stream room for one more read: with only the cap,
/// the read that takes a chunked body past it is added before the filter can
/// let go, and Envoy answers its own plain 413 (the bug this file guards).
#[test]
fn a_stream_limit_without_room_for_one_more_read_gets_envoys_own_413() {
    let host = quota_host();
    let body = chat_body("gpt-4o", 2 * 1024 * 1024);
    let no_room = vm(&host, &config("strictest", true), CAP);
    let r = post(&no_room, cap_then_reads(&body), None);
    assert!(r.payload_too_large(), "{r:?}");
    assert_eq!((r.status(), r.response_text().as_str()), (Some(413), "Payload Too Large"));
    assert!(r.local_reply().is_none(), "the filter never answered: {r:?}");

    // Room for exactly one read is enough.
    let just_enough = vm(&host, &config("strictest", true), CAP + READ);
    let r = post(&just_enough, cap_then_reads(&body), None);
    assert!(!r.payload_too_large(), "{r:?}");
    r.assert_allowed();
}
