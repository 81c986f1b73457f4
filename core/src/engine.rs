//! Charging a classified, identified request: the decision value everything
//! the caller sees (headers, bodies, later metrics) is built from.

use crate::config::{Cell, Class, ClassId, Config, Cost, FailPolicy, Limits, Scope, TierId};
use crate::counter::Counter;
use crate::decide::{decide, Charge, Served, Usage};
use crate::identity::{scope_key, Caller, ScopeKind};
use crate::stack::{charge_all, Part};
use crate::store::{compare_and_swap, CounterStore, GiveUp};
use crate::window::Alignment;

/// The verdict on one request in one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: ClassId,
    pub tier: TierId,
    /// The binding limit's scope (see [`binding`]).
    pub scope: ScopeKind,
    /// The binding limit's counter, for corrections after the response.
    pub key: Option<String>,
    /// The binding limit: its index in the cell's stack (0 for a one-limit
    /// cell). The outcome, the headers and the copy are its.
    pub limit: usize,
    /// The stack's other limits (none for a one-limit cell), narrowest
    /// first: charged too when the request was admitted.
    pub others: Vec<Held>,
    /// When the decision was made, in Unix milliseconds.
    pub now_ms: i64,
    /// Units the request asked for, whatever the outcome (what it would
    /// cost where it is not included, say).
    pub requested: u64,
    pub outcome: Outcome,
}

/// Another limit of a stacked cell, as this request left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its index in the cell's stack.
    pub limit: usize,
    pub scope: ScopeKind,
    pub key: String,
    /// Its counter after the request (before it, when refused).
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cell was applied: admitted or refused at the hard limit.
    Charged(Charge),
    /// The class is not part of the caller's plan.
    NotIncluded,
    /// The cell pools by workspace, the caller names none, and
    /// `identity.missing_workspace` refuses them: no counter is charged.
    WorkspaceRequired,
    /// The counter store gave up; the fail policy decides.
    Unavailable { policy: FailPolicy, reason: GiveUp },
}

/// Something worth reporting once: a log line, a metric, an analytics event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A warning level was crossed for the first time in this window.
    Warned {
        /// Index into the cell's warning levels (0 = first warning).
        level: usize,
        /// The usage at which that level starts.
        at: u64,
    },
    /// Refused at the hard limit.
    Blocked,
    /// Refused until the caller confirms a costly request.
    ConfirmationRequired,
    /// Refused because the request could never fit the cell (413).
    TooLarge,
    /// Flagged as far ahead of pace, for the first time in this window.
    PaceAhead,
    /// Asked for a class outside the plan.
    NotIncluded,
    /// Asked for a pooled class without naming a workspace.
    WorkspaceRequired,
    /// The counter store gave up (the fail policy applied).
    StoreUnavailable,
    /// The counter was new and the table had no room for it (the fail policy applied).
    StoreFull,
    /// The upstream answered busy (see `busy.rs`): the charge went back and
    /// the caller got the filter's busy answer. Reported from the response,
    /// never by [`Decision::events`].
    UpstreamBusy,
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Warned { .. } => "warned",
            Event::Blocked => "blocked",
            Event::ConfirmationRequired => "confirmation_required",
            Event::TooLarge => "too_large",
            Event::PaceAhead => "pace_ahead",
            Event::NotIncluded => "not_included",
            Event::WorkspaceRequired => "workspace_required",
            Event::StoreUnavailable => "store_unavailable",
            Event::StoreFull => "store_full",
            Event::UpstreamBusy => "upstream_busy",
        }
    }
}

impl Decision {
    /// The events this decision produced.
    pub fn events(&self, config: &Config) -> Vec<Event> {
        let mut out = Vec::new();
        match &self.outcome {
            Outcome::Charged(c) => {
                if let Some(level) = c.crossed {
                    let at = limit_of(config, self).and_then(|l| l.warn_levels.get(level).copied()).unwrap_or(0);
                    out.push(Event::Warned { level, at });
                }
                if c.pace_flagged {
                    out.push(Event::PaceAhead);
                }
                if c.needs_confirmation {
                    out.push(Event::ConfirmationRequired);
                } else if c.too_large {
                    out.push(Event::TooLarge);
                } else if !c.admitted {
                    out.push(Event::Blocked);
                }
            }
            Outcome::NotIncluded => out.push(Event::NotIncluded),
            Outcome::WorkspaceRequired => out.push(Event::WorkspaceRequired),
            Outcome::Unavailable { reason: GiveUp::Full, .. } => out.push(Event::StoreFull),
            Outcome::Unavailable { .. } => out.push(Event::StoreUnavailable),
        }
        out
    }

    /// Whether the request goes on to the upstream.
    pub fn admitted(&self) -> bool {
        match &self.outcome {
            Outcome::Charged(c) => c.admitted,
            Outcome::NotIncluded | Outcome::WorkspaceRequired => false,
            Outcome::Unavailable { policy, .. } => *policy == FailPolicy::Open,
        }
    }

    /// Every counter the request was charged to (the binding one first):
    /// its key, its limit's index and its window's start.
    pub fn charged(&self) -> Vec<(&str, usize, i64)> {
        let Outcome::Charged(c) = &self.outcome else { return Vec::new() };
        let Some(key) = &self.key else { return Vec::new() };
        if !c.admitted {
            return Vec::new();
        }
        let mut out = vec![(key.as_str(), self.limit, c.usage.window.start)];
        out.extend(self.others.iter().map(|h| (h.key.as_str(), h.limit, h.usage.window.start)));
        out
    }

    /// Every limit of the cell as this request left it, in the order the cell
    /// lists them: its index and usage (the binding one from the outcome).
    pub fn limits(&self) -> Vec<(usize, Usage)> {
        let Outcome::Charged(c) = &self.outcome else { return Vec::new() };
        let mut out: Vec<(usize, Usage)> = self.others.iter().map(|h| (h.limit, h.usage)).collect();
        out.push((self.limit, c.usage));
        out.sort_by_key(|(i, _)| *i);
        out
    }

    /// This decision as if its charge had been given back (an upstream's
    /// busy answer): nothing charged, not served, every limit's usage as it
    /// stood before the request. A refused decision is its own.
    pub fn given_back(&self, config: &Config) -> Decision {
        let mut back = self.clone();
        let Outcome::Charged(c) = &mut back.outcome else { return back };
        if !c.admitted {
            return back;
        }
        let stack = config.cell(self.tier, self.class).map_or(&[][..], Cell::limits);
        let cost = c.cost;
        if let Some(l) = stack.get(self.limit) {
            c.usage = crate::decide::given_back(&c.usage, l, cost);
        }
        for h in &mut back.others {
            if let Some(l) = stack.get(h.limit) {
                h.usage = crate::decide::given_back(&h.usage, l, cost);
            }
        }
        let Outcome::Charged(c) = &mut back.outcome else { return back };
        c.cost = 0;
        c.from_grant = 0;
        c.served = Served::Normally;
        c.crossed = None;
        c.pace_flagged = false;
        back
    }

    /// Whole seconds until the counter's window resets (rounded up).
    pub fn reset_after(&self) -> Option<i64> {
        match &self.outcome {
            Outcome::Charged(c) => Some(seconds_until(c.usage.window.end, self.now_ms)),
            _ => None,
        }
    }
}

/// Whole seconds from `now_ms` until `unix_seconds`, rounded up, never negative.
pub fn seconds_until(unix_seconds: i64, now_ms: i64) -> i64 {
    let ms = unix_seconds.saturating_mul(1000).saturating_sub(now_ms);
    ms.max(0).saturating_add(999) / 1000
}

/// The units one request of `class` costs (see `cost.rs`; in money,
/// micro-units: a unit rule times its `unit_price`, or the reservation of
/// a `price` class), at most [`crate::units::MAX_UNITS`]: the cell is not
/// known yet, so its own ceiling applies later, in [`decide`].
pub fn request_cost(config: &Config, class: ClassId, body: crate::cost::Body) -> u64 {
    let Some(c) = config.class(class) else { return 1 };
    let cost = match c.cost {
        Cost::Priced { default_max_tokens, .. } => reservation(config, body, default_max_tokens),
        _ => crate::cost::priced_units(c, crate::cost::request_cost(c, body)),
    };
    crate::units::bounded(cost.max(1))
}

/// What a `price` class reserves at admission: the prompt (estimated as
/// `tokens` estimates it) at the model's input price and the completion
/// budget at its output price ([`crate::config::ModelPrice::estimate`]).
/// The model is the body's `model`; one the table does not price (and no
/// `default` prices), a `model` that is not a string, or no body at all
/// is reserved at the table's dearest price: never cheaper than what the
/// upstream could serve.
pub fn reservation(config: &Config, body: crate::cost::Body, default_max_tokens: u64) -> u64 {
    let (prompt, budget) = body.json.map_or((0, default_max_tokens), |j| {
        crate::cost::estimate_token_parts(j, default_max_tokens, body.prompt_chars)
    });
    price_for(config, body.json).map_or(crate::units::MAX_UNITS, |p| p.estimate(prompt, budget))
}

/// The price a request of a `price` class is reserved and settled at: its
/// body's `model` in the table; the table's dearest for a model nobody
/// prices, a `model` that is not a string, or no body.
pub fn price_for(config: &Config, json: Option<&serde_json::Value>) -> Option<crate::config::ModelPrice> {
    let prices = config.prices.as_ref()?;
    let named = match json.and_then(|j| j.get("model")) {
        None => prices.price_of(None),
        Some(serde_json::Value::String(m)) => prices.price_of(Some(m)),
        Some(_) => None,
    };
    named.or_else(|| prices.dearest()).copied()
}

/// The most units a correction after the response may add to an admitted
/// request: what is left of its cell's [`Limits::request_ceiling`] once its
/// charge is counted (0 for a request a grant let past the ceiling, or one
/// that was not charged). Pass it to [`correct`] or `redis::Command::adjust`.
pub fn correction_room(config: &Config, d: &Decision) -> u64 {
    correction_room_of(config, d, d.limit)
}

/// [`correction_room`] on the counter of the cell's limit `limit`.
pub fn correction_room_of(config: &Config, d: &Decision, limit: usize) -> u64 {
    let Outcome::Charged(c) = &d.outcome else { return 0 };
    match config.cell(d.tier, d.class).and_then(|cell| cell.limits().get(limit)) {
        Some(l) if c.admitted => l.request_ceiling().saturating_sub(c.cost),
        _ => 0,
    }
}

/// The name of a limit in the RateLimit fields and refusal bodies: the
/// class's name for a one-limit cell, else `<class>.<scope>.<window>`
/// ("drafts.workspace.day", "chats.user.5h"), unique in the cell.
pub fn policy_name(config: &Config, tier: TierId, class: ClassId, limit: usize) -> String {
    let mut name = String::new();
    push_policy_name(&mut name, config, tier, class, limit);
    name
}

/// Appends [`policy_name`] to `out`.
pub fn push_policy_name(out: &mut String, config: &Config, tier: TierId, class: ClassId, limit: usize) {
    let Some(class_def) = config.class(class) else { return };
    out.push_str(&class_def.name);
    if let Some(stack) = config.cell(tier, class).map(Cell::limits).filter(|stack| stack.len() > 1) {
        if let Some(l) = stack.get(limit) {
            out.push('.');
            out.push_str(l.scope.as_str());
            out.push('.');
            out.push_str(&l.window_name);
        }
    }
}

/// The binding limit of `d` (see [`binding`]).
pub fn limit_of<'c>(config: &'c Config, d: &Decision) -> Option<&'c Limits> {
    config.cell(d.tier, d.class)?.limits().get(d.limit)
}

/// The key of the counter of (`kind`, `id`) for `class` in the store requests
/// are charged to: Redis in its exact mode, else this Envoy's shared data.
pub fn store_key(config: &Config, class: &Class, kind: ScopeKind, id: &str) -> String {
    match config.counters.exact_redis() {
        None => scope_key(class, kind, id),
        Some(redis) => crate::redis::key(&redis.key_prefix, &class.name, kind, id),
    }
}

/// The counter of one limit of a stacked cell. Its key names the limit's
/// window and scope and the widest scope's id (`tag`): in Redis that is the
/// hash tag, so one script call reaches every counter of the request in one
/// Redis Cluster slot. The caller's own id comes last (after a `\u{1f}`,
/// which no id holds) when the limit counts a narrower scope than the tag:
/// a member inside the team's pool. Class names hold no `@`, no id a
/// `\u{1f}`, so no two (tag, id) pairs share a key.
pub fn stacked_key(
    config: &Config,
    class: &Class,
    limits: &Limits,
    (kind, id): (ScopeKind, &str),
    (tag_kind, tag): (ScopeKind, &str),
) -> String {
    let limit = format!("@{}.{}", limits.window.code(), limits.scope.as_str().chars().next().unwrap_or('u'));
    let mut key = match config.counters.exact_redis() {
        None => format!("{}{limit}:{}:{tag}", class.name, tag_kind.letter()),
        Some(redis) => format!("{}{limit}", crate::redis::key(&redis.key_prefix, &class.name, tag_kind, tag)),
    };
    if (kind, id) != (tag_kind, tag) {
        key.push('\u{1f}');
        key.push(kind.letter());
        key.push(':');
        key.push_str(id);
    }
    key
}

/// The counters of `caller` in a cell: each limit's index, scope and key,
/// narrowest first (the order they are charged in); `Err` with the pooled
/// scope the caller cannot name (refused by `identity.missing_workspace`).
pub fn counters_of(
    config: &Config,
    caller: &Caller,
    class: &Class,
    stack: &[Limits],
) -> Result<Vec<(usize, ScopeKind, String)>, ScopeKind> {
    let missing = config.identity.missing_workspace;
    let mut scoped = Vec::with_capacity(stack.len());
    for (i, l) in stack.iter().enumerate() {
        match caller.scope_id(l.scope, missing) {
            Some((kind, id)) => scoped.push((i, kind, id)),
            None if l.scope == Scope::Organisation => return Err(ScopeKind::Organisation),
            None => return Err(ScopeKind::Workspace),
        }
    }
    scoped.sort_by_key(|(i, _, _)| stack.get(*i).map(|l| l.scope));
    if let [(i, kind, id)] = scoped.as_slice() {
        return Ok(vec![(*i, *kind, store_key(config, class, *kind, id))]);
    }
    // The widest pool the caller is counted in names the tag: a pooled limit
    // that charges the caller alone (no organisation named, under
    // `missing_workspace: user`) is no wider than the workspace they do name.
    let breadth = |kind: ScopeKind| match kind {
        ScopeKind::Organisation => 2,
        ScopeKind::Workspace => 1,
        ScopeKind::User | ScopeKind::Anonymous => 0,
    };
    let widest = scoped
        .iter()
        .max_by_key(|(_, kind, _)| breadth(*kind))
        .map(|(_, kind, id)| (*kind, *id))
        .unwrap_or((caller.own_scope(), &caller.id));
    Ok(scoped
        .iter()
        .filter_map(|(i, kind, id)| {
            let l = stack.get(*i)?;
            Some((*i, *kind, stacked_key(config, class, l, (*kind, id), widest)))
        })
        .collect())
}

/// The keys of every counter `caller`'s plan has (what the usage endpoint
/// reads): none for a pooled cell the caller may not use without a workspace.
pub fn store_keys(config: &Config, caller: &Caller) -> Vec<String> {
    let Some(tier) = config.tier(caller.tier) else { return Vec::new() };
    let mut keys: Vec<String> = config
        .classes
        .iter()
        .zip(&tier.cells)
        .filter_map(|(class, cell)| counters_of(config, caller, class, cell.limits()).ok())
        .flatten()
        .map(|(_, _, key)| key)
        .collect();
    keys.dedup();
    keys
}

/// Which limit of a stack binds, given each limit's charge (in the order of
/// `charges`, narrowest first): an index into `charges`.
///
/// 1. A limit that refused the request binds (the narrowest, if several).
/// 2. Else a limit that changes how the request is served (degrade,
///    overage, queue), one past its hard limit before one past its soft.
/// 3. Else the limit with the least room left relative to its hard limit
///    (the narrowest on a tie): the one the caller will meet first.
pub fn binding(charges: &[Charge]) -> usize {
    binding_by(charges.iter().map(|c| (c.admitted, c.served, c.usage)))
}

/// [`binding`] over each limit's (admitted, how served, usage).
pub fn binding_by(items: impl IntoIterator<Item = (bool, Served, Usage)>) -> usize {
    let mut best: Option<(usize, (bool, bool, bool), Usage)> = None;
    for (i, (admitted, served, usage)) in items.into_iter().enumerate() {
        let changed = served != Served::Normally;
        let past_hard = usage.plan_used > usage.hard || usage.over > 0;
        let rank = (!admitted, changed, changed && past_hard);
        let wins = match &best {
            None => true,
            Some((_, r, b)) => {
                // Less room relative to the limit: remaining / hard smaller.
                let tighter = u128::from(usage.remaining()) * u128::from(b.hard)
                    < u128::from(b.remaining()) * u128::from(usage.hard);
                // A refusal binds at the first (narrowest) one.
                rank > *r || (rank == *r && !rank.0 && tighter)
            }
        };
        if wins {
            best = Some((i, rank, usage));
        }
    }
    best.map_or(0, |(i, _, _)| i)
}

/// A charge the store still has to make: a remote store answers it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub class: ClassId,
    pub tier: TierId,
    pub scope: ScopeKind,
    /// The counter in the configured store.
    pub key: String,
    /// A stacked cell's counters, narrowest first: each limit's index,
    /// scope and key (the first is `scope` and `key`); empty for one limit.
    pub stack: Vec<(usize, ScopeKind, String)>,
    /// Where a workspace admin's cap for this member would be (a stack with
    /// an `admin_cap` limit, and a caller in a workspace), in the store the
    /// ticket is charged to (see [`crate::member_cap::store_key`]).
    pub member_cap: Option<String>,
    pub now_ms: i64,
    pub cost: u64,
    pub confirmed: bool,
    pub alignment: Alignment,
}

impl Ticket {
    /// Unix seconds, as windows count them.
    pub fn now(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }
}

/// The first half of a charge: either decided without a counter, or a
/// ticket for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    Decided(Decision),
    Charge(Ticket),
}

/// Finds the counter `cost` units of `class` are charged to.
pub fn prepare(config: &Config, caller: &Caller, class: ClassId, cost: u64, confirmed: bool, now_ms: i64) -> Prepared {
    let decision = |scope, outcome| Decision {
        class,
        tier: caller.tier,
        scope,
        key: None,
        limit: 0,
        others: Vec::new(),
        now_ms,
        requested: cost,
        outcome,
    };
    let user_scope = caller.own_scope();
    let (Some(cell), Some(class_def)) = (config.cell(caller.tier, class), config.class(class)) else {
        let reason = GiveUp::Unavailable("no cell for this tier and class".into());
        return Prepared::Decided(decision(
            user_scope,
            Outcome::Unavailable { policy: config.counters.on_error, reason },
        ));
    };
    let stack = match cell {
        Cell::NotIncluded => return Prepared::Decided(decision(user_scope, Outcome::NotIncluded)),
        Cell::Limited(stack) => stack,
    };
    let mut counters = match counters_of(config, caller, class_def, stack) {
        Ok(counters) => counters,
        // Pooled without a workspace: the refusal names the pool it needs.
        Err(pool) => {
            let limit = stack
                .iter()
                .position(|l| l.scope.pooled() && caller.scope(l.scope, config.identity.missing_workspace).is_none());
            return Prepared::Decided(Decision {
                limit: limit.unwrap_or(0),
                ..decision(pool, Outcome::WorkspaceRequired)
            });
        }
    };
    let Some((_, scope, key)) = counters.first().cloned() else {
        let reason = GiveUp::Unavailable("a cell without limits".into());
        return Prepared::Decided(decision(
            user_scope,
            Outcome::Unavailable { policy: config.counters.on_error, reason },
        ));
    };
    if counters.len() == 1 {
        counters.clear();
    }
    let member_cap = crate::member_cap::key_of(config, caller, class_def, stack);
    Prepared::Charge(Ticket {
        class,
        tier: caller.tier,
        scope,
        key,
        stack: counters,
        member_cap,
        now_ms,
        cost,
        confirmed,
        alignment: caller.alignment,
    })
}

/// The limits a one-limit ticket is charged against (its first, for a stack).
pub fn limits_of<'c>(config: &'c Config, ticket: &Ticket) -> Option<&'c Limits> {
    let first = ticket.stack.first().map_or(0, |(i, _, _)| *i);
    config.cell(ticket.tier, ticket.class)?.limits().get(first)
}

/// The second half: the decision on the counter as the store holds it
/// (`Err`: the store gave up), and the counter to write.
pub fn settle(config: &Config, ticket: Ticket, stored: Result<Option<Counter>, GiveUp>) -> (Decision, Option<Counter>) {
    let outcome = |o| Decision {
        class: ticket.class,
        tier: ticket.tier,
        scope: ticket.scope,
        key: Some(ticket.key.clone()),
        limit: ticket.stack.first().map_or(0, |(i, _, _)| *i),
        others: Vec::new(),
        now_ms: ticket.now_ms,
        requested: ticket.cost,
        outcome: o,
    };
    let policy = config.counters.on_error;
    let Some(limits) = limits_of(config, &ticket) else {
        let reason = GiveUp::Unavailable("no cell for this tier and class".into());
        return (outcome(Outcome::Unavailable { policy, reason }), None);
    };
    match stored {
        Err(reason) => (outcome(Outcome::Unavailable { policy, reason }), None),
        Ok(old) => {
            let (write, charge) = decide(old, limits, ticket.cost, ticket.confirmed, ticket.now(), ticket.alignment);
            (outcome(Outcome::Charged(charge)), write)
        }
    }
}

/// Charges `cost` units of `class` to `caller` at `now_ms`, exactly once,
/// whatever other workers do at the same time. `confirmed`: the caller sent
/// the confirmation header for a costly request.
pub fn charge<S: CounterStore + ?Sized>(
    config: &Config,
    caller: &Caller,
    class: ClassId,
    cost: u64,
    confirmed: bool,
    now_ms: i64,
    store: &S,
) -> Decision {
    let ticket = match prepare(config, caller, class, cost, confirmed, now_ms) {
        Prepared::Decided(d) => return d,
        Prepared::Charge(t) => t,
    };
    if !ticket.stack.is_empty() {
        return charge_stack(config, ticket, store);
    }
    let mut decided = None;
    let result = compare_and_swap(store, &ticket.key, config.counters.cas_attempts, |old| {
        let (decision, write) = settle(config, ticket.clone(), Ok(old.and_then(Counter::decode)));
        decided = Some(decision);
        (write.map(|c| c.encode().to_vec()), ())
    });
    match (result, decided) {
        (Ok(()), Some(decision)) => decision,
        (Err(reason), _) => settle(config, ticket, Err(reason)).0,
        (Ok(()), None) => settle(config, ticket, Err(GiveUp::Unavailable("the store ran no attempt".into()))).0,
    }
}

/// Charges a stacked cell's counters in this store (see `stack.rs`), and
/// names the binding limit.
fn charge_stack<S: CounterStore + ?Sized>(config: &Config, ticket: Ticket, store: &S) -> Decision {
    let policy = config.counters.on_error;
    let stack = config.cell(ticket.tier, ticket.class).map_or(&[][..], Cell::limits);
    let cap = match ticket.member_cap.as_deref().map(|key| crate::member_cap::read(store, key)).transpose() {
        Ok(cap) => cap.flatten(),
        Err(reason) => {
            let limit = ticket.stack.first().map_or(0, |(i, _, _)| *i);
            let outcome = Outcome::Unavailable { policy, reason };
            return Decision {
                class: ticket.class,
                tier: ticket.tier,
                scope: ticket.scope,
                key: Some(ticket.key),
                limit,
                others: Vec::new(),
                now_ms: ticket.now_ms,
                requested: ticket.cost,
                outcome,
            };
        }
    };
    let stack = crate::member_cap::apply(stack, cap);
    let parts: Vec<Part<'_>> =
        ticket.stack.iter().filter_map(|(i, _, key)| Some(Part { key, limits: stack.get(*i)? })).collect();
    let stacked = charge_all(config, &parts, ticket.cost, ticket.confirmed, ticket.now_ms, ticket.alignment, store);
    let mut charges = Vec::with_capacity(parts.len());
    for result in &stacked.charges {
        match result {
            Ok(c) => charges.push(*c),
            Err(reason) => {
                let (i, scope, key) = ticket.stack.get(charges.len()).cloned().unwrap_or((0, ticket.scope, ticket.key));
                let outcome = Outcome::Unavailable { policy, reason: reason.clone() };
                return Decision {
                    class: ticket.class,
                    tier: ticket.tier,
                    scope,
                    key: Some(key),
                    limit: i,
                    others: Vec::new(),
                    now_ms: ticket.now_ms,
                    requested: ticket.cost,
                    outcome,
                };
            }
        }
    }
    let now = ticket.now_ms.div_euclid(1000);
    // On a refusal the counters before the refusing one were given back and
    // those after it not tried: each is reported as it stands.
    let usages: Vec<Usage> = parts
        .iter()
        .enumerate()
        .map(|(n, part)| match charges.get(n) {
            Some(c) if stacked.admitted => c.usage,
            _ => {
                let old = store.get(part.key).ok().flatten().and_then(|(bytes, _)| Counter::decode(&bytes));
                crate::decide::view(old, part.limits, now, ticket.alignment)
            }
        })
        .collect();
    decision_of_stack(ticket, &charges, &usages)
}

/// The decision on a stack from each counter's charge (up to the one that
/// refused) and usage (all of them).
pub fn decision_of_stack(ticket: Ticket, charges: &[Charge], usages: &[Usage]) -> Decision {
    let bound = binding(charges);
    let mut others = Vec::with_capacity(ticket.stack.len());
    let mut binding_part = None;
    for (n, (i, scope, key)) in ticket.stack.into_iter().enumerate() {
        if n == bound {
            binding_part = Some((i, scope, key));
        } else if let Some(usage) = usages.get(n) {
            others.push(Held { limit: i, scope, key, usage: *usage });
        }
    }
    let (limit, scope, key) = binding_part.unwrap_or((0, ticket.scope, ticket.key));
    let outcome = match charges.get(bound) {
        Some(c) => Outcome::Charged(*c),
        None => Outcome::Unavailable {
            policy: FailPolicy::Closed,
            reason: GiveUp::Unavailable("a stack without charges".into()),
        },
    };
    Decision {
        class: ticket.class,
        tier: ticket.tier,
        scope,
        key: Some(key),
        limit,
        others,
        now_ms: ticket.now_ms,
        requested: ticket.cost,
        outcome,
    }
}

/// Corrects a charge after the response (token usage, refunds): `delta`
/// units on the counter at `key`, if its window is still the one starting at
/// `window_start`; a positive delta adds at most `most` units (see
/// [`correction_room`]).
pub fn correct<S: CounterStore + ?Sized>(
    config: &Config,
    key: &str,
    window_start: i64,
    delta: i64,
    most: u64,
    store: &S,
) -> Result<(), GiveUp> {
    compare_and_swap(store, key, config.counters.cas_attempts, |old| {
        let next = crate::decide::adjust(old.and_then(Counter::decode), window_start, delta, most);
        (next.map(|c| c.encode().to_vec()), ())
    })
}

/// Adds `units` of grant to a counter; returns the new grant balance.
pub fn grant<S: CounterStore + ?Sized>(config: &Config, key: &str, units: u64, store: &S) -> Result<u64, GiveUp> {
    compare_and_swap(store, key, config.counters.cas_attempts, |old| {
        let next = crate::decide::add_grant(old.and_then(Counter::decode), units);
        (Some(next.encode().to_vec()), next.grant)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ClassMetric;
    use crate::identity::identify;
    use crate::negotiate::BodyFormat;
    use crate::reply::{respond, Action};
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::{demo_config, head};

    const NOON_MS: i64 = 1_795_348_800_000;

    fn caller(config: &Config, headers: &[(&str, &str)]) -> Caller {
        identify(config, &head(headers), &NoProperties).unwrap()
    }

    fn class(config: &Config, name: &str) -> ClassId {
        ClassId(config.classes.iter().position(|c| c.name == name).unwrap())
    }

    #[test]
    fn per_user_counters_are_separate_and_per_class() {
        let config = demo_config();
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let summaries = class(&config, "summaries");
        let alice = caller(&config, &[("x-user-id", "alice")]);
        let bob = caller(&config, &[("x-user-id", "bob")]);
        for _ in 0..10 {
            assert!(charge(&config, &alice, drafts, 1, false, NOON_MS, &store).admitted());
        }
        assert!(!charge(&config, &alice, drafts, 1, false, NOON_MS, &store).admitted());
        assert!(charge(&config, &bob, drafts, 1, false, NOON_MS, &store).admitted());
        assert!(charge(&config, &alice, summaries, 1, false, NOON_MS, &store).admitted());
    }

    #[test]
    fn workspace_cells_pool_the_team() {
        let config = demo_config();
        let store = MemoryStore::new();
        let research = class(&config, "deep_research");
        let a = caller(&config, &[("x-user-id", "a"), ("x-workspace-id", "acme"), ("x-plan", "team")]);
        let b = caller(&config, &[("x-user-id", "b"), ("x-workspace-id", "acme"), ("x-plan", "team")]);
        for i in 0..10 {
            let who = if i % 2 == 0 { &a } else { &b };
            assert!(charge(&config, who, research, 1, false, NOON_MS, &store).admitted());
        }
        let d = charge(&config, &b, research, 1, false, NOON_MS, &store);
        assert!(!d.admitted());
        assert_eq!(d.scope, ScopeKind::Workspace);
    }

    #[test]
    fn a_pooled_class_without_a_workspace_is_refused_by_default() {
        let config = demo_config();
        let store = MemoryStore::new();
        let research = class(&config, "deep_research");
        let solo = caller(&config, &[("x-user-id", "solo"), ("x-plan", "team")]);
        let d = charge(&config, &solo, research, 1, false, NOON_MS, &store);
        assert_eq!((&d.outcome, d.scope, &d.key), (&Outcome::WorkspaceRequired, ScopeKind::Workspace, &None));
        assert!(!d.admitted());
        assert_eq!(d.reset_after(), None);
        assert_eq!(d.events(&config), vec![Event::WorkspaceRequired]);
        assert!(store.is_empty());
        // The same caller's per-user cells are charged as usual.
        assert!(charge(&config, &solo, class(&config, "summaries"), 1, false, NOON_MS, &store).admitted());
        assert!(store_keys(&config, &solo).iter().all(|k| k.starts_with("summaries:")));
    }

    #[test]
    fn a_pooled_class_can_charge_a_caller_without_a_workspace_alone() {
        let mut config = demo_config();
        config.identity.missing_workspace = crate::config::MissingWorkspace::User;
        let store = MemoryStore::new();
        let research = class(&config, "deep_research");
        let solo = caller(&config, &[("x-user-id", "solo"), ("x-plan", "team")]);
        for _ in 0..10 {
            let d = charge(&config, &solo, research, 1, false, NOON_MS, &store);
            assert!(d.admitted());
            assert_eq!((d.scope, d.key.as_deref()), (ScopeKind::User, Some("deep_research:u:solo")));
        }
        assert!(!charge(&config, &solo, research, 1, false, NOON_MS, &store).admitted());
        // The team's pool is untouched.
        let member = caller(&config, &[("x-user-id", "a"), ("x-workspace-id", "acme"), ("x-plan", "team")]);
        assert!(charge(&config, &member, research, 1, false, NOON_MS, &store).admitted());
    }

    #[test]
    fn classes_outside_the_plan_are_refused() {
        let config = demo_config();
        let store = MemoryStore::new();
        let d = charge(
            &config,
            &caller(&config, &[("x-user-id", "a")]),
            class(&config, "deep_research"),
            1,
            false,
            NOON_MS,
            &store,
        );
        assert_eq!(d.outcome, Outcome::NotIncluded);
        assert!(store.is_empty());
    }

    #[test]
    fn a_store_that_keeps_losing_races_applies_the_fail_policy() {
        let mut config = demo_config();
        let store = MemoryStore::new();
        let alice = caller(&config, &[("x-user-id", "alice")]);
        *store.fail_next_sets.borrow_mut() = 1000;
        let open = charge(&config, &alice, class(&config, "drafts"), 1, false, NOON_MS, &store);
        assert!(open.admitted());
        assert!(matches!(open.outcome, Outcome::Unavailable { reason: GiveUp::Contended { attempts: 32 }, .. }));
        config.counters.on_error = FailPolicy::Closed;
        assert!(!charge(&config, &alice, class(&config, "drafts"), 1, false, NOON_MS, &store).admitted());
    }

    #[test]
    fn each_warning_level_is_an_event_once_per_window() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = caller(&config, &[("x-user-id", "alice")]);
        let drafts = class(&config, "drafts");
        let events: Vec<(u64, Vec<Event>)> = (1..=11)
            .map(|i| (i, charge(&config, &alice, drafts, 1, false, NOON_MS, &store).events(&config)))
            .filter(|(_, e)| !e.is_empty())
            .collect();
        // Free drafts: soft limit 5, 70% of 10 = 7 (95% would be the wall itself).
        assert_eq!(
            events,
            vec![
                (5, vec![Event::Warned { level: 0, at: 5 }]),
                (7, vec![Event::Warned { level: 1, at: 7 }]),
                (11, vec![Event::Blocked]),
            ]
        );
    }

    #[test]
    fn corrections_may_add_what_is_left_of_the_ceiling() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = caller(&config, &[("x-user-id", "alice")]);
        let drafts = class(&config, "drafts");
        // Free drafts: hard 10, blocking, so one request settles at 10 at most.
        let d = charge(&config, &alice, drafts, 3, false, NOON_MS, &store);
        assert_eq!(correction_room(&config, &d), 7);
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        let key = d.key.clone().unwrap();
        correct(&config, &key, c.usage.window.start, 1_000, correction_room(&config, &d), &store).unwrap();
        let stored = store.get(&key).unwrap().and_then(|(bytes, _)| Counter::decode(&bytes));
        assert_eq!(stored.map(|c| c.used), Some(10));
        // Refused requests were charged nothing and may be corrected by nothing.
        let refused = charge(&config, &alice, drafts, 11, false, NOON_MS, &store);
        assert_eq!(correction_room(&config, &refused), 0);
        let research = charge(&config, &alice, class(&config, "deep_research"), 1, false, NOON_MS, &store);
        assert_eq!(correction_room(&config, &research), 0);
    }

    #[test]
    fn a_new_counter_without_room_gets_the_fail_policy_and_live_ones_keep_counting() {
        let mut config = demo_config();
        config.counters.max_counters = 32; // one bucket of 32
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let users: Vec<Caller> = (0..33).map(|i| caller(&config, &[("x-user-id", &format!("user-{i}"))])).collect();
        for user in &users[..32] {
            let d = charge(&config, user, drafts, 1, false, NOON_MS, &config.counters.table(&store, NOON_MS));
            assert!(matches!(d.outcome, Outcome::Charged(_)), "{d:?}");
        }
        let table = config.counters.table(&store, NOON_MS);
        let full = charge(&config, &users[32], drafts, 1, false, NOON_MS, &table);
        assert!(matches!(full.outcome, Outcome::Unavailable { policy: FailPolicy::Open, reason: GiveUp::Full }));
        assert!(full.admitted());
        assert_eq!(full.events(&config), vec![Event::StoreFull]);
        assert_eq!(crate::events::metric_deltas(&full), vec![(ClassMetric::Requests, 1), (ClassMetric::FailOpen, 1)]);
        // Nobody was evicted: a live counter goes on counting from where it was.
        let again = charge(&config, &users[0], drafts, 1, false, NOON_MS, &table);
        let Outcome::Charged(c) = &again.outcome else { panic!("{again:?}") };
        assert_eq!(c.usage.used, 2);

        config.counters.on_error = FailPolicy::Closed;
        let refused = charge(&config, &users[32], drafts, 1, false, NOON_MS, &config.counters.table(&store, NOON_MS));
        assert!(!refused.admitted());
        let Action::Reply(reply) = respond(&config, &refused, BodyFormat::OpenAi) else { panic!("{refused:?}") };
        assert_eq!(reply.status, 503);
        assert!(reply.body.contains("quota_unavailable"), "{}", reply.body);

        // Grants need room too; the day windows end, and a day later every
        // counter without grants has made room.
        let grant_key = store_key(&config, &config.classes[drafts.0], ScopeKind::User, "user-32");
        assert_eq!(grant(&config, &grant_key, 5, &config.counters.table(&store, NOON_MS)), Err(GiveUp::Full));
        let two_days_on = NOON_MS + 2 * 86_400_000;
        let table = config.counters.table(&store, two_days_on);
        assert_eq!(grant(&config, &grant_key, 5, &table), Ok(5));
        let d = charge(&config, &users[32], drafts, 1, false, two_days_on, &table);
        assert!(d.admitted() && matches!(d.outcome, Outcome::Charged(_)), "{d:?}");
    }

    #[test]
    fn corrections_and_usage_reads_go_through_the_table() {
        let config = demo_config();
        let store = MemoryStore::new();
        let table = config.counters.table(&store, NOON_MS);
        let alice = caller(&config, &[("x-user-id", "alice")]);
        let d = charge(&config, &alice, class(&config, "drafts"), 3, false, NOON_MS, &table);
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        let key = d.key.clone().unwrap();
        correct(&config, &key, c.usage.window.start, -2, 0, &table).unwrap();
        let stored = table.get(&key).unwrap().and_then(|(bytes, _)| Counter::decode(&bytes));
        assert_eq!(stored.map(|c| c.used), Some(1));
        // One bucket key, not one key per counter.
        assert!(store.get(&key).unwrap().is_none());
        assert_eq!(store.len(), 1);
        let report = crate::usage::usage_report(&config, &alice, NOON_MS, &table);
        assert_eq!(report["classes"][2]["used"], 1, "{report}");
    }

    #[test]
    fn reset_after_rounds_up_to_whole_seconds() {
        assert_eq!(seconds_until(100, 99_001), 1);
        assert_eq!(seconds_until(100, 99_000), 1);
        assert_eq!(seconds_until(100, 100_000), 0);
        assert_eq!(seconds_until(100, 150_000), 0);
    }

    /// A team plan whose drafts are a pool of `pool` a day with at most
    /// `member` per member, and whose chats are 3 every 5 hours and 5 a week.
    fn stacked_config(pool: u64, member: u64, extra: &str) -> Config {
        let doc = format!(
            r#"{{
                "identity": {{"user": [{{"header": "x-user-id"}}], "workspace": [{{"header": "x-workspace-id"}}], "default_tier": "team"}},
                "classes": [{{"name": "drafts"}}, {{"name": "chats"}}],
                "tiers": {{"team": {{"limits": {{
                    "drafts": [
                        {{"scope": "workspace", "hard": {pool}, "window": "day"{extra}}},
                        {{"scope": "user", "hard": {member}, "window": "day"}}
                    ],
                    "chats": [{{"hard": 3, "window": "5h"}}, {{"hard": 5, "window": "week"}}]
                }}}}}}
            }}"#
        );
        Config::from_json(doc.as_bytes()).unwrap()
    }

    #[test]
    fn a_team_pool_with_member_caps_admits_exactly_both() {
        let config = stacked_config(300, 50, "");
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let members: Vec<Caller> =
            (0..7).map(|i| caller(&config, &[("x-user-id", &format!("m{i}")), ("x-workspace-id", "acme")])).collect();
        let mut admitted = [0u64; 7];
        for round in 0..60 {
            for (m, who) in members.iter().enumerate() {
                let d = charge(&config, who, drafts, 1, false, NOON_MS, &store);
                if d.admitted() {
                    admitted[m] += 1;
                    continue;
                }
                // The member's cap binds first (50 of 300), then the pool.
                let pool_full = admitted.iter().sum::<u64>() == 300;
                let (limit, scope) = if pool_full { (0, ScopeKind::Workspace) } else { (1, ScopeKind::User) };
                assert_eq!((d.limit, d.scope), (limit, scope), "round {round}, member {m}: {d:?}");
                assert_eq!(d.others.len(), 1);
            }
        }
        assert_eq!(admitted.iter().sum::<u64>(), 300, "{admitted:?}");
        assert!(admitted.iter().all(|n| *n <= 50), "{admitted:?}");
        // A member of another team has a pool of their own.
        let other = caller(&config, &[("x-user-id", "m0"), ("x-workspace-id", "globex")]);
        assert!(charge(&config, &other, drafts, 1, false, NOON_MS, &store).admitted());
    }

    #[test]
    fn a_workspace_pool_is_shared_by_members_who_name_no_organisation() {
        // An organisation's pool over a workspace's over each member's;
        // callers without an organisation are charged alone for its pool.
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                         "organisation": [{"header": "x-org-id"}], "missing_workspace": "user", "default_tier": "team"},
            "classes": [{"name": "drafts"}],
            "tiers": {"team": {"limits": {"drafts": [
                {"scope": "organisation", "hard": 100, "window": "day"},
                {"scope": "workspace", "hard": 6, "window": "day"},
                {"scope": "user", "hard": 4, "window": "day"}
            ]}}}
        }"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let members: Vec<Caller> =
            ["ann", "bob"].iter().map(|u| caller(&config, &[("x-user-id", u), ("x-workspace-id", "acme")])).collect();
        let admitted: Vec<bool> =
            (0..8).map(|i| charge(&config, &members[i % 2], drafts, 1, false, NOON_MS, &store).admitted()).collect();
        // Six between them (three each), not four each: the pool is theirs together.
        assert_eq!(admitted, [true, true, true, true, true, true, false, false]);
        let d = charge(&config, &members[0], drafts, 1, false, NOON_MS, &store);
        assert_eq!((d.limit, d.scope), (1, ScopeKind::Workspace));
        // Every key of the stack is tagged by the workspace (the member's
        // own id, when there is one, follows it).
        for key in store_keys(&config, &members[0]) {
            assert!(key.split('\u{1f}').next().is_some_and(|tagged| tagged.ends_with(":w:acme")), "{key:?}");
        }
    }

    #[test]
    fn a_refused_stack_keeps_nothing_and_reports_every_limit() {
        let config = stacked_config(300, 50, "");
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let alice = caller(&config, &[("x-user-id", "alice"), ("x-workspace-id", "acme")]);
        let d = charge(&config, &alice, drafts, 49, false, NOON_MS, &store);
        assert!(d.admitted());
        assert_eq!(d.charged().len(), 2);
        // Two more than the member has left: refused by the member's cap,
        // and the pool, charged first, gives them back.
        let refused = charge(&config, &alice, drafts, 2, false, NOON_MS, &store);
        assert!(!refused.admitted());
        assert_eq!((refused.limit, refused.scope), (1, ScopeKind::User));
        assert_eq!(refused.others.iter().map(|h| (h.limit, h.usage.used)).collect::<Vec<_>>(), vec![(0, 49)]);
        assert!(refused.charged().is_empty());
        let bob = caller(&config, &[("x-user-id", "bob"), ("x-workspace-id", "acme")]);
        let d = charge(&config, &bob, drafts, 1, false, NOON_MS, &store);
        // The pool (250 of 300 left) has less room than bob's cap (49 of 50).
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        assert_eq!((d.limit, c.usage.used), (0, 50));
        assert_eq!(d.others.iter().map(|h| (h.limit, h.usage.used)).collect::<Vec<_>>(), vec![(1, 1)]);
    }

    #[test]
    fn a_five_hour_window_and_a_weekly_one_bind_in_turn() {
        let config = stacked_config(300, 50, "");
        let store = MemoryStore::new();
        let chats = class(&config, "chats");
        let alice = caller(&config, &[("x-user-id", "alice")]);
        let mut now = NOON_MS;
        let mut refusals = Vec::new();
        for _ in 0..3 {
            for _ in 0..4 {
                let d = charge(&config, &alice, chats, 1, false, now, &store);
                if !d.admitted() {
                    refusals.push((d.limit, limit_of(&config, &d).map(|l| l.window_name.clone())));
                }
            }
            now += 5 * 3_600_000;
        }
        // 3 in the first five hours, then 2 (the week's 5), then nothing.
        assert_eq!(
            refusals,
            vec![
                (0, Some("5h".to_string())),
                (1, Some("week".to_string())),
                (1, Some("week".to_string())),
                (1, Some("week".to_string())),
                (1, Some("week".to_string())),
                (1, Some("week".to_string())),
                (1, Some("week".to_string())),
            ]
        );
    }

    #[test]
    fn a_limit_that_changes_how_the_request_is_served_binds_before_a_tighter_one() {
        // The pool degrades past 2 of 300; the member cap of 10 is tighter
        // relative to its size once a member has used 3, but serves normally.
        let config = stacked_config(300, 10, r#", "soft": 2, "past_soft": "degrade", "degrade": {"model": "mini"}"#);
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let alice = caller(&config, &[("x-user-id", "alice"), ("x-workspace-id", "acme")]);
        let served: Vec<(usize, Served)> = (0..4)
            .map(|_| {
                let d = charge(&config, &alice, drafts, 1, false, NOON_MS, &store);
                let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
                (d.limit, c.served)
            })
            .collect();
        // Before the pool degrades (from the third request, with 2 used),
        // the member's cap has the least room (9 of 10 against 299 of 300)
        // and binds.
        assert_eq!(
            served,
            vec![(1, Served::Normally), (1, Served::Normally), (0, Served::Degraded), (0, Served::Degraded)]
        );
    }

    #[test]
    fn a_member_cap_set_by_an_admin_replaces_the_members_limit_until_cleared() {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
            "classes": [{"name": "premium"}],
            "admin": {"path": "/quota/admin", "secret": "s3cret-s3cret-s3cret-s3cret"},
            "tiers": {"team": {"limits": {"premium": [
                {"scope": "workspace", "hard": 10, "window": "day"},
                {"scope": "user", "hard": 4, "window": "day", "admin_cap": true}
            ]}}}
        }"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        let store = MemoryStore::new();
        let premium = class(&config, "premium");
        let alice = caller(&config, &[("x-user-id", "alice"), ("x-workspace-id", "acme")]);
        let bob = caller(&config, &[("x-user-id", "bob"), ("x-workspace-id", "acme")]);
        let alice_cap = crate::member_cap::key(&config.classes[0], "acme", "alice");
        crate::member_cap::write(&config, &store, &alice_cap, Some(2)).unwrap();
        let run = |who: &Caller, n: usize| -> Vec<bool> {
            (0..n).map(|_| charge(&config, who, premium, 1, false, NOON_MS, &store).admitted()).collect()
        };
        assert_eq!(run(&alice, 3), [true, true, false]);
        let refused = charge(&config, &alice, premium, 1, false, NOON_MS, &store);
        let Outcome::Charged(c) = &refused.outcome else { panic!("{refused:?}") };
        assert_eq!((refused.limit, c.usage.hard, c.usage.used), (1, 2, 2));
        // Bob keeps the plan's 4; a cap above the plan's own lets alice use
        // more, never past the pool.
        assert_eq!(run(&bob, 5), [true, true, true, true, false]);
        crate::member_cap::write(&config, &store, &alice_cap, Some(8)).unwrap();
        assert_eq!(run(&alice, 5), [true, true, true, true, false]);
        let pool_full = charge(&config, &alice, premium, 1, false, NOON_MS, &store);
        assert_eq!(pool_full.scope, ScopeKind::Workspace);
        // Cleared: the plan's 4 again (alice has used 6 of them).
        crate::member_cap::write(&config, &store, &alice_cap, None).unwrap();
        let d = charge(&config, &alice, premium, 1, false, NOON_MS + 86_400_000, &store);
        assert_eq!(d.limits().iter().find(|(i, _)| *i == 1).map(|(_, u)| u.hard), Some(4));
        assert!(crate::member_cap::read(&store, &alice_cap).unwrap().is_none());
        // The usage endpoint shows the member's own cap.
        crate::member_cap::write(&config, &store, &alice_cap, Some(3)).unwrap();
        let report = crate::usage::usage_report(&config, &alice, NOON_MS + 86_400_000, &store);
        assert_eq!(report["classes"][0]["limits"][1]["limit"], 3, "{report}");
    }

    #[test]
    fn member_caps_are_checked_at_the_admin_endpoint() {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
            "classes": [{"name": "premium"}, {"name": "plain"}],
            "admin": {"path": "/quota/admin", "secret": "s3cret-s3cret-s3cret-s3cret"},
            "tiers": {"team": {"limits": {
                "premium": [{"scope": "workspace", "hard": 10, "window": "day"}, {"scope": "user", "hard": 4, "window": "day", "admin_cap": true}],
                "plain": {"hard": 5, "window": "day"}
            }}}
        }"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        use crate::admin::{parse_admin, AdminRequest};
        let Ok(AdminRequest::MemberCap(cap)) = parse_admin(&config, "class=premium&workspace=acme&user=alice&cap=10")
        else {
            panic!()
        };
        assert_eq!((cap.cap, cap.workspace.as_str(), cap.user.as_str()), (Some(10), "acme", "alice"));
        let Ok(AdminRequest::MemberCap(clear)) =
            parse_admin(&config, "class=premium&workspace=acme&user=alice&cap=none")
        else {
            panic!()
        };
        assert_eq!(clear.cap, None);
        assert!(matches!(parse_admin(&config, "class=plain&user=alice&units=3"), Ok(AdminRequest::Grant(_))));
        // Grants do not fund a stack's counters (which window's?): refused, saying so.
        let grant = parse_admin(&config, "class=premium&user=alice&units=3").unwrap_err();
        assert!(
            grant.starts_with("grants do not apply to \"premium\": every plan that includes it stacks its limits"),
            "{grant}"
        );
        for (bad, why) in [
            ("class=premium&workspace=acme&user=alice&cap=11", "from 1 to 10"),
            ("class=premium&workspace=acme&user=alice&cap=0", "from 1 to 10"),
            ("class=premium&workspace=acme&user=alice&cap=-1", "from 1 to 10"),
            ("class=premium&user=alice&cap=3", "both \"workspace\" and \"user\""),
            ("class=plain&workspace=acme&user=alice&cap=3", "takes no member caps"),
            ("class=premium&workspace=acme&user=alice&cap=3&units=5", "unknown parameter \"units\""),
            ("class=premium&workspace=acme&user=a%01&cap=3", "control characters"),
        ] {
            let error = parse_admin(&config, bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn a_caller_without_an_organisation_is_refused_the_organisations_pool_by_name() {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                         "organisation": [{"header": "x-org-id"}], "default_tier": "team"},
            "classes": [{"name": "exports", "unit": "export", "units": "exports"}],
            "tiers": {"team": {"limits": {"exports": [
                {"hard": 10, "window": "day"},
                {"scope": "organisation", "hard": 100, "window": "month"}
            ]}}}
        }"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        let store = MemoryStore::new();
        let exports = class(&config, "exports");
        let loner = caller(&config, &[("x-user-id", "ada"), ("x-workspace-id", "acme")]);
        let d = charge(&config, &loner, exports, 1, false, NOON_MS, &store);
        assert_eq!((&d.outcome, d.scope, d.limit), (&Outcome::WorkspaceRequired, ScopeKind::Organisation, 1));
        assert!(store.is_empty());
        let Action::Reply(reply) = respond(&config, &d, BodyFormat::OpenAi) else { panic!("{d:?}") };
        assert!(reply.body.contains("Your exports are shared across your organisation"), "{}", reply.body);
        let member = caller(&config, &[("x-user-id", "ada"), ("x-org-id", "globex")]);
        assert!(charge(&config, &member, exports, 1, false, NOON_MS, &store).admitted());
    }

    #[test]
    fn past_a_limit_the_binding_limits_behaviour_applies() {
        // A team pool of 10 a day that queues past it, and members with 3 a
        // day who may go 2 past theirs as overage.
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
            "classes": [{"name": "drafts"}],
            "tiers": {"team": {"limits": {"drafts": [
                {"scope": "workspace", "hard": 10, "window": "day", "at_hard": "queue"},
                {"scope": "user", "hard": 3, "window": "day", "at_hard": "overage", "overage": {"cap": 2}}
            ]}}}
        }"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        let store = MemoryStore::new();
        let drafts = class(&config, "drafts");
        let member = |user: &str| caller(&config, &[("x-user-id", user), ("x-workspace-id", "acme")]);
        let served = |who: &Caller| {
            let d = charge(&config, who, drafts, 1, false, NOON_MS, &store);
            match &d.outcome {
                Outcome::Charged(c) if c.admitted => (d.scope, Some(c.served)),
                _ => (d.scope, None),
            }
        };
        use ScopeKind::{User, Workspace};
        let ada = member("ada");
        // Ada's own 3, then 2 as overage (her limit binds: it changes how
        // she is served), then her cap past hard refuses.
        let ada_day: Vec<_> = (0..6).map(|_| served(&ada)).collect();
        assert_eq!(
            ada_day,
            [
                (User, Some(Served::Normally)),
                (User, Some(Served::Normally)),
                (User, Some(Served::Normally)),
                (User, Some(Served::Overage)),
                (User, Some(Served::Overage)),
                (User, None),
            ]
        );
        // Bo and Cy take the pool to 10 (5 with Ada's); it has less room
        // than Cy's own cap, and past it the pool queues their work while
        // Cy's cap still has room.
        for _ in 0..3 {
            served(&member("bo"));
        }
        let cy = member("cy");
        assert_eq!(served(&cy), (Workspace, Some(Served::Normally)));
        assert_eq!(served(&cy), (Workspace, Some(Served::Normally)));
        assert_eq!(served(&cy), (Workspace, Some(Served::Queued)));
        // Both past their hard limits, each changing the service: the
        // narrowest binds on a tie (both have no room left).
        assert_eq!(served(&cy), (User, Some(Served::Overage)));
    }

    #[test]
    fn no_two_members_of_two_pools_share_a_counter() {
        // Ids may hold ':' ("google:123"): a key that put the member's id
        // before the workspace's would give (ada:w:x in acme) and (ada in
        // x:w:acme) one counter.
        let config = stacked_config(300, 50, "");
        let drafts = &config.classes[class(&config, "drafts").0];
        let stack = config.cell(config.identity.default_tier, class(&config, "drafts")).unwrap().limits();
        let keys = |user: &str, workspace: &str| {
            let who = caller(&config, &[("x-user-id", user), ("x-workspace-id", workspace)]);
            counters_of(&config, &who, drafts, stack).unwrap().into_iter().map(|(_, _, key)| key).collect::<Vec<_>>()
        };
        let (a, b) = (keys("ada:w:x", "acme"), keys("ada", "x:w:acme"));
        assert!(a.iter().all(|k| !b.contains(k)), "{a:?} {b:?}");
        // Narrowest first: the member's counter, then the pool's.
        assert_eq!(a, ["drafts@3.u:w:acme\u{1f}u:ada:w:x", "drafts@3.w:w:acme"]);
    }
}
