//! An upstream's busy answer, driven through the exchange as the filter
//! drives it: the charge goes back (every counter, exactly), the answer is
//! replaced in the format the client reads, and only the upstream's status
//! decides.

use super::memory::{MemoryHost, Noted};
use super::response::Ended;
use super::{Exchange, Next, ResponseHead, ResponseStep, BUSY_REMOVED};
use crate::config::Config;
use crate::counter::Counter;
use crate::refund::flags::{NO_HEALTHY_UPSTREAM, UPSTREAM_REMOTE_RESET};
use crate::reply::LocalReply;
use crate::store::CounterStore;
use serde_json::{json, Value};

const NOON_MS: i64 = 1_795_348_800_000;

/// "chat" (tokens, reconciled), "messages" (Anthropic's path), "files"
/// (fixed 3), "team" (a pool of 6 with 4 a member), "premium" (money);
/// `extra`: top-level fields.
fn config(extra: Value) -> Config {
    let mut doc = json!({
        "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                     "default_tier": "free"},
        "classes": [
            {"name": "chat", "match": [{"methods": ["POST"], "path": {"exact": "/v1/chat/completions"}}],
             "cost": {"tokens": {"default_max_tokens": 100}}},
            {"name": "messages", "unit": "message", "match": [{"methods": ["POST"], "path": {"exact": "/v1/messages"}}]},
            {"name": "files", "match": [{"methods": ["POST"], "path": {"exact": "/files"}}], "cost": {"fixed": 3}},
            {"name": "team", "match": [{"methods": ["POST"], "path": {"exact": "/team"}}]},
            {"name": "premium", "match": [{"methods": ["POST"], "path": {"exact": "/premium"}}],
             "cost": {"price": {"default_max_tokens": 1000}}}
        ],
        "tiers": {"free": {"limits": {
            "chat": {"hard": 100000, "window": "day"},
            "messages": {"hard": 10, "window": "day"},
            "files": {"hard": 10, "window": "day"},
            "team": [{"scope": "workspace", "hard": 6, "window": "day"}, {"scope": "user", "hard": 4, "window": "day"}],
            "premium": {"hard": 500, "window": "month"}
        }}},
        "prices": {"currency": "USD", "default": {"input": "2.50", "output": "10.00"}}
    });
    if let (Value::Object(top), Value::Object(more)) = (&mut doc, extra) {
        top.extend(more);
    }
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

fn request(path: &str, more: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![
        (":method".to_string(), b"POST".to_vec()),
        (":path".to_string(), path.as_bytes().to_vec()),
        ("x-user-id".to_string(), b"alice".to_vec()),
        ("x-workspace-id".to_string(), b"acme".to_vec()),
    ];
    h.extend(more.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
    h
}

/// Sends a request (with a JSON body when `body` is set) and expects it admitted.
fn admit(config: &Config, host: &mut MemoryHost, path: &str, more: &[(&str, &str)], body: Option<Value>) -> Exchange {
    let mut x = Exchange::new();
    let step = x.request_head(config, host, request(path, more), body.is_none());
    let step = match body {
        None => step,
        Some(body) => {
            let bytes = body.to_string().into_bytes();
            let step = x.request_body(config, host, bytes.len(), true);
            assert_eq!(step.next, Next::ReadBody(bytes.len()), "{step:?}");
            x.body_read(config, host, Some(bytes))
        }
    };
    assert_eq!(step.next, Next::Continue, "{step:?}");
    assert!(x.response_headers().is_some(), "admitted");
    x
}

/// Every counter of the last decision, as stored: its key and record, less
/// the once-per-window markers (a warning level reported, pace flagged): a
/// crossing announced by a request the upstream then refused is not
/// announced twice in a window, as with any refund.
fn counters(config: &Config, host: &MemoryHost) -> Vec<(String, Option<Counter>)> {
    let d = host.decisions().last().cloned().expect("a decision");
    let mut keys: Vec<String> = d.key.iter().cloned().collect();
    keys.extend(d.others.iter().map(|h| h.key.clone()));
    let table = config.counters.table(&host.store, NOON_MS);
    keys.into_iter()
        .map(|k| {
            let record = table.get(&k).ok().flatten().and_then(|(b, _)| Counter::decode(&b));
            (k, record.map(|c| Counter { warned: 0, flags: 0, ..c }))
        })
        .collect()
}

fn busy(
    x: &mut Exchange,
    config: &Config,
    host: &mut MemoryHost,
    status: u16,
    retry_after: Option<&[u8]>,
) -> LocalReply {
    let head = ResponseHead { status: Some(status), content_type: None, retry_after, flags: 0 };
    match x.response(config, host, head) {
        ResponseStep::Busy(answer) => answer,
        ResponseStep::Continue => panic!("{status}: not a busy answer"),
    }
}

fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
    reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn json_of(reply: &LocalReply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or(Value::Null)
}

#[test]
fn a_busy_answer_gives_the_charge_back_and_says_so_in_the_openai_envelope() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    // Two files earlier today: the request under test finds 6 used.
    for _ in 0..2 {
        admit(&config, &mut host, "/files", &[], None);
    }
    let before = counters(&config, &host);
    let mut x = admit(&config, &mut host, "/files", &[], None);
    assert_ne!(counters(&config, &host), before, "charged at admission");
    let answer = busy(&mut x, &config, &mut host, 429, Some(b"7"));
    assert_eq!(counters(&config, &host), before, "every unit back");
    assert_eq!(answer.status, 429);
    assert_eq!(header(&answer, "x-should-retry"), Some("true"));
    // The upstream's Retry-After stands: the answer does not set its own.
    assert_eq!(header(&answer, "retry-after"), None);
    assert_eq!(header(&answer, "content-type"), Some("application/json"));
    // The caller's standing as it was before the request.
    assert_eq!(header(&answer, "x-quota-used"), Some("6"));
    assert_eq!(header(&answer, "x-quota-remaining"), Some("4"));
    assert_eq!(header(&answer, "x-quota-cost"), Some("0"));
    assert_eq!(header(&answer, "ratelimit"), Some("\"files\";r=4;t=43200"));
    let body = json_of(&answer);
    assert_eq!(
        body["error"]["message"],
        "The model is busy right now, so this request didn't go through. It didn't count against your allowance. \
         Try again in 7 s."
    );
    assert_eq!(
        (body["error"]["type"].as_str(), body["error"]["code"].as_str()),
        (Some("upstream_busy"), Some("upstream_busy"))
    );
    let quota = &body["error"]["quota"];
    assert_eq!((quota["class"].as_str(), quota["upstream_status"].as_u64()), (Some("files"), Some(429)));
    assert_eq!(
        (quota["cost"].as_u64(), quota["used"].as_u64(), quota["remaining"].as_u64()),
        (Some(0), Some(6), Some(4))
    );
    assert_eq!(quota["state"], "ok");
    assert!(host.notes.contains(&Noted::UpstreamBusy { status: 429 }), "{:?}", host.notes);
    // The body: the answer replaces the first chunk, nothing the rest.
    assert!(x.replaces_response_body());
    assert_eq!(x.replace_response_chunk(&mut host, b"{\"error\": \"slow down\"}"), answer.body.as_bytes());
    assert_eq!(x.replace_response_chunk(&mut host, b"more"), b"");
    assert!(host.notes.iter().any(|n| matches!(n, Noted::Log { line, .. } if line.contains("(429), which began: {\\\"error\\\": \\\"slow down\\\"}"))), "{:?}", host.notes);
    // Nothing after changes the counters again.
    x.response_body(&config, &mut host, b"{}", true);
    x.ended(&config, &mut host, || Ended { response_flags: 0, upstream_connected: false });
    assert_eq!(counters(&config, &host), before);
    assert_eq!(BUSY_REMOVED, ["content-length", "content-encoding", "content-md5", "etag"]);
}

#[test]
fn without_an_upstream_retry_after_the_answer_sets_the_configured_one() {
    for (extra, expected) in [(json!({}), "2"), (json!({"upstream_busy": {"retry_after": 30}}), "30")] {
        let config = config(extra);
        let mut host = MemoryHost::at(NOON_MS);
        let mut x = admit(&config, &mut host, "/files", &[], None);
        let answer = busy(&mut x, &config, &mut host, 503, None);
        assert_eq!(header(&answer, "retry-after"), Some(expected));
        let message = json_of(&answer)["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.ends_with(&format!("Try again in {expected} s.")), "{message}");
    }
    // An upstream's date is kept as it is; the copy does not guess.
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = admit(&config, &mut host, "/files", &[], None);
    let answer = busy(&mut x, &config, &mut host, 503, Some(b"Wed, 21 Oct 2026 07:28:00 GMT"));
    assert_eq!(header(&answer, "retry-after"), None);
    assert!(json_of(&answer)["error"]["message"].as_str().is_some_and(|m| m.ends_with("Try again in a moment.")));
}

#[test]
fn a_busy_answer_leaves_every_stacked_counter_as_it_was() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    admit(&config, &mut host, "/team", &[], None);
    let before = counters(&config, &host);
    assert_eq!(before.len(), 2, "{before:?}");
    let mut x = admit(&config, &mut host, "/team", &[], None);
    let answer = busy(&mut x, &config, &mut host, 529, None);
    assert_eq!(counters(&config, &host), before);
    assert_eq!(answer.status, 529);
    let quota = &json_of(&answer)["error"]["quota"];
    assert_eq!(quota["used"], 1, "{quota}");
}

#[test]
fn a_busy_answer_gives_a_money_reservation_back() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100});
    admit(&config, &mut host, "/premium", &[], Some(chat.clone()));
    let before = counters(&config, &host);
    let mut x = admit(&config, &mut host, "/premium", &[], Some(chat));
    assert!(counters(&config, &host)[0].1.map(|c| c.used) > before[0].1.map(|c| c.used));
    let answer = busy(&mut x, &config, &mut host, 429, Some(b"1"));
    assert_eq!(counters(&config, &host), before);
    assert_eq!(header(&answer, "x-quota-currency"), Some("USD"));
    assert_eq!(header(&answer, "x-quota-cost"), Some("0.00"));
    assert_eq!(json_of(&answer)["error"]["quota"]["money"]["currency"], "USD");
}

#[test]
fn a_token_metered_busy_answer_is_not_metered_from_its_body() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "12345678"}], "max_tokens": 50});
    let mut x = admit(&config, &mut host, "/v1/chat/completions", &[], Some(body));
    assert!(x.reads_response_body());
    busy(&mut x, &config, &mut host, 429, None);
    assert!(!x.reads_response_body() && !x.corrects_charge());
    // A body that reports usage is not read: it is the upstream's refusal.
    x.response_body(&config, &mut host, br#"{"usage": {"total_tokens": 90000}}"#, true);
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 0);
}

#[test]
fn a_busy_answer_gives_back_whatever_refunds_says() {
    let config = config(json!({"refunds": {"statuses": []}}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = admit(&config, &mut host, "/files", &[], None);
    busy(&mut x, &config, &mut host, 429, None);
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 0);
    // The same policy keeps a 500's charge: only a busy answer is given back.
    let mut x = admit(&config, &mut host, "/files", &[], None);
    let head = ResponseHead { status: Some(500), ..ResponseHead::default() };
    assert_eq!(x.response(&config, &mut host, head), ResponseStep::Continue);
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 3);
}

#[test]
fn only_the_upstreams_status_makes_an_answer_busy() {
    // A caller who wants a free request says it is busy every way it can:
    // request headers, and an upstream 200 whose headers and body say so.
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let claims = [
        ("x-should-retry", "true"),
        ("retry-after", "1"),
        ("x-quota-state", "upstream_busy"),
        ("x-mock-status", "529"),
    ];
    let mut x = admit(&config, &mut host, "/files", &claims, None);
    let head =
        ResponseHead { status: Some(200), content_type: Some(b"application/json"), retry_after: Some(b"1"), flags: 0 };
    assert_eq!(x.response(&config, &mut host, head), ResponseStep::Continue);
    assert!(!x.replaces_response_body());
    x.response_body(&config, &mut host, br#"{"error": {"type": "overloaded_error", "code": "upstream_busy"}}"#, true);
    x.ended(&config, &mut host, || Ended { response_flags: 0, upstream_connected: true });
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 3, "charged");
    assert!(!host.notes.iter().any(|n| matches!(n, Noted::UpstreamBusy { .. })));
    // Envoy's own 503 after the upstream had the request (a reset) keeps its
    // charge: the work may have been done.
    let mut x = admit(&config, &mut host, "/files", &[], None);
    let reset = ResponseHead { status: Some(503), flags: UPSTREAM_REMOTE_RESET, ..ResponseHead::default() };
    assert_eq!(x.response(&config, &mut host, reset), ResponseStep::Continue);
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 6);
    // Envoy's 503 for a request it never forwarded did no work: busy.
    let mut x = admit(&config, &mut host, "/files", &[], None);
    let never = ResponseHead { status: Some(503), flags: NO_HEALTHY_UPSTREAM, ..ResponseHead::default() };
    assert!(matches!(x.response(&config, &mut host, never), ResponseStep::Busy(_)));
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 6);
}

#[test]
fn a_busy_answer_never_gives_back_more_than_its_charge() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut first = admit(&config, &mut host, "/files", &[], None);
    admit(&config, &mut host, "/files", &[], None);
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 6);
    busy(&mut first, &config, &mut host, 429, None);
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 3, "the other request's 3 stay");
    // A second head (or a refunded status after) gives nothing more back.
    assert_eq!(
        first.response(&config, &mut host, ResponseHead { status: Some(429), ..ResponseHead::default() }),
        ResponseStep::Continue
    );
    first.response_head(&config, &mut host, Some(503), None, 0);
    first.ended(&config, &mut host, || Ended { response_flags: NO_HEALTHY_UPSTREAM, upstream_connected: false });
    assert_eq!(counters(&config, &host)[0].1.map_or(0, |c| c.used), 3);
}

#[test]
fn a_busy_answer_can_be_turned_off_and_statuses_chosen() {
    let off = config(json!({"upstream_busy": {"enabled": false}}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = admit(&off, &mut host, "/files", &[], None);
    assert!(!off.upstream_busy.may_be_busy(Some(429)));
    let head = ResponseHead { status: Some(429), ..ResponseHead::default() };
    assert_eq!(x.response(&off, &mut host, head), ResponseStep::Continue);
    // Refunded as any upstream 4xx (the default refunds), its body untouched.
    assert_eq!(counters(&off, &host)[0].1.map_or(0, |c| c.used), 0);
    assert!(!x.replaces_response_body());

    let only_529 = config(json!({"upstream_busy": {"statuses": [529]}}));
    let mut x = admit(&only_529, &mut host, "/files", &[], None);
    assert_eq!(x.response(&only_529, &mut host, head), ResponseStep::Continue);
    let mut x = admit(&only_529, &mut host, "/files", &[], None);
    assert!(x.reads_response_head(&only_529, Some(529)));
    busy(&mut x, &only_529, &mut host, 529, None);
}

#[test]
fn anthropic_requests_get_anthropics_busy_types() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    for (status, kind) in [(429, "rate_limit_error"), (503, "overloaded_error"), (529, "overloaded_error")] {
        let mut x = admit(&config, &mut host, "/v1/messages", &[], None);
        let answer = busy(&mut x, &config, &mut host, status, None);
        let body = json_of(&answer);
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{status}");
        assert_eq!(body["error"]["code"], "upstream_busy");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("The model is busy right now")));
        assert_eq!(body["error"]["quota"]["used"], 0);
    }
    // Accept still wins: problem details and a page.
    let mut x = admit(&config, &mut host, "/v1/messages", &[("accept", "application/problem+json")], None);
    let problem = busy(&mut x, &config, &mut host, 529, None);
    assert_eq!(header(&problem, "content-type"), Some("application/problem+json"));
    let body = json_of(&problem);
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str(), body["type"].as_str()),
        (Some(529), Some("upstream_busy"), Some("about:blank"))
    );
    let mut x = admit(&config, &mut host, "/v1/messages", &[("accept", "text/html")], None);
    let page = busy(&mut x, &config, &mut host, 429, None);
    assert!(page.body.contains("<h1>The model is busy right now</h1>"), "{}", page.body);
    assert!(page.body.contains("didn&#39;t count against your allowance"));
}

#[test]
fn the_busy_copy_can_be_overridden_per_class_and_tier() {
    let config = config(json!({"copy": {"upstream_busy": "Busy ({retry_in})."}}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = admit(&config, &mut host, "/files", &[], None);
    let answer = busy(&mut x, &config, &mut host, 429, Some(b"90"));
    assert_eq!(json_of(&answer)["error"]["message"], "Busy (2 min).");

    let mut doc: Value =
        serde_json::from_slice(include_bytes!("../../../envoy/demo-config.json")).unwrap_or(Value::Null);
    doc["classes"][2]["copy"] = json!({"upstream_busy": "Drafts are busy; your {count_remaining} are safe."});
    doc["tiers"]["pro"]["copy"] = json!({"upstream_busy": "Pro: busy, try in {retry_in}."});
    let demo = Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    let draft = |plan: &str| {
        let mut h = request("/v1/projects/p/drafts", &[]);
        h.push(("x-plan".into(), plan.as_bytes().to_vec()));
        h
    };
    assert_eq!(x.request_head(&demo, &mut host, draft("free"), true).next, Next::Continue);
    assert_eq!(
        json_of(&busy(&mut x, &demo, &mut host, 503, None))["error"]["message"],
        "Drafts are busy; your 10 drafts are safe."
    );
    let mut x = Exchange::new();
    assert_eq!(x.request_head(&demo, &mut host, draft("pro"), true).next, Next::Continue);
    assert_eq!(json_of(&busy(&mut x, &demo, &mut host, 503, None))["error"]["message"], "Pro: busy, try in 2 s.");
}

#[test]
fn an_admitted_request_without_a_counter_still_gets_the_busy_answer() {
    // fail_open admits without a counter when the store gives up.
    let config = config(json!({"counters": {"on_error": "fail_open", "cas_attempts": 1}}));
    let mut host = MemoryHost::at(NOON_MS);
    *host.store.fail_next_sets.borrow_mut() = 1;
    let mut x = admit(&config, &mut host, "/files", &[], None);
    assert!(!x.corrects_charge());
    assert!(x.reads_response_head(&config, Some(503)) && !x.reads_response_head(&config, Some(200)));
    let answer = busy(&mut x, &config, &mut host, 503, None);
    assert_eq!(json_of(&answer)["error"]["code"], "upstream_busy");
    assert_eq!(host.store.len(), 0, "nothing was ever charged");
}

#[test]
fn an_unclassified_request_is_never_touched() {
    let config = config(json!({}));
    let mut host = MemoryHost::at(NOON_MS);
    let mut x = Exchange::new();
    assert_eq!(x.request_head(&config, &mut host, request("/elsewhere", &[]), true).next, Next::Continue);
    assert!(!x.reads_response_head(&config, Some(429)));
    let head = ResponseHead { status: Some(429), ..ResponseHead::default() };
    assert_eq!(x.response(&config, &mut host, head), ResponseStep::Continue);
    assert!(!x.replaces_response_body());
}
