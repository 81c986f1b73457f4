//! Charging a classified, identified request: the decision value everything
//! the caller sees (headers, bodies, later metrics) is built from.

use crate::config::{Cell, Class, ClassId, Config, FailPolicy, Limits, TierId};
use crate::counter::Counter;
use crate::decide::{decide, Charge};
use crate::identity::{scope_key, Caller, ScopeKind};
use crate::store::{compare_and_swap, CounterStore, GiveUp};
use crate::window::Alignment;

/// The verdict on one request in one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: ClassId,
    pub tier: TierId,
    pub scope: ScopeKind,
    /// The counter the request was charged to, for corrections after the response.
    pub key: Option<String>,
    /// When the decision was made, in Unix milliseconds.
    pub now_ms: i64,
    /// Units the request asked for, whatever the outcome (what it would
    /// cost where it is not included, say).
    pub requested: u64,
    pub outcome: Outcome,
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
                    let at = match config.cell(self.tier, self.class) {
                        Some(Cell::Limited(l)) => l.warn_levels.get(level).copied().unwrap_or(0),
                        _ => 0,
                    };
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

/// The units one request of `class` costs (see `cost.rs`), at most
/// [`crate::units::MAX_UNITS`]: the cell is not known yet, so its own
/// ceiling applies later, in [`decide`].
pub fn request_cost(config: &Config, class: ClassId, body: crate::cost::Body) -> u64 {
    crate::units::bounded(config.class(class).map_or(1, |c| crate::cost::request_cost(c, body)))
}

/// The most units a correction after the response may add to an admitted
/// request: what is left of its cell's [`Limits::request_ceiling`] once its
/// charge is counted (0 for a request a grant let past the ceiling, or one
/// that was not charged). Pass it to [`correct`] or `redis::Command::adjust`.
pub fn correction_room(config: &Config, d: &Decision) -> u64 {
    let Outcome::Charged(c) = &d.outcome else { return 0 };
    match config.cell(d.tier, d.class) {
        Some(Cell::Limited(l)) if c.admitted => l.request_ceiling().saturating_sub(c.cost),
        _ => 0,
    }
}

/// The key of the counter of (`kind`, `id`) for `class` in the store requests
/// are charged to: Redis in its exact mode, else this Envoy's shared data.
pub fn store_key(config: &Config, class: &Class, kind: ScopeKind, id: &str) -> String {
    match config.counters.exact_redis() {
        None => scope_key(class, kind, id),
        Some(redis) => crate::redis::key(&redis.key_prefix, &class.name, kind, id),
    }
}

/// The keys of every counter `caller`'s plan has (what the usage endpoint
/// reads): none for a pooled cell the caller may not use without a workspace.
pub fn store_keys(config: &Config, caller: &Caller) -> Vec<String> {
    let Some(tier) = config.tier(caller.tier) else { return Vec::new() };
    let missing = config.identity.missing_workspace;
    let mut keys: Vec<String> = config
        .classes
        .iter()
        .zip(&tier.cells)
        .filter_map(|(class, cell)| match cell {
            Cell::Limited(l) => {
                let (kind, id) = caller.scope_id(l.scope, missing)?;
                Some(store_key(config, class, kind, id))
            }
            Cell::NotIncluded => None,
        })
        .collect();
    keys.dedup();
    keys
}

/// A charge the store still has to make: a remote store answers it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub class: ClassId,
    pub tier: TierId,
    pub scope: ScopeKind,
    /// The counter in the configured store.
    pub key: String,
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
    let decision =
        |scope, outcome| Decision { class, tier: caller.tier, scope, key: None, now_ms, requested: cost, outcome };
    let user_scope = caller.own_scope();
    let (Some(cell), Some(class_def)) = (config.cell(caller.tier, class), config.class(class)) else {
        let reason = GiveUp::Unavailable("no cell for this tier and class".into());
        return Prepared::Decided(decision(
            user_scope,
            Outcome::Unavailable { policy: config.counters.on_error, reason },
        ));
    };
    let limits = match cell {
        Cell::NotIncluded => return Prepared::Decided(decision(user_scope, Outcome::NotIncluded)),
        Cell::Limited(l) => l,
    };
    let Some((scope, id)) = caller.scope_id(limits.scope, config.identity.missing_workspace) else {
        // Pooled without a workspace: the refusal names the pool it needs.
        return Prepared::Decided(decision(ScopeKind::Workspace, Outcome::WorkspaceRequired));
    };
    Prepared::Charge(Ticket {
        class,
        tier: caller.tier,
        scope,
        key: store_key(config, class_def, scope, id),
        now_ms,
        cost,
        confirmed,
        alignment: caller.alignment,
    })
}

/// The limits a ticket is charged against.
pub fn limits_of<'c>(config: &'c Config, ticket: &Ticket) -> Option<&'c Limits> {
    match config.cell(ticket.tier, ticket.class) {
        Some(Cell::Limited(l)) => Some(l),
        _ => None,
    }
}

/// The second half: the decision on the counter as the store holds it
/// (`Err`: the store gave up), and the counter to write.
pub fn settle(config: &Config, ticket: Ticket, stored: Result<Option<Counter>, GiveUp>) -> (Decision, Option<Counter>) {
    let outcome = |o| Decision {
        class: ticket.class,
        tier: ticket.tier,
        scope: ticket.scope,
        key: Some(ticket.key.clone()),
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
}
