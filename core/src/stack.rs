//! Several limits on one request (a member's cap inside a team's pool, a
//! five-hour window inside a weekly one), charged in a store with
//! compare-and-swap: all of them or none.
//!
//! The counters are charged one by one, in the order given (the narrowest
//! first: it refuses most often, so the fewest charges are undone). Each
//! charge is decided on its own counter under compare-and-swap, so no
//! counter ever passes its own limit and no update is lost. When one
//! counter refuses (or its store gives up), every counter already charged
//! is given back: restored to the record it held before when nobody wrote
//! it since, else corrected by the units this request charged. A concurrent
//! request may meanwhile see a counter that is about to be given back, and
//! be refused by it: the price of exactness is an occasional refusal close
//! to a limit, never an admission past one.
//!
//! Redis charges a stack in one script (one hash slot), with none of this.

use crate::config::{Config, Limits};
use crate::counter::Counter;
use crate::decide::{self, Charge};
use crate::store::{compare_and_swap, CounterStore, Expect, GiveUp};
use crate::window::Alignment;

/// One counter of a stack: its key and its limits.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub key: &'a str,
    pub limits: &'a Limits,
}

/// How a stacked charge went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stacked {
    /// Each part's decision, in order, up to the one that refused (or whose
    /// store gave up); the parts after it were not tried.
    pub charges: Vec<Result<Charge, GiveUp>>,
    /// Every part admitted the request, and each holds its charge.
    pub admitted: bool,
    /// Charges that could not be given back (the store gave up meanwhile):
    /// the counter keeps units this request never used.
    pub not_given_back: Vec<(String, GiveUp)>,
}

impl Stacked {
    /// The part that refused the request (or whose store gave up).
    pub fn refused_by(&self) -> Option<usize> {
        (!self.admitted).then(|| self.charges.len().saturating_sub(1))
    }
}

/// What one charged part wrote: enough to undo it.
struct Written {
    key: String,
    before: Option<Vec<u8>>,
    after: Vec<u8>,
    window_start: i64,
    cost: u64,
}

/// Charges `cost` units to every part, or to none (see the module).
pub fn charge_all<S: CounterStore + ?Sized>(
    config: &Config,
    parts: &[Part<'_>],
    cost: u64,
    confirmed: bool,
    now_ms: i64,
    align: Alignment,
    store: &S,
) -> Stacked {
    let now = now_ms.div_euclid(1000);
    let mut charges = Vec::with_capacity(parts.len());
    let mut written: Vec<Written> = Vec::with_capacity(parts.len());
    for part in parts {
        let mut wrote = None;
        let result = compare_and_swap(store, part.key, config.counters.cas_attempts, |old| {
            let (next, charge) =
                decide::decide(old.and_then(Counter::decode), part.limits, cost, confirmed, now, align);
            let bytes = next.map(|c| c.encode().to_vec());
            wrote = bytes.clone().map(|after| (old.map(<[u8]>::to_vec), after));
            (bytes, charge)
        });
        let admitted = matches!(&result, Ok(c) if c.admitted);
        if let (Ok(charge), Some((before, after))) = (&result, wrote.take()) {
            if charge.admitted && charge.cost > 0 {
                let window_start = charge.usage.window.start;
                written.push(Written { key: part.key.to_string(), before, after, window_start, cost: charge.cost });
            }
        }
        charges.push(result);
        if !admitted {
            let not_given_back = give_back(config, store, written);
            return Stacked { charges, admitted: false, not_given_back };
        }
    }
    Stacked { charges, admitted: true, not_given_back: Vec::new() }
}

/// Undoes charges, the last first: the record as it was when nobody wrote
/// the counter since, else the charge's units given back in its window.
fn give_back<S: CounterStore + ?Sized>(config: &Config, store: &S, written: Vec<Written>) -> Vec<(String, GiveUp)> {
    let mut failed = Vec::new();
    for w in written.into_iter().rev() {
        if restore(store, &w) {
            continue;
        }
        let delta = -i64::try_from(w.cost).unwrap_or(i64::MAX);
        let result = compare_and_swap(store, &w.key, config.counters.cas_attempts, |old| {
            (decide::adjust(old.and_then(Counter::decode), w.window_start, delta, 0).map(|c| c.encode().to_vec()), ())
        });
        if let Err(e) = result {
            failed.push((w.key, e));
        }
    }
    failed
}

/// Puts the record back as it was, if the counter still holds what this
/// charge wrote (no other request charged it since). A counter that did
/// not exist before is left at its emptied record: a store cannot delete.
fn restore<S: CounterStore + ?Sized>(store: &S, w: &Written) -> bool {
    let Ok(Some((now, cas))) = store.get(&w.key) else { return false };
    if now != w.after {
        return false;
    }
    let Some(before) = &w.before else { return false };
    store.set(&w.key, before, Expect::Version(cas)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cell, ClassId};
    use crate::store::{MemoryStore, StoreError};
    use std::cell::{Cell as StdCell, RefCell};

    const NOON_MS: i64 = 1_795_348_800_000;

    /// A team pool of 30 a day ("pool") and a member cap of 5 a day ("member").
    fn config() -> Config {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "default_tier": "team"},
            "classes": [{"name": "pool"}, {"name": "member"}],
            "tiers": {"team": {"limits": {"pool": {"hard": 30, "window": "day"}, "member": {"hard": 5, "window": "day"}}}}
        }"#;
        match Config::from_json(doc.as_bytes()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn limits(config: &Config, class: usize) -> &Limits {
        match config.cell(config.identity.default_tier, ClassId(class)) {
            Some(Cell::Limited(l)) if l.len() == 1 => &l[0],
            other => panic!("{other:?}"),
        }
    }

    fn used<S: CounterStore>(store: &S, key: &str) -> u64 {
        store.get(key).ok().flatten().and_then(|(b, _)| Counter::decode(&b)).map_or(0, |c| c.used)
    }

    /// A store that, before some of its reads and writes, runs another
    /// member's whole stacked charge: every interleaving of two or three
    /// requests' steps a worker pool could produce, in one thread.
    struct Meddling<'c> {
        inner: MemoryStore,
        config: &'c Config,
        rng: StdCell<u64>,
        depth: StdCell<u32>,
        /// (member, admitted) of every charge, nested ones included.
        done: RefCell<Vec<(usize, bool)>>,
    }

    impl Meddling<'_> {
        fn next(&self) -> u64 {
            let mut s = self.rng.get();
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            self.rng.set(s);
            s
        }

        fn meddle(&self) {
            if self.depth.get() >= 2 || !self.next().is_multiple_of(3) {
                return;
            }
            self.depth.set(self.depth.get() + 1);
            let member = (self.next() % 7) as usize;
            charge(self, member);
            self.depth.set(self.depth.get() - 1);
        }
    }

    impl CounterStore for Meddling<'_> {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.meddle();
            self.inner.get(key)
        }

        fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
            self.meddle();
            self.inner.set(key, value, expect)
        }
    }

    fn charge(store: &Meddling<'_>, member: usize) {
        let config = store.config;
        let key = format!("member:{member}");
        let parts =
            [Part { key: &key, limits: limits(config, 1) }, Part { key: "pool:acme", limits: limits(config, 0) }];
        let s = charge_all(config, &parts, 1, false, NOON_MS, config.calendar.alignment, store);
        assert!(s.not_given_back.is_empty(), "{s:?}");
        store.done.borrow_mut().push((member, s.admitted));
    }

    #[test]
    fn a_pool_with_member_caps_admits_exactly_its_limits_under_every_interleaving() {
        let config = config();
        for seed in 1..=40u64 {
            let store = Meddling {
                inner: MemoryStore::new(),
                config: &config,
                rng: StdCell::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
                depth: StdCell::new(0),
                done: RefCell::new(Vec::new()),
            };
            for i in 0..120 {
                charge(&store, i % 7);
            }
            let done = store.done.borrow();
            assert!(done.len() > 160, "seed {seed}: requests ran inside others' steps ({})", done.len());
            let admitted = |m: usize| done.iter().filter(|(who, ok)| *who == m && *ok).count() as u64;
            let total: u64 = (0..7).map(admitted).sum();
            for m in 0..7 {
                let key = format!("member:{m}");
                assert_eq!(
                    used(&store.inner, &key),
                    admitted(m),
                    "seed {seed}: member {m}'s counter is what it was admitted"
                );
                assert!(admitted(m) <= 5, "seed {seed}: member {m} past its cap");
            }
            assert_eq!(used(&store.inner, "pool:acme"), total, "seed {seed}: no lost update, every refusal given back");
            // Seven caps of 5 exceed the pool: it fills exactly.
            assert_eq!(total, 30, "seed {seed}");
        }
    }

    #[test]
    fn a_refusal_by_a_later_part_gives_back_the_earlier_ones_exactly() {
        let config = config();
        let store = MemoryStore::new();
        let align = config.calendar.alignment;
        // The pool (second) is nearly full: 29 of 30.
        for _ in 0..29 {
            let parts = [Part { key: "pool:acme", limits: limits(&config, 0) }];
            assert!(charge_all(&config, &parts, 1, false, NOON_MS, align, &store).admitted);
        }
        let before = store.get("member:a").ok().flatten();
        let parts = [
            Part { key: "member:a", limits: limits(&config, 1) },
            Part { key: "pool:acme", limits: limits(&config, 0) },
        ];
        let s = charge_all(&config, &parts, 2, false, NOON_MS, align, &store);
        assert!(!s.admitted);
        assert_eq!(s.refused_by(), Some(1));
        assert!(matches!(s.charges.as_slice(), [Ok(a), Ok(b)] if a.admitted && !b.admitted), "{s:?}");
        assert_eq!(used(&store, "member:a"), 0, "the member's charge was given back");
        assert_eq!(used(&store, "pool:acme"), 29);
        assert!(before.is_none());
        // A member with an earlier charge gets its exact record back.
        let one = [Part { key: "member:b", limits: limits(&config, 1) }];
        assert!(charge_all(&config, &one, 1, false, NOON_MS, align, &store).admitted);
        let record = store.get("member:b").ok().flatten().map(|(b, _)| b);
        let parts = [
            Part { key: "member:b", limits: limits(&config, 1) },
            Part { key: "pool:acme", limits: limits(&config, 0) },
        ];
        assert!(!charge_all(&config, &parts, 2, false, NOON_MS, align, &store).admitted);
        assert_eq!(store.get("member:b").ok().flatten().map(|(b, _)| b), record);
    }

    #[test]
    fn a_store_that_gives_up_midway_refuses_and_gives_back() {
        let config = config();
        let store = MemoryStore::new();
        let align = config.calendar.alignment;
        let parts = [
            Part { key: "member:a", limits: limits(&config, 1) },
            Part { key: "pool:acme", limits: limits(&config, 0) },
        ];
        // The member's write goes through; every pool write loses its race.
        struct LosesOn<'s>(&'s MemoryStore, &'static str);
        impl CounterStore for LosesOn<'_> {
            fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
                self.0.get(key)
            }
            fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
                if key == self.1 {
                    return Err(StoreError::CasMismatch);
                }
                self.0.set(key, value, expect)
            }
        }
        let s = charge_all(&config, &parts, 1, false, NOON_MS, align, &LosesOn(&store, "pool:acme"));
        assert!(!s.admitted);
        assert!(matches!(s.charges.last(), Some(Err(GiveUp::Contended { .. }))), "{s:?}");
        assert_eq!(used(&store, "member:a"), 0);
    }
}
