//! Config validation: every refusal names the JSON path and the reason.

use super::*;
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "identity": {"user": [{"header": "x-user-id"}], "tier": [{"header": "x-plan"}], "default_tier": "free"},
        "classes": [
            {"name": "drafts", "match": [{"path": {"prefix": "/v1/chat"}}]},
            {"name": "deep_research", "match": [{"path": {"prefix": "/v1/research"}}]}
        ],
        "tier_order": ["free", "pro"],
        "tiers": {
            "free": {"limits": {
                "drafts": {"soft": 20, "hard": 30, "window": "day"},
                "deep_research": {"included": false}
            }},
            "pro": {"limits": {
                "drafts": {"hard": 300, "window": "month", "scope": "workspace"},
                "deep_research": {"hard": 3, "window": "5h"}
            }}
        }
    })
}

fn error_of(doc: &Value) -> String {
    match Config::from_json(doc.to_string().as_bytes()) {
        Ok(_) => panic!("expected the config to be refused"),
        Err(e) => e.to_string(),
    }
}

/// `doc` with `value` set at a JSON pointer (the last segment may be new).
fn with(mut doc: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}")) {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("{parent} is {other}"),
    }
    doc
}

#[test]
fn accepts_a_complete_config() {
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.tiers.len(), 2);
    assert_eq!(config.tiers[0].upgrade_to, Some(TierId(1)));
    assert_eq!(config.tiers[1].upgrade_to, None);
    assert!(matches!(config.tiers[0].cells[1], Cell::NotIncluded));
    let Cell::Limited(l) = &config.tiers[0].cells[0] else { panic!() };
    let [l] = l.as_slice() else { panic!() };
    assert_eq!(l.warn_levels, vec![20, 21, 29]);
    assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn the_demo_config_is_valid() {
    crate::testing::demo_config();
}

#[test]
fn hard_must_exceed_soft() {
    let doc = with(base(), "/tiers/free/limits/drafts/hard", json!(20));
    assert_eq!(error_of(&doc), "tiers.free.limits.drafts.hard: must be greater than soft (20)");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let doc = with(base(), "/tiers/free/limits/drafts/hadr", json!(3));
    assert!(
        error_of(&doc).starts_with(
            "tiers.free.limits.drafts.hadr: unknown field `hadr`, expected one of `included`, `soft`, `hard`"
        ),
        "{}",
        error_of(&doc)
    );
    let mut doc = base();
    doc["identity"]["users"] = json!([]);
    assert!(error_of(&doc).starts_with("identity.users: unknown field `users`"), "{}", error_of(&doc));
    let doc = with(base(), "/classes/1/match/0/path/prefixx", json!("/x"));
    assert!(
        error_of(&doc).starts_with("classes[1].match[0].path.prefixx: unknown field `prefixx`"),
        "{}",
        error_of(&doc)
    );
}

#[test]
fn wrong_types_name_the_value() {
    let doc = with(base(), "/tiers/pro/limits/deep_research/hard", json!("three"));
    assert!(
        error_of(&doc).starts_with("tiers.pro.limits.deep_research.hard: invalid type: string \"three\""),
        "{}",
        error_of(&doc)
    );
    let doc = with(base(), "/tiers/pro/limits/deep_research/hard", json!(-1));
    assert!(error_of(&doc).starts_with("tiers.pro.limits.deep_research.hard: invalid value"), "{}", error_of(&doc));
}

#[test]
fn every_tier_must_cover_every_class() {
    let mut doc = base();
    doc["tiers"]["pro"]["limits"].as_object_mut().unwrap().remove("deep_research");
    assert!(error_of(&doc).starts_with("tiers.pro.limits.deep_research: missing"), "{}", error_of(&doc));
    let doc = with(base(), "/tiers/pro/limits/summaries", json!({"hard": 1, "window": "day"}));
    assert!(error_of(&doc).starts_with("tiers.pro.limits.summaries: no class named \"summaries\""));
}

#[test]
fn references_must_exist() {
    let doc = with(base(), "/identity/default_tier", json!("gold"));
    assert_eq!(error_of(&doc), "identity.default_tier: no tier named \"gold\" (tiers: free, pro)");
    let mut doc = base();
    doc["default_class"] = json!("summaries");
    assert_eq!(error_of(&doc), "default_class: no class named \"summaries\"");
    let mut doc = base();
    doc["tiers"]["free"]["upgrade_to"] = json!("free");
    assert_eq!(error_of(&doc), "tiers.free.upgrade_to: must name another tier");
}

#[test]
fn windows_are_checked() {
    for (window, ok) in [
        ("day", true),
        ("5h", true),
        ("90s", true),
        ("7d", true),
        ("0h", false),
        ("fortnight", false),
        ("h", false),
        ("400d", false),
        ("", false),
    ] {
        let doc = with(base(), "/tiers/free/limits/drafts/window", json!(window));
        let result = Config::from_json(doc.to_string().as_bytes());
        assert_eq!(result.is_ok(), ok, "{window}: {result:?}");
        if let Err(e) = result {
            assert_eq!(e.path, "tiers.free.limits.drafts.window");
        }
    }
}

#[test]
fn behaviours_past_the_limit_need_their_settings() {
    let doc = with(base(), "/tiers/free/limits/drafts/at_hard", json!("degrade"));
    assert!(error_of(&doc).starts_with("tiers.free.limits.drafts.degrade: missing"), "{}", error_of(&doc));
    let mut doc = with(base(), "/tiers/free/limits/drafts/at_hard", json!("overage"));
    Config::from_json(doc.to_string().as_bytes()).unwrap();
    doc["tiers"]["free"]["limits"]["drafts"]["queue"] = json!({"cap": 3});
    assert_eq!(error_of(&doc), "tiers.free.limits.drafts.queue: only applies with \"at_hard\": \"queue\"");
    let doc = with(base(), "/tiers/free/limits/drafts/at_hard", json!("explode"));
    assert!(error_of(&doc).starts_with("tiers.free.limits.drafts.at_hard: must be one of"));
    let mut doc = with(base(), "/tiers/free/limits/drafts/past_soft", json!("degrade"));
    doc["tiers"]["free"]["limits"]["drafts"]["degrade"] = json!({"header": {"name": ":path", "value": "/x"}});
    assert_eq!(error_of(&doc), "tiers.free.limits.drafts.degrade.header.name: \":path\" cannot be set by the filter");
}

#[test]
fn not_included_cells_take_no_limits() {
    let doc = with(base(), "/tiers/free/limits/deep_research", json!({"included": false, "hard": 3}));
    assert_eq!(
        error_of(&doc),
        "tiers.free.limits.deep_research.hard: has no meaning in a cell with \"included\": false"
    );
}

#[test]
fn zero_limits_are_refused() {
    let doc = with(base(), "/tiers/pro/limits/deep_research/hard", json!(0));
    assert!(error_of(&doc).starts_with("tiers.pro.limits.deep_research.hard: must be greater than 0"));
}

#[test]
fn limits_and_caps_stay_within_the_unit_bound() {
    let max = crate::units::MAX_UNITS;
    let past = max + 1;
    let cell = "/tiers/pro/limits/deep_research";
    let refused = |raw: Value, field: &str, got: u64| {
        assert_eq!(
            error_of(&with(base(), cell, raw)),
            format!("tiers.pro.limits.deep_research.{field}: must be at most 9007199254740991, got {got}")
        );
    };
    refused(json!({"hard": past, "window": "day"}), "hard", past);
    refused(json!({"hard": u64::MAX, "window": "day"}), "hard", u64::MAX);
    refused(json!({"soft": past, "hard": 3, "window": "day"}), "soft", past);
    refused(json!({"hard": 3, "window": "day", "at_hard": "overage", "overage": {"cap": past}}), "overage.cap", past);
    refused(json!({"hard": 3, "window": "day", "at_hard": "queue", "queue": {"cap": past}}), "queue.cap", past);
    let degrade = json!({"header": {"name": "x-tier", "value": "small"}, "limit": past});
    refused(json!({"hard": 3, "window": "day", "at_hard": "degrade", "degrade": degrade}), "degrade.limit", past);
    // The bound itself is a valid limit, and a cap on top of it saturates the ceiling.
    let doc = with(base(), cell, json!({"hard": max, "window": "day", "at_hard": "overage", "overage": {"cap": max}}));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    let Cell::Limited(l) = &config.tiers[1].cells[1] else { panic!() };
    let [l] = l.as_slice() else { panic!() };
    assert_eq!((l.hard, l.request_ceiling()), (max, max));
}

#[test]
fn match_rules_are_checked() {
    let doc = with(base(), "/classes/0/match/0/path", json!({"prefix": "/a", "exact": "/b"}));
    assert_eq!(error_of(&doc), "classes[0].match[0].path: must set exactly one of \"exact\", \"prefix\" or \"glob\"");
    let doc = with(base(), "/classes/0/match/0/path", json!({"glob": "/v1/***"}));
    assert!(error_of(&doc).starts_with("classes[0].match[0].path.glob:"));
    let doc = with(base(), "/classes/0/match/0/path", json!({"prefix": "v1"}));
    assert_eq!(error_of(&doc), "classes[0].match[0].path.prefix: must start with '/', got \"v1\"");
    let mut doc = base();
    doc["classes"][0]["match"][0]["body"] = json!([{"field": "model"}]);
    assert!(error_of(&doc).starts_with("classes[0].match[0].body[0]: must set exactly one test"));
    let mut doc = base();
    doc["classes"][1]["name"] = json!("drafts");
    assert_eq!(error_of(&doc), "classes[1].name: duplicate class name \"drafts\"");
    let mut doc = base();
    doc["classes"][1]["name"] = json!("Deep Research");
    assert!(error_of(&doc).starts_with("classes[1].name: \"Deep Research\" must be"));
}

#[test]
fn identity_sources_are_checked() {
    let doc = with(base(), "/identity/user", json!([{"header": "x-user-id", "jwt_claim": "sub"}]));
    assert_eq!(error_of(&doc), "identity.user[0]: must set exactly one of \"header\", \"jwt_claim\" or \"property\"");
    let doc = with(base(), "/identity/user", json!([]));
    assert!(error_of(&doc).starts_with("identity.user: must list at least one source"));
    let doc = with(base(), "/identity/user", json!([{"header": "x user"}]));
    assert_eq!(error_of(&doc), "identity.user[0].header: \"x user\" is not a header name");
}

#[test]
fn callers_without_a_workspace_are_refused_by_pooled_cells_unless_told_otherwise() {
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.identity.missing_workspace, MissingWorkspace::Reject);
    let doc = with(base(), "/identity/missing_workspace", json!("user"));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(config.identity.missing_workspace, MissingWorkspace::User);
    let doc = with(base(), "/identity/missing_workspace", json!("reject"));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(config.identity.missing_workspace, MissingWorkspace::Reject);
    let doc = with(base(), "/identity/missing_workspace", json!("alone"));
    assert_eq!(error_of(&doc), "identity.missing_workspace: must be \"reject\" or \"user\", got \"alone\"");
    let doc = with(base(), "/copy", json!({"workspace_required": "Pick a {unknown}"}));
    assert!(error_of(&doc).starts_with("copy.workspace_required: unknown placeholder {unknown}"), "{}", error_of(&doc));
}

#[test]
fn a_class_pooled_in_two_tiers_has_one_window() {
    let mut doc = base();
    doc["tiers"]["team"] = json!({"limits": {
        "drafts": {"hard": 900, "window": "day", "scope": "workspace"},
        "deep_research": {"hard": 9, "window": "day", "scope": "workspace"}
    }});
    doc["tier_order"] = json!(["free", "pro", "team"]);
    assert_eq!(
        error_of(&doc),
        "tiers.team.limits.drafts.window: must be the same as in tier \"pro\" (\"month\"): both pool \"drafts\" by \
         workspace, and members of one workspace share that counter whatever their plan"
    );
    // The same window, however it is spelled, is fine; so is a per-user cell with another window.
    doc["tiers"]["team"]["limits"]["drafts"]["window"] = json!("month");
    doc["tiers"]["free"]["limits"]["drafts"]["window"] = json!("week");
    assert!(Config::from_json(doc.to_string().as_bytes()).is_ok());
    doc["tiers"]["pro"]["limits"]["deep_research"] = json!({"hard": 3, "window": "300m", "scope": "workspace"});
    doc["tiers"]["team"]["limits"]["deep_research"]["window"] = json!("5h");
    assert!(Config::from_json(doc.to_string().as_bytes()).is_ok());
}

/// `doc` with its JSON keys sorted at every depth, as Istio's `pluginConfig`
/// (a protobuf Struct) and Envoy Gateway's `config` reach Envoy.
fn keys_sorted(doc: &Value) -> Value {
    match doc {
        Value::Object(members) => {
            let mut sorted: Vec<_> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), keys_sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(keys_sorted).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_upgrade_order_is_tier_order_whatever_the_order_of_the_keys() {
    let mut doc = base();
    // Sorted, "enterprise" < "free" < "pro": key order would make Enterprise the cheapest plan.
    doc["tiers"]["enterprise"] = json!({"limits": {
        "drafts": {"hard": 9000, "window": "day"},
        "deep_research": {"hard": 90, "window": "5h"}
    }});
    doc["tier_order"] = json!(["free", "pro", "enterprise"]);
    for doc in [doc.clone(), keys_sorted(&doc)] {
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let names: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["free", "pro", "enterprise"]);
        let upgrade = |t: usize| config.tiers[t].upgrade_to.map(|u| config.tiers[u.0].name.as_str());
        assert_eq!([upgrade(0), upgrade(1), upgrade(2)], [Some("pro"), Some("enterprise"), None]);
    }
    // An explicit upgrade_to still wins over the next tier in the list.
    doc["tiers"]["free"]["upgrade_to"] = json!("enterprise");
    let config = Config::from_json(keys_sorted(&doc).to_string().as_bytes()).unwrap();
    assert_eq!(config.tiers[0].upgrade_to.map(|u| u.0), Some(2));
}

#[test]
fn tier_order_is_required_with_two_tiers_and_must_list_each_once() {
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("tier_order");
    assert_eq!(
        error_of(&doc),
        "tier_order: missing: list the tiers (free, pro) in upgrade order, cheapest first; the order of the keys of \
         \"tiers\" is not kept (Istio and Envoy Gateway sort them)"
    );
    doc["tier_order"] = json!(["free", "pro", "team"]);
    assert_eq!(error_of(&doc), "tier_order[2]: no tier named \"team\" (tiers: free, pro)");
    doc["tier_order"] = json!(["free", "free"]);
    assert_eq!(error_of(&doc), "tier_order[1]: \"free\" is listed twice");
    doc["tier_order"] = json!(["pro"]);
    assert_eq!(error_of(&doc), "tier_order: missing the tier \"free\": list every tier once");
    doc["tier_order"] = json!("free, pro");
    assert!(error_of(&doc).starts_with("tier_order: "), "{}", error_of(&doc));
    // One tier needs no order; if given, it names that tier.
    let mut one = base();
    one.as_object_mut().unwrap().remove("tier_order");
    one["tiers"].as_object_mut().unwrap().remove("pro");
    assert!(Config::from_json(one.to_string().as_bytes()).is_ok());
    one["tier_order"] = json!(["free"]);
    assert!(Config::from_json(one.to_string().as_bytes()).is_ok());
}

#[test]
fn copy_cannot_break_header_values() {
    let mut doc = base();
    doc["classes"][0]["label"] = json!("Drafts\r\nSet-Cookie: x");
    assert!(error_of(&doc).starts_with("classes[0].label: must be 1 to 1000 characters"));
}

#[test]
fn calendar_settings_are_checked() {
    let mut doc = base();
    doc["calendar"] = json!({"utc_offset": "+25:00"});
    assert!(error_of(&doc).starts_with("calendar.utc_offset: \"+25:00\" is not a UTC offset"));
    doc["calendar"] = json!({"week_starts_on": "someday"});
    assert!(error_of(&doc).starts_with("calendar.week_starts_on:"));
    doc["calendar"] = json!({"utc_offset": "-05:30", "week_starts_on": "Sunday"});
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(config.calendar.alignment.utc_offset_minutes, -330);
    assert_eq!(config.calendar.alignment.week_start, 6);
}

#[test]
fn utc_offsets_parse_in_common_spellings() {
    assert_eq!(parse_utc_offset("+05:30"), Some(330));
    assert_eq!(parse_utc_offset("-0800"), Some(-480));
    assert_eq!(parse_utc_offset("+9"), Some(540));
    assert_eq!(parse_utc_offset("Z"), Some(0));
    assert_eq!(parse_utc_offset("+14:00"), Some(840));
    for bad in ["", "+", "05:30", "+15:00", "+05:60", "+5:3x", "+123"] {
        assert_eq!(parse_utc_offset(bad), None, "{bad}");
    }
}

#[test]
fn syntax_errors_and_empty_configs_are_clear() {
    assert!(Config::from_json(b"").unwrap_err().reason.contains("empty"));
    let e = Config::from_json(b"{\"identity\": ").unwrap_err();
    assert!(e.reason.contains("EOF"), "{e}");
    let e = Config::from_json(b" [] ").unwrap_err();
    assert_eq!(e.to_string(), ".: the configuration must be a JSON object");
}

#[test]
fn the_seeds_examples_are_expressible() {
    // envoy/examples/seeds.json: 4,500 standard and 300 premium actions and a
    // separate batch-record allowance; a free tier that degrades drafts; an
    // enterprise tier billed for overage.
    let config = Config::from_json(include_bytes!("../../../envoy/examples/seeds.json")).unwrap();
    let pro = config.tier_by_name("pro").unwrap();
    let cell = |tier, class: usize| match config.cell(tier, ClassId(class)) {
        Some(Cell::Limited(l)) if l.len() == 1 => l[0].clone(),
        _ => panic!("not limited"),
    };
    assert_eq!((cell(pro, 0).hard, cell(pro, 1).hard), (300, 4500));
    assert_eq!(cell(config.tier_by_name("free").unwrap(), 2).at_hard, AtHard::Degrade);
    assert_eq!(cell(config.tier_by_name("enterprise").unwrap(), 0).at_hard, AtHard::Overage);
    assert!(matches!(config.classes[3].cost, Cost::Records { .. }));
}

#[test]
fn a_schema_reference_is_accepted_and_ignored() {
    let mut doc = base();
    doc["$schema"] = json!("./quota-config.schema.json");
    assert!(Config::from_json(doc.to_string().as_bytes()).is_ok());
}

#[test]
fn endpoint_paths_are_normalised_like_request_paths() {
    let doc = with(base(), "/usage_endpoint", json!("/quota//me/"));
    let doc = with(doc, "/admin", json!({"path": "/%71uota/admin/", "secret": "s3cret-s3cret-s3cret-s3cret"}));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(config.usage_endpoint.as_deref(), Some("/quota/me"));
    assert_eq!(config.admin.as_ref().map(|a| a.path.as_str()), Some("/quota/admin"));
}

#[test]
fn admin_and_usage_endpoints_must_differ_once_normalised() {
    let doc = with(base(), "/usage_endpoint", json!("/quota"));
    let doc = with(doc, "/admin", json!({"path": "/quota/", "secret": "s3cret-s3cret-s3cret-s3cret"}));
    assert_eq!(error_of(&doc), "admin.path: must differ from usage_endpoint");
}

#[test]
fn max_counters_bounds_the_table_and_is_checked() {
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.counters.max_counters, DEFAULT_MAX_COUNTERS);
    assert_eq!(config.counters.layout().capacity(), 1_000_000);
    let doc = with(base(), "/counters", json!({"max_counters": 1000}));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    // Rounded up to whole buckets of 32.
    assert_eq!((config.counters.layout().buckets(), config.counters.layout().capacity()), (32, 1024));
    for (bad, got) in [
        (json!(31), "31"),
        (json!(0), "0"),
        (json!(100_000_001), "100000001"),
        (json!(u64::MAX), "18446744073709551615"),
    ] {
        assert_eq!(
            error_of(&with(base(), "/counters", json!({ "max_counters": bad }))),
            format!("counters.max_counters: must be between 32 and 100000000, got {got}")
        );
    }
    assert!(error_of(&with(base(), "/counters", json!({"max_counters": -1}))).starts_with("counters.max_counters"));
    assert!(error_of(&with(base(), "/counters", json!({"max_counters": "many"}))).starts_with("counters.max_counters"));
}

#[test]
fn max_body_bytes_has_a_documented_maximum() {
    let at_most = with(base(), "/max_body_bytes", json!(MAX_BODY_BYTES_LIMIT));
    assert_eq!(Config::from_json(at_most.to_string().as_bytes()).unwrap().max_body_bytes, 64 * 1024 * 1024);
    let over = with(base(), "/max_body_bytes", json!(MAX_BODY_BYTES_LIMIT + 1));
    assert_eq!(error_of(&over), "max_body_bytes: must be at most 67108864 (64 MiB), got 67108865");
    assert_eq!(error_of(&with(base(), "/max_body_bytes", json!(0))), "max_body_bytes: must be greater than 0");
}

#[test]
fn usage_reads_are_bounded_by_default_and_checked_by_path() {
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.usage_reads, UsageReads { per_minute: 120, burst: 30, per_worker_per_second: 1000 });
    let doc = with(base(), "/usage_endpoint", json!("/v1/quota"));
    let doc = with(doc, "/usage_reads", json!({"per_minute": 6, "burst": 2}));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(config.usage_reads, UsageReads { per_minute: 6, burst: 2, per_worker_per_second: 1000 });
    for (field, bad, message) in [
        ("per_minute", json!(0), "must be between 1 and 60000, got 0"),
        ("burst", json!(1001), "must be between 1 and 1000, got 1001"),
        ("per_worker_per_second", json!(100_001), "must be between 1 and 100000, got 100001"),
    ] {
        let doc = with(doc.clone(), &format!("/usage_reads/{field}"), bad);
        assert_eq!(error_of(&doc), format!("usage_reads.{field}: {message}"));
    }
    let no_endpoint = with(base(), "/usage_reads", json!({}));
    assert_eq!(error_of(&no_endpoint), "usage_reads: only applies with a \"usage_endpoint\"");
    let typo = with(with(base(), "/usage_endpoint", json!("/q")), "/usage_reads", json!({"per_min": 5}));
    assert!(error_of(&typo).starts_with("usage_reads"), "{}", error_of(&typo));
}

#[test]
fn unidentified_events_per_second_is_checked_by_path() {
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.observability.unidentified_events_per_second, 10);
    let off = with(base(), "/observability", json!({"unidentified_events_per_second": 0}));
    assert_eq!(Config::from_json(off.to_string().as_bytes()).unwrap().observability.unidentified_events_per_second, 0);
    let over = with(base(), "/observability", json!({"unidentified_events_per_second": 10_001}));
    assert_eq!(error_of(&over), "observability.unidentified_events_per_second: must be between 0 and 10000, got 10001");
}

#[test]
fn the_ledger_is_on_by_default_and_its_options_are_checked_by_path() {
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert!(config.observability.ledger && !config.observability.ledger_analytics);
    let off = with(base(), "/observability", json!({"ledger": false}));
    let off = Config::from_json(off.to_string().as_bytes()).unwrap().observability;
    assert!(!off.ledger && !off.keeps_ledger());
    let analytics = json!({"ledger": false, "ledger_analytics": true, "analytics": {"cluster": "events"}});
    let posted = Config::from_json(with(base(), "/observability", analytics).to_string().as_bytes()).unwrap();
    assert!(posted.observability.keeps_ledger() && !posted.observability.ledger);
    let nowhere = with(base(), "/observability", json!({"ledger_analytics": true}));
    assert_eq!(
        error_of(&nowhere),
        "observability.ledger_analytics: needs \"observability.analytics\": the cluster the records are POSTed to"
    );
    let wrong = with(base(), "/observability", json!({"ledger": "yes"}));
    assert!(error_of(&wrong).starts_with("observability.ledger: invalid type"), "{}", error_of(&wrong));
}

#[test]
fn stacked_limits_are_checked_with_their_paths() {
    let cell = "/tiers/pro/limits/drafts";
    let admin = json!({"path": "/quota/admin", "secret": "s3cret-s3cret-s3cret-s3cret"});
    let stack = |limits: Value| {
        let doc = with(with(base(), "/identity/workspace", json!([{"header": "x-workspace-id"}])), cell, limits);
        with(doc, "/admin", admin.clone())
    };
    let ok = stack(json!([
        {"scope": "workspace", "hard": 300, "window": "day"},
        {"scope": "user", "hard": 50, "window": "day", "admin_cap": true},
        {"scope": "user", "hard": 900, "window": "week"}
    ]));
    let config = Config::from_json(ok.to_string().as_bytes()).unwrap();
    let pro = config.tier_by_name("pro").unwrap();
    let limits = config.cell(pro, ClassId(0)).unwrap().limits();
    assert_eq!(
        limits.iter().map(|l| (l.scope, l.hard)).collect::<Vec<_>>(),
        [(Scope::Workspace, 300), (Scope::User, 50), (Scope::User, 900)]
    );
    assert!(limits[1].admin_cap);

    let refusals = [
        (json!([]), "tiers.pro.limits.drafts: a list of stacked limits must hold 1 to 6 limits, got 0"),
        (
            json!([{"hard": 5, "window": "day"}, {"hard": 9, "window": "day"}]),
            "tiers.pro.limits.drafts[1].window: limit [0] already counts \"day\" per user",
        ),
        (
            json!([{"scope": "workspace", "hard": 30, "window": "day"}, {"hard": 50, "window": "day"}]),
            "tiers.pro.limits.drafts[1].hard: 50 per user can never bind: the workspace pool of the same window holds only 30",
        ),
        (
            json!([{"hard": 5, "window": "day", "admin_cap": true}, {"hard": 9, "window": "week"}]),
            "tiers.pro.limits.drafts[0].admin_cap: only applies to a \"user\" limit stacked with a \"workspace\" pool",
        ),
        (
            json!([{"hard": 5, "window": "day", "included": false}]),
            "tiers.pro.limits.drafts[0].included: has no meaning in a stacked limit",
        ),
        (json!([{"hard": 5, "window": "fortnight"}]), "tiers.pro.limits.drafts[0].window: \"fortnight\" is not a window"),
        (json!([{"hard": 5, "window": "day", "colour": "red"}]), "tiers.pro.limits.drafts[0].colour: unknown field `colour`"),
        (
            json!([{"scope": "organisation", "hard": 500, "window": "day"}, {"hard": 5, "window": "day"}]),
            "tiers.pro.limits.drafts[0].scope: pools by organisation, but \"identity.organisation\" names no source",
        ),
        (json!("lots"), "tiers.pro.limits.drafts: invalid type: string \"lots\", expected a cell (an object) or a list"),
    ];
    for (limits, expected) in refusals {
        let error = error_of(&stack(limits.clone()));
        assert!(error.starts_with(expected), "{limits}: {error}");
    }
    // First-use windows of a member and of the pool open at different
    // times: a member's 5 hours may span two of the pool's.
    let first_use = stack(json!([{"scope": "workspace", "hard": 30, "window": "5h"}, {"hard": 50, "window": "5h"}]));
    assert!(Config::from_json(first_use.to_string().as_bytes()).is_ok());
    // Member caps are set through the admin endpoint: it must exist.
    let mut no_admin = ok.clone();
    no_admin.as_object_mut().unwrap().remove("admin");
    assert!(error_of(&no_admin)
        .starts_with("tiers.pro.limits.drafts[1].admin_cap: member caps are set through the admin endpoint"));
    // With a source, an organisation's pool stacks on the team's.
    let org = with(
        stack(
            json!([{"scope": "org", "hard": 500, "window": "day"}, {"scope": "workspace", "hard": 300, "window": "day"}]),
        ),
        "/identity/organisation",
        json!([{"header": "x-org-id"}]),
    );
    assert!(Config::from_json(org.to_string().as_bytes()).is_ok());
}

#[test]
fn member_caps_with_counters_in_redis_share_the_workspaces_slot() {
    let cell = "/tiers/pro/limits/drafts";
    let doc = |limits: Value, counters: Value| {
        let doc = with(base(), "/identity/workspace", json!([{"header": "x-workspace-id"}]));
        let doc = with(doc, "/identity/organisation", json!([{"header": "x-org-id"}]));
        let doc = with(doc, "/admin", json!({"path": "/quota/admin", "secret": "s3cret-s3cret-s3cret-s3cret"}));
        with(with(doc, cell, limits), "/counters", counters)
    };
    let team = json!([
        {"scope": "workspace", "hard": 300, "window": "day"},
        {"scope": "user", "hard": 50, "window": "day", "admin_cap": true}
    ]);
    let with_org = json!([
        {"scope": "org", "hard": 900, "window": "day"},
        {"scope": "workspace", "hard": 300, "window": "day"},
        {"scope": "user", "hard": 50, "window": "day", "admin_cap": true}
    ]);
    let exact = json!({"store": "redis", "redis": {"cluster": "redis"}});
    // In Redis, a member cap lives in its workspace's slot, beside the pool's counters.
    assert!(Config::from_json(doc(team, exact.clone()).to_string().as_bytes()).is_ok());
    // An organisation's pool puts the stack in the organisation's slot: not with a cap in Redis.
    assert_eq!(
        error_of(&doc(with_org.clone(), exact)),
        "tiers.pro.limits.drafts[2].admin_cap: with counters in Redis a member cap is kept in the workspace's hash \
         slot, and an \"organisation\" pool keeps this stack's counters in the organisation's: not both in one stack"
    );
    // In shared data, both.
    assert!(Config::from_json(doc(with_org, json!({"store": "shared_data"})).to_string().as_bytes()).is_ok());
}

fn with_prices() -> Value {
    let mut doc = base();
    doc["prices"] = json!({
        "currency": "USD",
        "models": {
            "gpt-4o": {"input": "2.50", "cached_input": "1.25", "output": "10.00"},
            "gpt-4o-mini*": {"input": "0.15", "cached_input": "0.075", "output": "0.60"},
            "o3*": {"input": "2.00", "cached_input": "0.50", "output": "8.00", "reasoning": "8.00"},
            "claude-sonnet-4*": {"input": "3.00", "cache_write": "3.75", "cached_input": "0.30", "output": "15.00"},
            "gpt-image-1": {"per_request": "0.04"},
            "free-model": {"input": "0", "output": 0}
        },
        "default": {"input": 5, "output": "15.00", "per_request": "0.001"}
    });
    doc
}

#[test]
fn a_price_table_is_read_exactly() {
    assert!(Config::from_json(base().to_string().as_bytes()).unwrap().prices.is_none());
    let config = Config::from_json(with_prices().to_string().as_bytes()).unwrap();
    let prices = config.prices.unwrap();
    assert_eq!(prices.currency().code(), "USD");
    let mini = prices.price_of(Some("gpt-4o-mini-2024-07-18")).unwrap();
    assert_eq!((mini.input, mini.cached_input, mini.cache_write, mini.output), (150_000, 75_000, 150_000, 600_000));
    let fallback = prices.price_of(Some("llama")).unwrap();
    assert_eq!((fallback.input, fallback.output, fallback.per_request), (5_000_000, 15_000_000, Some(1_000)));
    let free = prices.price_of(Some("free-model")).unwrap();
    assert_eq!(free.cost(&TokenKinds { input: 1_000, output: 1_000, ..TokenKinds::default() }), 0);
    let image = prices.price_of(Some("gpt-image-1")).unwrap();
    assert_eq!((image.input, image.output, image.per_request), (0, 0, Some(40_000)));
}

#[test]
fn prices_are_checked_with_their_paths() {
    let refused = |pointer: &str, value: Value| error_of(&with(with_prices(), pointer, value));
    assert_eq!(
        refused("/prices/currency", json!("usd")),
        "prices.currency: \"usd\" is not an ISO 4217 currency code (three capital letters): write \"USD\""
    );
    assert_eq!(
        refused("/prices/currency", json!("dollars")),
        "prices.currency: \"dollars\" is not an ISO 4217 currency code (three capital letters), e.g. \"USD\""
    );
    assert_eq!(
        refused("/prices/models/gpt-4o/input", json!("2,50")),
        "prices.models.gpt-4o.input: \"2,50\" is not an amount: digits with an optional '.' and up to 6 decimals, \
         e.g. \"2.50\" (no sign, exponent, spaces or separators)"
    );
    assert_eq!(
        refused("/prices/models/gpt-4o/cached_input", json!("1.2500001")),
        "prices.models.gpt-4o.cached_input: \"1.2500001\" has 7 decimals: at most 6 (a millionth)"
    );
    assert_eq!(
        refused("/prices/models/o3*/reasoning", json!("-8")),
        "prices.models.o3*.reasoning: \"-8\" is negative: an amount is 0 or more, e.g. \"8\""
    );
    assert_eq!(
        refused("/prices/default/output", json!(-15)),
        "prices.default.output: -15 is negative: an amount is 0 or more"
    );
    assert_eq!(
        refused("/prices/models/gpt-4o/input", json!(2.5)),
        "prices.models.gpt-4o.input: 2.5 is a JSON number with a fraction or an exponent, read as a float that may \
         not be the amount written: write it as a string, e.g. \"2.50\""
    );
    assert_eq!(
        refused("/prices/default/per_request", json!(9_007_199_255u64)),
        "prices.default.per_request: 9007199255 is more than the largest amount, 9007199254.740991"
    );
    assert_eq!(
        refused("/prices/models/gpt-4o/per_request", json!("9007199254.740992")),
        "prices.models.gpt-4o.per_request: \"9007199254.740992\" is more than the largest amount, 9007199254.740991"
    );
    assert_eq!(
        refused("/prices/models/gpt-4o", json!({"input": "2.50"})),
        "prices.models.gpt-4o.output: missing: the price of a million output tokens"
    );
    assert_eq!(
        refused("/prices/models/gpt-4o", json!({"output": "10", "per_request": "0.01"})),
        "prices.models.gpt-4o.input: missing: the price of a million input tokens"
    );
    assert_eq!(
        refused("/prices/default", json!({})),
        "prices.default: prices nothing: set \"input\" and \"output\" (per million tokens), or \"per_request\""
    );
    assert_eq!(
        refused("/prices/models/o3*mini", json!({"input": 1, "output": 1})),
        "prices.models.o3*mini: '*' may only end a name, once, as a prefix: e.g. \"o3*\""
    );
    assert_eq!(
        refused("/prices/models/*", json!({"input": 1, "output": 1})),
        "prices.models.*: matches every model: price those with \"default\""
    );
    assert_eq!(
        error_of(&with(base(), "/prices", json!({"currency": "EUR", "models": {}}))),
        "prices: must set \"models\" or \"default\": it prices no model"
    );
}

#[test]
fn price_tables_refuse_unknown_fields_and_other_types() {
    let starts = |doc: Value, prefix: &str| {
        let e = error_of(&doc);
        assert!(e.starts_with(prefix), "{e}");
    };
    starts(
        with(with_prices(), "/prices/models/gpt-4o/inptu", json!("1")),
        "prices.models.gpt-4o.inptu: unknown field `inptu`, expected one of `input`, `cached_input`",
    );
    starts(with(with_prices(), "/prices/curency", json!("USD")), "prices.curency: unknown field `curency`");
    starts(
        with(with_prices(), "/prices/default/input", json!(true)),
        "prices.default.input: invalid type: boolean `true`, expected an amount as a string, e.g. \"2.50\"",
    );
    let mut doc = with_prices();
    doc["prices"].as_object_mut().unwrap().remove("currency");
    starts(doc, "prices: missing field `currency`");
}

#[test]
fn a_token_count_names_its_kinds() {
    let doc = |count: &str| {
        let mut doc = base();
        doc["classes"][0]["cost"] = json!({"tokens": {"count": count}});
        doc
    };
    let config = Config::from_json(doc("output").to_string().as_bytes()).unwrap();
    assert!(matches!(config.classes[0].cost, Cost::Tokens { count: TokenCount::Output, .. }));
    assert_eq!(
        error_of(&doc("completion")),
        "classes[0].cost.tokens.count: must be \"all\", \"input\" or \"output\", got \"completion\""
    );
}

#[test]
fn error_formats_and_busy_answers_are_checked() {
    let doc = with(base(), "/classes/1/error_format", json!("claude"));
    assert_eq!(error_of(&doc), r#"classes[1].error_format: must be "auto", "openai" or "anthropic", got "claude""#);
    let doc = with(base(), "/classes/0/error_format", json!("anthropic"));
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(config.classes[0].error_format, crate::negotiate::ErrorFormat::Anthropic);
    assert_eq!(config.classes[1].error_format, crate::negotiate::ErrorFormat::Auto);
    let doc = with(base(), "/upstream_busy", json!({"statuses": [429, 600]}));
    assert_eq!(error_of(&doc), "upstream_busy.statuses[1]: must be a status from 400 to 599, got 600");
    let doc = with(base(), "/upstream_busy", json!({"retry": 3}));
    assert!(error_of(&doc).starts_with("upstream_busy.retry: unknown field `retry`"), "{}", error_of(&doc));
    let doc = with(base(), "/tiers/free/copy", json!({"upstream_busy": "Busy, back in {retry_inn}."}));
    assert!(error_of(&doc).starts_with("tiers.free.copy.upstream_busy: unknown placeholder {retry_inn}"));
    let doc = with(base(), "/response_headers", json!({"openai_ratelimit": "yes"}));
    assert!(error_of(&doc).starts_with("response_headers.openai_ratelimit: invalid type"), "{}", error_of(&doc));
    let config = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.upstream_busy, crate::busy::BusyPolicy::default());
    assert!(!config.response_headers.openai_ratelimit);
}
