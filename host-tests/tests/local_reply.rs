//! Local replies: recorded as sent, and as the client finally sees them.

use crate::util::echo_host;

#[test]
fn a_local_reply_stops_the_request_and_runs_through_the_response_callbacks() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "block").send();
    let reply = r.assert_blocked(429);
    assert_eq!(reply.header("x-echo-blocked"), Some("yes"));
    assert_eq!(reply.body_json()["error"], "blocked");
    assert_eq!(reply.grpc_status, None);
    assert!(r.upstream().is_none(), "the upstream never saw it");

    // What the client got: Envoy's local reply headers, then the filter's own
    // on_response_headers ran on it (as Envoy encodes local replies).
    assert_eq!(r.status(), Some(429));
    assert_eq!(r.response_header("content-type"), Some("application/json"));
    assert_eq!(r.response_header("content-length"), Some("19"));
    assert_eq!(r.response_header("x-echo-phase"), Some("response"));
    assert_eq!(r.response_json()["error"], "blocked");
}

#[test]
fn local_replies_can_skip_the_response_callbacks_when_asked() {
    let host = echo_host();
    host.set_local_reply_runs_encoder(false);
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "block").send();
    assert_eq!(r.status(), Some(429));
    assert_eq!(r.response_header("x-echo-phase"), None);
}

#[test]
fn a_local_reply_from_the_body_phase_resets_the_upstream_request() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().method("POST").header("x-echo-action", "block-on-body").body_chunks(["a", "b"]).send();
    r.assert_blocked(403);
    assert!(r.record().upstream_reset, "headers went upstream, then the stream was cut");
    assert_eq!(r.response_text(), "no");
    assert_eq!(r.response_header("content-type"), Some("text/plain"));
}
