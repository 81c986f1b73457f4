//! `generate`: a seeded, deterministic month of traffic written as the
//! filter's ledger, for demos and tests of `report` and `whatif`.
//!
//! The people are made up; what happens to their requests is not. Each
//! request is an HTTP request built to land in one of the config's classes
//! (from the class's own match rules, checked with the core's classifier),
//! driven through a [`quota_core::exchange::Exchange`] exactly as
//! `simulate` drives one (one [`MemoryHost`] for the whole run, its clock set
//! to each arrival), and answered by a made-up upstream (usage in a JSON
//! body or a server-sent event stream, some failures): the class, the cost,
//! the state, the refusal, the degrade, the refund and the settled charge
//! in each record are the core's own.
//!
//! - A population of casual and power users on the config's tiers (cheaper
//!   tiers more common), users of tiers that pool a class in workspaces (and
//!   organisations) of up to 8, each with their own taste for the classes.
//! - Arrivals: active days (fewer at weekends), sessions starting by a
//!   working-hours profile shifted by each user's time zone, a few to a few
//!   dozen requests a session.
//! - Reactions: warned users now and then upgrade; refused users abandon
//!   (no request for hours), retry once, carry on with another request, or
//!   upgrade (the tier's `upgrade_to`, once a month at most) and go on at
//!   the new tier a few minutes later; a request asked to confirm is
//!   confirmed most of the time; a failed request is retried within seconds.
//! - The upstream: token usage (cached input on repeated long prompts,
//!   reasoning on `o*` models) for classes that read it, a 5xx now and then,
//!   a connection that never reached it, a provider's own 429 (the core's
//!   `upstream_busy` decides which answers are `busy`).
//!
//! Every random draw comes from [`Rng`] streams forked from `--seed`; the
//! output depends on nothing else (no clock, no hash order), so the same
//! seed and config give the same bytes.
//!
//! Simplifications, on purpose: a request is settled at its arrival time
//! (the ledger records arrivals, and `whatif` replays them the same way);
//! callers never overlap their own requests; no grants, member caps or
//! usage-endpoint reads.

use crate::ledger::time_text;
use crate::load::Loaded;
use crate::rng::Rng;
use crate::simulate::{counter_used, head_of, in_memory, pass, state};
use crate::trace::Request;
use quota_core::calendar::{days_from_civil, weekday, Date, DAY};
use quota_core::classify::{classify_head, classify_with_body, HeadMatch};
use quota_core::config::{
    BodyCond, Cell, ClassId, Config, Cost, PathMatch, Rule, Scope, TextTest, TierId, TokenKinds, ValueTest,
};
use quota_core::copy::{upgrade_hint, CONFIRM_HEADER};
use quota_core::engine::{limit_of, Decision, Outcome};
use quota_core::events::shown_id;
use quota_core::exchange::memory::{MemoryHost, Noted};
use quota_core::exchange::response::Ended;
use quota_core::exchange::ResponseStep;
use quota_core::identity::Caller;
use quota_core::ledger::{LedgerRecord, LedgerTokens, LEDGER_VERSION};
use quota_core::refund::flags::UPSTREAM_CONNECTION_FAILURE;
use quota_core::request::RequestHead;
use serde_json::{json, Map, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// `generate`'s options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    pub users: u32,
    pub days: u32,
    /// The first day, in days since 1970-01-01 (UTC).
    pub start_day: i64,
}

pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_USERS: u32 = 100;
pub const DEFAULT_DAYS: u32 = 30;
pub const DEFAULT_START: &str = "2026-11-01";
pub const MAX_USERS: u32 = 100_000;
pub const MAX_DAYS: u32 = 366;

/// `YYYY-MM-DD` as days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if !(1970..=9999).contains(&year) || day == 0 || day > days_in_month {
        return None;
    }
    Some(days_from_civil(Date { year: i64::from(year), month, day }))
}

/// The ledger (one record per line) and what stderr should say.
pub struct Generated {
    pub ledger: String,
    pub notes: Vec<String>,
}

/// How requests of one class are built.
#[derive(Debug, Clone)]
struct Template {
    class: ClassId,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// The body fields the rule tests, set so that it matches.
    base: Map<String, Value>,
    /// Models a request may name, each checked to land in the class; empty
    /// when the body names none.
    models: Vec<String>,
    /// A chat-like request: messages, a completion budget, maybe a stream.
    chat: bool,
    /// The completion budget when the body gives none.
    default_budget: u64,
}

/// Which way of being a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persona {
    Casual,
    Power,
}

struct User {
    id: String,
    persona: Persona,
    tier: TierId,
    workspace: Option<String>,
    organisation: Option<String>,
    /// A weight per class (0 for a class no template reaches).
    likes: Vec<u64>,
    /// Hours to add to UTC for this user's working day.
    shift: i64,
    /// Abandoned: nothing before this time.
    quiet_until: i64,
    /// Upgraded once already (nobody climbs every tier in a month).
    upgraded: bool,
    rng: Rng,
}

/// What a user does at a moment.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// A request of a class the user chooses; `left` more after it.
    Session { left: u32, turn: u32 },
    /// The same kind of request again (after a failure, a refusal, an
    /// upgrade or a confirmation prompt).
    Again { template: usize, confirmed: bool, attempt: u32, left: u32, turn: u32 },
}

/// Every planned moment, earliest first; ties in the order planned.
struct Agenda {
    /// Each plan's user and what they do, by the number it was planned as.
    plans: Vec<(usize, Plan)>,
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    /// Nothing is planned from here on.
    end_ms: i64,
}

impl Agenda {
    fn push(&mut self, at: i64, user: usize, plan: Plan) {
        if at < self.end_ms {
            self.queue.push(Reverse((at, self.plans.len())));
            self.plans.push((user, plan));
        }
    }
}

/// How the made-up upstream answers (the core decides which answers are
/// "busy", by `upstream_busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Answered,
    /// A 5xx of its own.
    Failed(u16),
    /// The provider refuses for its own capacity (429).
    Busy,
    /// Envoy never reached it (a 503 of Envoy's own).
    Unreached,
}

/// Hour-of-day weights of a session's start, in the user's own time.
const HOURS: [u64; 24] = [1, 1, 1, 1, 1, 2, 3, 6, 10, 14, 14, 12, 9, 11, 13, 13, 11, 8, 6, 5, 4, 3, 2, 1];
/// UTC offsets (hours) users work in.
const SHIFTS: [i64; 8] = [0, 0, 0, 1, 1, -5, -8, 9];
/// Text for prompts: ASCII, so any cut is a character boundary.
const PHRASE: &str = "Summarise the notes below and list the open questions with owners. ";

pub fn run(loaded: &Loaded, o: &Options) -> Result<Generated, String> {
    let config = in_memory(&loaded.config);
    let config = config.as_ref();
    let mut notes = Vec::new();
    let templates = templates(config, &loaded.raw, &mut notes);
    if templates.is_empty() {
        return Err(format!("{}: no class has a request the generator can build", loaded.path));
    }
    let mut rng = Rng::new(o.seed);
    let mut users = population(config, &templates, o, &mut rng);
    let start_ms = o.start_day.saturating_mul(DAY * 1000);
    let end_ms = start_ms.saturating_add(i64::from(o.days) * DAY * 1000);

    let mut agenda = Agenda { plans: Vec::new(), queue: BinaryHeap::new(), end_ms };
    for (u, user) in users.iter_mut().enumerate() {
        for day in 0..i64::from(o.days) {
            for (at, plan) in sessions(user, o.start_day + day) {
                agenda.push(at, u, plan);
            }
        }
    }

    let mut host = MemoryHost::at(start_ms);
    let mut out = String::new();
    let mut written = 0usize;
    let mut request_rng = rng.fork(0x5EED);
    while let Some(Reverse((at, n))) = agenda.queue.pop() {
        let Some((u, plan)) = agenda.plans.get(n).copied() else { continue };
        let Some(user) = users.get_mut(u) else { continue };
        if at < user.quiet_until {
            continue;
        }
        let (template, confirmed, attempt, left, turn) = match plan {
            Plan::Session { left, turn } => match choose(config, user, &templates) {
                Some(t) => (t, false, 0, left, turn),
                None => continue,
            },
            Plan::Again { template, confirmed, attempt, left, turn } => (template, confirmed, attempt, left, turn),
        };
        let Some(t) = templates.get(template) else { continue };
        let mut r = request_rng.fork(n as u64);
        let Some(done) = request(config, &mut host, user, t, &mut r, at, confirmed, turn)? else {
            continue;
        };
        out.push_str(&done.record.to_line());
        out.push('\n');
        written += 1;
        for (next_at, next) in react(config, user, &done, template, attempt, left, turn, at) {
            agenda.push(next_at, u, next);
        }
    }
    notes.push(format!(
        "generated {written} records: {} users over {} days from {}, seed {}",
        o.users,
        o.days,
        time_text(start_ms).get(..10).unwrap_or(""),
        o.seed
    ));
    Ok(Generated { ledger: out, notes })
}

/// A request template for every match rule the generator can reach.
fn templates(config: &Config, raw: &Value, notes: &mut Vec<String>) -> Vec<Template> {
    let mut out = Vec::new();
    for (i, class) in config.classes.iter().enumerate() {
        let id = ClassId(i);
        let raw_rules = raw.pointer(&format!("/classes/{i}/match")).and_then(Value::as_array);
        let rules: Vec<(Option<&Rule>, Option<&Value>)> = if class.rules.is_empty() {
            // A default class without rules: any path no other class takes.
            vec![(None, None)]
        } else {
            class.rules.iter().enumerate().map(|(j, r)| (Some(r), raw_rules.and_then(|a| a.get(j)))).collect()
        };
        let reached: Vec<Template> = rules.iter().filter_map(|(rule, raw)| template(config, id, *rule, *raw)).collect();
        if reached.is_empty() {
            notes.push(format!(
                "class {}: no request the generator can build lands in it (an earlier class takes each one); \
                 left out",
                class.name
            ));
        }
        out.extend(reached);
    }
    out
}

/// A template from one match rule, if a request built from it lands in `class`.
fn template(config: &Config, class: ClassId, rule: Option<&Rule>, raw: Option<&Value>) -> Option<Template> {
    let c = config.class(class)?;
    let method = rule.and_then(|r| r.methods.first().cloned()).unwrap_or_else(|| "POST".into());
    let path = match rule.and_then(|r| r.path.as_ref()) {
        None => format!("/v1/{}", c.name.replace('_', "-")),
        Some(PathMatch::Exact(p)) => p.clone(),
        Some(PathMatch::Prefix(p)) if p.ends_with('/') => format!("{p}jobs"),
        Some(PathMatch::Prefix(p)) => p.clone(),
        Some(PathMatch::Glob(_)) => {
            let glob = raw.and_then(|v| v.pointer("/path/glob")).and_then(Value::as_str)?;
            glob.replace("**", "a/b").replace(['*', '?'], "x")
        }
    };
    let mut headers = Vec::new();
    for h in rule.map_or(&[][..], |r| &r.headers) {
        let value = match &h.test {
            TextTest::Equals(v) => v.clone(),
            TextTest::OneOf(vs) => vs.first()?.clone(),
            TextTest::Prefix(p) => format!("{p}1"),
            TextTest::Exists(true) => "1".into(),
            TextTest::Exists(false) => continue,
        };
        headers.push((h.name.clone(), value));
    }
    let mut base = Map::new();
    let mut asked_models: Option<Vec<String>> = None;
    for b in rule.map_or(&[][..], |r| &r.body) {
        if b.field == ["model"] {
            asked_models = models_of(b);
            if asked_models.is_some() {
                continue;
            }
        }
        let value = match &b.test {
            ValueTest::Equals(v) => v.clone(),
            ValueTest::OneOf(vs) => vs.first()?.clone(),
            ValueTest::Prefix(p) => Value::from(p.clone()),
            ValueTest::Exists(true) => Value::from("yes"),
            ValueTest::Exists(false) => continue,
            ValueTest::Compare { gt, gte, lt, lte } => number_between(*gt, *gte, *lt, *lte)?,
        };
        set_field(&mut base, &b.field, value);
    }
    let (token_like, default_budget) = match c.cost {
        Cost::Tokens { default_max_tokens, .. } | Cost::Priced { default_max_tokens, .. } => (true, default_max_tokens),
        _ => (false, 512),
    };
    let chat = token_like
        || asked_models.is_some()
        || !c.models.is_empty()
        || ["/chat/completions", "/messages", "/responses", "/completions"].iter().any(|s| path.ends_with(s));
    let mut t = Template { class, method, path, headers, base, models: Vec::new(), chat, default_budget };
    let candidates = asked_models.unwrap_or_else(|| model_candidates(config, class));
    if chat {
        t.models = candidates.into_iter().filter(|m| lands(config, &t, Some(m)) == Some(class)).collect();
        if !t.models.is_empty() {
            return Some(t);
        }
    }
    (lands(config, &t, None) == Some(class)).then_some(t)
}

/// The models a rule on `model` allows, when it names them.
fn models_of(b: &BodyCond) -> Option<Vec<String>> {
    let names: Vec<String> = match &b.test {
        ValueTest::Equals(Value::String(m)) => vec![m.clone()],
        ValueTest::OneOf(vs) => vs.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        ValueTest::Prefix(p) => vec![p.clone()],
        _ => return None,
    };
    (!names.is_empty()).then_some(names)
}

/// Models worth trying for a class: the price table's, the class's
/// multipliers', and a few common ones (a `*` pattern as its stem).
fn model_candidates(config: &Config, class: ClassId) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(prices) = &config.prices {
        names.extend(prices.models().iter().map(|(m, _)| m.clone()));
    }
    if let Some(c) = config.class(class) {
        names.extend(c.models.iter().map(|(m, _)| m.clone()));
    }
    names.extend(["gpt-4o", "gpt-4o-mini", "o3"].map(str::to_string));
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim_end_matches('*').trim_end_matches(['-', '.', '_']).to_string();
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// A number a comparison admits.
fn number_between(gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64>) -> Option<Value> {
    let low = gte.or(gt.map(|g| g.floor() + 1.0));
    let high = lte.or(lt.map(|l| l.ceil() - 1.0));
    let n = match (low, high) {
        (Some(l), _) => l,
        (None, Some(h)) => h,
        (None, None) => 1.0,
    };
    let ok = gt.is_none_or(|g| n > g)
        && gte.is_none_or(|g| n >= g)
        && lt.is_none_or(|l| n < l)
        && lte.is_none_or(|l| n <= l);
    if !ok || !n.is_finite() {
        return None;
    }
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Some(Value::from(n as i64))
    } else {
        serde_json::Number::from_f64(n).map(Value::Number)
    }
}

/// Sets `value` at a dotted `field` of `body`, making objects on the way.
fn set_field(body: &mut Map<String, Value>, field: &[String], value: Value) {
    let Some((last, parents)) = field.split_last() else { return };
    let mut at = body;
    for p in parents {
        let next = at.entry(p.clone()).or_insert_with(|| json!({}));
        if !next.is_object() {
            *next = json!({});
        }
        let Some(object) = next.as_object_mut() else { return };
        at = object;
    }
    at.insert(last.clone(), value);
}

/// The class a request from `t` (naming `model`) lands in, by the core's classifier.
fn lands(config: &Config, t: &Template, model: Option<&str>) -> Option<ClassId> {
    let mut rng = Rng::new(0);
    let (body, _) = body(config, t, model, &mut rng, false, 0, false);
    let request = http_request(t, &body, 0, false);
    let head = RequestHead::new(head_of(&request));
    match classify_head(config, &head) {
        HeadMatch::Class(c) => Some(c),
        HeadMatch::Unclassified => None,
        HeadMatch::NeedsBody => classify_with_body(config, &head, serde_json::from_slice(&body).ok().as_ref()),
    }
}

/// What one request of `t` asks: the body, and the prompt tokens it holds
/// (about four characters each, as the core estimates them).
fn body(
    config: &Config,
    t: &Template,
    model: Option<&str>,
    rng: &mut Rng,
    power: bool,
    turn: u32,
    stream: bool,
) -> (Vec<u8>, u64) {
    let class = config.class(t.class);
    let mut fields = t.base.clone();
    let mut prompt_chars = 0;
    if t.chat {
        if let Some(m) = model {
            fields.insert("model".into(), Value::from(m));
        }
        // Long context now and then (more for power users, more later in a session).
        let long = rng.chance(if power { 0.2 } else { 0.05 } + f64::from(turn.min(10)) * 0.01);
        prompt_chars = if long { rng.range(8_000, 60_000) } else { rng.range(80, if power { 6_000 } else { 2_000 }) };
        fields.insert("messages".into(), json!([{"role": "user", "content": prompt(prompt_chars)}]));
        if rng.chance(0.8) {
            let budgets = [256, 512, 1024, 2048, 4096];
            fields.insert("max_tokens".into(), Value::from(*rng.pick(&budgets).unwrap_or(&512)));
        }
        if stream {
            fields.insert("stream".into(), Value::Bool(true));
        }
    }
    match class.map(|c| &c.cost) {
        Some(Cost::Records { jsonl: true, .. }) => {
            let n = rng.range(1, if power { 400 } else { 40 });
            let lines: Vec<String> = (0..n).map(|i| json!({"custom_id": format!("r{i}")}).to_string()).collect();
            return (lines.join("\n").into_bytes(), 0);
        }
        Some(Cost::Records { field, .. }) => {
            let n = if power { 1 + (rng.skewed() * 400.0) as u64 } else { rng.range(1, 40) };
            let records: Vec<Value> = (0..n).map(|i| json!({"custom_id": format!("r{i}")})).collect();
            match field {
                Some(path) => set_field(&mut fields, path, Value::Array(records)),
                None => return (Value::Array(records).to_string().into_bytes(), 0),
            }
        }
        Some(Cost::Bytes { .. }) => {
            let most = (config.max_body_bytes / 2).clamp(256, 100_000) as u64;
            fields.insert("content".into(), Value::from(prompt(rng.range(200, most))));
        }
        _ if !t.chat => {
            fields.insert("input".into(), Value::from(prompt(rng.range(40, 600))));
        }
        _ => {}
    }
    (Value::Object(fields).to_string().into_bytes(), prompt_chars.div_ceil(4))
}

fn prompt(chars: u64) -> String {
    let chars = chars as usize;
    let mut text = PHRASE.repeat(chars / PHRASE.len() + 1);
    text.truncate(chars);
    text
}

fn http_request(t: &Template, body: &[u8], now_ms: i64, confirmed: bool) -> Request {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(t.headers.iter().cloned());
    if confirmed {
        headers.push((CONFIRM_HEADER.to_string(), "yes".to_string()));
    }
    Request {
        line: 0,
        time: time_text(now_ms),
        now_ms,
        method: t.method.clone(),
        path: t.path.clone(),
        body: Some(body.to_vec()),
        headers,
        response: None,
    }
}

/// The users: tiers (the cheapest most common), personas, workspaces and tastes.
fn population(config: &Config, templates: &[Template], o: &Options, rng: &mut Rng) -> Vec<User> {
    let n = config.tiers.len() as u64;
    // free : pro : team : enterprise = 16 : 9 : 4 : 1 for four tiers.
    let tier_weights: Vec<u64> = (0..n).map(|i| (n - i) * (n - i)).collect();
    let width = o.users.to_string().len().max(3);
    // Per tier: the workspace being filled and its seats left.
    let mut open: Vec<(u32, u64)> = vec![(0, 0); config.tiers.len()];
    let mut spaces = 0u32;
    (0..o.users)
        .map(|i| {
            let mut r = rng.fork(u64::from(i));
            let tier = TierId(r.weighted(&tier_weights).unwrap_or(0));
            let persona = if r.chance(0.3) { Persona::Power } else { Persona::Casual };
            let (workspace, organisation) = match open.get_mut(tier.0) {
                Some(slot) if pools(config, tier, Scope::Workspace) || pools(config, tier, Scope::Organisation) => {
                    if slot.1 == 0 {
                        spaces += 1;
                        *slot = (spaces, r.range(2, 8));
                    }
                    slot.1 -= 1;
                    let ws = format!("ws-{:02}", slot.0);
                    let org =
                        pools(config, tier, Scope::Organisation).then(|| format!("org-{:02}", slot.0.div_ceil(3)));
                    (Some(ws), org)
                }
                _ => (None, None),
            };
            let likes = (0..config.classes.len())
                .map(|c| match templates.iter().find(|t| t.class.0 == c) {
                    Some(t) => taste(config, t, persona, &mut r),
                    None => 0,
                })
                .collect();
            User {
                id: format!("u{i:0width$}"),
                persona,
                tier,
                workspace,
                organisation,
                likes,
                shift: *r.pick(&SHIFTS).unwrap_or(&0),
                quiet_until: i64::MIN,
                upgraded: false,
                rng: r,
            }
        })
        .collect()
}

/// Whether any cell of `tier` counts a pool of `scope`.
fn pools(config: &Config, tier: TierId, scope: Scope) -> bool {
    config.tier(tier).is_some_and(|t| t.cells.iter().any(|c| c.limits().iter().any(|l| l.scope == scope)))
}

/// How much a user likes a class: chat most, batch and priced classes more
/// for power users.
fn taste(config: &Config, t: &Template, persona: Persona, r: &mut Rng) -> u64 {
    let power = persona == Persona::Power;
    match config.class(t.class).map(|c| &c.cost) {
        Some(Cost::Records { .. }) if power => r.range(3, 8),
        Some(Cost::Records { .. }) => r.range(0, 2),
        Some(Cost::Priced { .. }) if power => r.range(4, 10),
        Some(Cost::Priced { .. }) => r.range(1, 4),
        Some(Cost::Bytes { .. }) => r.range(1, 5),
        _ if t.chat => r.range(8, 20),
        _ => r.range(3, 10),
    }
}

/// A day's sessions for a user: when each starts and how long it runs.
fn sessions(user: &mut User, day: i64) -> Vec<(i64, Plan)> {
    let power = user.persona == Persona::Power;
    let r = &mut user.rng;
    let weekend = weekday(day) >= 5;
    let active = if power { 0.75 } else { 0.3 } * if weekend { 0.4 } else { 1.0 };
    if !r.chance(active) {
        return Vec::new();
    }
    let count = if power { r.range(1, 3) } else { 1 + u64::from(r.chance(0.3)) };
    (0..count)
        .map(|_| {
            let hour = r.weighted(&HOURS).unwrap_or(9) as i64 - user.shift;
            let second = hour * 3600 + r.range(0, 3599) as i64;
            let at = (day * DAY + second) * 1000 + r.range(0, 999) as i64;
            let left = if power { r.range(6, 30) } else { r.range(2, 8) } as u32;
            (at, Plan::Session { left, turn: 0 })
        })
        .collect()
}

/// The template a user's next request uses: a class by taste (classes
/// outside the plan now and then: curiosity), then one of its routes.
fn choose(config: &Config, user: &mut User, templates: &[Template]) -> Option<usize> {
    let weights: Vec<u64> = user
        .likes
        .iter()
        .enumerate()
        .map(|(c, like)| match config.cell(user.tier, ClassId(c)) {
            Some(Cell::Limited(_)) => like * 20,
            Some(Cell::NotIncluded) => *like,
            None => 0,
        })
        .collect();
    let class = ClassId(user.rng.weighted(&weights)?);
    let routes: Vec<usize> = templates.iter().enumerate().filter(|(_, t)| t.class == class).map(|(i, _)| i).collect();
    user.rng.pick(&routes).copied()
}

/// One request as the ledger has it, and what its user saw.
struct Done {
    record: LedgerRecord,
    /// Refused by the filter for the caller's quota (or plan).
    refused: bool,
    /// A warning level crossed, or served degraded.
    warned: bool,
    confirm: bool,
    failed: bool,
    duration_ms: u64,
}

/// Builds, sends and answers one request; `None` when the filter did not
/// decide it (a request no class took).
#[allow(clippy::too_many_arguments)]
fn request(
    config: &Config,
    host: &mut MemoryHost,
    user: &User,
    t: &Template,
    r: &mut Rng,
    now_ms: i64,
    confirmed: bool,
    turn: u32,
) -> Result<Option<Done>, String> {
    let power = user.persona == Persona::Power;
    let model = r.pick(&t.models).cloned();
    let stream = t.chat && r.chance(0.5);
    let (bytes, prompt_tokens) = body(config, t, model.as_deref(), r, power, turn, stream);
    let request = http_request(t, &bytes, now_ms, confirmed);
    host.now_ms = now_ms;
    host.caller = Some(Caller {
        id: user.id.clone(),
        anonymous: false,
        workspace: user.workspace.clone(),
        organisation: user.organisation.clone(),
        tier: user.tier,
        alignment: config.calendar.alignment,
    });
    let mut passage = pass(config, host, &request, head_of(&request))?;
    let Some(d) = passage.notes.iter().find_map(|n| match n {
        Noted::Decided { decision, .. } => Some(decision.as_ref().clone()),
        _ => None,
    }) else {
        return Ok(None);
    };
    let ids = &config.observability.ids;
    let id = |text: &Option<String>| text.as_ref().and_then(|t| shown_id(ids, t).as_str().map(str::to_string));
    let mut record = LedgerRecord {
        v: LEDGER_VERSION,
        time: time_text(now_ms),
        request_id: Some(request_id(r)),
        user: id(&Some(user.id.clone())),
        workspace: id(&user.workspace),
        organisation: id(&user.organisation),
        tier: config.tier(d.tier).map(|t| t.name.clone()).unwrap_or_default(),
        class: config.class(d.class).map(|c| c.name.clone()).unwrap_or_default(),
        method: t.method.clone(),
        route: RequestHead::new(head_of(&request)).path().to_string(),
        model_asked: model.clone(),
        stream,
        units_requested: d.requested,
        currency: config.currency_of(d.class).map(|c| c.code().to_string()),
        confirmed,
        state: state(&d).to_string(),
        ..LedgerRecord::default()
    };
    let (warned_event, level) = warning_of(config, &d);
    record.warned = warned_event;
    record.warning_level = level;
    record.upgrade_to = hint(config, &d);
    let degraded = matches!(&d.outcome, Outcome::Charged(c) if c.served == quota_core::decide::Served::Degraded);
    let mut done = Done {
        refused: false,
        warned: warned_event || degraded,
        confirm: false,
        failed: false,
        duration_ms: r.range(1, 4),
        record,
    };
    if let Some(reply) = passage.reply.take() {
        done.record.status = reply.status;
        done.confirm = done.record.state == quota_core::headers::STATE_CONFIRMATION_REQUIRED;
        done.refused = !done.confirm && !d.admitted();
        done.record.duration_ms = Some(done.duration_ms);
        return Ok(Some(done));
    }
    // Admitted: what the upstream saw, and its answer.
    let charged = match &d.outcome {
        Outcome::Charged(c) if c.admitted => c.cost,
        _ => 0,
    };
    let forwarded: Option<Value> = passage
        .edits
        .iter()
        .rev()
        .find_map(|e| e.body.as_ref())
        .and_then(|rewrite| serde_json::from_slice(&rewrite.bytes).ok())
        .or_else(|| serde_json::from_slice(&bytes).ok());
    let served_model = forwarded.as_ref().and_then(|j| j.get("model")).and_then(Value::as_str).map(str::to_string);
    let upstream = if r.chance(0.004) {
        Upstream::Unreached
    } else if r.chance(0.015) {
        Upstream::Failed(*r.pick(&[500, 502, 503, 504]).unwrap_or(&500))
    } else if r.chance(0.004) {
        Upstream::Busy
    } else {
        Upstream::Answered
    };
    let exchange = &mut passage.exchange;
    let reads = exchange.reads_response_body();
    let include_usage = !stream
        || forwarded.as_ref().and_then(|j| j.pointer("/stream_options/include_usage")) == Some(&Value::Bool(true));
    let tokens = (reads && upstream == Upstream::Answered && include_usage)
        .then(|| tokens(r, prompt_tokens, budget_of(forwarded.as_ref(), t), served_model.as_deref(), power, turn));
    let (status, flags, reached) = match upstream {
        Upstream::Answered => (200, 0, true),
        Upstream::Failed(s) => (s, 0, true),
        Upstream::Busy => (429, 0, true),
        Upstream::Unreached => (503, UPSTREAM_CONNECTION_FAILURE, false),
    };
    let (content_type, answer) = match (upstream, tokens) {
        (Upstream::Answered, _) if stream => ("text/event-stream", sse(served_model.as_deref(), tokens.as_ref())),
        (Upstream::Answered, _) => ("application/json", completion(served_model.as_deref(), tokens.as_ref())),
        (Upstream::Unreached, _) => {
            ("text/plain", b"upstream connect error or disconnect/reset before headers".to_vec())
        }
        _ => (
            "application/json",
            json!({"error": {"message": "upstream error", "type": "server_error"}}).to_string().into_bytes(),
        ),
    };
    let key = d.key.clone();
    let before = key.as_deref().map(|k| counter_used(config, host, k));
    // The core says whether the answer is the provider's "busy" (`upstream_busy`).
    let step = exchange.response_head(config, host, Some(status), reads.then_some(content_type.as_bytes()), flags);
    let busy = matches!(step, ResponseStep::Busy(_));
    if exchange.reads_response_body() {
        exchange.response_body(config, host, &answer, true);
    }
    exchange.ended(config, host, || Ended { response_flags: flags, upstream_connected: reached });
    let after = key.as_deref().map(|k| counter_used(config, host, k));
    let settled = match (before, after) {
        (Some(b), Some(a)) if charged > 0 => {
            u64::try_from(i128::from(charged) + i128::from(a) - i128::from(b)).unwrap_or(charged)
        }
        _ => charged,
    };
    let rec = &mut done.record;
    rec.units_charged = charged;
    rec.units_settled = settled;
    rec.model_served = if reached { served_model } else { None };
    rec.tokens = tokens;
    rec.status = status;
    rec.upstream_status = reached.then_some(status);
    rec.upstream_reached = reached;
    if busy {
        rec.state = "busy".into();
    }
    done.failed = upstream != Upstream::Answered;
    done.duration_ms = match upstream {
        Upstream::Answered if stream => r.range(2_000, 45_000),
        Upstream::Answered => r.range(300, 9_000),
        Upstream::Failed(_) => r.range(50, 30_000),
        Upstream::Busy | Upstream::Unreached => r.range(5, 200),
    };
    rec.duration_ms = Some(done.duration_ms);
    Ok(Some(done))
}

/// Whether the decision crossed a warning level (its event), and the level
/// the caller is at when past the first warning.
fn warning_of(config: &Config, d: &Decision) -> (bool, Option<u32>) {
    let Outcome::Charged(c) = &d.outcome else { return (false, None) };
    let Some(limits) = limit_of(config, d) else { return (c.crossed.is_some(), None) };
    let used = c.usage.plan_used;
    let level = limits.warn_levels.iter().rposition(|at| used >= *at).and_then(|l| u32::try_from(l).ok());
    let past = c.usage.state != quota_core::decide::State::Ok || !c.admitted;
    (c.crossed.is_some(), level.filter(|_| past))
}

/// The tier the answer invites the caller to, when it carries an upgrade
/// hint: once a limit is near or reached, or for a class outside the plan.
fn hint(config: &Config, d: &Decision) -> Option<String> {
    let shows = match &d.outcome {
        Outcome::Charged(c) => c.usage.state != quota_core::decide::State::Ok || !c.admitted,
        Outcome::NotIncluded => true,
        _ => false,
    };
    if !shows {
        return None;
    }
    let h = upgrade_hint(config, d.tier, d.class, d.limit)?;
    config.tier(h.tier).map(|t| t.name.clone())
}

/// The completion budget the forwarded request asked for.
fn budget_of(forwarded: Option<&Value>, t: &Template) -> u64 {
    forwarded
        .and_then(|j| ["max_tokens", "max_completion_tokens"].iter().find_map(|k| j.get(*k).and_then(Value::as_u64)))
        .unwrap_or(t.default_budget)
        .max(1)
}

/// Tokens the upstream reports: the prompt and some overhead; cached
/// input in 128-token blocks on repeated long prompts; an answer within the
/// budget, mostly short; reasoning on `o*` models.
fn tokens(r: &mut Rng, prompt: u64, budget: u64, model: Option<&str>, power: bool, turn: u32) -> LedgerTokens {
    let input = prompt + r.range(8, 40);
    let cached = if input >= 1024 && turn > 0 && r.chance(if power { 0.6 } else { 0.3 }) {
        (input * r.range(30, 90) / 100) / 128 * 128
    } else {
        0
    };
    let output = 1 + ((budget as f64) * (0.05 + 0.95 * r.skewed())) as u64;
    let output = output.min(budget);
    let reasoning = if model.is_some_and(|m| m.starts_with('o')) { output * r.range(30, 70) / 100 } else { 0 };
    // As OpenAI reports them: cached within input, reasoning within output.
    LedgerTokens::of(&TokenKinds {
        input: input - cached,
        cached_input: cached,
        cache_write: 0,
        output: output - reasoning,
        reasoning,
    })
}

/// An OpenAI Chat Completions `usage` object for `t`.
fn usage(t: &LedgerTokens) -> Value {
    json!({
        "prompt_tokens": t.input,
        "completion_tokens": t.output,
        "total_tokens": t.input + t.output,
        "prompt_tokens_details": {"cached_tokens": t.cached_input},
        "completion_tokens_details": {"reasoning_tokens": t.reasoning},
    })
}

fn completion(model: Option<&str>, t: Option<&LedgerTokens>) -> Vec<u8> {
    let mut doc = json!({
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Here is the summary."}, "finish_reason": "stop"}],
    });
    if let (Some(t), Some(fields)) = (t, doc.as_object_mut()) {
        fields.insert("usage".into(), usage(t));
    }
    doc.to_string().into_bytes()
}

/// A server-sent event stream: a delta, the usage chunk (when asked for), the end.
fn sse(model: Option<&str>, t: Option<&LedgerTokens>) -> Vec<u8> {
    let chunk = |extra: Value| {
        let mut doc = json!({"object": "chat.completion.chunk", "model": model, "choices": []});
        if let (Some(fields), Value::Object(more)) = (doc.as_object_mut(), extra) {
            fields.extend(more);
        }
        format!("data: {doc}\n\n")
    };
    let mut out = chunk(json!({"choices": [{"index": 0, "delta": {"content": "Here is the summary."}}]}));
    if let Some(t) = t {
        out.push_str(&chunk(json!({"usage": usage(t)})));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn request_id(r: &mut Rng) -> String {
    let (a, b) = (r.next_u64(), r.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// What the user does next, after `done`.
#[allow(clippy::too_many_arguments)]
fn react(
    config: &Config,
    user: &mut User,
    done: &Done,
    template: usize,
    attempt: u32,
    left: u32,
    turn: u32,
    at: i64,
) -> Vec<(i64, Plan)> {
    let power = user.persona == Persona::Power;
    let after = at + done.duration_ms as i64;
    let again = |confirmed, attempt, left| Plan::Again { template, confirmed, attempt, left, turn: turn + 1 };
    // The session goes on after a pause (a short one: the user is still there).
    let go_on = |r: &mut Rng, short: bool| {
        let gap = match (short, power) {
            (true, _) => r.range(5_000, 50_000),
            (false, true) => r.range(5_000, 120_000),
            (false, false) => r.range(20_000, 300_000),
        } as i64;
        (left > 0).then(|| (after + gap, Plan::Session { left: left - 1, turn: turn + 1 })).into_iter().collect()
    };
    let upgrade = config.tier(user.tier).and_then(|t| t.upgrade_to).filter(|_| !user.upgraded);
    if done.failed {
        if attempt < 3 && user.rng.chance(0.85) {
            return vec![(after + user.rng.range(1_000, 20_000) as i64, again(false, attempt + 1, left))];
        }
        return go_on(&mut user.rng, true);
    }
    if done.confirm {
        if user.rng.chance(0.7) {
            return vec![(after + user.rng.range(5_000, 30_000) as i64, again(true, attempt, left))];
        }
        return go_on(&mut user.rng, true);
    }
    if done.refused {
        let not_included = done.record.state == quota_core::headers::STATE_NOT_INCLUDED;
        let p_upgrade = match (power, not_included) {
            (true, false) => 0.03,
            (false, false) => 0.01,
            (true, true) => 0.02,
            (false, true) => 0.005,
        };
        if let (Some(to), true) = (upgrade, user.rng.chance(p_upgrade)) {
            move_to(config, user, to);
            // Back after the checkout, at the new tier.
            return vec![(after + user.rng.range(60_000, 600_000) as i64, again(false, 0, left))];
        }
        let p_abandon = match (power, not_included) {
            (true, false) => 0.3,
            (false, false) => 0.5,
            (_, true) => 0.3,
        };
        if user.rng.chance(p_abandon) {
            user.quiet_until = after + user.rng.range(2 * 3_600_000, 20 * 3_600_000) as i64;
            return Vec::new();
        }
        if !not_included && attempt == 0 && user.rng.chance(0.5) {
            // "Maybe it works now": once, within seconds.
            return vec![(after + user.rng.range(5_000, 40_000) as i64, again(false, 1, left))];
        }
        return go_on(&mut user.rng, true);
    }
    if done.warned {
        if let (Some(to), true) = (upgrade, user.rng.chance(if power { 0.01 } else { 0.003 })) {
            move_to(config, user, to);
        }
    }
    go_on(&mut user.rng, false)
}

/// The user upgrades to `tier`; a tier that pools needs a workspace (and
/// an organisation), so a user without one starts their own.
fn move_to(config: &Config, user: &mut User, tier: TierId) {
    user.tier = tier;
    user.upgraded = true;
    if user.workspace.is_none() && (pools(config, tier, Scope::Workspace) || pools(config, tier, Scope::Organisation)) {
        user.workspace = Some(format!("ws-{}", user.id));
    }
    if user.organisation.is_none() && pools(config, tier, Scope::Organisation) {
        user.organisation = Some(format!("org-{}", user.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load;

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    fn generate(config: &str, seed: u64, users: u32, days: u32) -> Generated {
        let loaded = load(root().join(config).to_str().unwrap()).unwrap();
        let o = Options { seed, users, days, start_day: parse_date("2026-11-02").unwrap() };
        run(&loaded, &o).unwrap()
    }

    #[test]
    fn dates_read_as_calendar_days() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        for bad in ["2026-02-29", "2026-13-01", "2026-1-01", "26-11-01", "2026-11-00", "1969-12-31", "2026/11/01"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let a = generate("envoy/demo-config.json", 7, 12, 3);
        let b = generate("envoy/demo-config.json", 7, 12, 3);
        assert_eq!(a.ledger, b.ledger);
        assert!(a.ledger.lines().count() > 50, "{}", a.ledger.lines().count());
        assert_ne!(a.ledger, generate("envoy/demo-config.json", 8, 12, 3).ledger);
    }

    #[test]
    fn every_line_is_a_record_the_readers_take() {
        let g = generate("envoy/demo-config.json", 3, 20, 5);
        let ledger = crate::ledger::parse(g.ledger.as_bytes(), "g").unwrap();
        assert_eq!((ledger.skipped.len(), ledger.not_records), (0, 0));
        assert_eq!(ledger.entries.len(), g.ledger.lines().count());
        // Written in arrival order.
        assert!(ledger.entries.windows(2).all(|w| w[0].line < w[1].line));
    }

    #[test]
    fn a_month_has_limits_reached_upgrades_failures_and_tokens() {
        let g = generate("envoy/demo-config.json", 1, 60, 30);
        let records: Vec<LedgerRecord> = g.ledger.lines().filter_map(LedgerRecord::from_line).collect();
        let count = |f: &dyn Fn(&LedgerRecord) -> bool| records.iter().filter(|r| f(r)).count();
        assert!(count(&|r| r.state == "warning") > 20);
        assert!(count(&|r| r.state == "blocked") > 5);
        assert!(count(&|r| r.state == "not_included") > 0);
        assert!(count(&|r| r.status >= 500) > 0);
        assert!(count(&|r| r.tokens.is_some_and(|t| t.cached_input > 0)) > 0);
        assert!(count(&|r| r.currency.as_deref() == Some("USD")) > 0);
        // Refunds: a failed request of a class charged per request settles at 0.
        assert!(count(&|r| r.units_charged > 0 && r.units_settled == 0) > 0);
        // Someone on the free plan shows up later on a higher one.
        let upgraded = records.iter().any(|r| {
            r.tier != "free" && records.iter().any(|f| f.user == r.user && f.tier == "free" && f.time < r.time)
        });
        assert!(upgraded);
        // Team users carry their workspace.
        assert!(records.iter().filter(|r| r.tier == "team").all(|r| r.workspace.is_some()));
    }

    #[test]
    fn classes_are_reached_by_their_own_rules() {
        let loaded = load(root().join("envoy/demo-config.json").to_str().unwrap()).unwrap();
        let mut notes = Vec::new();
        let t = templates(&loaded.config, &loaded.raw, &mut notes);
        assert!(notes.is_empty(), "{notes:?}");
        let routes = |n: &str| -> Vec<(&str, &[String])> {
            t.iter()
                .filter(|t| loaded.config.class(t.class).unwrap().name == n)
                .map(|t| (t.path.as_str(), t.models.as_slice()))
                .collect()
        };
        let summaries = routes("summaries");
        assert_eq!(summaries, [("/v1/summaries", &[][..]), ("/v1/chat/completions", &["gpt-4o-mini".to_string()][..])]);
        let research = routes("deep_research");
        assert_eq!(research[0], ("/v1/research", &[][..]));
        assert_eq!(research[1].1, ["o3-deep-research", "o4-mini-deep-research"]);
        // Drafts by chat: any model but the ones earlier classes take; and by project.
        let drafts = routes("drafts");
        assert_eq!((drafts[0].0, drafts[1].0), ("/v1/chat/completions", "/v1/projects/x/drafts"));
        assert!(drafts[0].1.contains(&"gpt-4o".to_string()) && !drafts[0].1.contains(&"gpt-4o-mini".to_string()));
    }

    #[test]
    fn other_configs_generate_too() {
        for config in [
            "matrix/tests/fixtures/features.json",
            "matrix/tests/fixtures/priced.json",
            "matrix/tests/fixtures/stacked.json",
            "matrix/tests/fixtures/strictest.json",
        ] {
            let g = generate(config, 5, 15, 4);
            assert!(g.ledger.lines().count() > 20, "{config}");
        }
    }
}
