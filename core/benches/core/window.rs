//! Window arithmetic: where the window holding "now" starts and ends, for
//! each kind of window, and the reset time as the headers write it.

use crate::fixtures::NOON_MS;
use criterion::Criterion;
use quota_core::calendar::rfc3339;
use quota_core::clock::{Clock, ManualClock};
use quota_core::engine::seconds_until;
use quota_core::window::{Alignment, CalendarUnit, WindowSpec};
use std::hint::black_box;

pub fn benches(c: &mut Criterion) {
    let clock = ManualClock::at(NOON_MS);
    let utc = Alignment::default();
    // UTC-05:00, weeks starting on Sunday.
    let local = Alignment { utc_offset_minutes: -300, week_start: 6 };
    let specs = [
        ("day_utc", WindowSpec::Calendar(CalendarUnit::Day), utc),
        ("week_local", WindowSpec::Calendar(CalendarUnit::Week), local),
        ("month_local", WindowSpec::Calendar(CalendarUnit::Month), local),
        ("first_use_5h", WindowSpec::FirstUse { seconds: 5 * 3600 }, utc),
    ];
    let mut g = c.benchmark_group("window");
    for (name, spec, align) in specs {
        g.bench_function(format!("window_at/{name}"), |b| {
            b.iter(|| {
                // A new second each time, as requests see it.
                clock.advance_ms(1000);
                black_box(spec).window_at(clock.now_ms().div_euclid(1000), black_box(align))
            })
        });
    }
    let end = WindowSpec::Calendar(CalendarUnit::Day).window_at(NOON_MS / 1000, utc).end;
    g.bench_function("reset/rfc3339", |b| b.iter(|| rfc3339(black_box(end))));
    g.bench_function("reset/seconds_until", |b| b.iter(|| seconds_until(black_box(end), black_box(NOON_MS))));
    g.finish();
}
