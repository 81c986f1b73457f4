//! What the fuzz targets share: the configs they run against, a counter
//! store that can misbehave, one request driven through the whole core the
//! way the filter drives it (`filter/src/stream.rs`), and a mutator that
//! turns a valid config into a nearly valid one.
//!
//! The harness asserts only what must hold for any input: no panic, no
//! header value that could split a response, JSON replies that are JSON,
//! and a client (`wire.rs`) that can read back what the filter wrote.

use libfuzzer_sys::arbitrary::{self, Unstructured};
use quota_core::classify::{self, HeadMatch};
use quota_core::config::Config;
use quota_core::counter::Counter;
use quota_core::engine;
use quota_core::events::{self, ClassMetric};
use quota_core::exchange::response::{Charged, Ended};
use quota_core::identity::{self, IdentityError};
use quota_core::negotiate::{self, BodyFormat};
use quota_core::refund::flags;
use quota_core::reply::{self, Action, LocalReply};
use quota_core::request::{NoProperties, RequestHead};
use quota_core::store::{Cas, CounterStore, Expect, StoreError};
use quota_core::{admin, admission, cost, headers, usage, wire};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The configs the request targets run against, as JSON: the demo matrix,
/// the seeds example, and a config that turns on every feature.
pub const BASE_CONFIGS: [&[u8]; 3] = [
    include_bytes!("../../envoy/demo-config.json"),
    include_bytes!("../../envoy/examples/seeds.json"),
    include_bytes!("../configs/rich.json"),
];

/// [`BASE_CONFIGS`], parsed once.
pub fn configs() -> &'static [Config] {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        BASE_CONFIGS
            .iter()
            .map(|json| Config::from_json(json).unwrap_or_else(|e| panic!("a base config is invalid: {e}")))
            .collect()
    })
}

/// Noon UTC on a weekday in 2026, the time the unit tests use.
pub const NOON_MS: i64 = 1_795_348_800_000;

/// A counter from 48 fuzz bytes laid out as records were before the compact
/// encoding (version 2): flags at 1 and 2, the window code at 4, then window
/// start and end, used, grant used and grant, 8 bytes each, little-endian.
pub fn counter_from_fixed_layout(bytes: &[u8; 48]) -> Counter {
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    Counter {
        warned: bytes[1],
        flags: bytes[2],
        window_code: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        window_start: u64_at(8) as i64,
        window_end: u64_at(16) as i64,
        used: u64_at(24),
        grant_used: u64_at(32),
        grant: u64_at(40),
    }
}

/// What a store holds for 48 fuzz bytes, so corpora written for the fixed
/// layout keep their meaning: a record of [`counter_from_fixed_layout`] when
/// byte 0 is 2 (the old version), else the bytes themselves (a record the
/// filter did not write).
pub fn stored_record(bytes: &[u8; 48]) -> Vec<u8> {
    if bytes[0] == 2 {
        counter_from_fixed_layout(bytes).encode().to_vec()
    } else {
        bytes.to_vec()
    }
}

/// How the counter store behaves for one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Reliable,
    /// Every call fails: the fail policy decides.
    Down,
    /// Every other write loses a race.
    Racy,
    /// Every write loses a race: the CAS loop gives up.
    Contended,
}

impl StoreMode {
    pub fn from_bits(b: u8) -> StoreMode {
        match b & 3 {
            0 => StoreMode::Reliable,
            1 => StoreMode::Down,
            2 => StoreMode::Racy,
            _ => StoreMode::Contended,
        }
    }
}

/// A counter store with Envoy's shared-data semantics that can fail on
/// purpose, and can make every absent key read as `preload` (shared data
/// holding a value the filter did not write: a bucket of another format,
/// garbage; `drive` reads and writes the store through the counter table).
pub struct FuzzStore {
    entries: RefCell<HashMap<String, (Vec<u8>, Cas)>>,
    preload: Option<Vec<u8>>,
    mode: StoreMode,
    sets: Cell<u32>,
}

impl FuzzStore {
    pub fn new(mode: StoreMode, preload: Option<Vec<u8>>) -> Self {
        FuzzStore { entries: RefCell::default(), preload, mode, sets: Cell::new(0) }
    }
}

impl CounterStore for FuzzStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        if self.mode == StoreMode::Down {
            return Err(StoreError::Unavailable("fuzz: store down".into()));
        }
        Ok(self.entries.borrow().get(key).cloned().or_else(|| self.preload.clone().map(|p| (p, 0))))
    }

    fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
        let n = self.sets.get().wrapping_add(1);
        self.sets.set(n);
        match self.mode {
            StoreMode::Down => return Err(StoreError::Unavailable("fuzz: store down".into())),
            StoreMode::Contended => return Err(StoreError::CasMismatch),
            StoreMode::Racy if n % 2 == 1 => return Err(StoreError::CasMismatch),
            _ => {}
        }
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, cas)| *cas).or(self.preload.as_ref().map(|_| 0));
        match (expect, current) {
            (Expect::Absent, None) => {}
            (Expect::Version(want), Some(have)) if want == have => {}
            _ => return Err(StoreError::CasMismatch),
        }
        entries.insert(key.to_string(), (value.to_vec(), n.max(1)));
        Ok(())
    }
}

/// How one input replays its request.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub now_ms: i64,
    /// Time between repeats.
    pub step_ms: i64,
    /// How many times the request is sent (to walk past soft and hard limits).
    pub repeats: u32,
    /// The client sent the confirmation header.
    pub confirmed: bool,
    /// The upstream fails: each admitted charge is refunded.
    pub refund: bool,
}

/// Sends the request `plan.repeats` times through the core as the filter
/// does: usage and admin endpoints, classification, identity, cost, charge,
/// the reply or the forwarded headers and rewrites, events, and the
/// correction from the response (here the request body stands in for the
/// response: a JSON document or an event stream with `usage`).
pub fn drive(config: &Config, head: &RequestHead, body: Option<&[u8]>, plan: &Plan, store: &dyn CounterStore) {
    let json: Option<Value> = body.and_then(|b| serde_json::from_slice(b).ok());
    let format = negotiate::negotiate(head.header_str("accept"));
    let mut now = plan.now_ms;
    let mut caller = None;
    for _ in 0..plan.repeats {
        caller = once(config, head, body, json.as_ref(), format, plan, now, store).or(caller);
        now = now.saturating_add(plan.step_ms);
    }
    // What the usage endpoint would show afterwards.
    if let Some(caller) = caller {
        let _ = usage::usage_report(config, &caller, now, store);
    }
}

#[allow(clippy::too_many_arguments)]
fn once(
    config: &Config,
    head: &RequestHead,
    body: Option<&[u8]>,
    json: Option<&Value>,
    format: BodyFormat,
    plan: &Plan,
    now: i64,
    store: &dyn CounterStore,
) -> Option<identity::Caller> {
    // The counters as the filter keeps them: the bounded table over the store.
    let table = config.counters.table(store, now);
    let store: &dyn CounterStore = &table;
    let path = head.path();
    if config.usage_endpoint.as_deref() == Some(path) {
        if !matches!(head.method(), "GET" | "HEAD") {
            check_reply(&usage::method_not_allowed());
            return None;
        }
        match identity::identify(config, head, &NoProperties) {
            Ok(caller) => {
                let reply = usage::usage_reply(config, &caller, now, store);
                check_reply(&reply);
                if let Err(e) = wire::read_usage(&reply.body) {
                    panic!("the client cannot read the usage report ({e}): {}", reply.body);
                }
            }
            Err(e) => refuse(config, &e, format, now),
        }
        return None;
    }
    if config.admin.as_ref().is_some_and(|a| a.path == path) {
        if head.method() == "POST" && admin::authorized(config, head.header("authorization")) {
            let query = head.header_str(":path").and_then(|p| p.split_once('?')).map_or("", |(_, q)| q);
            if let Ok(g) = admin::parse_grant(config, query) {
                let _ = engine::grant(config, &g.key, g.units, store);
            }
        }
        return None;
    }
    // The body is read only when classification needs it, as the filter does.
    let (class, read) = match classify::classify_head(config, head) {
        HeadMatch::Unclassified => return None,
        HeadMatch::Class(class) => (class, cost::Body::default()),
        HeadMatch::NeedsBody => match classify::classify_with_body(config, head, json) {
            None => return None,
            Some(class) => (class, cost::Body { bytes: body, json }),
        },
    };
    let caller = match identity::identify(config, head, &NoProperties) {
        Ok(c) => c,
        Err(e) => {
            refuse(config, &e, format, now);
            return None;
        }
    };
    let units = engine::request_cost(config, class, read);
    let d = engine::charge(config, &caller, class, units, plan.confirmed, now, store);
    for event in d.events(config) {
        let _ = events::event_record(config, &caller, &d, event);
    }
    let _ = events::metric_deltas(&d);
    if let (Some(c), Some(t)) = (config.class(d.class), config.tier(d.tier)) {
        for metric in ClassMetric::ALL {
            let _ = events::class_metric_name(&c.name, &t.name, metric);
        }
    }
    check_headers(&headers::response_headers(config, &d));
    match reply::respond(config, &d, format) {
        Action::Reply(r) => check_reply(&r),
        Action::Continue(h) => {
            check_headers(&h);
            let rewrites = admission::rewrites(config, &d, json);
            check_headers(&rewrites.headers.iter().map(|(n, v)| ("rewrite", format!("{n}: {v}"))).collect::<Vec<_>>());
            let forwarded = json.cloned().map(|mut j| {
                rewrites.apply_to_body(&mut j);
                let _ = j.to_string();
                j
            });
            // The filter forwards (and meters at its model's multiplier) the
            // rewritten body only when it read the body.
            let metered = forwarded.as_ref().filter(|_| read.json.is_some());
            respond_and_correct(config, &d, metered, body, plan, store);
        }
    }
    Some(caller)
}

/// The response side, through the core value the filter drives: the
/// response to a request whose plan says its upstream fails is Envoy's 503
/// for a connection that failed; any other is a 200 whose body is the
/// request's own (a JSON document, else read as an event stream).
fn respond_and_correct(
    config: &Config,
    d: &engine::Decision,
    request: Option<&Value>,
    body: Option<&[u8]>,
    plan: &Plan,
    store: &dyn CounterStore,
) {
    let Some(mut charged) = Charged::new(config, d, request, None) else { return };
    let body = body.unwrap_or_default();
    let head = if plan.refund {
        charged.response_head(config, Some(503), None, flags::UPSTREAM_CONNECTION_FAILURE)
    } else {
        let json = serde_json::from_slice::<Value>(body).is_ok();
        let content_type: &[u8] = if json { b"application/json" } else { b"text/event-stream" };
        charged.response_head(config, Some(200), Some(content_type), 0)
    };
    let read = charged.reads_body().then(|| charged.response_body(config, body, true)).flatten();
    let end = charged.stream_end(config, || Ended { response_flags: 0, upstream_connected: true });
    for correction in [head, read, end].into_iter().flatten() {
        let _ = correction.apply(config, store);
    }
}

fn refuse(config: &Config, err: &IdentityError, format: BodyFormat, now: i64) {
    check_reply(&reply::refuse_identity(config, err, format));
    let _ = events::identity_record(err, now).to_string();
}

/// A header value with CR, LF or NUL would let copy split the response;
/// RateLimit fields the client cannot parse break the contract.
pub fn check_headers(headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        assert!(
            !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "header {name} carries a control byte: {value:?}"
        );
    }
    let reading = wire::read_headers(headers.iter().map(|(n, v)| (*n, v.as_str())));
    for (name, value) in headers {
        let read = match *name {
            headers::RATELIMIT_POLICY => reading.policy.is_some(),
            headers::RATELIMIT => reading.limit_field.is_some(),
            _ => true,
        };
        assert!(read, "the client cannot read {name}: {value:?}");
    }
}

/// A local reply has a real status, safe headers, and a JSON body when it
/// says it is JSON.
pub fn check_reply(r: &LocalReply) {
    assert!((100..=599).contains(&r.status), "status {}", r.status);
    check_headers(&r.headers);
    let json = r.headers.iter().any(|(n, v)| *n == "content-type" && v.contains("json"));
    if json {
        assert!(serde_json::from_str::<Value>(&r.body).is_ok(), "content-type says JSON, body is not: {:?}", r.body);
        if r.status >= 400 {
            assert!(wire::read_refusal(&r.body).is_some(), "the client cannot read the refusal: {}", r.body);
        }
    }
}

/// Splits `text` into request headers (one `name value` line each, up to an
/// empty line) and the body after it (`None` without an empty line).
pub fn split_request(text: &[u8]) -> (RequestHead, Option<&[u8]>) {
    let (head, body) = match text.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&text[..i], text.get(i + 2..)),
        None => (text, None),
    };
    let headers = head
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = match line.iter().position(|b| *b == b' ') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &[][..]),
            };
            (String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec())
        })
        .collect();
    (RequestHead::new(headers), body)
}

/// Object keys the config schema knows, for the mutator to add.
#[rustfmt::skip]
const KEYS: &[&str] = &[
    "identity", "user", "workspace", "tier", "default_tier", "unknown_tier", "anonymous", "key", "max_id_bytes",
    "header", "jwt_claim", "jwt_header", "property", "calendar", "utc_offset", "week_starts_on",
    "user_utc_offset", "classes", "name", "label", "unit", "units", "match", "methods", "path", "exact", "prefix",
    "glob", "headers", "body", "field", "equals", "one_of", "exists", "gt", "gte", "lt", "lte", "cost", "fixed",
    "records", "jsonl", "bytes", "per", "tokens", "default_max_tokens", "reconcile", "include_usage", "models",
    "fallback", "copy", "warning", "blocked", "not_included", "confirm", "pace", "missing_identity",
    "unknown_tier", "unavailable", "degraded", "overage", "queued", "default_class", "tiers", "upgrade_url",
    "upgrade_to", "limits", "included", "soft", "hard", "window", "scope", "past_soft", "at_hard", "warn_at",
    "confirm_above", "used", "before", "degrade", "model", "value", "limit", "cap", "queue", "usage_endpoint",
    "max_body_bytes", "hold_headers_for_body", "counters", "cas_attempts", "on_error", "response_headers",
    "ratelimit", "quota", "observability", "metrics", "log_events", "ids", "id_salt", "analytics", "cluster",
    "authority", "timeout_ms", "max_in_flight", "max_queue", "flush_ms", "admin", "secret", "missing_workspace",
    "workspace_required",
];

/// Strings worth trying where the config expects one.
#[rustfmt::skip]
const STRINGS: &[&str] = &[
    "", " ", "*", "**", "/", "/v1/**", "/v1/*/x", "//", "minute", "hour", "day", "week", "month", "0s", "1s",
    "59s", "90s", "1m", "5h", "7d", "366d", "367d", "31622400s", "9223372036854775807s", "-1d", "+14:00",
    "-14:00", "+14:01", "-0800", "+9", "Z", "UTC", "{used}", "{", "}", "{{}}", "{reset_sentence}", "{upgrade}",
    "{count_over} {degraded_to} {grant}", "é", "\u{1F600}", "a\r\nb", "x-quota-state", ":path", "content-length",
    "authorization", "free", "pro", "team", "enterprise", "anon", "drafts", "chat", "misc", "sunday", "monday",
    "degrade", "overage", "queue", "warn", "block", "workspace", "user", "hashed", "omitted", "plain", "reject",
    "default", "fail_open", "fail_closed", "model", "messages.0.content", "a..b", ".", "0", "POST", "GET",
];

fn numbers(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=19)? {
        0 => 0.into(),
        1 => 1.into(),
        2 => (-1).into(),
        3 => 2.into(),
        4 => 255.into(),
        5 => 65_536.into(),
        6 => u32::MAX.into(),
        7 => (u64::from(u32::MAX) + 1).into(),
        8 => i64::MAX.into(),
        9 => u64::MAX.into(),
        10 => i64::MIN.into(),
        11 => 0.5.into(),
        12 => 1e-9.into(),
        13 => 1e308.into(),
        14 => (-0.0).into(),
        15 => 0.999_999_999.into(),
        16 => u.arbitrary::<u64>()?.into(),
        17 => u.arbitrary::<i64>()?.into(),
        18 => serde_json::Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        _ => u.int_in_range(0u64..=1000)?.into(),
    })
}

fn string(u: &mut Unstructured, found: &[String]) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=2)? {
        0 => (*u.choose(STRINGS)?).to_string(),
        1 if !found.is_empty() => u.choose(found)?.clone(),
        _ => {
            let len = u.int_in_range(0..=24)?;
            String::from_utf8_lossy(u.bytes(len)?).into_owned()
        }
    })
}

fn collect(v: &Value, strings: &mut Vec<String>, subtrees: &mut Vec<Value>) {
    match v {
        Value::String(s) => strings.push(s.clone()),
        Value::Array(items) => {
            subtrees.push(v.clone());
            items.iter().for_each(|i| collect(i, strings, subtrees));
        }
        Value::Object(map) => {
            subtrees.push(v.clone());
            for (k, i) in map {
                strings.push(k.clone());
                collect(i, strings, subtrees);
            }
        }
        _ => {}
    }
}

fn pick<'a>(v: &'a mut Value, u: &mut Unstructured) -> arbitrary::Result<&'a mut Value> {
    let stop = u.ratio(1, 5)?;
    let len = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if stop || len == 0 {
        return Ok(v);
    }
    let i = u.choose_index(len)?;
    match v {
        Value::Object(m) => m.values_mut().nth(i).map_or(Err(arbitrary::Error::IncorrectFormat), |c| pick(c, u)),
        Value::Array(a) => pick(&mut a[i], u),
        _ => Ok(v),
    }
}

/// What a mutation may splice in: the strings (keys included) and the
/// objects and arrays of a base document.
pub struct Pool {
    strings: Vec<String>,
    subtrees: Vec<Value>,
}

impl Pool {
    pub fn of(doc: &Value) -> Pool {
        let (mut strings, mut subtrees) = (Vec::new(), Vec::new());
        collect(doc, &mut strings, &mut subtrees);
        Pool { strings, subtrees }
    }
}

/// Applies 1 to 8 fuzz-chosen mutations to `doc`: replace a value with an
/// interesting number, string, bool, null, empty container or a part of
/// the base document; remove a key or element; add a known key; duplicate
/// an element; rename a key.
pub fn mutate(doc: &mut Value, pool: &Pool, u: &mut Unstructured) -> arbitrary::Result<()> {
    let (found, subtrees) = (&pool.strings, &pool.subtrees);
    let n = u.int_in_range(1..=8)?;
    for _ in 0..n {
        let op = u.int_in_range(0..=8)?;
        let at = pick(doc, u)?;
        match op {
            0 => *at = numbers(u)?,
            1 => *at = Value::String(string(u, found)?),
            2 => match at {
                Value::Object(m) if !m.is_empty() => {
                    let i = u.choose_index(m.len())?;
                    if let Some(k) = m.keys().nth(i).cloned() {
                        m.shift_remove(&k);
                    }
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = u.choose_index(a.len())?;
                    a.remove(i);
                }
                _ => *at = Value::Null,
            },
            3 => match at {
                Value::Object(m) => {
                    let key = (*u.choose(KEYS)?).to_string();
                    let value = match u.int_in_range(0..=3)? {
                        0 => numbers(u)?,
                        1 => Value::String(string(u, found)?),
                        2 => Value::Bool(u.arbitrary()?),
                        _ => u.choose(subtrees)?.clone(),
                    };
                    m.insert(key, value);
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = u.choose_index(a.len())?;
                    let copy = a[i].clone();
                    a.push(copy);
                }
                _ => *at = Value::Bool(u.arbitrary()?),
            },
            4 => *at = Value::Bool(u.arbitrary()?),
            5 => *at = Value::Null,
            6 if !subtrees.is_empty() => *at = u.choose(subtrees)?.clone(),
            7 => *at = if u.arbitrary()? { Value::Array(Vec::new()) } else { Value::Object(Default::default()) },
            _ => {
                // Rename a key: the value stays, its meaning moves.
                if let Value::Object(m) = at {
                    if !m.is_empty() {
                        let i = u.choose_index(m.len())?;
                        if let Some(v) = m.keys().nth(i).cloned().and_then(|k| m.shift_remove(&k)) {
                            m.insert(string(u, found)?, v);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Paths the request targets try against a mutated config.
const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/research/start",
    "/v1/summaries",
    "/v1/projects/p1/drafts",
    "/v1/drafts",
    "/v1/batches",
    "/v1/files/a",
    "/v1/x/y/messages",
    "/v1/quota",
    "/quota/admin/grants?class=drafts&user=alice&units=5",
    "/",
];

/// Bodies the request targets try against a mutated config.
const BODIES: &[&str] = &[
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}"#,
    r#"{"model":"gpt-4o-mini","messages":[],"max_tokens":20}"#,
    r#"{"model":"o3-deep-research","stream":true,"max_tokens":100000}"#,
    r#"{"model":"claude-3","max_tokens":18446744073709551615,"messages":[{"content":[{"type":"text","text":"x"}]}]}"#,
    r#"{"records":[1,2,3],"input":{"records":[{},{}]},"size":1000}"#,
    "{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n",
    "data: {\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n",
    r#"{"usage":{"input_tokens":18446744073709551615,"output_tokens":1}}"#,
    "",
];

/// A request for a mutated config, its body, and a plan, from `u`.
pub fn arbitrary_request<'a>(
    config: &Config,
    u: &mut Unstructured<'a>,
) -> arbitrary::Result<(RequestHead, Option<&'static [u8]>, Plan, StoreMode)> {
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), (*u.choose(&["POST", "GET", "PUT"])?).into()),
        (":path".into(), (*u.choose(PATHS)?).into()),
    ];
    let mut add = |name: &str, value: &str| headers.push((name.into(), value.as_bytes().to_vec()));
    if u.ratio(3, 4)? {
        add("x-user-id", u.choose(&["alice", "bob", "a:b", ""])?);
    }
    if u.arbitrary()? {
        add("x-workspace-id", "acme");
    }
    if !config.tiers.is_empty() && u.arbitrary()? {
        let tier = &config.tiers[u.choose_index(config.tiers.len())?];
        add("x-plan", &tier.name);
    }
    if u.arbitrary()? {
        add("accept", u.choose(&["text/html", "application/problem+json", "*/*;q=0", "application/json"])?);
    }
    if u.arbitrary()? {
        add("x-user-utc-offset", u.choose(&["+05:30", "-14:00", "bogus"])?);
    }
    if u.arbitrary()? {
        // {"sub":"carol","org":{"id":"acme"}}
        add("authorization", "Bearer e30.eyJzdWIiOiJjYXJvbCIsIm9yZyI6eyJpZCI6ImFjbWUifX0.x");
    }
    let body = if u.ratio(4, 5)? { Some(u.choose(BODIES)?.as_bytes()) } else { None };
    let plan = Plan {
        now_ms: NOON_MS + i64::from(u.arbitrary::<i32>()?) * 1000,
        step_ms: *u.choose(&[0, 1000, 3_600_000, 86_400_000, 2_678_400_000])?,
        repeats: u.int_in_range(1..=12)?,
        confirmed: u.arbitrary()?,
        refund: u.ratio(1, 4)?,
    };
    let mode = StoreMode::from_bits(if u.ratio(3, 4)? { 0 } else { u.arbitrary()? });
    Ok((RequestHead::new(headers), body, plan, mode))
}
