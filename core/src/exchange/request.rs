//! The request's side of an [`Exchange`]: from its head to the decision.
//!
//! - **Stripping**: only the filter speaks `x-quota-*`; the client's copies
//!   never reach the upstream (the confirmation header is read first).
//! - **Routing**: the usage endpoint (`GET`/`HEAD`, within the worker's read
//!   budgets) and the grants endpoint (`POST` with the admin secret, else a
//!   plain 404) are answered here; everything else is classified.
//! - **Body needs**: the body is read only when a rule or the cost needs it,
//!   up to `max_body_bytes`; the headers are held meanwhile only with
//!   `hold_headers_for_body` (else a body that may be rewritten loses its
//!   `content-length`, and Envoy frames it). A body that cannot be read never
//!   makes a request cheaper: `unreadable_body` refuses it or charges the
//!   strictest class.
//! - **The charge**, per counter store: shared data at once, through the
//!   counter table; Redis's exact mode as a call with a fresh id, cancelled
//!   if its answer will not be used (the stream ended, or the fail policy
//!   refused while the script may have run); a lost script is sent once.
//! - **Carrying out the decision**: the headers and rewrites admission
//!   asks for, the units the approximate mode syncs, and what the response
//!   may still correct ([`Charged`]).

use super::ledger::Entry;
use super::response::Charged;
use super::{Call, Edits, Exchange, Host, LeaseTarget, Level, Next, Note, Rewrite, Step};
use crate::body::{read_body_keys, Spans};
use crate::buffering::{self, AtHead, Chunk};
use crate::classify::{classify_head, HeadMatch};
use crate::config::{ClassId, Config, FailPolicy};
use crate::copy::CONFIRM_HEADER;
use crate::cost::Body;
use crate::counter::Counter;
use crate::engine::{self, charge, request_cost, Decision, Outcome, Prepared, Ticket};
use crate::headers::{is_quota_header, Headers};
use crate::identity::{Caller, IdentityError};
use crate::lease::{self, Admit, LeaseRecord};
use crate::negotiate::{negotiate_for, speaks_anthropic, BodyFormat, ErrorFormat, ANTHROPIC_VERSION};
use crate::redis::sync::SyncTarget;
use crate::redis::{self, by_slot, CallError, Command, LeaseAnswer, StackAnswer};
use crate::reply::{refuse_body, refuse_identity, respond, Action, LocalReply};
use crate::request::RequestHead;
use crate::store::{CounterStore, Expect, GiveUp, StoreError};
use crate::unreadable::{classify_body, strictest, BodyVerdict};
use crate::usage::{method_not_allowed, usage_reply};
use crate::usage_limit::{limited_reply, UsageRead};
use crate::{admin, admission, units};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Where an exchange stands.
#[derive(Debug)]
pub(super) enum Phase {
    /// Nothing to do for this stream (unclassified, or already decided).
    Pass,
    /// A body rule or cost needs the request body: buffering it.
    AwaitingBody(Pending),
    /// The filter asked for this many bytes of the buffered body.
    ReadingBody(Pending, usize),
    /// Waiting for the Redis store to charge the request.
    Charging(Box<Charging>),
    /// The lease mode: waiting for Redis to grant units of the request's counter.
    Leasing(Box<Leasing>),
    /// Waiting for the Redis store to read the usage endpoint's counters.
    Viewing(Box<Viewing>),
    /// Waiting for the Redis store to add a grant.
    Granting(Box<Granting>),
    /// Waiting for the Redis store to set or clear a member cap.
    Capping(Box<Capping>),
    /// Admitted: its headers go on the upstream's response, which may
    /// correct the charge (or be a busy answer the filter replaces).
    Admitted(Box<Admitted>),
    /// The upstream answered busy: its body is being replaced.
    Busy(Box<super::response::Replacing>),
    /// Answered locally; the reply carries its own headers.
    Replied,
}

impl Phase {
    pub(super) fn waiting_for_store(&self) -> bool {
        matches!(
            self,
            Phase::Charging(_) | Phase::Leasing(_) | Phase::Granting(_) | Phase::Capping(_) | Phase::Viewing(_)
        )
    }
}

/// An admitted request, as its response finds it.
#[derive(Debug)]
pub(super) struct Admitted {
    /// The headers the upstream's response gets.
    pub(super) headers: Headers,
    /// What the response may still correct (`None`: it charged no counter).
    pub(super) charged: Option<Charged>,
    /// The decision and the caller, for a busy answer (its copy, its event).
    pub(super) decision: Decision,
    pub(super) caller: Caller,
    /// The format of the filter's answers to this request.
    pub(super) format: BodyFormat,
}

/// A request as the decision needs it.
#[derive(Debug)]
pub(super) struct Pending {
    /// Headers without the client's `x-quota-*` copies.
    head: RequestHead,
    /// The client sent the confirmation header (read before it was stripped).
    confirmed: bool,
}

impl Pending {
    /// The format of the filter's answers to this request: what `Accept`
    /// asks for, else the JSON envelope of the class (when known) or of the
    /// API the request speaks.
    fn format(&self, config: &Config, class: Option<ClassId>) -> BodyFormat {
        let format = class.and_then(|c| config.class(c)).map_or(ErrorFormat::Auto, |c| c.error_format);
        negotiate_for(self.head.header_str("accept"), format, || {
            speaks_anthropic(self.head.path(), self.head.header(ANTHROPIC_VERSION).is_some())
        })
    }
}

/// The request body as a rewrite needs it.
#[derive(Debug)]
pub(super) struct Source {
    /// Its length: what a rewrite replaces.
    len: usize,
    /// The body and where its rewritable members lie, when it was read in
    /// part ([`read_body_keys`]) and the config may rewrite it.
    spliceable: Option<(Vec<u8>, Spans)>,
}

/// A request paused while Redis charges it.
#[derive(Debug)]
pub(super) struct Charging {
    request: Pending,
    caller: Caller,
    /// The request body's length, when the filter read it (for a rewrite).
    source: Option<Source>,
    json: Option<Value>,
    ticket: Ticket,
    call: Call,
    /// The charge's id: what cancels it if its answer is not used.
    charge_id: String,
}

impl Charging {
    /// Queues the cancel of this charge, one per counter it charges (a
    /// stacked cell's every counter): Redis gives each counter's units back
    /// if the charge ran, once, and charges nothing if it has not run yet.
    pub(super) fn cancel(&self, host: &mut dyn Host, why: &str) {
        let keys = redis::stack::keys(&self.ticket);
        host.note(Note::Log {
            level: Level::Info,
            line: format!("quota: cancelling charge {} of {}: {why}", self.charge_id, keys.join(", ")),
        });
        for key in keys {
            host.note(Note::Cancel { key: key.to_string(), id: self.charge_id.clone() });
        }
    }
}

/// A request paused while Redis grants units of its counter (the lease mode).
#[derive(Debug)]
pub(super) struct Leasing {
    request: Pending,
    caller: Caller,
    source: Option<Source>,
    json: Option<Value>,
    ticket: Ticket,
    call: Call,
    /// When the call left (Unix ms): the block granted may be spent for the
    /// lease's lifetime from then.
    sent_ms: i64,
}

/// The usage endpoint, paused while Redis reads the caller's counters (one
/// call per hash tag: per scope).
#[derive(Debug)]
pub(super) struct Viewing {
    caller: Caller,
    /// The counters of each call still out, by call number.
    waiting: HashMap<usize, Vec<String>>,
    /// Each counter read, by key: its record, or why it could not be read.
    read: HashMap<String, Result<Option<Counter>, String>>,
}

/// The grants endpoint, paused while Redis adds the grant.
#[derive(Debug)]
pub(super) struct Granting {
    grant: admin::GrantRequest,
    call: Call,
}

/// The admin endpoint, paused while Redis sets or clears a member cap.
#[derive(Debug)]
pub(super) struct Capping {
    cap: admin::CapRequest,
    call: Call,
}

/// Why a call gave no answer, and whether the script may have run all the same.
struct Unanswered {
    why: String,
    may_have_run: bool,
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

    fn set(&self, _key: &str, _value: &[u8], _expect: Expect) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("read only".into()))
    }
}

/// A request body the filter decides with: its bytes (when read), or that
/// it is past `max_body_bytes`.
struct BodyIn {
    bytes: Option<Vec<u8>>,
    too_large: bool,
}

impl Exchange {
    /// The request head: its headers as the client sent them (names as
    /// Envoy passes them: valid ASCII), and whether the request ends here.
    pub fn request_head(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        headers: Vec<(String, Vec<u8>)>,
        end_of_stream: bool,
    ) -> Step {
        // Only the filter speaks x-quota-*: a client's copies never reach the upstream.
        let mut strip = Edits::default();
        for (name, _) in headers.iter().filter(|(n, _)| is_quota_header(n)) {
            if !strip.remove.contains(name) {
                strip.remove.push(name.clone());
            }
        }
        let confirmed =
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(CONFIRM_HEADER)).is_some_and(|(_, v)| is_yes(v));
        let head = RequestHead::new(headers.into_iter().filter(|(n, _)| !is_quota_header(n)).collect());
        let request = Pending { head, confirmed };
        self.route(config, host, request, end_of_stream).with(strip)
    }

    fn route(&mut self, config: &Config, host: &mut dyn Host, request: Pending, end_of_stream: bool) -> Step {
        let path = request.head.path();
        if config.usage_endpoint.as_deref() == Some(path) {
            return self.usage_endpoint(config, host, &request);
        }
        if config.admin.as_ref().is_some_and(|a| a.path == path) {
            if request.head.method() != "POST" || !admin::authorized(config, request.head.header("authorization")) {
                // Say nothing about the endpoint to a caller without the secret.
                return self.reply(not_found());
            }
            let query = request.head.header_str(":path").and_then(|p| p.split_once('?')).map_or("", |(_, q)| q);
            return self.admin_grant(config, host, query);
        }
        let classified = classify_head(config, &request.head);
        if classified != HeadMatch::Unclassified && config.observability.keeps_ledger() {
            // Decided in this callback, the decision's time is the arrival's;
            // a body read first is a later callback.
            let waits = classified == HeadMatch::NeedsBody && !end_of_stream;
            let arrived_ms = waits.then(|| host.now_ms());
            self.ledger = Some(Box::new(Entry::new(&request.head, arrived_ms)));
        }
        match classified {
            HeadMatch::Unclassified => Step::new(Next::Continue),
            HeadMatch::Class(class) => self.decide(config, host, request, class, None, (None, None), None),
            HeadMatch::NeedsBody if end_of_stream => {
                self.decide_with_body(config, host, request, BodyIn { bytes: None, too_large: false })
            }
            HeadMatch::NeedsBody => {
                if buffering::at_head(&request.head, config.max_body_bytes) == AtHead::TooLarge {
                    // Its length is already over the cap: hold none of it
                    // (Envoy answers 413 itself if a paused body outgrows its buffer).
                    return self.decide_with_body(config, host, request, BodyIn { bytes: None, too_large: true });
                }
                self.phase = Phase::AwaitingBody(request);
                let mut edits = Edits::default();
                if config.may_rewrite_body() && !config.hold_headers_for_body {
                    // The headers go on before the body is read, and a rewritten
                    // body has another length: let Envoy frame it (chunked).
                    // Held headers get the new length when there is one.
                    edits.remove.push("content-length".into());
                }
                // Pausing headers stops Envoy from delivering the body unless the
                // plugin sets allow_on_headers_stop_iteration; without it, the
                // headers go on and the body is held back instead.
                let next = if config.hold_headers_for_body { Next::Pause } else { Next::Continue };
                Step { edits, next }
            }
        }
    }

    /// A request body chunk arrived; `buffered` is all the host holds for
    /// this stream, the chunk included.
    pub fn request_body(&mut self, config: &Config, host: &mut dyn Host, buffered: usize, end_of_stream: bool) -> Step {
        match &self.phase {
            Phase::AwaitingBody(_) => match buffering::after_chunk(buffered, end_of_stream, config.max_body_bytes) {
                Chunk::Hold => Step::new(Next::Pause),
                // Too large to inspect: hold no more; `unreadable_body` decides.
                Chunk::TooLarge => self.body_in(config, host, BodyIn { bytes: None, too_large: true }),
                Chunk::Read => self.read_body(buffered),
            },
            _ => self.as_it_stands(),
        }
    }

    /// The request's trailers arrived: the body is complete.
    pub fn request_trailers(&mut self, config: &Config) -> Step {
        match &self.phase {
            Phase::AwaitingBody(_) => self.read_body(config.max_body_bytes),
            _ => self.as_it_stands(),
        }
    }

    /// An event with nothing left to decide: a request answered here goes
    /// no further, one waiting for Redis stays held (going on would let held
    /// headers go on too, before Redis answered), any other goes on.
    fn as_it_stands(&self) -> Step {
        match &self.phase {
            Phase::Replied => Step::new(Next::Pause),
            phase if phase.waiting_for_store() => Step::new(Next::Pause),
            _ => Step::new(Next::Continue),
        }
    }

    fn read_body(&mut self, size: usize) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Pass) {
            Phase::AwaitingBody(request) => {
                self.phase = Phase::ReadingBody(request, size);
                Step::new(Next::ReadBody(size))
            }
            other => {
                self.phase = other;
                self.as_it_stands()
            }
        }
    }

    /// The body the exchange asked for ([`Next::ReadBody`]); `None`: the host holds none.
    pub fn body_read(&mut self, config: &Config, host: &mut dyn Host, body: Option<Vec<u8>>) -> Step {
        self.body_in(config, host, BodyIn { bytes: body, too_large: false })
    }

    /// The host would not hand over the body the exchange asked for: a body
    /// the filter could not read (unless it was empty).
    pub fn body_unreadable(&mut self, config: &Config, host: &mut dyn Host) -> Step {
        let asked = match &self.phase {
            Phase::ReadingBody(_, size) => *size,
            _ => 0,
        };
        self.body_in(config, host, BodyIn { bytes: None, too_large: asked > 0 })
    }

    fn body_in(&mut self, config: &Config, host: &mut dyn Host, body: BodyIn) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Pass) {
            Phase::AwaitingBody(request) | Phase::ReadingBody(request, _) => {
                self.decide_with_body(config, host, request, body)
            }
            other => {
                self.phase = other;
                self.as_it_stands()
            }
        }
    }

    /// Classifies with the body (or without it: too large, or none) and
    /// decides. A body the filter cannot read never makes a request cheaper:
    /// `unreadable_body` refuses it or charges the strictest class.
    fn decide_with_body(&mut self, config: &Config, host: &mut dyn Host, request: Pending, body: BodyIn) -> Step {
        let (read, spans) = read_body_keys(body.bytes.as_deref(), body.too_large, &config.body_keys);
        let (class, cost) = match classify_body(config, &request.head, &read) {
            BodyVerdict::Class(None) => return Step::new(Next::Continue),
            BodyVerdict::Class(Some(class)) => (class, None),
            BodyVerdict::Refuse(why) => {
                let caller = host.identify(config, &request.head).ok();
                host.note(Note::BodyRefused { caller: caller.as_ref(), why: &why });
                return self.reply(refuse_body(config, &why, request.format(config, None)));
            }
            BodyVerdict::Strictest => {
                let caller = match host.identify(config, &request.head) {
                    Ok(c) => c,
                    Err(e) => return self.refuse_identity(config, host, &request, None, &e),
                };
                let Some(s) = strictest(config, &request.head, caller.tier) else { return Step::new(Next::Continue) };
                (s.class(), Some(units::bounded(s.cost())))
            }
        };
        // A request charged at the strictest cost is never rewritten.
        let (bytes, json) = match cost {
            Some(_) => (None, (None, None)),
            None => (body.bytes, (read.into_json(), spans)),
        };
        self.decide(config, host, request, class, bytes.as_deref(), json, cost)
    }
}

/// A confirmation header says yes unless it says no.
pub fn is_yes(value: &[u8]) -> bool {
    let v = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
    !v.is_empty() && !matches!(v.as_str(), "no" | "false" | "0")
}

fn not_found() -> LocalReply {
    LocalReply { status: 404, headers: vec![("content-type", "text/plain".into())], body: "not found\n".into() }
}

impl Exchange {
    /// Charges the request to its class and carries out the decision.
    /// `body` and its parse `json` are there when the filter read the body;
    /// `cost` is set when the cost is already known (`unreadable_body: strictest`).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        request: Pending,
        class: ClassId,
        body: Option<&[u8]>,
        (json, spans): (Option<Value>, Option<Spans>),
        cost: Option<u64>,
    ) -> Step {
        let caller = match host.identify(config, &request.head) {
            Ok(c) => c,
            Err(e) => return self.refuse_identity(config, host, &request, Some(class), &e),
        };
        let cost = cost.unwrap_or_else(|| request_cost(config, class, Body { bytes: body, json: json.as_ref() }));
        // The body is kept for a rewrite only when one may edit its bytes.
        let source = body.map(|b| Source {
            len: b.len(),
            spliceable: spans.filter(|_| config.may_rewrite_body()).map(|s| (b.to_vec(), s)),
        });
        let now_ms = host.now_ms();
        if config.counters.lease().is_some() {
            let ticket = match engine::prepare(config, &caller, class, cost, request.confirmed, now_ms) {
                Prepared::Decided(decision) => {
                    return self.carry_out(config, host, &request, caller, source, json, decision)
                }
                Prepared::Charge(ticket) => ticket,
            };
            let leasing = Leasing { request, caller, source, json, ticket, call: Call::default(), sent_ms: now_ms };
            return self.admit_leased(config, host, Box::new(leasing), false);
        }
        if config.counters.exact_redis().is_none() {
            let decision = {
                let counters = config.counters.table(host.shared_data(), now_ms);
                charge(config, &caller, class, cost, request.confirmed, now_ms, &counters)
            };
            return self.carry_out(config, host, &request, caller, source, json, decision);
        }
        let ticket = match engine::prepare(config, &caller, class, cost, request.confirmed, now_ms) {
            Prepared::Decided(decision) => {
                return self.carry_out(config, host, &request, caller, source, json, decision)
            }
            Prepared::Charge(ticket) => ticket,
        };
        let charge_id = host.charge_id();
        // One call: a `charge`, or a stacked cell's `charge_stack` of every counter.
        let Some(command) = redis::stack::command(config, &ticket, &charge_id) else {
            return Step::new(Next::Continue);
        };
        let call = Call { n: 0, command, load: !host.script_cached() };
        self.phase = Phase::Charging(Box::new(Charging {
            request,
            caller,
            source,
            json,
            ticket,
            call: call.clone(),
            charge_id,
        }));
        Step::new(Next::Call(vec![call]))
    }

    /// Reports and carries out a decision: forwards the request with its
    /// headers and any rewrite, or answers it.
    #[allow(clippy::too_many_arguments)]
    fn carry_out(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        request: &Pending,
        caller: Caller,
        source: Option<Source>,
        mut json: Option<Value>,
        decision: Decision,
    ) -> Step {
        host.note(Note::Decided { caller: &caller, decision: &decision });
        if let Some(entry) = &mut self.ledger {
            entry.decided(config, &caller, json.as_ref(), &decision, request.confirmed);
        }
        let sync = SyncTarget::of(config, &decision, &caller);
        if let (Some(target), Outcome::Charged(c)) = (&sync, &decision.outcome) {
            host.note(Note::Sync { target, delta: i64::try_from(c.cost).unwrap_or(i64::MAX) });
        }
        let format = request.format(config, Some(decision.class));
        let headers = match respond(config, &decision, format) {
            Action::Continue(headers) => headers,
            Action::Reply(reply) => {
                if let Some(entry) = &mut self.ledger {
                    entry.replied(reply.status);
                }
                return self.reply(reply);
            }
        };
        let rewrites = admission::rewrites(config, &decision, json.as_ref());
        if let Some(entry) = &mut self.ledger {
            entry.forwarded(rewrites.model.as_deref());
        }
        let mut edits = Edits {
            set: rewrites.headers.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
            // Let a route that matches the header pick the request up.
            clear_route_cache: rewrites.clear_route_cache,
            ..Edits::default()
        };
        let rewritten = json.as_mut().is_some_and(|j| rewrites.apply_to_body(j));
        if let (true, Some(j), Some(source)) = (rewritten, &json, &source) {
            // A body read in part is edited where the rewrite changes it;
            // one read whole is written again from its parse.
            let bytes = match &source.spliceable {
                Some((original, spans)) => spans.splice(original, j),
                None => Some(j.to_string().into_bytes()),
            };
            // Held headers have not left yet: they carry the new length.
            edits.body = bytes.map(|bytes| Rewrite {
                replaces: source.len,
                bytes,
                set_content_length: config.hold_headers_for_body,
            });
        }
        let charged = Charged::new(config, &decision, json.as_ref(), sync);
        self.phase = Phase::Admitted(Box::new(Admitted { headers, charged, decision, caller, format }));
        Step { edits, next: Next::Continue }
    }

    fn refuse_identity(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        request: &Pending,
        class: Option<ClassId>,
        err: &IdentityError,
    ) -> Step {
        host.note(Note::IdentityRefused(err));
        self.reply(refuse_identity(config, err, request.format(config, class)))
    }

    fn reply(&mut self, reply: LocalReply) -> Step {
        self.phase = Phase::Replied;
        Step::new(Next::Reply(reply))
    }

    fn usage_endpoint(&mut self, config: &Config, host: &mut dyn Host, request: &Pending) -> Step {
        if !matches!(request.head.method(), "GET" | "HEAD") {
            return self.reply(method_not_allowed());
        }
        let caller = match host.identify(config, &request.head) {
            Ok(caller) => caller,
            Err(e) => return self.refuse_identity(config, host, request, None, &e),
        };
        // Reads are free, not unbounded: past the caller's or this worker's budget, 429.
        let now_ms = host.now_ms();
        if let UsageRead::Limited { retry_after_s, .. } = host.usage_read(&caller, now_ms) {
            host.note(Note::UsageLimited);
            return self.reply(limited_reply(retry_after_s));
        }
        if config.counters.exact_redis().is_none() {
            let reply = usage_reply(config, &caller, now_ms, &config.counters.table(host.shared_data(), now_ms));
            return self.reply(reply);
        }
        // Read every counter of the caller's plan from Redis, then answer: one
        // call per hash tag (the caller's counters, and their workspace's).
        let load = !host.script_cached();
        let mut viewing = Viewing { caller, waiting: HashMap::new(), read: HashMap::new() };
        let mut calls = Vec::new();
        // Member caps too: each in its workspace's slot, read with the pool's counters.
        let mut keys = engine::store_keys(config, &viewing.caller);
        keys.extend(crate::member_cap::keys_of(config, &viewing.caller));
        for (n, keys) in by_slot(keys).into_iter().enumerate() {
            calls.push(Call { n, command: Command::view(keys.clone()), load });
            viewing.waiting.insert(n, keys);
        }
        if calls.is_empty() {
            return self.reply(usage_reply(config, &viewing.caller, now_ms, &Prefetched(&viewing.read)));
        }
        self.phase = Phase::Viewing(Box::new(viewing));
        Step::new(Next::Call(calls))
    }

    /// Adds grant units, or sets or clears a member cap (the admin
    /// endpoint's query): at once in shared data, else by a call to Redis.
    fn admin_grant(&mut self, config: &Config, host: &mut dyn Host, query: &str) -> Step {
        let grant = match admin::parse_admin(config, query) {
            Ok(admin::AdminRequest::Grant(g)) => g,
            Ok(admin::AdminRequest::MemberCap(cap)) if config.counters.exact_redis().is_none() => {
                let now_ms = host.now_ms();
                let counters = config.counters.table(host.shared_data(), now_ms);
                let result = crate::member_cap::write(config, &counters, &cap.key, cap.cap);
                return self.reply(capped(config, host, &cap, result.map_err(|e| e.to_string())));
            }
            Ok(admin::AdminRequest::MemberCap(cap)) => {
                // Kept in Redis beside the counters it caps (member_cap::redis_key).
                let command = Command::cap(cap.key.clone(), cap.cap);
                let call = Call { n: 0, command, load: !host.script_cached() };
                self.phase = Phase::Capping(Box::new(Capping { cap, call: call.clone() }));
                return Step::new(Next::Call(vec![call]));
            }
            Err(why) => {
                let doc = json!({ "error": { "message": why, "type": "invalid_request_error", "code": "bad_grant" } });
                return self.reply(json_reply(400, &doc));
            }
        };
        if config.counters.exact_redis().is_none() {
            let now_ms = host.now_ms();
            let counters = config.counters.table(host.shared_data(), now_ms);
            let result = engine::grant(config, &grant.key, grant.units, &counters).map_err(|e| e.to_string());
            return self.reply(granted(config, host, &grant, result));
        }
        let call = Call { n: 0, command: Command::grant(grant.key.clone(), grant.units), load: !host.script_cached() };
        self.phase = Phase::Granting(Box::new(Granting { grant, call: call.clone() }));
        Step::new(Next::Call(vec![call]))
    }

    /// The Redis store answered call `n`: the HTTP `status` of its front
    /// (`None`: no answer: a failure or a timeout) and the body.
    pub fn answered(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        n: usize,
        status: Option<u16>,
        body: &[u8],
    ) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Pass) {
            Phase::Charging(mut waiting) if waiting.call.n == n => {
                let counters = waiting.ticket.stack.len().max(1);
                let capped = waiting.call.command.member_cap_key().is_some();
                let parse = |s, b: &[u8]| redis::parse_stack(s, b, counters, capped);
                match answer_of(host, &mut waiting.call, status, body, parse) {
                    None => {
                        let again = waiting.call.clone();
                        self.phase = Phase::Charging(waiting);
                        Step::new(Next::Call(vec![again]))
                    }
                    Some(stored) => self.charged_by_redis(config, host, waiting, stored),
                }
            }
            Phase::Leasing(mut waiting) if waiting.call.n == n => {
                match answer_of(host, &mut waiting.call, status, body, redis::parse_lease) {
                    None => {
                        let again = waiting.call.clone();
                        self.phase = Phase::Leasing(waiting);
                        Step::new(Next::Call(vec![again]))
                    }
                    Some(answer) => self.leased(config, host, waiting, answer),
                }
            }
            Phase::Granting(mut waiting) if waiting.call.n == n => {
                match answer_of(host, &mut waiting.call, status, body, redis::parse) {
                    None => {
                        let again = waiting.call.clone();
                        self.phase = Phase::Granting(waiting);
                        Step::new(Next::Call(vec![again]))
                    }
                    Some(result) => {
                        let result = result.map(|answer| answer.after.map_or(0, |c| c.grant)).map_err(|e| e.why);
                        self.reply(granted(config, host, &waiting.grant, result))
                    }
                }
            }
            Phase::Capping(mut waiting) if waiting.call.n == n => {
                match answer_of(host, &mut waiting.call, status, body, redis::parse) {
                    None => {
                        let again = waiting.call.clone();
                        self.phase = Phase::Capping(waiting);
                        Step::new(Next::Call(vec![again]))
                    }
                    Some(result) => {
                        let result = result.map_err(|e| e.why).and_then(|answer| {
                            let held = crate::member_cap::of_record(answer.after);
                            if held == waiting.cap.cap {
                                Ok(())
                            } else {
                                let held = held.map_or_else(|| "none".to_string(), |c| c.to_string());
                                Err(format!("Redis holds a cap of {held} after the call"))
                            }
                        });
                        self.reply(capped(config, host, &waiting.cap, result))
                    }
                }
            }
            Phase::Viewing(mut viewing) => {
                if let Some(keys) = viewing.waiting.remove(&n) {
                    let read = match redis::parse_view(status, body, keys.len()) {
                        Ok(records) => {
                            host.note(Note::Script { cached: true });
                            Ok(records)
                        }
                        Err(CallError::NoScript) => {
                            // The meter shows "unavailable" this once; the next call sends the script.
                            host.note(Note::Script { cached: false });
                            Err(CallError::NoScript.why())
                        }
                        Err(e) => Err(e.why()),
                    };
                    viewing_read(host, &mut viewing, keys, read);
                }
                self.finish_viewing(config, host, viewing)
            }
            other => {
                self.phase = other;
                Step::new(Next::Pause)
            }
        }
    }

    /// Call `n` could not be sent (`why`): as an answer that never came,
    /// from a script that never ran.
    pub fn not_sent(&mut self, config: &Config, host: &mut dyn Host, n: usize, why: String) -> Step {
        let ours = match &self.phase {
            Phase::Charging(w) => w.call.n == n,
            Phase::Leasing(w) => w.call.n == n,
            Phase::Granting(w) => w.call.n == n,
            Phase::Capping(w) => w.call.n == n,
            Phase::Viewing(v) => v.waiting.contains_key(&n),
            _ => false,
        };
        if !ours {
            return self.as_it_stands();
        }
        host.note(Note::StoreError(&why));
        let unanswered = Unanswered { why, may_have_run: false };
        match std::mem::replace(&mut self.phase, Phase::Pass) {
            Phase::Charging(waiting) if waiting.call.n == n => {
                self.charged_by_redis(config, host, waiting, Err(unanswered))
            }
            Phase::Leasing(waiting) if waiting.call.n == n => self.leased(config, host, waiting, Err(unanswered)),
            Phase::Granting(waiting) if waiting.call.n == n => {
                self.reply(granted(config, host, &waiting.grant, Err(unanswered.why)))
            }
            Phase::Capping(waiting) if waiting.call.n == n => {
                self.reply(capped(config, host, &waiting.cap, Err(unanswered.why)))
            }
            Phase::Viewing(mut viewing) => {
                if let Some(keys) = viewing.waiting.remove(&n) {
                    for key in keys {
                        viewing.read.insert(key, Err(unanswered.why.clone()));
                    }
                }
                self.finish_viewing(config, host, viewing)
            }
            other => {
                self.phase = other;
                Step::new(Next::Pause)
            }
        }
    }

    /// Redis answered (or failed to answer) a paused request's charge.
    fn charged_by_redis(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        waiting: Box<Charging>,
        stored: Result<StackAnswer, Unanswered>,
    ) -> Step {
        if let (Err(e), FailPolicy::Closed) = (&stored, config.counters.on_error) {
            if e.may_have_run {
                // Refused for want of an answer: a charge that ran all the same is taken back.
                waiting.cancel(host, "its answer never came");
            }
        }
        let answered = stored.map_err(|e| GiveUp::Unavailable(e.why));
        let settled = redis::stack::settle(config, waiting.ticket.clone(), answered);
        for m in &settled.mismatches {
            host.note(Note::Mismatch { key: &m.key, script: m.script, core: m.core });
        }
        let decision = settled.decision;
        let Charging { request, caller, source, json, .. } = *waiting;
        self.carry_out(config, host, &request, caller, source, json, decision)
    }

    /// The lease mode: decides the request on this Envoy's share of its
    /// counter, or (unless Redis answered already: `last_try`) asks Redis
    /// for the units it lacks.
    fn admit_leased(&mut self, config: &Config, host: &mut dyn Host, mut w: Box<Leasing>, last_try: bool) -> Step {
        let admit = {
            let counters = config.counters.table(host.shared_data(), w.ticket.now_ms);
            lease::admit(config, &w.ticket, &counters, last_try)
        };
        let need = match admit {
            Admit::Decided { decision, renew } => {
                if renew {
                    host.note(Note::Renew(LeaseTarget::of(&w.ticket)));
                }
                let Leasing { request, caller, source, json, .. } = *w;
                return self.carry_out(config, host, &request, caller, source, json, *decision);
            }
            Admit::Needs { need } => need,
        };
        let now_ms = host.now_ms();
        let share = {
            let counters = config.counters.table(host.shared_data(), now_ms);
            counters.get(&w.ticket.key).ok().flatten().and_then(|(bytes, _)| LeaseRecord::decode(&bytes))
        };
        let command = engine::limits_of(config, &w.ticket).and_then(|limits| {
            lease::command(config, &w.ticket.key, limits, share.as_ref(), need, 0, now_ms, w.ticket.alignment, None)
        });
        let Some(command) = command else { return Step::new(Next::Continue) };
        w.call = Call { n: w.call.n + 1, command, load: !host.script_cached() };
        w.sent_ms = now_ms;
        let call = w.call.clone();
        self.phase = Phase::Leasing(w);
        Step::new(Next::Call(vec![call]))
    }

    /// Redis answered (or failed to answer) a lease call: its units join
    /// this Envoy's share and the request is decided on it; without an
    /// answer, the fail policy decides.
    fn leased(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        w: Box<Leasing>,
        answer: Result<LeaseAnswer, Unanswered>,
    ) -> Step {
        match answer {
            Ok(answer) => {
                let now_ms = host.now_ms();
                let merged = engine::limits_of(config, &w.ticket).map(|limits| {
                    let counters = config.counters.table(host.shared_data(), now_ms);
                    lease::merge(
                        config,
                        &w.ticket.key,
                        limits,
                        w.ticket.alignment,
                        &answer,
                        w.sent_ms,
                        &counters,
                        now_ms,
                    )
                });
                if let Some(Err(e)) = merged {
                    host.note(Note::Log {
                        level: Level::Warn,
                        line: format!("quota: could not keep the units Redis granted for {}: {e}", w.ticket.key),
                    });
                }
                host.note(Note::Leased(LeaseTarget::of(&w.ticket)));
                self.admit_leased(config, host, w, true)
            }
            Err(e) => {
                let decision = engine::settle(config, w.ticket.clone(), Err(GiveUp::Unavailable(e.why))).0;
                let Leasing { request, caller, source, json, .. } = *w;
                self.carry_out(config, host, &request, caller, source, json, decision)
            }
        }
    }

    /// Answers the usage endpoint once every counter is read.
    fn finish_viewing(&mut self, config: &Config, host: &mut dyn Host, viewing: Box<Viewing>) -> Step {
        if !viewing.waiting.is_empty() {
            self.phase = Phase::Viewing(viewing);
            return Step::new(Next::Pause);
        }
        let now_ms = host.now_ms();
        self.reply(usage_reply(config, &viewing.caller, now_ms, &Prefetched(&viewing.read)))
    }
}

/// Records what one view call read (or why it read nothing) for each of its keys.
fn viewing_read(
    host: &mut dyn Host,
    viewing: &mut Viewing,
    keys: Vec<String>,
    read: Result<Vec<Option<Counter>>, String>,
) {
    match read {
        Ok(records) => viewing.read.extend(keys.into_iter().zip(records.into_iter().map(Ok))),
        Err(why) => {
            host.note(Note::StoreError(&why));
            viewing.read.extend(keys.into_iter().map(|key| (key, Err(why.clone()))));
        }
    }
}

/// The answer to `call`, read with `parse`: `None` when Redis had lost the
/// script and the call must go again carrying it (marked so). An error says
/// why, and whether the script may have run all the same (only a NOSCRIPT
/// says it did not).
fn answer_of<T>(
    host: &mut dyn Host,
    call: &mut Call,
    status: Option<u16>,
    body: &[u8],
    parse: impl FnOnce(Option<u16>, &[u8]) -> Result<T, CallError>,
) -> Option<Result<T, Unanswered>> {
    let unanswered = match parse(status, body) {
        Ok(answer) => {
            host.note(Note::Script { cached: true });
            return Some(Ok(answer));
        }
        Err(CallError::NoScript) if !call.load => {
            // Redis lost its script cache (a restart): send the script itself once.
            host.note(Note::Script { cached: false });
            call.load = true;
            return None;
        }
        Err(CallError::NoScript) => {
            Unanswered { why: "NOSCRIPT after sending the script".to_string(), may_have_run: false }
        }
        Err(e) => Unanswered { why: e.why(), may_have_run: e.may_have_run() },
    };
    host.note(Note::StoreError(&unanswered.why));
    Some(Err(unanswered))
}

fn json_reply(status: u16, doc: &Value) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
        body: doc.to_string(),
    }
}

/// The member cap's answer: the cap as set, or why the store gave up.
fn capped(config: &Config, host: &mut dyn Host, c: &admin::CapRequest, result: Result<(), String>) -> LocalReply {
    let class = config.class(c.class).map(|c| c.name.clone());
    match result {
        Ok(()) => {
            host.note(Note::Log {
                level: Level::Info,
                line: format!(
                    "quota: member cap of {} for {} in {}: {}",
                    class.as_deref().unwrap_or(""),
                    c.user,
                    c.workspace,
                    c.cap.map_or_else(|| "cleared".to_string(), |n| n.to_string())
                ),
            });
            json_reply(200, &json!({ "class": class, "workspace": c.workspace, "user": c.user, "cap": c.cap }))
        }
        Err(e) => json_reply(
            503,
            &json!({ "error": { "message": format!("the counter store gave up: {e}"), "type": "server_error", "code": "quota_unavailable" } }),
        ),
    }
}

/// The grants endpoint's answer: the new balance, or why the store gave up.
fn granted(config: &Config, host: &mut dyn Host, g: &admin::GrantRequest, result: Result<u64, String>) -> LocalReply {
    match result {
        Ok(balance) => {
            host.note(Note::Log {
                level: Level::Info,
                line: format!("quota: granted {} units of {} to {}", g.units, g.key, g.scope.as_str()),
            });
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
