//! Where a window starts and when it resets.
//!
//! Calendar windows are aligned to the caller's local calendar (a fixed UTC
//! offset); first-use windows start at the request that opens them.

use crate::calendar::{civil_from_days, days_from_civil, first_of_next_month, weekday, Date, DAY};

/// A calendar unit a window can be aligned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

/// How a counter's window is laid out in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Aligned to the local calendar: resets at the start of the next unit.
    Calendar(CalendarUnit),
    /// A fixed length in seconds, starting at the first request after the
    /// previous window ended.
    FirstUse { seconds: i64 },
}

/// Calendar settings that apply to every calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Alignment {
    /// Offset of the local calendar from UTC, in minutes (e.g. -300 for UTC-05:00).
    pub utc_offset_minutes: i32,
    /// First day of a week: 0 = Monday .. 6 = Sunday.
    pub week_start: u32,
}

/// A half-open interval of Unix seconds: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn contains(&self, unix_seconds: i64) -> bool {
        self.start <= unix_seconds && unix_seconds < self.end
    }

    pub fn length(&self) -> i64 {
        // Saturating: a window read from the store may hold any bounds.
        self.end.saturating_sub(self.start)
    }
}

impl WindowSpec {
    /// The window holding `now` (Unix seconds) for this spec.
    pub fn window_at(&self, now: i64, align: Alignment) -> Window {
        match *self {
            WindowSpec::FirstUse { seconds } => Window { start: now, end: now.saturating_add(seconds) },
            WindowSpec::Calendar(unit) => {
                let offset = i64::from(align.utc_offset_minutes) * 60;
                let local = now + offset;
                let (start, end) = calendar_bounds(unit, local, align.week_start);
                Window { start: start - offset, end: end - offset }
            }
        }
    }

    /// A nominal length in seconds, used for the `w` of `RateLimit-Policy`
    /// when no window is open (a month counts as 30 days there only).
    pub fn nominal_seconds(&self) -> i64 {
        match *self {
            WindowSpec::FirstUse { seconds } => seconds,
            WindowSpec::Calendar(CalendarUnit::Minute) => 60,
            WindowSpec::Calendar(CalendarUnit::Hour) => 3600,
            WindowSpec::Calendar(CalendarUnit::Day) => DAY,
            WindowSpec::Calendar(CalendarUnit::Week) => 7 * DAY,
            WindowSpec::Calendar(CalendarUnit::Month) => 30 * DAY,
        }
    }

    /// A stable code for the spec, stored with each counter so that a config
    /// change of a cell's window starts a new window instead of carrying a
    /// month's usage into a minute.
    pub fn code(&self) -> u32 {
        match *self {
            WindowSpec::Calendar(CalendarUnit::Minute) => 1,
            WindowSpec::Calendar(CalendarUnit::Hour) => 2,
            WindowSpec::Calendar(CalendarUnit::Day) => 3,
            WindowSpec::Calendar(CalendarUnit::Week) => 4,
            WindowSpec::Calendar(CalendarUnit::Month) => 5,
            // Lengths are capped far below 2^31 seconds by validation.
            WindowSpec::FirstUse { seconds } => 0x8000_0000 | (seconds as u32 & 0x7fff_ffff),
        }
    }
}

/// Bounds of the calendar unit holding the local time `local` (seconds).
fn calendar_bounds(unit: CalendarUnit, local: i64, week_start: u32) -> (i64, i64) {
    let floor_to = |len: i64| {
        let start = local.div_euclid(len) * len;
        (start, start + len)
    };
    match unit {
        CalendarUnit::Minute => floor_to(60),
        CalendarUnit::Hour => floor_to(3600),
        CalendarUnit::Day => floor_to(DAY),
        CalendarUnit::Week => {
            let days = local.div_euclid(DAY);
            let back = (i64::from(weekday(days)) - i64::from(week_start)).rem_euclid(7);
            let start = (days - back) * DAY;
            (start, start + 7 * DAY)
        }
        CalendarUnit::Month => {
            let today = civil_from_days(local.div_euclid(DAY));
            let first = Date { day: 1, ..today };
            let start = days_from_civil(first) * DAY;
            let end = days_from_civil(first_of_next_month(first)) * DAY;
            (start, end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{parse_rfc3339_utc, rfc3339};

    fn at(text: &str) -> i64 {
        parse_rfc3339_utc(text).unwrap_or_else(|| panic!("bad time {text}"))
    }

    fn bounds(spec: WindowSpec, now: &str, align: Alignment) -> (String, String) {
        let w = spec.window_at(at(now), align);
        (rfc3339(w.start), rfc3339(w.end))
    }

    fn utc() -> Alignment {
        Alignment::default()
    }

    #[test]
    fn daily_window_resets_at_local_midnight() {
        let day = WindowSpec::Calendar(CalendarUnit::Day);
        assert_eq!(
            bounds(day, "2026-11-22T17:58:00Z", utc()),
            ("2026-11-22T00:00:00Z".into(), "2026-11-23T00:00:00Z".into())
        );
        // UTC-05:00: local midnight is 05:00 UTC; 03:00 UTC is still the previous local day.
        let new_york = Alignment { utc_offset_minutes: -300, week_start: 0 };
        assert_eq!(
            bounds(day, "2026-11-22T03:00:00Z", new_york),
            ("2026-11-21T05:00:00Z".into(), "2026-11-22T05:00:00Z".into())
        );
        // UTC+05:30.
        let india = Alignment { utc_offset_minutes: 330, week_start: 0 };
        assert_eq!(
            bounds(day, "2026-11-22T20:00:00Z", india),
            ("2026-11-22T18:30:00Z".into(), "2026-11-23T18:30:00Z".into())
        );
    }

    #[test]
    fn monthly_window_resets_on_calendar_month() {
        let month = WindowSpec::Calendar(CalendarUnit::Month);
        assert_eq!(
            bounds(month, "2026-01-31T23:59:59Z", utc()),
            ("2026-01-01T00:00:00Z".into(), "2026-02-01T00:00:00Z".into())
        );
        assert_eq!(
            bounds(month, "2026-02-01T00:00:00Z", utc()),
            ("2026-02-01T00:00:00Z".into(), "2026-03-01T00:00:00Z".into())
        );
        // A leap-year February is 29 days long.
        let feb = month.window_at(at("2024-02-10T00:00:00Z"), utc());
        assert_eq!(feb.length(), 29 * DAY);
        // December rolls into the next year.
        assert_eq!(
            bounds(month, "2025-12-31T12:00:00Z", utc()),
            ("2025-12-01T00:00:00Z".into(), "2026-01-01T00:00:00Z".into())
        );
        // In UTC+09:00 March has already begun at 15:00 UTC on Feb 28 (2026 is not a leap year).
        let tokyo = Alignment { utc_offset_minutes: 540, week_start: 0 };
        assert_eq!(
            bounds(month, "2026-02-28T15:00:00Z", tokyo),
            ("2026-02-28T15:00:00Z".into(), "2026-03-31T15:00:00Z".into())
        );
    }

    #[test]
    fn weekly_window_honours_start_day() {
        let week = WindowSpec::Calendar(CalendarUnit::Week);
        // 2026-11-22 is a Sunday.
        assert_eq!(
            bounds(week, "2026-11-22T10:00:00Z", utc()),
            ("2026-11-16T00:00:00Z".into(), "2026-11-23T00:00:00Z".into())
        );
        let sunday_start = Alignment { utc_offset_minutes: 0, week_start: 6 };
        assert_eq!(
            bounds(week, "2026-11-22T10:00:00Z", sunday_start),
            ("2026-11-22T00:00:00Z".into(), "2026-11-29T00:00:00Z".into())
        );
        let saturday_start = Alignment { utc_offset_minutes: 0, week_start: 5 };
        assert_eq!(
            bounds(week, "2026-11-22T10:00:00Z", saturday_start),
            ("2026-11-21T00:00:00Z".into(), "2026-11-28T00:00:00Z".into())
        );
    }

    #[test]
    fn minute_and_hour_windows_align_to_the_clock() {
        assert_eq!(
            bounds(WindowSpec::Calendar(CalendarUnit::Minute), "2026-11-22T10:15:59Z", utc()),
            ("2026-11-22T10:15:00Z".into(), "2026-11-22T10:16:00Z".into())
        );
        // A half-hour offset moves hour boundaries to :30 UTC.
        let india = Alignment { utc_offset_minutes: 330, week_start: 0 };
        assert_eq!(
            bounds(WindowSpec::Calendar(CalendarUnit::Hour), "2026-11-22T10:15:00Z", india),
            ("2026-11-22T09:30:00Z".into(), "2026-11-22T10:30:00Z".into())
        );
    }

    #[test]
    fn first_use_window_starts_now() {
        let five_hours = WindowSpec::FirstUse { seconds: 5 * 3600 };
        assert_eq!(
            bounds(five_hours, "2026-11-22T10:15:07Z", utc()),
            ("2026-11-22T10:15:07Z".into(), "2026-11-22T15:15:07Z".into())
        );
    }

    #[test]
    fn window_codes_differ_per_spec() {
        let specs = [
            WindowSpec::Calendar(CalendarUnit::Minute),
            WindowSpec::Calendar(CalendarUnit::Hour),
            WindowSpec::Calendar(CalendarUnit::Day),
            WindowSpec::Calendar(CalendarUnit::Week),
            WindowSpec::Calendar(CalendarUnit::Month),
            WindowSpec::FirstUse { seconds: 60 },
            WindowSpec::FirstUse { seconds: 3600 },
        ];
        for (i, a) in specs.iter().enumerate() {
            for b in specs.iter().skip(i + 1) {
                assert_ne!(a.code(), b.code(), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_window_from_a_foreign_record_has_a_length() {
        // fuzz/regressions/classify-foreign-window-length-overflow
        assert_eq!(Window { start: i64::MIN, end: i64::MAX }.length(), i64::MAX);
    }
}
