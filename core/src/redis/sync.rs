//! The approximate mode: requests are charged to this Envoy's shared data at
//! once, and the units each counter gained or gave back are sent to the same
//! counter in Redis later (the filter's root does, every `sync_ms`). A
//! [`SyncTarget`] names both counters; the filter notes a delta against it
//! for each charge it admits and each correction it applies.

use crate::config::{Cell, ClassId, Config, TierId};
use crate::engine::{Decision, Outcome};
use crate::identity::Caller;
use crate::window::Alignment;

/// Where the approximate mode sends a local counter's deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTarget {
    /// The counter in this Envoy's shared data.
    pub local_key: String,
    /// The same counter in Redis.
    pub redis_key: String,
    pub tier: TierId,
    pub class: ClassId,
    pub alignment: Alignment,
}

impl SyncTarget {
    /// Where `d`'s counter is synced: `None` unless the counters are in the
    /// approximate mode and `d` charged a counter of a limited cell.
    pub fn of(config: &Config, d: &Decision, caller: &Caller) -> Option<SyncTarget> {
        let redis = config.counters.approximate_redis()?;
        let (Outcome::Charged(_), Some(local_key)) = (&d.outcome, &d.key) else { return None };
        // Stacked cells are refused with the approximate mode (config validation).
        let (Some(Cell::Limited(stack)), Some(class)) = (config.cell(d.tier, d.class), config.class(d.class)) else {
            return None;
        };
        let [limits] = stack.as_slice() else { return None };
        let (kind, id) = caller.scope_id(limits.scope, config.identity.missing_workspace)?;
        Some(SyncTarget {
            local_key: local_key.clone(),
            redis_key: super::key(&redis.key_prefix, &class.name, kind, id),
            tier: d.tier,
            class: d.class,
            alignment: caller.alignment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::charge;
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::head;

    const NOON_MS: i64 = 1_795_348_800_000;

    fn config(redis: &str) -> Config {
        let doc = format!(
            r#"{{
                "identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
                "classes": [{{"name": "drafts", "match": [{{"path": {{"prefix": "/"}}}}]}}],
                "tiers": {{"free": {{"limits": {{"drafts": {{"hard": 10, "window": "day"}}}}}}}},
                "counters": {{"store": "redis", "redis": {redis}}}
            }}"#
        );
        Config::from_json(doc.as_bytes()).unwrap()
    }

    fn target(config: &Config) -> Option<SyncTarget> {
        let caller = identify(config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let store = MemoryStore::new();
        let d = charge(config, &caller, ClassId(0), 1, false, NOON_MS, &config.counters.table(&store, NOON_MS));
        SyncTarget::of(config, &d, &caller)
    }

    #[test]
    fn the_approximate_mode_syncs_the_local_counter_to_its_redis_key() {
        let approximate = config(r#"{"cluster": "redis", "mode": "approximate", "key_prefix": "q:"}"#);
        let t = target(&approximate).unwrap();
        assert_eq!(t.redis_key, "q:{u:alice}drafts");
        assert_eq!(t.local_key, "drafts:u:alice");
        assert_eq!((t.tier, t.class), (TierId(0), ClassId(0)));
    }

    #[test]
    fn the_exact_mode_has_nothing_to_sync() {
        assert_eq!(target(&config(r#"{"cluster": "redis"}"#)), None);
    }
}
