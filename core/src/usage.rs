//! The usage endpoint: the caller's own standing in every class of their
//! tier, read without charging anything, for a UI to draw a meter.

use crate::calendar::rfc3339;
use crate::config::{Cell, Class, ClassId, Config, Limits, Message, TierId};
use crate::copy::{self, Facts};
use crate::counter::Counter;
use crate::decide::{pace_of, view, Served, State, Usage};
use crate::engine::seconds_until;
use crate::headers::{STATE_NOT_INCLUDED, STATE_UNAVAILABLE, STATE_WORKSPACE_REQUIRED};
use crate::identity::{Caller, ScopeKind};
use crate::reply::LocalReply;
use crate::store::CounterStore;
use serde_json::{json, Value};

/// The usage report for `caller` at `now_ms`, as a JSON document.
pub fn usage_report(config: &Config, caller: &Caller, now_ms: i64, store: &dyn CounterStore) -> Value {
    let now = now_ms.div_euclid(1000);
    let tier = config.tier(caller.tier);
    let classes: Vec<Value> = config
        .classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let base = json!({ "class": class.name, "label": class.label, "unit": class.unit, "units": class.units });
            let cell = tier.and_then(|t| t.cells.get(i));
            let extra = match cell {
                None | Some(Cell::NotIncluded) => json!({
                    "included": false,
                    "state": STATE_NOT_INCLUDED,
                    "message": Facts::new(config, caller.tier, ClassId(i), 0)
                        .map(|f| copy::message(config, Message::NotIncluded, &f)),
                    "upgrade": upgrade(config, caller.tier, ClassId(i), 0),
                }),
                Some(Cell::Limited(stack)) => limited(config, caller, ClassId(i), class, stack, now_ms, store),
            };
            merge(base, extra)
        })
        .collect();
    json!({
        "user": if caller.anonymous { Value::Null } else { Value::from(caller.id.clone()) },
        "anonymous": caller.anonymous,
        "workspace": caller.workspace,
        "tier": tier.map(|t| t.name.clone()),
        "tier_label": tier.map(|t| t.label.clone()),
        "now": rfc3339(now),
        "classes": classes,
    })
}

/// A limited cell's entry: the binding limit's standing (see
/// [`crate::engine::binding`]), and under `limits` every limit's own, in
/// the order the cell lists them.
fn limited<S: CounterStore + ?Sized>(
    config: &Config,
    caller: &Caller,
    class_id: ClassId,
    class: &Class,
    stack: &[Limits],
    now_ms: i64,
    store: &S,
) -> Value {
    let counters = match crate::engine::counters_of(config, caller, class, stack) {
        Ok(counters) => counters,
        Err(pool) => {
            // Pooled, and this caller names no workspace: no counter to show.
            let Some((i, limits)) = stack.iter().enumerate().find(|(_, l)| l.scope.pooled()) else {
                return json!({ "included": true, "scope": pool.as_str(), "state": STATE_UNAVAILABLE });
            };
            return json!({
                "included": true,
                "scope": pool.as_str(),
                "window": limits.window_name,
                "limit": limits.hard,
                "state": STATE_WORKSPACE_REQUIRED,
                "message": Facts::new(config, caller.tier, class_id, i)
                    .map(|f| copy::message(config, Message::WorkspaceRequired, &f)),
            });
        }
    };
    // A member cap set by a workspace admin replaces the member's limit.
    let cap = match crate::member_cap::key_of(config, caller, class, stack) {
        Some(key) => match crate::member_cap::read(store, &key) {
            Ok(cap) => cap,
            Err(_) => return json!({ "included": true, "state": STATE_UNAVAILABLE }),
        },
        None => None,
    };
    let stack = crate::member_cap::apply(stack, cap);
    let mut entries: Vec<(usize, Usage, Value)> = Vec::with_capacity(counters.len());
    for (i, scope, key) in counters {
        let Some(limits) = stack.get(i) else { continue };
        match store.get(&key) {
            Err(_) => return json!({ "included": true, "scope": scope.as_str(), "state": STATE_UNAVAILABLE }),
            Ok(found) => {
                let old = found.and_then(|(bytes, _)| Counter::decode(&bytes));
                let (usage, entry) = limit_entry(config, caller, class_id, i, limits, scope, old, now_ms);
                entries.push((i, usage, entry));
            }
        }
    }
    // Counters come narrowest first, as `binding` expects.
    let bound = crate::engine::binding_by(entries.iter().map(|(_, u, _)| (true, served_as(u.state), *u)));
    let mut top = entries.get(bound).map_or(Value::Null, |(_, _, v)| v.clone());
    entries.sort_by_key(|(i, _, _)| *i);
    if let Some(o) = top.as_object_mut() {
        o.insert("limits".into(), Value::Array(entries.into_iter().map(|(_, _, v)| v).collect()));
    }
    top
}

/// How a request now would be served at a counter's state, for choosing the
/// binding limit of a view.
fn served_as(state: State) -> Served {
    match state {
        State::Degraded => Served::Degraded,
        State::Overage => Served::Overage,
        State::Queued => Served::Queued,
        State::Ok | State::Warning | State::Blocked => Served::Normally,
    }
}

/// One limit's standing, as the meter shows it.
#[allow(clippy::too_many_arguments)]
fn limit_entry(
    config: &Config,
    caller: &Caller,
    class: ClassId,
    i: usize,
    limits: &Limits,
    scope: ScopeKind,
    old: Option<Counter>,
    now_ms: i64,
) -> (Usage, Value) {
    let now = now_ms.div_euclid(1000);
    let u = view(old, limits, now, caller.alignment);
    let reset_after = seconds_until(u.window.end, now_ms);
    let facts = Facts::new(config, caller.tier, class, i).map(|mut f| {
        f.usage = Some(u);
        f.requested = 1;
        f.reset_after = reset_after;
        f
    });
    let say = |m| facts.as_ref().map(|f| copy::message(config, m, f));
    let message = match u.state {
        State::Ok => None,
        State::Warning => say(Message::Warning),
        State::Degraded => say(Message::Degraded),
        State::Overage => say(Message::Overage),
        State::Queued => say(Message::Queued),
        State::Blocked => say(Message::Blocked),
    };
    let counter = crate::decide::current(old, limits, now, caller.alignment);
    let pace = pace_of(&counter, limits, now).map(|p| {
        json!({
            "ahead": p.ahead,
            "used_share": p.used_share,
            "elapsed_share": p.elapsed_share,
            "exhausted_at": p.exhausted_at.map(rfc3339),
            "message": if p.ahead { say(Message::Pace) } else { None },
        })
    });
    let entry = json!({
        "included": true,
        "scope": scope.as_str(),
        "window": limits.window_name,
        "used": u.used,
        "limit": u.hard,
        "soft_limit": u.soft,
        "remaining": u.remaining(),
        "over": u.over,
        "grant": u.grant,
        "fraction_used": (u.used as f64 / u.hard as f64).min(1.0),
        "state": u.state.as_str(),
        "message": message,
        "reset": rfc3339(u.window.end),
        "reset_after": reset_after,
        "pace": pace,
        "upgrade": upgrade(config, caller.tier, class, i),
        "money": money(config, class, &u),
    });
    (u, entry)
}

/// For a class metered in money (its numbers are micro-units of the
/// currency): the currency and the amounts as people read them; `null`
/// for a class counted in units.
pub fn money(config: &Config, class: ClassId, u: &Usage) -> Value {
    let Some(c) = config.currency_of(class) else { return Value::Null };
    use crate::money::{format_amount, format_amount_down};
    json!({
        "currency": c.code(),
        "used": format_amount_down(u.used, c),
        "limit": format_amount(u.hard, c),
        "soft_limit": u.soft.map(|s| format_amount(s, c)),
        "remaining": format_amount_down(u.remaining(), c),
        "over": format_amount(u.over, c),
        "grant": format_amount(u.grant, c),
    })
}

/// The usage endpoint's reply.
pub fn usage_reply(config: &Config, caller: &Caller, now_ms: i64, store: &dyn CounterStore) -> LocalReply {
    LocalReply {
        status: 200,
        headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
        body: usage_report(config, caller, now_ms, store).to_string(),
    }
}

/// Only `GET` (and `HEAD`) read usage; other methods are told so.
pub fn method_not_allowed() -> LocalReply {
    LocalReply {
        status: 405,
        headers: vec![("allow", "GET, HEAD".into()), ("content-type", "application/json".into())],
        body: json!({ "error": { "message": "The usage endpoint only answers GET.", "type": "invalid_request_error", "param": null, "code": "method_not_allowed" } }).to_string(),
    }
}

/// What upgrading would give for this class, for the meter's call to action.
fn upgrade(config: &Config, tier: TierId, class: ClassId, limit: usize) -> Value {
    match copy::upgrade_hint(config, tier, class, limit) {
        None => Value::Null,
        Some(h) => json!({
            "tier": config.tier(h.tier).map(|t| t.name.clone()),
            "label": h.tier_label,
            "limit": h.limit,
            "per_window": h.per_window,
            "url": h.url,
            "text": h.sentence(),
        }),
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::engine::charge;
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::{demo_config, head};

    #[test]
    fn reports_every_class_of_the_tier_without_charging() {
        let config = demo_config();
        let store = MemoryStore::new();
        let now = 1_795_348_800_000;
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        charge(&config, &alice, ClassId(2), 1, false, now, &store);
        let report = usage_report(&config, &alice, now, &store);
        let again = usage_report(&config, &alice, now, &store);
        assert_eq!(report, again);
        assert_eq!(report["tier"], "free");
        let classes = report["classes"].as_array().unwrap();
        assert_eq!(classes.len(), 5);
        assert_eq!(classes[4]["class"], "premium_chat");
        assert_eq!(classes[4]["included"], false);
        let drafts = &classes[2];
        assert_eq!(
            (drafts["class"].as_str(), drafts["used"].as_u64(), drafts["remaining"].as_u64()),
            (Some("drafts"), Some(1), Some(9))
        );
        assert_eq!(drafts["reset"], "2026-11-23T00:00:00Z");
        assert_eq!(classes[0]["included"], false);
        assert_eq!(classes[0]["state"], "not_included");
        assert_eq!(classes[0]["upgrade"]["text"], "Pro includes 3 a day: https://example.com/upgrade?plan=pro");
        assert_eq!(drafts["message"], serde_json::Value::Null);
        assert_eq!(drafts["upgrade"]["limit"], 100);
        assert_eq!(classes[1]["used"], 0);
    }

    #[test]
    fn pooled_classes_without_a_workspace_show_what_they_need() {
        let config = demo_config();
        let store = MemoryStore::new();
        let now = 1_795_348_800_000;
        let solo = identify(&config, &head(&[("x-user-id", "solo"), ("x-plan", "team")]), &NoProperties).unwrap();
        let report = usage_report(&config, &solo, now, &store);
        let classes = report["classes"].as_array().unwrap();
        let drafts = &classes[2];
        assert_eq!(
            (drafts["scope"].as_str(), drafts["state"].as_str(), drafts["limit"].as_u64()),
            (Some("workspace"), Some("workspace_required"), Some(300))
        );
        assert_eq!(drafts.get("used"), None);
        assert!(drafts["message"].as_str().unwrap().starts_with("Your drafts are shared across your workspace"));
        // A per-user class of the same plan reads as usual.
        assert_eq!((classes[1]["scope"].as_str(), classes[1]["used"].as_u64()), (Some("user"), Some(0)));
        // With a workspace the pool is shown.
        let member = identify(
            &config,
            &head(&[("x-user-id", "a"), ("x-workspace-id", "acme"), ("x-plan", "team")]),
            &NoProperties,
        )
        .unwrap();
        let report = usage_report(&config, &member, now, &store);
        assert_eq!(report["classes"][2]["state"], "ok");
    }
}
