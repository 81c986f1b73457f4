//! Where counters live: Envoy's shared data (a bounded table) or Redis, and
//! what happens when the store fails.

use super::error::ConfigError;
use super::raw::{RawCounters, RawRedis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct CounterConfig {
    pub cas_attempts: u32,
    /// The most counters kept in shared data at once (see `table.rs`).
    pub max_counters: u32,
    pub on_error: FailPolicy,
    /// `None`: Envoy's shared data (this Envoy only).
    pub redis: Option<RedisStore>,
    /// What places counters in the table's buckets: not part of the JSON;
    /// the filter sets the process's own (see [`crate::table::Seed`]).
    pub seed: crate::table::Seed,
}

/// Counters in Redis, reached through an HTTP front (see `redis.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub authorization: Option<String>,
    pub timeout_ms: u64,
    pub key_prefix: String,
    /// SHA-1 of the script, the name EVALSHA calls it by.
    pub script_sha1: String,
    /// Approximate mode: admit from the local counters and send deltas to
    /// Redis every this many milliseconds. `None`: every request waits for Redis.
    pub sync_ms: Option<u64>,
    /// Lease mode: admit from blocks of units reserved in Redis (see `lease.rs`).
    pub lease: Option<Lease>,
}

/// The lease mode's settings: how long a block may be spent and how large
/// one may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// How long after Redis granted it a block may be spent (and an Envoy
    /// cut off from Redis admits on what it holds), in milliseconds.
    pub ms: u64,
    /// The most one block may take of the units still unreserved, in parts
    /// per million.
    pub fraction_ppm: u64,
    /// The most units one block may hold, whatever the fraction allows.
    pub max_units: Option<u64>,
}

/// Defaults and bounds of the lease mode's settings.
pub const DEFAULT_LEASE_MS: u64 = 5_000;
pub const DEFAULT_LEASE_FRACTION: f64 = 0.1;

impl CounterConfig {
    /// How the shared-data table of counters is laid out.
    pub fn layout(&self) -> crate::table::Layout {
        crate::table::Layout::seeded(self.max_counters, self.seed)
    }

    /// The counters in `store` (Envoy's shared data, or a test's) as the
    /// bounded table reads and writes them, for one operation at `now_ms`.
    pub fn table<'a, S: crate::store::CounterStore + ?Sized>(
        &self,
        store: &'a S,
        now_ms: i64,
    ) -> crate::table::Table<'a, S> {
        crate::table::Table::new(store, self.layout(), now_ms.div_euclid(1000))
    }

    /// The Redis store that holds the counters requests are charged to:
    /// the exact mode (every request waits for it) and the lease mode (whose
    /// blocks are reserved from those counters). Counter keys are then
    /// Redis keys, and corrections and the usage endpoint go to Redis.
    pub fn exact_redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref().filter(|r| r.sync_ms.is_none())
    }

    /// The lease mode's store and settings.
    pub fn lease(&self) -> Option<(&RedisStore, Lease)> {
        let redis = self.redis.as_ref()?;
        Some((redis, redis.lease?))
    }

    /// The Redis store the local counters are synced to (approximate mode).
    pub fn approximate_redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref().filter(|r| r.sync_ms.is_some())
    }
}

pub const DEFAULT_CAS_ATTEMPTS: u32 = 32;

pub const DEFAULT_MAX_COUNTERS: u32 = 1_000_000;

/// Bounds of `counters.max_counters`: one bucket, and a table of about 13 GB at worst.
pub const MIN_MAX_COUNTERS: u32 = crate::table::SLOTS;

pub const MAX_MAX_COUNTERS: u32 = 100_000_000;

pub(super) fn check_counters(raw: Option<&RawCounters>) -> Result<CounterConfig, ConfigError> {
    Ok(match raw {
        None => CounterConfig {
            cas_attempts: DEFAULT_CAS_ATTEMPTS,
            max_counters: DEFAULT_MAX_COUNTERS,
            on_error: FailPolicy::Open,
            redis: None,
            seed: crate::table::Seed::ZERO,
        },
        Some(c) => CounterConfig {
            seed: crate::table::Seed::ZERO,
            redis: check_store(c.store.as_deref(), c.redis.as_ref())?,
            cas_attempts: match c.cas_attempts {
                None => DEFAULT_CAS_ATTEMPTS,
                Some(n @ 1..=1000) => n,
                Some(n) => {
                    return Err(ConfigError::new(
                        "counters.cas_attempts",
                        format!("must be between 1 and 1000, got {n}"),
                    ))
                }
            },
            max_counters: match c.max_counters {
                None => DEFAULT_MAX_COUNTERS,
                Some(n) => u32::try_from(n)
                    .ok()
                    .filter(|n| (MIN_MAX_COUNTERS..=MAX_MAX_COUNTERS).contains(n))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "counters.max_counters",
                            format!("must be between {MIN_MAX_COUNTERS} and {MAX_MAX_COUNTERS}, got {n}"),
                        )
                    })?,
            },
            on_error: match c.on_error.as_deref() {
                None | Some("fail_open") => FailPolicy::Open,
                Some("fail_closed") => FailPolicy::Closed,
                Some(other) => {
                    return Err(ConfigError::new(
                        "counters.on_error",
                        format!("must be \"fail_open\" or \"fail_closed\", got \"{other}\""),
                    ))
                }
            },
        },
    })
}

fn check_store(store: Option<&str>, redis: Option<&RawRedis>) -> Result<Option<RedisStore>, ConfigError> {
    let r = match (store, redis) {
        (None | Some("shared_data"), None) => return Ok(None),
        (None | Some("shared_data"), Some(_)) => {
            return Err(ConfigError::new("counters.redis", "is only read with \"store\": \"redis\""))
        }
        (Some("redis"), Some(r)) => r,
        (Some("redis"), None) => {
            return Err(ConfigError::new("counters.redis", "is required with \"store\": \"redis\""))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                "counters.store",
                format!("must be \"shared_data\" or \"redis\", got \"{other}\""),
            ))
        }
    };
    let at = |f: &str| format!("counters.redis.{f}");
    if r.cluster.is_empty() || r.cluster.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ConfigError::new(at("cluster"), "must name an Envoy cluster"));
    }
    let path = r.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        return Err(ConfigError::new(at("path"), format!("must start with '/', got \"{path}\"")));
    }
    if r.authorization.as_deref().is_some_and(|a| a.chars().any(char::is_control)) {
        return Err(ConfigError::new(at("authorization"), "must not contain control characters"));
    }
    let timeout_ms = match r.timeout_ms {
        None => 200,
        Some(v @ 1..=10_000) => v,
        Some(v) => return Err(ConfigError::new(at("timeout_ms"), format!("must be between 1 and 10000, got {v}"))),
    };
    let key_prefix = r.key_prefix.clone().unwrap_or_else(|| "quota:".into());
    if key_prefix.len() > 64 || key_prefix.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        return Err(ConfigError::new(at("key_prefix"), "must be at most 64 characters, without '{', '}' or controls"));
    }
    let lease = check_lease(r.mode.as_deref(), r)?;
    let sync_ms = match (r.mode.as_deref(), r.sync_ms) {
        (None | Some("exact" | "lease"), None) => None,
        (None | Some("exact" | "lease"), Some(_)) => {
            return Err(ConfigError::new(at("sync_ms"), "is only read with \"mode\": \"approximate\""))
        }
        (Some("approximate"), None) => Some(100),
        (Some("approximate"), Some(v @ 10..=60_000)) => Some(v),
        (Some("approximate"), Some(v)) => {
            return Err(ConfigError::new(at("sync_ms"), format!("must be between 10 and 60000, got {v}")))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                at("mode"),
                format!("must be \"exact\", \"lease\" or \"approximate\", got \"{other}\""),
            ))
        }
    };
    Ok(Some(RedisStore {
        sync_ms,
        lease,
        cluster: r.cluster.clone(),
        path,
        authority: r.authority.clone().unwrap_or_else(|| r.cluster.clone()),
        authorization: r.authorization.clone(),
        timeout_ms,
        key_prefix,
        script_sha1: crate::redis::sha1_hex(crate::redis::SCRIPT.as_bytes()),
    }))
}

/// The lease mode's settings (`mode: "lease"`), `None` in another mode,
/// where they are refused.
fn check_lease(mode: Option<&str>, r: &RawRedis) -> Result<Option<Lease>, ConfigError> {
    let at = |f: &str| format!("counters.redis.{f}");
    if mode != Some("lease") {
        for (name, given) in [
            ("lease_ms", r.lease_ms.is_some()),
            ("lease_fraction", r.lease_fraction.is_some()),
            ("lease_max_units", r.lease_max_units.is_some()),
        ] {
            if given {
                return Err(ConfigError::new(at(name), "is only read with \"mode\": \"lease\""));
            }
        }
        return Ok(None);
    }
    let ms = match r.lease_ms {
        None => DEFAULT_LEASE_MS,
        Some(v @ 100..=600_000) => v,
        Some(v) => return Err(ConfigError::new(at("lease_ms"), format!("must be between 100 and 600000, got {v}"))),
    };
    let fraction = r.lease_fraction.unwrap_or(DEFAULT_LEASE_FRACTION);
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(ConfigError::new(at("lease_fraction"), format!("must be above 0 and at most 1, got {fraction}")));
    }
    // Whole parts per million, at least one: what the script computes with.
    let fraction_ppm = ((fraction * 1_000_000.0).round() as u64).clamp(1, 1_000_000);
    let max_units = match r.lease_max_units {
        None => None,
        Some(v @ 1..=crate::units::MAX_UNITS) => Some(v),
        Some(v) => {
            return Err(ConfigError::new(
                at("lease_max_units"),
                format!("must be between 1 and {}, got {v}", crate::units::MAX_UNITS),
            ))
        }
    };
    Ok(Some(Lease { ms, fraction_ppm, max_units }))
}
