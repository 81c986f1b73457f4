//! The seed articles' metrics, computed from a ledger. Every definition
//! here is the one the README states; the numbers are counts first (a rate
//! is always shown with what it counts), so a small sample reads as small.
//!
//! Terms, per record:
//!
//! - **caller**: the record's `user` (records without one, anonymous or
//!   with ids omitted, count as requests but as no caller).
//! - **soft-limit hit**: the request crossed a warning level (`warned`) or
//!   was answered past the soft limit: state `warning`, `degraded`,
//!   `overage` or `queued`.
//! - **refusal**: the filter refused the request for the caller's quota or
//!   plan: state `blocked` (the hard limit: a **hard-limit hit**),
//!   `too_large` or `not_included`. (`confirmation_required` asks, it does
//!   not refuse.)
//! - **upgrade prompt**: a soft-limit hit or a refusal.
//! - **let through**: the filter sent the request on (state `ok`,
//!   `warning`, `degraded`, `overage`, `queued` or `busy`, or it reached
//!   the upstream).
//! - **failed**: status 500 or more (an Envoy 503 for an upstream it never
//!   reached included), or the provider refused for its own capacity
//!   (state `busy`, or an upstream status of 429: the filter's own
//!   refusals never reach the upstream).
//! - **retried**: the same caller sent the same route again within
//!   [`RETRY_MS`] after a failed request.
//!
//! - **quota error**: a refusal that is not followed, within
//!   [`ABANDON_MS`], by another refusal of the same caller: a caller who
//!   tries again and is refused again has met one error, not two (the seed
//!   counts "sessions abandoned within 60 seconds of a quota error").
//! - **abandoned**: a quota error after which the caller sent no request at
//!   all (any class, any tier) within [`ABANDON_MS`]. An error less than
//!   [`ABANDON_MS`] before the ledger's last record, with nothing after it,
//!   is left out (its minute is not over). Counted per error, not per
//!   caller: over a month nearly every refused caller leaves once.
//!
//! Per caller, over the records of a group (a class and tier, a tier, all):
//!
//! - **converted**: after one of their upgrade prompts in the group at a
//!   tier of `tier_order`, the caller is seen at a higher tier of
//!   `tier_order`.

use crate::ledger::{Entry, Ledger};
use quota_core::config::{Config, Cost};
use quota_core::ledger::LedgerRecord;
use quota_core::money::Currency;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A refused caller who sends nothing for this long abandoned.
pub const ABANDON_MS: i64 = 60_000;
/// A request of the same caller and route this soon after a failure is a retry.
pub const RETRY_MS: i64 = 30_000;

/// `n` of `of`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ratio {
    pub n: u64,
    pub of: u64,
}

impl Ratio {
    pub fn share(&self) -> Option<f64> {
        (self.of > 0).then(|| self.n as f64 / self.of as f64)
    }
}

/// Tokens reported, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Requests whose record has tokens.
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub reasoning: u64,
}

impl Tokens {
    /// Output tokens per input token.
    pub fn output_per_input(&self) -> Option<f64> {
        (self.input > 0).then(|| self.output as f64 / self.input as f64)
    }

    /// Cached input as a share of input.
    pub fn cached_share(&self) -> Ratio {
        Ratio { n: self.cached_input, of: self.input }
    }
}

/// What was spent in one group: units of one class, or money per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// Units of the class (its `units` name, for people).
    Units { units: u64, unit: String, plural: String },
    /// Micro-units of a currency.
    Money { micros: u64, currency: Currency },
    /// A group mixing classes counted in units: not added up.
    Mixed,
}

/// The metrics of one group of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    pub requests: u64,
    /// Requests without a caller id.
    pub anonymous_requests: u64,
    pub callers: u64,
    pub let_through: u64,
    pub refused: u64,
    /// Callers with a soft-limit hit, of callers.
    pub soft: Ratio,
    /// Callers with a hard-limit hit, of callers.
    pub hard: Ratio,
    /// Quota errors after which the caller left, of quota errors (whose minute is over).
    pub abandoned: Ratio,
    /// Callers seen at a higher tier after an upgrade prompt, of callers
    /// with one (at a tier of `tier_order`).
    pub converted: Ratio,
    /// Failed requests, of requests.
    pub failed: Ratio,
    /// Retried requests, of requests.
    pub retried: Ratio,
    /// Requests failed or retried (each once), of requests.
    pub failed_or_retried: Ratio,
    pub tokens: Tokens,
    /// What the group's let-through requests settled at.
    pub spend: Vec<Spend>,
}

/// The metrics of one class on one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub class: String,
    pub tier: String,
    pub measures: Measures,
}

/// The monitoring list's shares for a group (a tier, or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mix {
    /// Premium requests let through, of sync (not batch) requests let through.
    pub premium: Ratio,
    /// Batch records processed, of all records processed.
    pub batch: Ratio,
}

/// One UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub requests: u64,
    pub refused: u64,
    pub callers: u64,
    /// Callers with a soft-limit hit that day.
    pub soft: u64,
    /// Callers with a hard-limit hit that day.
    pub hard: u64,
}

/// Callers from a warning to a block, and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    pub callers: u64,
    pub warned: u64,
    pub blocked: u64,
    /// Of the blocked, those whose first hard-limit hit came after a soft-limit hit.
    pub warned_before_blocked: u64,
    /// Callers refused at least once (any refusal).
    pub refused: u64,
    pub upgraded: u64,
    /// Callers who abandoned after at least one quota error.
    pub abandoned: u64,
}

/// How the monitoring list's classes were chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definitions {
    pub premium: Vec<String>,
    /// Where the premium list came from: the default, or `--premium`.
    pub premium_from: String,
    pub batch: Vec<String>,
    pub batch_from: String,
}

impl Definitions {
    /// The defaults from `config` (premium: classes priced by model in the
    /// `prices` table; batch: classes whose cost counts records, and any
    /// class named like a batch), or the classes given.
    pub fn of(config: &Config, premium: Option<&[String]>, batch: Option<&[String]>) -> Result<Definitions, String> {
        let known = |list: &[String], flag: &str| -> Result<Vec<String>, String> {
            for name in list {
                if !config.classes.iter().any(|c| &c.name == name) {
                    let names: Vec<&str> = config.classes.iter().map(|c| c.name.as_str()).collect();
                    return Err(format!("{flag}: no class named \"{name}\" (classes: {})", names.join(", ")));
                }
            }
            Ok(list.to_vec())
        };
        let (premium, premium_from) = match premium {
            Some(list) => (known(list, "--premium")?, "given with --premium".to_string()),
            None => (
                config
                    .classes
                    .iter()
                    .filter(|c| matches!(c.cost, Cost::Priced { .. }))
                    .map(|c| c.name.clone())
                    .collect(),
                "the default: classes priced by model, `cost.price`".to_string(),
            ),
        };
        let (batch, batch_from) = match batch {
            Some(list) => (known(list, "--batch")?, "given with --batch".to_string()),
            None => (
                config
                    .classes
                    .iter()
                    .filter(|c| matches!(c.cost, Cost::Records { .. }) || c.name.contains("batch"))
                    .map(|c| c.name.clone())
                    .collect(),
                "the default: classes counted by records, `cost.records`, or named like a batch".to_string(),
            ),
        };
        Ok(Definitions { premium, premium_from, batch, batch_from })
    }
}

/// Everything `report` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub ledger: String,
    pub config: String,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub skipped_lines: usize,
    pub definitions: Definitions,
    pub cells: Vec<Cell>,
    /// Per tier, every class: (tier, measures, mix).
    pub tiers: Vec<(String, Measures, Mix)>,
    pub all: Measures,
    pub mix: Mix,
    pub days: Vec<Day>,
    pub funnel: Funnel,
}

/// What one record says, worked out once.
struct Facts<'a> {
    record: &'a LedgerRecord,
    time_ms: i64,
    user: Option<&'a str>,
    soft: bool,
    refused: bool,
    blocked: bool,
    let_through: bool,
    failed: bool,
    retried: bool,
    /// A quota error followed by silence (`Some(true)`), by a request in
    /// time (`Some(false)`); `None`: not a quota error, or too close to
    /// the end to tell.
    abandoned: Option<bool>,
    /// An upgrade prompt at a tier of `tier_order`: whether the caller was
    /// later seen at a higher one.
    converted: Option<bool>,
}

pub fn soft_hit(r: &LedgerRecord) -> bool {
    r.warned || matches!(r.state.as_str(), "warning" | "degraded" | "overage" | "queued")
}

pub fn refusal(r: &LedgerRecord) -> bool {
    matches!(r.state.as_str(), "blocked" | "too_large" | "not_included")
}

pub fn let_through(r: &LedgerRecord) -> bool {
    r.upstream_reached || matches!(r.state.as_str(), "ok" | "warning" | "degraded" | "overage" | "queued" | "busy")
}

pub fn failed(r: &LedgerRecord) -> bool {
    r.status >= 500 || r.state == "busy" || r.upstream_status == Some(429)
}

/// The rank of a tier in `tier_order` (cheapest 0).
fn rank(config: &Config, tier: &str) -> Option<usize> {
    config.tier_by_name(tier).map(|t| t.0)
}

fn facts<'a>(config: &Config, entries: &'a [Entry]) -> Vec<Facts<'a>> {
    let end = entries.last().map_or(0, |e| e.time_ms);
    // Each caller's records, in order.
    let mut by_user: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(u) = e.record.user.as_deref().filter(|u| !u.is_empty()) {
            by_user.entry(u).or_default().push(i);
        }
    }
    let mut out: Vec<Facts<'a>> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            Facts {
                record: r,
                time_ms: e.time_ms,
                user: r.user.as_deref().filter(|u| !u.is_empty()),
                soft: soft_hit(r),
                refused: refusal(r),
                blocked: r.state == "blocked",
                let_through: let_through(r),
                failed: failed(r),
                retried: false,
                abandoned: None,
                converted: None,
            }
        })
        .collect();
    for indices in by_user.values() {
        // The highest tier rank from each position on (exclusive).
        let mut higher_after: Vec<Option<usize>> = vec![None; indices.len()];
        let mut best: Option<usize> = None;
        for (k, i) in indices.iter().enumerate().rev() {
            if let Some(slot) = higher_after.get_mut(k) {
                *slot = best;
            }
            let r = entries.get(*i).and_then(|e| rank(config, &e.record.tier));
            best = best.max(r);
        }
        // Each route's last failure so far: a retry looks one failure back.
        let mut last_failure: HashMap<&str, i64> = HashMap::new();
        for (k, i) in indices.iter().enumerate() {
            let Some(f) = out.get(*i) else { continue };
            let (time, route, refused, prompt) = (f.time_ms, f.record.route.as_str(), f.refused, f.soft || f.refused);
            let tier = rank(config, &f.record.tier);
            let next = indices.get(k + 1).and_then(|n| entries.get(*n)).map(|e| (e.time_ms, refusal(&e.record)));
            let abandoned = match next {
                _ if !refused => None,
                // Refused again within the minute: the same error.
                Some((t, true)) if t - time <= ABANDON_MS => None,
                Some((t, _)) => Some(t - time > ABANDON_MS),
                None if end - time >= ABANDON_MS => Some(true),
                None => None,
            };
            let converted = match (prompt, tier) {
                (true, Some(x)) => Some(higher_after.get(k).copied().flatten().is_some_and(|h| h > x)),
                _ => None,
            };
            // A retry: an earlier failure of this caller on this route, within the window.
            let retried = last_failure.get(route).is_some_and(|t| time - t <= RETRY_MS);
            if f.failed {
                last_failure.insert(route, time);
            }
            if let Some(f) = out.get_mut(*i) {
                f.abandoned = abandoned;
                f.converted = converted;
                f.retried = retried;
            }
        }
    }
    out
}

fn measure<'a>(config: &Config, group: impl Iterator<Item = &'a Facts<'a>> + Clone) -> Measures {
    let mut m = Measures {
        requests: 0,
        anonymous_requests: 0,
        callers: 0,
        let_through: 0,
        refused: 0,
        soft: Ratio::default(),
        hard: Ratio::default(),
        abandoned: Ratio::default(),
        converted: Ratio::default(),
        failed: Ratio::default(),
        retried: Ratio::default(),
        failed_or_retried: Ratio::default(),
        tokens: Tokens::default(),
        spend: Vec::new(),
    };
    #[derive(Default)]
    struct Caller {
        soft: bool,
        hard: bool,
        prompted: bool,
        converted: bool,
    }
    let mut callers: BTreeMap<&str, Caller> = BTreeMap::new();
    let mut unit_classes: BTreeSet<&str> = BTreeSet::new();
    let mut money: BTreeMap<String, u64> = BTreeMap::new();
    let mut units = 0u64;
    for f in group {
        let r = f.record;
        m.requests += 1;
        m.let_through += u64::from(f.let_through);
        m.refused += u64::from(f.refused);
        m.failed.n += u64::from(f.failed);
        m.retried.n += u64::from(f.retried);
        m.failed_or_retried.n += u64::from(f.failed || f.retried);
        if let Some(t) = &r.tokens {
            let tk = &mut m.tokens;
            tk.requests += 1;
            tk.input = tk.input.saturating_add(t.input);
            tk.output = tk.output.saturating_add(t.output);
            tk.cached_input = tk.cached_input.saturating_add(t.cached_input);
            tk.reasoning = tk.reasoning.saturating_add(t.reasoning);
        }
        if f.let_through {
            match currency_of(config, r) {
                Some(c) => {
                    let sum = money.entry(c.code().to_string()).or_default();
                    *sum = sum.saturating_add(r.units_settled);
                }
                None => {
                    unit_classes.insert(r.class.as_str());
                    units = units.saturating_add(r.units_settled);
                }
            }
        }
        let Some(u) = f.user else {
            m.anonymous_requests += 1;
            continue;
        };
        if let Some(abandoned) = f.abandoned {
            m.abandoned.of += 1;
            m.abandoned.n += u64::from(abandoned);
        }
        let c = callers.entry(u).or_default();
        c.soft |= f.soft;
        c.hard |= f.blocked;
        if let Some(converted) = f.converted {
            c.prompted = true;
            c.converted |= converted;
        }
    }
    m.callers = callers.len() as u64;
    let count = |f: &dyn Fn(&Caller) -> bool| callers.values().filter(|c| f(c)).count() as u64;
    m.soft = Ratio { n: count(&|c| c.soft), of: m.callers };
    m.hard = Ratio { n: count(&|c| c.hard), of: m.callers };
    m.converted = Ratio { n: count(&|c| c.converted), of: count(&|c| c.prompted) };
    m.failed.of = m.requests;
    m.retried.of = m.requests;
    m.failed_or_retried.of = m.requests;
    for (code, micros) in money {
        if let Ok(currency) = Currency::from_code(&code) {
            m.spend.push(Spend::Money { micros, currency });
        }
    }
    let unit_classes: Vec<&str> = unit_classes.into_iter().collect();
    match unit_classes.as_slice() {
        [] => {}
        [one] => {
            let (unit, plural) = config
                .classes
                .iter()
                .find(|c| c.name == *one)
                .map_or(("unit".to_string(), "units".to_string()), |c| (c.unit.clone(), c.units.clone()));
            m.spend.insert(0, Spend::Units { units, unit, plural });
        }
        _ => m.spend.insert(0, Spend::Mixed),
    }
    m
}

/// The currency a record's units are in: its own, else its class's.
fn currency_of(config: &Config, r: &LedgerRecord) -> Option<Currency> {
    match &r.currency {
        Some(code) => Currency::from_code(code).ok(),
        None => config.currency_of_name(&r.class).copied(),
    }
}

/// Looks classes up by name.
trait ByName {
    fn currency_of_name(&self, class: &str) -> Option<&Currency>;
}

impl ByName for Config {
    fn currency_of_name(&self, class: &str) -> Option<&Currency> {
        let id = self.classes.iter().position(|c| c.name == class)?;
        self.currency_of(quota_core::config::ClassId(id))
    }
}

/// Premium and batch shares over a group.
fn mix<'a>(config: &Config, d: &Definitions, group: impl Iterator<Item = &'a Facts<'a>>) -> Mix {
    let mut out = Mix::default();
    let mut batch_records = 0u64;
    let mut other_records = 0u64;
    for f in group.filter(|f| f.let_through) {
        let r = f.record;
        if d.batch.contains(&r.class) {
            // Records: a class priced per unit holds money, its unit price per record.
            let price = config.classes.iter().find(|c| c.name == r.class).and_then(|c| c.unit_price).unwrap_or(1);
            batch_records = batch_records.saturating_add(r.units_settled / price.max(1));
        } else {
            other_records += 1;
            out.premium.of += 1;
            out.premium.n += u64::from(d.premium.contains(&r.class));
        }
    }
    out.batch = Ratio { n: batch_records, of: batch_records.saturating_add(other_records) };
    out
}

/// Days from the first record's to the last's, each with its counts.
fn days(facts: &[Facts]) -> Vec<Day> {
    let (Some(first), Some(last)) = (facts.first(), facts.last()) else { return Vec::new() };
    let day_of = |ms: i64| ms.div_euclid(86_400_000);
    let (d0, d1) = (day_of(first.time_ms), day_of(last.time_ms));
    let span = usize::try_from(d1 - d0 + 1).unwrap_or(0).min(3660);
    // Each day, and its callers' (soft-limit hit, hard-limit hit).
    type Callers<'a> = BTreeMap<&'a str, (bool, bool)>;
    let mut out: Vec<(Day, Callers)> = (0..span)
        .map(|k| {
            let date = quota_core::calendar::rfc3339((d0 + k as i64) * 86_400);
            let day = Day {
                date: date.get(..10).unwrap_or("").to_string(),
                requests: 0,
                refused: 0,
                callers: 0,
                soft: 0,
                hard: 0,
            };
            (day, BTreeMap::new())
        })
        .collect();
    for f in facts {
        let Some((day, callers)) = usize::try_from(day_of(f.time_ms) - d0).ok().and_then(|k| out.get_mut(k)) else {
            continue;
        };
        day.requests += 1;
        day.refused += u64::from(f.refused);
        if let Some(u) = f.user {
            let c = callers.entry(u).or_default();
            c.0 |= f.soft;
            c.1 |= f.blocked;
        }
    }
    out.into_iter()
        .map(|(mut day, callers)| {
            day.callers = callers.len() as u64;
            day.soft = callers.values().filter(|c| c.0).count() as u64;
            day.hard = callers.values().filter(|c| c.1).count() as u64;
            day
        })
        .collect()
}

fn funnel(facts: &[Facts]) -> Funnel {
    #[derive(Default)]
    struct C {
        first_soft: Option<i64>,
        first_block: Option<i64>,
        refused: bool,
        upgraded: bool,
        abandoned: bool,
    }
    let mut callers: BTreeMap<&str, C> = BTreeMap::new();
    for f in facts {
        let Some(u) = f.user else { continue };
        let c = callers.entry(u).or_default();
        if f.soft && c.first_soft.is_none() {
            c.first_soft = Some(f.time_ms);
        }
        if f.blocked && c.first_block.is_none() {
            c.first_block = Some(f.time_ms);
        }
        c.refused |= f.refused;
        c.upgraded |= f.converted == Some(true);
        c.abandoned |= f.abandoned == Some(true);
    }
    let count = |f: &dyn Fn(&C) -> bool| callers.values().filter(|c| f(c)).count() as u64;
    Funnel {
        callers: callers.len() as u64,
        warned: count(&|c| c.first_soft.is_some()),
        blocked: count(&|c| c.first_block.is_some()),
        warned_before_blocked: count(&|c| matches!((c.first_soft, c.first_block), (Some(s), Some(b)) if s <= b)),
        refused: count(&|c| c.refused),
        upgraded: count(&|c| c.upgraded),
        abandoned: count(&|c| c.abandoned),
    }
}

/// The report of `ledger` under `config`.
pub fn report(config: &Config, config_path: &str, ledger: &Ledger, definitions: Definitions) -> Report {
    let facts = facts(config, &ledger.entries);
    // One pass: each class and tier's records, in the config's order (then
    // names the config does not have, by name), however many there are.
    let class_rank = |c: &str| config.classes.iter().position(|x| x.name == c).unwrap_or(usize::MAX);
    let tier_rank = |t: &str| config.tier_by_name(t).map_or(usize::MAX, |t| t.0);
    let mut by_cell: BTreeMap<(usize, &str, usize, &str), Vec<&Facts>> = BTreeMap::new();
    let mut by_tier: BTreeMap<(usize, &str), Vec<&Facts>> = BTreeMap::new();
    for f in &facts {
        let (class, tier) = (f.record.class.as_str(), f.record.tier.as_str());
        by_cell.entry((class_rank(class), class, tier_rank(tier), tier)).or_default().push(f);
        by_tier.entry((tier_rank(tier), tier)).or_default().push(f);
    }
    let cells = by_cell
        .into_iter()
        .map(|((_, class, _, tier), group)| Cell {
            class: class.to_string(),
            tier: tier.to_string(),
            measures: measure(config, group.into_iter()),
        })
        .collect();
    let tier_rows = by_tier
        .into_iter()
        .map(|((_, tier), group)| {
            (tier.to_string(), measure(config, group.iter().copied()), mix(config, &definitions, group.into_iter()))
        })
        .collect();
    Report {
        ledger: ledger.source.clone(),
        config: config_path.to_string(),
        first: facts.first().map(|f| f.time_ms),
        last: facts.last().map(|f| f.time_ms),
        skipped_lines: ledger.skipped.len(),
        cells,
        tiers: tier_rows,
        all: measure(config, facts.iter()),
        mix: mix(config, &definitions, facts.iter()),
        days: days(&facts),
        funnel: funnel(&facts),
        definitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::parse;
    use serde_json::json;

    fn config() -> Config {
        let doc = json!({
            "identity": {"user": [{"header": "x-user-id"}], "tier": [{"header": "x-plan"}], "default_tier": "free"},
            "prices": {"currency": "USD", "models": {"gpt-4o": {"input": "2.50", "output": "10.00"}}, "default": {"input": "2.50", "output": "10.00"}},
            "classes": [
                {"name": "drafts", "match": [{"path": {"exact": "/v1/drafts"}}]},
                {"name": "premium", "match": [{"path": {"exact": "/v1/premium"}}], "cost": {"price": {}}},
                {"name": "batch", "match": [{"path": {"prefix": "/v1/batches"}}], "cost": {"records": {"field": "requests"}}}
            ],
            "tier_order": ["free", "pro"],
            "tiers": {
                "free": {"limits": {"drafts": {"soft": 1, "hard": 2, "window": "day"}, "premium": {"included": false}, "batch": {"included": false}}},
                "pro": {"limits": {"drafts": {"hard": 100, "window": "day"}, "premium": {"hard": 5000000, "window": "month"}, "batch": {"hard": 1000, "window": "month"}}}
            }
        });
        Config::from_json(doc.to_string().as_bytes()).unwrap()
    }

    /// A record line: `user` at `second` past 09:00 with `fields` over the defaults.
    fn line(user: &str, second: i64, fields: serde_json::Value) -> String {
        let mut doc = json!({
            "v": 1, "time": crate::ledger::time_text(1_793_610_000_000 + second * 1000), "user": user,
            "tier": "free", "class": "drafts", "method": "POST", "route": "/v1/drafts",
            "units_requested": 1, "units_charged": 1, "units_settled": 1,
            "status": 200, "upstream_status": 200, "upstream_reached": true, "state": "ok"
        });
        for (k, v) in fields.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc.to_string()
    }

    fn refused() -> serde_json::Value {
        json!({"state": "blocked", "status": 429, "units_charged": 0, "units_settled": 0, "upstream_reached": false, "upstream_status": null})
    }

    fn run(lines: &[String]) -> Report {
        let ledger = parse(lines.join("\n").as_bytes(), "t.jsonl").unwrap();
        let c = config();
        let d = Definitions::of(&c, None, None).unwrap();
        report(&c, "c.json", &ledger, d)
    }

    fn drafts_free(r: &Report) -> &Measures {
        &r.cells.iter().find(|c| c.class == "drafts" && c.tier == "free").unwrap().measures
    }

    #[test]
    fn silent_for_61_seconds_after_a_refusal_is_abandonment() {
        let r = run(&[
            // ana: refused, then silent for 61 s (her next request comes later).
            line("ana", 0, refused()),
            line("ana", 61, json!({"class": "other"})),
            // bo: refused, back within 30 s.
            line("bo", 0, refused()),
            line("bo", 30, json!({})),
            // cy: refused, back at exactly 60 s: within the minute.
            line("cy", 10, refused()),
            line("cy", 70, json!({})),
            // dee: never refused.
            line("dee", 0, json!({})),
            line("dee", 500, json!({})),
        ]);
        let m = drafts_free(&r);
        assert_eq!(m.abandoned, Ratio { n: 1, of: 3 });
        assert_eq!(m.hard, Ratio { n: 3, of: 4 });
        assert_eq!((m.requests, m.refused, m.callers), (7, 3, 4));
    }

    #[test]
    fn refused_again_within_the_minute_is_one_quota_error() {
        let r = run(&[
            // ana tries again twice, refused each time, then leaves: one error, abandoned.
            line("ana", 0, refused()),
            line("ana", 20, refused()),
            line("ana", 50, refused()),
            // bo is refused, works in another class, is refused later: two errors, neither abandoned.
            line("bo", 0, refused()),
            line("bo", 10, json!({"class": "other"})),
            line("bo", 100, refused()),
            line("bo", 130, json!({"class": "other"})),
            line("cy", 400, json!({})),
        ]);
        let m = drafts_free(&r);
        assert_eq!(m.abandoned, Ratio { n: 1, of: 3 });
        assert_eq!((r.funnel.refused, r.funnel.abandoned), (2, 1));
    }

    #[test]
    fn a_refusal_in_the_ledgers_last_minute_is_not_counted_either_way() {
        let r = run(&[line("ana", 0, json!({})), line("bo", 100, refused()), line("ana", 130, json!({}))]);
        // bo's minute runs past the last record (130 s): unknown.
        assert_eq!(drafts_free(&r).abandoned, Ratio { n: 0, of: 0 });
        let r = run(&[line("bo", 100, refused()), line("ana", 161, json!({}))]);
        assert_eq!(drafts_free(&r).abandoned, Ratio { n: 1, of: 1 });
    }

    #[test]
    fn warned_at_free_then_seen_at_pro_is_a_conversion() {
        let r = run(&[
            // ana: warned on free, later on pro.
            line("ana", 0, json!({"state": "warning", "warned": true})),
            line("ana", 300, json!({"tier": "pro"})),
            // bo: warned, stays on free.
            line("bo", 0, json!({"state": "warning", "warned": true})),
            line("bo", 400, json!({})),
            // cy: on pro first, then free (a downgrade is no conversion).
            line("cy", 0, json!({"tier": "pro", "state": "warning"})),
            line("cy", 50, json!({"state": "blocked", "status": 429, "upstream_reached": false})),
            // dee: on pro before the prompt only: no conversion.
            line("dee", 0, json!({"tier": "pro"})),
            line("dee", 10, json!({"state": "not_included", "status": 403, "upstream_reached": false})),
        ]);
        let m = drafts_free(&r);
        assert_eq!(m.converted, Ratio { n: 1, of: 4 });
        assert_eq!(m.soft, Ratio { n: 2, of: 4 });
        // cy was prompted on pro too; nothing is above pro.
        let pro = &r.cells.iter().find(|c| c.class == "drafts" && c.tier == "pro").unwrap().measures;
        assert_eq!(pro.converted, Ratio { n: 0, of: 1 });
        assert_eq!(r.funnel.upgraded, 1);
    }

    #[test]
    fn soft_and_hard_hit_rates_count_callers_not_requests() {
        let warned = json!({"state": "warning", "warned": true});
        let r = run(&[
            line("ana", 0, warned.clone()),
            line("ana", 1, json!({"state": "warning"})),
            line("ana", 2, refused()),
            line("ana", 3, refused()),
            line("bo", 0, json!({})),
            // A request past the hard limit served as overage reached the soft limit too.
            line("cy", 0, json!({"state": "overage"})),
        ]);
        let m = drafts_free(&r);
        assert_eq!((m.soft, m.hard), (Ratio { n: 2, of: 3 }, Ratio { n: 1, of: 3 }));
        assert_eq!(
            r.funnel,
            Funnel {
                callers: 3,
                warned: 2,
                blocked: 1,
                warned_before_blocked: 1,
                refused: 1,
                upgraded: 0,
                abandoned: 0
            }
        );
    }

    #[test]
    fn failures_and_retries_within_30_seconds_on_the_same_route() {
        let r = run(&[
            line("ana", 0, json!({"status": 503, "upstream_status": 503})),
            line("ana", 20, json!({})),
            // Another route is not a retry; nor is one 31 s after.
            line("bo", 0, json!({"status": 502, "upstream_status": 502})),
            line("bo", 5, json!({"route": "/v1/other"})),
            line("bo", 31, json!({})),
            // Envoy's 503 for an upstream it never reached, and the provider's own 429
            // (named busy, or only by its upstream status).
            line("cy", 0, json!({"status": 503, "upstream_reached": false, "upstream_status": null})),
            line("cy", 1, json!({"status": 429, "upstream_status": 429, "state": "busy"})),
            line("cy", 2, json!({})),
            line("dee", 0, json!({"status": 429, "upstream_status": 429})),
            // The filter's own 429 is a refusal, not a failure.
            line(
                "dee",
                1,
                json!({"status": 429, "upstream_status": null, "upstream_reached": false, "state": "blocked"}),
            ),
        ]);
        let m = &r.all;
        assert_eq!(m.failed, Ratio { n: 5, of: 10 });
        // ana's second, cy's busy one (after the 503), cy's third, and dee's refusal.
        assert_eq!(m.retried, Ratio { n: 4, of: 10 });
        assert_eq!(m.failed_or_retried, Ratio { n: 8, of: 10 });
    }

    #[test]
    fn token_ratios_premium_and_batch_shares() {
        let r = run(&[
            line(
                "ana",
                0,
                json!({"tier": "pro", "class": "premium", "units_settled": 2500, "currency": "USD",
                "tokens": {"input": 1000, "output": 250, "cached_input": 400, "reasoning": 0}}),
            ),
            line(
                "ana",
                1,
                json!({"tier": "pro", "class": "premium", "units_settled": 1500, "currency": "USD",
                "tokens": {"input": 1000, "output": 750, "cached_input": 0, "reasoning": 100}}),
            ),
            line("ana", 2, json!({"tier": "pro"})),
            line("ana", 3, json!({"tier": "pro"})),
            // Refused: neither processed nor spent.
            line(
                "ana",
                4,
                json!({"tier": "pro", "class": "premium", "state": "blocked", "status": 429, "upstream_reached": false, "units_settled": 0}),
            ),
            line("ana", 5, json!({"tier": "pro", "class": "batch", "units_settled": 12})),
        ]);
        let pro = &r.tiers.iter().find(|t| t.0 == "pro").unwrap();
        // Premium: 2 of the 4 sync requests let through; batch: 12 of 16 records.
        assert_eq!(pro.2, Mix { premium: Ratio { n: 2, of: 4 }, batch: Ratio { n: 12, of: 16 } });
        let premium = &r.cells.iter().find(|c| c.class == "premium").unwrap().measures;
        assert_eq!(premium.tokens.output_per_input(), Some(0.5));
        assert_eq!(premium.tokens.cached_share(), Ratio { n: 400, of: 2000 });
        assert_eq!(premium.spend, vec![Spend::Money { micros: 4000, currency: Currency::from_code("USD").unwrap() }]);
        let drafts = &r.cells.iter().find(|c| c.class == "drafts" && c.tier == "pro").unwrap().measures;
        assert_eq!(
            drafts.spend,
            vec![Spend::Units { units: 2, unit: "drafts request".into(), plural: "drafts requests".into() }]
        );
        assert_eq!(r.definitions.premium, ["premium"]);
        assert_eq!(r.definitions.batch, ["batch"]);
    }

    #[test]
    fn records_without_a_caller_count_as_requests_only() {
        let mut anonymous = serde_json::from_str::<serde_json::Value>(&line("x", 0, refused())).unwrap();
        anonymous.as_object_mut().unwrap().remove("user");
        let r = run(&[anonymous.to_string(), line("ana", 0, json!({}))]);
        let m = drafts_free(&r);
        assert_eq!((m.requests, m.anonymous_requests, m.callers, m.hard), (2, 1, 1, Ratio { n: 0, of: 1 }));
    }

    #[test]
    fn days_count_callers_per_day() {
        let r = run(&[
            line("ana", 0, json!({"state": "warning"})),
            line("ana", 86_400, refused()),
            line("bo", 86_400 * 2, json!({})),
        ]);
        let d: Vec<(&str, u64, u64, u64)> =
            r.days.iter().map(|d| (d.date.as_str(), d.callers, d.soft, d.hard)).collect();
        assert_eq!(d, [("2026-11-02", 1, 1, 0), ("2026-11-03", 1, 0, 1), ("2026-11-04", 1, 0, 0)]);
    }

    #[test]
    fn many_names_and_bursts_cost_one_pass_not_a_square() {
        // 20,000 records each naming its own class and tier, and 20,000
        // failures of one caller on one route in the same millisecond: a
        // reader that compared every pair would not finish.
        let base: LedgerRecord = serde_json::from_str(&line("ana", 0, json!({}))).unwrap();
        let mut entries = Vec::new();
        for i in 0..20_000 {
            let mut r = base.clone();
            (r.class, r.tier, r.user) = (format!("c{i}"), format!("t{i}"), Some(format!("u{i}")));
            entries.push(Entry { line: i + 1, time_ms: 1_793_610_000_000, record: r });
        }
        for i in 0..20_000 {
            let mut r = base.clone();
            r.status = 503;
            entries.push(Entry { line: 20_001 + i, time_ms: 1_793_610_000_000, record: r });
        }
        let ledger = Ledger { source: "burst".into(), entries, ..Ledger::default() };
        let c = config();
        let r = report(&c, "c.json", &ledger, Definitions::of(&c, None, None).unwrap());
        assert_eq!((r.cells.len(), r.tiers.len()), (20_001, 20_001));
        // Every failure but the first is a retry of the one before.
        assert_eq!((r.all.failed.n, r.all.retried.n), (20_000, 19_999));
        // Names the config does not have come after its own, by name.
        assert_eq!((r.cells[0].class.as_str(), r.cells[1].class.as_str()), ("drafts", "c0"));
    }

    #[test]
    fn classes_named_on_the_command_line_must_exist() {
        let c = config();
        let err = Definitions::of(&c, Some(&["drafts".into(), "nope".into()]), None).unwrap_err();
        assert_eq!(err, "--premium: no class named \"nope\" (classes: drafts, premium, batch)");
        let d = Definitions::of(&c, None, Some(&["drafts".into()])).unwrap();
        assert_eq!((d.batch, d.batch_from.as_str()), (vec!["drafts".to_string()], "given with --batch"));
    }
}
