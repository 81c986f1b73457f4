//! What the filter reports: Envoy stats, event log lines and the analytics
//! callout. Metrics are defined once per VM at configure time; the
//! reporter's are counted in the VM ([`count`]) and added to Envoy's
//! counters on the root context's tick ([`flush_counts`]), so no request
//! pays a host call for a stat. Events for the analytics cluster wait in a
//! bounded queue that the root context flushes on its tick too, so no
//! request ever waits for (or fails because of) analytics.

use crate::host::{self, log};
use proxy_wasm::types::LogLevel;
use quota_core::body::Unreadable;
use quota_core::config::Config;
use quota_core::engine::{Decision, Outcome};
use quota_core::event_budget::{suppressed_line, Admit, EventBudget};
use quota_core::events::{self, ClassMetric};
use quota_core::identity::{Caller, IdentityError};
use quota_core::store::GiveUp;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

/// Events sent per analytics request.
const BATCH: usize = 100;

pub struct Reporter {
    config: Rc<Config>,
    /// Metric ids by (class, tier, metric); empty when metrics are off.
    class_metrics: Vec<u32>,
    identity_missing: Option<u32>,
    identity_invalid: Option<u32>,
    unknown_tier: Option<u32>,
    body_too_large: Option<u32>,
    unreadable_body: Option<u32>,
    /// New counters refused because the shared-data table had no room.
    store_full: Option<u32>,
    events_suppressed: Option<u32>,
    usage_limited: Option<u32>,
    /// How many events of unidentified callers this worker may still write.
    unidentified: RefCell<EventBudget>,
    sent: Option<u32>,
    failed: Option<u32>,
    dropped: Option<u32>,
    /// Serialized events waiting for the analytics cluster.
    queue: RefCell<VecDeque<String>>,
    in_flight: Cell<u32>,
}

pub fn define(name: &str) -> Option<u32> {
    match host::define_counter(name) {
        Ok(id) => Some(id),
        Err(status) => {
            log(LogLevel::Warn, &format!("quota: could not define metric {name}: {status}"));
            None
        }
    }
}

/// Adds `by` to the metric `id` in Envoy now (one host call): for the
/// Redis store's rare events, which are not on a request's common path.
pub fn bump(id: Option<u32>, by: u64) {
    if let Some(id) = id {
        let _ = host::increment(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

thread_local! {
    /// Counts not yet added to Envoy's metrics, by metric id: what [`count`]
    /// gathered since the last [`flush_counts`]. A VM is one thread.
    static PENDING: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Adds `by` to the metric `id` in this VM; Envoy sees it at the next
/// [`flush_counts`] (the root context's tick). No host call.
pub fn count(id: Option<u32>, by: u64) {
    let Some(id) = id else { return };
    PENDING.with_borrow_mut(|pending| match pending.iter_mut().find(|(i, _)| *i == id) {
        Some((_, n)) => *n = n.saturating_add(by),
        None => pending.push((id, by)),
    });
}

/// Adds every pending count to Envoy's metrics: one host call per metric
/// that moved since the last flush (the list stays as short as that).
pub fn flush_counts() {
    PENDING.with_borrow_mut(|pending| {
        for (id, n) in pending.drain(..) {
            let _ = host::increment(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    });
}

impl Reporter {
    pub fn new(config: Rc<Config>, now_ms: i64) -> Reporter {
        let on = config.observability.metrics;
        let mut class_metrics = Vec::new();
        if on {
            for class in &config.classes {
                for tier in &config.tiers {
                    for metric in ClassMetric::ALL {
                        let name = events::class_metric_name(&class.name, &tier.name, metric);
                        class_metrics.push(define(&name).unwrap_or(u32::MAX));
                    }
                }
            }
        }
        let global = |name: &str| if on { define(name) } else { None };
        let analytics = config.observability.analytics.is_some();
        Reporter {
            identity_missing: global(events::IDENTITY_MISSING),
            identity_invalid: global(events::IDENTITY_INVALID),
            unknown_tier: global(events::UNKNOWN_TIER),
            body_too_large: global(events::BODY_TOO_LARGE),
            unreadable_body: global(events::UNREADABLE_BODY),
            // Only shared data keeps counters in the bounded table.
            store_full: if config.counters.exact_redis().is_none() { global(events::STORE_FULL) } else { None },
            events_suppressed: global(events::EVENTS_SUPPRESSED),
            usage_limited: config.usage_endpoint.as_ref().and_then(|_| global(events::USAGE_LIMITED)),
            unidentified: RefCell::new(EventBudget::new(config.observability.unidentified_events_per_second, now_ms)),
            sent: if analytics { global(events::ANALYTICS_SENT) } else { None },
            failed: if analytics { global(events::ANALYTICS_FAILED) } else { None },
            dropped: if analytics { global(events::ANALYTICS_DROPPED) } else { None },
            class_metrics,
            config,
            queue: RefCell::new(VecDeque::new()),
            in_flight: Cell::new(0),
        }
    }

    fn class_metric(&self, d: &Decision, metric: ClassMetric) -> Option<u32> {
        let per_class = self.config.tiers.len() * ClassMetric::ALL.len();
        let index = d.class.0 * per_class
            + d.tier.0 * ClassMetric::ALL.len()
            + ClassMetric::ALL.iter().position(|m| *m == metric)?;
        self.class_metrics.get(index).copied().filter(|id| *id != u32::MAX)
    }

    /// Counts, logs and queues what a decision produced.
    pub fn decision(&self, caller: &Caller, d: &Decision) {
        for (metric, by) in events::metric_deltas(d) {
            count(self.class_metric(d, metric), by);
        }
        // The `store_full` event below names the caller as `observability.ids` allows.
        if let Outcome::Unavailable { reason: GiveUp::Full, .. } = &d.outcome {
            count(self.store_full, 1);
        }
        for event in d.events(&self.config) {
            self.emit(events::event_record(&self.config, caller, d, event));
        }
    }

    /// The upstream answered an admitted request busy (its `status`): the
    /// charge went back and the caller got the filter's busy answer.
    pub fn upstream_busy(&self, caller: &Caller, d: &Decision, status: u16, now_ms: i64) {
        count(self.class_metric(d, ClassMetric::UpstreamBusy), 1);
        self.emit(events::busy_record(&self.config, caller, d, status, now_ms));
    }

    pub fn identity_refused(&self, err: &IdentityError, now_ms: i64) {
        count(
            match err {
                IdentityError::MissingUser => self.identity_missing,
                IdentityError::InvalidCredentials => self.identity_invalid,
                IdentityError::UnknownTier(_) => self.unknown_tier,
            },
            1,
        );
        self.emit_unidentified(events::identity_record(err, now_ms), now_ms);
    }

    /// A request refused because its body could not be read (nothing charged).
    /// `caller`: `None` when the caller could not be identified either.
    pub fn body_refused(&self, caller: Option<&Caller>, why: &Unreadable, now_ms: i64) {
        let stat = match why {
            Unreadable::TooLarge => self.body_too_large,
            _ => self.unreadable_body,
        };
        count(stat, 1);
        let record = events::body_record(&self.config, caller, why, now_ms);
        match caller {
            Some(_) => self.emit(record),
            None => self.emit_unidentified(record, now_ms),
        }
    }

    /// A usage read answered 429 (over its budget).
    pub fn usage_limited(&self) {
        count(self.usage_limited, 1);
    }

    /// An event of a caller without an identity: written within this
    /// worker's budget, else counted (`quota.events_suppressed`). Writing
    /// resumes with one line saying how many were left out.
    fn emit_unidentified(&self, record: serde_json::Value, now_ms: i64) {
        let observability = &self.config.observability;
        if !observability.log_events && observability.analytics.is_none() {
            return;
        }
        let admit = self.unidentified.borrow_mut().admit(now_ms);
        match admit {
            Admit::Write { suppressed_before } => {
                if suppressed_before > 0 {
                    log(
                        LogLevel::Warn,
                        &suppressed_line(suppressed_before, observability.unidentified_events_per_second),
                    );
                }
                self.emit(record);
            }
            Admit::Suppress => count(self.events_suppressed, 1),
        }
    }

    /// An event of the counter store (a correction dropped): logged when
    /// `log_events` is on, and sent to the analytics cluster.
    pub fn store_event(&self, record: serde_json::Value) {
        self.emit(record);
    }

    fn emit(&self, record: serde_json::Value) {
        let line = record.to_string();
        if self.config.observability.log_events {
            log(LogLevel::Info, &format!("quota-event {line}"));
        }
        self.enqueue(line);
    }

    /// Queues a line for the analytics cluster (the oldest goes when full).
    fn enqueue(&self, line: String) {
        if let Some(analytics) = &self.config.observability.analytics {
            let mut queue = self.queue.borrow_mut();
            if queue.len() >= analytics.max_queue as usize {
                queue.pop_front();
                count(self.dropped, 1);
            }
            queue.push_back(line);
        }
    }

    /// Queues a ledger record's line for the analytics cluster, marked
    /// `"event": "ledger"` among the events (never logged as one).
    pub fn ledger(&self, line: &str) {
        let Some(fields) = line.strip_prefix('{') else { return };
        self.enqueue(format!("{{\"event\":\"ledger\",{fields}"));
    }

    /// Sends queued events, a batch per request, while under the in-flight
    /// bound. Called from the root context's tick.
    pub fn flush(&self) {
        let Some(analytics) = &self.config.observability.analytics else {
            return;
        };
        while self.in_flight.get() < analytics.max_in_flight {
            let batch: Vec<String> = {
                let mut queue = self.queue.borrow_mut();
                let n = queue.len().min(BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let body = format!("[{}]", batch.join(","));
            let headers = vec![
                (":method", "POST"),
                (":path", analytics.path.as_str()),
                (":authority", analytics.authority.as_str()),
                ("content-type", "application/json"),
            ];
            let timeout = Duration::from_millis(analytics.timeout_ms);
            match host::dispatch_call(&analytics.cluster, headers, body.as_bytes(), timeout) {
                Ok(_) => self.in_flight.set(self.in_flight.get() + 1),
                Err(status) => {
                    count(self.failed, 1);
                    log(LogLevel::Warn, &format!("quota: analytics callout to {} failed: {status}", analytics.cluster));
                }
            }
        }
    }

    /// A callout finished (`ok`: a 2xx answer).
    pub fn callout_done(&self, ok: bool) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        count(if ok { self.sent } else { self.failed }, 1);
    }
}
