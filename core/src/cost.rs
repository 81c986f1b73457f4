//! What one request costs, from its class's cost rule and (when the rule
//! needs it) its body. Every rule has a documented fallback, so a missing
//! field costs `cost.fallback` units, never a panic. A body the filter cannot
//! read is not priced here unless nothing depends on it: see `unreadable.rs`.

use crate::classify::lookup;
use crate::config::{Class, Cost, TokenCount};
use crate::units::bounded;
use serde_json::Value;

/// The body as the cost rules see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Body<'a> {
    /// The raw bytes, when the filter read them (`None`: not read or too large).
    pub bytes: Option<&'a [u8]>,
    /// The bytes parsed as JSON, when they are JSON.
    pub json: Option<&'a Value>,
}

/// Whether the class's cost depends on the request body.
pub fn needs_body(class: &Class) -> bool {
    !matches!(class.cost, Cost::Fixed(_)) || !class.models.is_empty()
}

/// Units one request of `class` costs, at most [`crate::units::MAX_UNITS`] whatever the
/// body asks for (a client sets `max_tokens`).
pub fn request_cost(class: &Class, body: Body) -> u64 {
    let base = match &class.cost {
        Cost::Fixed(n) => Some(*n),
        Cost::Records { jsonl: true, .. } => body.bytes.map(jsonl_lines),
        Cost::Records { field, .. } => body
            .json
            .and_then(|j| match field {
                Some(path) => lookup(j, path),
                None => Some(j),
            })
            .and_then(Value::as_array)
            .map(|a| a.len() as u64),
        Cost::Bytes { per } => body.bytes.map(|b| (b.len() as u64).div_ceil(*per)),
        // Priced in money by the config's table: see `engine::request_cost`.
        Cost::Priced { .. } => None,
        Cost::Tokens { default_max_tokens, count, .. } => body.json.map(|j| {
            let (prompt, budget) = estimate_token_parts(j, *default_max_tokens);
            match count {
                TokenCount::All => prompt.saturating_add(budget),
                TokenCount::Input => prompt,
                TokenCount::Output => budget,
            }
        }),
    };
    let base = base.unwrap_or(class.cost_fallback);
    apply_model_multiplier(class, body.json, base)
}

/// The cost after the model multiplier; never below 1.
pub fn apply_model_multiplier(class: &Class, json: Option<&Value>, units: u64) -> u64 {
    scale(units, model_factor(class, json))
}

/// The multiplier for the request's `model`: 1 when the body names no model
/// or one without a multiplier; the class's largest when `model` is there but
/// not a string (`["o3"]`, `5`, `null`), since the upstream may still pick an
/// expensive model from it.
pub fn model_factor(class: &Class, json: Option<&Value>) -> f64 {
    match json.and_then(|j| j.get("model")) {
        None => 1.0,
        Some(Value::String(m)) => multiplier(class, m).unwrap_or(1.0),
        Some(_) => max_model_factor(class),
    }
}

/// The largest multiplier a request of `class` can get: its largest model
/// multiplier, and at least 1 (a model without one counts once).
pub fn max_model_factor(class: &Class) -> f64 {
    class.models.iter().map(|(_, m)| *m).fold(1.0, f64::max)
}

/// The most one request of `class` can cost when its body is unknown: a
/// fixed cost times [`max_model_factor`] (times its unit price, in money);
/// a cost counted from the body (records, bytes, tokens, priced tokens)
/// has no bound, so `u64::MAX`.
pub fn highest_cost(class: &Class) -> u64 {
    match class.cost {
        Cost::Fixed(n) => priced_units(class, scale(n, max_model_factor(class))),
        Cost::Records { .. } | Cost::Bytes { .. } | Cost::Tokens { .. } | Cost::Priced { .. } => u64::MAX,
    }
}

/// `units` of `class` in what it is metered in: times its `unit_price`
/// (micro-units) when it has one, bounded.
pub fn priced_units(class: &Class, units: u64) -> u64 {
    match class.unit_price {
        Some(price) => bounded(units.saturating_mul(price)),
        None => units,
    }
}

/// `units` times `factor`, rounded up, never below 1 nor above [`crate::units::MAX_UNITS`].
pub fn scale(units: u64, factor: f64) -> u64 {
    bounded(((units as f64) * factor).ceil().max(1.0) as u64)
}

fn multiplier(class: &Class, model: &str) -> Option<f64> {
    class.models.iter().find_map(|(name, m)| crate::config::names_model(name, model).then_some(*m))
}

fn jsonl_lines(bytes: &[u8]) -> u64 {
    bytes.split(|b| *b == b'\n').filter(|line| line.iter().any(|b| !b.is_ascii_whitespace())).count() as u64
}

/// Estimated tokens of a chat/completions/responses/messages request: the
/// prompt text at about 4 characters per token, plus the completion budget
/// (`max_tokens`, `max_completion_tokens` or `max_output_tokens`, else
/// `default_max_tokens`).
pub fn estimate_tokens(body: &Value, default_max_tokens: u64) -> u64 {
    let (prompt, budget) = estimate_token_parts(body, default_max_tokens);
    prompt.saturating_add(budget)
}

/// [`estimate_tokens`] in its two parts: the prompt's tokens (its text at
/// about 4 characters per token) and the completion budget.
pub fn estimate_token_parts(body: &Value, default_max_tokens: u64) -> (u64, u64) {
    let mut chars = 0usize;
    for key in crate::config::PROMPT_KEYS {
        if let Some(v) = body.get(key) {
            chars += text_chars(v, 0);
        }
    }
    let budget = crate::config::BUDGET_KEYS
        .iter()
        .find_map(|k| body.get(k).and_then(Value::as_u64))
        .unwrap_or(default_max_tokens);
    ((chars as u64).div_ceil(4), budget)
}

/// Characters of text in a prompt value: strings, `content`/`text` of
/// message objects and parts, arrays of those. Depth-bounded.
fn text_chars(v: &Value, depth: usize) -> usize {
    if depth > 8 {
        return 0;
    }
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(|i| text_chars(i, depth + 1)).sum(),
        Value::Object(map) => {
            ["content", "text"].iter().filter_map(|k| map.get(*k)).map(|c| text_chars(c, depth + 1)).sum()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_with;
    use crate::units::MAX_UNITS;
    use serde_json::json;

    fn class(cost: &str) -> Class {
        let config = config_with(&format!(r#"[{{"name": "c", "cost": {cost}}}]"#));
        config.classes[0].clone()
    }

    fn cost_of(class: &Class, body: &str) -> u64 {
        let json: Option<Value> = serde_json::from_str(body).ok();
        request_cost(class, Body { bytes: Some(body.as_bytes()), json: json.as_ref() })
    }

    #[test]
    fn a_token_count_estimates_its_own_part() {
        let body = r#"{"messages": [{"role": "user", "content": "12345678"}], "max_tokens": 50}"#;
        for (count, expected) in [("all", 52), ("input", 2), ("output", 50)] {
            let class = class(&format!(r#"{{"tokens": {{"count": "{count}"}}}}"#));
            assert_eq!(cost_of(&class, body), expected, "{count}");
        }
    }

    #[test]
    fn fixed_costs_ignore_the_body() {
        assert_eq!(cost_of(&class(r#"{"fixed": 3}"#), "not json"), 3);
        assert!(!needs_body(&class(r#"{"fixed": 3}"#)));
    }

    #[test]
    fn records_count_an_array_or_jsonl_lines() {
        let at_field = class(r#"{"records": {"field": "requests"}}"#);
        let records: Vec<Value> = (0..250).map(|i| json!({"id": i})).collect();
        assert_eq!(cost_of(&at_field, &json!({"requests": records}).to_string()), 250);
        assert_eq!(cost_of(&at_field, r#"{"requests": "nope"}"#), 1);
        assert_eq!(cost_of(&at_field, r#"{"other": []}"#), 1);
        assert_eq!(cost_of(&at_field, "garbage"), 1);
        let whole = class(r#"{"records": {}, "fallback": 5}"#);
        assert_eq!(cost_of(&whole, "[1,2,3]"), 3);
        assert_eq!(cost_of(&whole, "{}"), 5);
        let lines = class(r#"{"records": {"jsonl": true}}"#);
        assert_eq!(cost_of(&lines, "{\"a\":1}\n{\"a\":2}\n\n  \n{\"a\":3}"), 3);
        // No records still costs the minimum of 1.
        assert_eq!(cost_of(&lines, ""), 1);
        assert!(needs_body(&lines));
    }

    #[test]
    fn bytes_count_pages_rounded_up() {
        let pages = class(r#"{"bytes": {"per": 1000}}"#);
        assert_eq!(cost_of(&pages, &"x".repeat(2500)), 3);
        assert_eq!(cost_of(&pages, &"x".repeat(1000)), 1);
        let raw = class(r#"{"bytes": {}}"#);
        assert_eq!(cost_of(&raw, "12345"), 5);
        // Not read (too large for the filter to buffer): the fallback.
        assert_eq!(request_cost(&pages, Body::default()), 1);
    }

    #[test]
    fn tokens_estimate_prompt_text_plus_budget() {
        let tokens = class(r#"{"tokens": {"default_max_tokens": 100}}"#);
        let chat = json!({"messages": [{"role": "user", "content": "12345678"}, {"role": "user", "content": [{"type": "text", "text": "1234"}]}], "max_tokens": 50});
        assert_eq!(cost_of(&tokens, &chat.to_string()), 3 + 50);
        assert_eq!(cost_of(&tokens, r#"{"input": "abcd"}"#), 1 + 100);
        assert_eq!(cost_of(&tokens, r#"{"prompt": ["ab", "cd"], "max_completion_tokens": 7}"#), 1 + 7);
        assert_eq!(cost_of(&tokens, "not json"), 1);
        let deep = "[".repeat(50) + &"]".repeat(50);
        assert_eq!(cost_of(&tokens, &format!(r#"{{"messages": {deep}}}"#)), 100);
    }

    #[test]
    fn huge_budgets_saturate_instead_of_overflowing() {
        // Found by the `classify` fuzz target (fuzz/regressions/classify-huge-max-tokens-overflows-decide).
        let tokens = class(r#"{"tokens": {}, "models": {"m": 1000}}"#);
        let body = format!(r#"{{"model": "m", "prompt": "abcd", "max_tokens": {}}}"#, u64::MAX);
        assert_eq!(cost_of(&tokens, &body), MAX_UNITS);
    }

    #[test]
    fn every_estimate_is_bounded() {
        let plain = class(r#"{"tokens": {}}"#);
        let at = |max_tokens: u64| cost_of(&plain, &format!(r#"{{"max_tokens": {max_tokens}}}"#));
        assert_eq!(at(u64::MAX), MAX_UNITS);
        assert_eq!(at(MAX_UNITS), MAX_UNITS);
        assert_eq!(at(MAX_UNITS - 1), MAX_UNITS - 1);
        let cheap = class(r#"{"tokens": {}, "models": {"m": 0.001}}"#);
        let body = format!(r#"{{"model": "m", "max_tokens": {}}}"#, u64::MAX);
        assert_eq!(cost_of(&cheap, &body), MAX_UNITS);
        assert_eq!(scale(u64::MAX, 1_000_000.0), MAX_UNITS);
        assert_eq!(scale(0, 0.5), 1);
        // A fixed cost the config sets past the bound is clamped as well.
        assert_eq!(cost_of(&class(&format!(r#"{{"fixed": {}}}"#, u64::MAX)), ""), MAX_UNITS);
    }

    #[test]
    fn model_multipliers_pick_the_most_specific() {
        let weighted = class(r#"{"fixed": 2, "models": {"o3*": 10, "o3-mini": 2, "gpt-4o-mini": 0.5}}"#);
        assert_eq!(cost_of(&weighted, r#"{"model": "o3-pro"}"#), 20);
        assert_eq!(cost_of(&weighted, r#"{"model": "o3-mini"}"#), 4);
        assert_eq!(cost_of(&weighted, r#"{"model": "gpt-4o-mini"}"#), 1);
        assert_eq!(cost_of(&weighted, r#"{"model": "other"}"#), 2);
        assert!(needs_body(&weighted));
    }

    #[test]
    fn a_model_that_is_not_a_string_gets_the_largest_multiplier() {
        let weighted = class(r#"{"fixed": 2, "models": {"o3*": 10, "o3-mini": 2, "gpt-4o-mini": 0.5}}"#);
        assert_eq!(cost_of(&weighted, r#"{"model": ["o3"]}"#), 20);
        assert_eq!(cost_of(&weighted, r#"{"model": 5}"#), 20);
        assert_eq!(cost_of(&weighted, r#"{"model": {"name": "o3"}}"#), 20);
        assert_eq!(cost_of(&weighted, r#"{"model": null}"#), 20);
        // No model at all: the upstream has none to pick, the multiplier is 1.
        assert_eq!(cost_of(&weighted, r#"{"messages": []}"#), 2);
        // Only multipliers below 1: a model that is not a string still counts once.
        let cheap = class(r#"{"fixed": 4, "models": {"gpt-4o-mini": 0.5}}"#);
        assert_eq!(cost_of(&cheap, r#"{"model": ["gpt-4o-mini"]}"#), 4);
        let tokens = class(r#"{"tokens": {"default_max_tokens": 10}, "models": {"o3": 5}}"#);
        assert_eq!(cost_of(&tokens, r#"{"model": ["o3"], "prompt": "abcd"}"#), 55);
    }

    #[test]
    fn the_highest_cost_of_an_unknown_body_is_bounded_only_for_fixed_costs() {
        assert_eq!(highest_cost(&class(r#"{"fixed": 3, "models": {"o3*": 2.5, "mini": 0.5}}"#)), 8);
        assert_eq!(highest_cost(&class(r#"{"fixed": 3, "models": {"mini": 0.5}}"#)), 3);
        assert_eq!(highest_cost(&class(r#"{"fixed": 3}"#)), 3);
        for metered in
            [r#"{"records": {}}"#, r#"{"records": {"jsonl": true}}"#, r#"{"bytes": {"per": 10}}"#, r#"{"tokens": {}}"#]
        {
            assert_eq!(highest_cost(&class(metered)), u64::MAX, "{metered}");
        }
    }
}
