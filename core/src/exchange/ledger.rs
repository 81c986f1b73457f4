//! One exchange's ledger entry ([`crate::ledger::LedgerRecord`]), filled in
//! as the request's events come and read once when its stream is logged.
//!
//! - **Arrival**: the request id, method and route, and when it arrived (the
//!   decision's time, or the head's when the body was read first).
//! - **The decision**: who (ids as `observability.ids` shows them), tier,
//!   class, the model and `stream` the body asked for, units asked and
//!   charged, the state the caller was told, warnings, the upgrade offered.
//! - **The answer**: the filter's own reply, or the response head (its
//!   status; whether the upstream was reached and answered it, as the
//!   refunds read Envoy's flags), the usage and model the upstream reported,
//!   and what the charge finally settled at.
//!
//! Only a decided request has a record: one the filter did not classify,
//! its own endpoints, and requests refused before a decision (no identity,
//! an unreadable body) have none.

use super::response::{Charged, Ended};
use crate::calendar::rfc3339_ms;
use crate::config::Config;
use crate::engine::{limit_of, Decision, Outcome};
use crate::events::shown_id;
use crate::headers::state_name;
use crate::identity::Caller;
use crate::ledger::{
    bounded, LedgerRecord, LedgerTokens, LEDGER_VERSION, MAX_MODEL_BYTES, MAX_ROUTE_BYTES, MAX_TEXT_BYTES,
};
use crate::refund::flags;
use crate::reply::upgrade_offered;
use crate::request::RequestHead;
use serde_json::Value;

/// The state of a request the upstream refused for its own capacity (a busy
/// answer, see `busy.rs`): not one `x-quota-state` names, as the caller's
/// quota did not refuse it.
pub const STATE_BUSY: &str = "busy";

/// A request's ledger entry while it is under way.
#[derive(Debug)]
pub(super) struct Entry {
    /// When the request arrived, if known before the decision (a body read first).
    arrived_ms: Option<i64>,
    record: LedgerRecord,
    decided: bool,
    /// A response head arrived: its status is the one the client got.
    answered: bool,
}

impl Entry {
    /// A classified request's head arrived (at `arrived_ms`, when the
    /// decision waits for its body).
    pub(super) fn new(head: &RequestHead, arrived_ms: Option<i64>) -> Entry {
        let text = |v: &[u8], max| bounded(&String::from_utf8_lossy(v), max);
        let record = LedgerRecord {
            v: LEDGER_VERSION,
            request_id: head.header("x-request-id").map(|id| text(id, MAX_TEXT_BYTES)),
            method: bounded(head.method(), MAX_TEXT_BYTES),
            route: bounded(head.path(), MAX_ROUTE_BYTES),
            ..LedgerRecord::default()
        };
        Entry { arrived_ms, record, decided: false, answered: false }
    }

    /// The request was decided: `json` is its body as the filter read it;
    /// `confirmed`: the client sent the confirmation header.
    pub(super) fn decided(
        &mut self,
        config: &Config,
        caller: &Caller,
        json: Option<&Value>,
        d: &Decision,
        confirmed: bool,
    ) {
        let ids = &config.observability.ids;
        let shown = |id: &str| shown_id(ids, id).as_str().map(str::to_string);
        let r = &mut self.record;
        let arrived = *self.arrived_ms.get_or_insert(d.now_ms);
        r.time = rfc3339_ms(arrived);
        r.anonymous = caller.anonymous;
        r.user = if caller.anonymous { None } else { shown(&caller.id) };
        r.workspace = caller.workspace.as_deref().and_then(shown);
        r.organisation = caller.organisation.as_deref().and_then(shown);
        r.tier = config.tier(d.tier).map(|t| t.name.clone()).unwrap_or_default();
        r.class = config.class(d.class).map(|c| c.name.clone()).unwrap_or_default();
        r.model_asked = json.and_then(|j| j.get("model")).and_then(Value::as_str).map(|m| bounded(m, MAX_MODEL_BYTES));
        r.stream = json.and_then(|j| j.get("stream")).is_some_and(crate::admission::streams);
        r.units_requested = d.requested;
        r.confirmed = confirmed;
        r.units_charged = match &d.outcome {
            Outcome::Charged(c) if c.admitted => c.cost,
            _ => 0,
        };
        r.units_settled = r.units_charged;
        r.currency = config.currency_of(d.class).map(|c| c.code().to_string());
        r.state = state_name(d).to_string();
        if let Outcome::Charged(c) = &d.outcome {
            r.warned = c.crossed.is_some();
            // The highest warning level the counter has reached, once the
            // caller is told anything but `ok`.
            if r.state != "ok" {
                let levels = limit_of(config, d).map(|l| l.warn_levels.as_slice()).unwrap_or_default();
                let reached = levels.iter().take_while(|at| c.usage.plan_used >= **at).count();
                r.warning_level = reached.checked_sub(1).and_then(|i| u32::try_from(i).ok());
            }
        }
        r.upgrade_to = upgrade_offered(config, d).and_then(|h| config.tier(h.tier)).map(|t| t.name.clone());
        self.decided = true;
    }

    /// The filter answered the request itself with `status`.
    pub(super) fn replied(&mut self, status: u16) {
        self.record.status = status;
        self.answered = true;
    }

    /// The request went on to the upstream, its body's `model` rewritten to
    /// `rewritten` (a degrade).
    pub(super) fn forwarded(&mut self, rewritten: Option<&str>) {
        let r = &mut self.record;
        r.model_served = rewritten.map(|m| bounded(m, MAX_MODEL_BYTES)).or_else(|| r.model_asked.clone());
    }

    /// The response head of a forwarded request: `status` (`None`:
    /// unreadable) and Envoy's flags. As the refunds read them, a request
    /// whose flags say it never left Envoy did not reach the upstream, and
    /// an answer Envoy wrote after forwarding (a timeout, a reset) is not
    /// the upstream's.
    pub(super) fn response_head(&mut self, status: Option<u16>, response_flags: u64) {
        let r = &mut self.record;
        r.status = status.unwrap_or(0);
        r.upstream_reached = response_flags & flags::NOT_FORWARDED == 0;
        let envoys = response_flags & flags::ANSWERED_BY_ENVOY_AFTER_FORWARDING != 0;
        r.upstream_status = status.filter(|_| r.upstream_reached && !envoys);
        if !r.upstream_reached {
            // Nothing served it.
            r.model_served = None;
        }
        self.answered = true;
    }

    /// The upstream answered busy (its capacity, not the caller's quota):
    /// the charge went back and the filter's busy answer replaced its body.
    pub(super) fn busy(&mut self) {
        self.record.state = STATE_BUSY.to_string();
    }

    /// What the response did to the charge so far: what it settled at, the
    /// usage and model the upstream reported.
    pub(super) fn charge(&mut self, c: &Charged) {
        let r = &mut self.record;
        r.units_settled = c.settled();
        r.tokens = c.reported().and_then(|u| u.kinds()).map(|k| LedgerTokens::of(&k));
        if let Some(model) = c.served_model() {
            r.model_served = Some(model.to_string());
        }
    }

    /// Whether the stream's end must say how it left Envoy: a forwarded
    /// request that got no response head.
    pub(super) fn needs_end(&self) -> bool {
        self.decided && !self.answered
    }

    /// A forwarded request ended without a response head (the client left,
    /// or the upstream never answered): it reached the upstream if Envoy
    /// connected it to one; the client got no status (0).
    pub(super) fn ended_without_answer(&mut self, ended: Ended) {
        let r = &mut self.record;
        r.upstream_reached = ended.upstream_connected && ended.response_flags & flags::NOT_FORWARDED == 0;
        if !r.upstream_reached {
            r.model_served = None;
        }
    }

    /// The record, once the request was decided; `now`: its end.
    pub(super) fn record(self, now: impl FnOnce() -> i64) -> Option<LedgerRecord> {
        if !self.decided {
            return None;
        }
        let mut record = self.record;
        let now_ms = now();
        record.duration_ms = self.arrived_ms.and_then(|at| u64::try_from(now_ms.saturating_sub(at)).ok());
        Some(record)
    }
}
