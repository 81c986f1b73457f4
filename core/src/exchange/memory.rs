//! A [`Host`] in memory: a settable clock, a [`MemoryStore`] for shared
//! data (or any other [`CounterStore`]: [`MemoryHost::with_store`]),
//! properties from a list, and every [`Note`] kept in order. What the
//! simulator, the fuzzer and the tests drive an [`Exchange`](super::Exchange) with.

use super::{Host, Level, Note};
use crate::config::Config;
use crate::counter::Counter;
use crate::engine::Decision;
use crate::identity::{identify, Caller, IdentityError};
use crate::request::{Properties, RequestHead};
use crate::store::{CounterStore, MemoryStore};
use crate::usage_limit::{UsageLimiter, UsageRead};

/// A [`Note`] as kept: owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Noted {
    Decided {
        caller: Caller,
        decision: Box<Decision>,
    },
    IdentityRefused(IdentityError),
    /// The unreadable body's code.
    BodyRefused(&'static str),
    UsageLimited,
    StoreError(String),
    Script {
        cached: bool,
    },
    Mismatch {
        key: String,
        script: Option<Counter>,
        core: Option<Counter>,
    },
    /// The Redis key synced and the delta.
    Sync {
        key: String,
        delta: i64,
    },
    Adjust {
        key: String,
        window_start: i64,
        delta: i64,
        most: u64,
    },
    /// The lease mode: a renewal of this counter's block asked for.
    Renew {
        key: String,
    },
    /// The lease mode: Redis granted units of this counter.
    Leased {
        key: String,
    },
    Cancel {
        key: String,
        id: String,
    },
    Log {
        level: Level,
        line: String,
    },
    /// The upstream's busy status.
    UpstreamBusy {
        status: u16,
    },
}

/// Properties looked up in a list of (path, value).
#[derive(Debug, Default, Clone)]
pub struct PropertyList(pub Vec<(Vec<String>, Vec<u8>)>);

impl Properties for PropertyList {
    fn property(&self, path: &[String]) -> Option<Vec<u8>> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone())
    }
}

/// A host in memory; its shared data is a [`MemoryStore`] unless it is
/// built [`with_store`](MemoryHost::with_store) (a store that fails on
/// purpose, a borrowed one).
#[derive(Debug)]
pub struct MemoryHost<S = MemoryStore> {
    pub now_ms: i64,
    /// Shared data.
    pub store: S,
    pub properties: PropertyList,
    /// The caller every request is sent by, whatever its headers say (the
    /// simulator's `--user`); `None`: the config's identity sources decide.
    pub caller: Option<Caller>,
    /// The usage endpoint's budgets; `None`: unlimited.
    pub usage_reads: Option<UsageLimiter>,
    /// Whether Redis is believed to hold the script (kept up to date from
    /// the exchange's notes, as the filter keeps it).
    pub script_cached: bool,
    ids: u64,
    pub notes: Vec<Noted>,
}

impl Default for MemoryHost {
    /// At time 0, with a store that is empty and a script Redis is not
    /// believed to hold (what `#[derive(Default)]` gave).
    fn default() -> Self {
        MemoryHost { script_cached: false, ..MemoryHost::with_store(0, MemoryStore::default()) }
    }
}

impl MemoryHost {
    pub fn at(now_ms: i64) -> MemoryHost {
        MemoryHost::with_store(now_ms, MemoryStore::default())
    }
}

impl<S> MemoryHost<S> {
    /// A host at `now_ms` whose shared data is `store`; Redis is believed
    /// to hold the script.
    pub fn with_store(now_ms: i64, store: S) -> MemoryHost<S> {
        MemoryHost {
            now_ms,
            store,
            properties: PropertyList::default(),
            caller: None,
            usage_reads: None,
            script_cached: true,
            ids: 0,
            notes: Vec::new(),
        }
    }

    /// The decisions noted so far, in order.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.notes.iter().filter_map(|n| match n {
            Noted::Decided { decision, .. } => Some(decision.as_ref()),
            _ => None,
        })
    }
}

impl<S: CounterStore> Host for MemoryHost<S> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn identify(&self, config: &Config, head: &RequestHead) -> Result<Caller, IdentityError> {
        match &self.caller {
            Some(c) => Ok(c.clone()),
            None => identify(config, head, &self.properties),
        }
    }

    fn shared_data(&self) -> &dyn CounterStore {
        &self.store
    }

    fn usage_read(&mut self, caller: &Caller, now_ms: i64) -> UsageRead {
        match &mut self.usage_reads {
            Some(limiter) => limiter.read(caller, now_ms),
            None => UsageRead::Answer,
        }
    }

    fn charge_id(&mut self) -> String {
        self.ids += 1;
        format!("m.{}", self.ids)
    }

    fn script_cached(&self) -> bool {
        self.script_cached
    }

    fn note(&mut self, note: Note<'_>) {
        let kept = match note {
            Note::Decided { caller, decision } => {
                Noted::Decided { caller: caller.clone(), decision: Box::new(decision.clone()) }
            }
            Note::IdentityRefused(e) => Noted::IdentityRefused(e.clone()),
            Note::BodyRefused { why, .. } => Noted::BodyRefused(why.code()),
            Note::UsageLimited => Noted::UsageLimited,
            Note::StoreError(why) => Noted::StoreError(why.to_string()),
            Note::Script { cached } => {
                self.script_cached = cached;
                Noted::Script { cached }
            }
            Note::Mismatch { key, script, core } => Noted::Mismatch { key: key.to_string(), script, core },
            Note::Sync { target, delta } => Noted::Sync { key: target.redis_key.clone(), delta },
            Note::Adjust { key, window_start, delta, most } => Noted::Adjust { key, window_start, delta, most },
            Note::Cancel { key, id } => Noted::Cancel { key, id },
            Note::Renew(target) => Noted::Renew { key: target.key },
            Note::Leased(target) => Noted::Leased { key: target.key },
            Note::Log { level, line } => Noted::Log { level, line },
            Note::UpstreamBusy { status, .. } => Noted::UpstreamBusy { status },
        };
        self.notes.push(kept);
    }
}
