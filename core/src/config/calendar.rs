//! Time: where calendar windows start (UTC offset, first day of the week)
//! and how a window is written.

use super::error::ConfigError;
use super::identity::check_sources;
use super::raw::RawCalendar;
use super::source::Source;
use crate::window::{Alignment, CalendarUnit, WindowSpec};

#[derive(Debug, Clone)]
pub struct CalendarConfig {
    pub alignment: Alignment,
    /// Trusted sources of a per-user UTC offset (`+05:30`).
    pub user_utc_offset: Vec<Source>,
}

pub(super) fn check_calendar(raw: Option<&RawCalendar>) -> Result<CalendarConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(CalendarConfig { alignment: Alignment::default(), user_utc_offset: Vec::new() });
    };
    let utc_offset_minutes = match &raw.utc_offset {
        None => 0,
        Some(text) => parse_utc_offset(text).ok_or_else(|| {
            ConfigError::new(
                "calendar.utc_offset",
                format!("\"{text}\" is not a UTC offset like \"+05:30\" or \"-08:00\""),
            )
        })?,
    };
    let week_start = match raw.week_starts_on.as_deref() {
        None => 0,
        Some(day) => WEEKDAYS.iter().position(|d| *d == day.to_ascii_lowercase()).ok_or_else(|| {
            ConfigError::new("calendar.week_starts_on", format!("\"{day}\" is not a day of the week, e.g. \"monday\""))
        })? as u32,
    };
    Ok(CalendarConfig {
        alignment: Alignment { utc_offset_minutes, week_start },
        user_utc_offset: check_sources("calendar.user_utc_offset", &raw.user_utc_offset)?,
    })
}

const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// The longest first-use window: a year.
const MAX_FIRST_USE_SECONDS: i64 = 366 * 86_400;

/// Parses a window: a calendar unit (`minute`, `hour`, `day`, `week`,
/// `month`) or a first-use length (`90s`, `30m`, `5h`, `7d`).
pub fn parse_window(text: &str) -> Result<WindowSpec, String> {
    let calendar = match text {
        "minute" => Some(CalendarUnit::Minute),
        "hour" => Some(CalendarUnit::Hour),
        "day" => Some(CalendarUnit::Day),
        "week" => Some(CalendarUnit::Week),
        "month" => Some(CalendarUnit::Month),
        _ => None,
    };
    if let Some(unit) = calendar {
        return Ok(WindowSpec::Calendar(unit));
    }
    let bad = || {
        format!("\"{text}\" is not a window: use minute, hour, day, week, month, or a length like \"90s\", \"30m\", \"5h\", \"7d\"")
    };
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = (text.get(..split).ok_or_else(bad)?, text.get(split..).ok_or_else(bad)?);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = n
        .checked_mul(scale)
        .filter(|s| *s > 0 && *s <= MAX_FIRST_USE_SECONDS)
        .ok_or_else(|| format!("\"{text}\" must be between 1 second and 366 days"))?;
    Ok(WindowSpec::FirstUse { seconds })
}

/// Parses `+05:30`, `-0800`, `+9`, `Z` or `UTC` into minutes east of UTC.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text == "Z" || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => (rest.get(..2)?, rest.get(2..)?),
        None => (rest, "0"),
    };
    if h.is_empty()
        || h.len() > 2
        || m.is_empty()
        || m.len() > 2
        || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 60 + m))
}
