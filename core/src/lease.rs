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
    Decided { decision: Decision, renew: bool },
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
            out = Some(if last_try { Admit::Decided { decision: refusal(config, ticket, &share), renew: false } } else { Admit::Needs { need } });
            return (None, ());
        }
        if ticket.cost > 0 && ticket.now_ms >= share.expires_ms {
            // Units held, but past the block's lifetime: only Redis may say they still are.
            out = Some(if last_try {
                Admit::Decided { decision: refusal(config, ticket, &share), renew: false }
            } else {
                Admit::Needs { need: 0 }
            });
            return (None, ());
        }
        let (written, charge) =
            decide(Some(share.counter), limits, ticket.cost, ticket.confirmed, now, ticket.alignment);
        let decision = charged(ticket, charge);
        if !charge.admitted {
            out = Some(Admit::Decided { decision, renew: false });
            return (None, ());
        }
        let mut next = share;
        next.counter = written.unwrap_or(share.counter);
        next.spent = share.spent.saturating_add(charge.cost);
        let renew = wants_renewal(&next, settings, ticket.now_ms);
        if renew {
            next.renewing_until_ms = ticket.now_ms.saturating_add(i64::try_from(redis.timeout_ms).unwrap_or(0));
        }
        out = Some(Admit::Decided { decision, renew });
        (Some(next.encode()), ())
    });
    match (result, out) {
        (Ok(()), Some(admit)) => admit,
        (Err(reason), _) => Admit::Decided { decision: settle(config, ticket.clone(), Err(reason)).0, renew: false },
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
        Some(share) if share.counter.window_start == counter.window_start && share.counter.window_code == counter.window_code => {
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
    Admit::Decided { decision, renew: false }
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
    Some(Command::lease(key.to_string(), limits, now_ms.div_euclid(1000), align, &args, release_id.filter(|_| give > 0)))
}

/// Takes Redis's `answer` to a lease call sent at `sent_ms` into this
/// Envoy's share of `key`: the units granted by that call are added, the
/// usage shown becomes what Redis knows of the others' spending plus this
/// Envoy's, and the block may be spent until `lease_ms` after the call
/// left. An answer for another window than the share's open one adds
/// nothing (its units stay reserved until that window ends).
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
