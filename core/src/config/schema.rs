//! The JSON Schema (draft 2020-12) of the configuration, generated from the
//! same raw types the filter parses, so the schema can never drift from the
//! parser. Editors use it to check the quota matrix as it is typed; it checks
//! shape only (stage one): the meaning (soft below hard, a cell for every
//! class...) is still `Config::from_json`'s.

use super::raw::RawConfig;
use serde_json::{Map, Value};

/// The schema as a JSON document, `$schema` first.
pub fn json_schema() -> Value {
    let generated = schemars::schema_for!(RawConfig).to_value();
    let Value::Object(fields) = generated else {
        return generated;
    };
    let mut out = Map::new();
    if let Some(dialect) = fields.get("$schema") {
        out.insert("$schema".into(), dialect.clone());
    }
    out.insert("title".into(), "quota-filter configuration".into());
    out.insert(
        "description".into(),
        "The quota filter's JSON configuration: identity, operation classes and the quota matrix (tiers x classes). Generated from the filter's own config types by `quota-matrix schema`.".into(),
    );
    for (key, value) in fields {
        if !out.contains_key(&key) {
            out.insert(key, value);
        }
    }
    // The raw type's doc comment explains how it is parsed; editors show the
    // description to people writing the matrix, so say what it means.
    if let Some(tiers) = out.get_mut("properties").and_then(|p| p.get_mut("tiers")).and_then(Value::as_object_mut) {
        tiers.insert(
            "description".into(),
            "Plans by name (their upgrade order is `tier_order`). Each needs a cell in `limits` for every class."
                .into(),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::super::raw::*;
    use super::super::read::Object;
    use super::*;
    use crate::busy::RawUpstreamBusy;
    use crate::refund::RawRefunds;

    /// The readers of `read.rs` and the schema come from two declarations
    /// (`read_object!` and the `serde` attributes schemars reads): each
    /// object's properties and required ones must be the same.
    #[test]
    fn the_schema_names_the_fields_the_readers_read() {
        macro_rules! shapes {
            ($($ty:ident),* $(,)?) => { vec![$((stringify!($ty), <$ty as Object>::SHAPE)),*] };
        }
        let shapes = shapes![
            RawIdentity,
            RawSource,
            RawAnonymous,
            RawCalendar,
            RawClass,
            RawRule,
            RawPath,
            RawHeaderCond,
            RawBodyCond,
            RawCost,
            RawRecords,
            RawBytes,
            RawTokens,
            RawPriced,
            RawCopy,
            RawTier,
            RawCell,
            RawPace,
            RawDegrade,
            RawHeaderValue,
            RawCap,
            RawQueue,
            RawUsageReads,
            RawCounters,
            RawRedis,
            RawResponseHeaders,
            RawObservability,
            RawAnalytics,
            RawAdmin,
            RawRefunds,
            RawUpstreamBusy,
            RawPrices,
            RawModelPrice,
        ];
        let schema = json_schema();
        let names = |object: &Value| -> Vec<String> {
            object.get("properties").and_then(Value::as_object).map_or(vec![], |p| p.keys().cloned().collect())
        };
        let required = |object: &Value| -> Vec<String> {
            object
                .get("required")
                .and_then(Value::as_array)
                .map_or(vec![], |r| r.iter().filter_map(Value::as_str).map(String::from).collect())
        };
        assert_eq!(names(&schema), RawConfig::SHAPE.names);
        assert_eq!(required(&schema), RawConfig::SHAPE.required);
        let defs = schema["$defs"].as_object().unwrap();
        for (name, shape) in &shapes {
            assert_eq!(names(&defs[*name]), shape.names, "{name}");
            assert_eq!(required(&defs[*name]), shape.required, "{name}");
        }
        // Every object of the schema has its reader listed here.
        for (name, def) in defs {
            assert!(def.get("properties").is_none() || shapes.iter().any(|(n, _)| n == name), "{name}");
        }
    }
}
