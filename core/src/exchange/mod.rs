//! A request's journey through the filter as a value with no I/O (the
//! sans-I/O shape of `h11` or `quinn-proto`): the filter, the simulator, the
//! fuzzer and the tests feed an [`Exchange`] the events they see and carry
//! out the [`Step`] each returns.
//!
//! The events, in the order Envoy delivers them: the request head
//! ([`Exchange::request_head`]), body chunks ([`Exchange::request_body`],
//! with the bytes handed over when the exchange asks for them:
//! [`Exchange::body_read`]), trailers, the Redis store's answers
//! ([`Exchange::answered`], or [`Exchange::not_sent`] when a call could not
//! leave), the response head, response body chunks and the end of the
//! stream. The steps: edit the request (strip the client's `x-quota-*`
//! copies, set headers, rewrite the body), then go on, pause, read the
//! buffered body, reply locally, or call the store.
//!
//! What is not part of one request's path (a decision to report, a store
//! error to count, a cancel or a correction to queue for Redis, units to
//! sync, a line to log) goes to [`Host::note`], as does everything the
//! exchange asks of the worker around it (the clock, properties, shared
//! data, ids, the usage-read budgets) through [`Host`].
//!
//! - [`request`]: routing, stripping, body needs, the charge in each store,
//!   the usage and grants endpoints.
//! - [`response`]: after admission, what the upstream's answer changes about
//!   the charge (refunds, the usage it reports).
//! - `ledger`: the request's ledger entry, read once its stream is logged
//!   ([`Exchange::ledger`]).

#[cfg(test)]
mod busy_tests;
mod ledger;
#[cfg(test)]
mod ledger_tests;
pub mod memory;
pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

use crate::body::Unreadable;
use crate::config::Config;
use crate::counter::Counter;
use crate::engine::Decision;
use crate::headers::Headers;
use crate::identity::{Caller, IdentityError};
use crate::ledger::LedgerRecord;
use crate::redis::sync::SyncTarget;
use crate::redis::Command;
use crate::reply::LocalReply;
use crate::request::RequestHead;
use crate::store::CounterStore;
use crate::usage_limit::UsageRead;
use request::Phase;
use response::{Correction, Counters, Ended, Replacing, LOGGED_BODY};

/// The worker around an exchange: what it reads, and where what it reports goes.
pub trait Host {
    /// The wall clock, in Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Who sends the request: [`crate::identity::identify`] with Envoy's
    /// attributes and metadata (a simulator may name the caller itself).
    fn identify(&self, config: &Config, head: &RequestHead) -> Result<Caller, IdentityError>;
    /// This Envoy's shared data; the exchange lays the counter table over it.
    fn shared_data(&self) -> &dyn CounterStore;
    /// Takes one read from the worker's usage-endpoint budgets.
    fn usage_read(&mut self, caller: &Caller, now_ms: i64) -> UsageRead;
    /// A fresh id for a charge sent to Redis (what cancels it later).
    fn charge_id(&mut self) -> String;
    /// Whether Redis is believed to hold the script (false after a
    /// NOSCRIPT, until an answer shows it back): a call then carries it.
    fn script_cached(&self) -> bool;
    /// Something worth reporting or queueing; never changes this request's path.
    fn note(&mut self, note: Note<'_>);
}

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// What an exchange reports to its host.
#[derive(Debug)]
pub enum Note<'a> {
    /// A classified request was decided (admitted or refused).
    Decided { caller: &'a Caller, decision: &'a Decision },
    /// The request's identity could not be read (refused).
    IdentityRefused(&'a IdentityError),
    /// The request's body could not be read and `unreadable_body` refused it.
    BodyRefused { caller: Option<&'a Caller>, why: &'a Unreadable },
    /// A usage read over its budget (refused with 429).
    UsageLimited,
    /// A call to Redis gave no usable answer.
    StoreError(&'a str),
    /// Redis answered a call: whether it held the script.
    Script { cached: bool },
    /// The Redis script wrote another record than the core decided on.
    Mismatch { key: &'a str, script: Option<Counter>, core: Option<Counter> },
    /// The approximate mode: `delta` units charged or corrected here, for the sync.
    Sync { target: &'a SyncTarget, delta: i64 },
    /// The exact mode: a correction for the root context to send Redis
    /// (it outlives the stream).
    Adjust { key: String, window_start: i64, delta: i64, most: u64 },
    /// The lease mode: this request took the turn to ask Redis for the
    /// counter's next block ahead of need (the root sends it).
    Renew(LeaseTarget),
    /// The lease mode: Redis granted units of this counter to this Envoy
    /// (the root gives back what stays unspent past the block's lifetime).
    Leased(LeaseTarget),
    /// The exact mode: a charge whose answer will not be used, to take back
    /// by its id (Redis gives its units back if it ran, once).
    Cancel { key: String, id: String },
    /// A line for the log.
    Log { level: Level, line: String },
    /// The upstream answered an admitted request busy (its `status`): the
    /// charge went back and the filter's busy answer replaces the upstream's.
    UpstreamBusy { caller: &'a Caller, decision: &'a Decision, status: u16 },
}

/// The response head as the exchange reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHead<'a> {
    /// `None`: unreadable.
    pub status: Option<u16>,
    /// Asked for only when [`Exchange::reads_response_body`].
    pub content_type: Option<&'a [u8]>,
    /// The upstream's `Retry-After`, asked for only when the status may be
    /// busy ([`Exchange::reads_response_head`]).
    pub retry_after: Option<&'a [u8]>,
    /// Envoy's response flags ([`crate::refund::flags`]).
    pub flags: u64,
}

/// What the filter does with the response's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStep {
    /// Put [`Exchange::response_headers`] on it (when admitted) and let it go on.
    Continue,
    /// The upstream is busy: its answer is replaced by the filter's. The
    /// status stays the upstream's; `reply.headers` go on the response
    /// (replacing the upstream's copies), [`BUSY_REMOVED`] come off, and the
    /// body chunks are replaced ([`Exchange::replace_response_chunk`]).
    /// `reply.body` is the body that replaces the upstream's.
    Busy(LocalReply),
}

/// The upstream's headers a busy answer takes off: they described the
/// body it replaces (its length, its encoding).
pub const BUSY_REMOVED: [&str; 4] = ["content-length", "content-encoding", "content-md5", "etag"];

/// What the filter does after an event: edit the request, then go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub edits: Edits,
    pub next: Next,
}

impl Step {
    fn new(next: Next) -> Step {
        Step { edits: Edits::default(), next }
    }

    fn with(mut self, edits: Edits) -> Step {
        let mut first = edits;
        first.remove.append(&mut self.edits.remove);
        first.set.append(&mut self.edits.set);
        first.clear_route_cache |= self.edits.clear_route_cache;
        first.body = self.edits.body.take().or(first.body);
        self.edits = first;
        self
    }
}

/// Changes to the request before it goes on, applied in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Request headers to remove.
    pub remove: Vec<String>,
    /// Request headers to set (replacing any value).
    pub set: Vec<(String, String)>,
    /// Have Envoy pick the route again: a header a route matches changed.
    pub clear_route_cache: bool,
    /// The request body's new bytes.
    pub body: Option<Rewrite>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self == &Edits::default()
    }
}

/// A rewritten request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// How many bytes of the buffered body the new bytes replace (all that was read).
    pub replaces: usize,
    pub bytes: Vec<u8>,
    /// The headers are still held: once the body is replaced, set
    /// `content-length` to the new length (the upstream gets a body framed as
    /// the client framed it).
    pub set_content_length: bool,
}

/// What happens to the request next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Let it go on (resume it, if it was paused).
    Continue,
    /// Hold it until a later event.
    Pause,
    /// Read this many bytes of the buffered request body and hand them to
    /// [`Exchange::body_read`] (or call [`Exchange::body_unreadable`]).
    ReadBody(usize),
    /// Answer it here; it goes no further.
    Reply(LocalReply),
    /// Send these calls to the Redis store and hold the request; each
    /// answer goes to [`Exchange::answered`] by the call's number.
    Call(Vec<Call>),
}

/// A counter this Envoy holds a share of in the lease mode: what a call
/// about it needs besides the share itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTarget {
    pub key: String,
    pub tier: crate::config::TierId,
    pub class: crate::config::ClassId,
    pub alignment: crate::window::Alignment,
}

impl LeaseTarget {
    pub fn of(ticket: &crate::engine::Ticket) -> LeaseTarget {
        LeaseTarget { key: ticket.key.clone(), tier: ticket.tier, class: ticket.class, alignment: ticket.alignment }
    }

    /// The limits of its counter (`None`: the cell is gone, a reload).
    pub fn limits<'c>(&self, config: &'c Config) -> Option<&'c crate::config::Limits> {
        config.cell(self.tier, self.class)?.limits().first()
    }
}

/// A call to the Redis store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Call {
    /// The call's number in this exchange: what its answer is handed back with.
    pub n: usize,
    pub command: Command,
    /// Send the script itself, not its hash.
    pub load: bool,
}

/// One HTTP stream's exchange with the filter.
#[derive(Debug)]
pub struct Exchange {
    phase: Phase,
    /// A classified request's ledger entry (when `observability` keeps a ledger).
    ledger: Option<Box<ledger::Entry>>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    pub fn new() -> Exchange {
        Exchange { phase: Phase::Pass, ledger: None }
    }

    /// The request is paused on a call to Redis.
    pub fn waiting_for_store(&self) -> bool {
        self.phase.waiting_for_store()
    }

    /// The headers the response gets (the request was admitted).
    pub fn response_headers(&self) -> Option<&Headers> {
        match &self.phase {
            Phase::Admitted(a) => Some(&a.headers),
            _ => None,
        }
    }

    /// Whether the response may still correct the charge (it charged a
    /// counter).
    pub fn corrects_charge(&self) -> bool {
        matches!(&self.phase, Phase::Admitted(a) if a.charged.is_some())
    }

    /// Whether the response head needs reading ([`Self::response`]): the
    /// response may correct the charge, or its `status` may be a busy
    /// answer the filter replaces.
    pub fn reads_response_head(&self, config: &Config, status: Option<u16>) -> bool {
        match &self.phase {
            Phase::Admitted(a) => a.charged.is_some() || config.upstream_busy.may_be_busy(status),
            _ => false,
        }
    }

    /// Whether the response head is wanted for the ledger (an admitted
    /// request with a ledger entry), whatever [`Self::reads_response_head`]
    /// says: read it with [`Self::response`] all the same.
    pub fn records_response(&self) -> bool {
        self.ledger.is_some() && matches!(&self.phase, Phase::Admitted(..))
    }

    /// Whether the response's content type and body chunks are wanted
    /// (a token-metered class reading the reported usage).
    pub fn reads_response_body(&self) -> bool {
        matches!(&self.phase, Phase::Admitted(a) if a.charged.as_ref().is_some_and(|c| c.reads_body()))
    }

    /// The response head: its `status` (`None`: unreadable), its
    /// `content_type` (asked for only when [`Self::reads_response_body`])
    /// and Envoy's response flags ([`Self::response`] without the upstream's
    /// `Retry-After`).
    pub fn response_head(
        &mut self,
        config: &Config,
        host: &mut dyn Host,
        status: Option<u16>,
        content_type: Option<&[u8]>,
        flags: u64,
    ) -> ResponseStep {
        self.response(config, host, ResponseHead { status, content_type, retry_after: None, flags })
    }

    /// The response head. An upstream's busy answer (see `busy.rs`) gives
    /// the charge back, whatever `refunds` says, and is replaced by the
    /// filter's own; any other head may refund or start reading the usage.
    pub fn response(&mut self, config: &Config, host: &mut dyn Host, head: ResponseHead<'_>) -> ResponseStep {
        let Phase::Admitted(a) = &mut self.phase else { return ResponseStep::Continue };
        if let Some(entry) = &mut self.ledger {
            entry.response_head(head.status, head.flags);
        }
        let busy_status = head.status.filter(|_| config.upstream_busy.is_busy(head.status, head.flags));
        let Some(status) = busy_status else {
            if let Some(c) = &mut a.charged {
                let correction = c.response_head(config, head.status, head.content_type, head.flags);
                correct(config, host, correction);
                if let Some(entry) = &mut self.ledger {
                    entry.charge(c);
                }
            }
            return ResponseStep::Continue;
        };
        if let Some(c) = &mut a.charged {
            let given_back = c.give_back();
            correct(config, host, given_back);
            if let Some(entry) = &mut self.ledger {
                entry.charge(c);
            }
        }
        if let Some(entry) = &mut self.ledger {
            entry.busy();
        }
        host.note(Note::UpstreamBusy { caller: &a.caller, decision: &a.decision, status });
        let back = a.decision.given_back(config);
        let answer = crate::reply::busy(config, &back, status, head.retry_after, a.format);
        self.phase = Phase::Busy(Box::new(Replacing { body: Some(answer.body.clone().into_bytes()), status }));
        ResponseStep::Busy(answer)
    }

    /// Whether the response's body chunks are being replaced (a busy answer).
    pub fn replaces_response_body(&self) -> bool {
        matches!(self.phase, Phase::Busy(_))
    }

    /// A body chunk of the upstream's busy answer (`start`: its first
    /// bytes, at most [`LOGGED_BODY`], for the log): the bytes that replace
    /// it. The filter's answer replaces the first chunk; every later chunk
    /// is replaced by nothing. Empty when no busy answer is being written.
    pub fn replace_response_chunk(&mut self, host: &mut dyn Host, start: &[u8]) -> Vec<u8> {
        let Phase::Busy(r) = &mut self.phase else { return Vec::new() };
        let Some(body) = r.body.take() else { return Vec::new() };
        let shown = String::from_utf8_lossy(start.get(..LOGGED_BODY).unwrap_or(start)).escape_debug().to_string();
        host.note(Note::Log {
            level: Level::Info,
            line: format!("quota: replaced the upstream's busy answer ({}), which began: {shown}", r.status),
        });
        body
    }

    /// A chunk of the response body (`end`: the last).
    pub fn response_body(&mut self, config: &Config, host: &mut dyn Host, chunk: &[u8], end: bool) {
        let Phase::Admitted(a) = &mut self.phase else { return };
        let Some(c) = &mut a.charged else { return };
        let correction = c.response_body(config, chunk, end);
        correct(config, host, correction);
        if let (true, Some(entry)) = (end, &mut self.ledger) {
            entry.charge(c);
        }
    }

    /// The stream is logged (its last event): a charge still out is
    /// cancelled; a charge whose response never came may go back.
    pub fn ended(&mut self, config: &Config, host: &mut dyn Host, ended: impl FnOnce() -> Ended) {
        self.abandon(host);
        let Phase::Admitted(a) = &mut self.phase else { return };
        // Each of `ended`'s answers is a host read: asked once, if at all.
        let mut asked = None;
        let mut ended = Some(ended);
        let mut once = || *asked.get_or_insert_with(|| ended.take().map_or(Ended::default(), |f| f()));
        if let Some(entry) = self.ledger.as_mut().filter(|e| e.needs_end()) {
            entry.ended_without_answer(once());
        }
        let Some(c) = &mut a.charged else { return };
        let correction = c.stream_end(config, once);
        correct(config, host, correction);
        if let Some(entry) = &mut self.ledger {
            entry.charge(c);
        }
    }

    /// The request's ledger record, once its stream is logged (`now`: the
    /// clock, read only for a record); `None` for a request the filter
    /// decided nothing about, and once taken.
    pub fn ledger(&mut self, now: impl FnOnce() -> i64) -> Option<LedgerRecord> {
        self.ledger.take()?.record(now)
    }

    /// The stream is gone: a charge still out is cancelled (its answer, if
    /// it comes, finds no stream; the request never reached the upstream);
    /// a usage read or a grant still out is no longer waited for.
    pub fn abandon(&mut self, host: &mut dyn Host) {
        if !self.phase.waiting_for_store() {
            return;
        }
        if let Phase::Charging(waiting) = std::mem::replace(&mut self.phase, Phase::Replied) {
            waiting.cancel(host, "the stream ended before Redis answered");
        }
    }
}

/// Carries out a correction of a charge: at once in shared data (then noted
/// for the approximate mode's sync), or queued for Redis.
fn correct(config: &Config, host: &mut dyn Host, corrections: Vec<Correction>) {
    for c in corrections {
        correct_one(config, host, c);
    }
}

fn correct_one(config: &Config, host: &mut dyn Host, c: Correction) {
    match &c.counters {
        Counters::Redis => {
            host.note(Note::Adjust { key: c.key, window_start: c.window_start, delta: c.delta, most: c.most })
        }
        Counters::Local { sync } => {
            let now_ms = host.now_ms();
            if let Err(e) = c.apply(config, &config.counters.table(host.shared_data(), now_ms)) {
                host.note(Note::Log {
                    level: Level::Warn,
                    line: format!("quota: could not correct {} by {}: {e}", c.key, c.delta),
                });
            }
            if let Some(target) = sync {
                host.note(Note::Sync { target, delta: c.delta });
            }
        }
    }
}
