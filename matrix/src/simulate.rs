//! `simulate`: replays a trace through the filter's own request pipeline.
//!
//! Each request goes through a [`quota_core::exchange::Exchange`] the way
//! the filter drives one (`filter/src/stream.rs`): its head, then its body
//! (all of it, ending the stream) and the bytes the exchange asks to read.
//! One [`MemoryHost`] serves the whole trace: its clock is set to each
//! request's time and its shared data is an in-memory counter store.
//!
//! Nothing here decides anything: what a [`Step`] reports is read from what
//! the exchange did: the decision it noted (class, state, events, the cost
//! the request asked for), the reply it sent, the headers it put on the
//! response, the edits it made to the request. The usage and admin
//! endpoints are only labelled here (by the request's path); the exchange
//! answers them.
//!
//! - The caller is set directly (user, optional workspace and
//!   organisation, the chosen tier), not read through the config's
//!   identity sources, so any config can be replayed whatever its sources
//!   are.
//! - A cell of stacked limits is charged as the filter charges it (every
//!   limit or none); each step names the limit that bound the request and
//!   how the others stand. One caller per trace: a pool holds only what
//!   that caller used.
//! - The usage endpoint answers every read (no read budgets).
//! - Counters live in memory. A config whose counters live in Redis in the
//!   exact mode is replayed with them in shared data (the simulator has no
//!   Redis to call): the core decides from the record Redis held before the
//!   charge as it decides from shared data, so the steps are the same, for
//!   one caller, as the filter's. The approximate mode decides from shared
//!   data already.
//! - A forwarded request's charge stands unless its trace line gives the
//!   upstream's `response` (see `trace.rs`): the exchange then reads it as
//!   the filter reads a response (its status for refunds, its body for the
//!   usage a token or priced class settles to), and the step shows what the
//!   charge settled at.
//! - A class metered in money shows its amounts as money (`$0.01025`); its
//!   numbers in `--json` stay micro-units, as in the usage endpoint, with
//!   the currency named.

use crate::cli::Simulate;
use crate::describe::Amounts;
use crate::load::Loaded;
use crate::trace::{Request, Response};
use quota_core::body::read_body;
use quota_core::config::{parse_utc_offset, Config, Scope};
use quota_core::counter::Counter;
use quota_core::engine::{Decision, Event, Outcome};
use quota_core::exchange::memory::{MemoryHost, Noted};
use quota_core::exchange::response::Ended;
use quota_core::exchange::{Edits, Exchange, Next};
use quota_core::headers::WARNING;
use quota_core::identity::{Caller, ScopeKind};
use quota_core::money::Currency;
use quota_core::negotiate::BodyFormat;
use quota_core::reply::{respond, Action, LocalReply};
use quota_core::request::RequestHead;
use quota_core::store::CounterStore;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// What happened to one request of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub line: usize,
    pub time: String,
    pub method: String,
    pub path: String,
    /// `None`: no class matched and there is no default class.
    pub class: Option<String>,
    /// Units the request asked for (requests charged to a cell only:
    /// admitted or refused there); micro-units of `currency` in money.
    pub cost: Option<u64>,
    /// The currency of a class metered in money.
    pub currency: Option<Currency>,
    /// What the charge came to once the trace's `response` was read (the
    /// reported usage, a refund); `None` without a response, or when the
    /// request charged nothing.
    pub settled: Option<u64>,
    /// 200 when forwarded to the upstream, else the filter's own status.
    pub status: u16,
    /// The filter answered the request itself.
    pub answered: bool,
    /// `ok`, `warning`, `blocked`, `confirmation_required`, `not_included`,
    /// `workspace_required`, `unavailable`.
    pub state: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The sentence the user reads: the warning, or the refusal's message.
    pub message: Option<String>,
    /// Events the filter would log (once per level or window).
    pub events: Vec<String>,
    /// The filter's own reply body, when it answered.
    pub body: Option<String>,
    /// What the filter changed on the request before forwarding it.
    pub rewrites: Vec<String>,
    /// A cell of stacked limits only: the limit that bound the request (see
    /// `quota_core::engine::binding`: its outcome, headers and message are
    /// the ones above), then the cell's other limits in the order it lists
    /// them. Empty for a one-limit cell.
    pub limits: Vec<LimitUse>,
}

/// One limit of a stacked cell, as a request left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    /// Its index in the cell's list.
    pub index: usize,
    /// How many limits the cell lists.
    pub of: usize,
    /// "user", "workspace" or "organisation", as the config says.
    pub scope: &'static str,
    /// The window as the config writes it ("day", "5h").
    pub window: String,
    /// Its counter after the request was decided (before it, when
    /// refused), as the response headers report it: a `response` in the
    /// trace settles it afterwards (see [`Step::settled`]); `None` when no
    /// counter was read (the store failed, or the caller names no
    /// workspace for a pool).
    pub used: Option<u64>,
    pub hard: u64,
    /// The currency of a class metered in money.
    pub currency: Option<Currency>,
}

impl LimitUse {
    /// "user/day".
    pub fn name(&self) -> String {
        format!("{}/{}", self.scope, self.window)
    }

    /// "user/day (2 of 2): 50 of 50 used", "user/month (2 of 2): $0.09 of $25.00 used".
    fn describe(&self) -> String {
        let a = amounts(self.currency.as_ref());
        let used = self
            .used
            .map_or_else(|| "no counter read".to_string(), |u| format!("{} of {} used", a.exact(u), a.show(self.hard)));
        format!("{} ({} of {}): {used}", self.name(), self.index + 1, self.of)
    }

    fn json(&self) -> Value {
        json!({"index": self.index, "scope": self.scope, "window": self.window, "used": self.used, "hard": self.hard})
    }
}

/// Replays `requests` for one caller. Errors are the lines to print.
pub fn run(loaded: &Loaded, args: &Simulate, requests: &[Request]) -> Result<Vec<Step>, String> {
    let config = in_memory(&loaded.config);
    let mut host = MemoryHost::at(requests.first().map_or(0, |r| r.now_ms));
    host.caller = Some(caller(loaded, args)?);
    requests
        .iter()
        .map(|request| {
            host.now_ms = request.now_ms;
            step(&config, &mut host, request)
        })
        .collect()
}

/// The config with its counters where the simulator keeps them: in memory
/// (see the module's notes on Redis).
pub(crate) fn in_memory(config: &Config) -> Cow<'_, Config> {
    if config.counters.exact_redis().is_none() {
        return Cow::Borrowed(config);
    }
    let mut local = config.clone();
    local.counters.redis = None;
    Cow::Owned(local)
}

fn caller(loaded: &Loaded, args: &Simulate) -> Result<Caller, String> {
    let config = &loaded.config;
    let tier = config.tier_by_name(&args.tier.to_ascii_lowercase()).ok_or_else(|| {
        let names: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
        format!("no tier named \"{}\" in {} (tiers: {})", args.tier, loaded.path, names.join(", "))
    })?;
    let mut alignment = config.calendar.alignment;
    if let Some(text) = &args.utc_offset {
        alignment.utc_offset_minutes = parse_utc_offset(text)
            .ok_or_else(|| format!("--utc-offset \"{text}\" is not a UTC offset like \"+05:30\" or \"-08:00\""))?;
    }
    if args.user.trim().is_empty() {
        return Err("--user must not be empty".into());
    }
    for (flag, id) in [("--workspace", &args.workspace), ("--organisation", &args.organisation)] {
        if id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return Err(format!("{flag} must not be empty"));
        }
    }
    Ok(Caller {
        id: args.user.clone(),
        anonymous: false,
        workspace: args.workspace.clone(),
        organisation: args.organisation.clone(),
        tier,
        alignment,
    })
}

/// The request head as the client sent it: pseudo-headers, then the
/// trace's headers (its `x-quota-*` ones too: the exchange strips them).
pub(crate) fn head_of(request: &Request) -> Vec<(String, Vec<u8>)> {
    let mut head: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), request.method.clone().into_bytes()),
        (":path".into(), request.path.clone().into_bytes()),
    ];
    head.extend(request.headers.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())));
    head
}

/// What an exchange did with one request.
pub(crate) struct Passage {
    pub exchange: Exchange,
    /// The edits of every step, in order.
    pub edits: Vec<Edits>,
    /// The filter answered the request itself.
    pub reply: Option<LocalReply>,
    /// What the exchange noted for this request.
    pub notes: Vec<Noted>,
}

/// Drives one request through an exchange the way `filter/src/stream.rs`
/// drives one: the head, then the body in one chunk that ends the stream
/// (Envoy delivers it whether the headers went on or wait), and the bytes
/// the exchange asks to read.
pub(crate) fn pass(
    config: &Config,
    host: &mut MemoryHost,
    request: &Request,
    head: Vec<(String, Vec<u8>)>,
) -> Result<Passage, String> {
    let mut exchange = Exchange::new();
    let first_note = host.notes.len();
    let mut edits = Vec::new();
    let mut unsent = request.body.as_deref();
    let mut step = exchange.request_head(config, host, head, unsent.is_none());
    let reply = loop {
        edits.push(step.edits);
        step = match step.next {
            Next::Reply(reply) => break Some(reply),
            Next::Continue | Next::Pause => match unsent.take() {
                Some(body) => exchange.request_body(config, host, body.len(), true),
                None => break None,
            },
            Next::ReadBody(n) => {
                let held = request.body.as_deref().map(|b| b.get(..n).unwrap_or(b).to_vec());
                exchange.body_read(config, host, held)
            }
            Next::Call(_) => {
                // In-memory counters never call Redis (see `in_memory`).
                exchange.abandon(host);
                return Err(format!(
                    "line {}: the filter asked the Redis store, which the simulator does not have",
                    request.line
                ));
            }
        };
    };
    let notes = host.notes.get(first_note..).unwrap_or_default().to_vec();
    Ok(Passage { exchange, edits, reply, notes })
}

fn step(config: &Config, host: &mut MemoryHost, request: &Request) -> Result<Step, String> {
    let mut step = Step {
        line: request.line,
        time: request.time.clone(),
        method: request.method.clone(),
        path: request.path.clone(),
        class: None,
        cost: None,
        currency: None,
        settled: None,
        status: 200,
        answered: false,
        state: None,
        headers: Vec::new(),
        message: None,
        events: Vec::new(),
        body: None,
        rewrites: Vec::new(),
        limits: Vec::new(),
    };
    let head = head_of(request);
    // For the labels only: the exchange routes the request by the same path.
    let path = RequestHead::new(head.clone()).path().to_string();
    let mut passage = pass(config, host, request, head)?;
    let decision = passage.notes.iter().find_map(|n| match n {
        Noted::Decided { decision, .. } => Some(decision),
        _ => None,
    });
    let body_refused = passage.notes.iter().find_map(|n| match n {
        Noted::BodyRefused(code) => Some(*code),
        _ => None,
    });

    if config.usage_endpoint.as_deref() == Some(path.as_str()) {
        step.class = Some("usage endpoint".into());
        if let Some(reply) = passage.reply {
            step.message = usage_summary(&reply.body).or_else(|| error_message(&reply.body));
            answered(&mut step, reply);
        }
        return Ok(step);
    }
    if config.admin.as_ref().is_some_and(|a| a.path == path) {
        step.class = Some("admin endpoint".into());
        if let Some(reply) = passage.reply {
            step.message = Some(grant_message(&reply));
            step.status = reply.status;
            step.answered = true;
        }
        return Ok(step);
    }
    if let Some(code) = body_refused {
        step.class = Some(code.replace('_', " "));
        step.state = Some(code.into());
        step.events = vec![code.into()];
        if let Some(reply) = passage.reply {
            step.message = error_message(&reply.body).or_else(|| body_refusal_in_json(config, host, request));
            answered(&mut step, reply);
        }
        return Ok(step);
    }
    if let Some(d) = decision {
        step.class = config.class(d.class).map(|c| c.name.clone());
        step.cost = Some(d.requested);
        step.currency = config.currency_of(d.class).copied();
        step.state = Some(state(d).into());
        let a = Amounts::of(config, d.class);
        step.events = d.events(config).iter().map(|e| event(e, a)).collect();
        step.limits = stacked_limits(config, d);
    }
    match passage.reply {
        Some(reply) => {
            step.message = error_message(&reply.body).or_else(|| decision.and_then(|d| refusal_in_json(config, d)));
            answered(&mut step, reply);
        }
        None => {
            if let Some(headers) = passage.exchange.response_headers() {
                step.message = headers.iter().find(|(n, _)| *n == WARNING).map(|(_, v)| v.clone());
                step.headers = own(headers);
                step.rewrites = rewrites(&passage.edits, request.body.as_deref());
            }
            if let (Some(response), Some(d)) = (&request.response, decision) {
                step.settled = respond_upstream(config, host, &mut passage.exchange, d, response);
            }
        }
    }
    Ok(step)
}

/// The upstream's `response` to an admitted request, fed to its exchange
/// as the filter feeds one (`filter/src/stream.rs`): the head (the content
/// type only when the body is read), the body in one chunk that ends the
/// stream, then the stream's end. What the binding counter holds for the
/// request afterwards: its cost, corrected; `None` when it charged nothing.
fn respond_upstream(
    config: &Config,
    host: &mut MemoryHost,
    exchange: &mut Exchange,
    d: &Decision,
    response: &Response,
) -> Option<u64> {
    let Outcome::Charged(charge) = &d.outcome else { return None };
    if !exchange.corrects_charge() {
        return None;
    }
    let key = d.key.as_deref()?;
    let before = counter_used(config, host, key);
    let content_type = exchange.reads_response_body().then_some(response.content_type.as_bytes());
    exchange.response_head(config, host, Some(response.status), content_type, 0);
    if exchange.reads_response_body() {
        exchange.response_body(config, host, &response.body, true);
    }
    exchange.ended(config, host, || Ended { response_flags: 0, upstream_connected: true });
    let after = counter_used(config, host, key);
    let delta = i128::from(after) - i128::from(before);
    u64::try_from(i128::from(charge.cost) + delta).ok()
}

/// What the counter `key` holds now (0 when there is none).
pub(crate) fn counter_used(config: &Config, host: &MemoryHost, key: &str) -> u64 {
    let table = config.counters.table(&host.store, host.now_ms);
    table.get(key).ok().flatten().and_then(|(bytes, _)| Counter::decode(&bytes)).map_or(0, |c| c.used)
}

/// How amounts of a class read: money in `currency`, else counts.
fn amounts(currency: Option<&Currency>) -> Amounts<'_> {
    Amounts::in_currency(currency)
}

fn answered(step: &mut Step, reply: LocalReply) {
    step.status = reply.status;
    step.answered = true;
    step.headers = own(&reply.headers);
    step.body = Some(reply.body);
}

/// The grants endpoint's answer in a sentence: the new balance, 404 to a
/// request without the secret, or the error's message.
fn grant_message(reply: &LocalReply) -> String {
    let doc: Option<Value> = serde_json::from_str(&reply.body).ok();
    let field = |name: &str| {
        let value = doc.as_ref().and_then(|d| d.get(name));
        value.map_or_else(|| "?".to_string(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    match reply.status {
        200 => format!(
            "granted {} units to {} {}: grant balance {}",
            field("added"),
            field("scope"),
            field("id"),
            field("grant")
        ),
        404 => "not found (no POST with the admin secret)".into(),
        _ => error_message(&reply.body).unwrap_or_else(|| reply.body.trim().to_string()),
    }
}

/// What the filter changed on an admitted request before the upstream saw
/// it, read from the exchange's edits: the headers it set, and what a
/// rewritten body changed (`sent` is the body as the client sent it).
fn rewrites(edits: &[Edits], sent: Option<&[u8]>) -> Vec<String> {
    let mut out: Vec<String> =
        edits.iter().flat_map(|e| &e.set).map(|(name, value)| format!("request header {name}: {value}")).collect();
    let Some(rewrite) = edits.iter().rev().find_map(|e| e.body.as_ref()) else { return out };
    let Ok(new) = serde_json::from_slice::<Value>(&rewrite.bytes) else { return out };
    // The client's body as the filter read it.
    let old = read_body(sent, false).into_json();
    if let (Some(model), Some(was)) = (new.get("model"), old.as_ref().and_then(|o| o.get("model"))) {
        if model != was {
            out.push(format!("model {} → {}", was.as_str().unwrap_or("?"), model.as_str().unwrap_or("?")));
        }
    }
    let includes_usage = |body: Option<&Value>| {
        body.and_then(|b| b.pointer("/stream_options/include_usage")) == Some(&Value::Bool(true))
    };
    if includes_usage(Some(&new)) && !includes_usage(old.as_ref()) {
        out.push("stream_options.include_usage: true".into());
    }
    out
}

/// A stacked cell's limits as the decision left them: the binding one
/// first, then the others in the cell's order (none for one limit).
fn stacked_limits(config: &Config, d: &Decision) -> Vec<LimitUse> {
    let stack = config.cell(d.tier, d.class).map_or(&[][..], |c| c.limits());
    if stack.len() < 2 {
        return Vec::new();
    }
    let (binding, binding_used) = match &d.outcome {
        Outcome::Charged(c) => (d.limit, Some(c.usage.used)),
        // Refused before any counter: the pool the caller names no id for.
        Outcome::WorkspaceRequired => {
            let pool = match d.scope {
                ScopeKind::Organisation => Scope::Organisation,
                _ => Scope::Workspace,
            };
            (stack.iter().position(|l| l.scope == pool).unwrap_or(d.limit), None)
        }
        _ => (d.limit, None),
    };
    let mut others: Vec<(usize, Option<u64>)> = d.others.iter().map(|h| (h.limit, Some(h.usage.used))).collect();
    others.sort_by_key(|(i, _)| *i);
    std::iter::once((binding, binding_used))
        .chain(others)
        .filter_map(|(index, used)| {
            let l = stack.get(index)?;
            Some(LimitUse {
                index,
                of: stack.len(),
                scope: l.scope.as_str(),
                window: l.window_name.clone(),
                used,
                hard: l.hard,
                currency: config.currency_of(d.class).copied(),
            })
        })
        .collect()
}

fn own(headers: &[(&str, String)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| ((*n).to_string(), v.clone())).collect()
}

pub(crate) fn state(d: &Decision) -> &'static str {
    match &d.outcome {
        Outcome::Charged(c) if c.needs_confirmation => "confirmation_required",
        Outcome::Charged(c) if c.too_large => quota_core::headers::STATE_TOO_LARGE,
        Outcome::Charged(c) => c.usage.state.as_str(),
        Outcome::NotIncluded => "not_included",
        Outcome::WorkspaceRequired => "workspace_required",
        Outcome::Unavailable { .. } => "unavailable",
    }
}

fn event(e: &Event, a: Amounts) -> String {
    match e {
        Event::Warned { at, .. } => format!("warned at {}", a.show(*at)),
        other => other.name().to_string(),
    }
}

/// A refusal's human sentence when the reply is not an OpenAI error
/// envelope (a page for a browser, problem details): the noted decision's
/// reply in that format.
fn refusal_in_json(config: &Config, d: &Decision) -> Option<String> {
    match respond(config, d, BodyFormat::OpenAi) {
        Action::Reply(r) => error_message(&r.body),
        Action::Continue(_) => None,
    }
}

/// A body refusal's human sentence when the reply is not an OpenAI error
/// envelope: the same request asking for JSON, through a fresh exchange
/// (refusing a body reads no counter, so a fresh store answers the same).
fn body_refusal_in_json(config: &Config, host: &MemoryHost, request: &Request) -> Option<String> {
    let mut scratch = MemoryHost::at(host.now_ms);
    scratch.caller = host.caller.clone();
    let mut head = head_of(request);
    head.retain(|(n, _)| n != "accept");
    head.push(("accept".into(), b"application/json".to_vec()));
    let reply = pass(config, &mut scratch, request, head).ok()?.reply?;
    error_message(&reply.body)
}

fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.pointer("/error/message").and_then(Value::as_str).map(str::to_string)
}

/// "Drafts 3/10 ok; Deep research not included" from the usage endpoint's report.
fn usage_summary(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let classes = v.get("classes")?.as_array()?;
    let parts: Vec<String> = classes
        .iter()
        .map(|c| {
            let label = c.get("label").and_then(Value::as_str).unwrap_or("?");
            let state = c.get("state").and_then(Value::as_str).unwrap_or("?");
            let head = match amount_pair(c) {
                Some((used, limit)) => format!("{label} {used}/{limit} {state}"),
                None => return format!("{label} {}", state.replace('_', " ")),
            };
            // A stack: each limit's standing, in the order the cell lists them.
            match c.get("limits").and_then(Value::as_array) {
                Some(limits) if limits.len() > 1 => {
                    let each: Vec<String> = limits.iter().map(limit_summary).collect();
                    format!("{head} ({})", each.join(", "))
                }
                _ => head,
            }
        })
        .collect();
    Some(parts.join("; "))
}

/// "user/5h 2/3 warning": one entry of a class's `limits` in the usage report.
fn limit_summary(l: &Value) -> String {
    let text = |name: &str| l.get(name).and_then(Value::as_str).unwrap_or("?");
    let (used, limit) = amount_pair(l).unwrap_or_else(|| ("?".into(), "?".into()));
    format!("{}/{} {used}/{limit} {}", text("scope"), text("window"), text("state"))
}

/// An entry's use and limit as the usage report gives them for people:
/// its `money` amounts ("$4.20", "$5.00") for a class metered in money,
/// else its counts.
fn amount_pair(entry: &Value) -> Option<(String, String)> {
    if let Some(money) = entry.get("money").filter(|m| m.is_object()) {
        let text = |name: &str| money.get(name).and_then(Value::as_str).map(str::to_string);
        return Some((text("used")?, text("limit")?));
    }
    let number = |name: &str| entry.get(name).and_then(Value::as_u64).map(|n| n.to_string());
    Some((number("used")?, number("limit")?))
}

/// Readable text: a block per request, then a summary.
pub fn text(loaded: &Loaded, args: &Simulate, steps: &[Step]) -> String {
    let config = &loaded.config;
    let tier = config.tier_by_name(&args.tier.to_ascii_lowercase()).and_then(|t| config.tier(t));
    let mut out = format!(
        "Replaying {} for user {}{}{} on the {} plan ({}), from {}.\n",
        args.script,
        args.user,
        args.workspace.as_ref().map_or_else(String::new, |w| format!(" of workspace {w}")),
        args.organisation.as_ref().map_or_else(String::new, |o| format!(" in organisation {o}")),
        tier.map_or("?", |t| t.label.as_str()),
        tier.map_or("?", |t| t.name.as_str()),
        loaded.path,
    );
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("\n[{}] {} {} {}  (line {})\n", i + 1, s.time, s.method, s.path, s.line));
        let mut row = |key: &str, value: &str| out.push_str(&format!("    {key:<8} {value}\n"));
        let a = amounts(s.currency.as_ref());
        match (&s.class, s.cost) {
            (Some(class), Some(cost)) => row("class", &format!("{class} (cost {})", a.exact(cost))),
            (Some(class), None) => row("class", class),
            (None, _) => row("class", "unclassified: forwarded untouched, not counted"),
        }
        let status = if s.answered {
            format!("{} (answered by the filter)", s.status)
        } else {
            format!("{} (forwarded to the upstream)", s.status)
        };
        row("status", &status);
        if let Some(state) = &s.state {
            row("state", state);
        }
        if let Some(settled) = s.settled {
            let reason = match s.cost {
                Some(cost) if settled == cost => "the response left the charge as it was",
                _ if settled == 0 => "given back after the response",
                _ => "after the response",
            };
            row("settled", &format!("{} ({reason})", a.exact(settled)));
        }
        for (j, l) in s.limits.iter().enumerate() {
            row(if j == 0 { "limit" } else { "also" }, &l.describe());
        }
        if let Some(message) = &s.message {
            row("message", message);
        }
        if !s.events.is_empty() {
            row("events", &s.events.join(", "));
        }
        if !s.rewrites.is_empty() {
            row("upstream", &format!("sees {}", s.rewrites.join(", ")));
        }
        for (j, (name, value)) in s.headers.iter().enumerate() {
            row(if j == 0 { "headers" } else { "" }, &format!("{name}: {value}"));
        }
    }
    let forwarded = steps.iter().filter(|s| !s.answered).count();
    let mut answered: Vec<(u16, usize)> = Vec::new();
    for s in steps.iter().filter(|s| s.answered) {
        match answered.iter_mut().find(|(status, _)| *status == s.status) {
            Some((_, n)) => *n += 1,
            None => answered.push((s.status, 1)),
        }
    }
    let answered_text = if answered.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = answered.iter().map(|(s, n)| format!("{n} × {s}")).collect();
        format!(", {} answered by the filter ({})", steps.len() - forwarded, parts.join(", "))
    };
    out.push_str(&format!("\n{} requests: {forwarded} forwarded{answered_text}.\n", steps.len()));
    out
}

/// One line per request: when, what, class, status, state, and the message.
pub fn brief(steps: &[Step]) -> String {
    let mut out = String::new();
    let width = format!("[{}]", steps.len()).len();
    for (i, s) in steps.iter().enumerate() {
        let n = format!("[{}]", i + 1);
        let what = format!("{} {}", s.method, s.path);
        let class = s.class.as_deref().unwrap_or("unclassified");
        let state = s.state.as_deref().unwrap_or("-");
        let mut line = format!("{n:<width$} {} {what:<32} {class:<14} {} {state:<12}", s.time, s.status);
        if let Some(binding) = s.limits.first() {
            line.push_str(&format!(" [{}]", binding.name()));
        }
        if let Some(m) = &s.message {
            line.push(' ');
            line.push_str(m);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One JSON object per request.
pub fn json_lines(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        let headers: Map<String, Value> = s.headers.iter().map(|(n, v)| (n.clone(), Value::from(v.clone()))).collect();
        let mut line = json!({
            "line": s.line,
            "time": s.time,
            "method": s.method,
            "path": s.path,
            "class": s.class,
            "cost": s.cost,
            "status": s.status,
            "answered": s.answered,
            "state": s.state,
            "message": s.message,
            "events": s.events,
            "rewrites": s.rewrites,
            "headers": headers,
            "body": s.body,
        });
        // Only a class metered in money names its currency (its numbers are
        // micro-units), and only a step with a response its settled charge.
        if let (Some(c), Some(fields)) = (&s.currency, line.as_object_mut()) {
            fields.insert("currency".into(), Value::from(c.code()));
        }
        if let (Some(settled), Some(fields)) = (s.settled, line.as_object_mut()) {
            fields.insert("settled".into(), Value::from(settled));
        }
        // Only a stacked cell's steps name their limits: the binding one,
        // then the others.
        if let (Some((binding, others)), Some(fields)) = (s.limits.split_first(), line.as_object_mut()) {
            fields.insert("limit".into(), binding.json());
            fields.insert("others".into(), Value::Array(others.iter().map(LimitUse::json).collect()));
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace;

    fn features() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/features.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn loaded(doc: Value) -> Loaded {
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        Loaded { path: "features.json".into(), config, raw: doc }
    }

    fn args() -> Simulate {
        Simulate {
            file: "features.json".into(),
            tier: "starter".into(),
            user: "sim-user".into(),
            workspace: None,
            organisation: None,
            utc_offset: None,
            script: "trace.jsonl".into(),
            json: false,
            brief: false,
        }
    }

    fn replay(loaded: &Loaded, trace: &str) -> Vec<Step> {
        run(loaded, &args(), &trace::parse(trace, "trace.jsonl").unwrap()).unwrap()
    }

    #[test]
    fn counters_in_redis_are_replayed_in_memory_with_the_same_steps() {
        let starter = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/features-starter.jsonl");
        let trace = std::fs::read_to_string(starter).unwrap();
        let mut doc = features();
        doc["counters"] = json!({"store": "redis", "redis": {"cluster": "redis"}});
        let redis = loaded(doc);
        assert!(redis.config.counters.exact_redis().is_some());
        let steps = replay(&redis, &trace);
        assert_eq!(steps, replay(&loaded(features()), &trace));
        // Charged, refused, answered: the trace reaches the store.
        assert!(steps.iter().any(|s| s.status == 429) && steps.iter().any(|s| s.state.as_deref() == Some("warning")));
    }

    #[test]
    fn a_body_refused_to_a_browser_shows_the_sentence_of_its_json_reply() {
        let trace = r#"{"time": "2026-11-22T09:05:00Z", "path": "/v1/batches", "body": "not json", "headers": {"accept": "text/html"}}"#;
        let steps = replay(&loaded(features()), trace);
        let s = &steps[0];
        assert_eq!((s.status, s.answered, s.state.as_deref()), (400, true, Some("unreadable_body")));
        assert_eq!(s.class.as_deref(), Some("unreadable body"));
        assert!(s.body.as_deref().unwrap().contains("<html"), "{:?}", s.body);
        let message = s.message.as_deref().unwrap();
        assert!(message.starts_with("We couldn't read this request's JSON body"), "{message}");
    }

    #[test]
    fn the_grants_endpoint_says_what_it_did() {
        let secret = r#""headers": {"authorization": "Bearer a-demo-secret-of-at-least-24-chars"}"#;
        let trace = [
            r#"{"time": "2026-11-22T09:00:00Z", "path": "/quota/admin/grants?class=batch&user=sim-user&units=40"}"#.to_string(),
            format!(r#"{{"time": "2026-11-22T09:01:00Z", "path": "/quota/admin/grants?class=batch&units=40", {secret}}}"#),
            format!(
                r#"{{"time": "2026-11-22T09:02:00Z", "path": "/quota/admin/grants?class=batch&user=sim-user&units=40", {secret}}}"#
            ),
        ]
        .join("\n");
        let steps = replay(&loaded(features()), &trace);
        let said: Vec<(u16, &str)> = steps.iter().map(|s| (s.status, s.message.as_deref().unwrap())).collect();
        assert_eq!(said[0], (404, "not found (no POST with the admin secret)"));
        assert_eq!(said[1].0, 400);
        assert!(!said[1].1.is_empty() && !said[1].1.starts_with('{'), "{}", said[1].1);
        assert_eq!(said[2], (200, "granted 40 units to user sim-user: grant balance 40"));
        assert!(steps.iter().all(|s| s.answered && s.class.as_deref() == Some("admin endpoint")));
    }

    fn stacked() -> Loaded {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stacked.json");
        loaded(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    fn drafts(n: usize) -> Request {
        let items: Vec<usize> = (0..n).collect();
        let line = json!({"time": "2026-11-22T09:00:00Z", "path": "/v1/drafts", "body": {"drafts": items}});
        trace::parse(&line.to_string(), "t").unwrap().remove(0)
    }

    fn member(config: &Config, id: &str, workspace: Option<&str>) -> Caller {
        Caller {
            id: id.into(),
            anonymous: false,
            workspace: workspace.map(str::to_string),
            organisation: Some("globex".into()),
            tier: config.tier_by_name("team").unwrap(),
            alignment: config.calendar.alignment,
        }
    }

    #[test]
    fn a_full_pool_binds_before_a_members_own_cap() {
        let loaded = stacked();
        let config = &loaded.config;
        let mut host = MemoryHost::at(drafts(1).now_ms);
        let mut bound = Vec::new();
        // Six members of acme use their 50 drafts each: the pool of 300 is full.
        for m in 0..6 {
            host.caller = Some(member(config, &format!("m{m}"), Some("acme")));
            let s = step(config, &mut host, &drafts(50)).unwrap();
            assert_eq!(s.status, 200, "{s:?}");
            bound.push(s.limits.iter().map(|l| (l.name(), l.used)).collect::<Vec<_>>());
        }
        // Each member's own cap binds (no room left there; on a tie, the narrower).
        let member_full = vec![("user/day".to_string(), Some(50)), ("workspace/day".to_string(), Some(300))];
        assert_eq!(bound.last(), Some(&member_full));
        // A seventh member has all 50 of their own left, and the pool refuses.
        host.caller = Some(member(config, "m6", Some("acme")));
        let s = step(config, &mut host, &drafts(1)).unwrap();
        assert_eq!((s.status, s.state.as_deref()), (429, Some("blocked")));
        let named: Vec<(String, Option<u64>, u64)> = s.limits.iter().map(|l| (l.name(), l.used, l.hard)).collect();
        assert_eq!(named, [("workspace/day".to_string(), Some(300), 300), ("user/day".to_string(), Some(0), 50)]);
        assert!(s.message.as_deref().unwrap().starts_with("Your team has used its 300 drafts for today."), "{s:?}");
        // Another workspace has a pool of its own.
        host.caller = Some(member(config, "m6", Some("initech")));
        assert_eq!(step(config, &mut host, &drafts(1)).unwrap().status, 200);
    }

    #[test]
    fn a_pool_the_caller_names_no_workspace_for_is_the_limit_named() {
        let mut doc = features();
        doc["tiers"]["starter"]["limits"]["other"] =
            json!([{"hard": 50, "window": "day"}, {"scope": "workspace", "hard": 300, "window": "day"}]);
        let trace = r#"{"time": "2026-11-22T09:00:00Z", "path": "/v1/anything"}"#;
        let steps = replay(&loaded(doc), trace);
        let s = &steps[0];
        assert_eq!((s.status, s.state.as_deref()), (403, Some("workspace_required")));
        let named: Vec<(String, usize, Option<u64>)> = s.limits.iter().map(|l| (l.name(), l.index, l.used)).collect();
        assert_eq!(named, [("workspace/day".to_string(), 1, None)]);
        assert!(brief(&steps).contains(" workspace_required [workspace/day] "), "{}", brief(&steps));
    }

    #[test]
    fn a_token_class_settles_to_the_usage_its_response_reports() {
        let chat = |response: &str| {
            format!(
                r#"{{"time": "2026-11-22T09:00:00Z", "path": "/v1/chat/completions", "body": {{"model": "gpt-4o", "max_tokens": 100, "messages": [{{"role": "user", "content": "0123456789012345678901234567890123456789"}}]}}{response}}}"#
            )
        };
        let trace = [
            chat(r#", "response": {"body": {"usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}}}"#),
            chat(r#", "response": {"status": 500}"#),
            chat(""),
            chat(r#", "response": {"body": {"id": "no usage"}}"#),
        ]
        .join("\n");
        let steps = replay(&loaded(features()), &trace);
        // (10 prompt + 100 budget) × 2 for gpt-4o reserved; 50 reported, × 2.
        let costs: Vec<(Option<u64>, Option<u64>)> = steps.iter().map(|s| (s.cost, s.settled)).collect();
        assert_eq!(costs, [(Some(220), Some(100)), (Some(220), Some(0)), (Some(220), None), (Some(220), Some(220))]);
        assert!(steps.iter().all(|s| s.currency.is_none() && s.status == 200));
        assert!(text(&loaded(features()), &args(), &steps).contains("    settled  100 (after the response)\n"));
    }

    #[test]
    fn one_limit_cells_name_no_limit() {
        let starter = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/features-starter.jsonl");
        let steps = replay(&loaded(features()), &std::fs::read_to_string(starter).unwrap());
        assert!(steps.iter().all(|s| s.limits.is_empty()));
        assert!(!json_lines(&steps).contains("\"others\""));
    }
}
