//! Civil-calendar arithmetic on Unix time, without a time-zone database.
//!
//! Windows are aligned in a fixed UTC offset, so all we need is the proleptic
//! Gregorian calendar: days since the epoch to (year, month, day) and back.

use crate::decimal::write_padded;
use std::fmt::Write;

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(date: Date) -> i64 {
    let (y, m, d) = (date.year, i64::from(date.month), i64::from(date.day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date { year, month, day }
}

/// Day of the week of a count of days since the epoch: 0 = Monday .. 6 = Sunday.
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday (3 when Monday is 0).
    (days + 3).rem_euclid(7) as u32
}

/// The first day of the month after the one holding `date`.
pub fn first_of_next_month(date: Date) -> Date {
    if date.month == 12 {
        Date { year: date.year + 1, month: 1, day: 1 }
    } else {
        Date { year: date.year, month: date.month + 1, day: 1 }
    }
}

/// Formats Unix seconds as RFC 3339 in UTC, e.g. `2026-11-22T00:00:00Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let mut out = String::with_capacity(20);
    push_rfc3339(&mut out, unix_seconds);
    out
}

/// Appends [`rfc3339`]'s text of `unix_seconds` to `out`.
pub fn push_rfc3339(out: &mut String, unix_seconds: i64) {
    let days = unix_seconds.div_euclid(DAY);
    let secs = unix_seconds.rem_euclid(DAY) as u32;
    let d = civil_from_days(days);
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let Some(year) = u32::try_from(d.year).ok().filter(|y| *y <= 9999) else {
        // Years outside RFC 3339's four digits (never a window's end in
        // practice): as `{:04}` writes them.
        let _ = write!(out, "{:04}-{:02}-{:02}T{hours:02}:{minutes:02}:{seconds:02}Z", d.year, d.month, d.day);
        return;
    };
    let mut text = *b"0000-00-00T00:00:00Z";
    for (range, n) in
        [(0..4, year), (5..7, d.month), (8..10, d.day), (11..13, hours), (14..16, minutes), (17..19, seconds)]
    {
        if let Some(slot) = text.get_mut(range) {
            write_padded(slot, n);
        }
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Formats Unix milliseconds as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-11-22T00:00:00.250Z`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, unix_ms.div_euclid(1000));
    out.pop();
    let mut millis = *b".000Z";
    if let Some(slot) = millis.get_mut(1..4) {
        crate::decimal::write_padded(slot, unix_ms.rem_euclid(1000) as u32);
    }
    out.push_str(std::str::from_utf8(&millis).unwrap_or(".000Z"));
    out
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (what [`rfc3339`] writes) back to Unix seconds.
/// Used by tests and tools; the filter itself never parses times.
pub fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') || b.get(19) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let date = Date { year: num(0..4)?, month: u32::try_from(num(5..7)?).ok()?, day: u32::try_from(num(8..10)?).ok()? };
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    Some(days_from_civil(date) * DAY + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_day_across_four_centuries() {
        for days in -146_097..146_097 {
            assert_eq!(days_from_civil(civil_from_days(days)), days);
        }
    }

    #[test]
    fn knows_leap_days() {
        let leap = days_from_civil(Date { year: 2024, month: 2, day: 29 });
        assert_eq!(civil_from_days(leap + 1), Date { year: 2024, month: 3, day: 1 });
        let not_leap = days_from_civil(Date { year: 2100, month: 2, day: 28 });
        assert_eq!(civil_from_days(not_leap + 1), Date { year: 2100, month: 3, day: 1 });
        let leap_century = days_from_civil(Date { year: 2000, month: 2, day: 28 });
        assert_eq!(civil_from_days(leap_century + 1), Date { year: 2000, month: 2, day: 29 });
    }

    #[test]
    fn epoch_was_a_thursday() {
        assert_eq!(weekday(0), 3);
        // 2026-11-22 is a Sunday.
        assert_eq!(weekday(days_from_civil(Date { year: 2026, month: 11, day: 22 })), 6);
    }

    #[test]
    fn formats_and_parses_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339_utc("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339_utc("2000-02-29 00:00:00"), None);
    }

    #[test]
    fn formats_milliseconds() {
        assert_eq!(rfc3339_ms(1_795_348_800_250), "2026-11-22T12:00:00.250Z");
        assert_eq!(rfc3339_ms(5), "1970-01-01T00:00:00.005Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn writes_what_the_format_string_wrote() {
        fn by_format(t: i64) -> String {
            let (days, secs) = (t.div_euclid(DAY), t.rem_euclid(DAY));
            let d = civil_from_days(days);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year,
                d.month,
                d.day,
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            )
        }
        let mut t = -70_000_000_000i64;
        while t < 400_000_000_000 {
            assert_eq!(rfc3339(t), by_format(t), "{t}");
            t += 7_777_777;
        }
        for t in [-62_167_219_201, -62_167_219_200, -1, 0, 59, 86_399, 253_402_300_799, 253_402_300_800, 1_795_392_000]
        {
            assert_eq!(rfc3339(t), by_format(t), "{t}");
        }
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), "10000-01-01T00:00:00Z");
        assert_eq!(rfc3339(-62_167_219_201), "-001-12-31T23:59:59Z");
    }
}
