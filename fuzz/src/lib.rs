//! What the fuzz targets share: the configs they run against, a counter
//! store that can misbehave, one request driven through the core's
//! `Exchange` (the pipeline `filter/src/stream.rs` drives), random event
//! sequences fed to an exchange ([`sequence`]), and a mutator that turns a
//! valid config into a nearly valid one.
//!
//! The harness asserts only what must hold for any input: no panic, no
//! header value that could split a response, JSON replies that are JSON,
//! and a client (`wire.rs`) that can read back what the filter wrote.

pub mod sequence;

use libfuzzer_sys::arbitrary::{self, Unstructured};
use quota_core::config::Config;
use quota_core::copy::CONFIRM_HEADER;
use quota_core::counter::Counter;
use quota_core::engine::{self, Outcome};
use quota_core::events::{self, ClassMetric};
use quota_core::exchange::memory::{MemoryHost, Noted};
use quota_core::exchange::response::Ended;
use quota_core::exchange::{Edits, Exchange, Next};
use quota_core::refund::flags;
use quota_core::reply::LocalReply;
use quota_core::request::RequestHead;
use quota_core::store::{Cas, CounterStore, Expect, StoreError};
use quota_core::{headers, usage, wire};
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

/// A borrowed store, so one store outlives the hosts that serve it.
impl CounterStore for &FuzzStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
        (**self).set(key, value, expect)
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
    /// The client sends the confirmation header (`x-quota-confirm: yes`).
    pub confirmed: bool,
    /// The upstream fails: each admitted charge is refunded.
    pub refund: bool,
}

/// Why [`drive`] answers no call to Redis: it has none (the exchange target
/// answers them).
pub const NO_REDIS: &str = "fuzz: no Redis here";

/// Sends the request `plan.repeats` times through the core's
/// [`Exchange`], the pipeline the filter drives (`filter/src/stream.rs`),
/// with a [`MemoryHost`] whose shared data is `store`: the head, the body
/// in one chunk and the bytes the exchange asks for; calls to Redis (a
/// mutated config may want them) are not sent, so the fail policy decides.
/// Then the response, through the same exchange: here the request body
/// stands in for the response's (a JSON document or an event stream with
/// `usage`), the status is 200, or Envoy's 503 for a connection that
/// failed when the plan says the upstream fails. Every reply, header and
/// rewrite is checked, every decision reported as the filter reports it,
/// and each correction stays within its charge's bounds. Returns how many
/// of the requests were decided (classified and identified).
pub fn drive(config: &Config, head: &RequestHead, body: Option<&[u8]>, plan: &Plan, store: &FuzzStore) -> usize {
    let mut host = MemoryHost::with_store(plan.now_ms, store);
    let mut now = plan.now_ms;
    for _ in 0..plan.repeats {
        host.now_ms = now;
        once(config, &mut host, head, body, plan);
        now = now.saturating_add(plan.step_ms);
    }
    // What the usage endpoint would show the last caller afterwards.
    let caller = host.notes.iter().rev().find_map(|n| match n {
        Noted::Decided { caller, .. } => Some(caller),
        _ => None,
    });
    if let Some(caller) = caller {
        let _ = usage::usage_report(config, caller, now, &config.counters.table(store, now));
    }
    host.decisions().count()
}

fn once(config: &Config, host: &mut MemoryHost<&FuzzStore>, head: &RequestHead, body: Option<&[u8]>, plan: &Plan) {
    let mut headers = head.headers.clone();
    if plan.confirmed {
        headers.insert(0, (CONFIRM_HEADER.to_string(), b"yes".to_vec()));
    }
    let first_note = host.notes.len();
    let mut x = Exchange::new();
    let mut unsent = body;
    let mut step = x.request_head(config, host, headers.clone(), unsent.is_none());
    check_strip(&headers, &step.edits);
    let reply = loop {
        check_edits(&step.edits);
        step = match step.next {
            Next::Reply(reply) => break Some(reply),
            Next::Continue | Next::Pause => match unsent.take() {
                Some(bytes) => x.request_body(config, host, bytes.len(), true),
                None => break None,
            },
            Next::ReadBody(n) => {
                let held = body.map(|b| b.get(..n).unwrap_or(b).to_vec());
                x.body_read(config, host, held)
            }
            Next::Call(calls) => {
                assert!(config.counters.exact_redis().is_some(), "a call to Redis without its exact mode: {calls:?}");
                // A call that cannot leave goes back to the exchange as not sent.
                let mut last = None;
                for call in calls {
                    last = Some(x.not_sent(config, host, call.n, NO_REDIS.into()));
                }
                match last {
                    Some(step) => step,
                    None => break None,
                }
            }
        };
    };
    match &reply {
        Some(r) => {
            check_reply(r);
            if r.status == 200 && config.usage_endpoint.as_deref() == Some(head.path()) {
                if let Err(e) = wire::read_usage(&r.body) {
                    panic!("the client cannot read the usage report ({e}): {}", r.body);
                }
            }
        }
        None => {
            if let Some(headers) = x.response_headers() {
                check_headers(headers);
            }
        }
    }
    // The response, as Envoy delivers it to the filter.
    if x.corrects_charge() {
        let response = body.unwrap_or_default();
        if plan.refund {
            x.response_head(config, host, Some(503), None, flags::UPSTREAM_CONNECTION_FAILURE);
        } else {
            let json = serde_json::from_slice::<Value>(response).is_ok();
            let content_type: &[u8] = if json { b"application/json" } else { b"text/event-stream" };
            let content_type = x.reads_response_body().then_some(content_type);
            x.response_head(config, host, Some(200), content_type, 0);
        }
        if x.reads_response_body() {
            x.response_body(config, host, response, true);
        }
    }
    x.ended(config, host, || Ended { response_flags: 0, upstream_connected: true });
    let notes = host.notes.get(first_note..).unwrap_or_default();
    report(config, notes, host.now_ms);
    check_corrections(config, notes);
}

/// The `x-quota-*` headers of `head` (any case) are all removed by the
/// request head's step: only the filter speaks them.
pub fn check_strip(head: &[(String, Vec<u8>)], edits: &Edits) {
    for (name, _) in head.iter().filter(|(n, _)| headers::is_quota_header(n)) {
        assert!(edits.remove.contains(name), "the client's {name} is not stripped: {:?}", edits.remove);
    }
}

/// The headers an exchange sets on the request are safe, and a rewritten
/// body is JSON.
pub fn check_edits(edits: &Edits) {
    check_headers(&edits.set.iter().map(|(n, v)| ("rewrite", format!("{n}: {v}"))).collect::<Vec<_>>());
    if let Some(rewrite) = &edits.body {
        assert!(serde_json::from_slice::<Value>(&rewrite.bytes).is_ok(), "a rewritten body that is not JSON");
    }
}

/// What the filter's reporter does with an exchange's notes: event records
/// and metrics for each decision, a record for each identity refused.
pub fn report(config: &Config, notes: &[Noted], now_ms: i64) {
    for note in notes {
        match note {
            Noted::Decided { caller, decision } => {
                check_headers(&headers::response_headers(config, decision));
                for event in decision.events(config) {
                    let _ = events::event_record(config, caller, decision, event);
                }
                let _ = events::metric_deltas(decision);
                if let (Some(c), Some(t)) = (config.class(decision.class), config.tier(decision.tier)) {
                    for metric in ClassMetric::ALL {
                        let _ = events::class_metric_name(&c.name, &t.name, metric);
                    }
                }
            }
            Noted::IdentityRefused(e) => {
                let _ = events::identity_record(e, now_ms).to_string();
            }
            _ => {}
        }
    }
}

/// The corrections of one exchange's charge (`notes`: the exchange's own):
/// at most one per counter charged (a stacked cell's every counter gets its
/// own), only of a counter the decision charged, never taking back more
/// than was charged nor adding more than the rest of that counter's
/// limit's ceiling ([`engine::correction_room_of`]), and none before the
/// decision. In notes, a correction is the exact mode's `Adjust` or the
/// approximate mode's `Sync` after the one that syncs the charge itself
/// (noted with the decision). Returns how many there were.
pub fn check_corrections(config: &Config, notes: &[Noted]) -> usize {
    let is_correction = |n: &Noted| matches!(n, Noted::Adjust { .. } | Noted::Sync { .. });
    let Some(at) = notes.iter().position(|n| matches!(n, Noted::Decided { .. })) else {
        assert!(!notes.iter().any(is_correction), "a correction with no decision: {notes:?}");
        return 0;
    };
    let (before, decided) = notes.split_at(at);
    assert!(!before.iter().any(is_correction), "a correction before the decision: {notes:?}");
    let Some((Noted::Decided { decision: d, .. }, after)) = decided.split_first() else { return 0 };
    let charged = match &d.outcome {
        Outcome::Charged(c) => i64::try_from(c.cost).unwrap_or(i64::MAX),
        _ => 0,
    };
    let room = |limit: usize| i64::try_from(engine::correction_room_of(config, d, limit)).unwrap_or(i64::MAX);
    let counters: Vec<(&str, usize, i64)> = d.charged();
    let after = match after.split_first() {
        Some((Noted::Sync { delta, .. }, rest)) => {
            assert_eq!(*delta, charged, "the charge synced is not the charge ({d:?})");
            rest
        }
        _ => after,
    };
    // Corrections per counter: (key, delta, room).
    let mut corrections: Vec<(String, i64, i64)> = Vec::new();
    for n in after {
        match n {
            Noted::Adjust { key, delta, most, .. } => {
                let counter = counters.iter().find(|(k, _, _)| *k == key.as_str());
                let Some((_, limit, _)) = counter else { panic!("an adjust of another counter: {key} ({d:?})") };
                let room = room(*limit);
                assert!(i64::try_from(*most).unwrap_or(i64::MAX) <= room, "adjust room {most} > {room}");
                corrections.push((key.clone(), *delta, room));
            }
            Noted::Sync { delta, .. } => corrections.push((d.key.clone().unwrap_or_default(), *delta, room(d.limit))),
            _ => {}
        }
    }
    for (i, (key, delta, room)) in corrections.iter().enumerate() {
        assert!(
            !corrections.iter().take(i).any(|(k, _, _)| k == key),
            "counter {key} corrected more than once: {corrections:?} ({d:?})"
        );
        assert!(*delta >= -charged && delta <= room, "correction {delta} outside [-{charged}, {room}] ({d:?})");
    }
    corrections.len()
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
    "workspace_required", "organisation", "org", "admin_cap",
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
    "/quota/admin/grants?class=chat&workspace=acme&user=alice&cap=3",
    "/quota/admin/grants?class=chat&workspace=acme&user=alice&cap=none",
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
    if u.arbitrary()? {
        add("x-org-id", u.choose(&["globex", ""])?);
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
        // Or the rich config's admin secret (grants and member caps).
        add(
            "authorization",
            u.choose(&[
                "Bearer e30.eyJzdWIiOiJjYXJvbCIsIm9yZyI6eyJpZCI6ImFjbWUifX0.x",
                "Bearer fuzz-secret-fuzz-secret-0123",
            ])?,
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `drive` (the classify, config and config_mutate targets' driver)
    /// over pseudo-random requests for each base config, with every store
    /// mode: it checks what it drives, and a good share of the requests get decided.
    #[test]
    fn drive_decides_pseudo_random_requests_and_checks_them() {
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut sent, mut decided) = (0, 0);
        for config in configs() {
            for _ in 0..300 {
                let data: Vec<u8> = (0..64).map(|_| next() as u8).collect();
                let mut u = Unstructured::new(&data);
                let Ok((head, body, plan, mode)) = arbitrary_request(config, &mut u) else { continue };
                let store = FuzzStore::new(mode, None);
                sent += plan.repeats as usize;
                decided += drive(config, &head, body, &plan, &store);
            }
        }
        assert!(decided > sent / 8, "{decided} of {sent} requests decided");
    }
}
