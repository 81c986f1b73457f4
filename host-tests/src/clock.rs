//! The host's wall clock: set and advanced by the test, read by the guest through
//! `proxy_get_current_time_nanoseconds` and WASI `clock_time_get`.
//!
//! All VMs of one [`Host`](crate::Host) share one clock, like Envoy's workers share
//! the machine's time. Includes a small RFC 3339 converter so tests can say
//! `"2024-02-28T23:59:59Z"` instead of a number.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// A manual clock in nanoseconds since the Unix epoch (UTC). Cloning shares it.
#[derive(Clone, Debug)]
pub struct Clock {
    nanos: Arc<AtomicU64>,
}

impl Clock {
    pub fn new(unix_nanos: u64) -> Clock {
        Clock { nanos: Arc::new(AtomicU64::new(unix_nanos)) }
    }

    pub fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }

    pub fn set_nanos(&self, unix_nanos: u64) {
        self.nanos.store(unix_nanos, Ordering::SeqCst);
    }

    /// Moves the clock forward (saturating at the end of u64 time, year 2554).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(by)));
    }

    /// The current time as RFC 3339 UTC, e.g. `2024-02-29T00:00:00Z`.
    pub fn now_rfc3339(&self) -> String {
        format_rfc3339(self.now_nanos())
    }
}

/// Why an RFC 3339 timestamp was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeParseError {
    pub input: String,
    pub reason: &'static str,
}

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RFC 3339 timestamp {:?}: {} (expected e.g. 2024-02-28T23:59:59Z)", self.input, self.reason)
    }
}

impl std::error::Error for TimeParseError {}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` into Unix nanoseconds.
/// Times before 1970 are refused: the ABI clock is unsigned.
pub fn parse_rfc3339(input: &str) -> Result<u64, TimeParseError> {
    let fail = |reason| TimeParseError { input: input.to_string(), reason };
    let b = input.as_bytes();
    if b.len() < 20 {
        return Err(fail("too short"));
    }
    let num = |from: usize, len: usize| -> Result<i64, TimeParseError> {
        let digits = b.get(from..from + len).ok_or_else(|| fail("too short"))?;
        digits.iter().try_fold(0i64, |acc, d| {
            if d.is_ascii_digit() {
                Ok(acc * 10 + i64::from(d - b'0'))
            } else {
                Err(fail("expected a digit"))
            }
        })
    };
    let expect = |at: usize, allowed: &[u8], reason| -> Result<(), TimeParseError> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(fail(reason)),
        }
    };
    let year = num(0, 4)?;
    expect(4, b"-", "expected '-' after the year")?;
    let month = num(5, 2)?;
    expect(7, b"-", "expected '-' after the month")?;
    let day = num(8, 2)?;
    expect(10, b"Tt ", "expected 'T' between date and time")?;
    let hour = num(11, 2)?;
    expect(13, b":", "expected ':' after the hour")?;
    let minute = num(14, 2)?;
    expect(16, b":", "expected ':' after the minutes")?;
    let second = num(17, 2)?;

    if !(1..=12).contains(&month) {
        return Err(fail("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail("day out of range for that month"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("time of day out of range"));
    }

    let mut at = 19;
    let mut fraction_nanos: u64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        let mut scale = NANOS_PER_SECOND / 10;
        while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
            fraction_nanos += u64::from(d - b'0') * scale;
            scale /= 10;
            at += 1;
        }
        if at == start {
            return Err(fail("expected digits after '.'"));
        }
    }
    let offset_seconds = match b.get(at) {
        Some(b'Z') | Some(b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            let hours = num(at + 1, 2)?;
            expect(at + 3, b":", "expected ':' in the UTC offset")?;
            let minutes = num(at + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return Err(fail("UTC offset out of range"));
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return Err(fail("expected 'Z' or a UTC offset like +02:00 at the end")),
    };

    let days = days_from_civil(year, month, day);
    let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_seconds;
    let seconds = u64::try_from(seconds).map_err(|_| fail("before 1970-01-01T00:00:00Z"))?;
    seconds
        .checked_mul(NANOS_PER_SECOND)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(|| fail("too far in the future"))
}

/// Formats Unix nanoseconds as RFC 3339 UTC; the fraction is shown only when non-zero.
pub fn format_rfc3339(unix_nanos: u64) -> String {
    let seconds = unix_nanos / NANOS_PER_SECOND;
    let fraction = unix_nanos % NANOS_PER_SECOND;
    // u64 seconds / 86400 always fits in i64.
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX);
    let rem = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if fraction == 0 {
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    } else {
        let frac = format!("{fraction:09}");
        let frac = frac.trim_end_matches('0');
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{frac}Z")
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, counted through 400-year
/// eras that start on March 1st so the leap day falls at the end of the year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0 ... February = 11
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn epoch_is_zero() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn known_instants_match_unix_time() {
        let s = |t: &str| parse_rfc3339(t).unwrap() / NANOS_PER_SECOND;
        assert_eq!(s("2000-03-01T00:00:00Z"), 951_868_800);
        assert_eq!(s("2024-02-29T00:00:00Z"), 1_709_164_800);
        assert_eq!(s("2024-02-28T23:59:59Z"), 1_709_164_799);
        assert_eq!(s("2038-01-19T03:14:08Z"), 2_147_483_648);
        assert_eq!(s("2100-03-01T00:00:00Z"), 4_107_542_400);
    }

    #[test]
    fn offsets_and_fractions_are_honoured() {
        let utc = parse_rfc3339("2024-03-01T00:30:00Z").unwrap();
        assert_eq!(parse_rfc3339("2024-03-01T02:30:00+02:00").unwrap(), utc);
        assert_eq!(parse_rfc3339("2024-02-29T19:30:00-05:00").unwrap(), utc);
        assert_eq!(parse_rfc3339("2024-03-01T00:30:00.25Z").unwrap(), utc + 250_000_000);
        assert_eq!(format_rfc3339(utc + 250_000_000), "2024-03-01T00:30:00.25Z");
    }

    #[test]
    fn leap_days_exist_only_in_leap_years() {
        assert!(parse_rfc3339("2024-02-29T12:00:00Z").is_ok());
        assert!(parse_rfc3339("2000-02-29T12:00:00Z").is_ok());
        assert!(parse_rfc3339("2023-02-29T12:00:00Z").is_err());
        assert!(parse_rfc3339("1900-02-29T12:00:00Z").is_err());
        assert!(parse_rfc3339("2100-02-29T12:00:00Z").is_err());
    }

    #[test]
    fn malformed_input_is_refused_with_a_reason() {
        for bad in [
            "",
            "2024-02-28",
            "2024-02-28T23:59:59",
            "2024-13-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+0200",
            "1969-12-31T23:59:59Z",
            "2024-01-01T00:00:00.Z",
        ] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(err.to_string().contains("invalid RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_day_round_trips_for_five_centuries() {
        for days in 0..(500 * 366) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn advancing_crosses_a_leap_day_and_a_month() {
        let clock = Clock::new(parse_rfc3339("2024-02-28T23:59:59Z").unwrap());
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_rfc3339(), "2024-02-29T00:00:00Z");
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(clock.now_rfc3339(), "2024-03-01T00:00:00Z");
        let shared = clock.clone();
        shared.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_rfc3339(), "2024-03-01T00:00:01.5Z");
    }
}
