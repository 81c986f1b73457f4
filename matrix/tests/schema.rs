//! `quota-matrix schema`: the JSON Schema of the config, generated from the
//! filter's own config types, and committed as `envoy/quota-config.schema.json`.
//! (`envoy/tests/test_schema.py` checks the committed file with a real JSON
//! Schema validator: the demo config passes, broken ones fail.)

mod util;

use util::{compare, root, run};

#[test]
fn the_committed_schema_is_the_generated_one() {
    let r = run(&["schema"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    compare(&root().join("envoy/quota-config.schema.json"), &r.stdout);
}

#[test]
fn the_schema_is_draft_2020_12_and_refuses_unknown_fields() {
    let schema: serde_json::Value = serde_json::from_str(&run(&["schema"]).stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(["identity", "classes", "tiers"]));
    // Doc comments on the config types become descriptions editors show.
    let hold = &schema["properties"]["hold_headers_for_body"]["description"];
    assert!(hold.as_str().unwrap().contains("allow_on_headers_stop_iteration"));
}

#[test]
fn a_cell_is_one_limit_or_a_list_of_limits() {
    let schema: serde_json::Value = serde_json::from_str(&run(&["schema"]).stdout).unwrap();
    let defs = &schema["$defs"];
    assert_eq!(defs["RawTier"]["properties"]["limits"]["additionalProperties"]["$ref"], "#/$defs/RawCellEntry");
    // Chosen by the value's type (not `anyOf`), so a validator reports a
    // field's error at the field (`...drafts.hard`, `...drafts.1.hard`).
    let cell = &defs["RawCellEntry"];
    assert_eq!(cell["if"], serde_json::json!({"type": "object"}));
    assert_eq!(cell["then"], serde_json::json!({"$ref": "#/$defs/RawCell"}));
    assert_eq!(cell["else"], serde_json::json!({"type": "array", "items": {"$ref": "#/$defs/RawCell"}}));
    let scope = &defs["RawCell"]["properties"]["scope"]["enum"];
    assert_eq!(scope, &serde_json::json!(["user", "workspace", "organisation", "org", null]));
    assert_eq!(defs["RawCell"]["properties"]["admin_cap"]["type"], serde_json::json!(["boolean", "null"]));
}
