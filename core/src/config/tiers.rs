//! Tiers (plans): their wording, upgrade path, and one cell per class
//! (`cells.rs`); classes pooled across tiers share one window.

use super::cells::{check_cell, Cell, Limits, Scope};
use super::classes::{class_names, Class};
use super::copy::{check_copy, CopySet};
use super::error::{join, ConfigError};
use super::fields::{check_name, check_text};
use super::raw::{OrderedMap, RawTier};
use super::read::FromNode;
use super::tree::Node;

/// Index of a tier in [`Config::tiers`] (`tier_order` = upgrade order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TierId(pub usize);

#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub label: String,
    pub upgrade_url: Option<String>,
    /// The tier an upgrade hint points to.
    pub upgrade_to: Option<TierId>,
    /// One cell per class, indexed by [`ClassId`].
    pub cells: Vec<Cell>,
    pub copy: CopySet,
}

/// The tiers' names in upgrade order (`tier_order`); at least one. The keys
/// of `tiers` give no order: control planes sort them.
pub(super) fn tier_names(raw: &OrderedMap<Node>, order: Option<&[String]>) -> Result<Vec<String>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new("tiers", "must define at least one tier"));
    }
    let Some(order) = order else {
        if raw.len() == 1 {
            return Ok(raw.keys().cloned().collect());
        }
        let names: Vec<&str> = raw.keys().map(String::as_str).collect();
        return Err(ConfigError::new(
            "tier_order",
            format!(
                "missing: list the tiers ({}) in upgrade order, cheapest first; the order of the keys of \
                 \"tiers\" is not kept (Istio and Envoy Gateway sort them)",
                names.join(", ")
            ),
        ));
    };
    for (i, name) in order.iter().enumerate() {
        let path = format!("tier_order[{i}]");
        if !raw.contains_key(name) {
            let known: Vec<&str> = raw.keys().map(String::as_str).collect();
            return Err(ConfigError::new(path, format!("no tier named \"{name}\" (tiers: {})", known.join(", "))));
        }
        if order.iter().take(i).any(|earlier| earlier == name) {
            return Err(ConfigError::new(path, format!("\"{name}\" is listed twice")));
        }
    }
    if let Some(missing) = raw.keys().find(|name| !order.contains(name)) {
        return Err(ConfigError::new("tier_order", format!("missing the tier \"{missing}\": list every tier once")));
    }
    Ok(order.to_vec())
}

/// The tier a field at `path` names.
pub(super) fn tier_id(tier_names: &[String], path: &str, name: &str) -> Result<TierId, ConfigError> {
    tier_names
        .iter()
        .position(|t| t == name)
        .map(TierId)
        .ok_or_else(|| ConfigError::new(path, format!("no tier named \"{name}\" (tiers: {})", tier_names.join(", "))))
}

/// Every tier, each with a cell for every class.
pub(super) fn check_tiers(
    raw: &OrderedMap<Node>,
    classes: &[Class],
    tier_names: &[String],
    scales: &[u64],
) -> Result<Vec<Tier>, ConfigError> {
    let tier_id = |path: &str, name: &str| tier_id(tier_names, path, name);
    let mut tiers = Vec::with_capacity(tier_names.len());
    for (index, name) in tier_names.iter().enumerate() {
        let path = join("tiers", name);
        check_name(&path, name)?;
        let raw_tier = RawTier::from_node(raw.get(name).unwrap_or(&Node::Null), &path)?;
        tiers.push(check_tier(&path, index, name, &raw_tier, classes, tier_names, scales, &tier_id)?);
    }
    Ok(tiers)
}

#[allow(clippy::too_many_arguments)]
fn check_tier(
    path: &str,
    index: usize,
    name: &str,
    raw: &RawTier,
    classes: &[Class],
    tier_names: &[String],
    scales: &[u64],
    tier_id: &dyn Fn(&str, &str) -> Result<TierId, ConfigError>,
) -> Result<Tier, ConfigError> {
    let limits_path = join(path, "limits");
    for key in raw.limits.keys() {
        if !classes.iter().any(|c| &c.name == key) {
            return Err(ConfigError::new(
                join(&limits_path, key),
                format!("no class named \"{key}\" (classes: {})", class_names(classes)),
            ));
        }
    }
    let cells = classes
        .iter()
        .zip(scales.iter().copied().chain(std::iter::repeat(1)))
        .map(|(class, scale)| {
            let cell_path = join(&limits_path, &class.name);
            match raw.limits.get(&class.name) {
                None => Err(ConfigError::new(
                    cell_path,
                    "missing: every tier needs a cell for every class (use {\"included\": false} for a class the plan does not include)",
                )),
                Some(cell) => check_cell(&cell_path, cell, scale),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let upgrade_to = match &raw.upgrade_to {
        Some(t) => Some(tier_id(&join(path, "upgrade_to"), t)?),
        None => (index + 1 < tier_names.len()).then_some(TierId(index + 1)),
    };
    if upgrade_to == Some(TierId(index)) {
        return Err(ConfigError::new(join(path, "upgrade_to"), "must name another tier"));
    }
    check_text(&join(path, "label"), &raw.label)?;
    if let Some(url) = &raw.upgrade_url {
        let plain = url.bytes().all(|b| b.is_ascii_graphic());
        if !plain || !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/')) {
            return Err(ConfigError::new(
                join(path, "upgrade_url"),
                format!("must be an http(s) URL or a path, got \"{url}\""),
            ));
        }
    }
    Ok(Tier {
        name: name.to_string(),
        label: raw.label.clone().unwrap_or_else(|| capitalise(name)),
        upgrade_url: raw.upgrade_url.clone(),
        upgrade_to,
        cells,
        copy: check_copy(&join(path, "copy"), raw.copy.as_ref())?,
    })
}

/// Members of one workspace on different plans share one pooled counter per
/// class (the key names the workspace and the class, not the tier), and a
/// counter whose window kind changes starts over: a class pooled in two
/// tiers with different windows would let one plan's members reset the
/// other's pool. So every tier that pools a class must give it one window.
/// (A stacked cell's counters name their window, so they are left out.)
pub(super) fn check_pooled_windows(classes: &[Class], tiers: &[Tier]) -> Result<(), ConfigError> {
    for (i, class) in classes.iter().enumerate() {
        for scope in [Scope::Workspace, Scope::Organisation] {
            check_pool_window(class, i, scope, tiers)?;
        }
    }
    Ok(())
}

fn check_pool_window(class: &Class, i: usize, scope: Scope, tiers: &[Tier]) -> Result<(), ConfigError> {
    {
        let mut first: Option<(&str, &Limits)> = None;
        for tier in tiers {
            let Some(Cell::Limited(stack)) = tier.cells.get(i) else { continue };
            let [l] = stack.as_slice() else { continue };
            if l.scope != scope {
                continue;
            }
            match first {
                None => first = Some((&tier.name, l)),
                Some((other, o)) if o.window != l.window => {
                    return Err(ConfigError::new(
                        format!("{}.window", join(&join(&join("tiers", &tier.name), "limits"), &class.name)),
                        format!(
                            "must be the same as in tier \"{other}\" (\"{}\"): both pool \"{}\" by {}, and \
                             members of one {} share that counter whatever their plan",
                            o.window_name,
                            class.name,
                            scope.as_str(),
                            scope.as_str()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn capitalise(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
