//! What every area's benchmarks share: the demo matrix with the load
//! benchmark's extra tier, realistic request heads, the 2 KB JSON body.

use quota_core::config::{ClassId, Config};
use quota_core::request::RequestHead;
use serde_json::Value;

/// 2026-11-22 12:00:00 UTC, in milliseconds.
pub const NOON_MS: i64 = 1_795_348_800_000;

/// The 2 KB chat-completions body the load benchmark sends (`bench/body-2k.json`).
pub const BODY_2K: &[u8] = include_bytes!("../../../bench/body-2k.json");

/// `envoy/demo-config.json` with the tier `bench` of `bench/bench-tier.json`
/// added last: limits so high that a benchmark never reaches a warning or
/// the wall, so every iteration takes the common path (state `ok`).
pub fn config() -> Config {
    let mut doc: Value = serde_json::from_slice(include_bytes!("../../../envoy/demo-config.json")).unwrap();
    let tier: Value = serde_json::from_slice(include_bytes!("../../../bench/bench-tier.json")).unwrap();
    doc["tiers"].as_object_mut().unwrap().insert("bench".into(), tier);
    doc["tier_order"].as_array_mut().unwrap().push("bench".into());
    Config::from_json(doc.to_string().as_bytes()).unwrap()
}

pub fn class(config: &Config, name: &str) -> ClassId {
    ClassId(config.classes.iter().position(|c| c.name == name).unwrap())
}

/// A request head as Envoy hands it to the filter (pseudo-headers, what
/// wrk and Envoy add), plus `extra` (identity headers).
pub fn head(method: &str, path: &str, extra: &[(&str, &str)]) -> RequestHead {
    let mut headers: Vec<(&str, &str)> = vec![
        (":authority", "127.0.0.1:10000"),
        (":path", path),
        (":method", method),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("accept", "*/*"),
        ("user-agent", "wrk"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0b1c6a52-3f3e-4f7e-9a57-3c0d1c9a4e21"),
    ];
    headers.extend_from_slice(extra);
    RequestHead::new(headers.into_iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect())
}

/// The identity headers of a caller on the bench tier.
pub fn bench_user(id: &str) -> [(&'static str, String); 2] {
    [("x-user-id", id.to_string()), ("x-plan", "bench".to_string())]
}

/// A head for `POST path` by `user` on the bench tier.
pub fn user_head(path: &str, user: &str) -> RequestHead {
    let [(n1, v1), (n2, v2)] = bench_user(user);
    head("POST", path, &[(n1, &v1), (n2, &v2)])
}
