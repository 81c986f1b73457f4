//! One HTTP stream: read the request, let the core decide, carry out the
//! decision (forward with headers and any rewrite, or answer locally), then
//! hand the response's head, body and end to the core
//! ([`quota_core::exchange::response`]) and carry out the corrections it
//! returns (refunds, reported token usage).

use crate::host::{self, header_map, log, response_flags, upstream_connected, HostClock, HostProperties, SharedData};
use crate::remote::{self, Remote};
use crate::report::{bump, Reporter};
use crate::shared::Shared;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};
use quota_core::body::read_body;
use quota_core::buffering::{self, AtHead, Chunk};
use quota_core::classify::{classify_head, HeadMatch};
use quota_core::clock::Clock;
use quota_core::config::RedisStore;
use quota_core::config::{ClassId, Config, FailPolicy};
use quota_core::copy::CONFIRM_HEADER;
use quota_core::cost::Body;
use quota_core::counter::Counter;
use quota_core::engine::{self, charge, request_cost, Decision, Outcome, Prepared, Ticket};
use quota_core::exchange::response::{Charged, Correction, Counters, Ended};
use quota_core::headers::{is_quota_header, Headers};
use quota_core::identity::{identify, Caller, IdentityError};
use quota_core::negotiate::{negotiate, BodyFormat};
use quota_core::redis::sync::SyncTarget;
use quota_core::redis::{by_slot, Answer, CallError, Command};
use quota_core::reply::{refuse_body, refuse_identity, respond, Action as Decided, LocalReply};
use quota_core::request::RequestHead;
use quota_core::store::{CounterStore, GiveUp, StoreError};
use quota_core::unreadable::{classify_body, strictest, BodyVerdict};
use quota_core::usage::{method_not_allowed, usage_reply};
use quota_core::usage_limit::{limited_reply, UsageLimiter, UsageRead};
use quota_core::{admin, admission, decimal, units};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A request as the decision needs it.
pub struct Pending {
    /// Headers without the client's `x-quota-*` copies.
    head: RequestHead,
    /// The client sent the confirmation header (read before it was stripped).
    confirmed: bool,
}

impl Pending {
    fn format(&self) -> BodyFormat {
        negotiate(self.head.header_str("accept"))
    }
}

enum Phase {
    /// Nothing to do for this stream (unclassified, or already decided).
    Pass,
    /// A body rule or cost needs the request body: buffering it.
    AwaitingBody(Pending),
    /// Waiting for the Redis store to charge the request.
    Charging(Box<Charging>),
    /// Waiting for the Redis store to read the usage endpoint's counters.
    Reading(Box<Reading>),
    /// Waiting for the Redis store to add a grant.
    Granting(Box<Granting>),
    /// Admitted: these headers go on the upstream's response, which may
    /// correct the charge.
    Admitted(Headers, Option<Box<Charged>>),
    /// Answered locally; the reply already carries its headers.
    Replied,
}

/// A request paused while Redis charges it.
pub struct Charging {
    request: Pending,
    caller: Caller,
    /// The request body's length, when the filter read it (for a rewrite).
    body_len: Option<usize>,
    json: Option<Value>,
    ticket: Ticket,
    call: Call,
    /// The charge's id: what cancels it if its answer never comes.
    charge_id: String,
}

/// A call to Redis a paused request waits for.
pub struct Call {
    command: Command,
    token: u32,
    /// Already sent the script itself (after a NOSCRIPT).
    loaded: bool,
}

/// Why a call gave no answer, and whether the script may have run all the same.
struct Unanswered {
    why: String,
    may_have_run: bool,
}

/// The usage endpoint, paused while Redis reads the caller's counters (one
/// call per hash tag: per scope).
pub struct Reading {
    caller: Caller,
    /// The counters of each call still out, by token.
    waiting: HashMap<u32, Vec<String>>,
    /// Each counter read, by key: its record, or why it could not be read.
    read: HashMap<String, Result<Option<Counter>, String>>,
}

/// The grants endpoint, paused while Redis adds the grant.
pub struct Granting {
    grant: admin::GrantRequest,
    call: Call,
}

/// Counters read from Redis ahead of time, as a store (read only).
struct Prefetched<'a>(&'a HashMap<String, Result<Option<Counter>, String>>);

impl CounterStore for Prefetched<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match self.0.get(key) {
            Some(Ok(found)) => Ok(found.map(|c| (c.encode().to_vec(), 0))),
            Some(Err(why)) => Err(StoreError::Unavailable(why.clone())),
            None => Err(StoreError::Unavailable("not read".into())),
        }
    }

    fn set(&self, _key: &str, _value: &[u8], _expect: quota_core::store::Expect) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("read only".into()))
    }
}

pub struct QuotaStream {
    /// This stream's context id: effective again after a call to Redis.
    id: u32,
    config: Option<Rc<Config>>,
    reporter: Option<Rc<Reporter>>,
    remote: Option<Rc<Remote>>,
    usage_reads: Option<Rc<RefCell<UsageLimiter>>>,
    phase: Phase,
}

impl QuotaStream {
    pub fn new(state: Option<Shared>, id: u32) -> Self {
        match state {
            Some(s) => QuotaStream {
                id,
                config: Some(s.config),
                reporter: Some(s.reporter),
                remote: Some(s.remote),
                usage_reads: Some(s.usage_reads),
                phase: Phase::Pass,
            },
            None => {
                QuotaStream { id, config: None, reporter: None, remote: None, usage_reads: None, phase: Phase::Pass }
            }
        }
    }

    /// Charges the request to its class and carries out the decision.
    /// Returns whether the request goes on now (false: answered, or waiting for Redis).
    /// `body` and its parse `json` are there when the filter read the body;
    /// `cost` is set when the cost is already known (`unreadable_body: strictest`).
    fn decide(
        &mut self,
        config: &Config,
        request: Pending,
        class: ClassId,
        body: Option<&[u8]>,
        json: Option<Value>,
        cost: Option<u64>,
    ) -> bool {
        let caller = match identify(config, &request.head, &HostProperties) {
            Ok(c) => c,
            Err(e) => return self.refuse_identity(config, &request, &e),
        };
        let cost = cost.unwrap_or_else(|| request_cost(config, class, Body { bytes: body, json: json.as_ref() }));
        let body_len = body.map(<[u8]>::len);
        let now_ms = HostClock.now_ms();
        let Some(store) = config.counters.exact_redis() else {
            let counters = config.counters.table(&SharedData, now_ms);
            let decision = charge(config, &caller, class, cost, request.confirmed, now_ms, &counters);
            return self.carry_out(config, &request, &caller, body_len, json, &decision);
        };
        let ticket = match engine::prepare(config, &caller, class, cost, request.confirmed, now_ms) {
            Prepared::Decided(decision) => return self.carry_out(config, &request, &caller, body_len, json, &decision),
            Prepared::Charge(ticket) => ticket,
        };
        let (Some(limits), Some(remote)) = (engine::limits_of(config, &ticket), self.remote.clone()) else {
            return true;
        };
        let charge_id = remote.next_id();
        let command = Command::charge(
            ticket.key.clone(),
            limits,
            cost,
            ticket.confirmed,
            ticket.now(),
            ticket.alignment,
            &charge_id,
        );
        let loaded = remote.needs_script();
        match remote.call_for(self.id, store, &command, loaded) {
            Ok(token) => {
                self.phase = Phase::Charging(Box::new(Charging {
                    request,
                    caller,
                    body_len,
                    json,
                    ticket,
                    call: Call { command, token, loaded },
                    charge_id,
                }));
                false
            }
            Err(why) => {
                self.store_error(&why);
                let (decision, _) = engine::settle(config, ticket, Err(GiveUp::Unavailable(why)));
                self.carry_out(config, &request, &caller, body_len, json, &decision)
            }
        }
    }

    /// The request is paused on a call to Redis (a charge, a grant, a usage read).
    fn waiting_for_redis(&self) -> bool {
        matches!(self.phase, Phase::Charging(_) | Phase::Granting(_) | Phase::Reading(_))
    }

    /// Reports and carries out a decision: forwards the request with its
    /// headers and any rewrite, or answers it. Returns whether it goes on.
    fn carry_out(
        &mut self,
        config: &Config,
        request: &Pending,
        caller: &Caller,
        body_len: Option<usize>,
        mut json: Option<Value>,
        decision: &Decision,
    ) -> bool {
        if let Some(r) = &self.reporter {
            r.decision(caller, decision);
        }
        let sync = SyncTarget::of(config, decision, caller);
        if let (Some(target), Some(remote), Outcome::Charged(c)) = (&sync, &self.remote, &decision.outcome) {
            remote.note(target, i64::try_from(c.cost).unwrap_or(i64::MAX));
        }
        match respond(config, decision, request.format()) {
            Decided::Continue(headers) => {
                let rewritten = apply_admission(config, decision, json.as_mut());
                if let (true, Some(j), Some(len)) = (rewritten, &json, body_len) {
                    let bytes = j.to_string();
                    match host::set_request_body(len, bytes.as_bytes()) {
                        // Held headers have not left yet: they carry the new length, so
                        // the upstream gets a body framed as the client framed it.
                        Ok(()) if config.hold_headers_for_body => {
                            let length = decimal::u64_text(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
                            header_map::set(MapType::HttpRequestHeaders, "content-length", &length);
                        }
                        Ok(()) => {}
                        Err(e) => log(LogLevel::Warn, &format!("quota: could not rewrite the request body: {e}")),
                    }
                }
                let charged = Charged::new(config, decision, json.as_ref(), sync).map(Box::new);
                self.phase = Phase::Admitted(headers, charged);
                true
            }
            Decided::Reply(reply) => self.reply(&reply),
        }
    }

    fn store_error(&self, why: &str) {
        log(LogLevel::Warn, &format!("quota: the Redis store did not answer: {why}"));
        if let Some(r) = &self.remote {
            bump(r.metrics.errors, 1);
        }
    }

    /// The answer to `call`: `Ok(None)` when Redis had lost the script and
    /// the call went out again carrying it (under a new token). An error
    /// says why, and whether the script may have run all the same (only a
    /// NOSCRIPT says it did not).
    fn answer_of(
        &self,
        store: &RedisStore,
        call: &mut Call,
        num_headers: usize,
        body_size: usize,
    ) -> Result<Option<Answer>, Unanswered> {
        let result = match remote::answer(num_headers, body_size) {
            Ok(answer) => {
                if let Some(r) = &self.remote {
                    r.script_present();
                }
                return Ok(Some(answer));
            }
            Err(CallError::NoScript) if !call.loaded => {
                // Redis lost its script cache (a restart): send the script itself once.
                let Some(remote) = &self.remote else {
                    return Err(Unanswered { why: "no Redis store".into(), may_have_run: false });
                };
                remote.script_missing();
                remote
                    .call_for(self.id, store, &call.command, true)
                    .map(|token| {
                        call.token = token;
                        call.loaded = true;
                        None
                    })
                    .map_err(|why| Unanswered { why, may_have_run: false })
            }
            Err(CallError::NoScript) => {
                Err(Unanswered { why: "NOSCRIPT after sending the script".to_string(), may_have_run: false })
            }
            Err(e) => Err(Unanswered { why: e.why(), may_have_run: e.may_have_run() }),
        };
        if let Err(e) = &result {
            self.store_error(&e.why);
        }
        result
    }

    /// Redis answered (or failed to answer) a paused request's charge.
    fn charged_by_redis(&mut self, mut waiting: Box<Charging>, num_headers: usize, body_size: usize) {
        let Some(config) = self.config.clone() else { return };
        let Some(store) = &config.counters.redis else { return };
        let Some(stored) = self.answer_of(store, &mut waiting.call, num_headers, body_size).transpose() else {
            self.phase = Phase::Charging(waiting);
            return;
        };
        if let (Err(e), FailPolicy::Closed) = (&stored, config.counters.on_error) {
            if e.may_have_run {
                // Refused for want of an answer: a charge that ran all the same is taken back.
                self.cancel_charge(&waiting, "its answer never came");
            }
        }
        let before = stored.as_ref().map(|a| a.before).map_err(|e| GiveUp::Unavailable(e.why.clone()));
        let (decision, write) = engine::settle(&config, waiting.ticket.clone(), before);
        if let Ok(answer) = &stored {
            if answer.after != write.or(answer.before) {
                log(
                    LogLevel::Error,
                    &format!(
                        "quota: the Redis script and the core disagree on {}: script {:?}, core {:?}",
                        waiting.ticket.key, answer.after, write
                    ),
                );
                if let Some(r) = &self.remote {
                    bump(r.metrics.mismatches, 1);
                }
            }
        }
        let Charging { request, caller, body_len, json, .. } = *waiting;
        if self.carry_out(&config, &request, &caller, body_len, json, &decision) {
            if let Err(e) = host::resume_request() {
                log(LogLevel::Error, &format!("quota: could not resume the request: {e}"));
            }
        }
    }

    /// Queues the cancel of a charge whose answer this stream will not use:
    /// Redis gives its units back if it ran, once, and charges nothing if it
    /// has not run yet.
    fn cancel_charge(&self, waiting: &Charging, why: &str) {
        if let Some(remote) = &self.remote {
            log(
                LogLevel::Info,
                &format!("quota: cancelling charge {} of {}: {why}", waiting.charge_id, waiting.ticket.key),
            );
            remote.push(Command::cancel(waiting.ticket.key.clone(), &waiting.charge_id));
        }
    }

    /// The stream ends: a charge still out is cancelled (its answer, if it
    /// comes, finds no stream; the request never reached the upstream).
    fn abandon(&mut self) {
        if !matches!(self.phase, Phase::Charging(_)) {
            return;
        }
        if let Phase::Charging(waiting) = std::mem::replace(&mut self.phase, Phase::Replied) {
            self.cancel_charge(&waiting, "the stream ended before Redis answered");
        }
    }

    fn refuse_identity(&mut self, config: &Config, request: &Pending, err: &IdentityError) -> bool {
        if let Some(r) = &self.reporter {
            r.identity_refused(err, HostClock.now_ms());
        }
        self.reply(&refuse_identity(config, err, request.format()))
    }

    /// Sends a local reply; always returns false (the request stops here).
    fn reply(&mut self, reply: &LocalReply) -> bool {
        let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(e) = host::send_reply(reply.status, &headers, reply.body.as_bytes()) {
            log(LogLevel::Error, &format!("quota: could not send the local reply: {e}"));
        }
        self.phase = Phase::Replied;
        false
    }

    fn usage_endpoint(&mut self, config: &Config, request: &Pending) {
        if !matches!(request.head.method(), "GET" | "HEAD") {
            self.reply(&method_not_allowed());
            return;
        }
        let caller = match identify(config, &request.head, &HostProperties) {
            Ok(caller) => caller,
            Err(e) => {
                self.refuse_identity(config, request, &e);
                return;
            }
        };
        // Reads are free, not unbounded: past the caller's or this worker's budget, 429.
        let read = self.usage_reads.as_ref().map(|l| l.borrow_mut().read(&caller, HostClock.now_ms()));
        if let Some(UsageRead::Limited { retry_after_s, .. }) = read {
            if let Some(r) = &self.reporter {
                r.usage_limited();
            }
            self.reply(&limited_reply(retry_after_s));
            return;
        }
        let Some(store) = config.counters.exact_redis() else {
            let now_ms = HostClock.now_ms();
            self.reply(&usage_reply(config, &caller, now_ms, &config.counters.table(&SharedData, now_ms)));
            return;
        };
        // Read every counter of the caller's plan from Redis, then answer: one
        // call per hash tag (the caller's counters, and their workspace's).
        let Some(remote) = self.remote.clone() else { return };
        let mut reading = Reading { caller, waiting: HashMap::new(), read: HashMap::new() };
        let load = remote.needs_script();
        for keys in by_slot(engine::store_keys(config, &reading.caller)) {
            match remote.call_for(self.id, store, &Command::view(keys.clone()), load) {
                Ok(token) => {
                    reading.waiting.insert(token, keys);
                }
                Err(why) => {
                    self.store_error(&why);
                    for key in keys {
                        reading.read.insert(key, Err(why.clone()));
                    }
                }
            }
        }
        self.phase = Phase::Reading(Box::new(reading));
        self.finish_reading();
    }

    /// Answers the usage endpoint once every counter is read.
    fn finish_reading(&mut self) {
        let Some(config) = self.config.clone() else { return };
        let Phase::Reading(reading) = &self.phase else { return };
        if !reading.waiting.is_empty() {
            return;
        }
        let reply = usage_reply(&config, &reading.caller, HostClock.now_ms(), &Prefetched(&reading.read));
        self.reply(&reply);
    }

    /// Finishes a request that waited for its body.
    /// The body is in (or will not be read: `too_large`): classify with it
    /// and decide. A body the filter cannot read never makes a request
    /// cheaper: `unreadable_body` refuses it or charges the strictest class.
    fn decide_with_body(&mut self, body: Option<Vec<u8>>, too_large: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        let Phase::AwaitingBody(request) = std::mem::replace(&mut self.phase, Phase::Pass) else {
            return Action::Continue;
        };
        let read = read_body(body.as_deref(), too_large);
        let (class, cost) = match classify_body(&config, &request.head, &read) {
            BodyVerdict::Class(None) => return Action::Continue,
            BodyVerdict::Class(Some(class)) => (class, None),
            BodyVerdict::Refuse(why) => {
                let caller = identify(&config, &request.head, &HostProperties).ok();
                if let Some(r) = &self.reporter {
                    r.body_refused(caller.as_ref(), &why, HostClock.now_ms());
                }
                self.reply(&refuse_body(&config, &why, request.format()));
                return Action::Pause;
            }
            BodyVerdict::Strictest => {
                let caller = match identify(&config, &request.head, &HostProperties) {
                    Ok(c) => c,
                    Err(e) => {
                        self.refuse_identity(&config, &request, &e);
                        return Action::Pause;
                    }
                };
                let Some(s) = strictest(&config, &request.head, caller.tier) else { return Action::Continue };
                (s.class(), Some(units::bounded(s.cost())))
            }
        };
        let json = if cost.is_some() { None } else { read.into_json() };
        let body = if cost.is_some() { None } else { body };
        if self.decide(&config, request, class, body.as_deref(), json, cost) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// Adds grant units (the admin endpoint's query).
    fn admin_grant(&mut self, config: &Config, query: &str) {
        let grant = match admin::parse_grant(config, query) {
            Ok(g) => g,
            Err(why) => {
                let doc = json!({ "error": { "message": why, "type": "invalid_request_error", "code": "bad_grant" } });
                self.reply(&json_reply(400, &doc));
                return;
            }
        };
        let Some(store) = config.counters.exact_redis() else {
            let counters = config.counters.table(&SharedData, HostClock.now_ms());
            let result = engine::grant(config, &grant.key, grant.units, &counters).map_err(|e| e.to_string());
            self.reply(&granted(config, &grant, result));
            return;
        };
        let Some(remote) = self.remote.clone() else { return };
        let command = Command::grant(grant.key.clone(), grant.units);
        let loaded = remote.needs_script();
        match remote.call_for(self.id, store, &command, loaded) {
            Ok(token) => {
                self.phase = Phase::Granting(Box::new(Granting { grant, call: Call { command, token, loaded } }))
            }
            Err(why) => {
                self.store_error(&why);
                self.reply(&granted(config, &grant, Err(why)));
            }
        }
    }

    /// Redis answered (or failed to answer) a grant.
    fn granted_by_redis(&mut self, mut waiting: Box<Granting>, num_headers: usize, body_size: usize) {
        let Some(config) = self.config.clone() else { return };
        let Some(store) = &config.counters.redis else { return };
        let Some(result) = self.answer_of(store, &mut waiting.call, num_headers, body_size).transpose() else {
            self.phase = Phase::Granting(waiting);
            return;
        };
        let result = result.map(|answer| answer.after.map_or(0, |c| c.grant)).map_err(|e| e.why);
        self.reply(&granted(&config, &waiting.grant, result));
    }

    /// Carries out a correction of the charge (a refund, the reported
    /// usage): now in shared data, or queued for Redis (sent from the root
    /// context, so it survives the end of this stream).
    fn correct(&self, correction: Option<Correction>) {
        let (Some(c), Some(config)) = (correction, &self.config) else { return };
        match &c.counters {
            Counters::Redis => {
                if let Some(remote) = &self.remote {
                    remote.push_adjust(c.key, c.window_start, c.delta, c.most);
                }
            }
            Counters::Local { sync } => {
                if let Err(e) = c.apply(config, &config.counters.table(&SharedData, HostClock.now_ms())) {
                    log(LogLevel::Warn, &format!("quota: could not correct {} by {}: {e}", c.key, c.delta));
                }
                if let (Some(target), Some(remote)) = (sync, &self.remote) {
                    remote.note(target, c.delta);
                }
            }
        }
    }
}

fn json_reply(status: u16, doc: &Value) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
        body: doc.to_string(),
    }
}

/// The grants endpoint's answer: the new balance, or why the store gave up.
fn granted(config: &Config, g: &admin::GrantRequest, result: Result<u64, String>) -> LocalReply {
    match result {
        Ok(balance) => {
            log(LogLevel::Info, &format!("quota: granted {} units of {} to {}", g.units, g.key, g.scope.as_str()));
            let class = config.class(g.class).map(|c| c.name.clone());
            json_reply(
                200,
                &json!({ "class": class, "scope": g.scope.as_str(), "id": g.id, "added": g.units, "grant": balance }),
            )
        }
        Err(e) => json_reply(
            503,
            &json!({ "error": { "message": format!("the counter store gave up: {e}"), "type": "server_error", "code": "quota_unavailable" } }),
        ),
    }
}

/// Carries out what admission asks of the request: headers (and a route
/// cache refresh) now, body changes into `json`. Returns whether `json` changed.
fn apply_admission(config: &Config, d: &Decision, json: Option<&mut Value>) -> bool {
    let rewrites = admission::rewrites(config, d, json.as_deref());
    for (name, value) in &rewrites.headers {
        header_map::set(MapType::HttpRequestHeaders, name, value);
    }
    if rewrites.clear_route_cache {
        // Let a route that matches the header pick the request up.
        if let Err(e) = host::clear_route_cache() {
            log(LogLevel::Warn, &format!("quota: could not clear the route cache: {e}"));
        }
    }
    json.is_some_and(|j| rewrites.apply_to_body(j))
}

impl Context for QuotaStream {
    fn on_done(&mut self) -> bool {
        self.abandon();
        true
    }

    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        match std::mem::replace(&mut self.phase, Phase::Pass) {
            Phase::Charging(waiting) if waiting.call.token == token => {
                self.charged_by_redis(waiting, num_headers, body_size)
            }
            Phase::Granting(waiting) if waiting.call.token == token => {
                self.granted_by_redis(waiting, num_headers, body_size)
            }
            Phase::Reading(mut reading) => {
                if let Some(keys) = reading.waiting.remove(&token) {
                    let read = match remote::view_answer(num_headers, body_size, keys.len()) {
                        Ok(records) => Ok(records),
                        Err(CallError::NoScript) => {
                            // The meter shows "unavailable" this once; the next call sends the script.
                            if let Some(r) = &self.remote {
                                r.script_missing();
                            }
                            Err("Redis has no copy of the script".to_string())
                        }
                        Err(e) => Err(e.why()),
                    };
                    match read {
                        Ok(records) => reading.read.extend(keys.into_iter().zip(records.into_iter().map(Ok))),
                        Err(why) => {
                            self.store_error(&why);
                            reading.read.extend(keys.into_iter().map(|key| (key, Err(why.clone()))));
                        }
                    }
                }
                self.phase = Phase::Reading(reading);
                self.finish_reading();
            }
            other => self.phase = other,
        }
    }
}

impl HttpContext for QuotaStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        let Some(pairs) = header_map::pairs(MapType::HttpRequestHeaders) else {
            log(LogLevel::Error, "quota: could not read request headers");
            return Action::Continue;
        };
        // Envoy only lets valid (ASCII) header names through.
        let headers: Vec<(String, Vec<u8>)> =
            pairs.into_iter().map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), v)).collect();
        // Only the filter speaks x-quota-*: a client's copies never reach the upstream.
        for (name, _) in headers.iter().filter(|(n, _)| is_quota_header(n)) {
            header_map::remove(MapType::HttpRequestHeaders, name);
        }
        let confirmed =
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(CONFIRM_HEADER)).is_some_and(|(_, v)| is_yes(v));
        let head = RequestHead::new(headers.into_iter().filter(|(n, _)| !is_quota_header(n)).collect());
        let request = Pending { head, confirmed };

        let path = request.head.path();
        if config.usage_endpoint.as_deref() == Some(path) {
            self.usage_endpoint(&config, &request);
            return Action::Pause;
        }
        if config.admin.as_ref().is_some_and(|a| a.path == path) {
            if request.head.method() != "POST" || !admin::authorized(&config, request.head.header("authorization")) {
                // Say nothing about the endpoint to a caller without the secret.
                self.reply(&LocalReply {
                    status: 404,
                    headers: vec![("content-type", "text/plain".into())],
                    body: "not found\n".into(),
                });
            } else {
                let query = request.head.header_str(":path").and_then(|p| p.split_once('?')).map_or("", |(_, q)| q);
                self.admin_grant(&config, query);
            }
            return Action::Pause;
        }
        match classify_head(&config, &request.head) {
            HeadMatch::Unclassified => Action::Continue,
            HeadMatch::Class(class) => {
                if self.decide(&config, request, class, None, None, None) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            HeadMatch::NeedsBody if end_of_stream => {
                self.phase = Phase::AwaitingBody(request);
                self.decide_with_body(None, false)
            }
            HeadMatch::NeedsBody => {
                let at_head = buffering::at_head(&request.head, config.max_body_bytes);
                self.phase = Phase::AwaitingBody(request);
                if at_head == AtHead::TooLarge {
                    // Its length is already over the cap: hold none of it
                    // (Envoy answers 413 itself if a paused body outgrows its buffer).
                    return self.decide_with_body(None, true);
                }
                if config.may_rewrite_body() && !config.hold_headers_for_body {
                    // The headers go on before the body is read, and a rewritten
                    // body has another length: let Envoy frame it (chunked).
                    // Held headers get the new length when there is one.
                    header_map::remove(MapType::HttpRequestHeaders, "content-length");
                }
                // Pausing headers stops Envoy from delivering the body unless the
                // plugin sets allow_on_headers_stop_iteration; without it, the
                // headers go on and the body is held back instead.
                if config.hold_headers_for_body {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.config.as_ref().map_or(0, |c| c.max_body_bytes);
        match self.phase {
            // `body_size` is all Envoy holds for this stream, this chunk included.
            Phase::AwaitingBody(_) => match buffering::after_chunk(body_size, end_of_stream, max) {
                Chunk::Hold => Action::Pause,
                // Too large to inspect: hold no more; `unreadable_body` decides.
                Chunk::TooLarge => self.decide_with_body(None, true),
                Chunk::Read => match host::request_body(body_size) {
                    Ok(body) => self.decide_with_body(body, false),
                    // A body the host would not hand over is one the filter could not read.
                    Err(_) => self.decide_with_body(None, body_size > 0),
                },
            },
            // Continuing here would let the held headers go on too, before Redis answered.
            _ if self.waiting_for_redis() => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.waiting_for_redis() {
            return Action::Pause;
        }
        if !matches!(self.phase, Phase::AwaitingBody(_)) {
            return Action::Continue;
        }
        let max = self.config.as_ref().map_or(0, |c| c.max_body_bytes);
        match host::request_body(max) {
            Ok(body) => self.decide_with_body(body, false),
            Err(_) => self.decide_with_body(None, true),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Phase::Admitted(headers, charged), Some(config)) = (&mut self.phase, &self.config) else {
            return Action::Continue;
        };
        let upstream = add_response_headers(headers);
        let Some(c) = charged else { return Action::Continue };
        let header = |name: &str| match &upstream {
            Some(pairs) => pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.clone()),
            None => header_map::get(MapType::HttpResponseHeaders, name),
        };
        let status = header(":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        // The content type says how a metered body is read; nothing else needs it.
        let content_type = if c.reads_body() { header("content-type") } else { None };
        let correction = c.response_head(config, status, content_type.as_deref(), response_flags());
        self.correct(correction);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Phase::Admitted(_, Some(c)), Some(config)) = (&mut self.phase, &self.config) else {
            return Action::Continue;
        };
        if !c.reads_body() {
            return Action::Continue;
        }
        // Read the chunk as it passes; the response is never held back.
        let chunk = match body_size {
            0 => None,
            _ => host::response_body(body_size).ok().flatten(),
        };
        let correction = c.response_body(config, chunk.as_deref().unwrap_or_default(), end_of_stream);
        self.correct(correction);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.abandon();
        let (Phase::Admitted(_, Some(c)), Some(config)) = (&mut self.phase, &self.config) else { return };
        let correction = c.stream_end(config, || Ended {
            response_flags: response_flags(),
            upstream_connected: upstream_connected(),
        });
        self.correct(correction);
    }
}

/// Puts the decision's headers on the response, replacing the upstream's
/// copies of them, and returns the upstream's headers as they were. One read
/// and one write of the whole map: each host call costs more in Envoy than
/// the few headers it carries. If the map cannot be read, the headers are set
/// one by one instead; `None` (also when there is nothing to add) says the
/// caller must ask the host for any header it needs.
fn add_response_headers(headers: &Headers) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let map = MapType::HttpResponseHeaders;
    if headers.is_empty() {
        return None;
    }
    let Some(upstream) = header_map::pairs(map) else {
        for (name, value) in headers {
            header_map::set(map, name, value);
        }
        return None;
    };
    let ours = |name: &[u8]| headers.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name));
    let kept = upstream.iter().filter(|(n, _)| !ours(n)).map(|(n, v)| (n.as_slice(), v.as_slice()));
    let merged = kept.chain(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    if !header_map::set_pairs(map, merged) {
        log(LogLevel::Warn, "quota: could not put the quota headers on the response");
    }
    Some(upstream)
}

/// A confirmation header says yes unless it says no.
fn is_yes(value: &[u8]) -> bool {
    let v = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
    !v.is_empty() && !matches!(v.as_str(), "no" | "false" | "0")
}
