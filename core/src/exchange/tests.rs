//! The exchange's rules, one test each, driven through [`MemoryHost`] as the
//! filter drives it through Envoy.

use super::memory::{MemoryHost, Noted};
use super::response::Ended;
use super::{Call, Exchange, Level, Next, Step};
use crate::config::Config;
use crate::counter::Counter;
use crate::engine::Outcome;
use crate::identity::IdentityError;
use crate::store::CounterStore;
use serde_json::{json, Value};

const NOON_MS: i64 = 1_795_348_800_000;

/// "chat" (tokens, by the body's model; degraded to "small" past 200),
/// "files" (fixed 3 within 10 a day, confirmed above a quarter of the
/// limit), "view" (GET, 1 within 2), "tools" (a body rule, fixed 4).
/// `extra`: top-level fields (null removes one).
fn config(extra: Value) -> Config {
    let mut doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "usage_endpoint": "/quota",
        "admin": {"path": "/admin/grants", "secret": "s3cret-s3cret-s3cret-s3cret"},
        "classes": [
            {"name": "chat", "match": [{"methods": ["POST"], "path": {"exact": "/chat"}, "body": [{"field": "model", "exists": true}]}],
             "cost": {"tokens": {"default_max_tokens": 100}}},
            {"name": "files", "match": [{"methods": ["POST"], "path": {"exact": "/files"}}], "cost": {"fixed": 3}},
            {"name": "view", "match": [{"methods": ["GET"], "path": {"exact": "/view"}}]},
            {"name": "tools", "match": [{"methods": ["POST"], "path": {"exact": "/tools"}, "body": [{"field": "tool", "exists": true}]}],
             "cost": {"fixed": 4}}
        ],
        "tiers": {"free": {"limits": {
            "chat": {"soft": 200, "hard": 1000, "window": "day", "past_soft": "degrade", "degrade": {"model": "small"}},
            "files": {"hard": 10, "window": "day", "confirm_above": 0.25},
            "view": {"hard": 2, "window": "day"},
            "tools": {"hard": 10, "window": "day"}
        }}}
    });
    // A null in `extra` removes the field.
    if let (Value::Object(top), Value::Object(more)) = (&mut doc, extra) {
        for (k, v) in more {
            match v {
                Value::Null => top.remove(&k),
                v => top.insert(k, v),
            };
        }
    }
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

fn redis(extra: Value) -> Config {
    let mut more = json!({"counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "q:"}, "on_error": "fail_closed"}});
    if let (Value::Object(m), Value::Object(e)) = (&mut more, extra) {
        m.extend(e);
    }
    config(more)
}

fn headers(method: &str, path: &str, more: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h =
        vec![(":method".to_string(), method.as_bytes().to_vec()), (":path".to_string(), path.as_bytes().to_vec())];
    h.extend(more.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
    h
}

fn alice(method: &str, path: &str) -> Vec<(String, Vec<u8>)> {
    headers(method, path, &[("x-user-id", "alice")])
}

fn reply(step: &Step) -> (u16, Value) {
    match &step.next {
        Next::Reply(r) => (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null)),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn calls(step: &Step) -> Vec<Call> {
    match &step.next {
        Next::Call(c) => c.clone(),
        other => panic!("expected calls, got {other:?}"),
    }
}

fn used(config: &Config, host: &MemoryHost, key: &str) -> u64 {
    let table = config.counters.table(&host.store, NOON_MS);
    table.get(key).ok().flatten().and_then(|(b, _)| Counter::decode(&b)).map_or(0, |c| c.used)
}

/// One record as the script answers it: `exists, code, start, end, used, grant_used, grant, warned, flags`.
fn record(c: Option<Counter>) -> Vec<i64> {
    match c {
        None => vec![0; 9],
        Some(c) => vec![
            1,
            i64::from(c.window_code),
            c.window_start,
            c.window_end,
            c.used as i64,
            c.grant_used as i64,
            c.grant as i64,
            i64::from(c.warned),
            i64::from(c.flags),
        ],
    }
}

fn answer(before: Option<Counter>, after: Option<Counter>) -> Vec<u8> {
    let fields: Vec<i64> = record(before).into_iter().chain(record(after)).collect();
    json!({ "EVALSHA": fields }).to_string().into_bytes()
}

const NOSCRIPT: &[u8] = br#"{"EVALSHA":[false,"NOSCRIPT No matching script."]}"#;

#[test]
fn the_clients_quota_headers_are_stripped_and_the_confirmation_is_read_first() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let head = headers(
        "POST",
        "/files",
        &[("x-user-id", "alice"), ("X-Quota-Remaining", "999"), ("x-quota-confirm", "yes"), ("x-quota-remaining", "1")],
    );
    let step = x.request_head(&config, &mut host, head, true);
    assert_eq!(step.next, Next::Continue, "{step:?}");
    assert_eq!(step.edits.remove, vec!["X-Quota-Remaining", "x-quota-confirm", "x-quota-remaining"]);
    assert_eq!(used(&config, &host, "files:u:alice"), 3, "confirmed, so charged");

    // Without the confirmation (or with "no"), the costly request is refused, uncharged.
    for confirm in [None, Some("no"), Some("0")] {
        let mut h = alice("POST", "/files");
        h.extend(confirm.map(|v| ("x-quota-confirm".to_string(), v.as_bytes().to_vec())));
        let step = Exchange::new().request_head(&config, &mut host, h, true);
        let (status, body) = reply(&step);
        assert_eq!((status, body["error"]["code"].as_str()), (428, Some("confirmation_required")), "{confirm:?}");
        assert_eq!(step.edits.remove.len(), usize::from(confirm.is_some()));
    }
    assert_eq!(used(&config, &host, "files:u:alice"), 3);
}

#[test]
fn an_unclassified_request_goes_on_untouched_and_uncounted() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let step = x.request_head(&config, &mut host, alice("GET", "/elsewhere"), true);
    assert_eq!(step, Step::new(Next::Continue));
    assert!(x.response_headers().is_none());
    assert!(host.notes.is_empty(), "{:?}", host.notes);
    // Later events change nothing.
    assert_eq!(x.request_body(&config, &mut host, 10, true).next, Next::Continue);
    assert_eq!(x.request_trailers(&config).next, Next::Continue);
}

#[test]
fn an_admitted_request_carries_its_headers_to_the_response_and_is_reported() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let step = x.request_head(&config, &mut host, alice("GET", "/view"), true);
    assert_eq!(step.next, Next::Continue);
    let h = x.response_headers().cloned().unwrap_or_default();
    assert!(h.iter().any(|(n, v)| *n == "x-quota-remaining" && v == "1"), "{h:?}");
    assert!(matches!(host.notes.as_slice(), [Noted::Decided { .. }]), "{:?}", host.notes);
    // The third in a day is refused at the wall, in the format the client accepts.
    Exchange::new().request_head(&config, &mut host, alice("GET", "/view"), true);
    let mut h = alice("GET", "/view");
    h.push(("accept".into(), b"application/problem+json".to_vec()));
    let step = Exchange::new().request_head(&config, &mut host, h, true);
    let (status, body) = reply(&step);
    assert_eq!(status, 429);
    assert_eq!(body["violated-policies"], json!(["view"]), "{body}");
}

#[test]
fn identity_is_required_and_its_refusal_is_reported() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let step = x.request_head(&config, &mut host, headers("GET", "/view", &[]), true);
    assert_eq!(reply(&step).0, 401);
    assert_eq!(host.notes, vec![Noted::IdentityRefused(IdentityError::MissingUser)]);
    // After a reply, nothing lets the request go on.
    assert_eq!(x.request_body(&config, &mut host, 5, true).next, Next::Pause);
    assert_eq!(x.request_trailers(&config).next, Next::Pause);
    assert_eq!(x.body_read(&config, &mut host, Some(b"{}".to_vec())).next, Next::Pause);
    assert!(x.response_headers().is_none());
}

#[test]
fn the_usage_endpoint_answers_get_only_within_its_budget() {
    let config = config(json!({"usage_reads": {"per_minute": 1, "burst": 1}}));
    let mut host = MemoryHost::at(NOON_MS);
    host.usage_reads = Some(crate::usage_limit::UsageLimiter::new(&config.usage_reads, NOON_MS));
    let (status, body) = reply(&Exchange::new().request_head(&config, &mut host, alice("GET", "/quota"), true));
    assert_eq!(status, 200);
    assert!(body["classes"].as_array().is_some_and(|c| c.len() == 4), "{body}");
    let (status, _) = reply(&Exchange::new().request_head(&config, &mut host, alice("GET", "/quota"), true));
    assert_eq!(status, 429);
    assert!(host.notes.contains(&Noted::UsageLimited));
    assert_eq!(reply(&Exchange::new().request_head(&config, &mut host, alice("POST", "/quota"), true)).0, 405);
    // A usage read never charges anything.
    assert_eq!(host.decisions().count(), 0);
}

#[test]
fn the_grants_endpoint_hides_itself_without_the_secret_and_adds_units_with_it() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let path = "/admin/grants?class=view&user=alice&units=5";
    for h in [
        headers("POST", path, &[]),
        headers("GET", path, &[("authorization", "Bearer s3cret-s3cret-s3cret-s3cret")]),
        headers("POST", path, &[("authorization", "Bearer s3cret-s3cret-s3cret-s3creT")]),
    ] {
        let step = Exchange::new().request_head(&config, &mut host, h, true);
        assert!(matches!(&step.next, Next::Reply(r) if r.status == 404 && r.body == "not found\n"), "{step:?}");
    }
    let auth = [("authorization", "Bearer s3cret-s3cret-s3cret-s3cret")];
    let (status, body) = reply(&Exchange::new().request_head(&config, &mut host, headers("POST", path, &auth), true));
    assert_eq!((status, &body["grant"], &body["scope"]), (200, &json!(5), &json!("user")), "{body}");
    let bad = headers("POST", "/admin/grants?class=nope&user=alice&units=5", &auth);
    let (status, body) = reply(&Exchange::new().request_head(&config, &mut host, bad, true));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_grant")));
}

#[test]
fn a_body_rule_holds_the_headers_only_when_told_to_and_reads_the_body_once_whole() {
    for hold in [true, false] {
        let config = config(json!({"hold_headers_for_body": hold}));
        let mut host = MemoryHost::at(NOON_MS);
        let mut x = Exchange::new();
        let mut h = alice("POST", "/chat");
        h.push(("content-length".into(), b"40".to_vec()));
        let step = x.request_head(&config, &mut host, h, false);
        assert_eq!(step.next, if hold { Next::Pause } else { Next::Continue });
        // A degrade cell may rewrite the body: unheld headers lose their length.
        assert_eq!(step.edits.remove.contains(&"content-length".to_string()), !hold);
        assert_eq!(x.request_body(&config, &mut host, 10, false).next, Next::Pause);
        assert_eq!(x.request_body(&config, &mut host, 40, true).next, Next::ReadBody(40));
        let body = br#"{"model":"big","messages":[]}"#.to_vec();
        let step = x.body_read(&config, &mut host, Some(body));
        assert_eq!(step.next, Next::Continue, "{step:?}");
        assert_eq!(host.decisions().count(), 1);
        assert!(x.corrects_charge() && x.reads_response_body());
    }
}

#[test]
fn trailers_end_the_body_and_a_body_the_host_will_not_hand_over_is_unreadable() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, alice("POST", "/chat"), false);
    assert_eq!(x.request_body(&config, &mut host, 5, false).next, Next::Pause);
    assert_eq!(x.request_trailers(&config).next, Next::ReadBody(config.max_body_bytes));
    let (status, body) = reply(&x.body_unreadable(&config, &mut host));
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("body_too_large")));
    assert_eq!(host.notes, vec![Noted::BodyRefused("body_too_large")]);
}

#[test]
fn a_body_past_the_cap_or_not_json_never_makes_a_request_cheaper() {
    let config = config(json!({"max_body_bytes": 64}));
    let mut host = MemoryHost::at(NOON_MS);
    // Declared too large: decided at the head, nothing held.
    let mut h = alice("POST", "/chat");
    h.push(("content-length".into(), b"65".to_vec()));
    assert_eq!(reply(&Exchange::new().request_head(&config, &mut host, h, false)).0, 413);
    // Grown too large while buffering.
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, alice("POST", "/chat"), false);
    assert_eq!(reply(&x.request_body(&config, &mut host, 65, false)).0, 413);
    // Not JSON.
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, alice("POST", "/chat"), false);
    assert_eq!(x.request_body(&config, &mut host, 3, true).next, Next::ReadBody(3));
    let (status, body) = reply(&x.body_read(&config, &mut host, Some(b"{no".to_vec())));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unreadable_body")));

    // `strictest`: the most restrictive class the head allows, at its highest cost.
    let strict = self::config(json!({"max_body_bytes": 64, "unreadable_body": "strictest"}));
    let mut x = Exchange::new();
    x.request_head(&strict, &mut host, alice("POST", "/tools"), false);
    x.request_body(&strict, &mut host, 3, true);
    let step = x.body_read(&strict, &mut host, Some(b"{no".to_vec()));
    assert_eq!(step.next, Next::Continue);
    assert_eq!(step.edits.body, None, "a request charged at the strictest cost is never rewritten");
    let Some(Outcome::Charged(c)) = host.decisions().last().map(|d| d.outcome.clone()) else {
        panic!("{:?}", host.notes)
    };
    assert_eq!(c.cost, 4);
    // A token class's highest cost is unbounded: too large for any cell.
    let mut x = Exchange::new();
    x.request_head(&strict, &mut host, alice("POST", "/chat"), false);
    x.request_body(&strict, &mut host, 3, true);
    let (status, body) = reply(&x.body_read(&strict, &mut host, Some(b"{no".to_vec())));
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("request_too_large")));
}

#[test]
fn a_degraded_request_is_rewritten_and_held_headers_get_the_new_length() {
    for hold in [true, false] {
        let config = config(json!({"hold_headers_for_body": hold}));
        let mut host = MemoryHost::at(NOON_MS);
        // Past the soft limit of 100: the next chat is degraded to "small".
        let body = br#"{"model":"big","messages":[],"max_tokens":150}"#;
        for round in 0..2 {
            let mut x = Exchange::new();
            x.request_head(&config, &mut host, alice("POST", "/chat"), false);
            x.request_body(&config, &mut host, body.len(), true);
            let step = x.body_read(&config, &mut host, Some(body.to_vec()));
            assert_eq!(step.next, Next::Continue);
            match (round, &step.edits.body) {
                (0, None) => {}
                (1, Some(r)) => {
                    assert_eq!(r.replaces, body.len());
                    assert_eq!(r.set_content_length, hold);
                    let sent: Value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
                    assert_eq!(sent["model"], json!("small"), "{sent}");
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_rewrite_changes_the_model_and_leaves_every_other_byte_as_the_client_sent_it() {
    let config = config(json!({"hold_headers_for_body": true}));
    let mut host = MemoryHost::at(NOON_MS);
    // What a serializer would change: the number's form, escapes, spacing, order, an unknown member.
    let body = "{ \"temperature\": 0.70, \"messages\": [{\"role\": \"user\", \"content\": \"caf\\u00e9 \\ud83d\\ude00\"}],\n  \"model\" : \"big\", \"max_tokens\": 150, \"x-extra\": 1e2 }";
    let mut rewritten = None;
    for _ in 0..2 {
        let mut x = Exchange::new();
        x.request_head(&config, &mut host, alice("POST", "/chat"), false);
        x.request_body(&config, &mut host, body.len(), true);
        rewritten = x.body_read(&config, &mut host, Some(body.as_bytes().to_vec())).edits.body;
    }
    let sent = String::from_utf8(rewritten.expect("the second is degraded").bytes).unwrap();
    assert_eq!(sent, body.replace("\"big\"", "\"small\""));
}

#[test]
fn a_refunded_status_gives_the_units_back_in_shared_data() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, alice("GET", "/view"), true);
    assert_eq!(used(&config, &host, "view:u:alice"), 1);
    x.response_head(&config, &mut host, Some(503), None, 0);
    assert_eq!(used(&config, &host, "view:u:alice"), 0);
    // At most once, whatever comes after.
    x.response_body(&config, &mut host, b"", true);
    x.ended(&config, &mut host, || Ended { response_flags: 0, upstream_connected: false });
    assert_eq!(used(&config, &host, "view:u:alice"), 0);
}

#[test]
fn redis_exact_mode_charges_by_a_call_with_an_id_and_goes_on_with_its_answer() {
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let step = x.request_head(&config, &mut host, alice("GET", "/view"), true);
    let [call] = calls(&step).try_into().unwrap_or_else(|c: Vec<Call>| panic!("{c:?}"));
    assert_eq!((call.command.op(), call.command.id(), call.load), ("charge", Some("m.1"), false));
    assert!(x.waiting_for_store());
    assert_eq!(x.request_body(&config, &mut host, 0, true).next, Next::Pause, "held while Redis answers");
    assert_eq!(x.request_trailers(&config).next, Next::Pause);
    // A stray answer (another call's number) changes nothing.
    assert_eq!(x.answered(&config, &mut host, 7, Some(200), b"{}").next, Next::Pause);
    let after = crate::decide::decide(None, limits(&config, "view"), 1, false, NOON_MS / 1000, Default::default()).0;
    let step = x.answered(&config, &mut host, call.n, Some(200), &answer(None, after));
    assert_eq!(step.next, Next::Continue, "{step:?}");
    assert!(x.response_headers().is_some_and(|h| h.iter().any(|(n, v)| *n == "x-quota-remaining" && v == "1")));
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Mismatch { .. } | Noted::Cancel { .. })), "{:?}", host.notes);
    // A refund is queued for the root context, not applied here.
    x.response_head(&config, &mut host, Some(500), None, 0);
    assert!(matches!(host.notes.last(), Some(Noted::Adjust { delta: -1, .. })), "{:?}", host.notes);
    assert_eq!(host.store.len(), 0, "shared data is not the store in exact mode");
}

fn limits<'c>(config: &'c Config, class: &str) -> &'c crate::config::Limits {
    let id = config.classes.iter().position(|c| c.name == class).map(crate::config::ClassId);
    match id.and_then(|id| config.cell(config.identity.default_tier, id)) {
        Some(crate::config::Cell::Limited(l)) if l.len() == 1 => &l[0],
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_script_is_sent_once_then_the_fail_policy_applies() {
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, alice("GET", "/view"), true)).remove(0);
    let again = calls(&x.answered(&config, &mut host, call.n, Some(200), NOSCRIPT)).remove(0);
    assert!(again.load && again.command == call.command, "{again:?}");
    assert!(!host.script_cached);
    let (status, body) = reply(&x.answered(&config, &mut host, again.n, Some(200), NOSCRIPT));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("quota_unavailable")), "fail_closed");
    assert!(host.notes.contains(&Noted::StoreError("NOSCRIPT after sending the script".into())));
    // A NOSCRIPT says the script never ran: nothing to cancel.
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Cancel { .. })));
}

#[test]
fn a_charge_that_may_have_run_is_cancelled_when_its_answer_is_not_used() {
    // No answer (a timeout), failing closed: refused, and the charge taken back by its id.
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, alice("GET", "/view"), true)).remove(0);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, None, b"")).0, 503);
    let cancels: Vec<&Noted> = host.notes.iter().filter(|n| matches!(n, Noted::Cancel { .. })).collect();
    assert_eq!(cancels, vec![&Noted::Cancel { key: "q:{u:alice}view".into(), id: "m.1".into() }]);

    // Failing open, the same answer lets the request go, uncancelled.
    let open = redis(
        json!({"counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "q:"}, "on_error": "fail_open"}}),
    );
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&open, &mut host, alice("GET", "/view"), true)).remove(0);
    assert_eq!(x.answered(&open, &mut host, call.n, None, b"").next, Next::Continue);
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Cancel { .. })));

    // The stream ends while the charge is out: cancelled once, however it ends.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, alice("GET", "/view"), true);
    x.abandon(&mut host);
    x.ended(&config, &mut host, || Ended { response_flags: 0, upstream_connected: false });
    x.abandon(&mut host);
    assert_eq!(host.notes.iter().filter(|n| matches!(n, Noted::Cancel { .. })).count(), 1);
    assert!(host
        .notes
        .iter()
        .any(|n| matches!(n, Noted::Log { level: Level::Info, line } if line.contains("cancelling charge m.1"))));
}

#[test]
fn a_call_that_cannot_leave_is_an_unanswered_call_that_never_ran() {
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, alice("GET", "/view"), true)).remove(0);
    assert_eq!(reply(&x.not_sent(&config, &mut host, call.n, "no cluster".into())).0, 503);
    assert!(host.notes.contains(&Noted::StoreError("no cluster".into())));
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Cancel { .. })));
}

#[test]
fn the_script_and_the_core_disagreeing_is_noted() {
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, alice("GET", "/view"), true)).remove(0);
    let step = x.answered(&config, &mut host, call.n, Some(200), &answer(None, None));
    assert_eq!(step.next, Next::Continue);
    assert!(host.notes.iter().any(|n| matches!(n, Noted::Mismatch { key, .. } if key == "q:{u:alice}view")));
}

#[test]
fn the_usage_endpoint_reads_redis_one_call_per_scope_and_answers_when_all_are_in() {
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let mut h = alice("GET", "/quota");
    h.push(("x-workspace-id".into(), b"acme".to_vec()));
    let out = calls(&x.request_head(&config, &mut host, h, true));
    assert_eq!(out.len(), 1, "alice's counters share one hash tag: {out:?}");
    assert_eq!(out[0].command.op(), "view");
    let view: Vec<i64> = (0..4).flat_map(|_| record(None)).collect();
    let body = json!({ "EVALSHA": view }).to_string();
    let (status, doc) = reply(&x.answered(&config, &mut host, out[0].n, Some(200), body.as_bytes()));
    assert_eq!(status, 200);
    assert!(doc["classes"].as_array().is_some_and(|c| c.iter().all(|c| c["used"] == json!(0))), "{doc}");

    // A view Redis cannot serve shows the meter as unavailable, once.
    let mut x = Exchange::new();
    let out = calls(&x.request_head(&config, &mut host, alice("GET", "/quota"), true));
    let (status, doc) = reply(&x.answered(&config, &mut host, out[0].n, Some(200), NOSCRIPT));
    assert_eq!(status, 200);
    assert!(doc["classes"][0]["state"] == json!("unavailable"), "{doc}");
    assert!(!host.script_cached, "the next call carries the script");
}

#[test]
fn a_grant_through_redis_answers_the_new_balance() {
    let config = redis(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let h = headers(
        "POST",
        "/admin/grants?class=view&user=alice&units=5",
        &[("authorization", "Bearer s3cret-s3cret-s3cret-s3cret")],
    );
    let call = calls(&x.request_head(&config, &mut host, h, true)).remove(0);
    assert_eq!(call.command.op(), "grant");
    let after = Counter { grant: 5, ..crate::decide::add_grant(None, 5) };
    let (status, body) = reply(&x.answered(&config, &mut host, call.n, Some(200), &answer(None, Some(after))));
    assert_eq!((status, &body["grant"]), (200, &json!(5)), "{body}");
    // A grant Redis never answered says so.
    let mut x = Exchange::new();
    let h = headers(
        "POST",
        "/admin/grants?class=view&user=alice&units=5",
        &[("authorization", "Bearer s3cret-s3cret-s3cret-s3cret")],
    );
    let call = calls(&x.request_head(&config, &mut host, h, true)).remove(0);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, Some(502), b"bad gateway")).0, 503);
}

#[test]
fn the_approximate_mode_notes_each_charge_and_correction_for_the_sync() {
    let config = config(json!({
        "admin": null,
        "counters": {"store": "redis", "redis": {"cluster": "redis", "mode": "approximate", "key_prefix": "q:"}}
    }));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    assert_eq!(x.request_head(&config, &mut host, alice("GET", "/view"), true).next, Next::Continue);
    assert_eq!(used(&config, &host, "view:u:alice"), 1, "charged here, at once");
    x.response_head(&config, &mut host, Some(503), None, 0);
    let syncs: Vec<i64> =
        host.notes.iter().filter_map(|n| if let Noted::Sync { delta, .. } = n { Some(*delta) } else { None }).collect();
    assert_eq!(syncs, vec![1, -1]);
}

/// "drafts" (POST /drafts, 1 unit): a workspace's pool of 6 a day with at
/// most 4 per member, counted in Redis (exact), failing closed.
fn stacked_redis() -> Config {
    let doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
        "classes": [{"name": "drafts", "match": [{"methods": ["POST"], "path": {"exact": "/drafts"}}]}],
        "tiers": {"team": {"limits": {"drafts": [
            {"scope": "workspace", "hard": 6, "window": "day"},
            {"scope": "user", "hard": 4, "window": "day"}
        ]}}},
        "counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "q:"}, "on_error": "fail_closed"}
    });
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("stacked test config: {e}"),
    }
}

fn member(name: &str) -> Vec<(String, Vec<u8>)> {
    headers("POST", "/drafts", &[("x-user-id", name), ("x-workspace-id", "acme")])
}

/// The drafts cell's limits, as the config lists them (the pool, then the member's cap).
fn drafts_stack(config: &Config) -> &[crate::config::Limits] {
    match config.cell(config.identity.default_tier, crate::config::ClassId(0)) {
        Some(crate::config::Cell::Limited(l)) if l.len() == 2 => l,
        other => panic!("{other:?}"),
    }
}

/// A stacked charge's answer: each counter's (before, after), in the call's order.
fn stack_answer(records: &[(Option<Counter>, Option<Counter>)]) -> Vec<u8> {
    let fields: Vec<i64> = records.iter().flat_map(|(b, a)| record(*b).into_iter().chain(record(*a))).collect();
    json!({ "EVALSHA": fields }).to_string().into_bytes()
}

/// What a member's counter and the pool hold after `member` and `pool` units.
fn stacked_records(config: &Config, member: u64, pool: u64) -> (Option<Counter>, Option<Counter>) {
    let stack = drafts_stack(config);
    let charged = |limits, units| {
        (units > 0).then(|| crate::decide::decide(None, limits, units, false, NOON_MS / 1000, Default::default()).0)
    };
    (charged(&stack[1], member).flatten(), charged(&stack[0], pool).flatten())
}

#[test]
fn a_stacked_cell_in_redis_is_charged_by_one_call_of_every_counter() {
    let config = stacked_redis();
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let step = x.request_head(&config, &mut host, member("ann"), true);
    let [call] = calls(&step).try_into().unwrap_or_else(|c: Vec<Call>| panic!("{c:?}"));
    assert_eq!((call.command.op(), call.command.id(), call.load), ("charge_stack", Some("m.1"), false));
    // The member's counter first (the narrowest), then the pool, each with
    // its marker, all in the workspace's slot.
    let keys = call.command.keys.clone();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys[0].starts_with("q:{w:acme}drafts@3.u") && keys[0].ends_with("u:ann"), "{keys:?}");
    assert_eq!(keys[2], "q:{w:acme}drafts@3.w");
    assert_eq!((keys[1].clone(), keys[3].clone()), (format!("{}#m.1", keys[0]), format!("{}#m.1", keys[2])));
    assert!(keys.iter().all(|k| crate::redis::hash_tag(k) == "w:acme"), "{keys:?}");
    assert!(x.waiting_for_store());

    // Both admit: the request goes on, charged to both.
    let (before_member, before_pool) = stacked_records(&config, 2, 3);
    let (after_member, after_pool) = stacked_records(&config, 3, 4);
    let body = stack_answer(&[(before_member, after_member), (before_pool, after_pool)]);
    let step = x.answered(&config, &mut host, call.n, Some(200), &body);
    assert_eq!(step.next, Next::Continue, "{step:?}");
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Mismatch { .. } | Noted::Cancel { .. })), "{:?}", host.notes);
    let d = host.decisions().last().cloned().unwrap_or_else(|| panic!("{:?}", host.notes));
    assert!(d.admitted());
    // The member has 1 of 4 left, the pool 2 of 6: the member's cap binds.
    assert_eq!((d.limit, d.key.as_deref(), d.others.len()), (1, Some(keys[0].as_str()), 1));
    let h = x.response_headers().cloned().unwrap_or_default();
    assert!(h.iter().any(|(n, v)| *n == "x-quota-remaining" && v == "1"), "{h:?}");

    // A refund gives the unit back to both counters: one adjust each, in its window.
    x.response_head(&config, &mut host, Some(500), None, 0);
    let adjusts: Vec<(String, i64, i64)> = host
        .notes
        .iter()
        .filter_map(|n| match n {
            Noted::Adjust { key, window_start, delta, .. } => Some((key.clone(), *window_start, *delta)),
            _ => None,
        })
        .collect();
    let start = after_pool.map_or(0, |c| c.window_start);
    assert_eq!(adjusts, vec![(keys[0].clone(), start, -1), (keys[2].clone(), start, -1)]);
    assert_eq!(host.store.len(), 0, "shared data is not the store in exact mode");
}

#[test]
fn a_stacked_answer_that_refuses_names_the_limit_that_refused() {
    let config = stacked_redis();
    // The pool is full (6 of 6) though ann has used only 1 of her 4.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let (member_1, pool_6) = stacked_records(&config, 1, 6);
    let body = stack_answer(&[(member_1, member_1), (pool_6, pool_6)]);
    let (status, doc) = reply(&x.answered(&config, &mut host, call.n, Some(200), &body));
    assert_eq!(status, 429, "{doc}");
    let d = host.decisions().last().cloned().unwrap_or_else(|| panic!("{:?}", host.notes));
    assert_eq!((d.limit, d.scope), (0, crate::identity::ScopeKind::Workspace));
    assert_eq!(d.others.iter().map(|o| (o.limit, o.usage.used)).collect::<Vec<_>>(), vec![(1, 1)]);
    assert!(d.charged().is_empty());
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Mismatch { .. } | Noted::Cancel { .. })), "{:?}", host.notes);

    // Ann at her cap of 4: refused by it, the pool untouched.
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let (member_4, pool_4) = stacked_records(&config, 4, 4);
    let body = stack_answer(&[(member_4, member_4), (pool_4, pool_4)]);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, Some(200), &body)).0, 429);
    let d = host.decisions().last().cloned().unwrap_or_else(|| panic!("{:?}", host.notes));
    assert_eq!((d.limit, d.scope), (1, crate::identity::ScopeKind::User));

    // A script that charged one counter of a refused stack is caught.
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let (member_2, _) = stacked_records(&config, 2, 0);
    let body = stack_answer(&[(member_1, member_2), (pool_6, pool_6)]);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, Some(200), &body)).0, 429);
    let mismatched: Vec<&str> = host
        .notes
        .iter()
        .filter_map(|n| if let Noted::Mismatch { key, .. } = n { Some(key.as_str()) } else { None })
        .collect();
    assert_eq!(mismatched, vec![call.command.keys[0].as_str()]);
}

#[test]
fn a_lost_stacked_answer_cancels_every_counter() {
    let config = stacked_redis();
    // No answer (a timeout), failing closed: refused, and every counter's charge taken back.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, None, b"")).0, 503);
    let cancels: Vec<&Noted> = host.notes.iter().filter(|n| matches!(n, Noted::Cancel { .. })).collect();
    let (member_key, pool_key) = (call.command.keys[0].clone(), call.command.keys[2].clone());
    assert_eq!(
        cancels,
        vec![
            &Noted::Cancel { key: member_key.clone(), id: "m.1".into() },
            &Noted::Cancel { key: pool_key.clone(), id: "m.1".into() }
        ]
    );
    // An answer that cannot be read (a single charge's two records) may have run: the same.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, Some(200), &answer(None, None))).0, 503);
    assert_eq!(host.notes.iter().filter(|n| matches!(n, Noted::Cancel { .. })).count(), 2);
    assert!(host.notes.iter().any(|n| matches!(n, Noted::StoreError(why) if why.contains("malformed"))));

    // The stream ends while the charge is out: each counter cancelled once.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, member("ann"), true);
    x.abandon(&mut host);
    x.ended(&config, &mut host, || Ended { response_flags: 0, upstream_connected: false });
    x.abandon(&mut host);
    let cancelled: Vec<&str> = host
        .notes
        .iter()
        .filter_map(|n| if let Noted::Cancel { key, .. } = n { Some(key.as_str()) } else { None })
        .collect();
    assert_eq!(cancelled, vec![member_key.as_str(), pool_key.as_str()]);
    assert!(host.notes.iter().any(|n| matches!(n, Noted::Log { level: Level::Info, line }
        if line.contains("cancelling charge m.1") && line.contains(&member_key) && line.contains(&pool_key))));

    // A call that never left never ran: nothing to cancel.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    assert_eq!(reply(&x.not_sent(&config, &mut host, call.n, "no cluster".into())).0, 503);
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Cancel { .. })));
}

#[test]
fn a_lost_script_is_sent_once_with_a_stacked_charge() {
    let config = stacked_redis();
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let again = calls(&x.answered(&config, &mut host, call.n, Some(200), NOSCRIPT)).remove(0);
    assert!(again.load && again.command == call.command, "{again:?}");
    assert_eq!(again.command.op(), "charge_stack");
    assert!(!host.script_cached);
    // The script's answer to the resend is used as any other.
    let (after_member, after_pool) = stacked_records(&config, 1, 1);
    let body = stack_answer(&[(None, after_member), (None, after_pool)]);
    assert_eq!(x.answered(&config, &mut host, again.n, Some(200), &body).next, Next::Continue);
    assert!(host.script_cached);
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Mismatch { .. } | Noted::Cancel { .. })), "{:?}", host.notes);

    // A second NOSCRIPT: the fail policy, and nothing to cancel (it never ran).
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("bob"), true)).remove(0);
    let again = calls(&x.answered(&config, &mut host, call.n, Some(200), NOSCRIPT)).remove(0);
    let (status, body) = reply(&x.answered(&config, &mut host, again.n, Some(200), NOSCRIPT));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("quota_unavailable")));
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Cancel { .. })));
}

/// "drafts" as in [`stacked_redis`], whose member limit (4 a day, warned
/// at 2) a workspace admin may cap, with the usage endpoint on.
fn capped_redis() -> Config {
    let doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
        "usage_endpoint": "/quota",
        "admin": {"path": "/admin", "secret": "s3cret-s3cret-s3cret-s3cret"},
        "classes": [{"name": "drafts", "match": [{"methods": ["POST"], "path": {"exact": "/drafts"}}]}],
        "tiers": {"team": {"limits": {"drafts": [
            {"scope": "workspace", "hard": 6, "window": "day"},
            {"scope": "user", "hard": 4, "window": "day", "warn_at": [0.5], "admin_cap": true}
        ]}}},
        "counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "q:"}, "on_error": "fail_closed"}
    });
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("capped test config: {e}"),
    }
}

/// Ann's cap for drafts in acme, in Redis.
const ANN_CAP: &str = "q:{w:acme}drafts@cap\u{1f}u:ann";

/// A member cap's record, as the script keeps it.
fn cap_record(cap: u64) -> Counter {
    Counter {
        window_code: crate::member_cap::MEMBER_CAP_CODE,
        window_start: 0,
        window_end: crate::units::MAX_UNITS as i64,
        used: cap,
        ..Counter::default()
    }
}

fn admin_cap(cap: &str) -> Vec<(String, Vec<u8>)> {
    let path = format!("/admin?class=drafts&workspace=acme&user=ann&cap={cap}");
    headers("POST", &path, &[("authorization", "Bearer s3cret-s3cret-s3cret-s3cret")])
}

#[test]
fn a_member_cap_in_redis_is_set_and_cleared_by_a_call_and_answered() {
    let config = capped_redis();
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let [call] = calls(&x.request_head(&config, &mut host, admin_cap("2"), true))
        .try_into()
        .unwrap_or_else(|c: Vec<Call>| panic!("{c:?}"));
    assert_eq!(
        (call.command.op(), &call.command.keys[..], &call.command.args[..]),
        ("cap", &[ANN_CAP.to_string()][..], &["cap".to_string(), "2".to_string()][..])
    );
    assert!(x.waiting_for_store());
    let step = x.answered(&config, &mut host, call.n, Some(200), &answer(None, Some(cap_record(2))));
    assert_eq!(reply(&step), (200, json!({"class": "drafts", "workspace": "acme", "user": "ann", "cap": 2})));
    assert_eq!(host.store.len(), 0, "nothing in shared data");

    // Cleared: the key goes.
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, admin_cap("none"), true)).remove(0);
    assert_eq!(call.command.args, ["cap", "none"]);
    let step = x.answered(&config, &mut host, call.n, Some(200), &answer(Some(cap_record(2)), None));
    assert_eq!(reply(&step), (200, json!({"class": "drafts", "workspace": "acme", "user": "ann", "cap": null})));

    // A lost script goes again with the call, once.
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, admin_cap("3"), true)).remove(0);
    let again = calls(&x.answered(&config, &mut host, call.n, Some(200), NOSCRIPT)).remove(0);
    assert!(again.load && again.command == call.command, "{again:?}");
    let step = x.answered(&config, &mut host, again.n, Some(200), &answer(Some(cap_record(2)), Some(cap_record(3))));
    assert_eq!(reply(&step).1["cap"], json!(3));

    // Redis holding another cap than asked, no answer, a call that cannot leave: 503, saying why.
    for (status, body, why) in [
        (Some(200), answer(None, Some(cap_record(5))), "Redis holds a cap of 5"),
        (Some(502), b"bad gateway".to_vec(), "502"),
        (None, Vec::new(), "no answer"),
    ] {
        let mut x = Exchange::new();
        let call = calls(&x.request_head(&config, &mut host, admin_cap("3"), true)).remove(0);
        let (code, doc) = reply(&x.answered(&config, &mut host, call.n, status, &body));
        assert_eq!((code, doc["error"]["code"].as_str()), (503, Some("quota_unavailable")), "{why}");
        assert!(doc["error"]["message"].as_str().is_some_and(|m| m.contains(why)), "{doc}");
    }
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, admin_cap("3"), true)).remove(0);
    assert_eq!(reply(&x.not_sent(&config, &mut host, call.n, "no cluster".into())).0, 503);
    // A cap past the pool is refused before any call.
    let step = Exchange::new().request_head(&config, &mut host, admin_cap("7"), true);
    assert_eq!(reply(&step).0, 400);
}

/// A stacked charge's answer with the member cap's record last.
fn capped_answer(records: &[(Option<Counter>, Option<Counter>)], cap: Option<Counter>) -> Vec<u8> {
    let mut fields: Vec<i64> = records.iter().flat_map(|(b, a)| record(*b).into_iter().chain(record(*a))).collect();
    fields.extend(record(cap));
    json!({ "EVALSHA": fields }).to_string().into_bytes()
}

#[test]
fn a_stacked_charge_in_redis_carries_the_members_cap_and_is_decided_with_it() {
    let config = capped_redis();
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let command = &call.command;
    // The member's counter, the pool's, their markers, then the cap: one slot.
    assert_eq!((command.op(), command.keys.len(), command.member_cap_key()), ("charge_stack", 5, Some(ANN_CAP)));
    assert!(command.keys.iter().all(|k| crate::redis::hash_tag(k) == "w:acme"), "{:?}", command.keys);
    // The cap applies to the first counter (the member's), at most the pool's 6.
    assert_eq!(command.args[command.args.len() - 2..], ["1", "6"]);

    // Ann, capped at 2, has used 2: refused by her cap, which the decision shows.
    let (member_2, pool_2) = stacked_records(&config, 2, 2);
    let body = capped_answer(&[(member_2, member_2), (pool_2, pool_2)], Some(cap_record(2)));
    let (status, doc) = reply(&x.answered(&config, &mut host, call.n, Some(200), &body));
    assert_eq!(status, 429, "{doc}");
    let d = host.decisions().last().cloned().unwrap_or_else(|| panic!("{:?}", host.notes));
    assert_eq!((d.limit, d.scope), (1, crate::identity::ScopeKind::User));
    let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
    assert_eq!((c.usage.hard, c.usage.used), (2, 2));
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Mismatch { .. } | Noted::Cancel { .. })), "{:?}", host.notes);

    // Without a cap, the plan's 4: admitted, and the member's warning comes at 2 of 4.
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let (member_1, pool_1) = stacked_records(&config, 1, 1);
    let body = capped_answer(&[(member_1, member_2), (pool_1, pool_2)], None);
    assert_eq!(x.answered(&config, &mut host, call.n, Some(200), &body).next, Next::Continue);
    let d = host.decisions().last().cloned().unwrap_or_else(|| panic!("{:?}", host.notes));
    let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
    assert_eq!((d.limit, c.usage.hard, c.usage.used, c.crossed), (1, 4, 2, Some(0)));
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::Mismatch { .. } | Noted::Cancel { .. })), "{:?}", host.notes);

    // An answer without the cap's record cannot be read: 503, and each counter's charge cancelled.
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let call = calls(&x.request_head(&config, &mut host, member("ann"), true)).remove(0);
    let body = stack_answer(&[(member_1, member_2), (pool_1, pool_2)]);
    assert_eq!(reply(&x.answered(&config, &mut host, call.n, Some(200), &body)).0, 503);
    let cancelled: Vec<&str> = host
        .notes
        .iter()
        .filter_map(|n| if let Noted::Cancel { key, .. } = n { Some(key.as_str()) } else { None })
        .collect();
    assert_eq!(cancelled, vec![call.command.keys[0].as_str(), call.command.keys[2].as_str()]);
}

#[test]
fn the_usage_endpoint_in_redis_reads_the_members_cap_with_the_pools_counters() {
    let config = capped_redis();
    let mut host = MemoryHost::at(NOON_MS);
    let ann = headers("GET", "/quota", &[("x-user-id", "ann"), ("x-workspace-id", "acme")]);
    for (cap, limit) in [(Some(cap_record(3)), 3), (None, 4)] {
        let mut x = Exchange::new();
        let [call] = calls(&x.request_head(&config, &mut host, ann.clone(), true))
            .try_into()
            .unwrap_or_else(|c: Vec<Call>| panic!("{c:?}"));
        assert_eq!(call.command.op(), "view");
        assert_eq!(call.command.keys.len(), 3, "{:?}", call.command.keys);
        assert_eq!(call.command.keys[2], ANN_CAP);
        let (member_1, pool_1) = stacked_records(&config, 1, 1);
        let fields: Vec<i64> = [member_1, pool_1, cap].into_iter().flat_map(record).collect();
        let body = json!({ "EVALSHA": fields }).to_string();
        let (status, doc) = reply(&x.answered(&config, &mut host, call.n, Some(200), body.as_bytes()));
        assert_eq!(status, 200);
        let limits = &doc["classes"][0]["limits"];
        assert_eq!(
            (&limits[1]["scope"], &limits[1]["limit"], &limits[1]["used"]),
            (&json!("user"), &json!(limit), &json!(1)),
            "{doc}"
        );
    }
}

/// "chat" priced in dollars by the table (gpt-4o $2.50 / $10.00 a million
/// input / output tokens, gpt-4o-mini $0.15 / $0.60), $1.00 a day (100 cents).
fn priced() -> Config {
    let doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "usage_endpoint": "/quota",
        "prices": {"currency": "USD", "models": {
            "gpt-4o": {"input": "2.50", "output": "10.00"},
            "gpt-4o-mini": {"input": "0.15", "output": "0.60"}
        }},
        "classes": [{"name": "chat", "match": [{"methods": ["POST"], "path": {"exact": "/chat"},
            "body": [{"field": "model", "one_of": ["gpt-4o", "gpt-4o-mini"]}]}],
            "cost": {"price": {"default_max_tokens": 1000}}}],
        "tiers": {"free": {"limits": {"chat": {"hard": 100, "window": "day"}}}}
    });
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("priced config: {e}"),
    }
}

/// Sends a chat of `model` with a 400-character prompt (100 tokens
/// estimated) and `max_tokens`; answers it with `usage` when admitted.
fn priced_chat(config: &Config, host: &mut MemoryHost, model: &str, max_tokens: u64, usage: Value) -> (Step, Exchange) {
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "x".repeat(400)}], "max_tokens": max_tokens});
    let bytes = body.to_string().into_bytes();
    let mut x = Exchange::new();
    x.request_head(config, host, alice("POST", "/chat"), false);
    x.request_body(config, host, bytes.len(), true);
    let step = x.body_read(config, host, Some(bytes));
    if step.next == Next::Continue {
        x.response_head(config, host, Some(200), Some(b"application/json"), 0);
        x.response_body(config, host, json!({"usage": usage}).to_string().as_bytes(), true);
    }
    (step, x)
}

fn header_of<'h>(h: &'h [(&'static str, String)], name: &str) -> Option<&'h str> {
    h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[test]
fn a_priced_class_reserves_the_estimate_and_settles_to_the_price_of_the_reported_usage() {
    let config = priced();
    let mut host = MemoryHost::at(NOON_MS);
    // Reserved: 100 prompt tokens at $2.50/M + 1000 at $10.00/M = $0.01025.
    let usage = json!({"prompt_tokens": 100, "completion_tokens": 500, "total_tokens": 600});
    let (step, x) = priced_chat(&config, &mut host, "gpt-4o", 1000, usage);
    assert_eq!(step.next, Next::Continue);
    let h = x.response_headers().cloned().unwrap_or_default();
    assert_eq!(header_of(&h, "x-quota-currency"), Some("USD"));
    assert_eq!(header_of(&h, "x-quota-cost"), Some("0.01025"));
    assert_eq!(header_of(&h, "x-quota-used"), Some("0.01025"));
    assert_eq!(header_of(&h, "x-quota-limit"), Some("1.00"));
    // RateLimit fields in cents, the room rounded down: $0.98975 left is 98.
    assert_eq!(header_of(&h, "ratelimit-policy"), Some("\"chat\";q=100;w=86400"));
    assert!(header_of(&h, "ratelimit").is_some_and(|v| v.starts_with("\"chat\";r=98;")), "{h:?}");
    // Settled at what was reported: 100 × 2.50 + 500 × 10.00 per million = $0.00525.
    assert_eq!(used(&config, &host, "chat:u:alice"), 5_250);
    // gpt-4o-mini: 100 × 0.15 + 300 × 0.60 = 195 micro-dollars.
    let usage = json!({"prompt_tokens": 100, "completion_tokens": 300});
    priced_chat(&config, &mut host, "gpt-4o-mini", 1000, usage);
    assert_eq!(used(&config, &host, "chat:u:alice"), 5_250 + 195);
    // A budget that would cross the dollar is refused before it runs, in dollars.
    let (step, _) = priced_chat(&config, &mut host, "gpt-4o", 99_500, json!({}));
    let (status, body) = reply(&step);
    assert_eq!(status, 429);
    assert_eq!(
        body["error"]["message"],
        json!("This needs $0.99525, but you have $0.99 left for today. It resets in 12 h."),
        "{body}"
    );
    assert_eq!(body["error"]["quota"]["money"]["remaining"], json!("$0.99"));
    assert_eq!(used(&config, &host, "chat:u:alice"), 5_445);
}

#[test]
fn a_priced_request_for_a_model_nobody_priced_is_reserved_at_the_dearest_price() {
    let mut doc: Value = serde_json::from_str(
        r#"{"identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "prices": {"currency": "USD", "models": {"cheap": {"input": "0.10", "output": "0.10"}},
                       "default": {"input": "1.00", "output": "2.00"}},
            "classes": [{"name": "chat", "cost": {"price": {"default_max_tokens": 1000}}}],
            "tiers": {"free": {"limits": {"chat": {"hard": 100, "window": "day"}}}}}"#,
    )
    .unwrap_or(Value::Null);
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let cost = |json: Value| crate::engine::reservation(&config, Some(&json), 1000);
    // An unknown model takes the default; a model that is not a string,
    // the dearest (here the default too); the cheap one its own.
    assert_eq!(cost(json!({"model": "cheap", "max_tokens": 1000})), 100);
    assert_eq!(cost(json!({"model": "other", "max_tokens": 1000})), 2_000);
    assert_eq!(cost(json!({"model": ["cheap"], "max_tokens": 1000})), 2_000);
    // Without a default, a class that may see any model is refused.
    doc["prices"]["default"] = Value::Null;
    let error = Config::from_json(doc.to_string().as_bytes()).map(|_| ()).unwrap_err();
    assert!(error.to_string().starts_with("classes[0].cost.price: a class without match rules"), "{error}");
}

/// "messages" on Anthropic's path (auto), "pinned" on the same kind of path
/// but answered as OpenAI, "claude" on an OpenAI-looking path answered as
/// Anthropic; each 1 a day.
fn dialects() -> Config {
    let doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "classes": [
            {"name": "messages", "match": [{"methods": ["POST"], "path": {"exact": "/v1/messages"}}]},
            {"name": "pinned", "match": [{"methods": ["POST"], "path": {"exact": "/gw/v1/messages"}}], "error_format": "openai"},
            {"name": "claude", "match": [{"methods": ["POST"], "path": {"exact": "/claude"}}], "error_format": "anthropic"},
            {"name": "chat", "match": [{"methods": ["POST"], "path": {"exact": "/v1/chat/completions"}}]}
        ],
        "tiers": {"free": {"limits": {
            "messages": {"hard": 1, "window": "day"}, "pinned": {"hard": 1, "window": "day"},
            "claude": {"hard": 1, "window": "day"}, "chat": {"hard": 1, "window": "day"}
        }}}
    });
    Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// The second request (refused at the wall) to `path`: its status and body.
fn refused_twice(config: &Config, path: &str, more: &[(&str, &str)]) -> (u16, Value) {
    let mut host = MemoryHost::at(NOON_MS);
    let mut h = alice("POST", path);
    h.extend(more.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
    assert_eq!(Exchange::new().request_head(config, &mut host, h.clone(), true).next, Next::Continue);
    reply(&Exchange::new().request_head(config, &mut host, h, true))
}

#[test]
fn anthropic_style_requests_are_refused_in_anthropics_envelope() {
    let config = dialects();
    let (status, body) = refused_twice(&config, "/v1/messages", &[]);
    assert_eq!(status, 429);
    assert_eq!((body["type"].as_str(), body["error"]["type"].as_str()), (Some("error"), Some("rate_limit_error")));
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("You've used your 1 messages request")));
    assert_eq!(body["error"]["quota"]["used"], 1);
    // The SDK's version header marks any path as Anthropic's.
    let (_, body) = refused_twice(&config, "/v1/chat/completions", &[("anthropic-version", "2023-06-01")]);
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // An OpenAI request keeps the OpenAI envelope.
    let (_, body) = refused_twice(&config, "/v1/chat/completions", &[]);
    assert_eq!((body.get("type"), body["error"]["type"].as_str()), (None, Some("quota_exceeded")));
    // The class's format wins over the path, both ways.
    let (_, body) = refused_twice(&config, "/gw/v1/messages", &[("anthropic-version", "2023-06-01")]);
    assert_eq!((body.get("type"), body["error"]["code"].as_str()), (None, Some("quota_exceeded")));
    let (_, body) = refused_twice(&config, "/claude", &[]);
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Accept still wins.
    let (status, body) = refused_twice(&config, "/v1/messages", &[("accept", "application/problem+json")]);
    assert_eq!((status, body["status"].as_u64(), body["code"].as_str()), (429, Some(429), Some("quota_exceeded")));
}

#[test]
fn identity_and_body_refusals_of_anthropic_requests_are_anthropics_too() {
    let config = dialects();
    let mut host = MemoryHost::at(NOON_MS);
    let (status, body) =
        reply(&Exchange::new().request_head(&config, &mut host, headers("POST", "/v1/messages", &[]), true));
    assert_eq!((status, body["error"]["type"].as_str()), (401, Some("authentication_error")));
    let (_, body) = reply(&Exchange::new().request_head(&config, &mut host, headers("POST", "/claude", &[]), true));
    assert_eq!(body["error"]["type"], "authentication_error", "the class is known: its format");
    // A body the filter cannot read, on a route a body rule decides.
    let doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "classes": [{"name": "opus", "match": [{"methods": ["POST"], "path": {"exact": "/v1/messages"},
                     "body": [{"field": "model", "prefix": "claude-opus"}]}]}],
        "tiers": {"free": {"limits": {"opus": {"hard": 5, "window": "day"}}}}
    });
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, alice("POST", "/v1/messages"), false);
    x.request_body(&config, &mut host, 7, true);
    let (status, body) = reply(&x.body_read(&config, &mut host, Some(b"{broken".to_vec())));
    assert_eq!(
        (status, body["error"]["type"].as_str(), body["error"]["code"].as_str()),
        (400, Some("invalid_request_error"), Some("unreadable_body"))
    );
}
