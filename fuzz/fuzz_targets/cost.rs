//! Arbitrary request bodies priced by every cost rule: fixed, records (an
//! array at a field, the body itself, JSON Lines), bytes, and tokens, with
//! and without model multipliers, down to the extremes validation allows.
//! Every price is at least 1 unit, and a body read for the members the
//! config reads only is priced as the whole body is.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::body::{read_body, read_body_keys, BodyRead};
use quota_core::config::Config;
use quota_core::cost::{self, Body};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// One class per cost rule, each with a daily cell.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let costs = [
            json!({"fixed": 3}),
            json!({"fixed": 2, "models": {"o3*": 10, "o3-mini": 2, "gpt-4o-mini": 0.5, "": 3}}),
            json!({"fixed": u64::MAX, "models": {"x*": 1_000_000}}),
            json!({"records": {"field": "requests"}}),
            json!({"records": {"field": "input.0.items"}, "fallback": 7}),
            json!({"records": {}}),
            json!({"records": {"jsonl": true}, "models": {"big": 1000}}),
            json!({"bytes": {"per": 1000}}),
            json!({"bytes": {}}),
            json!({"bytes": {"per": u64::MAX}, "fallback": u64::MAX}),
            json!({"tokens": {"default_max_tokens": 100}, "models": {"gpt-4o*": 0.000_001, "o3": 1_000_000}}),
            json!({"tokens": {"default_max_tokens": 0, "reconcile": false}}),
            json!({"tokens": {"default_max_tokens": u64::MAX}}),
        ];
        let classes: Vec<Value> =
            costs.iter().enumerate().map(|(i, c)| json!({"name": format!("c{i}"), "cost": c})).collect();
        let limits: serde_json::Map<String, Value> =
            (0..costs.len()).map(|i| (format!("c{i}"), json!({"hard": 10, "window": "day"}))).collect();
        let doc = json!({
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": classes,
            "tiers": {"free": {"limits": limits}},
        });
        Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("cost config: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let json: Option<Value> = serde_json::from_slice(data).ok();
    for class in &config().classes {
        let _ = cost::needs_body(class);
        let _ = cost::model_factor(class, json.as_ref());
        for body in [
            Body { bytes: Some(data), json: json.as_ref(), prompt_chars: 0 },
            Body { bytes: Some(data), json: None, prompt_chars: 0 },
            Body { bytes: None, json: json.as_ref(), prompt_chars: 0 },
            Body::default(),
        ] {
            let units = cost::request_cost(class, body);
            assert!(units >= 1, "{}: a request costs at least 1 unit, got {units}", class.name);
        }
        // The body as the filter reads it, for the members this config
        // reads only: the same price as from the whole body.
        let part = read_body_keys(Some(data), false, &config().body_keys);
        let whole = read_body(Some(data), false);
        let priced = |read: &BodyRead, prompt_chars| {
            cost::request_cost(class, Body { bytes: Some(data), json: read.json(), prompt_chars })
        };
        assert_eq!(priced(&part.body, part.prompt_chars), priced(&whole, 0), "{}", class.name);
        if part.spans.is_none() {
            assert_eq!(part.body, whole);
        }
    }
});
