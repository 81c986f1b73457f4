//! The filter's own endpoints: the usage endpoint and its read budgets, and
//! the admin (grants) endpoint.

use super::error::ConfigError;
use super::raw::{RawAdmin, RawUsageReads};
use crate::path::normalize as normalize_path;

/// The usage endpoint's budgets, per worker (see `usage_limit.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReads {
    /// Reads a minute per caller, after the burst.
    pub per_minute: u32,
    /// Reads a caller may make at once.
    pub burst: u32,
    /// Reads a second, every caller together.
    pub per_worker_per_second: u32,
}

impl Default for UsageReads {
    fn default() -> Self {
        UsageReads { per_minute: 120, burst: 30, per_worker_per_second: 1000 }
    }
}

/// The grants endpoint: only a caller with the secret may add units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub path: String,
    pub secret: String,
}

/// Requests are matched by their normalised path, so the endpoint is
/// normalised too: `/quota/` still answers a request for `/quota/`.
pub(super) fn check_usage_endpoint(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    match raw {
        Some(p) if !p.starts_with('/') => {
            Err(ConfigError::new("usage_endpoint", format!("must be a path starting with '/', got \"{p}\"")))
        }
        other => Ok(other.map(|p| normalize_path(p.as_bytes()))),
    }
}

pub(super) fn check_usage_reads(raw: Option<&RawUsageReads>, has_endpoint: bool) -> Result<UsageReads, ConfigError> {
    let Some(raw) = raw else { return Ok(UsageReads::default()) };
    if !has_endpoint {
        return Err(ConfigError::new("usage_reads", "only applies with a \"usage_endpoint\""));
    }
    let defaults = UsageReads::default();
    let bounded = |field: &str, value: Option<u64>, default: u32, max: u32| match value {
        None => Ok(default),
        Some(v) if (1..=u64::from(max)).contains(&v) => Ok(u32::try_from(v).unwrap_or(max)),
        Some(v) => {
            Err(ConfigError::new(format!("usage_reads.{field}"), format!("must be between 1 and {max}, got {v}")))
        }
    };
    Ok(UsageReads {
        per_minute: bounded("per_minute", raw.per_minute, defaults.per_minute, 60_000)?,
        burst: bounded("burst", raw.burst, defaults.burst, 1000)?,
        per_worker_per_second: bounded(
            "per_worker_per_second",
            raw.per_worker_per_second,
            defaults.per_worker_per_second,
            100_000,
        )?,
    })
}

pub(super) fn check_admin(raw: Option<&RawAdmin>, usage_endpoint: Option<&str>) -> Result<Option<Admin>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if !raw.path.starts_with('/') {
        return Err(ConfigError::new("admin.path", format!("must be a path starting with '/', got \"{}\"", raw.path)));
    }
    let path = normalize_path(raw.path.as_bytes());
    if usage_endpoint == Some(path.as_str()) {
        return Err(ConfigError::new("admin.path", "must differ from usage_endpoint"));
    }
    if raw.secret.len() < 24 || !raw.secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new("admin.secret", "must be at least 24 printable characters without spaces"));
    }
    Ok(Some(Admin { path, secret: raw.secret.clone() }))
}
