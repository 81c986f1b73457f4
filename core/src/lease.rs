//! The lease mode: many Envoys share one quota in Redis and admit at local
//! speed, never past a limit.
//!
//! An Envoy (a *holder*) reserves a block of a counter's units from Redis in
//! one atomic call ([`Command::lease`]) and admits requests from it on its
//! own, in shared data, exact across its workers. Redis counts every granted
//! unit as used at once, so the blocks of all Envoys together never pass the
//! limit: overshoot is zero by construction. A block is at most
//! `lease_fraction` of the plan's units not yet reserved (and at most
//! `lease_max_units`), so blocks shrink as the counter nears its limit and the
//! last units go one request at a time. The price: an Envoy may refuse while
//! others hold units they have not spent: a call tops a holder up to one
//! block unspent, so at most a block each, two when two of its calls cross
//! (see [`refusal_bound`]); an idle Envoy gives
//! its unspent units back once its block's lifetime (`lease_ms`) is over.
//!
//! Each Envoy keeps, per counter, one [`LeaseRecord`] in the counter table:
//! the units granted to it in the window and the units it spent, when the
//! block may be spent until, and the usage shown to callers (the other
//! Envoys' spending as Redis last reported it, plus its own, exact). Grants
//! are applied as deltas (an answer adds what that call granted), and a
//! release gives back only units the holder knew it held, so answers that
//! cross never make a holder believe it holds units Redis gave to another.
//!
//! A request that finds too few units (or a block past its lifetime, or a
//! new window) waits for one lease call, then is decided on what the answer
//! brought; a request that leaves the block low (or old) asks for the next
//! one in the background ([`Admit::Decided::renew`]). While Redis is away an
//! Envoy admits from what it holds until the block's lifetime is over; then
//! the fail policy applies.

use crate::config::{Config, Lease};
use crate::counter::{unzigzag, zigzag, Counter, Reader};
use crate::decide::{current, decide, Charge};
use crate::engine::{limits_of, settle, Decision, Outcome, Ticket};
use crate::redis::{Command, LeaseAnswer, LeaseArgs};
use crate::store::{compare_and_swap, CounterStore, GiveUp};
use crate::window::Alignment;

/// The first byte of a lease record (a counter record's is 3).
const VERSION: u8 = 4;

/// The longest lease record: the version, a counter record and six varints.
pub const MAX_LEASE_BYTES: usize = 1 + crate::counter::MAX_RECORD_BYTES + 6 * 10;

/// One holder's share of one counter, in this Envoy's counter table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    /// The counter as callers are shown it: the window, and as `used` the
    /// other Envoys' spending as Redis last reported it plus this Envoy's;
    /// warning levels and flags reported.
    pub counter: Counter,
    /// Units Redis granted this Envoy in the window, less those given back.
    pub granted: u64,
    /// Of those, units this Envoy admitted.
    pub spent: u64,
    /// Units the other Envoys held unspent at the last answer.
    pub others_unspent: u64,
    /// The units held may be spent until then (Unix ms).
    pub expires_ms: i64,
    /// A renewal is out until then (Unix ms; 0: none).
    pub renewing_until_ms: i64,
    /// The last block Redis granted.
    pub block: u64,
}

impl LeaseRecord {
    /// Units held unspent.
    pub fn left(&self) -> u64 {
        self.granted.saturating_sub(self.spent)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_LEASE_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&self.counter.encode());
        for n in [
            self.granted,
            self.spent,
            self.others_unspent,
            zigzag(self.expires_ms),
            zigzag(self.renewing_until_ms),
            self.block,
        ] {
            push_varint(&mut out, n);
        }
        out
    }

    /// Decodes a lease record; `None` for anything else (a counter record, damage).
    pub fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (counter, rest) = Counter::decode_prefix(rest)?;
        let mut r = Reader { rest };
        let record = LeaseRecord {
            counter,
            granted: r.varint()?,
            spent: r.varint()?,
            others_unspent: r.varint()?,
            expires_ms: unzigzag(r.varint()?),
            renewing_until_ms: unzigzag(r.varint()?),
            block: r.varint()?,
        };
        r.rest.is_empty().then_some(record)
    }
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The counter a table entry shows, whichever kind of record it is: a
/// counter record, or a lease record's counter.
pub fn counter_of(bytes: &[u8]) -> Option<Counter> {
    Counter::decode(bytes).or_else(|| LeaseRecord::decode(bytes).map(|l| l.counter))
}

/// The name this Envoy goes by in Redis: drawn from the counter table's
/// seed, which the filter draws once per Envoy process (so every worker
/// holds the same share), without giving the seed away.
pub fn holder(config: &Config) -> String {
    let seed = config.counters.seed.encode();
    let mut input = b"quota-lease-holder:".to_vec();
    input.extend_from_slice(&seed);
    let digest = crate::redis::sha1_hex(&input);
    digest.get(..16).unwrap_or(&digest).to_string()
}

/// What a request found in this Envoy's share of its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Decided here. `renew`: the block runs low or old, and this request
    /// took the turn to ask for the next one in the background.
    Decided { decision: Box<Decision>, renew: bool },
    /// Redis must grant `need` more units before the request is decided.
    Needs { need: u64 },
}

/// Decides `ticket` (a one-limit cell's) on this Envoy's share of its
/// counter in `store`. With `last_try` (Redis answered already), a request
/// the share cannot cover is refused instead of asking again.
pub fn admit<S: CounterStore + ?Sized>(config: &Config, ticket: &Ticket, store: &S, last_try: bool) -> Admit {
    let Some((redis, settings)) = config.counters.lease() else {
        return unavailable(config, ticket, "the counters are not in the lease mode");
    };
    let Some(limits) = limits_of(config, ticket) else {
        return unavailable(config, ticket, "no cell for this tier and class");
    };
    let now = ticket.now();
    let mut out = None;
    let result = compare_and_swap(store, &ticket.key, config.counters.cas_attempts, |old| {
        let share = open_share(old.and_then(LeaseRecord::decode), limits, now, ticket.alignment);
        let left = share.left();
        if ticket.cost > left {
            let need = ticket.cost - left;
            out = Some(if last_try {
                Admit::Decided { decision: Box::new(refusal(config, ticket, &share)), renew: false }
            } else {
                Admit::Needs { need }
            });
            return (None, ());
        }
        if ticket.cost > 0 && ticket.now_ms >= share.expires_ms {
            // Units held, but past the block's lifetime: only Redis may say they still are.
            out = Some(if last_try {
                Admit::Decided { decision: Box::new(refusal(config, ticket, &share)), renew: false }
            } else {
                Admit::Needs { need: 0 }
            });
            return (None, ());
        }
        let (written, charge) =
            decide(Some(share.counter), limits, ticket.cost, ticket.confirmed, now, ticket.alignment);
        let decision = charged(ticket, charge);
        if !charge.admitted {
            out = Some(Admit::Decided { decision: Box::new(decision), renew: false });
            return (None, ());
        }
        let mut next = share;
        next.counter = written.unwrap_or(share.counter);
        next.spent = share.spent.saturating_add(charge.cost);
        // A request that took nothing asks for nothing.
        let renew = charge.cost > 0 && wants_renewal(&next, settings, ticket.now_ms);
        if renew {
            next.renewing_until_ms = ticket.now_ms.saturating_add(i64::try_from(redis.timeout_ms).unwrap_or(0));
        }
        out = Some(Admit::Decided { decision: Box::new(decision), renew });
        (Some(next.encode()), ())
    });
    match (result, out) {
        (Ok(()), Some(admit)) => admit,
        (Err(reason), _) => {
            Admit::Decided { decision: Box::new(settle(config, ticket.clone(), Err(reason)).0), renew: false }
        }
        (Ok(()), None) => unavailable(config, ticket, "the store ran no attempt"),
    }
}

/// Whether a share just spent from should ask for its next block now: its
/// units are below half its last block, or half its lifetime is gone, and
/// no renewal is out.
fn wants_renewal(share: &LeaseRecord, settings: Lease, now_ms: i64) -> bool {
    if now_ms < share.renewing_until_ms {
        return false;
    }
    let low = share.left().saturating_mul(2) < share.block.max(1);
    let half_life = i64::try_from(settings.ms / 2).unwrap_or(i64::MAX);
    let old = now_ms >= share.expires_ms.saturating_sub(half_life);
    low || old
}

/// The share as it stands at `now`: the stored one while its window is
/// open, else an empty one for the window a request now opens.
fn open_share(old: Option<LeaseRecord>, limits: &crate::config::Limits, now: i64, align: Alignment) -> LeaseRecord {
    let counter = current(old.map(|l| l.counter), limits, now, align);
    match old {
        Some(share)
            if share.counter.window_start == counter.window_start
                && share.counter.window_code == counter.window_code =>
        {
            share
        }
        _ => LeaseRecord { counter, ..LeaseRecord::default() },
    }
}

/// The decision of a ticket's charge.
fn charged(ticket: &Ticket, charge: Charge) -> Decision {
    Decision {
        class: ticket.class,
        tier: ticket.tier,
        scope: ticket.scope,
        key: Some(ticket.key.clone()),
        limit: 0,
        others: Vec::new(),
        now_ms: ticket.now_ms,
        requested: ticket.cost,
        outcome: Outcome::Charged(charge),
    }
}

fn unavailable(config: &Config, ticket: &Ticket, why: &str) -> Admit {
    let decision = settle(config, ticket.clone(), Err(GiveUp::Unavailable(why.into()))).0;
    Admit::Decided { decision: Box::new(decision), renew: false }
}

/// The refusal of a request Redis could not cover: decided on the units
/// reserved (every Envoy's spending and the units the others hold), which
/// refuses it as the counter's limit would; if the limit alone would not
/// (the units went between the answer and now), on a counter at its ceiling.
fn refusal(config: &Config, ticket: &Ticket, share: &LeaseRecord) -> Decision {
    let Some(limits) = limits_of(config, ticket) else {
        return settle(config, ticket.clone(), Err(GiveUp::Unavailable("no cell for this tier and class".into()))).0;
    };
    let now = ticket.now();
    let mut reserved = share.counter;
    reserved.used = crate::units::add(share.counter.used, share.others_unspent);
    let (_, charge) = decide(Some(reserved), limits, ticket.cost, ticket.confirmed, now, ticket.alignment);
    if !charge.admitted {
        return charged(ticket, charge);
    }
    reserved.used = limits.request_ceiling().max(reserved.used);
    let (_, charge) = decide(Some(reserved), limits, ticket.cost, ticket.confirmed, now, ticket.alignment);
    if !charge.admitted {
        return charged(ticket, charge);
    }
    // A cell that admits past its limit without a cap never runs out in
    // Redis; reaching here means Redis granted nothing all the same.
    settle(config, ticket.clone(), Err(GiveUp::Unavailable("Redis granted no units".into()))).0
}

/// The call that asks Redis for `need` units more of `key` (0: the next
/// block ahead of need), reporting this Envoy's spending, or (`give`) gives
/// back the units it holds unspent; `None` when the cell is gone (a reload).
#[allow(clippy::too_many_arguments)]
pub fn command(
    config: &Config,
    key: &str,
    limits: &crate::config::Limits,
    share: Option<&LeaseRecord>,
    need: u64,
    give: u64,
    now_ms: i64,
    align: Alignment,
    release_id: Option<&str>,
) -> Option<Command> {
    let (_, settings) = config.counters.lease()?;
    let share = share.copied().unwrap_or_default();
    let args = LeaseArgs {
        holder: holder(config),
        need,
        spent: share.spent,
        spent_window: share.counter.window_start,
        give,
        settings,
        warned: share.counter.warned,
        flags: share.counter.flags,
    };
    Some(Command::lease(
        key.to_string(),
        limits,
        now_ms.div_euclid(1000),
        align,
        &args,
        release_id.filter(|_| give > 0),
    ))
}

/// Takes Redis's `answer` to a lease call sent at `sent_ms` into this
/// Envoy's share of `key`: the units granted by that call are added, the
/// usage shown becomes what Redis knows of the others' spending plus this
/// Envoy's, and the block may be spent until `lease_ms` after the call
/// left. An answer for another window than the share's open one adds
/// nothing (its units stay reserved until that window ends).
#[allow(clippy::too_many_arguments)]
pub fn merge<S: CounterStore + ?Sized>(
    config: &Config,
    key: &str,
    limits: &crate::config::Limits,
    align: Alignment,
    answer: &LeaseAnswer,
    sent_ms: i64,
    store: &S,
    now_ms: i64,
) -> Result<(), GiveUp> {
    let Some((_, settings)) = config.counters.lease() else { return Ok(()) };
    let Some(after) = answer.counter.after else { return Ok(()) };
    let now = now_ms.div_euclid(1000);
    compare_and_swap(store, key, config.counters.cas_attempts, |old| {
        let share = open_share(old.and_then(LeaseRecord::decode), limits, now, align);
        if share.counter.window_start != after.window_start || share.counter.window_code != after.window_code {
            return (None, ());
        }
        let mut next = share;
        next.granted = share.granted.saturating_add(answer.granted_now);
        next.others_unspent = answer.others_unspent;
        // Redis's usage is every holder's spending as reported; this
        // Envoy's own part of it is replaced by its exact count.
        let others_spent = after.used.saturating_sub(answer.spent);
        next.counter.used = crate::units::add(others_spent, share.spent);
        next.counter.warned |= after.warned;
        next.counter.flags |= after.flags;
        let lifetime = sent_ms.saturating_add(i64::try_from(settings.ms).unwrap_or(i64::MAX));
        next.expires_ms = share.expires_ms.max(lifetime);
        next.renewing_until_ms = 0;
        if answer.granted_now > 0 {
            next.block = answer.granted_now;
        }
        (Some(next.encode()), ())
    })
}

/// A share to give back: units held unspent past the block's lifetime
/// (an idle Envoy). Marks them given back in `store` first (no request
/// spends them after that), and answers how many and the share as it was
/// sent, for [`command`]; `None` when there is nothing to give back.
pub fn release<S: CounterStore + ?Sized>(
    config: &Config,
    key: &str,
    store: &S,
    now_ms: i64,
) -> Result<Option<(u64, LeaseRecord)>, GiveUp> {
    let mut out = None;
    compare_and_swap(store, key, config.counters.cas_attempts, |old| {
        let Some(share) = old.and_then(LeaseRecord::decode) else { return (None, ()) };
        let left = share.left();
        if left == 0 || now_ms < share.expires_ms || now_ms >= share.counter.window_end.saturating_mul(1000) {
            return (None, ());
        }
        let mut next = share;
        next.granted = share.spent;
        out = Some((left, next));
        (Some(next.encode()), ())
    })?;
    Ok(out)
}

/// The most units other Envoys may hold unspent while one Envoy refuses a
/// one-unit request, for a limit of `limit` units shared by `envoys`
/// Envoys: a call tops a holder up to one block unspent, two calls of one
/// Envoy may cross (a renewal and a request's), and no block is larger than
/// the fraction of the limit (nor than `lease_max_units`).
pub fn refusal_bound(settings: Lease, limit: u64, envoys: u64) -> u64 {
    let by_fraction = (u128::from(limit) * u128::from(settings.fraction_ppm)).div_ceil(1_000_000);
    let block = u64::try_from(by_fraction).unwrap_or(u64::MAX).max(1);
    let block = settings.max_units.map_or(block, |m| block.min(m));
    block.saturating_mul(2).saturating_mul(envoys.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::engine::{prepare, Prepared};
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::head;

    const NOON_MS: i64 = 1_795_348_800_000;

    fn config(extra: &str) -> Config {
        let doc = format!(
            r#"{{
                "identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
                "classes": [{{"name": "drafts"}}],
                "tiers": {{"free": {{"limits": {{"drafts": {{"hard": 100, "window": "day"}}}}}}}},
                "counters": {{"store": "redis", "redis": {{"cluster": "redis", "mode": "lease"{extra}}}}}
            }}"#
        );
        Config::from_json(doc.as_bytes()).unwrap()
    }

    fn ticket(config: &Config, cost: u64, now_ms: i64) -> Ticket {
        let caller = identify(config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        match prepare(config, &caller, ClassId(0), cost, false, now_ms) {
            Prepared::Charge(t) => t,
            Prepared::Decided(d) => panic!("{d:?}"),
        }
    }

    fn answer(
        config: &Config,
        t: &Ticket,
        granted_now: u64,
        granted: u64,
        spent: u64,
        used: u64,
        others: u64,
    ) -> LeaseAnswer {
        let limits = limits_of(config, t).unwrap();
        let window = limits.window.window_at(t.now(), t.alignment);
        let after = Counter { used, ..Counter::open(window, limits.window.code(), 0) };
        LeaseAnswer {
            counter: crate::redis::Answer { before: None, after: Some(after) },
            granted_now,
            granted,
            spent,
            others_unspent: others,
        }
    }

    #[test]
    fn a_lease_record_round_trips_and_the_table_keeps_it_live() {
        let window = crate::window::Window { start: 1_795_305_600, end: 1_795_392_000 };
        let record = LeaseRecord {
            counter: Counter { used: 42, warned: 1, ..Counter::open(window, 7, 0) },
            granted: 30,
            spent: 12,
            others_unspent: 9,
            expires_ms: NOON_MS + 5_000,
            renewing_until_ms: -3,
            block: u64::MAX,
        };
        let bytes = record.encode();
        assert!(bytes.len() <= MAX_LEASE_BYTES);
        assert_eq!(LeaseRecord::decode(&bytes), Some(record));
        assert_eq!(counter_of(&bytes), Some(record.counter));
        assert_eq!(Counter::decode(&bytes), None, "never read as a counter record");
        // Trailing bytes, truncation and another version are not lease records.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(LeaseRecord::decode(&longer), None);
        assert_eq!(LeaseRecord::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(LeaseRecord::decode(&record.counter.encode()), None);
    }

    #[test]
    fn a_request_needs_redis_until_a_block_is_granted_then_spends_it_here() {
        let config = config("");
        let store = MemoryStore::new();
        let t = ticket(&config, 3, NOON_MS);
        let table = config.counters.table(&store, NOON_MS);
        assert_eq!(admit(&config, &t, &table, false), Admit::Needs { need: 3 });
        merge(
            &config,
            &t.key,
            limits_of(&config, &t).unwrap(),
            t.alignment,
            &answer(&config, &t, 10, 10, 0, 0, 4),
            NOON_MS,
            &table,
            NOON_MS,
        )
        .unwrap();
        let Admit::Decided { decision, renew } = admit(&config, &t, &table, true) else { panic!() };
        assert!(decision.admitted());
        assert!(!renew, "7 of a block of 10 left");
        let share = LeaseRecord::decode(&table.get(&t.key).unwrap().unwrap().0).unwrap();
        assert_eq!((share.granted, share.spent, share.left(), share.others_unspent), (10, 3, 7, 4));
        assert_eq!(share.counter.used, 3, "the others' spending (0) and ours");
        // Two more: 4 left, under half the block: this one asks for the next, once.
        let t2 = ticket(&config, 3, NOON_MS + 10);
        let Admit::Decided { renew, .. } = admit(&config, &t2, &table, false) else { panic!() };
        assert!(renew);
        let t3 = ticket(&config, 1, NOON_MS + 20);
        let Admit::Decided { renew, .. } = admit(&config, &t3, &table, false) else { panic!() };
        assert!(!renew, "a renewal is out");
        // 3 left: a request of 5 needs 2 more; refused when Redis had none.
        let t4 = ticket(&config, 5, NOON_MS + 30);
        assert_eq!(admit(&config, &t4, &table, false), Admit::Needs { need: 2 });
        let Admit::Decided { decision, .. } = admit(&config, &t4, &table, true) else { panic!() };
        assert!(!decision.admitted());
        // A one-unit request still fits.
        let Admit::Decided { decision, .. } = admit(&config, &ticket(&config, 1, NOON_MS + 40), &table, false) else {
            panic!()
        };
        assert!(decision.admitted());
        // A request that costs nothing never asks for a block, even on an empty share.
        let fresh = MemoryStore::new();
        let fresh_table = config.counters.table(&fresh, NOON_MS);
        let Admit::Decided { decision, renew } = admit(&config, &ticket(&config, 0, NOON_MS), &fresh_table, false)
        else {
            panic!()
        };
        assert!(decision.admitted() && !renew);
    }

    #[test]
    fn a_block_past_its_lifetime_is_not_spent_without_redis_and_idle_units_go_back_once() {
        let config = config(r#", "lease_ms": 1000"#);
        let store = MemoryStore::new();
        let t = ticket(&config, 1, NOON_MS);
        let table = config.counters.table(&store, NOON_MS);
        let limits = limits_of(&config, &t).unwrap();
        merge(&config, &t.key, limits, t.alignment, &answer(&config, &t, 10, 10, 0, 0, 0), NOON_MS, &table, NOON_MS)
            .unwrap();
        assert!(matches!(admit(&config, &t, &table, false), Admit::Decided { .. }));
        assert_eq!(release(&config, &t.key, &table, NOON_MS + 999).unwrap(), None, "still within its lifetime");
        let late = ticket(&config, 1, NOON_MS + 1000);
        assert_eq!(admit(&config, &late, &table, false), Admit::Needs { need: 0 });
        let (give, share) = release(&config, &t.key, &table, NOON_MS + 1000).unwrap().unwrap();
        assert_eq!((give, share.granted, share.spent), (9, 1, 1));
        assert_eq!(release(&config, &t.key, &table, NOON_MS + 2000).unwrap(), None, "given back once");
        // A grant that crossed the release still counts: deltas, never totals.
        merge(
            &config,
            &t.key,
            limits,
            t.alignment,
            &answer(&config, &t, 4, 5, 1, 1, 0),
            NOON_MS + 1000,
            &table,
            NOON_MS + 1000,
        )
        .unwrap();
        let share = LeaseRecord::decode(&table.get(&t.key).unwrap().unwrap().0).unwrap();
        assert_eq!(share.left(), 4);
    }

    #[test]
    fn an_answer_for_another_window_adds_nothing() {
        let config = config("");
        let store = MemoryStore::new();
        let t = ticket(&config, 1, NOON_MS);
        let table = config.counters.table(&store, NOON_MS);
        let limits = limits_of(&config, &t).unwrap();
        let mut yesterday = answer(&config, &t, 10, 10, 0, 0, 0);
        if let Some(c) = &mut yesterday.counter.after {
            c.window_start -= 86_400;
            c.window_end -= 86_400;
        }
        merge(&config, &t.key, limits, t.alignment, &yesterday, NOON_MS, &table, NOON_MS).unwrap();
        assert_eq!(admit(&config, &t, &table, false), Admit::Needs { need: 1 });
    }

    #[test]
    fn the_refusal_bound_is_two_blocks_per_other_envoy() {
        let settings = Lease { ms: 5000, fraction_ppm: 100_000, max_units: None };
        assert_eq!(refusal_bound(settings, 200, 3), 2 * 20 * 2);
        assert_eq!(refusal_bound(settings, 200, 1), 0);
        assert_eq!(refusal_bound(Lease { max_units: Some(5), ..settings }, 200, 3), 20);
        assert_eq!(refusal_bound(Lease { fraction_ppm: 1, ..settings }, 200, 2), 2);
    }

    #[test]
    fn lease_settings_are_checked_with_their_paths() {
        let bad = |extra: &str, mode: &str| {
            let doc = format!(
                r#"{{"identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
                    "classes": [{{"name": "drafts"}}],
                    "tiers": {{"free": {{"limits": {{"drafts": {{"hard": 100, "window": "day"}}}}}}}},
                    "counters": {{"store": "redis", "redis": {{"cluster": "redis", "mode": "{mode}"{extra}}}}}}}"#
            );
            Config::from_json(doc.as_bytes()).unwrap_err().to_string()
        };
        assert!(bad(r#", "lease_ms": 50"#, "lease").contains("counters.redis.lease_ms"));
        assert!(bad(r#", "lease_fraction": 0"#, "lease").contains("counters.redis.lease_fraction"));
        assert!(bad(r#", "lease_fraction": 1.5"#, "lease").contains("counters.redis.lease_fraction"));
        assert!(bad(r#", "lease_max_units": 0"#, "lease").contains("counters.redis.lease_max_units"));
        assert!(bad(r#", "lease_ms": 1000"#, "exact").contains("only read with \"mode\": \"lease\""));
        assert!(bad(r#", "sync_ms": 100"#, "lease").contains("counters.redis.sync_ms"));
        assert!(bad("", "leases").contains("\"lease\""));
        let c = config(r#", "lease_fraction": 0.25, "lease_max_units": 7"#);
        assert_eq!(
            c.counters.lease().map(|(_, l)| (l.ms, l.fraction_ppm, l.max_units)),
            Some((5000, 250_000, Some(7)))
        );
        // Stacked limits and grants need the exact mode.
        let stacked = r#"{"identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-ws"}], "default_tier": "free"},
            "classes": [{"name": "drafts"}],
            "tiers": {"free": {"limits": {"drafts": [{"scope": "workspace", "hard": 100, "window": "day"}, {"hard": 10, "window": "day"}]}}},
            "counters": {"store": "redis", "redis": {"cluster": "redis", "mode": "lease"}}}"#;
        let e = Config::from_json(stacked.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("tiers.free.limits.drafts") && e.contains("\"lease\""), "{e}");
    }

    #[test]
    fn every_envoy_process_has_its_own_holder_name() {
        let mut a = config("");
        let mut b = config("");
        a.counters.seed = crate::table::Seed(1, 2);
        b.counters.seed = crate::table::Seed(1, 3);
        assert_ne!(holder(&a), holder(&b));
        assert_eq!(holder(&a), holder(&a.clone()));
        assert!(holder(&a).bytes().all(|c| c.is_ascii_hexdigit()) && holder(&a).len() == 16);
    }
}
