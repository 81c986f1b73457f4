//! Smells: configs the filter accepts but that probably do not say what
//! their author meant. Each names the JSON path to look at. Errors are the
//! core's business (`Config::from_json`); these are only warnings.

use crate::describe::{self, Amounts};
use quota_core::config::{
    AtHard, BodyCond, Cell, ClassId, Config, HeaderCond, Limits, MissingWorkspace, PathMatch, Rule, Scope, TextTest,
    TierId, ValueTest, DEFAULT_WARN_AT,
};
use quota_core::copy::{per_window, upgrade_hint};
use quota_core::window::{CalendarUnit, WindowSpec};
use serde_json::Value;

/// One warning about the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smell {
    /// JSON path, as the core's errors print it.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Smell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every smell of a checked config, in document order (classes, then tiers;
/// in a cell, each limit in the order the cell lists them).
/// `raw` is the same document as JSON, for what checking removed.
pub fn smells(config: &Config, raw: &Value) -> Vec<Smell> {
    let mut out = Vec::new();
    unreachable_classes(config, &mut out);
    never_included(config, &mut out);
    for (t, tier) in config.tiers.iter().enumerate() {
        upgrade_links(config, raw, t, &mut out);
        for (c, class) in config.classes.iter().enumerate() {
            let Some(Cell::Limited(stack)) = tier.cells.get(c) else {
                continue;
            };
            let at = LimitPaths::new(raw, &tier.name, &class.name);
            let a = Amounts::of(config, ClassId(c));
            for (i, limits) in stack.iter().enumerate() {
                let path = at.path(i);
                let written = at.raw(i).and_then(|l| l.get("warn_at")).and_then(Value::as_array);
                warning_levels(&path, limits, written, a, &mut out);
                pool_without_sources(config, &path, limits, &mut out);
                never_fits(config, ClassId(c), &path, limits, &mut out);
            }
            never_exceeded(config, &at, stack, a, &mut out);
        }
    }
    out
}

/// Where the limits of one cell are, as JSON paths and in the raw document:
/// the cell itself for one limit written as an object, `cell[i]` in a list.
struct LimitPaths<'a> {
    cell: String,
    raw: Option<&'a Value>,
}

impl<'a> LimitPaths<'a> {
    fn new(raw: &'a Value, tier: &str, class: &str) -> LimitPaths<'a> {
        LimitPaths {
            cell: format!("tiers.{tier}.limits.{class}"),
            raw: raw.get("tiers").and_then(|t| t.get(tier)).and_then(|t| t.get("limits")).and_then(|l| l.get(class)),
        }
    }

    fn listed(&self) -> bool {
        self.raw.is_some_and(Value::is_array)
    }

    /// The JSON path of limit `i`, as the core's errors print it.
    fn path(&self, i: usize) -> String {
        if self.listed() {
            format!("{}[{i}]", self.cell)
        } else {
            self.cell.clone()
        }
    }

    /// Limit `i` as written.
    fn raw(&self, i: usize) -> Option<&'a Value> {
        match self.raw {
            Some(Value::Array(list)) => list.get(i),
            other => other,
        }
    }
}

/// A pooled limit when no source names a workspace (or organisation): no
/// caller ever reaches the pool, so every request is refused (or, with
/// `missing_workspace: user`, counted per user).
fn pool_without_sources(config: &Config, path: &str, limits: &Limits, out: &mut Vec<Smell>) {
    let (sources, pool) = match limits.scope {
        Scope::User => return,
        Scope::Workspace => (&config.identity.workspace, "workspace"),
        Scope::Organisation => (&config.identity.organisation, "organisation"),
    };
    if !sources.is_empty() {
        return;
    }
    let outcome = match config.identity.missing_workspace {
        MissingWorkspace::Reject => "every request for it is refused with 403 (workspace_required)",
        MissingWorkspace::User => "every caller is counted alone",
    };
    out.push(Smell {
        path: format!("{path}.scope"),
        message: format!("pooled by {pool}, but identity.{pool} lists no source: {outcome}"),
    });
}

/// A limit of a stack whose hard limit can never be exceeded: another limit
/// of the stack counts every request it counts (the same scope, or any
/// scope over a per-user limit: a pool holds its members' use) and lets
/// too few through over the same time. Say limit X (hard `hx`, windows of
/// at most `lx` seconds) and limit Y (at most `my` units in any of its
/// windows: its hard limit plus what `at_hard` admits past it). A request
/// goes through only if it fits both, so the units X counts in one window
/// are at most `my` times the number of Y's windows that window can
/// overlap: 1 when X's calendar unit lies inside Y's, `ceil(lx / ly)` when
/// Y's lies inside X's (calendar units nest only while every caller keeps
/// the configured calendar), else (a counter's windows follow one another
/// without overlapping) `ceil(lx / shortest Y window) + 1`. When that is at most
/// `hx`, X never refuses a request (nor serves one otherwise) that Y
/// admits. Grants, corrections after the response and a caller's change of
/// plan mid-window are left out; limits an admin may re-cap (`admin_cap`)
/// are skipped.
fn never_exceeded(config: &Config, at: &LimitPaths, stack: &[Limits], a: Amounts, out: &mut Vec<Smell>) {
    for (i, x) in stack.iter().enumerate() {
        if x.admin_cap {
            continue;
        }
        let bound = stack.iter().enumerate().find_map(|(j, y)| {
            if i == j || y.admin_cap || !(x.scope == Scope::User || x.scope == y.scope) {
                return None;
            }
            let most = y.hard.checked_add(y.beyond_hard_cap()?)?;
            let (n, nested) = windows_overlapped(config, &x.window, &y.window)?;
            let total = most.checked_mul(n)?;
            (total <= x.hard).then_some((j, y, most, n, nested, total))
        });
        let Some((j, y, most, n, nested, total)) = bound else { continue };
        let words =
            |l: &Limits| format!("{} {} {}", a.show(l.hard), per_window(&l.window), describe::stack_scope(l, stack));
        let lets = if most == y.hard {
            words(y)
        } else {
            format!("{} ({} with what it admits past it)", words(y), a.show(most))
        };
        let why = if n == 1 && nested && x.window == y.window {
            "over the same windows".to_string()
        } else if n == 1 && nested {
            format!(
                "and every {} lies within one {}",
                describe::window_span(&x.window),
                describe::window_span(&y.window)
            )
        } else {
            format!(
                "and a {} overlaps at most {n} {}s ({n} × {} = {})",
                describe::window_span(&x.window),
                describe::window_span(&y.window),
                a.show(most),
                a.show(total)
            )
        };
        out.push(Smell {
            path: format!("{}.hard", at.path(i)),
            message: format!("{} can never be exceeded: limit [{j}] lets through at most {lets}, {why}", words(x)),
        });
    }
}

/// The most windows of `y` one window of `x` can overlap, and whether the
/// two nest as calendar units; `None` when it is not known.
fn windows_overlapped(config: &Config, x: &WindowSpec, y: &WindowSpec) -> Option<(u64, bool)> {
    let (_, longest) = span_seconds(x);
    let (shortest, _) = span_seconds(y);
    let count = longest.checked_add(shortest.checked_sub(1)?)?.checked_div(shortest)?;
    // Calendar windows nest only when every caller keeps one calendar: a
    // caller's own UTC offset may move a counter's next window.
    let fixed = config.calendar.user_utc_offset.is_empty();
    match (x, y) {
        (WindowSpec::Calendar(ux), WindowSpec::Calendar(uy)) if fixed && inside(*ux, *uy) => Some((1, true)),
        (WindowSpec::Calendar(ux), WindowSpec::Calendar(uy)) if fixed && inside(*uy, *ux) => Some((count, true)),
        _ => Some((count.checked_add(1)?, false)),
    }
}

/// Whether every window of calendar unit `a` lies inside one of unit `b`.
fn inside(a: CalendarUnit, b: CalendarUnit) -> bool {
    use CalendarUnit::{Day, Hour, Minute, Month, Week};
    let rank = |u: CalendarUnit| match u {
        Minute => 0,
        Hour => 1,
        Day => 2,
        Week | Month => 3,
    };
    // A week may straddle two months; every shorter unit nests in both.
    a == b || (rank(a) < rank(b) && matches!((a, b), (Minute | Hour | Day, _)))
}

/// The shortest and longest a window of `spec` lasts, in seconds.
fn span_seconds(spec: &WindowSpec) -> (u64, u64) {
    const DAY: u64 = 86_400;
    match spec {
        WindowSpec::Calendar(CalendarUnit::Month) => (28 * DAY, 31 * DAY),
        other => {
            let s = u64::try_from(other.nominal_seconds()).unwrap_or(0);
            (s, s)
        }
    }
}

/// (4) Classes no request can reach, and rules an earlier class always wins.
fn unreachable_classes(config: &Config, out: &mut Vec<Smell>) {
    for (c, class) in config.classes.iter().enumerate() {
        let is_default = config.default_class.map(|d| d.0) == Some(c);
        let path = format!("classes[{c}]");
        if class.rules.is_empty() {
            if !is_default {
                out.push(Smell {
                    path,
                    message: format!(
                        "class \"{}\" has no match rules and is not the default_class: no request is ever counted as {}",
                        class.name, class.label
                    ),
                });
            }
            continue;
        }
        let shadows: Vec<Option<String>> = class.rules.iter().map(|rule| earlier_cover(config, c, rule)).collect();
        if shadows.iter().all(Option::is_some) && !is_default {
            let by: Vec<String> = shadows.iter().flatten().cloned().collect();
            out.push(Smell {
                path,
                message: format!(
                    "class \"{}\" is unreachable: earlier classes catch every request its rules match: {}",
                    class.name,
                    by.join(", ")
                ),
            });
            continue;
        }
        for (r, by) in shadows.iter().enumerate() {
            if let Some(by) = by {
                out.push(Smell {
                    path: format!("{path}.match[{r}]"),
                    message: format!("never matches: {by} comes first and catches every request this rule matches"),
                });
            }
        }
    }
    if let Some(default) = config.default_class {
        let catch_all = config.classes.iter().enumerate().find_map(|(c, class)| {
            class.rules.iter().position(is_catch_all).map(|r| format!("classes[{c}].match[{r}]"))
        });
        if let (Some(by), Some(class)) = (catch_all, config.class(default)) {
            out.push(Smell {
                path: "default_class".into(),
                message: format!("\"{}\" is never used as the default: {by} matches every request", class.name),
            });
        }
    }
}

/// A class that every tier leaves out: each of its requests gets a 403.
fn never_included(config: &Config, out: &mut Vec<Smell>) {
    for (c, class) in config.classes.iter().enumerate() {
        let nowhere = config.tiers.iter().all(|t| matches!(t.cells.get(c), Some(Cell::NotIncluded)));
        if nowhere {
            out.push(Smell {
                path: format!("classes[{c}]"),
                message: format!(
                    "class \"{}\" is included in no tier: every request counted as {} is refused with 403",
                    class.name, class.label
                ),
            });
        }
    }
}

/// (1), (2) and (5): upgrade copy without a link, a link never shown, an
/// upgrade that points back down, and upgrades that give no more. A
/// stack's limits are each compared with the next tier's limit of the same
/// scope and window (the one the upgrade copy names).
fn upgrade_links(config: &Config, raw: &Value, t: usize, out: &mut Vec<Smell>) {
    let Some(tier) = config.tiers.get(t) else {
        return;
    };
    let path = format!("tiers.{}", tier.name);
    let Some(next_id) = tier.upgrade_to else {
        if tier.upgrade_url.is_some() {
            out.push(Smell {
                path: format!("{path}.upgrade_url"),
                message: format!(
                    "never shown: \"{}\" has no tier to upgrade to (it is the last tier; set upgrade_to)",
                    tier.name
                ),
            });
        }
        return;
    };
    let Some(next) = config.tier(next_id) else {
        return;
    };
    if tier.upgrade_url.is_none() {
        out.push(Smell {
            path: format!("{path}.upgrade_url"),
            message: format!(
                "missing: upgrade copy for {} users names {} but has no link to upgrade",
                tier.label, next.label
            ),
        });
    }
    if next_id.0 < t {
        out.push(Smell {
            path: format!("{path}.upgrade_to"),
            message: format!(
                "\"{}\" comes before \"{}\" in the tier order: the upgrade points back down",
                next.name, tier.name
            ),
        });
    }
    for (c, class) in config.classes.iter().enumerate() {
        let (Some(here), Some(there)) = (tier.cells.get(c), next.cells.get(c)) else {
            continue;
        };
        let cell_path = format!("{path}.limits.{}", class.name);
        let (a, b) = match (here, there) {
            (Cell::NotIncluded, Cell::NotIncluded) => {
                out.push(Smell {
                    path: cell_path,
                    message: format!(
                        "{} does not include {} either: the 403 offers no way to get it",
                        next.label, class.label
                    ),
                });
                continue;
            }
            (Cell::Limited(_), Cell::NotIncluded) => {
                out.push(Smell {
                    path: cell_path,
                    message: format!(
                        "{} does not include {}: upgrading takes it away, and the wall offers no upgrade",
                        next.label, class.label
                    ),
                });
                continue;
            }
            (Cell::NotIncluded, Cell::Limited(_)) => continue,
            (Cell::Limited(a), Cell::Limited(b)) => (a, b),
        };
        let at = LimitPaths::new(raw, &tier.name, &class.name);
        let amounts = Amounts::of(config, ClassId(c));
        // A class metered in money gives more or less budget, not units.
        let units = if amounts.currency().is_some() { "budget" } else { class.units.as_str() };
        for (i, l) in a.iter().enumerate() {
            if upgrade_hint(config, TierId(t), ClassId(c), i).is_some() {
                continue;
            }
            // The limit the upgrade copy compares with (see `upgrade_hint`).
            let same = match b.as_slice() {
                [only] => Some(only),
                stack => stack.iter().find(|m| m.scope == l.scope && m.window == l.window),
            };
            let what = format!("{units} {} {}", per_window(&l.window), describe::stack_scope(l, a));
            let message = match same {
                Some(m) if a.len() == 1 && b.len() == 1 => format!(
                    "{} gives no more {units} ({} vs {}): the wall offers no upgrade",
                    next.label,
                    amounts.show(m.hard),
                    amounts.show(l.hard)
                ),
                Some(m) => format!(
                    "{} gives no more {what} ({} vs {}): the wall of this limit offers no upgrade",
                    next.label,
                    amounts.show(m.hard),
                    amounts.show(l.hard)
                ),
                None => format!(
                    "{} has no limit on {what} to compare with: the wall of this limit offers no upgrade",
                    next.label
                ),
            };
            out.push(Smell { path: at.path(i), message });
        }
    }
}

/// (3) Warning levels that can never fire on their own, and cells that
/// reach the wall without any warning. A class metered in money holds
/// micro-units, but its levels are computed on the numbers as written (the
/// currency's minor units, then scaled), and so are they here.
fn warning_levels(
    path: &str,
    limits: &quota_core::config::Limits,
    written: Option<&Vec<Value>>,
    a: Amounts,
    out: &mut Vec<Smell>,
) {
    let hard = limits.hard;
    let scale = a.currency().map_or(1, describe::minor_unit);
    // The levels as the core computes them, before it drops and merges them.
    let level = |f: f64| (((hard / scale) as f64) * f).ceil().max(1.0) as u64 * scale;
    if let Some(fractions) = written {
        let mut seen: Vec<(u64, String)> = Vec::new();
        if let Some(soft) = limits.soft {
            seen.push((soft, format!("the soft limit ({})", a.show(soft))));
        }
        for (i, f) in fractions.iter().enumerate() {
            let Some(f) = f.as_f64() else { continue };
            let at = level(f);
            let here = format!("{path}.warn_at[{i}]");
            if at >= hard {
                out.push(Smell {
                    path: here,
                    message: format!(
                        "can never fire: {f} of {} rounds up to {}, {} the hard limit",
                        a.show(hard),
                        a.show(at),
                        if at == hard { "which is" } else { "past" }
                    ),
                });
            } else if let Some((_, other)) = seen.iter().find(|(l, _)| *l == at) {
                out.push(Smell {
                    path: here,
                    message: format!(
                        "never fires on its own: {f} of {} rounds up to {}, the same level as {other}",
                        a.show(hard),
                        a.show(at)
                    ),
                });
            } else {
                seen.push((at, format!("warn_at[{i}] ({})", a.show(at))));
            }
        }
    }
    if limits.warn_levels.is_empty() && limits.at_hard == AtHard::Block {
        let fractions =
            written.map_or_else(|| format!("the default warn_at {DEFAULT_WARN_AT:?}"), |_| "warn_at".to_string());
        out.push(Smell {
            path: path.to_string(),
            message: format!(
                "users reach the wall at {} without a warning: no soft limit, and {fractions} rounds to the hard limit",
                a.show(hard)
            ),
        });
    }
}

/// A limit no request of its class can ever fit: a fixed cost (times its
/// unit price, in money) above the most the limit admits in a window, so
/// every request is refused (413) unless a grant pays for it. In money this
/// is most often a limit written in major units ("hard": 5 meaning $5.00)
/// where the config reads minor units ($0.05). Costs that depend on the
/// body or the model vary, and are left out.
fn never_fits(config: &Config, class: ClassId, path: &str, limits: &Limits, out: &mut Vec<Smell>) {
    let Some(c) = config.class(class) else { return };
    if !matches!(c.cost, quota_core::config::Cost::Fixed(_)) || !c.models.is_empty() {
        return;
    }
    let cost = quota_core::engine::request_cost(config, class, quota_core::cost::Body::default());
    let ceiling = limits.request_ceiling();
    if cost <= ceiling {
        return;
    }
    let a = Amounts::of(config, class);
    let written = match a.currency() {
        Some(currency) => format!(
            " (a class metered in money writes its limits in minor units: \"hard\": {} is {})",
            limits.hard / describe::minor_unit(currency),
            a.show(limits.hard)
        ),
        None => String::new(),
    };
    out.push(Smell {
        path: format!("{path}.hard"),
        message: format!(
            "one request costs {}, more than the {} this limit admits in a window{written}: without a grant, \
             every request is refused (413)",
            a.exact(cost),
            a.show(ceiling)
        ),
    });
}

/// The earlier class's rule that matches every request `rule` matches, as a
/// JSON path, if any.
fn earlier_cover(config: &Config, class: usize, rule: &Rule) -> Option<String> {
    config.classes.iter().take(class).enumerate().find_map(|(c, earlier)| {
        earlier
            .rules
            .iter()
            .position(|e| covers(e, rule))
            .map(|r| format!("classes[{c}].match[{r}] ({})", earlier.name))
    })
}

fn is_catch_all(rule: &Rule) -> bool {
    rule.methods.is_empty() && rule.path.is_none() && rule.headers.is_empty() && rule.body.is_empty()
}

/// Whether `a` matches every request `b` matches. Conservative: `false`
/// unless it is certain.
pub fn covers(a: &Rule, b: &Rule) -> bool {
    let methods = a.methods.is_empty() || (!b.methods.is_empty() && b.methods.iter().all(|m| a.methods.contains(m)));
    let path = match (&a.path, &b.path) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pa), Some(pb)) => path_covers(pa, pb),
    };
    methods
        && path
        && a.headers.iter().all(|ha| b.headers.iter().any(|hb| header_implies(hb, ha)))
        && a.body.iter().all(|ca| b.body.iter().any(|cb| body_implies(cb, ca)))
}

fn path_covers(a: &PathMatch, b: &PathMatch) -> bool {
    match (a, b) {
        (PathMatch::Exact(x), PathMatch::Exact(y)) => x == y,
        (PathMatch::Prefix(p), PathMatch::Exact(e) | PathMatch::Prefix(e)) => e.starts_with(p.as_str()),
        (PathMatch::Glob(g), PathMatch::Exact(e)) => g.matches(e),
        (PathMatch::Glob(g), PathMatch::Glob(h)) => g == h,
        _ => false,
    }
}

/// Whether every value passing `b` also passes `a` (same header).
fn header_implies(b: &HeaderCond, a: &HeaderCond) -> bool {
    b.name == a.name
        && match (&a.test, &b.test) {
            (TextTest::Exists(true), TextTest::Exists(false)) => false,
            (TextTest::Exists(true), _) => true,
            (TextTest::Exists(x), TextTest::Exists(y)) => x == y,
            (TextTest::Equals(x), TextTest::Equals(y)) => x == y,
            (TextTest::OneOf(set), TextTest::Equals(y)) => set.contains(y),
            (TextTest::OneOf(set), TextTest::OneOf(ys)) => ys.iter().all(|y| set.contains(y)),
            (TextTest::Prefix(p), TextTest::Equals(y) | TextTest::Prefix(y)) => y.starts_with(p.as_str()),
            (TextTest::Prefix(p), TextTest::OneOf(ys)) => ys.iter().all(|y| y.starts_with(p.as_str())),
            _ => false,
        }
}

/// Whether every body passing `b` also passes `a` (same field).
fn body_implies(b: &BodyCond, a: &BodyCond) -> bool {
    b.field == a.field
        && match (&a.test, &b.test) {
            (ValueTest::Exists(true), ValueTest::Exists(false)) => false,
            (ValueTest::Exists(true), _) => true,
            (ValueTest::Exists(x), ValueTest::Exists(y)) => x == y,
            (ValueTest::Equals(x), ValueTest::Equals(y)) => x == y,
            (ValueTest::OneOf(set), ValueTest::Equals(y)) => set.contains(y),
            (ValueTest::OneOf(set), ValueTest::OneOf(ys)) => ys.iter().all(|y| set.contains(y)),
            (ValueTest::Prefix(p), ValueTest::Prefix(y)) => y.starts_with(p.as_str()),
            (ValueTest::Prefix(p), ValueTest::Equals(Value::String(y))) => y.starts_with(p.as_str()),
            (
                ValueTest::Compare { gt: a1, gte: a2, lt: a3, lte: a4 },
                ValueTest::Compare { gt: b1, gte: b2, lt: b3, lte: b4 },
            ) => a1 == b1 && a2 == b2 && a3 == b3 && a4 == b4,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(doc: &Value) -> Config {
        Config::from_json(doc.to_string().as_bytes()).unwrap()
    }

    fn base(classes: Value, tiers: Value) -> Value {
        let order: Vec<String> = tiers.as_object().map(|t| t.keys().cloned().collect()).unwrap_or_default();
        json!({
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": classes,
            "tier_order": order,
            "tiers": tiers,
        })
    }

    fn paths(doc: &Value) -> Vec<String> {
        smells(&config(doc), doc).into_iter().map(|s| s.path).collect()
    }

    #[test]
    fn the_demo_matrix_has_no_smells() {
        let text = include_str!("../../envoy/demo-config.json");
        let raw: Value = serde_json::from_str(text).unwrap();
        assert_eq!(smells(&config(&raw), &raw), vec![]);
    }

    #[test]
    fn broader_earlier_rules_shadow_later_ones() {
        let rule = |v: Value| {
            let doc = base(
                json!([{"name": "a", "match": [v]}]),
                json!({"free": {"limits": {"a": {"hard": 1, "window": "day"}}}}),
            );
            config(&doc).classes[0].rules[0].clone()
        };
        let post_exact = rule(json!({"methods": ["POST"], "path": {"exact": "/v1/x"}}));
        let any_prefix = rule(json!({"path": {"prefix": "/v1/"}}));
        let with_model = rule(json!({"methods": ["POST"], "path": {"exact": "/v1/x"},
                                     "body": [{"field": "model", "equals": "m"}]}));
        let one_of = rule(json!({"body": [{"field": "model", "one_of": ["m", "n"]}]}));
        let header = rule(json!({"headers": [{"name": "x-f", "equals": "beta"}]}));
        let has_header = rule(json!({"headers": [{"name": "x-f", "exists": true}]}));
        assert!(covers(&any_prefix, &post_exact));
        assert!(!covers(&post_exact, &any_prefix));
        assert!(covers(&post_exact, &with_model));
        assert!(!covers(&with_model, &post_exact));
        assert!(covers(&one_of, &with_model));
        assert!(covers(&has_header, &header));
        assert!(!covers(&header, &has_header));
    }

    #[test]
    fn a_pool_no_caller_can_name_is_a_smell() {
        let mut doc = base(
            json!([{"name": "drafts", "match": [{"path": {"prefix": "/"}}]}]),
            json!({"free": {"limits": {"drafts": {"hard": 10, "window": "day", "scope": "workspace"}}}}),
        );
        let found = smells(&config(&doc), &doc);
        assert_eq!(found.iter().map(ToString::to_string).collect::<Vec<_>>(), [
            "tiers.free.limits.drafts.scope: pooled by workspace, but identity.workspace lists no source: every request for it is refused with 403 (workspace_required)"
        ]);
        doc["identity"]["missing_workspace"] = json!("user");
        assert!(smells(&config(&doc), &doc)[0].message.ends_with("every caller is counted alone"));
        doc["identity"]["workspace"] = json!([{"header": "x-workspace-id"}]);
        assert_eq!(paths(&doc), Vec::<String>::new());
    }

    #[test]
    fn finds_each_kind_of_smell() {
        let doc = base(
            json!([
                {"name": "chat", "match": [{"methods": ["POST"], "path": {"prefix": "/v1/"}}]},
                {"name": "drafts", "match": [{"methods": ["POST"], "path": {"exact": "/v1/chat"}}]},
                {"name": "export"}
            ]),
            json!({
                "free": {"limits": {
                    "chat": {"hard": 10, "window": "day", "warn_at": [0.5, 0.95, 0.42]},
                    "drafts": {"hard": 1, "window": "day"},
                    "export": {"included": false}}},
                "pro": {"upgrade_url": "https://x", "limits": {
                    "chat": {"hard": 20, "window": "day"},
                    "drafts": {"hard": 5, "window": "day"},
                    "export": {"included": false}}}
            }),
        );
        assert_eq!(
            paths(&doc),
            [
                "classes[1]",
                "classes[2]",
                "classes[2]",
                "tiers.free.upgrade_url",
                "tiers.free.limits.export",
                "tiers.free.limits.chat.warn_at[1]",
                "tiers.free.limits.chat.warn_at[2]",
                "tiers.free.limits.drafts",
                "tiers.pro.upgrade_url",
            ]
        );
    }

    /// One class, `drafts`, whose `pro` cell is `cell`; `max` (the upgrade) has `next`.
    fn stacked(cell: Value, next: Value) -> Value {
        json!({
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                         "default_tier": "pro"},
            "classes": [{"name": "drafts", "unit": "draft", "match": [{"path": {"prefix": "/"}}]}],
            "tier_order": ["pro", "max"],
            "tiers": {
                "pro": {"upgrade_url": "https://x", "limits": {"drafts": cell}},
                "max": {"limits": {"drafts": next}}
            },
        })
    }

    fn said(doc: &Value) -> Vec<String> {
        smells(&config(doc), doc).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_limit_of_a_stack_is_smelled_at_its_own_path() {
        let mut doc = stacked(
            json!([
                {"scope": "workspace", "hard": 300, "window": "day"},
                {"hard": 50, "window": "day", "warn_at": [0.99]}
            ]),
            json!([{"scope": "workspace", "hard": 3000, "window": "day"}, {"hard": 500, "window": "day"}]),
        );
        assert_eq!(paths(&doc), ["tiers.pro.limits.drafts[1].warn_at[0]", "tiers.pro.limits.drafts[1]"]);
        // A pool nobody can name, on the second limit of the stack.
        doc["identity"]["workspace"] = json!([]);
        doc["tiers"]["pro"]["limits"]["drafts"] =
            json!([{"hard": 50, "window": "day"}, {"scope": "workspace", "hard": 300, "window": "day"}]);
        assert!(said(&doc).contains(&"tiers.pro.limits.drafts[1].scope: pooled by workspace, but identity.workspace lists no source: every request for it is refused with 403 (workspace_required)".to_string()), "{:?}", said(&doc));
    }

    #[test]
    fn upgrades_compare_the_same_limit_across_tiers() {
        let doc = stacked(
            json!([{"hard": 45, "window": "5h"}, {"hard": 900, "window": "week"}]),
            json!([{"hard": 90, "window": "5h"}, {"hard": 900, "window": "week"}]),
        );
        assert_eq!(
            said(&doc),
            ["tiers.pro.limits.drafts[1]: Max gives no more drafts a week per user (900 vs 900): the wall of this limit offers no upgrade"]
        );
        // The weekly limit has no counterpart in Max: its wall offers no upgrade.
        let doc = stacked(
            json!([{"hard": 45, "window": "5h"}, {"hard": 900, "window": "week"}]),
            json!([{"hard": 90, "window": "5h"}, {"hard": 9000, "window": "month"}]),
        );
        assert_eq!(
            said(&doc),
            ["tiers.pro.limits.drafts[1]: Max has no limit on drafts a week per user to compare with: the wall of this limit offers no upgrade"]
        );
        // One limit upgrading to a stack: compared with the stack's largest
        // of the same window (the team's 300, as the core's hint offers it),
        // not each member's share.
        let doc = stacked(
            json!({"hard": 100, "window": "day"}),
            json!([{"scope": "workspace", "hard": 300, "window": "day"}, {"hard": 50, "window": "day"}]),
        );
        assert_eq!(said(&doc), Vec::<String>::new());
        let doc = stacked(
            json!({"hard": 400, "window": "day"}),
            json!([{"scope": "workspace", "hard": 300, "window": "day"}, {"hard": 50, "window": "day"}]),
        );
        assert_eq!(said(&doc).len(), 1, "{:?}", said(&doc));
        // A stack upgrading to one limit: every limit is offered that one.
        let doc = stacked(
            json!([{"hard": 45, "window": "5h"}, {"hard": 900, "window": "week"}]),
            json!({"hard": 5000, "window": "week"}),
        );
        assert_eq!(said(&doc), Vec::<String>::new());
    }

    #[test]
    fn a_limit_another_one_keeps_out_of_reach_is_a_smell() {
        let next = json!({"hard": 100_000, "window": "month"});
        let never = |cell: Value| said(&stacked(cell, next.clone()));
        // 45 every 5 hours and 30 a week: a 5-hour window that straddles the
        // week's reset holds up to 30 from each week, so 45 can be reached.
        assert_eq!(never(json!([{"hard": 45, "window": "5h"}, {"hard": 30, "window": "week"}])), Vec::<String>::new());
        // 20 a week: at most 40 in any 5 hours.
        assert_eq!(
            never(json!([{"hard": 45, "window": "5h"}, {"hard": 20, "window": "week"}])),
            ["tiers.pro.limits.drafts[0].hard: 45 every 5 hours per user can never be exceeded: limit [1] lets through at most 20 a week per user, and a 5-hour window overlaps at most 2 weeks (2 × 20 = 40)"]
        );
        // The longer window: a week overlaps at most 35 five-hour windows of 45
        // (the 1575th unit fits, so a hard limit of 1575 is never exceeded).
        assert_eq!(
            never(json!([{"hard": 45, "window": "5h"}, {"hard": 1575, "window": "week"}])),
            ["tiers.pro.limits.drafts[1].hard: 1575 a week per user can never be exceeded: limit [0] lets through at most 45 every 5 hours per user, and a week overlaps at most 35 5-hour windows (35 × 45 = 1575)"]
        );
        assert_eq!(
            never(json!([{"hard": 45, "window": "5h"}, {"hard": 1574, "window": "week"}])),
            Vec::<String>::new()
        );
        // Calendar units nest: a day lies within one week, a week holds 7 days.
        assert_eq!(
            never(json!([{"hard": 40, "window": "day"}, {"hard": 40, "window": "week"}])),
            ["tiers.pro.limits.drafts[0].hard: 40 a day per user can never be exceeded: limit [1] lets through at most 40 a week per user, and every day lies within one week"]
        );
        assert_eq!(
            never(json!([{"scope": "workspace", "hard": 60, "window": "day"}, {"hard": 420, "window": "week"}])),
            ["tiers.pro.limits.drafts[1].hard: 420 a week per member can never be exceeded: limit [0] lets through at most 60 a day pooled per workspace, and a week overlaps at most 7 days (7 × 60 = 420)"]
        );
        // What a limit admits past its hard limit counts; without a ceiling, no bound.
        assert_eq!(
            never(json!([{"hard": 40, "window": "day"}, {"hard": 30, "window": "week", "at_hard": "overage", "overage": {"cap": 10}}])),
            ["tiers.pro.limits.drafts[0].hard: 40 a day per user can never be exceeded: limit [1] lets through at most 30 a week per user (40 with what it admits past it), and every day lies within one week"]
        );
        assert_eq!(
            never(json!([{"hard": 40, "window": "day"}, {"hard": 30, "window": "week", "at_hard": "warn"}])),
            Vec::<String>::new()
        );
        // A member's cap as large as the pool of the same window adds nothing.
        assert_eq!(
            never(json!([{"scope": "workspace", "hard": 50, "window": "day"}, {"hard": 50, "window": "day"}])),
            ["tiers.pro.limits.drafts[1].hard: 50 a day per member can never be exceeded: limit [0] lets through at most 50 a day pooled per workspace, over the same windows"]
        );
        // A pool holds other members' use too: a member's limit says nothing of it.
        assert_eq!(
            never(json!([{"scope": "workspace", "hard": 400, "window": "week"}, {"hard": 50, "window": "day"}])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn calendar_units_do_not_nest_when_callers_bring_their_own_offset() {
        let mut doc = stacked(
            json!([{"hard": 40, "window": "day"}, {"hard": 40, "window": "week"}]),
            json!({"hard": 100_000, "window": "month"}),
        );
        doc["calendar"] = json!({"user_utc_offset": [{"header": "x-utc-offset"}]});
        // A day may then straddle two weeks: up to 80.
        assert_eq!(said(&doc), Vec::<String>::new());
        doc["tiers"]["pro"]["limits"]["drafts"][0]["hard"] = json!(80);
        assert_eq!(
            said(&doc),
            ["tiers.pro.limits.drafts[0].hard: 80 a day per user can never be exceeded: limit [1] lets through at most 40 a week per user, and a day overlaps at most 2 weeks (2 × 40 = 80)"]
        );
    }

    #[test]
    fn calendar_units_nest_as_the_calendar_does() {
        use CalendarUnit::{Day, Hour, Minute, Month, Week};
        assert!(inside(Hour, Day) && inside(Day, Week) && inside(Day, Month) && inside(Minute, Month));
        assert!(!inside(Week, Month) && !inside(Month, Week) && !inside(Day, Hour));
    }
}
