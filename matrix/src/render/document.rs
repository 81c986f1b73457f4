//! What `render` says about a config, independent of the output format.
//! Text may hold `code spans` in backticks; both writers understand them.

use crate::describe;
use crate::load::Loaded;
use quota_core::config::Message;
use quota_core::config::{AtHard, Cell, ClassId, Config, Limits, PastSoft, Scope, TierId, UnknownTier};
use quota_core::copy::plain_message;

/// A rendered config: a title and blocks in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A section heading, level 2 or 3 (the title is level 1).
    Heading(u8, String),
    Paragraph(String),
    Table(Table),
    List(Vec<String>),
}

/// A table whose first column heads its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What the table shows, for readers who jump between tables.
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The document for a loaded config.
pub fn build(loaded: &Loaded) -> Document {
    let config = &loaded.config;
    let mut blocks = vec![Block::Paragraph(format!(
        "Rendered from `{}` by `quota-matrix render`: change the config, then render again.",
        loaded.path
    ))];
    matrix(config, &mut blocks);
    classes(loaded, &mut blocks);
    plans(config, &mut blocks);
    copy(config, &mut blocks);
    Document { title: "Quota matrix".into(), blocks }
}

fn quoted(text: &str) -> String {
    format!("“{text}”")
}

/// The tier x class table.
fn matrix(config: &Config, blocks: &mut Vec<Block>) {
    let mut intro =
        "Rows are plans, in upgrade order; columns are operation classes. A cell reads soft / hard limit per window: \
         warnings start at the soft limit (and, unless the cell sets `warn_at`, at 70% and 95% of the hard limit), \
         and at the hard limit requests are refused with 429 unless the cell says “then warn only”. \
         “pooled”: one counter for the whole workspace."
            .to_string();
    let limits = || config.tiers.iter().flat_map(|t| &t.cells).flat_map(Cell::limits);
    if limits().any(|l| l.scope == Scope::Organisation) {
        intro.push_str(" “pooled per organisation”: one counter for the whole organisation.");
    }
    if config.tiers.iter().flat_map(|t| &t.cells).any(|c| c.limits().len() > 1) {
        intro.push_str(
            " Limits joined by “+” are stacked: a request must fit every one of them and is counted by each; \
             “per member” counts each member's own use inside the pool. The limit a request meets decides what the \
             caller reads: the one that refuses it, else one that changes how it is served, else the one with the \
             least room left.",
        );
    }
    blocks.push(Block::Paragraph(intro));
    let mut columns = vec!["Plan".to_string()];
    columns.extend(config.classes.iter().map(|c| c.label.clone()));
    let rows = config
        .tiers
        .iter()
        .map(|tier| {
            let mut row = vec![tier.label.clone()];
            row.extend(tier.cells.iter().map(describe::cell));
            row
        })
        .collect();
    blocks.push(Block::Table(Table { caption: "Limits per plan and class".into(), columns, rows }));
}

/// What each class counts, in match order.
fn classes(loaded: &Loaded, blocks: &mut Vec<Block>) {
    let config = &loaded.config;
    blocks.push(Block::Heading(2, "Operation classes".into()));
    let fallback = match config.default_class.and_then(|d| config.class(d)) {
        Some(c) => format!("A request that matches no rule counts as {}.", c.label),
        None => "A request that matches no rule passes through uncounted.".into(),
    };
    blocks.push(Block::Paragraph(format!(
        "Each request is checked against the classes in this order, and the first rule that matches decides its class. {fallback}"
    )));
    let rows = config
        .classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let is_default = config.default_class == Some(ClassId(i));
            let mut when: Vec<String> = class
                .rules
                .iter()
                .enumerate()
                .map(|(r, rule)| {
                    let raw = loaded.raw.pointer(&format!("/classes/{i}/match/{r}"));
                    describe::rule(rule, raw)
                })
                .collect();
            if is_default {
                when.push("any request no class matches".into());
            }
            let when = if when.is_empty() { "never (no rules)".to_string() } else { when.join("; or ") };
            vec![
                class.label.clone(),
                format!("`{}`", class.name),
                format!("{} / {}", class.unit, class.units),
                describe::cost(class),
                when,
            ]
        })
        .collect();
    blocks.push(Block::Table(Table {
        caption: "Operation classes, in match order".into(),
        columns: ["Class", "Name in the config", "Unit", "Units per request", "Counted when"]
            .map(String::from)
            .to_vec(),
        rows,
    }));
}

/// One detailed table per plan.
fn plans(config: &Config, blocks: &mut Vec<Block>) {
    blocks.push(Block::Heading(2, "Plans in detail".into()));
    blocks.push(Block::Paragraph(format!(
        "“Warned from”: the usage levels at which a warning starts (the soft limit and each `warn_at` fraction of the hard limit). {}",
        describe::time_zone(config)
    )));
    let limited = || config.tiers.iter().flat_map(|t| &t.cells).flat_map(Cell::limits);
    let with_confirm = limited().any(|l| l.confirm_above.is_some());
    let with_pace = limited().any(|l| l.pace.is_some());
    let with_past_soft = limited().any(|l| l.past_soft != PastSoft::Warn);
    let mut columns: Vec<String> =
        ["Class", "Soft", "Hard", "Resets", "Scope", "Warned from"].map(String::from).to_vec();
    if with_past_soft {
        columns.push("Past the soft limit".into());
    }
    columns.push("At the hard limit".into());
    if with_confirm {
        columns.push("Confirmation".into());
    }
    if with_pace {
        columns.push("Pace alert".into());
    }
    for (t, tier) in config.tiers.iter().enumerate() {
        blocks.push(Block::Heading(3, format!("{} (`{}`)", tier.label, tier.name)));
        let mut about = Vec::new();
        if config.identity.default_tier == TierId(t) {
            about.push("Callers without a plan are on this plan.".to_string());
        }
        if config.identity.anonymous.as_ref().map(|a| a.tier) == Some(TierId(t)) {
            about.push("Anonymous callers are counted on this plan.".to_string());
        }
        about.push(match (tier.upgrade_to.and_then(|n| config.tier(n)), &tier.upgrade_url) {
            (Some(next), Some(url)) => format!("Upgrade offers point to {}, at {url}.", next.label),
            (Some(next), None) => format!("Upgrade offers point to {}, without a link.", next.label),
            (None, _) => "No upgrade is offered from this plan.".to_string(),
        });
        blocks.push(Block::Paragraph(about.join(" ")));
        let mut rows = Vec::new();
        for (class, cell) in config.classes.iter().zip(&tier.cells) {
            let Cell::Limited(stack) = cell else {
                let mut row = vec![class.label.clone(), "not included".into()];
                row.extend(["—"; 4].map(String::from));
                if with_past_soft {
                    row.push("—".into());
                }
                row.push("always refused (403)".into());
                if with_confirm {
                    row.push("—".into());
                }
                if with_pace {
                    row.push("—".into());
                }
                rows.push(row);
                continue;
            };
            // A stack: one row per limit, in the order the cell lists them.
            for (i, l) in stack.iter().enumerate() {
                let mut row = vec![describe::limit_label(&class.label, stack, i)];
                row.push(l.soft.map_or_else(|| "—".to_string(), |s| s.to_string()));
                row.push(l.hard.to_string());
                row.push(describe::resets(config, &l.window));
                row.push(scope_cell(l, stack));
                row.push(if l.warn_levels.is_empty() {
                    "never".into()
                } else {
                    l.warn_levels.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                });
                if with_past_soft {
                    row.push(describe::past_soft(l));
                }
                row.push(describe::at_hard(l));
                if with_confirm {
                    row.push(l.confirm_above.map_or_else(|| "—".into(), describe::confirm));
                }
                if with_pace {
                    row.push(l.pace.map_or_else(|| "—".into(), |p| describe::pace(&p, &l.window)));
                }
                rows.push(row);
            }
        }
        blocks.push(Block::Table(Table {
            caption: format!("{} plan, per class", tier.label),
            columns: columns.clone(),
            rows,
        }));
    }
}

/// The "Scope" column: whose counter the limit charges.
fn scope_cell(l: &Limits, stack: &[Limits]) -> String {
    let scope = if stack.len() > 1 { describe::stack_scope(l, stack) } else { describe::scope(l.scope) };
    if l.admin_cap {
        format!("{scope} (workspace admins may set each member's cap)")
    } else {
        scope.to_string()
    }
}

/// The sentences users read, per plan, with sample numbers.
fn copy(config: &Config, blocks: &mut Vec<Block>) {
    blocks.push(Block::Heading(2, "What users read".into()));
    let mut intro = format!(
        "Written by the filter's own copy code, overrides included, with sample numbers: each message is shown \
         as if its window resets in 4 h 12 min (at {} where a message gives the time), and a pace alert as the \
         pace threshold is reached.",
        describe::sample_reset_at()
    );
    if config.tiers.iter().flat_map(|t| &t.cells).any(|c| c.limits().len() > 1) {
        intro.push_str(" A cell with stacked limits has a row per limit: what the caller reads when that limit is the one their request meets.");
    }
    blocks.push(Block::Paragraph(intro));
    for (t, tier) in config.tiers.iter().enumerate() {
        blocks.push(Block::Heading(3, tier.label.clone()));
        let mut rows = Vec::new();
        let mut others = Vec::new();
        for (c, class) in config.classes.iter().enumerate() {
            let cell = config.cell(TierId(t), ClassId(c));
            let stack = cell.map_or(&[][..], Cell::limits);
            // Each limit of a stack, as if it were the one the request met.
            for i in 0..stack.len().max(1) {
                let Some(s) = describe::samples(config, TierId(t), ClassId(c), i) else {
                    continue;
                };
                let label = describe::limit_label(&class.label, stack, i);
                let warning = s.warning.map_or_else(
                    || match cell {
                        Some(Cell::NotIncluded) => "—".to_string(),
                        _ => "no warning before the wall".to_string(),
                    },
                    |(at, text)| format!("from {at} used: {}", quoted(&text)),
                );
                let wall = match (cell, stack.get(i)) {
                    (Some(Cell::NotIncluded), _) => format!("not included (403): {}", quoted(&s.wall)),
                    (_, Some(l)) => match l.at_hard {
                        AtHard::Block => format!("429: {}", quoted(&s.wall)),
                        AtHard::Warn => format!("past the limit, still allowed: {}", quoted(&s.wall)),
                        AtHard::Degrade => {
                            format!("past the limit, {}: {}", describe::degraded_to(l), quoted(&s.wall))
                        }
                        AtHard::Overage => format!("past the limit, as overage: {}", quoted(&s.wall)),
                        AtHard::Queue => format!("past the limit, queued: {}", quoted(&s.wall)),
                    },
                    (_, None) => quoted(&s.wall),
                };
                rows.push(vec![label.clone(), warning, wall]);
                if let Some((used, text)) = s.degraded {
                    others.push(format!("{label}, past the soft limit (from {used} used): {}", quoted(&text)));
                }
                if let Some((left, text)) = s.confirm {
                    others.push(format!("{label}, confirmation (428) with {left} left: {}", quoted(&text)));
                }
                if let Some(text) = s.pace {
                    others.push(format!("{label}, pace alert: {}", quoted(&text)));
                }
            }
        }
        blocks.push(Block::Table(Table {
            caption: format!("What {} users read", tier.label),
            columns: ["Class", "Warning", "At the hard limit"].map(String::from).to_vec(),
            rows,
        }));
        if !others.is_empty() {
            blocks.push(Block::List(others));
        }
    }
    let mut every = Vec::new();
    if config.identity.anonymous.is_none() {
        every.push(format!("No user id (401): {}", quoted(&plain_message(config, Message::MissingIdentity))));
    }
    if config.identity.unknown_tier == UnknownTier::Reject {
        every.push(format!(
            "A plan the matrix does not know (403): {}",
            quoted(&plain_message(config, Message::UnknownTier))
        ));
    }
    if !every.is_empty() {
        blocks.push(Block::Heading(3, "Every plan".into()));
        blocks.push(Block::List(every));
    }
}
