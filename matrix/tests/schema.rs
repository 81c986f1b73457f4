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
