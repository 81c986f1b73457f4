//! A request whose class or cost depends on a body the filter cannot read
//! is never cheaper than the most expensive outcome its head allows: the
//! config's `unreadable_body` refuses it (413 or 400, nothing charged) or
//! charges it as the strictest class its method, path and headers allow.
//!
//! The flow, after [`crate::classify::classify_head`] said `NeedsBody` and the
//! filter read the body with [`crate::body::read_body`]:
//! [`classify_body`] → `Class` (price it with `cost::request_cost` as usual),
//! `Refuse` (`reply::refuse_body`), or `Strictest` (identify the caller, then
//! charge what [`strictest`] says).

use crate::body::{BodyRead, Unreadable};
use crate::classify::{classify_with_body, head_candidates};
use crate::config::{Cell, ClassId, Config, Cost, TierId, UnreadableBody};
use crate::cost::highest_cost;
use crate::request::RequestHead;

/// What to do with a request whose head asked for its body, now it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyVerdict {
    /// Classified as usual (`None`: no class, forward untouched). Price it
    /// from the body's bytes and JSON as read; nothing it depends on was lost.
    Class(Option<ClassId>),
    /// `unreadable_body: refuse`: answer with `reply::refuse_body`, charge nothing.
    Refuse(Unreadable),
    /// `unreadable_body: strictest`: identify the caller, then charge
    /// [`strictest`]'s class and cost.
    Strictest,
}

/// Classifies a request from the body the filter read; when the body is
/// unreadable and the class or cost depends on it, the config's choice.
pub fn classify_body(config: &Config, head: &RequestHead, read: &BodyRead) -> BodyVerdict {
    let why = match read {
        BodyRead::Json(json) => return BodyVerdict::Class(classify_with_body(config, head, Some(json))),
        BodyRead::Empty => return BodyVerdict::Class(classify_with_body(config, head, None)),
        BodyRead::Unreadable(why) => why,
    };
    let candidates = head_candidates(config, head);
    let depends = candidates.body_decides || candidates.classes.first().is_some_and(|c| depends_on(config, *c, why));
    if !depends {
        return BodyVerdict::Class(classify_with_body(config, head, None));
    }
    match config.unreadable_body {
        UnreadableBody::Refuse => BodyVerdict::Refuse(why.clone()),
        UnreadableBody::Strictest => BodyVerdict::Strictest,
    }
}

/// Whether pricing a request of `class` (or rewriting it) needs what `why` lost.
fn depends_on(config: &Config, class: ClassId, why: &Unreadable) -> bool {
    let (Some(c), Some(needs)) = (config.class(class), config.body_needs.get(class.0)) else { return false };
    // Bytes and JSON Lines are counted from the raw bytes: such bodies need not be JSON.
    let byte_metered = matches!(c.cost, Cost::Bytes { .. } | Cost::Records { jsonl: true, .. });
    let reads_json = !byte_metered && !matches!(c.cost, Cost::Fixed(_));
    // A multiplier by model, or a rewrite of the model or stream options.
    let reads_model = !c.models.is_empty() || needs.rewrite;
    match why {
        Unreadable::TooLarge => needs.read || needs.rewrite,
        // JSON an upstream may still parse (Python nests about 1000 deep).
        Unreadable::TooDeep => reads_json || reads_model,
        // Neither Python nor Node parses it, so no upstream reads a model from
        // it; a class counting its bytes or lines still prices it.
        Unreadable::NotJson(_) | Unreadable::NotUtf8 { .. } => reads_json || (reads_model && !byte_metered),
    }
}

/// The most restrictive outcome a request's head allows, for its caller's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictest {
    /// A class the head allows is not in the caller's plan: refuse the request
    /// as that class (charging it gives `Outcome::NotIncluded`, a 403).
    NotIncluded(ClassId),
    /// Charge `cost` units of `class`: the candidate with the smallest hard
    /// limit in the caller's tier, at its highest cost for an unknown body
    /// (`cost::highest_cost`: `u64::MAX` for records, bytes and tokens, which
    /// no cell admits unless it lets usage run past the hard limit).
    Charge { class: ClassId, cost: u64 },
}

impl Strictest {
    /// The class to charge (or refuse as).
    pub fn class(&self) -> ClassId {
        match self {
            Strictest::NotIncluded(class) | Strictest::Charge { class, .. } => *class,
        }
    }

    /// The units to charge: for `NotIncluded`, whatever (nothing is charged).
    pub fn cost(&self) -> u64 {
        match self {
            Strictest::NotIncluded(_) => 1,
            Strictest::Charge { cost, .. } => *cost,
        }
    }
}

/// The strictest outcome for a request with this head whose body cannot be
/// read, in `tier`. Candidates: every class the head allows
/// ([`head_candidates`]), in config order. The first not included in the
/// tier refuses the request; else the one whose cell has the smallest hard
/// limit (ties: the first) is charged. `None`: the head allows no class, or
/// there is no such tier.
pub fn strictest(config: &Config, head: &RequestHead, tier: TierId) -> Option<Strictest> {
    let candidates = head_candidates(config, head).classes;
    let mut tightest: Option<(ClassId, u64)> = None;
    for class in candidates {
        match config.cell(tier, class)? {
            Cell::NotIncluded => return Some(Strictest::NotIncluded(class)),
            Cell::Limited(stack) => {
                let hard = stack.iter().map(|l| l.hard).min().unwrap_or(0);
                if tightest.is_none_or(|(_, h)| hard < h) {
                    tightest = Some((class, hard));
                }
            }
        }
    }
    let (class, _) = tightest?;
    Some(Strictest::Charge { class, cost: highest_cost(config.class(class)?) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::read_body;
    use crate::testing::{demo_config, head};
    use serde_json::{json, Value};

    fn post(path: &str) -> RequestHead {
        head(&[(":method", "POST"), (":path", path)])
    }

    fn id(config: &Config, name: &str) -> ClassId {
        ClassId(config.classes.iter().position(|c| c.name == name).unwrap())
    }

    fn config_from(doc: Value) -> Config {
        Config::from_json(doc.to_string().as_bytes()).unwrap()
    }

    /// The demo matrix with `unreadable_body` set.
    fn demo(policy: &str) -> Config {
        let mut doc: Value = serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["unreadable_body"] = json!(policy);
        config_from(doc)
    }

    /// One tier, `free`; `classes` and the free tier's `limits` as given.
    fn matrix(classes: Value, limits: Value, policy: &str) -> Config {
        config_from(json!({
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": classes,
            "tiers": {"free": {"limits": limits}},
            "unreadable_body": policy,
        }))
    }

    const DEEP_RESEARCH_PADDED: &[u8] = br#"{"model": "o3-deep-research", "messages": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#;

    #[test]
    fn the_refuse_policy_is_the_default() {
        assert_eq!(demo_config().unreadable_body, UnreadableBody::Refuse);
        assert_eq!(demo("strictest").unreadable_body, UnreadableBody::Strictest);
    }

    #[test]
    fn an_unknown_policy_is_a_config_error_with_its_path() {
        let mut doc: Value = serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["unreadable_body"] = json!("ignore");
        let err = Config::from_json(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "unreadable_body: must be \"refuse\" or \"strictest\", got \"ignore\"");
    }

    #[test]
    fn a_body_rule_over_an_unreadable_body_is_refused_not_classified_as_the_fallback_class() {
        let config = demo_config();
        let req = post("/v1/chat/completions");
        let too_deep = read_body(Some(DEEP_RESEARCH_PADDED), false);
        assert_eq!(classify_body(&config, &req, &too_deep), BodyVerdict::Refuse(Unreadable::TooDeep));
        let too_large = read_body(None, true);
        assert_eq!(classify_body(&config, &req, &too_large), BodyVerdict::Refuse(Unreadable::TooLarge));
        let garbage = read_body(Some(b"{\"model\": \"o3-deep-research\", oops}"), false);
        assert!(matches!(classify_body(&config, &req, &garbage), BodyVerdict::Refuse(Unreadable::NotJson(_))));
    }

    #[test]
    fn bodies_upstreams_accept_are_classified_by_what_they_say() {
        let config = demo_config();
        let req = post("/v1/chat/completions");
        for body in [
            &br#"{"model": "o3-deep-research", "temperature": NaN}"#[..],
            br#"{"model": "o3-deep-research", "messages": [{"content": "\ud800"}]}"#,
            b"\xEF\xBB\xBF{\"model\": \"o3-deep-research\"}",
        ] {
            let read = read_body(Some(body), false);
            assert_eq!(classify_body(&config, &req, &read), BodyVerdict::Class(Some(id(&config, "deep_research"))));
        }
    }

    #[test]
    fn no_body_is_classified_as_a_body_without_the_fields() {
        let config = demo_config();
        let read = read_body(None, false);
        assert_eq!(
            classify_body(&config, &post("/v1/chat/completions"), &read),
            BodyVerdict::Class(Some(id(&config, "drafts")))
        );
    }

    #[test]
    fn an_unreadable_body_that_decides_nothing_is_classified_as_usual() {
        // Decided by the path, fixed cost: the body does not matter.
        let config = matrix(
            json!([{"name": "deep", "match": [{"body": [{"field": "model", "equals": "o3"}]}]},
                   {"name": "chat", "match": [{"path": {"prefix": "/v1/chat"}}]},
                   {"name": "files", "match": [{"path": {"prefix": "/v1/files"}}], "cost": {"bytes": {"per": 10}}},
                   {"name": "jsonl", "match": [{"path": {"prefix": "/v1/uploads"}}], "cost": {"records": {"jsonl": true}}}]),
            json!({"deep": {"hard": 1, "window": "day"}, "chat": {"hard": 10, "window": "day"},
                   "files": {"hard": 10, "window": "day"}, "jsonl": {"hard": 10, "window": "day"}}),
            "refuse",
        );
        // "deep" has a body rule but its head conditions (any method, path) hold everywhere:
        // the chat path is still body-decided.
        let not_json = read_body(Some(b"not json"), false);
        assert_eq!(
            classify_body(&config, &post("/v1/chat/completions"), &not_json),
            BodyVerdict::Refuse(Unreadable::NotJson("expected ident at line 1 column 2".into()))
        );
        let config = matrix(
            json!([{"name": "chat", "match": [{"path": {"prefix": "/v1/chat"}}], "cost": {"fixed": 2}},
                   {"name": "files", "match": [{"path": {"prefix": "/v1/files"}}], "cost": {"bytes": {"per": 10}}},
                   {"name": "jsonl", "match": [{"path": {"prefix": "/v1/uploads"}}], "cost": {"records": {"jsonl": true}}}]),
            json!({"chat": {"hard": 10, "window": "day"}, "files": {"hard": 10, "window": "day"},
                   "jsonl": {"hard": 10, "window": "day"}}),
            "refuse",
        );
        // Pages and lines are counted from the bytes, JSON or not.
        let lines = read_body(Some(b"{\"a\": 1}\n{\"a\": 2}\n"), false);
        assert_eq!(
            classify_body(&config, &post("/v1/uploads"), &lines),
            BodyVerdict::Class(Some(id(&config, "jsonl")))
        );
        let raw = read_body(Some(b"\x00\xff binary"), false);
        assert_eq!(classify_body(&config, &post("/v1/files/a"), &raw), BodyVerdict::Class(Some(id(&config, "files"))));
        // ...but not when the filter never read them.
        let too_large = read_body(None, true);
        assert_eq!(classify_body(&config, &post("/v1/files/a"), &too_large), BodyVerdict::Refuse(Unreadable::TooLarge));
    }

    #[test]
    fn costs_read_from_the_body_depend_on_it() {
        let config = matrix(
            json!([{"name": "chat", "match": [{"path": {"prefix": "/v1/chat"}}], "cost": {"tokens": {}}},
                   {"name": "batch", "match": [{"path": {"prefix": "/v1/batches"}}], "cost": {"records": {"field": "requests"}}},
                   {"name": "weighted", "match": [{"path": {"prefix": "/v1/weighted"}}], "cost": {"fixed": 1, "models": {"o3": 5}}},
                   {"name": "pages", "match": [{"path": {"prefix": "/v1/pages"}}], "cost": {"bytes": {}, "models": {"o3": 5}}}]),
            json!({"chat": {"hard": 10, "window": "day"}, "batch": {"hard": 10, "window": "day"},
                   "weighted": {"hard": 10, "window": "day"}, "pages": {"hard": 10, "window": "day"}}),
            "strictest",
        );
        let not_json = read_body(Some(b"{\"model\": \"o3\""), false);
        for path in ["/v1/chat", "/v1/batches", "/v1/weighted"] {
            assert_eq!(classify_body(&config, &post(path), &not_json), BodyVerdict::Strictest, "{path}");
        }
        // A body that is not JSON at all names no model to any upstream; one too deep may.
        assert_eq!(
            classify_body(&config, &post("/v1/pages"), &not_json),
            BodyVerdict::Class(Some(id(&config, "pages")))
        );
        let too_deep = read_body(Some(DEEP_RESEARCH_PADDED), false);
        assert_eq!(classify_body(&config, &post("/v1/pages"), &too_deep), BodyVerdict::Strictest);
    }

    #[test]
    fn strictest_refuses_a_class_outside_the_plan_the_head_allows() {
        let config = demo("strictest");
        let free = config.tier_by_name("free").unwrap();
        let s = strictest(&config, &post("/v1/chat/completions"), free).unwrap();
        assert_eq!(s, Strictest::NotIncluded(id(&config, "deep_research")));
        assert_eq!(s.class(), id(&config, "deep_research"));
    }

    #[test]
    fn strictest_charges_the_smallest_hard_limit_at_its_highest_cost() {
        let config = demo("strictest");
        let pro = config.tier_by_name("pro").unwrap();
        // Pro: deep research 3 a day, summaries 50, drafts 100.
        assert_eq!(
            strictest(&config, &post("/v1/chat/completions"), pro),
            Some(Strictest::Charge { class: id(&config, "deep_research"), cost: 1 })
        );
        // The path alone decides: that class, whatever the body.
        assert_eq!(
            strictest(&config, &post("/v1/projects/p/drafts"), pro),
            Some(Strictest::Charge { class: id(&config, "drafts"), cost: 1 })
        );
        assert_eq!(strictest(&config, &head(&[(":method", "GET"), (":path", "/v1/models")]), pro), None);
    }

    #[test]
    fn strictest_costs_take_the_largest_multiplier_and_ties_go_to_the_first() {
        let config = matrix(
            json!([{"name": "weighted", "match": [{"body": [{"field": "model", "prefix": "o3"}]}], "cost": {"fixed": 2, "models": {"o3*": 5, "mini": 0.5}}},
                   {"name": "tokens", "match": [{"body": [{"field": "stream", "equals": true}]}], "cost": {"tokens": {}}},
                   {"name": "rest"}]),
            json!({"weighted": {"hard": 10, "window": "day"}, "tokens": {"hard": 10, "window": "day"},
                   "rest": {"hard": 100, "window": "day"}}),
            "strictest",
        );
        let free = config.tier_by_name("free").unwrap();
        let s = strictest(&config, &post("/v1/chat"), free).unwrap();
        assert_eq!(s, Strictest::Charge { class: id(&config, "weighted"), cost: 10 });
        let mut tokens_first = config.clone();
        if let Some(Cell::Limited(l)) = tokens_first.tiers[0].cells.get_mut(1) {
            l[0].hard = 5;
        }
        // Metered from the body: no bound without it.
        let s = strictest(&tokens_first, &post("/v1/chat"), free).unwrap();
        assert_eq!(s, Strictest::Charge { class: id(&config, "tokens"), cost: u64::MAX });
    }

    #[test]
    fn strictest_includes_the_default_class_when_only_body_rules_match() {
        let mut config = matrix(
            json!([{"name": "deep", "match": [{"body": [{"field": "model", "equals": "o3"}]}]},
                   {"name": "rest"}]),
            json!({"deep": {"hard": 50, "window": "day"}, "rest": {"hard": 5, "window": "day"}}),
            "strictest",
        );
        let free = config.tier_by_name("free").unwrap();
        assert_eq!(strictest(&config, &post("/x"), free), Some(Strictest::Charge { class: ClassId(0), cost: 1 }));
        config.default_class = Some(ClassId(1));
        assert_eq!(strictest(&config, &post("/x"), free), Some(Strictest::Charge { class: ClassId(1), cost: 1 }));
        assert_eq!(strictest(&config, &post("/x"), TierId(7)), None);
    }
}
