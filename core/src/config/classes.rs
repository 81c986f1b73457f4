//! Classes of requests: their names and wording, how they are matched
//! (`rules.rs`) and what they cost (`costs.rs`).

use super::copy::{check_copy, CopySet};
use super::costs::{check_cost, Cost};
use super::error::{join, ConfigError};
use super::fields::{check_name, check_text};
use super::raw::RawClass;
use super::rules::{check_rule, Rule};
use crate::negotiate::ErrorFormat;

/// Index of a class in [`Config::classes`] (document order = match order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassId(pub usize);

#[derive(Debug, Clone)]
pub struct Class {
    pub name: String,
    /// Shown to people: "Deep research".
    pub label: String,
    /// One unit: "deep-research call".
    pub unit: String,
    /// Several units: "deep-research calls".
    pub units: String,
    /// Any rule matching selects the class.
    pub rules: Vec<Rule>,
    pub cost: Cost,
    /// Cost multipliers by model: exact names, or prefixes ending in `*`.
    pub models: Vec<(String, f64)>,
    /// Units charged when the body does not say.
    pub cost_fallback: u64,
    /// Each unit's price in micro-units of the `prices` currency (a class
    /// metered in money by a unit rule).
    pub unit_price: Option<u64>,
    pub copy: CopySet,
    /// The JSON error envelope of the filter's answers to this class.
    pub error_format: ErrorFormat,
}

impl Class {
    /// Whether the class is metered in money (`price`, or `unit_price`):
    /// its costs, limits and usage are micro-units of the `prices` currency.
    pub fn in_money(&self) -> bool {
        matches!(self.cost, Cost::Priced { .. }) || self.unit_price.is_some()
    }

    /// "1 draft", "3 drafts".
    pub fn count(&self, n: u64) -> String {
        format!("{n} {}", if n == 1 { &self.unit } else { &self.units })
    }
}

/// The classes in document order (= match order): each checked, at least
/// one, no name twice.
pub(super) fn check_classes(raw: &[RawClass]) -> Result<Vec<Class>, ConfigError> {
    let classes =
        raw.iter().enumerate().map(|(i, c)| check_class(&format!("classes[{i}]"), c)).collect::<Result<Vec<_>, _>>()?;
    if classes.is_empty() {
        return Err(ConfigError::new("classes", "must list at least one class"));
    }
    for (i, c) in classes.iter().enumerate() {
        if classes.iter().take(i).any(|earlier| earlier.name == c.name) {
            return Err(ConfigError::new(format!("classes[{i}].name"), format!("duplicate class name \"{}\"", c.name)));
        }
    }
    Ok(classes)
}

/// The class a field at `path` names.
pub(super) fn class_id(classes: &[Class], path: &str, name: &str) -> Result<ClassId, ConfigError> {
    classes
        .iter()
        .position(|c| c.name == name)
        .map(ClassId)
        .ok_or_else(|| ConfigError::new(path, format!("no class named \"{name}\"")))
}

pub(super) fn check_class(path: &str, raw: &RawClass) -> Result<Class, ConfigError> {
    check_name(&join(path, "name"), &raw.name)?;
    check_text(&join(path, "label"), &raw.label)?;
    check_text(&join(path, "unit"), &raw.unit)?;
    check_text(&join(path, "units"), &raw.units)?;
    let label = raw.label.clone().unwrap_or_else(|| raw.name.replace(['_', '-'], " "));
    let units = raw.units.clone().or_else(|| raw.unit.as_ref().map(|u| format!("{u}s"))).unwrap_or_else(|| {
        // "deep_research" → "deep research requests"
        format!("{} requests", raw.name.replace(['_', '-'], " "))
    });
    let unit = raw.unit.clone().unwrap_or_else(|| format!("{} request", raw.name.replace(['_', '-'], " ")));
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| check_rule(&format!("{path}.match[{i}]"), r))
        .collect::<Result<Vec<_>, _>>()?;
    let cost = check_cost(&join(path, "cost"), raw.cost.as_ref())?;
    let copy = check_copy(&join(path, "copy"), raw.copy.as_ref())?;
    let error_format = match raw.error_format.as_deref() {
        None => ErrorFormat::Auto,
        Some(text) => ErrorFormat::parse(text).ok_or_else(|| {
            ConfigError::new(
                join(path, "error_format"),
                format!("must be \"auto\", \"openai\" or \"anthropic\", got \"{text}\""),
            )
        })?,
    };
    Ok(Class {
        name: raw.name.clone(),
        label,
        unit,
        units,
        rules,
        cost: cost.0,
        models: cost.1,
        cost_fallback: cost.2,
        unit_price: cost.3,
        copy,
        error_format,
    })
}

pub(super) fn class_names(classes: &[Class]) -> String {
    classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}
