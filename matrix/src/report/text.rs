//! The report as a terminal table or as Markdown: the same tables, one
//! with aligned columns, one with pipes (and the per-day table).

use super::grid::Grid;
use super::metrics::{Measures, Mix, Ratio, Report, Spend, ABANDON_MS, RETRY_MS};
use crate::describe::exact_money;
use crate::ledger::time_text;
use quota_core::money::format_amount;

/// "31.1% (14/45)"; "–" when there is nothing to count.
pub fn rate(r: Ratio) -> String {
    match r.share() {
        Some(s) => format!("{} ({}/{})", percent(s), r.n, r.of),
        None => "–".into(),
    }
}

/// "31.1%".
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Output tokens per input token: "0.52"; "–" without tokens.
pub fn per(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{x:.2}"))
}

/// "$12.34", "1520 drafts", "$3.10 + 412 units"; "–" for nothing spent.
pub fn spend(s: &[Spend]) -> String {
    let parts: Vec<String> = s
        .iter()
        .filter_map(|s| match s {
            Spend::Units { units, unit, plural } => {
                Some(format!("{units} {}", if *units == 1 { unit } else { plural }))
            }
            Spend::Money { micros, currency } => Some(format_amount(*micros, currency)),
            Spend::Mixed => None,
        })
        .collect();
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(" + ")
    }
}

/// The exact amount, for JSON.
pub fn exact_spend(s: &Spend) -> Option<String> {
    match s {
        Spend::Money { micros, currency } => Some(exact_money(*micros, currency)),
        _ => None,
    }
}

/// "2026-11-01 00:03 to 2026-11-30 23:58 UTC".
pub fn period(r: &Report) -> String {
    let minute = |ms: i64| {
        let t = time_text(ms);
        format!("{} {}", t.get(..10).unwrap_or(""), t.get(11..16).unwrap_or(""))
    };
    match (r.first, r.last) {
        (Some(a), Some(b)) => format!("{} to {} UTC", minute(a), minute(b)),
        _ => "no records".into(),
    }
}

/// The first lines: what was read, over what time.
pub fn summary(r: &Report) -> String {
    let m = &r.all;
    let mut out =
        format!("{} under {}: {} requests from {} callers, {}.", r.ledger, r.config, m.requests, m.callers, period(r));
    if m.anonymous_requests > 0 {
        out.push_str(&format!(" {} requests name no caller (anonymous, or ids omitted).", m.anonymous_requests));
    }
    if r.skipped_lines > 0 {
        out.push_str(&format!(" {} invalid lines skipped.", r.skipped_lines));
    }
    out
}

fn limits_row(label: [&str; 2], m: &Measures) -> Vec<String> {
    vec![
        label[0].to_string(),
        label[1].to_string(),
        m.requests.to_string(),
        m.callers.to_string(),
        rate(m.soft),
        rate(m.hard),
        rate(m.abandoned),
        rate(m.converted),
    ]
}

/// Per class and tier: who meets the limits, and what they do then.
pub fn limits_grid(r: &Report) -> Grid {
    let mut g = Grid::new(&[
        "class",
        "tier",
        ">requests",
        ">callers",
        ">soft-limit hit",
        ">hard-limit hit",
        ">abandoned",
        ">converted",
    ]);
    for c in &r.cells {
        g.row(limits_row([&c.class, &c.tier], &c.measures));
    }
    g
}

/// Per class and tier: failures, tokens, spend.
pub fn monitoring_grid(r: &Report) -> Grid {
    let mut g = Grid::new(&["class", "tier", ">failed", ">retried", ">output/input", ">cached input", ">spend"]);
    for c in &r.cells {
        let m = &c.measures;
        g.row(vec![
            c.class.clone(),
            c.tier.clone(),
            rate(m.failed),
            rate(m.retried),
            per(m.tokens.output_per_input()),
            m.tokens.cached_share().share().map_or_else(|| "–".into(), percent),
            spend(&m.spend),
        ]);
    }
    g
}

fn plan_row(tier: &str, m: &Measures, mix: &Mix) -> Vec<String> {
    vec![
        tier.to_string(),
        m.requests.to_string(),
        m.callers.to_string(),
        rate(m.soft),
        rate(m.hard),
        rate(m.abandoned),
        rate(m.converted),
        rate(mix.premium),
        rate(mix.batch),
        rate(m.failed_or_retried),
    ]
}

/// Per tier, every class together, and the whole ledger.
pub fn plans_grid(r: &Report) -> Grid {
    let mut g = Grid::new(&[
        "tier",
        ">requests",
        ">callers",
        ">soft-limit hit",
        ">hard-limit hit",
        ">abandoned",
        ">converted",
        ">premium share",
        ">batch share",
        ">failed or retried",
    ]);
    for (tier, m, mix) in &r.tiers {
        g.row(plan_row(tier, m, mix));
    }
    g.row(plan_row("all", &r.all, &r.mix));
    g
}

/// The funnel in one sentence.
pub fn funnel_line(r: &Report) -> String {
    let f = &r.funnel;
    format!(
        "{} callers: {} warned (a soft limit), {} blocked (the hard limit; {} of them warned first), \
         {} refused in all; after a warning or refusal {} upgraded, and {} left after a quota error.",
        f.callers, f.warned, f.blocked, f.warned_before_blocked, f.refused, f.upgraded, f.abandoned
    )
}

/// What the words mean, briefly (the README has them in full).
pub fn definitions(r: &Report) -> Vec<String> {
    let d = &r.definitions;
    let names = |list: &[String]| if list.is_empty() { "none".to_string() } else { list.join(", ") };
    vec![
        "soft-limit hit: callers who crossed a warning level or were answered past the soft limit \
         (warning, degraded, overage, queued), of the callers in the row"
            .into(),
        "hard-limit hit: callers refused at the hard limit (blocked), of the callers in the row".into(),
        format!(
            "abandoned: quota errors after which the caller sent nothing within {0} s, of quota errors; a \
             quota error is a refusal (blocked, too_large, not_included) not followed within {0} s by another \
             refusal of the same caller",
            ABANDON_MS / 1000
        ),
        "converted: callers seen at a higher tier (tier_order) after a warning or a refusal, of the \
         callers warned or refused"
            .into(),
        format!(
            "failed: status 500 or more, or the provider's own 429 (state busy, or upstream status 429); \
             retried: the same caller and route again within {} s of a failure",
            RETRY_MS / 1000
        ),
        format!(
            "premium share: requests let through in {} ({}), of all non-batch requests let through",
            names(&d.premium),
            d.premium_from
        ),
        format!(
            "batch share: records settled in {} ({}), of those plus one per other request let through",
            names(&d.batch),
            d.batch_from
        ),
        "output/input: output tokens per input token; cached input: cached input tokens, of input tokens \
         (records with reported tokens only)"
            .into(),
        "spend: what the requests let through settled at, in the class's units or its currency".into(),
    ]
}

pub fn table(r: &Report) -> String {
    let mut out = format!("Quota experience report\n{}\n\n", summary(r));
    out.push_str("Limits: who meets them, and what they do next\n\n");
    out.push_str(&limits_grid(r).text());
    out.push_str("\nMonitoring: failures, tokens, spend\n\n");
    out.push_str(&monitoring_grid(r).text());
    out.push_str("\nPlans: every class together\n\n");
    out.push_str(&plans_grid(r).text());
    out.push_str(&format!("\nFunnel: {}\n\nDefinitions:\n", funnel_line(r)));
    for d in definitions(r) {
        out.push_str(&format!("  - {d}\n"));
    }
    out
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!("# Quota experience report\n\n{}\n\n", summary(r));
    out.push_str("## Limits: who meets them, and what they do next\n\n");
    out.push_str(&limits_grid(r).markdown());
    out.push_str("\n## Monitoring: failures, tokens, spend\n\n");
    out.push_str(&monitoring_grid(r).markdown());
    out.push_str("\n## Plans: every class together\n\n");
    out.push_str(&plans_grid(r).markdown());
    out.push_str(&format!("\n## Funnel\n\n{}\n\n## Per day\n\n", funnel_line(r)));
    let mut days = Grid::new(&["day", ">requests", ">refused", ">callers", ">soft-limit hit", ">hard-limit hit"]);
    for d in &r.days {
        days.row(vec![
            d.date.clone(),
            d.requests.to_string(),
            d.refused.to_string(),
            d.callers.to_string(),
            rate(Ratio { n: d.soft, of: d.callers }),
            rate(Ratio { n: d.hard, of: d.callers }),
        ]);
    }
    out.push_str(&days.markdown());
    out.push_str("\n## Definitions\n\n");
    for d in definitions(r) {
        out.push_str(&format!("- {d}\n"));
    }
    out
}
