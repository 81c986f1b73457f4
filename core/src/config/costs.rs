//! What one request of a class costs: the cost rule, model multipliers and
//! the fallback when the body does not say.

use super::error::{join, ConfigError};
use super::raw::RawCost;

/// Units charged for one request of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cost {
    Fixed(u64),
    /// One unit per record: a JSON array at `field` (the body when `None`),
    /// or the non-empty lines of a JSON Lines body.
    Records {
        field: Option<Vec<String>>,
        jsonl: bool,
    },
    /// One unit per `per` bytes of body, rounded up.
    Bytes {
        per: u64,
    },
    /// Estimated tokens, corrected from the response's `usage`.
    Tokens {
        default_max_tokens: u64,
        reconcile: bool,
        include_usage: bool,
        count: TokenCount,
    },
    /// Money: the tokens priced by the `prices` table (micro-units),
    /// estimated at admission, settled from the reported usage.
    Priced {
        default_max_tokens: u64,
        include_usage: bool,
    },
}

/// Which tokens a `tokens` cost counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCount {
    /// Every token, as the upstream totals them.
    All,
    /// The prompt: plain, cached and cache-written input tokens.
    Input,
    /// The answer: output and reasoning tokens.
    Output,
}

/// A class's cost rule, model multipliers, fallback and unit price.
pub(super) type CostParts = (Cost, Vec<(String, f64)>, u64, Option<u64>);

pub(super) fn check_cost(path: &str, raw: Option<&RawCost>) -> Result<CostParts, ConfigError> {
    let Some(raw) = raw else { return Ok((Cost::Fixed(1), Vec::new(), 1, None)) };
    let chosen =
        [raw.fixed.is_some(), raw.records.is_some(), raw.bytes.is_some(), raw.tokens.is_some(), raw.price.is_some()];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err(ConfigError::new(
            path,
            "must set one of \"fixed\", \"records\", \"bytes\", \"tokens\" or \"price\"",
        ));
    }
    if raw.price.is_some() && raw.models.is_some() {
        return Err(ConfigError::new(
            join(path, "models"),
            "has no meaning with \"price\": the prices table prices each model",
        ));
    }
    let unit_price = match &raw.unit_price {
        None => None,
        Some(_) if raw.tokens.is_some() || raw.price.is_some() => {
            return Err(ConfigError::new(
                join(path, "unit_price"),
                "prices the units of \"fixed\", \"records\" or \"bytes\"; tokens are priced with \"price\"",
            ))
        }
        Some(amount) => Some(super::prices::check_amount(&join(path, "unit_price"), amount)?),
    };
    let cost = if let Some(n) = raw.fixed {
        if n == 0 {
            return Err(ConfigError::new(join(path, "fixed"), "must be greater than 0"));
        }
        Cost::Fixed(n)
    } else if let Some(r) = &raw.records {
        let field = match &r.field {
            None => None,
            Some(f) if f.is_empty() || f.split('.').any(str::is_empty) => {
                return Err(ConfigError::new(join(path, "records.field"), format!("\"{f}\" is not a dotted path")))
            }
            Some(f) => Some(f.split('.').map(str::to_string).collect()),
        };
        let jsonl = r.jsonl.unwrap_or(false);
        if jsonl && field.is_some() {
            return Err(ConfigError::new(join(path, "records"), "set \"field\" (a JSON array) or \"jsonl\", not both"));
        }
        Cost::Records { field, jsonl }
    } else if let Some(b) = &raw.bytes {
        match b.per {
            Some(0) => return Err(ConfigError::new(join(path, "bytes.per"), "must be greater than 0")),
            per => Cost::Bytes { per: per.unwrap_or(1) },
        }
    } else if let Some(t) = &raw.tokens {
        let count = match t.count.as_deref() {
            None | Some("all") => TokenCount::All,
            Some("input") => TokenCount::Input,
            Some("output") => TokenCount::Output,
            Some(other) => {
                return Err(ConfigError::new(
                    join(path, "tokens.count"),
                    format!("must be \"all\", \"input\" or \"output\", got \"{other}\""),
                ))
            }
        };
        Cost::Tokens {
            default_max_tokens: t.default_max_tokens.unwrap_or(256),
            reconcile: t.reconcile.unwrap_or(true),
            include_usage: t.include_usage.unwrap_or(true),
            count,
        }
    } else if let Some(p) = &raw.price {
        Cost::Priced {
            default_max_tokens: p.default_max_tokens.unwrap_or(256),
            include_usage: p.include_usage.unwrap_or(true),
        }
    } else if raw.models.is_some() || unit_price.is_some() {
        Cost::Fixed(1)
    } else {
        return Err(ConfigError::new(path, "must set a cost rule, e.g. {\"fixed\": 1}"));
    };
    let mut models = Vec::new();
    for (name, m) in raw.models.iter().flatten() {
        if !(m.is_finite() && *m > 0.0 && *m <= 1_000_000.0) {
            return Err(ConfigError::new(
                format!("{path}.models.{name}"),
                format!("must be a positive multiplier, got {m}"),
            ));
        }
        models.push((name.clone(), *m));
    }
    // Exact names before prefixes, longer prefixes first: the most specific wins.
    models.sort_by_key(|(n, _)| (n.ends_with('*'), std::cmp::Reverse(n.len())));
    let fallback = match raw.fallback {
        Some(0) => return Err(ConfigError::new(join(path, "fallback"), "must be greater than 0")),
        f => f.unwrap_or(1),
    };
    Ok((cost, models, fallback, unit_price))
}
