//! Request bodies: how large the filter reads, what a class needs of them,
//! and what happens to one it cannot read.

use super::classes::{Class, ClassId};
use super::costs::Cost;
use super::error::ConfigError;
use super::tiers::Tier;

/// The config's choice for a request whose class or cost depends on a body
/// the filter cannot read. Either way it is never cheaper than its head allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnreadableBody {
    /// Answer 413 (too large) or 400 (unreadable) and charge nothing.
    #[default]
    Refuse,
    /// Charge the most restrictive outcome the method, path and headers allow
    /// (`unreadable::strictest`).
    Strictest,
}

/// The default `max_body_bytes` (defaults are documented in the README's config reference).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// The largest `max_body_bytes`.
pub const MAX_BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// What a class needs of the request body once it is classified; worked out
/// once at load, read on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyNeeds {
    /// The cost rule reads it.
    pub read: bool,
    /// A degrading cell rewrites its model, or the class asks for usage reports.
    pub rewrite: bool,
}

pub(super) fn body_needs(class: &Class, id: ClassId, tiers: &[Tier]) -> BodyNeeds {
    let degrades_model = tiers.iter().any(|t| {
        t.cells
            .get(id.0)
            .is_some_and(|c| c.limits().iter().any(|l| l.degrade.as_ref().is_some_and(|d| d.model.is_some())))
    });
    let asks_usage =
        matches!(class.cost, Cost::Tokens { include_usage: true, .. } | Cost::Priced { include_usage: true, .. });
    BodyNeeds { read: crate::cost::needs_body(class), rewrite: degrades_model || asks_usage }
}

pub(super) fn check_max_body_bytes(raw: Option<u64>) -> Result<usize, ConfigError> {
    match raw {
        None => Ok(DEFAULT_MAX_BODY_BYTES),
        Some(0) => Err(ConfigError::new("max_body_bytes", "must be greater than 0")),
        Some(n) => usize::try_from(n).ok().filter(|n| *n <= MAX_BODY_BYTES_LIMIT).ok_or_else(|| {
            ConfigError::new("max_body_bytes", format!("must be at most {MAX_BODY_BYTES_LIMIT} (64 MiB), got {n}"))
        }),
    }
}

pub(super) fn check_unreadable_body(raw: Option<&str>) -> Result<UnreadableBody, ConfigError> {
    match raw {
        None | Some("refuse") => Ok(UnreadableBody::Refuse),
        Some("strictest") => Ok(UnreadableBody::Strictest),
        Some(other) => {
            Err(ConfigError::new("unreadable_body", format!("must be \"refuse\" or \"strictest\", got \"{other}\"")))
        }
    }
}

/// Headers can only be set before they leave: a class decided once its
/// body is read needs them held if a cell sets a request header.
pub(super) fn check_held_headers(
    classes: &[Class],
    tiers: &[Tier],
    tier_names: &[String],
    body_needs: &[BodyNeeds],
    hold_headers_for_body: bool,
) -> Result<(), ConfigError> {
    for (tier, name) in tiers.iter().zip(tier_names) {
        for ((class, cell), needs) in classes.iter().zip(&tier.cells).zip(body_needs) {
            let sets_header = cell
                .limits()
                .iter()
                .any(|l| l.degrade.as_ref().is_some_and(|d| d.header.is_some()) || l.queue.is_some());
            let body_decided = class.rules.iter().any(|r| !r.body.is_empty()) || needs.read || needs.rewrite;
            if sets_header && body_decided && !hold_headers_for_body {
                return Err(ConfigError::new(
                    format!("tiers.{name}.limits.{}", class.name),
                    "sets a request header for a class decided from the body: needs \"hold_headers_for_body\": true",
                ));
            }
        }
    }
    Ok(())
}

/// The top-level members of a JSON request body the filter reads: those
/// the class rules name (by their first segment), the cost reads (the
/// record array's, the prompt text and completion budget of a token or
/// money cost) and the rewrites and the ledger touch (`model`, `stream`,
/// `stream_options`); every member when a cost counts the records of the
/// body itself. A body is parsed for these only (see `body.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKeys {
    All,
    Only(std::collections::BTreeSet<String>),
}

/// Members every config reads besides the completion budget: the model
/// (cost multipliers, prices, degrading, the ledger) and streaming (the
/// ledger, usage reports).
const ALWAYS_READ: [&str; 3] = ["model", "stream", "stream_options"];

/// Where a token estimate reads the completion budget, in this order
/// (`cost::estimate_token_parts`).
pub const BUDGET_KEYS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

/// Where a token estimate reads the prompt's text (`cost::estimate_token_parts`).
pub const PROMPT_KEYS: [&str; 4] = ["messages", "input", "prompt", "system"];

pub(super) fn body_keys(classes: &[Class]) -> BodyKeys {
    let mut keys: std::collections::BTreeSet<String> =
        ALWAYS_READ.iter().chain(&BUDGET_KEYS).map(|k| k.to_string()).collect();
    for class in classes {
        for cond in class.rules.iter().flat_map(|r| &r.body) {
            match cond.field.first() {
                Some(first) => keys.insert(first.clone()),
                None => return BodyKeys::All,
            };
        }
        match &class.cost {
            Cost::Records { jsonl: false, field: None } => return BodyKeys::All,
            Cost::Records { jsonl: false, field: Some(path) } => match path.first() {
                Some(first) => {
                    keys.insert(first.clone());
                }
                None => return BodyKeys::All,
            },
            Cost::Tokens { .. } | Cost::Priced { .. } => keys.extend(PROMPT_KEYS.iter().map(|k| k.to_string())),
            Cost::Records { jsonl: true, .. } | Cost::Fixed(_) | Cost::Bytes { .. } => {}
        }
    }
    BodyKeys::Only(keys)
}
