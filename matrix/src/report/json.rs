//! The report as JSON, for tests and tools: counts with what they count,
//! rates rounded to four decimals, money exact (and in micro-units).

use super::metrics::{Measures, Mix, Ratio, Report, Spend, ABANDON_MS, RETRY_MS};
use super::text::exact_spend;
use crate::ledger::time_text;
use serde_json::{json, Map, Value};

fn rounded(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!((x * 10_000.0).round() / 10_000.0))
}

fn ratio(r: Ratio, count: &str) -> Value {
    let mut o = Map::new();
    o.insert(count.into(), json!(r.n));
    o.insert("of".into(), json!(r.of));
    o.insert("rate".into(), rounded(r.share()));
    Value::Object(o)
}

fn spend(s: &Spend) -> Option<Value> {
    match s {
        Spend::Units { units, .. } => Some(json!({"units": units})),
        Spend::Money { micros, currency } => Some(json!({
            "currency": currency.code(),
            "amount": exact_spend(s),
            "micros": micros,
        })),
        Spend::Mixed => None,
    }
}

fn measures(m: &Measures) -> Map<String, Value> {
    let t = &m.tokens;
    let mut o = Map::new();
    o.insert("requests".into(), json!(m.requests));
    o.insert("requests_without_caller".into(), json!(m.anonymous_requests));
    o.insert("callers".into(), json!(m.callers));
    o.insert("let_through".into(), json!(m.let_through));
    o.insert("refused".into(), json!(m.refused));
    o.insert("soft_limit_hit".into(), ratio(m.soft, "callers"));
    o.insert("hard_limit_hit".into(), ratio(m.hard, "callers"));
    o.insert("abandoned".into(), ratio(m.abandoned, "quota_errors"));
    o.insert("converted".into(), ratio(m.converted, "callers"));
    o.insert("failed".into(), ratio(m.failed, "requests"));
    o.insert("retried".into(), ratio(m.retried, "requests"));
    o.insert("failed_or_retried".into(), ratio(m.failed_or_retried, "requests"));
    o.insert(
        "tokens".into(),
        json!({
            "requests": t.requests,
            "input": t.input,
            "output": t.output,
            "cached_input": t.cached_input,
            "reasoning": t.reasoning,
            "output_per_input": rounded(t.output_per_input()),
            "cached_input_share": rounded(t.cached_share().share()),
        }),
    );
    o.insert("spend".into(), Value::Array(m.spend.iter().filter_map(spend).collect()));
    o
}

fn with_mix(mut o: Map<String, Value>, mix: &Mix) -> Value {
    o.insert("premium_share".into(), ratio(mix.premium, "requests"));
    o.insert("batch_share".into(), ratio(mix.batch, "records"));
    Value::Object(o)
}

pub fn json(r: &Report) -> String {
    let d = &r.definitions;
    let cells: Vec<Value> = r
        .cells
        .iter()
        .map(|c| {
            let mut o = Map::new();
            o.insert("class".into(), json!(c.class));
            o.insert("tier".into(), json!(c.tier));
            o.extend(measures(&c.measures));
            Value::Object(o)
        })
        .collect();
    let tiers: Vec<Value> = r
        .tiers
        .iter()
        .map(|(tier, m, mix)| {
            let mut o = Map::new();
            o.insert("tier".into(), json!(tier));
            o.extend(measures(m));
            with_mix(o, mix)
        })
        .collect();
    let days: Vec<Value> = r
        .days
        .iter()
        .map(|d| {
            json!({
                "date": d.date,
                "requests": d.requests,
                "refused": d.refused,
                "callers": d.callers,
                "soft_limit_hit": ratio(Ratio { n: d.soft, of: d.callers }, "callers"),
                "hard_limit_hit": ratio(Ratio { n: d.hard, of: d.callers }, "callers"),
            })
        })
        .collect();
    let f = &r.funnel;
    let doc = json!({
        "ledger": r.ledger,
        "config": r.config,
        "from": r.first.map(time_text),
        "to": r.last.map(time_text),
        "skipped_lines": r.skipped_lines,
        "definitions": {
            "premium_classes": d.premium,
            "premium_from": d.premium_from,
            "batch_classes": d.batch,
            "batch_from": d.batch_from,
            "abandoned_after_seconds": ABANDON_MS / 1000,
            "retried_within_seconds": RETRY_MS / 1000,
        },
        "all": with_mix(measures(&r.all), &r.mix),
        "tiers": tiers,
        "cells": cells,
        "days": days,
        "funnel": {
            "callers": f.callers,
            "warned": f.warned,
            "blocked": f.blocked,
            "warned_before_blocked": f.warned_before_blocked,
            "refused": f.refused,
            "upgraded": f.upgraded,
            "abandoned": f.abandoned,
        },
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
