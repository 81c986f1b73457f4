//! Stage one against odd and hostile documents: every refusal names the
//! JSON path, in serde's words, and nothing the document does crashes.

use super::*;
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "identity": {"user": [{"header": "x-user-id"}], "tier": [{"header": "x-plan"}], "default_tier": "free"},
        "classes": [
            {"name": "drafts", "match": [{"path": {"prefix": "/v1/chat"}}]},
            {"name": "research", "match": [{"methods": ["POST"], "path": {"prefix": "/v1/research"}}]}
        ],
        "tier_order": ["free", "pro"],
        "tiers": {
            "free": {"label": "Free", "limits": {
                "drafts": {"soft": 20, "hard": 30, "window": "day"},
                "research": {"included": false}
            }},
            "pro": {"limits": {
                "drafts": [{"hard": 300, "window": "month"}, {"hard": 20, "window": "hour"}],
                "research": {"hard": 3, "window": "5h"}
            }}
        }
    })
}

/// The error of `text`, which must be refused.
fn error_of(text: &str) -> String {
    match Config::from_json(text.as_bytes()) {
        Ok(_) => panic!("expected the config to be refused: {text}"),
        Err(e) => e.to_string(),
    }
}

/// `base()` as compact text with `member` (exactly as serde_json writes
/// it) followed by `extra` (a member written again, or another one).
fn base_with(member: &str, extra: &str) -> String {
    let text = base().to_string();
    assert!(text.contains(member), "{member} not in {text}");
    text.replacen(member, &format!("{member},{extra}"), 1)
}

fn with(pointer: &str, value: Value) -> String {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    doc.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.to_string(), value);
    doc.to_string()
}

#[test]
fn the_base_document_is_valid() {
    Config::from_json(base().to_string().as_bytes()).unwrap();
}

#[test]
fn a_field_written_twice_is_refused_at_every_depth() {
    let cases = [
        (
            r#""tier_order":["free","pro"]"#,
            r#""tier_order":["free","pro"]"#,
            "tier_order: duplicate field `tier_order`",
        ),
        (
            r#""default_tier":"free""#,
            r#""default_tier":"pro""#,
            "identity.default_tier: duplicate field `default_tier`",
        ),
        (r#""prefix":"/v1/chat""#, r#""prefix":"/v2""#, "classes[0].match[0].path.prefix: duplicate field `prefix`"),
        (r#""methods":["POST"]"#, r#""methods":[]"#, "classes[1].match[0].methods: duplicate field `methods`"),
        (r#""label":"Free""#, r#""label":"Gratis""#, "tiers.free.label: duplicate field `label`"),
        (r#""hard":30"#, r#""hard":3000"#, "tiers.free.limits.drafts.hard: duplicate field `hard`"),
        (r#""hard":20"#, r#""hard":2000"#, "tiers.pro.limits.drafts[1].hard: duplicate field `hard`"),
        (
            r#""included":false"#,
            r#""included":true"#,
            "tiers.free.limits.research.included: duplicate field `included`",
        ),
    ];
    for (member, again, expected) in cases {
        assert_eq!(error_of(&base_with(member, again)), expected, "{member}");
    }
    // Even when the second value is null, or of the wrong type.
    assert_eq!(
        error_of(&base_with(r#""hard":30"#, r#""hard":null"#)),
        "tiers.free.limits.drafts.hard: duplicate field `hard`"
    );
    assert_eq!(
        error_of(&base_with(r#""hard":30"#, r#""hard":"x""#)),
        "tiers.free.limits.drafts.hard: duplicate field `hard`"
    );
    // A field and its alias are one field.
    let text = base_with(r#""default_tier":"free""#, r#""org":[],"organisation":[]"#);
    assert_eq!(error_of(&text), "identity.organisation: duplicate field `organisation`");
}

#[test]
fn a_name_written_twice_in_a_map_is_refused() {
    // Maps by name (tiers, a tier's limits, prices by model): one of two
    // entries of one name would silently do nothing, so neither is taken.
    let text = base_with(r#""research":{"hard":3,"window":"5h"}"#, r#""research":{"hard":4,"window":"5h"}"#);
    assert_eq!(error_of(&text), "tiers.pro.limits.research: duplicate name `research`: written twice in this object");
    let text = base().to_string();
    assert!(text.contains(r#""free":{"#), "{text}");
    let two_tiers = text.replacen(r#""free":{"#, r#""free":{"limits":{}},"free":{"#, 1);
    assert_eq!(error_of(&two_tiers), "tiers.free: duplicate name `free`: written twice in this object");
}

#[test]
fn the_first_problem_in_the_document_is_the_one_named() {
    let hard_first = with("/tiers/free/limits/drafts", json!({"window": "day", "hard": "x", "hadr": 1}));
    assert!(
        error_of(&hard_first).starts_with("tiers.free.limits.drafts.hard: invalid type"),
        "{}",
        error_of(&hard_first)
    );
    let typo_first = base_with(r#""soft":20"#, r#""hadr":1,"hard":"x""#);
    assert!(
        error_of(&typo_first).starts_with("tiers.free.limits.drafts.hadr: unknown field"),
        "{}",
        error_of(&typo_first)
    );
    // A missing field is found at the object's end, after any other problem.
    let doc = with("/identity", json!({"tier": [], "default_tier": 3}));
    assert_eq!(error_of(&doc), "identity.default_tier: invalid type: integer `3`, expected a string");
    let doc = with("/identity", json!({"tier": []}));
    assert_eq!(error_of(&doc), "identity: missing field `user`");
}

#[test]
fn unknown_fields_list_the_known_ones_as_serde_does() {
    let doc = with("/identity/users", json!([]));
    assert_eq!(
        error_of(&doc),
        "identity.users: unknown field `users`, expected one of `user`, `workspace`, `org`, `organisation`, `tier`, \
         `default_tier`, `unknown_tier`, `anonymous`, `max_id_bytes`, `missing_workspace`"
    );
    let doc = with("/tiers/free/limits/drafts/pace", json!({"used": 0.5, "before": 0.1, "after": 0.2}));
    assert_eq!(
        error_of(&doc),
        "tiers.free.limits.drafts.pace.after: unknown field `after`, expected `used` or `before`"
    );
    let doc = with("/tiers/free/limits/drafts/overage", json!({"cap": 1, "max": 2}));
    assert_eq!(error_of(&doc), "tiers.free.limits.drafts.overage.max: unknown field `max`, expected `cap`");
}

#[test]
fn numbers_of_the_wrong_kind_are_refused_with_serde_s_words() {
    let hard = |value: &str| error_of(&base().to_string().replacen(r#""hard":30"#, &format!(r#""hard":{value}"#), 1));
    assert_eq!(hard(r#""10""#), "tiers.free.limits.drafts.hard: invalid type: string \"10\", expected u64");
    assert_eq!(hard("1.5"), "tiers.free.limits.drafts.hard: invalid type: floating point `1.5`, expected u64");
    assert_eq!(hard("30.0"), "tiers.free.limits.drafts.hard: invalid type: floating point `30.0`, expected u64");
    assert_eq!(hard("-1"), "tiers.free.limits.drafts.hard: invalid value: integer `-1`, expected u64");
    assert_eq!(
        hard("18446744073709551616"),
        "tiers.free.limits.drafts.hard: invalid type: floating point `1.8446744073709552e+19`, expected u64"
    );
    assert_eq!(hard("true"), "tiers.free.limits.drafts.hard: invalid type: boolean `true`, expected u64");
    let doc = with("/observability", json!({"analytics": {"cluster": "c", "max_in_flight": 5_000_000_000u64}}));
    assert_eq!(
        error_of(&doc),
        "observability.analytics.max_in_flight: invalid value: integer `5000000000`, expected u32"
    );
    let doc = with("/upstream_busy", json!({"statuses": [70000]}));
    assert_eq!(error_of(&doc), "upstream_busy.statuses[0]: invalid value: integer `70000`, expected u16");
    let doc = with("/tiers/free/limits/drafts/warn_at", json!([0.5, "0.9"]));
    assert_eq!(error_of(&doc), "tiers.free.limits.drafts.warn_at[1]: invalid type: string \"0.9\", expected f64");
    let text = base().to_string().replace(r#""hard":30"#, r#""hard":1e400"#);
    assert!(
        error_of(&text).starts_with("tiers.free.limits.drafts.hard: number out of range at line 1"),
        "{}",
        error_of(&text)
    );
}

#[test]
fn null_is_absent_where_a_field_is_optional_and_refused_where_it_is_required() {
    let mut doc = base();
    doc["calendar"] = Value::Null;
    doc["default_class"] = Value::Null;
    doc["tiers"]["free"]["copy"] = Value::Null;
    doc["tiers"]["free"]["limits"]["drafts"]["warn_at"] = Value::Null;
    Config::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(
        error_of(&with("/identity/default_tier", Value::Null)),
        "identity.default_tier: invalid type: null, expected a string"
    );
    assert_eq!(error_of(&with("/classes", Value::Null)), "classes: invalid type: null, expected a sequence");
    assert_eq!(error_of(&with("/tiers", Value::Null)), "tiers: invalid type: null, expected a map");
    assert_eq!(error_of(&with("/tiers/free", Value::Null)), "tiers.free: invalid type: null, expected struct RawTier");
    // A list with a default is still a list: null is not an empty one.
    assert_eq!(
        error_of(&with("/identity/workspace", Value::Null)),
        "identity.workspace: invalid type: null, expected a sequence"
    );
    assert_eq!(
        error_of(&with("/tiers/free/limits/drafts", Value::Null)),
        "tiers.free.limits.drafts: invalid type: null, expected a cell (an object) or a list of stacked limits (objects)"
    );
}

#[test]
fn a_list_is_not_an_object() {
    // serde read a struct from a list of its fields' values, in order;
    // nothing documents that, and the schema says object.
    let doc = with("/admin", json!(["/quota/admin/grants", "a-secret-of-at-least-24-characters"]));
    assert_eq!(error_of(&doc), "admin: invalid type: sequence, expected struct RawAdmin");
    let doc = with("/tiers/free/limits/drafts/pace", json!([0.8, 0.3]));
    assert_eq!(error_of(&doc), "tiers.free.limits.drafts.pace: invalid type: sequence, expected struct RawPace");
    let doc = with("/identity", json!([[{"header": "x-user-id"}]]));
    assert_eq!(error_of(&doc), "identity: invalid type: sequence, expected struct RawIdentity");
}

#[test]
fn refund_statuses_say_what_they_must_be() {
    let statuses = |list: Value| error_of(&with("/refunds", json!({"statuses": list})));
    assert_eq!(statuses(json!([503, null])), r#"refunds.statuses[1]: must be a status code, "4xx" or "5xx", got null"#);
    assert_eq!(
        statuses(json!([70000])),
        r#"refunds.statuses[0]: must be a status code, "4xx" or "5xx", got integer `70000`"#
    );
    assert_eq!(
        statuses(json!([-1])),
        r#"refunds.statuses[0]: must be a status code, "4xx" or "5xx", got integer `-1`"#
    );
    assert_eq!(
        statuses(json!([502.5])),
        r#"refunds.statuses[0]: must be a status code, "4xx" or "5xx", got floating point `502.5`"#
    );
    assert_eq!(statuses(json!(["5xx", 300])), "refunds.statuses[1]: must be a status from 400 to 599, got 300");
    assert_eq!(statuses(json!(["6xx"])), r#"refunds.statuses[0]: must be a status code, "4xx" or "5xx", got "6xx""#);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for pointer in ["/classes", "/tiers/free/limits/drafts/warn_at", "/tiers/free/label"] {
        let text = with(pointer, json!("@@")).replace(r#""@@""#, &deep(10_000));
        assert!(error_of(&text).contains("recursion limit exceeded at line 1"), "{pointer}");
    }
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let text =
        with("/classes/0/match/0/body", json!([{"field": "model", "equals": "@@"}])).replace(r#""@@""#, &objects);
    assert!(error_of(&text).contains("recursion limit exceeded at line 1"));
    // Nesting serde_json reads (up to 127 deep) is read, and refused by its shape.
    let text = with("/classes", json!("@@")).replace(r#""@@""#, &deep(100));
    assert!(
        error_of(&text).starts_with("classes[0]: invalid type: sequence, expected struct RawClass"),
        "{}",
        error_of(&text)
    );
}

#[test]
fn empty_non_object_and_trailing_text_are_refused() {
    for empty in ["", "  \n\t "] {
        assert_eq!(error_of(empty), ".: the configuration is empty: the filter needs its JSON configuration");
    }
    for other in ["[]", "3", "null", "\"{}\"", "true", "  [{}]"] {
        assert_eq!(error_of(other), ".: the configuration must be a JSON object", "{other}");
    }
    let text = base().to_string();
    let column = text.len() + 2;
    assert_eq!(error_of(&format!("{text} x")), format!(".: trailing characters at line 1 column {column}"));
    assert_eq!(error_of(&format!("{text} {{}}")), format!(".: trailing characters at line 1 column {column}"));
    // Trailing text is refused before the document's shape is read.
    assert!(error_of("{} x").starts_with(".: trailing characters"));
    assert_eq!(error_of("{}"), ".: missing field `identity`");
    assert!(error_of("{\"identity\": ").contains("EOF while parsing"));
    assert_eq!(error_of("{\"classes\": [{},]}"), "classes: trailing comma at line 1 column 17");
}
