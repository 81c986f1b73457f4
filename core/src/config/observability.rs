//! What the filter reports about itself: metrics, event logs, how events
//! name the caller, and the analytics sink.

use super::error::ConfigError;
use super::raw::RawObservability;

/// What the filter reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observability {
    pub metrics: bool,
    pub log_events: bool,
    pub ids: IdPolicy,
    pub analytics: Option<Analytics>,
    /// Write a ledger record per classified request into the filter state
    /// access logs read (`observability.ledger`).
    pub ledger: bool,
    /// POST each ledger record to the analytics cluster (`observability.ledger_analytics`).
    pub ledger_analytics: bool,
    /// Events a worker writes a second for callers without an identity
    /// (see `event_budget.rs`); 0: none.
    pub unidentified_events_per_second: u32,
}

/// How events name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPolicy {
    Plain,
    /// A salted 64-bit hash, hex: stable per id, not reversible by reading logs.
    Hashed {
        salt: String,
    },
    Omitted,
}

/// Where events are POSTed (an Envoy cluster), and the bounds that keep it
/// from ever touching request latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analytics {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub max_in_flight: u32,
    pub max_queue: u32,
    pub flush_ms: u64,
}

pub const DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND: u32 = 10;

pub(super) fn check_observability(raw: Option<&RawObservability>) -> Result<Observability, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Observability {
            metrics: true,
            log_events: true,
            ids: IdPolicy::Plain,
            analytics: None,
            ledger: true,
            ledger_analytics: false,
            unidentified_events_per_second: DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND,
        });
    };
    let unidentified_events_per_second = match raw.unidentified_events_per_second {
        None => DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND,
        Some(n @ 0..=10_000) => u32::try_from(n).unwrap_or(10_000),
        Some(n) => {
            return Err(ConfigError::new(
                "observability.unidentified_events_per_second",
                format!("must be between 0 and 10000, got {n}"),
            ))
        }
    };
    let ids = match (raw.ids.as_deref(), &raw.id_salt) {
        (None | Some("plain"), None) => IdPolicy::Plain,
        (Some("omitted"), None) => IdPolicy::Omitted,
        (Some("hashed"), Some(salt)) if salt.len() >= 8 => IdPolicy::Hashed { salt: salt.clone() },
        (Some("hashed"), _) => {
            return Err(ConfigError::new(
                "observability.id_salt",
                "must be at least 8 characters when ids are \"hashed\"",
            ))
        }
        (None | Some("plain" | "omitted"), Some(_)) => {
            return Err(ConfigError::new("observability.id_salt", "only applies with \"ids\": \"hashed\""))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                "observability.ids",
                format!("must be \"plain\", \"hashed\" or \"omitted\", got \"{other}\""),
            ))
        }
    };
    let analytics = match &raw.analytics {
        None => None,
        Some(a) => {
            let at = |f: &str| format!("observability.analytics.{f}");
            if a.cluster.is_empty() || a.cluster.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ConfigError::new(at("cluster"), "must name an Envoy cluster"));
            }
            let path = a.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(ConfigError::new(at("path"), format!("must start with '/', got \"{path}\"")));
            }
            let bounded = |field: &str, value: Option<u64>, default: u64, max: u64| match value {
                None => Ok(default),
                Some(v) if (1..=max).contains(&v) => Ok(v),
                Some(v) => Err(ConfigError::new(at(field), format!("must be between 1 and {max}, got {v}"))),
            };
            Some(Analytics {
                cluster: a.cluster.clone(),
                path,
                authority: a.authority.clone().unwrap_or_else(|| a.cluster.clone()),
                timeout_ms: bounded("timeout_ms", a.timeout_ms, 1000, 60_000)?,
                max_in_flight: bounded("max_in_flight", a.max_in_flight.map(u64::from), 8, 1024)? as u32,
                max_queue: bounded("max_queue", a.max_queue.map(u64::from), 1000, 100_000)? as u32,
                flush_ms: bounded("flush_ms", a.flush_ms, 200, 60_000)?,
            })
        }
    };
    let ledger_analytics = raw.ledger_analytics.unwrap_or(false);
    if ledger_analytics && analytics.is_none() {
        return Err(ConfigError::new(
            "observability.ledger_analytics",
            "needs \"observability.analytics\": the cluster the records are POSTed to",
        ));
    }
    Ok(Observability {
        metrics: raw.metrics.unwrap_or(true),
        log_events: raw.log_events.unwrap_or(true),
        ids,
        analytics,
        ledger: raw.ledger.unwrap_or(true),
        ledger_analytics,
        unidentified_events_per_second,
    })
}

impl Observability {
    /// Whether requests keep a ledger entry: it is written somewhere.
    pub fn keeps_ledger(&self) -> bool {
        self.ledger || self.ledger_analytics
    }
}
