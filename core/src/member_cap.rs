//! Member caps set by a workspace admin: inside a team's pool, one member's
//! own hard limit for a class, kept across windows until cleared. It
//! replaces the hard limit of the cell's `admin_cap` limit (a `user` limit
//! stacked with a `workspace` pool) for that member, and is never above the
//! pool's hard limit, so no cap lets a member past the pool.
//!
//! A cap lives in the counter store beside the counters, as a record the
//! table never reclaims while it is set ([`MEMBER_CAP_CODE`], an endless
//! window); clearing it writes an ended record the table may reclaim.
//!
//! With counters in Redis (the exact mode) the cap is the same record, a
//! hash under [`redis_key`]: the workspace's hash tag, so it shares the
//! Redis Cluster slot of the stack's counters (a stack with a member cap is
//! tagged by its workspace: validation refuses one that also pools by
//! organisation), and one `charge_stack` call reads it with them. The
//! script's `cap` operation sets it (no expiry) or deletes it; the script
//! applies it as [`apply`] does, and answers the record it read, so the
//! filter decides again with [`apply`] itself.

use crate::config::{Class, Config, Limits, Scope};
use crate::counter::Counter;
use crate::identity::{Caller, ScopeKind};
use crate::store::{compare_and_swap, CounterStore, GiveUp, StoreError};
use std::borrow::Cow;

/// The window code of a member cap's record: no window of a counter has it.
pub const MEMBER_CAP_CODE: u32 = 0x7fff_fffe;

/// The store key of `user`'s cap in `workspace` for `class`: `c` is no
/// scope's letter, and `\u{1f}` is in no id, so no counter has this key.
pub fn key(class: &Class, workspace: &str, user: &str) -> String {
    format!("{}:c:{workspace}\u{1f}{user}", class.name)
}

/// The Redis key of `user`'s cap in `workspace` for `class`: the key of the
/// workspace's counter of the class (`{w:<workspace>}` is its hash tag, as
/// for every counter of a stack pooled by that workspace), then `@cap`,
/// `\u{1f}` and the member (`u:<user>`). A stacked counter's key goes on
/// with `@<window code>.<scope letter>`, and a one-limit counter's ends at
/// the class (whose name holds no `@`), so no counter or marker has this
/// key. It names no window or tier: like [`key`], one cap per member and
/// class, whichever tier's stack it caps.
pub fn redis_key(prefix: &str, class: &Class, workspace: &str, user: &str) -> String {
    let pool = crate::redis::key(prefix, &class.name, ScopeKind::Workspace, workspace);
    format!("{pool}@cap\u{1f}{}:{user}", ScopeKind::User.letter())
}

/// Where `user`'s cap in `workspace` for `class` is kept in the store
/// requests are charged to: Redis in its exact mode ([`redis_key`]), else
/// this Envoy's shared data ([`key`]).
pub fn store_key(config: &Config, class: &Class, workspace: &str, user: &str) -> String {
    match config.counters.exact_redis() {
        Some(redis) => redis_key(&redis.key_prefix, class, workspace, user),
        None => key(class, workspace, user),
    }
}

/// Where `caller`'s cap for a cell of `class` holding `stack` is kept: a
/// stack with an `admin_cap` limit, and a caller named in a workspace.
pub fn key_of(config: &Config, caller: &Caller, class: &Class, stack: &[Limits]) -> Option<String> {
    match (&caller.workspace, caller.anonymous) {
        (Some(workspace), false) if stack.iter().any(|l| l.admin_cap) => {
            Some(store_key(config, class, workspace, &caller.id))
        }
        _ => None,
    }
}

/// Every cap `caller`'s plan may have (one per class with an `admin_cap`
/// limit): what the usage endpoint reads with the counters.
pub fn keys_of(config: &Config, caller: &Caller) -> Vec<String> {
    let Some(tier) = config.tier(caller.tier) else { return Vec::new() };
    config
        .classes
        .iter()
        .zip(&tier.cells)
        .filter_map(|(class, cell)| key_of(config, caller, class, cell.limits()))
        .collect()
}

/// The cap a record holds, if set.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    of_record(Counter::decode(bytes))
}

/// The cap a record holds, if set: one of [`MEMBER_CAP_CODE`] whose window
/// has not ended (the script reads a record from Redis by the same rule).
pub fn of_record(record: Option<Counter>) -> Option<u64> {
    record.filter(|c| c.window_code == MEMBER_CAP_CODE && c.window_end > c.window_start).map(|c| c.used)
}

/// Reads the cap at `key`.
pub fn read<S: CounterStore + ?Sized>(store: &S, key: &str) -> Result<Option<u64>, GiveUp> {
    match store.get(key) {
        Ok(found) => Ok(found.and_then(|(bytes, _)| decode(&bytes))),
        Err(StoreError::Full) => Err(GiveUp::Full),
        Err(StoreError::Unavailable(why)) => Err(GiveUp::Unavailable(why)),
        Err(StoreError::CasMismatch) => Err(GiveUp::Unavailable("the store changed under a read".into())),
    }
}

/// Sets (`Some`) or clears (`None`) the cap at `key`.
pub fn write<S: CounterStore + ?Sized>(config: &Config, store: &S, key: &str, cap: Option<u64>) -> Result<(), GiveUp> {
    let record = match cap {
        Some(units) => Counter {
            window_code: MEMBER_CAP_CODE,
            window_start: 0,
            window_end: i64::MAX,
            used: units,
            ..Counter::default()
        },
        // An ended window and no grant: the table may reclaim it.
        None => Counter { window_code: MEMBER_CAP_CODE, ..Counter::default() },
    };
    compare_and_swap(store, key, config.counters.cas_attempts, |_| (Some(record.encode().to_vec()), ()))
}

/// The most a cap may be in a cell: its pool's hard limit of the same
/// window (or its widest pool's), so a cap never lets a member past it.
pub fn ceiling(stack: &[Limits]) -> Option<u64> {
    let capped = stack.iter().find(|l| l.admin_cap)?;
    let pools = stack.iter().filter(|l| l.scope == Scope::Workspace);
    pools.clone().find(|p| p.window == capped.window).or_else(|| pools.max_by_key(|p| p.hard)).map(|p| p.hard)
}

/// The stack as `cap` leaves it for one member: the `admin_cap` limit's hard
/// limit replaced (its warning levels and soft limit scaled to it).
pub fn apply(stack: &[Limits], cap: Option<u64>) -> Cow<'_, [Limits]> {
    let Some(cap) = cap else { return Cow::Borrowed(stack) };
    if !stack.iter().any(|l| l.admin_cap) {
        return Cow::Borrowed(stack);
    }
    let ceiling = ceiling(stack).unwrap_or(cap);
    let hard = cap.min(ceiling);
    Cow::Owned(
        stack
            .iter()
            .map(|l| {
                if !l.admin_cap {
                    return l.clone();
                }
                let scale = |level: u64| -> u64 {
                    let scaled = u128::from(level) * u128::from(hard) / u128::from(l.hard.max(1));
                    u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
                };
                let mut levels: Vec<u64> = l.warn_levels.iter().map(|w| scale(*w)).filter(|w| *w < hard).collect();
                levels.dedup();
                Limits { hard, soft: l.soft.map(scale).filter(|s| *s < hard), warn_levels: levels, ..l.clone() }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::{describe, hash_tag, marker, SCRIPT};

    fn class(name: &str) -> Class {
        let doc = format!(
            r#"{{"identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "t"}},
                "classes": [{{"name": "{name}"}}], "tiers": {{"t": {{"limits": {{"{name}": {{"hard": 1, "window": "day"}}}}}}}}}}"#
        );
        match Config::from_json(doc.as_bytes()) {
            Ok(config) => config.classes[0].clone(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_script_knows_a_caps_record_by_the_same_code() {
        assert!(SCRIPT.contains(&format!("local CAP_CODE = {MEMBER_CAP_CODE}\n")));
    }

    #[test]
    fn a_cap_in_redis_shares_its_workspaces_slot_and_no_counters_key() {
        let drafts = class("drafts");
        // Ids with the characters a hash tag is cut at.
        for (workspace, user) in [("acme", "ada"), ("a}b", "c{d"), ("{w", "}"), ("x", "y@1.u")] {
            let cap = redis_key("q:", &drafts, workspace, user);
            let pool = crate::redis::key("q:", "drafts", ScopeKind::Workspace, workspace);
            let member = format!("{pool}@3.u\u{1f}u:{user}");
            assert_eq!(hash_tag(&cap), hash_tag(&pool), "{cap}");
            assert_ne!(hash_tag(&cap), cap, "a tag, not the whole key");
            for counter in [&pool, &member, &format!("{pool}@3.w")] {
                assert_ne!(&cap, counter);
                assert_ne!(cap, marker(counter, "0a0b0c0d0e0f.1"));
            }
            // Not a counter: nothing reads it as one.
            assert_eq!(describe(&cap, "q:"), None, "{cap}");
        }
        assert_eq!(redis_key("q:", &drafts, "acme", "ada"), "q:{w:acme}drafts@cap\u{1f}u:ada");
        assert_ne!(redis_key("q:", &drafts, "acme", "ada"), redis_key("q:", &class("draft"), "acme", "ada"));
    }
}
