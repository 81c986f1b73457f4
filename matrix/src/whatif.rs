//! `whatif`: the ledger's requests replayed, in arrival order, through a
//! matrix with the filter's own charging code ([`engine::charge`] on the
//! counter table over an in-memory store, with the record's time as the
//! clock), then settled as they settled. Done for the current matrix and a
//! proposed one, side by side.
//!
//! What a record gives the replay:
//!
//! - the caller: `user`, `workspace`, `organisation`, and `tier` (looked up
//!   by name in the matrix replayed); the configured calendar (a caller's
//!   own UTC offset is not in the ledger);
//! - the class, by name, and the cost: `units_requested` (a record without
//!   it: `units_charged`, else 1), confirmed if the record says the client
//!   confirmed it;
//! - the settlement of an admitted request: a class priced by model whose
//!   record has tokens is priced again with the replayed matrix's prices
//!   (the model the request would have been sent with: the asked one, or a
//!   degrade's); otherwise it settles at `units_settled` if the request
//!   ran, and at its estimate if it never ran (refused in the ledger, so
//!   its real usage is unknown). Corrections are bounded per counter as the
//!   filter bounds them.
//!
//! Records without a caller id, or whose class or tier the matrix does not
//! have, are not replayed (and counted). Grants and member caps are not in
//! the ledger, so they are not replayed either.

use crate::cli::Output;
use crate::describe::exact_money;
use crate::ledger::Ledger;
use crate::load::Loaded;
use crate::report::Grid;
use crate::simulate::{in_memory, state};
use quota_core::admission::rewrites;
use quota_core::config::{ClassId, Config, Cost};
use quota_core::decide::{bounded_delta, Served};
use quota_core::engine::{self, correction_room_of, Outcome};
use quota_core::identity::Caller;
use quota_core::ledger::LedgerRecord;
use quota_core::money::{format_amount, Currency};
use quota_core::store::MemoryStore;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One record replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// As `x-quota-state` would say.
    pub state: String,
    pub admitted: bool,
    pub served: Served,
    /// Crossed a warning level.
    pub warned: bool,
    /// Units of this request past the hard limit, billed as overage.
    pub overage: u64,
    /// What it settled at (0 when refused).
    pub settled: u64,
}

/// A matrix's replay of a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Per entry of the ledger, in its order: `None` when not replayed.
    pub outcomes: Vec<Option<Replayed>>,
    /// Why records were not replayed, and how many.
    pub not_replayed: BTreeMap<String, usize>,
}

/// Replays `ledger` through `config`.
pub fn replay(config: &Config, ledger: &Ledger) -> Replay {
    let config = in_memory(config);
    let config = config.as_ref();
    let store = MemoryStore::new();
    let mut not_replayed: BTreeMap<String, usize> = BTreeMap::new();
    let outcomes = ledger
        .entries
        .iter()
        .map(|e| match replay_one(config, &store, &e.record, e.time_ms) {
            Ok(r) => Some(r),
            Err(why) => {
                *not_replayed.entry(why).or_default() += 1;
                None
            }
        })
        .collect();
    Replay { outcomes, not_replayed }
}

fn replay_one(config: &Config, store: &MemoryStore, r: &LedgerRecord, now_ms: i64) -> Result<Replayed, String> {
    let user = r.user.as_deref().filter(|u| !u.is_empty()).ok_or("no caller id (anonymous, or ids omitted)")?;
    let class = config
        .classes
        .iter()
        .position(|c| c.name == r.class)
        .map(ClassId)
        .ok_or_else(|| format!("class \"{}\" is not in the matrix", r.class))?;
    let tier = config.tier_by_name(&r.tier).ok_or_else(|| format!("tier \"{}\" is not in the matrix", r.tier))?;
    let caller = Caller {
        id: user.to_string(),
        anonymous: r.anonymous,
        workspace: r.workspace.clone(),
        organisation: r.organisation.clone(),
        tier,
        alignment: config.calendar.alignment,
    };
    let cost = match (r.units_requested, r.units_charged) {
        (0, 0) => 1,
        (0, charged) => charged,
        (asked, _) => asked,
    };
    let table = config.counters.table(store, now_ms);
    let d = engine::charge(config, &caller, class, cost, r.confirmed, now_ms, &table);
    let mut out = Replayed {
        state: state(&d).to_string(),
        admitted: d.admitted(),
        served: Served::Normally,
        warned: false,
        overage: 0,
        settled: 0,
    };
    let Outcome::Charged(c) = &d.outcome else { return Ok(out) };
    out.warned = c.crossed.is_some();
    if !c.admitted {
        return Ok(out);
    }
    out.served = c.served;
    if c.served == Served::Overage {
        out.overage = c.cost.min(c.usage.over);
    }
    let target = settle_at(config, &d, r, c.cost);
    let delta = i64::try_from(target).unwrap_or(i64::MAX) - i64::try_from(c.cost).unwrap_or(i64::MAX);
    let mut binding = delta;
    for (n, (key, limit, start)) in d.charged().into_iter().enumerate() {
        let most = correction_room_of(config, &d, limit);
        let bounded = bounded_delta(delta, most);
        if n == 0 {
            binding = bounded;
        }
        if bounded != 0 {
            // A store in memory does not give up; a failure would leave the charge as it was.
            let _ = engine::correct(config, key, start, bounded, most, &table);
        }
    }
    out.settled = u64::try_from(i128::from(c.cost) + i128::from(binding)).unwrap_or(0);
    Ok(out)
}

/// What an admitted request settles at (see the module's notes).
fn settle_at(config: &Config, d: &engine::Decision, r: &LedgerRecord, cost: u64) -> u64 {
    let priced = config.class(d.class).is_some_and(|c| matches!(c.cost, Cost::Priced { .. }));
    if let (true, Some(t)) = (priced, &r.tokens) {
        // Sent with the asked model, or the one a degrade rewrites it to.
        let mut body = r.model_asked.as_ref().map(|m| json!({ "model": m }));
        if let Some(b) = body.as_mut() {
            rewrites(config, d, Some(b)).apply_to_body(b);
        }
        if let Some(price) = engine::price_for(config, body.as_ref()) {
            return price.cost(&t.kinds()).max(1);
        }
    }
    if r.units_charged > 0 {
        r.units_settled
    } else {
        cost
    }
}

/// Whether a replayed outcome is the one the record says: the same state
/// (a `busy` record: admitted, as the provider's refusal came after).
pub fn same(recorded: &LedgerRecord, replayed: &Replayed) -> bool {
    if recorded.state == "busy" {
        return replayed.admitted;
    }
    recorded.state == replayed.state
}

/// One side's counts for a class and tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Side<'a> {
    requests: u64,
    refused: u64,
    callers: BTreeSet<&'a str>,
    warned: BTreeSet<&'a str>,
    blocked: BTreeSet<&'a str>,
    degraded: BTreeSet<&'a str>,
    overage: BTreeSet<&'a str>,
    overage_units: u64,
    spend: u64,
}

impl<'a> Side<'a> {
    fn add(&mut self, user: &'a str, o: &Replayed) {
        self.requests += 1;
        self.callers.insert(user);
        self.refused += u64::from(!o.admitted && o.state != "confirmation_required");
        if o.warned || matches!(o.state.as_str(), "warning" | "degraded" | "overage" | "queued") {
            self.warned.insert(user);
        }
        if o.state == "blocked" {
            self.blocked.insert(user);
        }
        if o.served == Served::Degraded {
            self.degraded.insert(user);
        }
        if o.served == Served::Overage {
            self.overage.insert(user);
            self.overage_units = self.overage_units.saturating_add(o.overage);
        }
        self.spend = self.spend.saturating_add(o.settled);
    }
}

/// A class and tier, both sides.
struct Row<'a> {
    class: &'a str,
    tier: &'a str,
    current: Side<'a>,
    proposed: Side<'a>,
}

/// Everything `whatif` shows.
pub struct Comparison<'a> {
    ledger: &'a Ledger,
    current_path: &'a str,
    proposed_path: &'a str,
    current_config: &'a Config,
    proposed_config: &'a Config,
    current: Replay,
    proposed: Replay,
}

impl<'a> Comparison<'a> {
    pub fn new(ledger: &'a Ledger, current: &'a Loaded, proposed: &'a Loaded) -> Comparison<'a> {
        Comparison {
            ledger,
            current_path: &current.path,
            proposed_path: &proposed.path,
            current_config: &current.config,
            proposed_config: &proposed.config,
            current: replay(&current.config, ledger),
            proposed: replay(&proposed.config, ledger),
        }
    }

    /// Records whose replay under the current matrix is what they say, of
    /// those replayed; the first few that differ.
    fn fidelity(&self) -> (usize, usize, Vec<String>) {
        let mut same_n = 0;
        let mut of = 0;
        let mut first = Vec::new();
        for (e, o) in self.ledger.entries.iter().zip(&self.current.outcomes) {
            let Some(o) = o else { continue };
            of += 1;
            if same(&e.record, o) {
                same_n += 1;
            } else if first.len() < 5 {
                first.push(format!("line {}: recorded {}, replayed {}", e.line, e.record.state, o.state));
            }
        }
        (same_n, of, first)
    }

    fn rows(&self) -> Vec<Row<'a>> {
        let mut rows: BTreeMap<(usize, usize, &str, &str), Row<'a>> = BTreeMap::new();
        let config = self.current_config;
        let class_rank = |c: &str| config.classes.iter().position(|x| x.name == c).unwrap_or(usize::MAX);
        let tier_rank = |t: &str| config.tier_by_name(t).map_or(usize::MAX, |t| t.0);
        for (i, e) in self.ledger.entries.iter().enumerate() {
            let r = &e.record;
            let Some(user) = r.user.as_deref() else { continue };
            let key = (class_rank(&r.class), tier_rank(&r.tier), r.class.as_str(), r.tier.as_str());
            let row = rows.entry(key).or_insert_with(|| Row {
                class: &r.class,
                tier: &r.tier,
                current: Side::default(),
                proposed: Side::default(),
            });
            if let Some(Some(o)) = self.current.outcomes.get(i) {
                row.current.add(user, o);
            }
            if let Some(Some(o)) = self.proposed.outcomes.get(i) {
                row.proposed.add(user, o);
            }
        }
        rows.into_values().collect()
    }

    fn amount(config: &Config, class: &str, units: u64) -> String {
        match currency(config, class) {
            Some(c) => format_amount(units, c),
            None => units.to_string(),
        }
    }

    fn grid(&self) -> Grid {
        let mut g = Grid::new(&[
            "class",
            "tier",
            ">callers",
            ">warned",
            ">blocked",
            ">degraded",
            ">billed overage",
            ">refused requests",
            ">spend",
        ]);
        let arrow = |a: usize, b: usize| if a == b { a.to_string() } else { format!("{a} → {b}") };
        for row in self.rows() {
            let (c, p) = (&row.current, &row.proposed);
            let spend_c = Self::amount(self.current_config, row.class, c.spend);
            let spend_p = Self::amount(self.proposed_config, row.class, p.spend);
            let change = match (c.spend, p.spend) {
                (a, b) if a == b => String::new(),
                (0, _) => " (new)".into(),
                (a, b) => format!(" ({:+.1}%)", (b as f64 - a as f64) * 100.0 / a as f64),
            };
            let spend = if c.spend == p.spend { spend_c } else { format!("{spend_c} → {spend_p}{change}") };
            g.row(vec![
                row.class.to_string(),
                row.tier.to_string(),
                arrow(c.callers.len(), p.callers.len()),
                arrow(c.warned.len(), p.warned.len()),
                arrow(c.blocked.len(), p.blocked.len()),
                arrow(c.degraded.len(), p.degraded.len()),
                arrow(c.overage.len(), p.overage.len()),
                arrow(c.refused as usize, p.refused as usize),
                spend,
            ]);
        }
        g
    }

    fn intro(&self) -> Vec<String> {
        let replayed = |r: &Replay| r.outcomes.iter().filter(|o| o.is_some()).count();
        let mut out = vec![format!(
            "{}: {} records replayed under {} (current) and {} (proposed), in arrival order, by the filter's core.",
            self.ledger.source,
            self.ledger.entries.len(),
            self.current_path,
            self.proposed_path
        )];
        let (same_n, of, first) = self.fidelity();
        let mut line = format!(
            "The current matrix reproduces {same_n} of {of} recorded outcomes{}",
            if same_n == of { "." } else { ":" }
        );
        if same_n != of {
            line.push_str(&format!(" {} differ (first: {}).", of - same_n, first.join("; ")));
        }
        out.push(line);
        for (side, r) in [("current", &self.current), ("proposed", &self.proposed)] {
            for (why, n) in &r.not_replayed {
                out.push(format!(
                    "Not replayed under the {side} matrix: {n} (of {}): {why}.",
                    replayed(r) + r.not_replayed.values().sum::<usize>()
                ));
            }
        }
        if !self.ledger.skipped.is_empty() {
            out.push(format!("{} invalid lines skipped.", self.ledger.skipped.len()));
        }
        out
    }

    const NOTES: &'static str = "Each cell: current → proposed (one number when they are the same). Callers \
        warned: a warning level crossed or served past the soft limit; blocked: refused at the hard limit; \
        degraded: served with the cheaper model; billed overage: served past the hard limit as overage. \
        Spend: what the requests admitted settled at (a class priced by model priced again from its tokens).";

    pub fn write(&self, format: Output) -> String {
        match format {
            Output::Json => self.json(),
            Output::Markdown => {
                let mut out = String::from("# What if\n\n");
                for line in self.intro() {
                    out.push_str(&line);
                    out.push_str("\n\n");
                }
                out.push_str(&self.grid().markdown());
                out.push_str(&format!("\n{}\n", Self::NOTES));
                out
            }
            Output::Table | Output::Html => {
                let mut out = String::from("What if\n");
                for line in self.intro() {
                    out.push_str(&line);
                    out.push('\n');
                }
                out.push('\n');
                out.push_str(&self.grid().text());
                out.push_str(&format!("\n{}\n", Self::NOTES));
                out
            }
        }
    }

    fn json(&self) -> String {
        let side = |config: &Config, class: &str, s: &Side| {
            let mut o = Map::new();
            o.insert("requests".into(), json!(s.requests));
            o.insert("refused".into(), json!(s.refused));
            o.insert("callers".into(), json!(s.callers.len()));
            o.insert("warned".into(), json!(s.warned.len()));
            o.insert("blocked".into(), json!(s.blocked.len()));
            o.insert("degraded".into(), json!(s.degraded.len()));
            o.insert("billed_overage".into(), json!(s.overage.len()));
            o.insert("overage_units".into(), json!(s.overage_units));
            o.insert("spend_units".into(), json!(s.spend));
            if let Some(c) = currency(config, class) {
                o.insert("currency".into(), json!(c.code()));
                o.insert("spend".into(), json!(exact_money(s.spend, c)));
            }
            Value::Object(o)
        };
        let rows: Vec<Value> = self
            .rows()
            .iter()
            .map(|r| {
                json!({
                    "class": r.class,
                    "tier": r.tier,
                    "current": side(self.current_config, r.class, &r.current),
                    "proposed": side(self.proposed_config, r.class, &r.proposed),
                })
            })
            .collect();
        let (same_n, of, first) = self.fidelity();
        let not = |r: &Replay| -> Value {
            Value::Array(r.not_replayed.iter().map(|(why, n)| json!({"reason": why, "records": n})).collect())
        };
        let doc = json!({
            "ledger": self.ledger.source,
            "current": self.current_path,
            "proposed": self.proposed_path,
            "records": self.ledger.entries.len(),
            "skipped_lines": self.ledger.skipped.len(),
            "current_reproduces": {"records": same_n, "of": of, "first_differences": first},
            "not_replayed": {"current": not(&self.current), "proposed": not(&self.proposed)},
            "cells": rows,
        });
        let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
        out.push('\n');
        out
    }
}

fn currency<'c>(config: &'c Config, class: &str) -> Option<&'c Currency> {
    let id = config.classes.iter().position(|c| c.name == class)?;
    config.currency_of(ClassId(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{parse_date, run, Options};
    use crate::load::load;

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    fn loaded(path: &str) -> Loaded {
        load(root().join(path).to_str().unwrap()).unwrap()
    }

    fn generated(config: &Loaded, users: u32, days: u32) -> Ledger {
        let o = Options { seed: 11, users, days, start_day: parse_date("2026-11-02").unwrap() };
        let text = run(config, &o).unwrap().ledger;
        crate::ledger::parse(text.as_bytes(), "generated").unwrap()
    }

    /// A loaded config from a changed copy of `path`.
    fn changed(path: &str, change: impl FnOnce(&mut Value)) -> Loaded {
        let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap();
        change(&mut doc);
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        Loaded { path: "proposed.json".into(), config, raw: doc }
    }

    #[test]
    fn the_same_matrix_replays_every_record_as_it_was() {
        for path in [
            "envoy/demo-config.json",
            "matrix/tests/fixtures/priced.json",
            "matrix/tests/fixtures/stacked.json",
            "matrix/tests/fixtures/features.json",
            "matrix/tests/fixtures/strictest.json",
        ] {
            let config = loaded(path);
            let ledger = generated(&config, 30, 8);
            assert!(ledger.entries.len() > 200, "{path}: {}", ledger.entries.len());
            let states: BTreeSet<&str> = ledger.entries.iter().map(|e| e.record.state.as_str()).collect();
            eprintln!("{path}: {} records, states {states:?}", ledger.entries.len());
            let replay = replay(&config.config, &ledger);
            assert!(replay.not_replayed.is_empty(), "{path}: {:?}", replay.not_replayed);
            for (e, o) in ledger.entries.iter().zip(&replay.outcomes) {
                let (r, o) = (&e.record, o.as_ref().unwrap());
                assert!(same(r, o), "{path} line {}: recorded {}, replayed {}", e.line, r.state, o.state);
                assert_eq!(o.settled, r.units_settled, "{path} line {}: {r:?}", e.line);
                assert_eq!(o.warned, r.warned, "{path} line {}", e.line);
            }
        }
    }

    #[test]
    fn lower_hard_limits_block_more_and_spend_less() {
        let current = loaded("envoy/demo-config.json");
        let ledger = generated(&current, 40, 10);
        // Every hard limit halved (soft limits dropped: the default warnings remain).
        let tight = changed("envoy/demo-config.json", |doc| {
            for tier in doc["tiers"].as_object_mut().unwrap().values_mut() {
                for cell in tier["limits"].as_object_mut().unwrap().values_mut() {
                    let limits: Vec<&mut Value> = match cell {
                        Value::Array(stack) => stack.iter_mut().collect(),
                        one => vec![one],
                    };
                    for l in limits.into_iter().filter(|l| l.get("hard").is_some()) {
                        l["hard"] = json!((l["hard"].as_u64().unwrap() / 2).max(1));
                        l.as_object_mut().unwrap().remove("soft");
                    }
                }
            }
        });
        let cmp = Comparison::new(&ledger, &current, &tight);
        let blocked = |r: &Replay| r.outcomes.iter().flatten().filter(|o| o.state == "blocked").count();
        let spent = |r: &Replay| -> u64 { r.outcomes.iter().flatten().map(|o| o.settled).sum() };
        assert!(
            blocked(&cmp.proposed) > blocked(&cmp.current),
            "{} vs {}",
            blocked(&cmp.proposed),
            blocked(&cmp.current)
        );
        assert!(spent(&cmp.proposed) < spent(&cmp.current));
        // Per class too: no class spends more under the tighter matrix.
        for row in cmp.rows() {
            assert!(row.proposed.spend <= row.current.spend, "{} {}", row.class, row.tier);
            assert!(row.proposed.blocked.len() >= row.current.blocked.len(), "{} {}", row.class, row.tier);
        }
        let text = cmp.write(Output::Table);
        let (same_n, of, _) = cmp.fidelity();
        assert_eq!(same_n, of);
        assert!(text.contains(&format!("The current matrix reproduces {of} of {of} recorded outcomes.")), "{text}");
    }

    #[test]
    fn dearer_prices_cost_more_for_the_same_tokens() {
        let current = loaded("matrix/tests/fixtures/priced.json");
        let ledger = generated(&current, 30, 7);
        let dearer = changed("matrix/tests/fixtures/priced.json", |doc| {
            doc["prices"]["models"]["gpt-4o"]["output"] = json!("20.00");
            // Enough room that no decision changes.
            doc["tiers"]["pro"]["limits"]["premium"]["hard"] = json!(1_000_000);
            doc["tiers"]["pro"]["limits"]["premium"]["soft"] = json!(900_000);
        });
        let cmp = Comparison::new(&ledger, &current, &dearer);
        let premium_spend = |r: &Replay| -> u64 {
            ledger
                .entries
                .iter()
                .zip(&r.outcomes)
                .filter(|(e, _)| e.record.class == "premium" && e.record.model_asked.as_deref() == Some("gpt-4o"))
                .filter_map(|(_, o)| o.as_ref().map(|o| o.settled))
                .sum()
        };
        assert!(premium_spend(&cmp.proposed) > premium_spend(&cmp.current));
    }

    #[test]
    fn records_the_matrix_cannot_place_are_counted_not_replayed() {
        let config = loaded("envoy/demo-config.json");
        let line = |user: &str, class: &str, tier: &str| {
            let mut doc = json!({"v": 1, "time": "2026-11-02T09:00:00Z", "tier": tier, "class": class, "method": "POST",
                "route": "/v1/x", "units_requested": 1, "units_charged": 1, "units_settled": 1, "status": 200,
                "upstream_reached": true, "state": "ok"});
            if !user.is_empty() {
                doc["user"] = json!(user);
            }
            doc.to_string()
        };
        let text = [
            line("", "drafts", "free"),
            line("ana", "sketches", "free"),
            line("ana", "drafts", "platinum"),
            line("ana", "drafts", "free"),
        ]
        .join("\n");
        let ledger = crate::ledger::parse(text.as_bytes(), "l").unwrap();
        let r = replay(&config.config, &ledger);
        let reasons: Vec<(&str, usize)> = r.not_replayed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            reasons,
            [
                ("class \"sketches\" is not in the matrix", 1),
                ("no caller id (anonymous, or ids omitted)", 1),
                ("tier \"platinum\" is not in the matrix", 1)
            ]
        );
        assert_eq!(r.outcomes.iter().flatten().count(), 1);
    }
}
