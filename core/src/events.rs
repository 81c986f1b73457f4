//! What the filter reports about a decision: the metric counters it moves
//! and the event records it logs or sends, built from the decision value.

use crate::body::Unreadable;
use crate::calendar::rfc3339;
use crate::config::{Config, FailPolicy, IdPolicy};
use crate::engine::{Decision, Event, Outcome};
use crate::identity::{Caller, IdentityError, ScopeKind};
use crate::redis::Command;
use serde_json::{json, Value};
use std::hash::{Hash, Hasher};

/// Counters kept per class x tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassMetric {
    /// Requests admitted (charged, or admitted by `fail_open`).
    Requests,
    /// Units charged.
    Units,
    /// Warning levels crossed (once per level per window).
    Warned,
    /// Requests refused at the hard limit.
    Blocked,
    /// Requests refused until confirmed.
    ConfirmationRequired,
    /// Requests refused because they could never fit the cell (413).
    TooLarge,
    /// Requests for a class outside the plan.
    NotIncluded,
    /// Requests for a pooled class that named no workspace (refused).
    WorkspaceRequired,
    /// Callers flagged ahead of pace (once per window).
    PaceAhead,
    /// Requests admitted without a counter because the store gave up.
    FailOpen,
    /// Requests refused because the store gave up.
    FailClosed,
    /// Admitted requests the upstream answered busy (given back, answered
    /// with the filter's busy copy).
    UpstreamBusy,
}

impl ClassMetric {
    pub const ALL: [ClassMetric; 12] = [
        ClassMetric::Requests,
        ClassMetric::Units,
        ClassMetric::Warned,
        ClassMetric::Blocked,
        ClassMetric::ConfirmationRequired,
        ClassMetric::TooLarge,
        ClassMetric::NotIncluded,
        ClassMetric::WorkspaceRequired,
        ClassMetric::PaceAhead,
        ClassMetric::FailOpen,
        ClassMetric::FailClosed,
        ClassMetric::UpstreamBusy,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ClassMetric::Requests => "requests",
            ClassMetric::Units => "units",
            ClassMetric::Warned => "warned",
            ClassMetric::Blocked => "blocked",
            ClassMetric::ConfirmationRequired => "confirmation_required",
            ClassMetric::TooLarge => "too_large",
            ClassMetric::NotIncluded => "not_included",
            ClassMetric::WorkspaceRequired => "workspace_required",
            ClassMetric::PaceAhead => "pace_ahead",
            ClassMetric::FailOpen => "fail_open",
            ClassMetric::FailClosed => "fail_closed",
            ClassMetric::UpstreamBusy => "upstream_busy",
        }
    }
}

/// The stat name of a class x tier counter: `quota.<class>.<tier>.<metric>`
/// (Envoy shows it as `wasmcustom.quota.drafts.free.blocked`).
pub fn class_metric_name(class: &str, tier: &str, metric: ClassMetric) -> String {
    format!("quota.{class}.{tier}.{}", metric.name())
}

/// Counters that belong to no class.
pub const IDENTITY_MISSING: &str = "quota.identity_missing";
pub const IDENTITY_INVALID: &str = "quota.identity_invalid";
pub const UNKNOWN_TIER: &str = "quota.unknown_tier";
/// Requests refused for a body the filter could not read (`unreadable_body: refuse`).
pub const BODY_TOO_LARGE: &str = "quota.body_too_large";
pub const UNREADABLE_BODY: &str = "quota.unreadable_body";
/// New counters refused because their bucket of the shared-data table was full.
pub const STORE_FULL: &str = "quota.store_full";
/// Events of unidentified callers left out (`event_budget.rs`).
pub const EVENTS_SUPPRESSED: &str = "quota.events_suppressed";
/// Usage-endpoint reads answered 429 (`usage_limit.rs`).
pub const USAGE_LIMITED: &str = "quota.usage_limited";
pub const ANALYTICS_SENT: &str = "quota.analytics.sent";
pub const ANALYTICS_FAILED: &str = "quota.analytics.failed";
pub const ANALYTICS_DROPPED: &str = "quota.analytics.dropped";
/// Redis corrections (refunds, usage, cancels, syncs) given up, and sync
/// deltas with no room to wait.
pub const CORRECTIONS_DROPPED: &str = "quota.store.corrections_dropped";

/// How much each class counter moves for this decision.
pub fn metric_deltas(d: &Decision) -> Vec<(ClassMetric, u64)> {
    let mut out = Vec::with_capacity(4);
    match &d.outcome {
        Outcome::Charged(c) => {
            if c.admitted {
                out.push((ClassMetric::Requests, 1));
                out.push((ClassMetric::Units, c.cost));
            }
            if c.crossed.is_some() {
                out.push((ClassMetric::Warned, 1));
            }
            if c.pace_flagged {
                out.push((ClassMetric::PaceAhead, 1));
            }
            if c.needs_confirmation {
                out.push((ClassMetric::ConfirmationRequired, 1));
            } else if c.too_large {
                out.push((ClassMetric::TooLarge, 1));
            } else if !c.admitted {
                out.push((ClassMetric::Blocked, 1));
            }
        }
        Outcome::NotIncluded => out.push((ClassMetric::NotIncluded, 1)),
        Outcome::WorkspaceRequired => out.push((ClassMetric::WorkspaceRequired, 1)),
        Outcome::Unavailable { policy: FailPolicy::Open, .. } => {
            out.push((ClassMetric::Requests, 1));
            out.push((ClassMetric::FailOpen, 1));
        }
        Outcome::Unavailable { policy: FailPolicy::Closed, .. } => out.push((ClassMetric::FailClosed, 1)),
    }
    out
}

/// An id as the config says events may show it.
pub fn shown_id(policy: &IdPolicy, id: &str) -> Value {
    match policy {
        IdPolicy::Plain => Value::from(id),
        IdPolicy::Omitted => Value::Null,
        IdPolicy::Hashed { salt } => {
            // SipHash with fixed keys over salt and id: stable across VMs and
            // restarts, so a hashed id can still be followed through the logs.
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new();
            salt.hash(&mut h);
            id.hash(&mut h);
            Value::from(format!("{:016x}", h.finish()))
        }
    }
}

/// The record of one event, for the log line and the analytics callout.
pub fn event_record(config: &Config, caller: &Caller, d: &Decision, event: Event) -> Value {
    let ids = &config.observability.ids;
    let mut record = json!({
        "event": event.name(),
        "time": rfc3339(d.now_ms.div_euclid(1000)),
        "class": config.class(d.class).map(|c| c.name.clone()),
        "tier": config.tier(d.tier).map(|t| t.name.clone()),
        "scope": d.scope.as_str(),
        "user": if caller.anonymous { Value::Null } else { shown_id(ids, &caller.id) },
        "workspace": caller.workspace.as_deref().map_or(Value::Null, |w| shown_id(ids, w)),
    });
    if let Some(fields) = record.as_object_mut() {
        if let Outcome::Charged(c) = &d.outcome {
            fields.insert("used".into(), c.usage.used.into());
            fields.insert("limit".into(), c.usage.hard.into());
            fields.insert("requested".into(), c.requested.into());
            fields.insert("reset".into(), rfc3339(c.usage.window.end).into());
        }
        if let Event::Warned { level, at } = event {
            fields.insert("level".into(), level.into());
            fields.insert("at".into(), at.into());
        }
    }
    record
}

/// The record of an upstream's busy answer (event `upstream_busy`): the
/// request's class, tier and caller, the upstream's `status`, and the units
/// given back (`given_back`, what admission charged).
pub fn busy_record(config: &Config, caller: &Caller, d: &Decision, status: u16, now_ms: i64) -> Value {
    let mut record = event_record(config, caller, d, Event::UpstreamBusy);
    if let Some(fields) = record.as_object_mut() {
        fields.insert("time".into(), rfc3339(now_ms.div_euclid(1000)).into());
        fields.insert("upstream_status".into(), status.into());
        let given_back = match &d.outcome {
            Outcome::Charged(c) if c.admitted => c.cost,
            _ => 0,
        };
        fields.insert("given_back".into(), given_back.into());
        // The standing before the request: what the caller has after the answer.
        if let Outcome::Charged(c) = &d.given_back(config).outcome {
            fields.insert("used".into(), c.usage.used.into());
        }
    }
    record
}

/// The record of a request refused for its identity.
pub fn identity_record(err: &IdentityError, now_ms: i64) -> Value {
    let event = match err {
        IdentityError::MissingUser => "identity_missing",
        IdentityError::InvalidCredentials => "identity_invalid",
        IdentityError::UnknownTier(_) => "unknown_tier",
    };
    json!({ "event": event, "time": rfc3339(now_ms.div_euclid(1000)) })
}

/// The stat counting refusals for this reason ([`BODY_TOO_LARGE`] or [`UNREADABLE_BODY`]).
pub fn body_metric(why: &Unreadable) -> &'static str {
    match why {
        Unreadable::TooLarge => BODY_TOO_LARGE,
        _ => UNREADABLE_BODY,
    }
}

/// The record of a request refused for a body the filter could not read:
/// event `body_too_large` or `unreadable_body`, and why. `caller`: when the
/// filter identified the caller first.
pub fn body_record(config: &Config, caller: Option<&Caller>, why: &Unreadable, now_ms: i64) -> Value {
    let ids = &config.observability.ids;
    let mut record =
        json!({ "event": why.code(), "time": rfc3339(now_ms.div_euclid(1000)), "reason": why.to_string() });
    if let (Some(caller), Some(fields)) = (caller, record.as_object_mut()) {
        fields.insert("tier".into(), config.tier(caller.tier).map(|t| t.name.clone()).into());
        fields.insert("user".into(), if caller.anonymous { Value::Null } else { shown_id(ids, &caller.id) });
        fields.insert("workspace".into(), caller.workspace.as_deref().map_or(Value::Null, |w| shown_id(ids, w)));
    }
    record
}

/// The record of a Redis correction given up (`correction_dropped`): what it
/// would have done, so the counter can be put right by hand. `command` is
/// the script call; `why`, the reason.
pub fn correction_dropped_record(config: &Config, command: &Command, why: &str, now_ms: i64) -> Value {
    let ids = &config.observability.ids;
    let prefix = config.counters.redis.as_ref().map_or("", |r| r.key_prefix.as_str());
    let mut record = json!({
        "event": "correction_dropped",
        "time": rfc3339(now_ms.div_euclid(1000)),
        "operation": command.op(),
        "correction": command.id(),
        "reason": why,
    });
    let Some(fields) = record.as_object_mut() else { return record };
    if let Some((kind, id, class)) = crate::redis::describe(command.key(), prefix) {
        fields.insert("class".into(), class.into());
        fields.insert("scope".into(), kind.as_str().into());
        let who = match kind {
            ScopeKind::Workspace => "workspace",
            ScopeKind::Organisation => "organisation",
            ScopeKind::User | ScopeKind::Anonymous => "user",
        };
        let shown = if kind == ScopeKind::Anonymous { Value::Null } else { shown_id(ids, id) };
        fields.insert(who.into(), shown);
    }
    let arg = |i: usize| command.args.get(i).and_then(|a| a.parse::<i64>().ok());
    match command.op() {
        "adjust" => {
            fields.insert("window_start".into(), arg(1).map(rfc3339).into());
            fields.insert("delta".into(), arg(2).into());
        }
        "add" => {
            fields.insert("delta".into(), arg(2).into());
        }
        _ => {}
    }
    record
}

/// The record of `count` corrections dropped since `since_ms` and not
/// reported one by one (the filter reports a few a second in full).
pub fn corrections_dropped_record(count: u64, since_ms: i64, now_ms: i64) -> Value {
    json!({
        "event": "correction_dropped",
        "time": rfc3339(now_ms.div_euclid(1000)),
        "count": count,
        "since": rfc3339(since_ms.div_euclid(1000)),
        "reason": "more corrections were dropped than are reported one by one",
    })
}

/// The log line of sync deltas dropped because the approximate mode's
/// pending map was full: `counters` deltas of `units` net units in all.
pub fn syncs_dropped_record(counters: u64, units: i64, now_ms: i64) -> Value {
    json!({
        "event": "correction_dropped",
        "time": rfc3339(now_ms.div_euclid(1000)),
        "operation": "add",
        "counters": counters,
        "delta": units,
        "reason": format!("the approximate mode's unsynced map was full ({} counters)", crate::redis::corrections::MAX_UNSYNCED),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::engine::{charge, Event};
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::{demo_config, head};

    const NOON_MS: i64 = 1_795_348_800_000;

    #[test]
    fn admitted_and_blocked_requests_move_the_right_counters() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let mut totals = std::collections::HashMap::new();
        for _ in 0..12 {
            let d = charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
            for (m, n) in metric_deltas(&d) {
                *totals.entry(m.name()).or_insert(0) += n;
            }
        }
        assert_eq!(totals.get("requests"), Some(&10));
        assert_eq!(totals.get("units"), Some(&10));
        assert_eq!(totals.get("warned"), Some(&2));
        assert_eq!(totals.get("blocked"), Some(&2));
        assert_eq!(class_metric_name("drafts", "free", ClassMetric::Blocked), "quota.drafts.free.blocked");
    }

    #[test]
    fn a_pooled_class_without_a_workspace_moves_its_own_counter() {
        let config = demo_config();
        let store = MemoryStore::new();
        let solo = identify(&config, &head(&[("x-user-id", "solo"), ("x-plan", "team")]), &NoProperties).unwrap();
        let d = charge(&config, &solo, ClassId(2), 1, false, NOON_MS, &store);
        assert_eq!(metric_deltas(&d), vec![(ClassMetric::WorkspaceRequired, 1)]);
        assert_eq!(
            class_metric_name("drafts", "team", ClassMetric::WorkspaceRequired),
            "quota.drafts.team.workspace_required"
        );
        let record = event_record(&config, &solo, &d, Event::WorkspaceRequired);
        assert_eq!(
            record,
            json!({"event": "workspace_required", "time": "2026-11-22T12:00:00Z", "class": "drafts", "tier": "team",
                   "scope": "workspace", "user": "solo", "workspace": null})
        );
    }

    #[test]
    fn the_units_stat_moves_by_bounded_costs_only() {
        // A tokens class past hard as uncapped overage: the issue's attack moved
        // `units` by i64::MAX; now it moves `too_large` by one and `units` not at all.
        let doc = serde_json::json!({
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": [{"name": "chat", "match": [{"path": {"prefix": "/"}}], "cost": {"tokens": {}}}],
            "tiers": {"free": {"limits": {"chat": {"hard": 20000, "window": "day", "at_hard": "overage"}}}}
        });
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let body = format!(r#"{{"max_tokens": {}}}"#, u64::MAX);
        let json: Value = serde_json::from_str(&body).unwrap();
        let body = crate::cost::Body { bytes: Some(body.as_bytes()), json: Some(&json), prompt_chars: 0 };
        let cost = crate::engine::request_cost(&config, ClassId(0), body);
        assert_eq!(cost, crate::units::MAX_UNITS);
        let d = charge(&config, &alice, ClassId(0), cost, false, NOON_MS, &store);
        assert_eq!(metric_deltas(&d), vec![(ClassMetric::TooLarge, 1)]);
        let record = event_record(&config, &alice, &d, Event::TooLarge);
        assert_eq!((record["event"].as_str(), record["requested"].as_u64()), (Some("too_large"), Some(cost)));
        // Admitted requests move `units` by what they were charged, at most the cell's ceiling.
        let d = charge(&config, &alice, ClassId(0), 20000, false, NOON_MS, &store);
        assert!(metric_deltas(&d).contains(&(ClassMetric::Units, 20000)));
        assert_eq!(class_metric_name("chat", "free", ClassMetric::TooLarge), "quota.chat.free.too_large");
    }

    #[test]
    fn body_refusals_are_events_with_the_reason() {
        let config = demo_config();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        assert_eq!(
            body_record(&config, Some(&alice), &Unreadable::TooLarge, NOON_MS),
            json!({"event": "body_too_large", "time": "2026-11-22T12:00:00Z", "reason": "it is larger than the quota check reads",
                   "tier": "free", "user": "alice", "workspace": null})
        );
        assert_eq!(
            body_record(&config, None, &Unreadable::TooDeep, NOON_MS),
            json!({"event": "unreadable_body", "time": "2026-11-22T12:00:00Z",
                   "reason": "it nests arrays and objects more than 127 levels deep"})
        );
        assert_eq!(body_metric(&Unreadable::TooLarge), "quota.body_too_large");
        assert_eq!(body_metric(&Unreadable::NotUtf8 { at: 0 }), "quota.unreadable_body");
    }

    #[test]
    fn a_dropped_correction_says_what_it_would_have_done() {
        let doc = serde_json::json!({
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": [{"name": "drafts", "match": [{"path": {"prefix": "/"}}]}],
            "tiers": {"free": {"limits": {"drafts": {"hard": 10, "window": "day"}}}},
            "counters": {"store": "redis", "redis": {"cluster": "webdis"}}
        });
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let refund = Command::adjust("quota:{u:ann}drafts".into(), 1_795_305_600, -3, 7, "0a0b0c0d0e0f.k");
        assert_eq!(
            correction_dropped_record(&config, &refund, "the queue was full", NOON_MS),
            json!({"event": "correction_dropped", "time": "2026-11-22T12:00:00Z", "operation": "adjust",
                   "correction": "0a0b0c0d0e0f.k", "reason": "the queue was full", "class": "drafts",
                   "scope": "user", "user": "ann", "window_start": "2026-11-22T00:00:00Z", "delta": -3})
        );
        let cancel = Command::cancel("quota:{w:acme}drafts".into(), "0a0b0c0d0e0f.l");
        let record = correction_dropped_record(&config, &cancel, "gave up", NOON_MS);
        assert_eq!((record["operation"].as_str(), record["workspace"].as_str()), (Some("cancel"), Some("acme")));
        assert_eq!(record["correction"], "0a0b0c0d0e0f.l");
        // A stacked cell's counters: the member's cap names the member (its
        // id shown as the config shows ids, never inside the class), the
        // organisation's pool the organisation.
        let member = Command::adjust("quota:{o:globex}drafts@3.u\u{1f}u:ann".into(), 1_795_305_600, -1, 0, "0a.1");
        let record = correction_dropped_record(&config, &member, "gave up", NOON_MS);
        assert_eq!((record["class"].as_str(), record["scope"].as_str()), (Some("drafts"), Some("user")));
        assert_eq!(record["user"], shown_id(&config.observability.ids, "ann"));
        let pool = Command::cancel("quota:{o:globex}drafts@3.o".into(), "0a.2");
        let record = correction_dropped_record(&config, &pool, "gave up", NOON_MS);
        assert_eq!((record["scope"].as_str(), record["organisation"].as_str()), (Some("organisation"), Some("globex")));
    }

    #[test]
    fn a_busy_answer_is_an_event_that_says_what_went_back() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
        let d = charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
        let record = busy_record(&config, &alice, &d, 529, NOON_MS + 3000);
        assert_eq!(
            record,
            json!({"event": "upstream_busy", "time": "2026-11-22T12:00:03Z", "class": "drafts", "tier": "free",
                   "scope": "user", "user": "alice", "workspace": null, "used": 1, "limit": 10,
                   "requested": 1, "reset": "2026-11-23T00:00:00Z", "upstream_status": 529, "given_back": 1})
        );
        assert_eq!(class_metric_name("drafts", "free", ClassMetric::UpstreamBusy), "quota.drafts.free.upstream_busy");
    }

    #[test]
    fn ids_can_be_plain_hashed_or_omitted() {
        assert_eq!(shown_id(&IdPolicy::Plain, "alice"), json!("alice"));
        assert_eq!(shown_id(&IdPolicy::Omitted, "alice"), Value::Null);
        let salted = IdPolicy::Hashed { salt: "pepper-123".into() };
        let a = shown_id(&salted, "alice");
        assert_eq!(a, shown_id(&salted, "alice"));
        assert_ne!(a, shown_id(&salted, "bob"));
        assert_ne!(a, shown_id(&IdPolicy::Hashed { salt: "other-salt".into() }, "alice"));
        assert_eq!(a.as_str().map(str::len), Some(16));
    }

    #[test]
    fn event_records_carry_the_numbers() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice =
            identify(&config, &head(&[("x-user-id", "alice"), ("x-workspace-id", "acme")]), &NoProperties).unwrap();
        let mut last = None;
        for _ in 0..5 {
            last = Some(charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store));
        }
        let d = last.unwrap();
        let events = d.events(&config);
        let record = event_record(&config, &alice, &d, events[0]);
        assert_eq!(
            record,
            json!({"event": "warned", "time": "2026-11-22T12:00:00Z", "class": "drafts", "tier": "free",
                   "scope": "user", "user": "alice", "workspace": "acme", "used": 5, "limit": 10,
                   "requested": 1, "reset": "2026-11-23T00:00:00Z", "level": 0, "at": 5})
        );
    }
}
