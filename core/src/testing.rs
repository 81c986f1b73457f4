//! Fixtures for unit tests.

use crate::config::Config;
use crate::request::RequestHead;

/// The demo matrix shipped in `envoy/demo-config.json`.
pub fn demo_config() -> Config {
    Config::from_json(include_bytes!("../../envoy/demo-config.json")).unwrap()
}

/// A one-tier config with the given `classes` array (JSON) and a daily
/// limit of 10 for each class.
pub fn config_with(classes: &str) -> Config {
    let parsed: serde_json::Value = serde_json::from_str(classes).unwrap();
    let names: Vec<String> =
        parsed.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let limits: serde_json::Map<String, serde_json::Value> =
        names.iter().map(|n| (n.clone(), serde_json::json!({"hard": 10, "window": "day"}))).collect();
    let doc = serde_json::json!({
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "classes": parsed,
        "tiers": {"free": {"limits": limits}},
    });
    Config::from_json(doc.to_string().as_bytes()).unwrap()
}

pub fn head(headers: &[(&str, &str)]) -> RequestHead {
    RequestHead::new(headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect())
}
