//! Checks shared by every part of the config: plain names, copy text,
//! header names and values, unit counts.

use super::error::{join, ConfigError};
use super::raw::RawHeaderValue;
use crate::units::MAX_UNITS;

/// Names appear in keys, headers and metrics: keep them plain.
pub(super) fn check_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(path, format!("\"{name}\" must be 1 to 64 characters of a-z, 0-9, '_' or '-'")))
    }
}

/// Copy ends up in header values: no control characters, bounded length.
pub(super) fn check_text(path: &str, text: &Option<String>) -> Result<(), ConfigError> {
    match text {
        Some(t) if t.trim().is_empty() || t.len() > 1000 || t.chars().any(char::is_control) => {
            Err(ConfigError::new(path, "must be 1 to 1000 characters without line breaks or control characters"))
        }
        _ => Ok(()),
    }
}

pub(super) fn check_header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        && !name.get(1..).is_some_and(|rest| rest.contains(':'));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ConfigError::new(path, format!("\"{name}\" is not a header name")))
    }
}

pub(super) fn check_header_value(path: &str, raw: &RawHeaderValue) -> Result<(String, String), ConfigError> {
    let name = check_header_name(&join(path, "name"), &raw.name)?;
    if name.starts_with(':') || name == "host" || name == "content-length" {
        return Err(ConfigError::new(join(path, "name"), format!("\"{name}\" cannot be set by the filter")));
    }
    check_text(&join(path, "value"), &Some(raw.value.clone()))?;
    Ok((name, raw.value.clone()))
}

/// Every stored count stays exact in the Redis script's doubles (see `units.rs`).
pub(super) fn at_most_max_units(path: &str, value: Option<u64>) -> Result<(), ConfigError> {
    match value {
        Some(v) if v > MAX_UNITS => Err(ConfigError::new(path, format!("must be at most {MAX_UNITS}, got {v}"))),
        _ => Ok(()),
    }
}
