//! What `render` says about a config, independent of the output format.
//! Text may hold `code spans` in backticks; both writers understand them.

use crate::describe::{self, Amounts};
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
    prices(config, &mut blocks);
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
    if let Some(c) = money_currency(config) {
        intro.push_str(&format!(
            " A class metered in money reads in {}: its limits are budgets, and each request counts what it costs \
             (see Prices).",
            c.code()
        ));
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
            row.extend(
                tier.cells.iter().enumerate().map(|(c, cell)| describe::cell(cell, Amounts::of(config, ClassId(c)))),
            );
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
                describe::cost(config, class),
                when,
            ]
        })
        .collect();
    let per_request = if money_currency(config).is_some() { "Cost per request" } else { "Units per request" };
    blocks.push(Block::Table(Table {
        caption: "Operation classes, in match order".into(),
        columns: ["Class", "Name in the config", "Unit", per_request, "Counted when"].map(String::from).to_vec(),
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
        for (c, (class, cell)) in config.classes.iter().zip(&tier.cells).enumerate() {
            let a = Amounts::of(config, ClassId(c));
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
                let mut row = vec![describe::limit_label(&class.label, stack, i, a)];
                row.push(l.soft.map_or_else(|| "—".to_string(), |s| a.show(s)));
                row.push(a.show(l.hard));
                row.push(describe::resets(config, &l.window));
                row.push(scope_cell(l, stack));
                row.push(if l.warn_levels.is_empty() {
                    "never".into()
                } else {
                    l.warn_levels.iter().map(|w| a.show(*w)).collect::<Vec<_>>().join(", ")
                });
                if with_past_soft {
                    row.push(describe::past_soft(l));
                }
                row.push(describe::at_hard(l, a));
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
            let a = Amounts::of(config, ClassId(c));
            // Each limit of a stack, as if it were the one the request met.
            for i in 0..stack.len().max(1) {
                let Some(s) = describe::samples(config, TierId(t), ClassId(c), i) else {
                    continue;
                };
                let label = describe::limit_label(&class.label, stack, i, a);
                let warning = s.warning.map_or_else(
                    || match cell {
                        Some(Cell::NotIncluded) => "—".to_string(),
                        _ => "no warning before the wall".to_string(),
                    },
                    |(at, text)| format!("from {} used: {}", a.show(at), quoted(&text)),
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
                    others.push(format!(
                        "{label}, past the soft limit (from {} used): {}",
                        a.exact(used),
                        quoted(&text)
                    ));
                }
                if let Some((left, text)) = s.confirm {
                    others.push(format!("{label}, confirmation (428) with {} left: {}", a.show(left), quoted(&text)));
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

/// The currency of the config's classes metered in money, if it has any.
fn money_currency(config: &Config) -> Option<&quota_core::money::Currency> {
    (0..config.classes.len()).find_map(|c| config.currency_of(ClassId(c)))
}

/// The prices table, when the config has one: what each model costs per
/// million tokens of each kind (and per request), in the order a request's
/// `model` is matched, then how each class metered in money is charged.
fn prices(config: &Config, blocks: &mut Vec<Block>) {
    let Some(prices) = &config.prices else { return };
    let c = prices.currency();
    blocks.push(Block::Heading(2, "Prices".into()));
    let unnamed = match prices.default_price() {
        Some(_) => {
            "A model no entry names, or none, takes “any other model”; a `model` that is not a string, the dearest \
             entry."
        }
        None => {
            "A model no entry names (or none, or a `model` that is not a string) takes the dearest entry; a class \
             priced by the table names its models in its match rules, so that this is no surprise."
        }
    };
    blocks.push(Block::Paragraph(format!(
        "What a request costs a class metered in money, in {}: each kind of token per million, and per request. \
         A request's `model` takes the entry of its exact name, else the longest prefix entry (`o3*`) it starts \
         with. {unnamed} Cached input and cache writes cost what input costs, and reasoning what output costs, \
         unless an entry says.",
        c.code()
    )));
    let money = |n: u64| describe::exact_money(n, c);
    let row = |name: String, p: &quota_core::config::ModelPrice| {
        let tokens = p.input > 0 || p.output > 0 || p.reasoning > 0 || p.cached_input > 0 || p.cache_write > 0;
        let per_token = |n: u64| if tokens { money(n) } else { "—".to_string() };
        vec![
            name,
            per_token(p.input),
            per_token(p.cached_input),
            per_token(p.cache_write),
            per_token(p.output),
            per_token(p.reasoning),
            p.per_request.map_or_else(|| "—".to_string(), money),
        ]
    };
    // By name: the paragraph says which entry a model takes.
    let mut models: Vec<&(String, quota_core::config::ModelPrice)> = prices.models().iter().collect();
    models.sort_by(|x, y| x.0.cmp(&y.0));
    let mut rows: Vec<Vec<String>> = models.iter().map(|(name, p)| row(format!("`{name}`"), p)).collect();
    if let Some(p) = prices.default_price() {
        rows.push(row("any other model".into(), p));
    }
    blocks.push(Block::Table(Table {
        caption: format!("Prices in {}, per million tokens and per request", c.code()),
        columns: ["Model", "Input", "Cached input", "Cache write", "Output", "Reasoning", "Per request"]
            .map(String::from)
            .to_vec(),
        rows,
    }));
    let charged: Vec<String> = config
        .classes
        .iter()
        .filter(|class| class.in_money())
        .map(|class| format!("{}: {}", class.label, describe::cost(config, class)))
        .collect();
    if !charged.is_empty() {
        blocks.push(Block::Paragraph("Classes metered in money, and what one request costs:".into()));
        blocks.push(Block::List(charged));
    }
}
