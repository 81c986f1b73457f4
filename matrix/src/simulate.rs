//! `simulate`: replays a trace through the filter's core, as the filter
//! would run it (classify, charge, respond), with a manual clock set to each
//! request's time and an in-memory counter store.
//!
//! The caller is set directly (user, optional workspace, the chosen tier),
//! not read through the config's identity sources, so any config can be
//! replayed whatever its sources are.

use crate::cli::Simulate;
use crate::load::Loaded;
use crate::trace::Request;
use quota_core::body::read_body;
use quota_core::buffering::{at_head, AtHead};
use quota_core::classify::{classify_head, HeadMatch};
use quota_core::clock::{Clock, ManualClock};
use quota_core::config::{parse_utc_offset, Config};
use quota_core::copy::CONFIRM_HEADER;
use quota_core::cost::Body;
use quota_core::engine::{self, charge, request_cost, Decision, Event, Outcome};
use quota_core::headers::{is_quota_header, WARNING};
use quota_core::identity::Caller;
use quota_core::negotiate::{negotiate, BodyFormat};
use quota_core::reply::{refuse_body, respond, Action, LocalReply};
use quota_core::request::RequestHead;
use quota_core::store::{CounterStore, MemoryStore};
use quota_core::unreadable::{classify_body, strictest, BodyVerdict};
use quota_core::usage::{method_not_allowed, usage_reply};
use quota_core::{admin, admission};
use serde_json::{json, Map, Value};

/// What happened to one request of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub line: usize,
    pub time: String,
    pub method: String,
    pub path: String,
    /// `None`: no class matched and there is no default class.
    pub class: Option<String>,
    /// Units the request costs (classified requests only).
    pub cost: Option<u64>,
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
}

/// Replays `requests` for one caller. Errors are the lines to print.
pub fn run(loaded: &Loaded, args: &Simulate, requests: &[Request]) -> Result<Vec<Step>, String> {
    let config = &loaded.config;
    let caller = caller(loaded, args)?;
    let store = MemoryStore::new();
    let clock = ManualClock::at(requests.first().map_or(0, |r| r.now_ms));
    Ok(requests
        .iter()
        .map(|request| {
            clock.set_ms(request.now_ms);
            step(config, &caller, request, &clock, &store)
        })
        .collect())
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
    Ok(Caller { id: args.user.clone(), anonymous: false, workspace: args.workspace.clone(), tier, alignment })
}

fn step(config: &Config, caller: &Caller, request: &Request, clock: &ManualClock, store: &MemoryStore) -> Step {
    let mut step = Step {
        line: request.line,
        time: request.time.clone(),
        method: request.method.clone(),
        path: request.path.clone(),
        class: None,
        cost: None,
        status: 200,
        answered: false,
        state: None,
        headers: Vec::new(),
        message: None,
        events: Vec::new(),
        body: None,
        rewrites: Vec::new(),
    };
    // As the filter does: read the confirmation, then drop every x-quota-* header.
    let confirmed = request.headers.iter().find(|(n, _)| n == CONFIRM_HEADER).is_some_and(|(_, v)| is_yes(v));
    let mut head: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), request.method.clone().into_bytes()),
        (":path".into(), request.path.clone().into_bytes()),
    ];
    head.extend(
        request.headers.iter().filter(|(n, _)| !is_quota_header(n)).map(|(n, v)| (n.clone(), v.clone().into_bytes())),
    );
    let head = RequestHead::new(head);
    let format = negotiate(head.header_str("accept"));
    // The counters as the filter keeps them: the bounded table over the store.
    let store = &config.counters.table(store, clock.now_ms());

    if config.usage_endpoint.as_deref() == Some(head.path()) {
        let reply = if matches!(head.method(), "GET" | "HEAD") {
            usage_reply(config, caller, clock.now_ms(), store)
        } else {
            method_not_allowed()
        };
        step.class = Some("usage endpoint".into());
        step.message = usage_summary(&reply.body).or_else(|| error_message(&reply.body));
        answered(&mut step, reply);
        return step;
    }
    if config.admin.as_ref().is_some_and(|a| a.path == head.path()) {
        step.class = Some("admin endpoint".into());
        let reply = admin_grant(config, &head, store);
        step.message = Some(match &reply {
            Ok(text) => text.clone(),
            Err((_, text)) => text.clone(),
        });
        step.status = match reply {
            Ok(_) => 200,
            Err((status, _)) => status,
        };
        step.answered = true;
        return step;
    }
    // As the filter does: the body is read only when a rule or the cost needs it.
    let mut strictest_cost = None;
    let (class, body, json) = match classify_head(config, &head) {
        HeadMatch::Unclassified => (None, None, None),
        HeadMatch::Class(c) => (Some(c), None, None),
        HeadMatch::NeedsBody => {
            let declared_too_large = at_head(&head, config.max_body_bytes) == AtHead::TooLarge;
            let too_large =
                declared_too_large || request.body.as_ref().is_some_and(|b| b.len() > config.max_body_bytes);
            let body = request.body.as_deref().filter(|_| !too_large);
            let read = read_body(body, too_large);
            match classify_body(config, &head, &read) {
                BodyVerdict::Class(class) => (class, body, read.into_json()),
                BodyVerdict::Refuse(why) => {
                    step.class = Some(why.code().replace('_', " "));
                    step.state = Some(why.code().into());
                    step.events = vec![why.code().into()];
                    step.message = error_message(&refuse_body(config, &why, BodyFormat::OpenAi).body);
                    answered(&mut step, refuse_body(config, &why, format));
                    return step;
                }
                // The most restrictive class the head allows, at its highest cost.
                BodyVerdict::Strictest => match strictest(config, &head, caller.tier) {
                    Some(s) => {
                        strictest_cost = Some(s.cost());
                        (Some(s.class()), None, None)
                    }
                    None => (None, None, None),
                },
            }
        }
    };
    let Some(class) = class else {
        return step;
    };
    let cost = strictest_cost.unwrap_or_else(|| request_cost(config, class, Body { bytes: body, json: json.as_ref() }));
    let decision = charge(config, caller, class, cost, confirmed, clock.now_ms(), store);
    step.class = config.class(class).map(|c| c.name.clone());
    step.cost = Some(cost);
    step.state = Some(state(&decision).into());
    step.events = decision.events(config).iter().map(event).collect();
    match respond(config, &decision, format) {
        Action::Continue(headers) => {
            step.message = headers.iter().find(|(n, _)| *n == WARNING).map(|(_, v)| v.clone());
            step.headers = own(&headers);
            step.rewrites = rewrites(config, &decision, json.as_ref());
        }
        Action::Reply(reply) => {
            step.message = refusal_message(config, &decision, format, &reply.body);
            answered(&mut step, reply);
        }
    }
    step
}

fn answered(step: &mut Step, reply: LocalReply) {
    step.status = reply.status;
    step.answered = true;
    step.headers = own(&reply.headers);
    step.body = Some(reply.body);
}

/// The grants endpoint, as the filter answers it: 404 without the secret,
/// 400 for a bad query, else the new grant balance.
fn admin_grant(config: &Config, head: &RequestHead, store: &impl CounterStore) -> Result<String, (u16, String)> {
    if head.method() != "POST" || !admin::authorized(config, head.header("authorization")) {
        return Err((404, "not found (no POST with the admin secret)".into()));
    }
    let query = head.header_str(":path").and_then(|p| p.split_once('?')).map_or("", |(_, q)| q);
    let grant = admin::parse_grant(config, query).map_err(|why| (400, why))?;
    let balance =
        engine::grant(config, &grant.key, grant.units, store).map_err(|e| (503, format!("the store gave up: {e}")))?;
    Ok(format!("granted {} units to {} {}: grant balance {balance}", grant.units, grant.scope.as_str(), grant.id))
}

/// What the filter changes on an admitted request before the upstream sees it
/// (the same `admission::rewrites` the filter carries out).
fn rewrites(config: &Config, d: &Decision, json: Option<&Value>) -> Vec<String> {
    let r = admission::rewrites(config, d, json);
    let mut out: Vec<String> =
        r.headers.iter().map(|(name, value)| format!("request header {name}: {value}")).collect();
    if let (Some(model), Some(old)) = (&r.model, json.and_then(|b| b.get("model"))) {
        out.push(format!("model {} → {model}", old.as_str().unwrap_or("?")));
    }
    if r.include_usage {
        out.push("stream_options.include_usage: true".into());
    }
    out
}

fn own(headers: &[(&str, String)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| ((*n).to_string(), v.clone())).collect()
}

fn state(d: &Decision) -> &'static str {
    match &d.outcome {
        Outcome::Charged(c) if c.needs_confirmation => "confirmation_required",
        Outcome::Charged(c) if c.too_large => quota_core::headers::STATE_TOO_LARGE,
        Outcome::Charged(c) => c.usage.state.as_str(),
        Outcome::NotIncluded => "not_included",
        Outcome::WorkspaceRequired => "workspace_required",
        Outcome::Unavailable { .. } => "unavailable",
    }
}

fn event(e: &Event) -> String {
    match e {
        Event::Warned { at, .. } => format!("warned at {at}"),
        other => other.name().to_string(),
    }
}

/// The refusal's human sentence, whatever format the body was written in.
fn refusal_message(config: &Config, d: &Decision, format: BodyFormat, body: &str) -> Option<String> {
    if format == BodyFormat::OpenAi {
        return error_message(body);
    }
    match respond(config, d, BodyFormat::OpenAi) {
        Action::Reply(r) => error_message(&r.body),
        Action::Continue(_) => None,
    }
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
            match (c.get("used").and_then(Value::as_u64), c.get("limit").and_then(Value::as_u64)) {
                (Some(used), Some(limit)) => format!("{label} {used}/{limit} {state}"),
                _ => format!("{label} {}", state.replace('_', " ")),
            }
        })
        .collect();
    Some(parts.join("; "))
}

/// A confirmation header says yes unless it says no (as the filter reads it).
fn is_yes(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    !v.is_empty() && !matches!(v.as_str(), "no" | "false" | "0")
}

/// Readable text: a block per request, then a summary.
pub fn text(loaded: &Loaded, args: &Simulate, steps: &[Step]) -> String {
    let config = &loaded.config;
    let tier = config.tier_by_name(&args.tier.to_ascii_lowercase()).and_then(|t| config.tier(t));
    let mut out = format!(
        "Replaying {} for user {}{} on the {} plan ({}), from {}.\n",
        args.script,
        args.user,
        args.workspace.as_ref().map_or_else(String::new, |w| format!(" of workspace {w}")),
        tier.map_or("?", |t| t.label.as_str()),
        tier.map_or("?", |t| t.name.as_str()),
        loaded.path,
    );
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("\n[{}] {} {} {}  (line {})\n", i + 1, s.time, s.method, s.path, s.line));
        let mut row = |key: &str, value: &str| out.push_str(&format!("    {key:<8} {value}\n"));
        match (&s.class, s.cost) {
            (Some(class), Some(cost)) => row("class", &format!("{class} (cost {cost})")),
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
        let line = json!({
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
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}
