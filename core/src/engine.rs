//! Charging a classified, identified request: the decision value everything
//! the caller sees (headers, bodies, later metrics) is built from.

use crate::config::{Cell, ClassId, Config, Cost, FailPolicy, TierId};
use crate::counter::Counter;
use crate::decide::{decide, Charge};
use crate::identity::{Caller, ScopeKind};
use crate::store::{compare_and_swap, CounterStore, GiveUp};

/// The verdict on one request in one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: ClassId,
    pub tier: TierId,
    pub scope: ScopeKind,
    /// When the decision was made, in Unix milliseconds.
    pub now_ms: i64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cell was applied: admitted or refused at the hard limit.
    Charged(Charge),
    /// The class is not part of the caller's plan.
    NotIncluded,
    /// The counter store gave up; the fail policy decides.
    Unavailable { policy: FailPolicy, reason: GiveUp },
}

impl Decision {
    /// Whether the request goes on to the upstream.
    pub fn admitted(&self) -> bool {
        match &self.outcome {
            Outcome::Charged(c) => c.admitted,
            Outcome::NotIncluded => false,
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
    (ms.max(0) + 999) / 1000
}

/// The units one request of `class` costs.
pub fn request_cost(config: &Config, class: ClassId) -> u64 {
    match config.class(class).map(|c| c.cost) {
        Some(Cost::Fixed(n)) => n,
        None => 1,
    }
}

/// Charges `cost` units of `class` to `caller` at `now_ms`, exactly once,
/// whatever other workers do at the same time.
pub fn charge<S: CounterStore + ?Sized>(
    config: &Config,
    caller: &Caller,
    class: ClassId,
    cost: u64,
    now_ms: i64,
    store: &S,
) -> Decision {
    let decision = |scope, outcome| Decision {
        class,
        tier: caller.tier,
        scope,
        now_ms,
        outcome,
    };
    let (Some(cell), Some(class_def)) = (config.cell(caller.tier, class), config.class(class))
    else {
        let reason = GiveUp::Unavailable("no cell for this tier and class".into());
        return decision(
            caller.scope(crate::config::Scope::User),
            Outcome::Unavailable {
                policy: config.counters.on_error,
                reason,
            },
        );
    };
    let limits = match cell {
        Cell::NotIncluded => {
            return decision(
                caller.scope(crate::config::Scope::User),
                Outcome::NotIncluded,
            )
        }
        Cell::Limited(l) => l,
    };
    let key = caller.counter_key(class_def, limits.scope);
    let now = now_ms.div_euclid(1000);
    let result = compare_and_swap(store, &key, config.counters.cas_attempts, |old| {
        let old = old.and_then(Counter::decode);
        let (write, charge) = decide(old, limits, cost, now, caller.alignment);
        (write.map(|c| c.encode().to_vec()), charge)
    });
    let outcome = match result {
        Ok(charge) => Outcome::Charged(charge),
        Err(reason) => Outcome::Unavailable {
            policy: config.counters.on_error,
            reason,
        },
    };
    decision(caller.scope(limits.scope), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::identify;
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
            assert!(charge(&config, &alice, drafts, 1, NOON_MS, &store).admitted());
        }
        assert!(!charge(&config, &alice, drafts, 1, NOON_MS, &store).admitted());
        assert!(charge(&config, &bob, drafts, 1, NOON_MS, &store).admitted());
        assert!(charge(&config, &alice, summaries, 1, NOON_MS, &store).admitted());
    }

    #[test]
    fn workspace_cells_pool_the_team() {
        let config = demo_config();
        let store = MemoryStore::new();
        let research = class(&config, "deep_research");
        let a = caller(
            &config,
            &[
                ("x-user-id", "a"),
                ("x-workspace-id", "acme"),
                ("x-plan", "team"),
            ],
        );
        let b = caller(
            &config,
            &[
                ("x-user-id", "b"),
                ("x-workspace-id", "acme"),
                ("x-plan", "team"),
            ],
        );
        for i in 0..10 {
            let who = if i % 2 == 0 { &a } else { &b };
            assert!(charge(&config, who, research, 1, NOON_MS, &store).admitted());
        }
        let d = charge(&config, &b, research, 1, NOON_MS, &store);
        assert!(!d.admitted());
        assert_eq!(d.scope, ScopeKind::Workspace);
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
        let open = charge(
            &config,
            &alice,
            class(&config, "drafts"),
            1,
            NOON_MS,
            &store,
        );
        assert!(open.admitted());
        assert!(matches!(
            open.outcome,
            Outcome::Unavailable {
                reason: GiveUp::Contended { attempts: 32 },
                ..
            }
        ));
        config.counters.on_error = FailPolicy::Closed;
        assert!(!charge(
            &config,
            &alice,
            class(&config, "drafts"),
            1,
            NOON_MS,
            &store
        )
        .admitted());
    }

    #[test]
    fn reset_after_rounds_up_to_whole_seconds() {
        assert_eq!(seconds_until(100, 99_001), 1);
        assert_eq!(seconds_until(100, 99_000), 1);
        assert_eq!(seconds_until(100, 100_000), 0);
        assert_eq!(seconds_until(100, 150_000), 0);
    }
}
