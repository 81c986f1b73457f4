//! Hostile input through the compiled filter: every case gets its documented
//! answer and none traps the VM (a trap would fail every request on a worker).

use crate::util::{demo_config, quota_host, quota_vm};

const CHAT: &str = "/v1/chat/completions";

fn chat_as(vm: &host_tests::Vm, user: &str, body: impl Into<Vec<u8>>) -> host_tests::Exchange {
    vm.request().method("POST").path(CHAT).header("x-user-id", user).header("x-plan", "pro").body(body).send()
}

#[test]
fn missing_pseudo_headers_and_identity_never_trap() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    let bare = vm.request().without_header(":path").without_header(":method").send();
    bare.assert_no_trap();
    bare.assert_allowed();
    let anonymous = vm.request().method("POST").path(CHAT).json_body(r#"{"model":"gpt-4o"}"#).send();
    anonymous.assert_no_trap();
    anonymous.assert_blocked(401);
    assert!(!vm.is_dead());
}

#[test]
fn a_one_megabyte_id_counts_as_absent() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    let huge = "u".repeat(1024 * 1024);
    let r = vm.request().method("POST").path("/v1/batches").header("x-user-id", &huge).json_body("{}").send();
    r.assert_no_trap();
    r.assert_blocked(401);
    // A megabyte in a header the filter does not use changes nothing.
    let r = vm
        .request()
        .method("POST")
        .path("/v1/batches")
        .header("x-user-id", "ann")
        .header("x-plan", "pro")
        .header("x-padding", &huge)
        .json_body("{}")
        .send();
    r.assert_no_trap();
    r.assert_allowed();
}

#[test]
fn non_utf8_identity_bytes_count_as_absent() {
    let host = quota_host();
    let mut config = demo_config();
    config["identity"]["user"] = serde_json::json!([{ "property": ["metadata", "sub"] }]);
    let vm = quota_vm(&host, &config);
    let r = vm
        .request()
        .method("POST")
        .path("/v1/batches")
        .property(&["metadata", "sub"], vec![0xff, 0xfe, 0x00, 0x41])
        .json_body("{}")
        .send();
    r.assert_no_trap();
    r.assert_blocked(401);
    let ok = vm
        .request()
        .method("POST")
        .path("/v1/batches")
        .header("x-plan", "pro")
        .property(&["metadata", "sub"], b"bo".to_vec())
        .json_body("{}")
        .send();
    ok.assert_allowed();
}

/// A body the rules cannot read is never cheaper than the body it hides:
/// refused by default (400 `unreadable_body`), or, with `unreadable_body:
/// "strictest"`, charged as the most restrictive class the head allows.
/// No body at all is not hiding anything: the path rule applies.
#[test]
fn malformed_and_deeply_nested_bodies_are_refused_or_charged_the_strictest_class() {
    let host = quota_host();
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let unreadable: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        br#"{"model": "o3-deep-research", "messages": ["#.to_vec(),
        nested.into_bytes(),
        vec![0xff; 1000],
    ];
    let refusing = quota_vm(&host, &demo_config());
    for body in &unreadable {
        let r = chat_as(&refusing, "cy", body.clone());
        let reply = r.assert_blocked(400);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("the refusal is JSON");
        assert_eq!(json["error"]["code"], "unreadable_body", "{r:?}");
    }
    let empty = chat_as(&refusing, "cy", Vec::new());
    empty.assert_allowed();
    assert_eq!(empty.response_header("x-quota-class"), Some("drafts"));

    let mut config = demo_config();
    config["unreadable_body"] = serde_json::json!("strictest");
    let strictest = quota_vm(&host, &config);
    for (i, body) in unreadable.into_iter().enumerate() {
        // A user each: deep research allows pro only a few a day.
        let r = chat_as(&strictest, &format!("dee{i}"), body);
        r.assert_allowed();
        assert_eq!(r.response_header("x-quota-class"), Some("deep_research"), "{r:?}");
    }
    assert!(!refusing.is_dead() && !strictest.is_dead());
}

#[test]
fn a_body_in_one_byte_chunks_is_still_classified_by_its_model() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    let body = br#"{"model":"o3-deep-research","messages":[]}"#;
    let r = vm
        .request()
        .method("POST")
        .path(CHAT)
        .header("x-user-id", "di")
        .header("x-plan", "pro")
        .body_chunks(body.iter().map(|b| vec![*b]))
        .send();
    r.assert_no_trap();
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-class"), Some("deep_research"));
}

/// A body padded past `max_body_bytes` cannot hide its model: refused with
/// 413 `body_too_large` by default, or charged as the strictest class the
/// head allows (and streamed on, never buffered past the cap).
#[test]
fn a_body_over_the_cap_is_refused_or_charged_the_strictest_class() {
    let host = quota_host();
    let mut body = br#"{"model":"o3-deep-research","messages":[{"content":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 4096));
    body.extend_from_slice(br#""}]}"#);
    let send = |vm: &host_tests::Vm, user: &str| {
        let chunks: Vec<Vec<u8>> = body.chunks(512).map(<[u8]>::to_vec).collect();
        vm.request()
            .method("POST")
            .path(CHAT)
            .header("x-user-id", user)
            .header("x-plan", "pro")
            .body_chunks(chunks)
            .send()
    };
    let mut config = demo_config();
    config["max_body_bytes"] = serde_json::json!(1024);
    let refusing = quota_vm(&host, &config);
    let r = send(&refusing, "eve");
    let reply = r.assert_blocked(413);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("the refusal is JSON");
    assert_eq!(json["error"]["code"], "body_too_large", "{r:?}");
    assert_eq!(json["error"]["quota"]["max_body_bytes"], 1024, "{r:?}");

    config["unreadable_body"] = serde_json::json!("strictest");
    let strictest = quota_vm(&host, &config);
    let r = send(&strictest, "eva");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-class"), Some("deep_research"), "{r:?}");
}

/// The module's allocator keeps freed small blocks by size class (it never
/// hands a 16-byte block out as a 64-byte one): bodies that allocate many
/// blocks of one size, then of another, must reuse what earlier rounds freed
/// rather than grow the VM's memory round after round.
#[test]
fn memory_stays_flat_when_bodies_of_different_shapes_alternate() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    // JSON arrays of strings (not an object, so read whole), each shape's
    // strings in another size class, each body under the default 256 KiB.
    let shapes: Vec<String> = [6usize, 20, 50, 120, 300, 700, 1500, 4000]
        .iter()
        .map(|len| {
            let item = format!("\"{}\"", "x".repeat(*len));
            format!("[{}]", vec![item; (200_000 / (len + 3)).max(1)].join(","))
        })
        .collect();
    let round = |vm: &host_tests::Vm| {
        for body in &shapes {
            chat_as(vm, "ann", body.as_bytes()).assert_no_trap();
        }
    };
    round(&vm);
    round(&vm);
    let settled = vm.memory_bytes();
    for _ in 0..6 {
        round(&vm);
    }
    assert_eq!(vm.memory_bytes(), settled, "the memory grew after the first rounds: a size class is not reused");
    assert!(settled < 64 << 20, "{settled} bytes of memory for bodies of 200 KB");
    assert!(!vm.is_dead());
}
