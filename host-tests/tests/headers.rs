//! Header maps: what the upstream and the client see after the filter, and when
//! Envoy lets the filter touch them.

use crate::util::echo_host;
use host_tests::{Action, Phase};

#[test]
fn the_upstream_sees_request_headers_as_the_filter_left_them() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm
        .request()
        .method("POST")
        .path("/v1/chat/completions")
        .header("x-strip-me", "secret")
        .header("X-User-Id", "alice")
        .send();
    r.assert_allowed();
    let upstream = r.upstream().unwrap();
    assert_eq!(upstream.header("x-echo-seen"), Some("yes"));
    assert_eq!(upstream.header("x-strip-me"), None);
    assert_eq!(upstream.header(":path"), Some("/v1/chat/completions"));
    assert_eq!(upstream.header("x-user-id"), Some("alice"), "names are lower-cased");
}

#[test]
fn the_client_sees_response_headers_as_the_filter_left_them() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-user-id", "bob").respond(201, [("x-upstream", "1")], ["created"]).send();
    r.assert_allowed();
    assert_eq!(r.status(), Some(201));
    assert_eq!(r.response_header("x-upstream"), Some("1"));
    assert_eq!(r.response_header("x-echo-phase"), Some("response"));
    assert_eq!(r.response_header("x-echo-count"), Some("1"));
    assert_eq!(r.response_text(), "created");
    assert_eq!(
        r.actions(),
        &[
            (Phase::RequestHeaders, Action::Continue),
            (Phase::ResponseHeaders, Action::Continue),
            (Phase::ResponseBody, Action::Continue),
        ]
    );
}

#[test]
fn reading_request_headers_after_letting_them_go_panics_as_in_envoy() {
    // Envoy detaches the request map once on_request_headers returns Continue;
    // the SDK panics on the BadArgument that follows.
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "late-header").send();
    let trap = r.trap().expect("a trap");
    assert!(trap.to_string().contains("proxy_on_response_headers"), "{trap}");
    assert!(trap.logs_contain("unexpected status: 2"), "{trap}");
}

#[test]
fn on_log_can_read_the_final_response_headers() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().respond(404, [("a", "b")], ["missing"]).send();
    assert!(r.log_contains(&format!("access log: stream {} status 404", r.record().id)));
}
