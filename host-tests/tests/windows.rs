//! The quota filter's windows reset at the right instant: calendar day (also in
//! a UTC offset), calendar week, calendar month across a leap day, and a fixed
//! 5-hour window started by the first request.

use std::time::Duration;

use crate::util::{post, quota_host, quota_vm, windows_config};

#[test]
fn daily_window_resets_at_midnight_utc() {
    let host = quota_host();
    host.set_time_rfc3339("2024-02-28T23:59:58Z");
    let vm = quota_vm(&host, &windows_config(2));

    post(&vm, "/v1/daily", "ana").assert_allowed();
    let second = post(&vm, "/v1/daily", "ana");
    second.assert_allowed();
    assert_eq!(second.response_header("x-quota-used"), Some("2"));
    assert_eq!(second.response_header("x-quota-reset"), Some("2024-02-29T00:00:00Z"));
    assert_eq!(second.response_header("x-quota-reset-after"), Some("2"));

    let blocked = post(&vm, "/v1/daily", "ana");
    blocked.assert_blocked(429);
    assert_eq!(blocked.response_header("retry-after"), Some("2"));

    host.advance(Duration::from_millis(1999));
    assert_eq!(host.now_rfc3339(), "2024-02-28T23:59:59.999Z");
    post(&vm, "/v1/daily", "ana").assert_blocked(429);

    host.advance(Duration::from_millis(1));
    let fresh = post(&vm, "/v1/daily", "ana");
    fresh.assert_allowed();
    assert_eq!(fresh.response_header("x-quota-used"), Some("1"));
    assert_eq!(fresh.response_header("x-quota-reset"), Some("2024-03-01T00:00:00Z"));
}

#[test]
fn daily_window_follows_the_configured_utc_offset() {
    let host = quota_host();
    let mut config = windows_config(1);
    config["calendar"] = serde_json::json!({ "utc_offset": "+05:30" });
    host.set_time_rfc3339("2024-06-10T18:29:59Z"); // 23:59:59 in +05:30
    let vm = quota_vm(&host, &config);

    let first = post(&vm, "/v1/daily", "ben");
    first.assert_allowed();
    assert_eq!(first.response_header("x-quota-reset"), Some("2024-06-10T18:30:00Z"));
    post(&vm, "/v1/daily", "ben").assert_blocked(429);

    host.advance(Duration::from_secs(1));
    post(&vm, "/v1/daily", "ben").assert_allowed();
}

#[test]
fn weekly_window_resets_on_monday() {
    let host = quota_host();
    host.set_time_rfc3339("2024-01-14T23:00:00Z"); // a Sunday
    let vm = quota_vm(&host, &windows_config(1));

    let first = post(&vm, "/v1/weekly", "cy");
    first.assert_allowed();
    assert_eq!(first.response_header("x-quota-reset"), Some("2024-01-15T00:00:00Z"));
    post(&vm, "/v1/weekly", "cy").assert_blocked(429);

    host.set_time_rfc3339("2024-01-15T00:00:00Z");
    let monday = post(&vm, "/v1/weekly", "cy");
    monday.assert_allowed();
    assert_eq!(monday.response_header("x-quota-reset"), Some("2024-01-22T00:00:00Z"));
}

#[test]
fn monthly_window_resets_on_calendar_month_across_a_leap_day() {
    let host = quota_host();
    host.set_time_rfc3339("2024-02-10T09:00:00Z");
    let vm = quota_vm(&host, &windows_config(2));

    post(&vm, "/v1/monthly", "dee").assert_allowed();
    let second = post(&vm, "/v1/monthly", "dee");
    assert_eq!(second.response_header("x-quota-reset"), Some("2024-03-01T00:00:00Z"));
    post(&vm, "/v1/monthly", "dee").assert_blocked(429);

    // February 2024 has 29 days: not reset after 28 days, nor on the leap day.
    host.set_time_rfc3339("2024-02-29T23:59:59Z");
    post(&vm, "/v1/monthly", "dee").assert_blocked(429);

    host.set_time_rfc3339("2024-03-01T00:00:00Z");
    let march = post(&vm, "/v1/monthly", "dee");
    march.assert_allowed();
    assert_eq!(march.response_header("x-quota-used"), Some("1"));
    assert_eq!(march.response_header("x-quota-reset"), Some("2024-04-01T00:00:00Z"));
}

#[test]
fn monthly_window_is_not_thirty_days() {
    let host = quota_host();
    host.set_time_rfc3339("2024-01-31T12:00:00Z");
    let vm = quota_vm(&host, &windows_config(1));
    let first = post(&vm, "/v1/monthly", "eve");
    assert_eq!(first.response_header("x-quota-reset"), Some("2024-02-01T00:00:00Z"));
    host.set_time_rfc3339("2024-02-01T00:00:00Z");
    post(&vm, "/v1/monthly", "eve").assert_allowed();
}

#[test]
fn fixed_window_starts_at_first_use_and_lasts_five_hours() {
    let host = quota_host();
    host.set_time_rfc3339("2024-05-02T10:17:30Z");
    let vm = quota_vm(&host, &windows_config(2));

    let first = post(&vm, "/v1/burst", "fay");
    first.assert_allowed();
    assert_eq!(first.response_header("x-quota-reset"), Some("2024-05-02T15:17:30Z"));
    assert_eq!(first.response_header("ratelimit-policy"), Some("\"burst\";q=2;w=18000"));

    host.advance(Duration::from_secs(3600));
    post(&vm, "/v1/burst", "fay").assert_allowed();
    let blocked = post(&vm, "/v1/burst", "fay");
    blocked.assert_blocked(429);
    assert_eq!(blocked.response_header("retry-after"), Some("14400"));

    host.set_time_rfc3339("2024-05-02T15:17:29Z");
    post(&vm, "/v1/burst", "fay").assert_blocked(429);

    // The next window starts with the first request after the old one ended.
    host.set_time_rfc3339("2024-05-02T16:00:00Z");
    let next = post(&vm, "/v1/burst", "fay");
    next.assert_allowed();
    assert_eq!(next.response_header("x-quota-used"), Some("1"));
    assert_eq!(next.response_header("x-quota-reset"), Some("2024-05-02T21:00:00Z"));
}

#[test]
fn each_user_has_their_own_window() {
    let host = quota_host();
    host.set_time_rfc3339("2024-05-02T10:00:00Z");
    let vm = quota_vm(&host, &windows_config(1));
    post(&vm, "/v1/burst", "gus").assert_allowed();
    host.advance(Duration::from_secs(7200));
    let other = post(&vm, "/v1/burst", "hal");
    other.assert_allowed();
    assert_eq!(other.response_header("x-quota-reset"), Some("2024-05-02T17:00:00Z"));
    post(&vm, "/v1/burst", "gus").assert_blocked(429);
}

#[test]
fn minute_and_hour_windows_reset_on_the_clock() {
    let host = quota_host();
    host.set_time_rfc3339("2026-11-22T10:59:59Z");
    let mut config = windows_config(1);
    config["tiers"]["free"]["limits"]["daily"]["window"] = serde_json::json!("minute");
    config["tiers"]["free"]["limits"]["weekly"]["window"] = serde_json::json!("hour");
    let vm = quota_vm(&host, &config);

    let minute = post(&vm, "/v1/daily", "mo");
    assert_eq!(minute.response_header("x-quota-reset"), Some("2026-11-22T11:00:00Z"));
    let hour = post(&vm, "/v1/weekly", "mo");
    assert_eq!(hour.response_header("x-quota-reset"), Some("2026-11-22T11:00:00Z"));
    post(&vm, "/v1/daily", "mo").assert_blocked(429);
    post(&vm, "/v1/weekly", "mo").assert_blocked(429);

    host.advance(Duration::from_secs(1));
    let next_minute = post(&vm, "/v1/daily", "mo");
    next_minute.assert_allowed();
    assert_eq!(next_minute.response_header("x-quota-reset"), Some("2026-11-22T11:01:00Z"));
    let next_hour = post(&vm, "/v1/weekly", "mo");
    next_hour.assert_allowed();
    assert_eq!(next_hour.response_header("x-quota-reset"), Some("2026-11-22T12:00:00Z"));
}
