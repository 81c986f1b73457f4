//! The ledger record of every way a request can go, driven through the
//! exchange as the filter drives it: admitted (ok, warned, degraded,
//! overage, queued), refused by the filter (429, 428, 403, 413, 503) or let
//! through by `fail_open`, refunded, streamed, and left by its client.

use super::memory::MemoryHost;
use super::response::Ended;
use super::{Call, Exchange, Next, Step};
use crate::config::Config;
use crate::ledger::{LedgerRecord, LedgerTokens, MAX_MODEL_BYTES};
use crate::refund::flags::{DOWNSTREAM_REMOTE_RESET, UPSTREAM_CONNECTION_FAILURE, UPSTREAM_REQUEST_TIMEOUT};
use serde_json::{json, Value};

const NOON_MS: i64 = 1_795_348_800_000;
const NOON: &str = "2026-11-22T12:00:00.000Z";

/// Two tiers (free upgrades to pro) and a class for each outcome:
/// - "drafts" (POST /drafts, 1 each): free soft 2, hard 4 (warned at 2 and 3), blocked;
/// - "chat" (POST /chat, tokens by the body's model, reconciled);
/// - "cheap" (POST /cheap, needs a body `model`): degraded to "mini" past 1;
/// - "over" (overage past 1, capped at 1), "later" (queued past 1);
/// - "files" (3 each, confirmed above a quarter of the room; 20 can never fit);
/// - "research": not in the free plan; "team": pooled, needs a workspace;
/// - "premium" (POST /premium): priced in USD.
///
/// `extra`: top-level fields (an `observability`, `counters`).
fn config(extra: Value) -> Config {
    let mut doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                     "tier": [{"header": "x-plan"}], "default_tier": "free",
                     "anonymous": {"key": [{"header": "x-device"}], "tier": "free"}},
        "prices": {"currency": "USD", "models": {"gpt-4o": {"input": "2.50", "cached_input": "1.25", "output": "10.00"}}},
        "classes": [
            {"name": "drafts", "match": [{"methods": ["POST"], "path": {"exact": "/drafts"}}]},
            {"name": "chat", "match": [{"methods": ["POST"], "path": {"exact": "/chat"}}],
             "cost": {"tokens": {"default_max_tokens": 100}}},
            {"name": "cheap", "match": [{"methods": ["POST"], "path": {"exact": "/cheap"}, "body": [{"field": "model", "exists": true}]}]},
            {"name": "over", "match": [{"methods": ["POST"], "path": {"exact": "/over"}}]},
            {"name": "later", "match": [{"methods": ["POST"], "path": {"exact": "/later"}}]},
            {"name": "files", "match": [{"methods": ["POST"], "path": {"exact": "/files"}}], "cost": {"fixed": 3}},
            {"name": "big", "match": [{"methods": ["POST"], "path": {"exact": "/big"}}], "cost": {"fixed": 20}},
            {"name": "research", "match": [{"methods": ["POST"], "path": {"exact": "/research"}}]},
            {"name": "team", "match": [{"methods": ["POST"], "path": {"exact": "/team"}}]},
            {"name": "premium", "match": [{"methods": ["POST"], "path": {"exact": "/premium"}, "body": [{"field": "model", "equals": "gpt-4o"}]}],
             "cost": {"price": {"default_max_tokens": 1000}}}
        ],
        "tier_order": ["free", "pro"],
        "tiers": {
            "free": {"upgrade_url": "https://example.com/pro", "limits": {
                "drafts": {"soft": 2, "hard": 4, "window": "day"},
                "chat": {"hard": 100000, "window": "day"},
                "cheap": {"soft": 1, "hard": 10, "window": "day", "past_soft": "degrade", "degrade": {"model": "mini"}},
                "over": {"hard": 1, "window": "day", "at_hard": "overage", "overage": {"cap": 1}},
                "later": {"hard": 1, "window": "day", "at_hard": "queue"},
                "files": {"hard": 10, "window": "day", "confirm_above": 0.25},
                "big": {"hard": 10, "window": "day"},
                "research": {"included": false},
                "team": {"hard": 10, "window": "day", "scope": "workspace"},
                "premium": {"hard": 500000, "window": "month"}
            }},
            "pro": {"limits": {
                "drafts": {"hard": 100, "window": "day"},
                "chat": {"hard": 1000000, "window": "day"},
                "cheap": {"hard": 100, "window": "day"},
                "over": {"hard": 100, "window": "day"},
                "later": {"hard": 100, "window": "day"},
                "files": {"hard": 100, "window": "day"},
                "big": {"hard": 100, "window": "day"},
                "research": {"hard": 3, "window": "day"},
                "team": {"hard": 100, "window": "day", "scope": "workspace"},
                "premium": {"hard": 5000000, "window": "month"}
            }}
        },
        "usage_endpoint": "/quota"
    });
    if let (Value::Object(top), Value::Object(more)) = (&mut doc, extra) {
        top.extend(more);
    }
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

fn head(path: &str, more: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![(":method".to_string(), b"POST".to_vec()), (":path".to_string(), path.as_bytes().to_vec())];
    h.extend(more.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
    h
}

fn ana(path: &str) -> Vec<(String, Vec<u8>)> {
    head(path, &[("x-user-id", "ana")])
}

/// Sends a request (a JSON `body` read by the filter when given); the step
/// that decided it.
fn send(
    x: &mut Exchange,
    config: &Config,
    host: &mut MemoryHost,
    h: Vec<(String, Vec<u8>)>,
    body: Option<&Value>,
) -> Step {
    let step = x.request_head(config, host, h, body.is_none());
    let Some(body) = body else { return step };
    if step.next != Next::Continue && !matches!(step.next, Next::Pause) {
        return step;
    }
    let bytes = body.to_string().into_bytes();
    let step = x.request_body(config, host, bytes.len(), true);
    match step.next {
        Next::ReadBody(_) => x.body_read(config, host, Some(bytes)),
        _ => step,
    }
}

fn status_of(step: &Step) -> Option<u16> {
    match &step.next {
        Next::Reply(r) => Some(r.status),
        _ => None,
    }
}

/// The upstream answers `status` with `body` (JSON, or `text/event-stream`
/// when `sse`); the stream ends `later_ms` after it began.
fn upstream(x: &mut Exchange, config: &Config, host: &mut MemoryHost, status: u16, body: &[u8], sse: bool) {
    let content_type: &[u8] = if sse { b"text/event-stream" } else { b"application/json" };
    x.response_head(config, host, Some(status), Some(content_type), 0);
    x.response_body(config, host, body, true);
}

/// The stream is logged at `end_ms`; its record.
fn logged(x: &mut Exchange, config: &Config, host: &mut MemoryHost, end_ms: i64) -> Option<LedgerRecord> {
    x.ended(config, host, Ended::default);
    let record = x.ledger(|| end_ms)?;
    assert_eq!(x.ledger(|| end_ms), None, "a record is taken once");
    // Every record is one line that reads back as itself.
    let line = record.to_line();
    assert!(!line.contains('\n'), "{line}");
    assert_eq!(LedgerRecord::from_line(&line).as_ref(), Some(&record), "{line}");
    Some(record)
}

/// One whole exchange: a request, the upstream's answer when admitted, the log.
fn one(config: &Config, host: &mut MemoryHost, h: Vec<(String, Vec<u8>)>, body: Option<&Value>) -> LedgerRecord {
    let mut x = Exchange::new();
    let step = send(&mut x, config, host, h, body);
    if step.next == Next::Continue {
        upstream(&mut x, config, host, 200, b"{}", false);
    }
    logged(&mut x, config, host, NOON_MS + 40).unwrap_or_else(|| panic!("no record: {step:?}"))
}

#[test]
fn an_admitted_request_is_recorded_in_full() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let h = head("/drafts?draft=1", &[("x-user-id", "ana"), ("x-workspace-id", "acme"), ("x-request-id", "7f1c-42")]);
    let record = one(&config, &mut host, h, None);
    assert_eq!(
        record,
        LedgerRecord {
            v: 1,
            time: NOON.into(),
            request_id: Some("7f1c-42".into()),
            user: Some("ana".into()),
            workspace: Some("acme".into()),
            tier: "free".into(),
            class: "drafts".into(),
            method: "POST".into(),
            route: "/drafts".into(),
            units_requested: 1,
            units_charged: 1,
            units_settled: 1,
            status: 200,
            upstream_status: Some(200),
            upstream_reached: true,
            state: "ok".into(),
            duration_ms: Some(40),
            ..LedgerRecord::default()
        }
    );
}

#[test]
fn a_caller_warned_twice_then_blocked_is_recorded_at_each_step() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let steps: Vec<_> = (0..5)
        .map(|_| {
            let r = one(&config, &mut host, ana("/drafts"), None);
            (r.status, r.state, r.warning_level, r.warned, r.units_requested, r.units_charged, r.upgrade_to)
        })
        .collect();
    let pro = || Some("pro".to_string());
    assert_eq!(
        steps,
        vec![
            (200, "ok".into(), None, false, 1, 1, None),
            (200, "warning".into(), Some(0), true, 1, 1, pro()),
            (200, "warning".into(), Some(1), true, 1, 1, pro()),
            (200, "warning".into(), Some(1), false, 1, 1, pro()),
            (429, "blocked".into(), Some(1), false, 1, 0, pro()),
        ]
    );
    let blocked = one(&config, &mut host, ana("/drafts"), None);
    assert_eq!((blocked.upstream_reached, blocked.upstream_status, blocked.units_settled), (false, None, 0));
    // After the upgrade, the same caller is charged under pro.
    let upgraded = one(&config, &mut host, head("/drafts", &[("x-user-id", "ana"), ("x-plan", "pro")]), None);
    assert_eq!((upgraded.tier.as_str(), upgraded.state.as_str(), upgraded.status), ("pro", "ok", 200));
}

#[test]
fn refusals_record_what_the_request_asked_for() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let refused = |host: &mut MemoryHost, h| {
        let r = one(&config, host, h, None);
        (r.status, r.state, r.units_requested, r.units_charged, r.units_settled, r.upstream_reached, r.upgrade_to)
    };
    let pro = Some("pro".to_string());
    // 3 of 10 is more than a quarter of the room: confirm first.
    assert_eq!(refused(&mut host, ana("/files")), (428, "confirmation_required".into(), 3, 0, 0, false, pro.clone()));
    // 20 never fits in 10 a day, and pro's 100 would take it.
    assert_eq!(refused(&mut host, ana("/big")), (413, "too_large".into(), 20, 0, 0, false, pro.clone()));
    assert_eq!(refused(&mut host, ana("/research")), (403, "not_included".into(), 1, 0, 0, false, pro));
    assert_eq!(refused(&mut host, ana("/team")), (403, "workspace_required".into(), 1, 0, 0, false, None));
    // Confirmed, the same request is admitted and charged.
    let confirmed = one(&config, &mut host, head("/files", &[("x-user-id", "ana"), ("x-quota-confirm", "yes")]), None);
    assert_eq!((confirmed.status, confirmed.units_charged, confirmed.state.as_str()), (200, 3, "ok"));
}

#[test]
fn a_store_that_gives_up_is_recorded_as_unavailable_whichever_way_the_policy_goes() {
    for (policy, status, reached) in [("fail_closed", 503, false), ("fail_open", 200, true)] {
        let config = config(json!({"counters": {"on_error": policy, "cas_attempts": 1}}));
        let mut host = MemoryHost::at(NOON_MS);
        *host.store.fail_next_sets.borrow_mut() = 1;
        let r = one(&config, &mut host, ana("/drafts"), None);
        assert_eq!(
            (r.status, r.state.as_str(), r.units_requested, r.units_charged, r.units_settled, r.upstream_reached),
            (status, "unavailable", 1, 0, 0, reached),
            "{policy}"
        );
    }
}

#[test]
fn past_the_soft_or_hard_limit_the_state_and_the_model_served_are_recorded() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let body = json!({"model": "gpt-4o", "stream": true});
    let first = one(&config, &mut host, ana("/cheap"), Some(&body));
    assert_eq!(
        (first.model_asked.as_deref(), first.model_served.as_deref(), first.stream),
        (Some("gpt-4o"), Some("gpt-4o"), true)
    );
    let degraded = one(&config, &mut host, ana("/cheap"), Some(&body));
    assert_eq!(
        (degraded.state.as_str(), degraded.model_asked.as_deref(), degraded.model_served.as_deref()),
        ("degraded", Some("gpt-4o"), Some("mini"))
    );
    let states: Vec<String> = (0..3).map(|_| one(&config, &mut host, ana("/over"), None).state).collect();
    assert_eq!(states, ["warning", "overage", "blocked"]);
    let states: Vec<String> = (0..2).map(|_| one(&config, &mut host, ana("/later"), None).state).collect();
    assert_eq!(states, ["warning", "queued"]);
}

#[test]
fn a_token_metered_answer_settles_at_the_reported_usage_and_names_its_model() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    // Estimated at 2 prompt tokens and the 50 asked for.
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "12345678"}], "max_tokens": 50});
    let mut x = Exchange::new();
    assert_eq!(send(&mut x, &config, &mut host, ana("/chat"), Some(&body)).next, Next::Continue);
    let answer = json!({"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 12, "completion_tokens": 30,
        "total_tokens": 42, "prompt_tokens_details": {"cached_tokens": 8}}});
    upstream(&mut x, &config, &mut host, 200, answer.to_string().as_bytes(), false);
    let r = logged(&mut x, &config, &mut host, NOON_MS + 900).unwrap();
    assert_eq!((r.units_requested, r.units_charged, r.units_settled), (52, 52, 42));
    assert_eq!(r.tokens, Some(LedgerTokens { input: 12, output: 30, cached_input: 8, reasoning: 0, cache_write: 0 }));
    assert_eq!((r.model_asked.as_deref(), r.model_served.as_deref()), (Some("gpt-4o"), Some("gpt-4o-2024-08-06")));
    assert_eq!((r.stream, r.duration_ms), (false, Some(900)));
}

#[test]
fn a_stream_with_its_usage_in_the_last_event_is_recorded_from_it() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "12345678"}], "max_tokens": 50,
                      "stream": true});
    let mut x = Exchange::new();
    let step = send(&mut x, &config, &mut host, ana("/chat"), Some(&body));
    assert_eq!(step.next, Next::Continue);
    x.response_head(&config, &mut host, Some(200), Some(b"text/event-stream"), 0);
    let events = [
        "data: {\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":70,",
        "\"total_tokens\":79,\"completion_tokens_details\":{\"reasoning_tokens\":20}}}\n\ndata: [DONE]\n\n",
    ];
    for (i, e) in events.iter().enumerate() {
        x.response_body(&config, &mut host, e.as_bytes(), i + 1 == events.len());
    }
    let r = logged(&mut x, &config, &mut host, NOON_MS + 3000).unwrap();
    assert!(r.stream);
    assert_eq!((r.units_charged, r.units_settled), (52, 79));
    assert_eq!(r.tokens, Some(LedgerTokens { input: 9, output: 70, cached_input: 0, reasoning: 20, cache_write: 0 }));
    assert_eq!(r.model_served.as_deref(), Some("gpt-4o-mini"));
}

#[test]
fn a_priced_request_is_recorded_in_micro_units_of_its_currency() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "12345678"}], "max_tokens": 100});
    let mut x = Exchange::new();
    send(&mut x, &config, &mut host, ana("/premium"), Some(&body));
    let answer = json!({"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 200,
        "prompt_tokens_details": {"cached_tokens": 400}, "completion_tokens_details": {"reasoning_tokens": 50}}});
    upstream(&mut x, &config, &mut host, 200, answer.to_string().as_bytes(), false);
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    // Reserved: 2 prompt tokens at $2.50 and 100 at $10.00 a million.
    // Settled: 600 at $2.50, 400 cached at $1.25 and 200 out at $10.00.
    assert_eq!(
        (r.currency.as_deref(), r.units_requested, r.units_charged, r.units_settled),
        (Some("USD"), 1005, 1005, 4000)
    );
    assert_eq!(
        r.tokens,
        Some(LedgerTokens { input: 1000, output: 200, cached_input: 400, reasoning: 50, cache_write: 0 })
    );
}

#[test]
fn refunds_settle_at_nothing_and_say_whether_the_upstream_was_reached() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let answered = |host: &mut MemoryHost, status, flags| {
        let mut x = Exchange::new();
        send(&mut x, &config, host, ana("/drafts"), None);
        x.response_head(&config, host, Some(status), None, flags);
        let r = logged(&mut x, &config, host, NOON_MS).unwrap();
        (r.status, r.upstream_status, r.upstream_reached, r.units_charged, r.units_settled)
    };
    // The upstream failed the request: refunded.
    assert_eq!(answered(&mut host, 500, 0), (500, Some(500), true, 1, 0));
    // Envoy never forwarded it: its own 503, refunded.
    assert_eq!(answered(&mut host, 503, UPSTREAM_CONNECTION_FAILURE), (503, None, false, 1, 0));
    // Envoy's 504 after the upstream had it: kept, and the status is not the upstream's.
    assert_eq!(answered(&mut host, 504, UPSTREAM_REQUEST_TIMEOUT), (504, None, true, 1, 1));
}

#[test]
fn a_client_that_leaves_is_recorded_without_a_status() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let left = |host: &mut MemoryHost, user: &str, connected: bool| {
        let mut x = Exchange::new();
        send(&mut x, &config, host, head("/drafts", &[("x-user-id", user)]), None);
        x.ended(&config, host, || Ended { response_flags: DOWNSTREAM_REMOTE_RESET, upstream_connected: connected });
        let r = x.ledger(|| NOON_MS + 5).unwrap();
        (r.status, r.upstream_status, r.upstream_reached, r.units_charged, r.units_settled, r.state)
    };
    // After the upstream had it: charged all the same.
    assert_eq!(left(&mut host, "ana", true), (0, None, true, 1, 1, "ok".to_string()));
    // Before it left Envoy: given back.
    assert_eq!(left(&mut host, "bo", false), (0, None, false, 1, 0, "ok".to_string()));
}

#[test]
fn ids_are_shown_as_the_events_show_them() {
    let plain = one(
        &config(json!({})),
        &mut MemoryHost::at(NOON_MS),
        head("/drafts", &[("x-user-id", "ana"), ("x-workspace-id", "acme")]),
        None,
    );
    assert_eq!((plain.user.as_deref(), plain.workspace.as_deref()), (Some("ana"), Some("acme")));
    let hashed = config(json!({"observability": {"ids": "hashed", "id_salt": "pepper-pepper"}}));
    let r = one(
        &hashed,
        &mut MemoryHost::at(NOON_MS),
        head("/drafts", &[("x-user-id", "ana"), ("x-workspace-id", "acme")]),
        None,
    );
    let hash = |id: &str| crate::events::shown_id(&hashed.observability.ids, id).as_str().map(str::to_string);
    assert_eq!((r.user.clone(), r.workspace.clone()), (hash("ana"), hash("acme")));
    assert!(r.user.as_deref().is_some_and(|u| u.len() == 16 && u != "ana"), "{r:?}");
    let omitted = config(json!({"observability": {"ids": "omitted"}}));
    let r = one(
        &omitted,
        &mut MemoryHost::at(NOON_MS),
        head("/drafts", &[("x-user-id", "ana"), ("x-workspace-id", "acme")]),
        None,
    );
    assert_eq!((r.user, r.workspace), (None, None));
    // An anonymous caller: counted by device, never named.
    let r = one(&config(json!({})), &mut MemoryHost::at(NOON_MS), head("/drafts", &[("x-device", "d-1")]), None);
    assert_eq!((r.user, r.anonymous, r.tier.as_str()), (None, true, "free"));
}

#[test]
fn requests_nothing_was_decided_about_have_no_record() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let none = |host: &mut MemoryHost, h: Vec<(String, Vec<u8>)>| {
        let mut x = Exchange::new();
        let step = x.request_head(&config, host, h, true);
        if step.next == Next::Continue {
            upstream(&mut x, &config, host, 200, b"{}", false);
        }
        x.ended(&config, host, Ended::default);
        x.ledger(|| panic!("the clock is read only for a record"))
    };
    // Unclassified, the usage endpoint, and a caller with no identity (401).
    assert_eq!(none(&mut host, ana("/elsewhere")), None);
    let usage = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), b"/quota".to_vec()),
        ("x-user-id".into(), b"ana".to_vec()),
    ];
    assert_eq!(none(&mut host, usage), None);
    assert_eq!(none(&mut host, head("/drafts", &[])), None);
    // A body rule that matches nothing leaves the request unclassified.
    let mut x = Exchange::new();
    send(&mut x, &config, &mut host, ana("/cheap"), Some(&json!({"prompt": "no model"})));
    assert_eq!(x.ledger(|| NOON_MS), None);
}

#[test]
fn a_ledger_turned_off_keeps_no_entry() {
    let config = config(json!({"observability": {"ledger": false}}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    send(&mut x, &config, &mut host, ana("/drafts"), None);
    assert!(!x.records_response());
    x.ended(&config, &mut host, Ended::default);
    assert_eq!(x.ledger(|| NOON_MS), None);
}

#[test]
fn a_request_whose_body_is_read_first_arrived_with_its_head() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    assert_eq!(x.request_head(&config, &mut host, ana("/cheap"), false).next, Next::Continue);
    host.now_ms = NOON_MS + 1500;
    let bytes = json!({"model": "gpt-4o"}).to_string().into_bytes();
    assert_eq!(x.request_body(&config, &mut host, bytes.len(), true).next, Next::ReadBody(bytes.len()));
    assert_eq!(x.body_read(&config, &mut host, Some(bytes)).next, Next::Continue);
    upstream(&mut x, &config, &mut host, 200, b"{}", false);
    let r = logged(&mut x, &config, &mut host, NOON_MS + 2000).unwrap();
    assert_eq!((r.time.as_str(), r.duration_ms), (NOON, Some(2000)));
}

#[test]
fn the_redis_store_records_what_its_answer_decided() {
    let config = config(
        json!({"counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "q:"}, "on_error": "fail_closed"}}),
    );
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let Next::Call(calls) = x.request_head(&config, &mut host, ana("/drafts"), true).next else { panic!() };
    let [Call { n, .. }] = calls.as_slice() else { panic!("{calls:?}") };
    // No answer: refused by the fail policy, recorded as such.
    assert_eq!(status_of(&x.answered(&config, &mut host, *n, None, b"")), Some(503));
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    assert_eq!((r.status, r.state.as_str(), r.units_requested, r.units_charged), (503, "unavailable", 1, 0));
    // A stream that ends while its charge is out was never decided.
    let mut x = Exchange::new();
    x.request_head(&config, &mut host, ana("/drafts"), true);
    x.ended(&config, &mut host, Ended::default);
    assert_eq!(x.ledger(|| NOON_MS), None);
}

#[test]
fn hostile_ids_and_models_stay_one_bounded_line() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    // Identity takes no control characters (a newline included); quotes,
    // braces, backslashes and line separators it takes.
    let user = "ana\u{2028}\"},{\"user\":\"root\",\"units_settled\":0,\"x\":\"\\";
    // As long as a body the filter reads may be (within max_body_bytes).
    let model = format!("evil\"\n\r\u{85}\u{2029}{}", "m".repeat(200_000));
    let body = json!({"model": model, "stream": true});
    let h = head("/cheap", &[("x-user-id", user), ("x-request-id", "id\"\u{2028}")]);
    let r = one(&config, &mut host, h, Some(&body));
    let line = r.to_line();
    assert!(!line.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')), "{line}");
    assert!(line.len() < 2 * 1024, "{} bytes", line.len());
    let back = LedgerRecord::from_line(&line).unwrap();
    assert_eq!(back.user.as_deref(), Some(user));
    assert_eq!(back.request_id.as_deref(), Some("id\"\u{2028}"));
    let asked = back.model_asked.unwrap_or_default();
    assert!(asked.starts_with("evil\"\n\r\u{85}\u{2029}mmm") && asked.ends_with('…'), "{asked}");
    assert!(asked.len() <= MAX_MODEL_BYTES + '…'.len_utf8());
    // One JSON object: nothing after it, and the hostile text did not add fields.
    let doc: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(doc["units_settled"], 1);
    assert!(doc.get("x").is_none());
    // A served model the upstream names is bounded too.
    let mut x = Exchange::new();
    let chat = json!({"model": "gpt-4o", "max_tokens": 5});
    send(&mut x, &config, &mut host, ana("/chat"), Some(&chat));
    let answer = json!({"model": "n".repeat(100_000), "usage": {"total_tokens": 3}});
    upstream(&mut x, &config, &mut host, 200, answer.to_string().as_bytes(), false);
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    assert!(r.model_served.is_some_and(|m| m.len() <= MAX_MODEL_BYTES + 3));
    // An answer whose body is not JSON names no model and reports no tokens.
    let mut x = Exchange::new();
    send(&mut x, &config, &mut host, ana("/chat"), Some(&chat));
    upstream(&mut x, &config, &mut host, 200, b"\xff\xfe not json", false);
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    assert_eq!((r.model_served.as_deref(), r.tokens, r.units_settled), (Some("gpt-4o"), None, r.units_charged));
}

#[test]
fn the_state_recorded_is_the_state_the_caller_was_told() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    for path in ["/drafts", "/drafts", "/drafts", "/drafts", "/drafts", "/files", "/big", "/research", "/team", "/over"]
    {
        let mut x = Exchange::new();
        let step = send(&mut x, &config, &mut host, ana(path), None);
        let told = match &step.next {
            Next::Reply(r) => r.headers.iter().find(|(n, _)| *n == "x-quota-state").map(|(_, v)| v.clone()),
            _ => {
                x.response_headers().and_then(|h| h.iter().find(|(n, _)| *n == "x-quota-state").map(|(_, v)| v.clone()))
            }
        };
        x.ended(&config, &mut host, Ended::default);
        assert_eq!(x.ledger(|| NOON_MS).map(|r| r.state), told, "{path}");
    }
}

#[test]
fn a_busy_upstream_is_recorded_as_busy_and_given_back() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    send(&mut x, &config, &mut host, ana("/drafts"), None);
    let head = super::ResponseHead { status: Some(529), ..super::ResponseHead::default() };
    assert!(matches!(x.response(&config, &mut host, head), super::ResponseStep::Busy(_)));
    x.response_body(&config, &mut host, b"{\"error\": \"overloaded\"}", true);
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    assert_eq!(
        (r.status, r.upstream_status, r.upstream_reached, r.state.as_str(), r.units_charged, r.units_settled),
        (529, Some(529), true, "busy", 1, 0)
    );
}

#[test]
fn a_confirmed_request_and_cache_writes_are_recorded() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let confirmed = one(&config, &mut host, head("/files", &[("x-user-id", "ana"), ("x-quota-confirm", "yes")]), None);
    assert!(confirmed.confirmed);
    assert!(!one(&config, &mut host, ana("/drafts"), None).confirmed);
    // Anthropic counts cache reads and writes beside its input tokens.
    let mut x = Exchange::new();
    let body = json!({"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "12345678"}]});
    send(&mut x, &config, &mut host, ana("/chat"), Some(&body));
    let answer = json!({"model": "claude-sonnet-4", "usage": {"input_tokens": 10, "output_tokens": 20,
        "cache_read_input_tokens": 300, "cache_creation_input_tokens": 40}});
    upstream(&mut x, &config, &mut host, 200, answer.to_string().as_bytes(), false);
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    assert_eq!(
        r.tokens,
        Some(LedgerTokens { input: 350, output: 20, cached_input: 300, reasoning: 0, cache_write: 40 })
    );
}

#[test]
fn a_request_let_through_uncounted_still_records_its_answer() {
    let config = config(json!({"counters": {"on_error": "fail_open", "cas_attempts": 1}}));
    let mut host = MemoryHost::at(NOON_MS);
    *host.store.fail_next_sets.borrow_mut() = 1;
    let mut x = Exchange::new();
    send(&mut x, &config, &mut host, ana("/drafts"), None);
    assert!(!x.corrects_charge() && !x.reads_response_head(&config, Some(200)));
    assert!(x.records_response(), "read for the ledger alone");
    x.response_head(&config, &mut host, Some(502), None, 0);
    let r = logged(&mut x, &config, &mut host, NOON_MS).unwrap();
    assert_eq!((r.status, r.upstream_status, r.state.as_str(), r.units_charged), (502, Some(502), "unavailable", 0));
    // With no ledger, such a response head is not read at all.
    let mut off = config.clone();
    off.observability.ledger = false;
    *host.store.fail_next_sets.borrow_mut() = 1;
    let mut x = Exchange::new();
    send(&mut x, &off, &mut host, ana("/drafts"), None);
    assert!(!x.reads_response_head(&off, Some(200)) && !x.records_response());
}
