//! Bodies: Envoy's buffering on Pause, rewrites, streamed (SSE) responses.

use crate::util::echo_host;
use host_tests::{Action, Phase, UpstreamResponse};

#[test]
fn paused_body_chunks_accumulate_and_the_filter_sees_the_whole_body() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().method("POST").header("x-echo-action", "body").body_chunks(["hello ", "big ", "world"]).send();
    r.assert_allowed();
    assert_eq!(r.upstream_body(), b"HELLO BIG WORLD");
    assert!(r.log_contains("body of 15 bytes in 3 chunks"));
    assert_eq!(
        r.actions()[..4],
        [
            (Phase::RequestHeaders, Action::Continue),
            (Phase::RequestBody, Action::Pause),
            (Phase::RequestBody, Action::Pause),
            (Phase::RequestBody, Action::Continue),
        ]
    );
    assert_eq!(r.record().body_writes, 1);
    // The histogram saw the growing buffer: 6, 10, 15 bytes.
    assert_eq!(host.metric("echo.sizes").unwrap().samples, vec![6, 10, 15]);
}

#[test]
fn continued_body_chunks_flow_one_by_one() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().method("POST").body_chunks(["a", "b"]).send();
    r.assert_allowed();
    assert_eq!(r.record().upstream.chunks, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn server_sent_events_reach_the_client_chunk_by_chunk() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().respond_sse([r#"{"delta":"hi"}"#, r#"{"usage":{"total_tokens":7}}"#, "[DONE]"]).send();
    r.assert_allowed();
    assert_eq!(r.response_header("content-type"), Some("text/event-stream"));
    assert_eq!(r.response().chunks.len(), 3);
    assert!(r.response_text().ends_with("data: [DONE]\n\n"));
    let chunk_logs = r.logs().iter().filter(|l| l.message.starts_with("response chunk")).count();
    assert_eq!(chunk_logs, 3);
    assert!(r.log_contains("eos=true"));
}

#[test]
fn a_buffered_response_can_be_rewritten_at_the_end() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm
        .request()
        .header("x-echo-action", "rewrite-response")
        .respond_with(UpstreamResponse::new(200, [("content-type", "text/plain")], ["one ", "two"]))
        .send();
    r.assert_allowed();
    assert_eq!(r.response_text(), "rewritten");
}

#[test]
fn request_trailers_follow_the_body() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().method("POST").body("x").trailer("grpc-status", "0").send();
    r.assert_allowed();
    assert_eq!(r.upstream().unwrap().trailers.as_ref().and_then(|t| t.get("grpc-status")), Some("0"));
}
