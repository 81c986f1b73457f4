//! Smells: configs the filter accepts but that probably do not say what
//! their author meant. Each names the JSON path to look at. Errors are the
//! core's business (`Config::from_json`); these are only warnings.

use quota_core::config::{
    AtHard, BodyCond, Cell, Config, HeaderCond, Limits, MissingWorkspace, PathMatch, Rule, Scope, TextTest, ValueTest,
    DEFAULT_WARN_AT,
};
use quota_core::copy::upgrade_hint;
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

/// Every smell of a checked config, in document order (classes, then tiers).
/// `raw` is the same document as JSON, for what checking removed.
pub fn smells(config: &Config, raw: &Value) -> Vec<Smell> {
    let mut out = Vec::new();
    unreachable_classes(config, &mut out);
    never_included(config, &mut out);
    for (t, tier) in config.tiers.iter().enumerate() {
        upgrade_links(config, t, &mut out);
        for (c, class) in config.classes.iter().enumerate() {
            let Some(Cell::Limited(stack)) = tier.cells.get(c) else {
                continue;
            };
            let Some(limits) = stack.first() else { continue };
            let path = format!("tiers.{}.limits.{}", tier.name, class.name);
            let written =
                raw.pointer(&format!("/tiers/{}/limits/{}/warn_at", tier.name, class.name)).and_then(Value::as_array);
            warning_levels(&path, limits, written, &mut out);
            pool_without_workspaces(config, &path, limits, &mut out);
        }
    }
    out
}

/// A pooled cell when no source names a workspace: no caller ever reaches
/// the pool, so every request is refused (or, with `missing_workspace:
/// user`, counted per user).
fn pool_without_workspaces(config: &Config, path: &str, limits: &Limits, out: &mut Vec<Smell>) {
    if limits.scope != Scope::Workspace || !config.identity.workspace.is_empty() {
        return;
    }
    let outcome = match config.identity.missing_workspace {
        MissingWorkspace::Reject => "every request for it is refused with 403 (workspace_required)",
        MissingWorkspace::User => "every caller is counted alone",
    };
    out.push(Smell {
        path: format!("{path}.scope"),
        message: format!("pooled by workspace, but identity.workspace lists no source: {outcome}"),
    });
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
/// upgrade that points back down, and upgrades that give no more.
fn upgrade_links(config: &Config, t: usize, out: &mut Vec<Smell>) {
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
        if upgrade_hint(config, quota_core::config::TierId(t), quota_core::config::ClassId(c), 0).is_some() {
            continue;
        }
        let (Some(here), Some(there)) = (tier.cells.get(c), next.cells.get(c)) else {
            continue;
        };
        let why = match (here, there) {
            (Cell::NotIncluded, Cell::NotIncluded) => {
                format!("{} does not include {} either: the 403 offers no way to get it", next.label, class.label)
            }
            (Cell::Limited(_), Cell::NotIncluded) => format!(
                "{} does not include {}: upgrading takes it away, and the wall offers no upgrade",
                next.label, class.label
            ),
            (Cell::Limited(a), Cell::Limited(b)) => format!(
                "{} gives no more {} ({} vs {}): the wall offers no upgrade",
                next.label,
                class.units,
                b.first().map_or(0, |l| l.hard),
                a.first().map_or(0, |l| l.hard)
            ),
            (Cell::NotIncluded, Cell::Limited(_)) => continue,
        };
        out.push(Smell { path: format!("{path}.limits.{}", class.name), message: why });
    }
}

/// (3) Warning levels that can never fire on their own, and cells that
/// reach the wall without any warning.
fn warning_levels(path: &str, limits: &quota_core::config::Limits, written: Option<&Vec<Value>>, out: &mut Vec<Smell>) {
    let hard = limits.hard;
    // The levels as the core computes them, before it drops and merges them.
    let level = |f: f64| ((hard as f64) * f).ceil().max(1.0) as u64;
    if let Some(fractions) = written {
        let mut seen: Vec<(u64, String)> = Vec::new();
        if let Some(soft) = limits.soft {
            seen.push((soft, format!("the soft limit ({soft})")));
        }
        for (i, f) in fractions.iter().enumerate() {
            let Some(f) = f.as_f64() else { continue };
            let at = level(f);
            let here = format!("{path}.warn_at[{i}]");
            if at >= hard {
                out.push(Smell {
                    path: here,
                    message: format!(
                        "can never fire: {f} of {hard} rounds up to {at}, {} the hard limit",
                        if at == hard { "which is" } else { "past" }
                    ),
                });
            } else if let Some((_, other)) = seen.iter().find(|(l, _)| *l == at) {
                out.push(Smell {
                    path: here,
                    message: format!(
                        "never fires on its own: {f} of {hard} rounds up to {at}, the same level as {other}"
                    ),
                });
            } else {
                seen.push((at, format!("warn_at[{i}] ({at})")));
            }
        }
    }
    if limits.warn_levels.is_empty() && limits.at_hard == AtHard::Block {
        let fractions =
            written.map_or_else(|| format!("the default warn_at {DEFAULT_WARN_AT:?}"), |_| "warn_at".to_string());
        out.push(Smell {
            path: path.to_string(),
            message: format!(
                "users reach the wall at {hard} without a warning: no soft limit, and {fractions} rounds to the hard limit"
            ),
        });
    }
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
        json!({
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": classes,
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
}
