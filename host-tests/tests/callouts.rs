//! HTTP callouts: recorded, answered (immediately or by the test), resuming streams.

use std::time::Duration;

use crate::util::echo_host;
use host_tests::{CalloutPolicy, CalloutReply, Headers};

#[test]
fn a_callout_is_recorded_and_its_answer_resumes_the_request() {
    let host = echo_host();
    host.on_callout("echo-cluster", |call| {
        assert_eq!(call.body, b"ping");
        CalloutReply::status(204, Vec::new())
    });
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "callout").header("x-user-id", "gina").send();
    r.assert_allowed();
    let call = &r.callouts()[0];
    assert_eq!(call.cluster, "echo-cluster");
    assert_eq!(call.header(":path"), Some("/check"));
    assert_eq!(call.header("x-user"), Some("gina"));
    assert_eq!(call.timeout, Duration::from_millis(250));
    assert_eq!(r.upstream_header("x-callout-status"), Some("204"));
    assert!(r.resumed());
}

#[test]
fn a_held_callout_leaves_the_request_paused_until_the_test_answers() {
    let host = echo_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = host.vm("{}").unwrap();
    let mut stream = vm.stream().unwrap();
    let headers =
        Headers::from_pairs([(":method", "GET"), (":path", "/"), (":authority", "a"), ("x-echo-action", "callout")]);
    stream.send_request_headers(headers, true).unwrap();
    assert!(stream.record().upstream.headers.is_none(), "paused");
    let pending = vm.pending_callouts();
    assert_eq!(pending.len(), 1);

    vm.respond_to_callout(pending[0].token, CalloutReply::ok("pong")).unwrap();
    stream.poll().unwrap();
    assert!(stream.request_complete());
    assert_eq!(stream.record().upstream.header("x-callout-status"), Some("200"));
    let record = stream.finish();
    assert_eq!(record.request_resumes, 1);
    assert!(!host.logs_containing("callout answered 200: pong").is_empty());
}

#[test]
fn a_request_whose_callout_is_never_answered_stalls() {
    let host = echo_host();
    host.set_callout_policy(CalloutPolicy::Hold);
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "callout").send();
    assert!(r.stalled());
    assert_eq!(r.status(), None);
    assert_eq!(r.record().cancelled_callouts.len(), 1, "Envoy cancels it with the stream");
}

#[test]
fn a_failed_callout_reaches_the_guest_without_headers() {
    let host = echo_host();
    host.on_callout("echo-cluster", |_| CalloutReply::Failure);
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "callout").send();
    r.assert_allowed();
    assert_eq!(r.upstream_header("x-callout-status"), Some("none"));
}

#[test]
fn a_callout_to_an_unknown_cluster_is_refused() {
    let host = echo_host();
    host.set_known_clusters(&["analytics"]);
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "callout").send();
    r.assert_allowed();
    assert!(r.log_contains("callout refused: BadArgument"));
    assert!(r.callouts().is_empty());
}

#[test]
fn root_context_callouts_are_answered_too() {
    let host = echo_host();
    host.on_callout("echo-cluster", |_| CalloutReply::ok("cfg"));
    let vm = host.vm("root-callout").unwrap();
    assert_eq!(vm.callouts().len(), 1);
    assert!(!host.logs_containing("root callout 1 answered: cfg").is_empty());
}
