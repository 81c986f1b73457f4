//! Member caps set by a workspace admin: inside a team's pool, one member's
//! own hard limit for a class, kept across windows until cleared. It
//! replaces the hard limit of the cell's `admin_cap` limit (a `user` limit
//! stacked with a `workspace` pool) for that member, and is never above the
//! pool's hard limit, so no cap lets a member past the pool.
//!
//! A cap lives in the counter store beside the counters, as a record the
//! table never reclaims while it is set ([`MEMBER_CAP_CODE`], an endless
//! window); clearing it writes an ended record the table may reclaim.

use crate::config::{Class, Config, Limits, Scope};
use crate::counter::Counter;
use crate::store::{compare_and_swap, CounterStore, GiveUp, StoreError};
use std::borrow::Cow;

/// The window code of a member cap's record: no window of a counter has it.
pub const MEMBER_CAP_CODE: u32 = 0x7fff_fffe;

/// The store key of `user`'s cap in `workspace` for `class`: `c` is no
/// scope's letter, and `\u{1f}` is in no id, so no counter has this key.
pub fn key(class: &Class, workspace: &str, user: &str) -> String {
    format!("{}:c:{workspace}\u{1f}{user}", class.name)
}

/// The cap a record holds, if set.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    Counter::decode(bytes).filter(|c| c.window_code == MEMBER_CAP_CODE && c.window_end > c.window_start).map(|c| c.used)
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
