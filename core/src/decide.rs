//! The pure decision: given a counter's old value, a cell's limits and a
//! request's cost, what to write and what to tell the caller. No I/O here;
//! the store runs this inside its compare-and-swap loop.

use crate::config::{AtHard, Limits, PastSoft};
use crate::counter::{Counter, FLAG_PACE};
use crate::units::{add, bounded};
use crate::window::{Alignment, Window};

/// Where a caller stands in one cell, as the headers and the meter show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Below every warning level.
    Ok,
    /// Past the soft limit or a warning level (or past hard with `at_hard: warn`).
    Warning,
    /// Served with the cell's cheaper model.
    Degraded,
    /// Past the hard limit, counted as overage.
    Overage,
    /// Past the hard limit, deferred to the upstream's asynchronous path.
    Queued,
    /// At the hard limit: the next request (or this one) is refused.
    Blocked,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Warning => "warning",
            State::Degraded => "degraded",
            State::Overage => "overage",
            State::Queued => "queued",
            State::Blocked => "blocked",
        }
    }
}

/// A snapshot of one counter against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Units admitted in the window, however funded.
    pub used: u64,
    /// Of those, the units the plan paid for (not grants).
    pub plan_used: u64,
    pub hard: u64,
    pub soft: Option<u64>,
    pub window: Window,
    pub state: State,
    /// Plan units past the hard limit (`warn`, `degrade`, `overage`, `queue`).
    pub over: u64,
    /// Grant units left (carried over between windows).
    pub grant: u64,
}

impl Usage {
    /// Plan units left in this window.
    pub fn remaining(&self) -> u64 {
        self.hard.saturating_sub(self.plan_used)
    }
}

/// How an admitted request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Normally,
    /// With the cell's cheaper model (past soft, or at hard with `degrade`).
    Degraded,
    /// Past the hard limit as billable overage.
    Overage,
    /// Past the hard limit, deferred.
    Queued,
}

/// The result of charging a request against a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub admitted: bool,
    /// Units charged by this request (0 when refused).
    pub cost: u64,
    /// Units the request asked for.
    pub requested: u64,
    pub served: Served,
    /// Of `cost`, the units paid from grants.
    pub from_grant: u64,
    pub usage: Usage,
    /// Index into `Limits::warn_levels` of the highest level this request
    /// crossed for the first time in its window: report it once.
    pub crossed: Option<usize>,
    /// Refused only because the cell wants this costly request confirmed.
    pub needs_confirmation: bool,
    /// Refused because it costs more than the cell could ever admit in one
    /// request ([`Limits::request_ceiling`]) and more than the plan's room
    /// plus the grant balance: waiting for the reset would not help.
    pub too_large: bool,
    /// How the caller's usage compares with the window's pace (cells with `pace`).
    pub pace: Option<PaceReading>,
    /// This request put the caller ahead of pace for the first time in its window.
    pub pace_flagged: bool,
}

/// Usage against elapsed time in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceReading {
    /// Share of the hard limit used.
    pub used_share: f64,
    /// Share of the window elapsed.
    pub elapsed_share: f64,
    /// Used the configured share before the configured share of the window.
    pub ahead: bool,
    /// When the limit runs out at the average rate so far, if before the reset.
    pub exhausted_at: Option<i64>,
}

impl Eq for PaceReading {}

/// Reads the pace of `counter` at `now`, for cells that watch it.
pub fn pace_of(counter: &Counter, limits: &Limits, now: i64) -> Option<PaceReading> {
    let rule = limits.pace?;
    let used = counter.plan_used();
    // Saturating: a record is only as sane as the bytes in the store.
    let span = counter.window_end.saturating_sub(counter.window_start).max(1);
    let length = span as f64;
    let elapsed = now.saturating_sub(counter.window_start).clamp(0, span) as f64;
    let used_share = used as f64 / limits.hard as f64;
    let elapsed_share = elapsed / length;
    let exhausted_at = if used > 0 && used < limits.hard && elapsed > 0.0 {
        let per_second = used as f64 / elapsed;
        let at = now.saturating_add(((limits.hard - used) as f64 / per_second).ceil() as i64);
        (at < counter.window_end).then_some(at)
    } else {
        None
    };
    Some(PaceReading {
        used_share,
        elapsed_share,
        ahead: used_share >= rule.used && elapsed_share < rule.before,
        exhausted_at,
    })
}

/// The counter as it stands at `now`: the stored one while its window is
/// open, else a fresh one (grants carry over). A window runs to its own end
/// even if the caller's UTC offset changed meanwhile.
///
/// The rule: a new window opens only when the previous one has ended, and
/// it never starts before the previous one's end. The caller's calendar
/// alone would not ensure it: an offset whose local midnight is seconds
/// away names a "today" that began almost a day ago and ends seconds from
/// now, and choosing such an offset again and again would open a fresh
/// window every few seconds. So when the calendar's window for `now`
/// (`fresh`) starts before the stored window's end (same window code), the
/// new window is `[old.end, old.end + (fresh.end - fresh.start))` instead: a
/// whole period that begins where the previous one ended (see
/// [`next_window`]). It holds `now`: `now >= old.end` because the old
/// window has ended, and `now < fresh.end = fresh.start + length <
/// old.end + length` because `fresh.start < old.end`.
///
/// So the windows of one counter are disjoint and each lasts a whole period:
/// any 24 hours meet at most two daily windows, and no sequence of offsets
/// admits more than twice a daily hard limit in them. An offset change (a
/// traveller) takes effect with the first window that opens at or after
/// one of the new calendar's boundaries without overlapping the old window.
///
/// The rule needs the previous window's end: a record may only be reclaimed
/// (expired, evicted) once one length of its window has passed after its
/// end. A window opened after that ends later than
/// `old.end + (old.end - old.start)` anyway, so forgetting the record then
/// buys nothing.
pub fn current(old: Option<Counter>, limits: &Limits, now: i64, align: Alignment) -> Counter {
    let code = limits.window.code();
    let old = old.map(Counter::bounded);
    match old {
        Some(c) if c.window_code == code && now < c.window_end => c,
        Some(c) if c.window_code == code => {
            Counter::open(next_window(c.window(), limits.window.window_at(now, align)), code, c.grant)
        }
        _ => Counter::open(limits.window.window_at(now, align), code, old.map_or(0, |c| c.grant)),
    }
}

/// The window that follows `previous` (ended) when the caller's calendar
/// gives `fresh`: `fresh` itself unless it starts before `previous` ended,
/// else a whole `fresh`-length period from `previous.end` (the rule of
/// [`current`]).
pub fn next_window(previous: Window, fresh: Window) -> Window {
    if fresh.start < previous.end {
        Window { start: previous.end, end: previous.end.saturating_add(fresh.length()) }
    } else {
        fresh
    }
}

/// Whether a stored counter may be forgotten at `now` (see `table.rs`): it
/// holds no grant units (they were bought and carry over from window to
/// window) and one length of its window has passed since the window ended.
/// [`current`] reads an ended record only for its end (the rule above); any
/// window it opens from `now` on ends later than
/// `old.end + (old.end - old.start)` whether the record is there or not, so
/// forgetting it buys nothing.
pub fn reclaimable(c: &Counter, now: i64) -> bool {
    let window = c.window();
    c.grant == 0 && now >= window.end.saturating_add(window.length().max(0))
}

/// Plan units the cell admits past its hard limit at most, `None` for no ceiling.
fn beyond_cap(limits: &Limits) -> Option<u64> {
    limits.beyond_hard_cap()
}

/// Where a counter stands (without a request in hand).
fn state_of(counter: &Counter, limits: &Limits) -> State {
    let used = counter.plan_used();
    if used >= limits.hard {
        if counter.grant > 0 {
            return State::Warning;
        }
        let at_cap = beyond_cap(limits).is_some_and(|cap| used - limits.hard >= cap);
        match limits.at_hard {
            AtHard::Block => State::Blocked,
            AtHard::Warn => State::Warning,
            _ if at_cap => State::Blocked,
            AtHard::Degrade => State::Degraded,
            AtHard::Overage => State::Overage,
            AtHard::Queue => State::Queued,
        }
    } else if limits.past_soft == PastSoft::Degrade && limits.soft.is_some_and(|s| used >= s) {
        State::Degraded
    } else if limits.first_warning().is_some_and(|level| used >= level) {
        State::Warning
    } else {
        State::Ok
    }
}

fn usage_of(counter: &Counter, limits: &Limits, state: State) -> Usage {
    Usage {
        used: counter.used,
        plan_used: counter.plan_used(),
        hard: limits.hard,
        soft: limits.soft,
        window: counter.window(),
        state,
        over: counter.plan_used().saturating_sub(limits.hard),
        grant: counter.grant,
    }
}

/// The caller's standing without charging anything (the usage endpoint).
/// For a first-use window not yet opened, the window shown is the one a
/// request now would open.
pub fn view(old: Option<Counter>, limits: &Limits, now: i64, align: Alignment) -> Usage {
    let counter = current(old, limits, now, align);
    usage_of(&counter, limits, state_of(&counter, limits))
}

/// Charges `cost` units at `now`. Returns the counter to write (`None` when
/// nothing changes) and the outcome. `confirmed` says the caller confirmed a
/// costly request (cells with `confirm_above`).
///
/// Units come from the plan first, then from grants, then from the cell's
/// `at_hard` behaviour (block, warn, degrade, overage, queue) up to its cap.
/// A cost is read at most [`crate::units::MAX_UNITS`], and a request that
/// could never fit is refused as `too_large` rather than blocked.
pub fn decide(
    old: Option<Counter>,
    limits: &Limits,
    cost: u64,
    confirmed: bool,
    now: i64,
    align: Alignment,
) -> (Option<Counter>, Charge) {
    let cost = bounded(cost);
    let counter = current(old, limits, now, align);
    let refuse = |state, needs_confirmation, too_large| Charge {
        admitted: false,
        cost: 0,
        requested: cost,
        served: Served::Normally,
        from_grant: 0,
        usage: usage_of(&counter, limits, state),
        crossed: None,
        needs_confirmation,
        too_large,
        pace: pace_of(&counter, limits, now),
        pace_flagged: false,
    };
    let plan_used = counter.plan_used();
    let room = limits.hard.saturating_sub(plan_used);
    // What this request could be charged now: the plan's room and the grants.
    let available = room.saturating_add(counter.grant);
    if cost > limits.request_ceiling() && cost > available {
        return (None, refuse(state_of(&counter, limits), false, true));
    }
    let mut next = counter;
    let mut served = Served::Normally;
    let mut from_grant = 0;
    if cost > room {
        let need = cost - room;
        if counter.grant >= need {
            from_grant = need;
        } else {
            let beyond_after = plan_used.saturating_add(cost).saturating_sub(limits.hard);
            if beyond_cap(limits).is_some_and(|cap| beyond_after > cap) {
                return (None, refuse(State::Blocked, false, false));
            }
            served = match limits.at_hard {
                AtHard::Block | AtHard::Warn => Served::Normally,
                AtHard::Degrade => Served::Degraded,
                AtHard::Overage => Served::Overage,
                AtHard::Queue => Served::Queued,
            };
        }
    }
    if let Some(fraction) = limits.confirm_above {
        if !confirmed && available > 0 && cost as f64 > fraction * available as f64 {
            return (None, refuse(state_of(&counter, limits), true, false));
        }
    }
    if served == Served::Normally
        && from_grant == 0
        && limits.past_soft == PastSoft::Degrade
        && limits.soft.is_some_and(|s| plan_used.saturating_add(cost) > s)
    {
        served = Served::Degraded;
    }
    next.used = add(next.used, cost);
    // Only a counter saturated at the bound could push grant units past the total.
    next.grant_used = add(next.grant_used, from_grant).min(next.used);
    next.grant -= from_grant;
    let mut crossed = None;
    for (i, level) in limits.warn_levels.iter().enumerate().take(8) {
        let bit = 1u8 << i;
        if next.plan_used() >= *level && next.warned & bit == 0 {
            next.warned |= bit;
            crossed = Some(i);
        }
    }
    let pace = pace_of(&next, limits, now);
    let pace_flagged = pace.is_some_and(|p| p.ahead) && next.flags & FLAG_PACE == 0;
    if pace_flagged {
        next.flags |= FLAG_PACE;
    }
    let state = match served {
        Served::Degraded => State::Degraded,
        Served::Overage => State::Overage,
        Served::Queued => State::Queued,
        // Admitted: the caller is warned (never "blocked") even on the last unit.
        Served::Normally => match state_of(&next, limits) {
            State::Ok if from_grant > 0 => State::Warning,
            State::Ok => State::Ok,
            _ => State::Warning,
        },
    };
    let charge = Charge {
        admitted: true,
        cost,
        requested: cost,
        served,
        from_grant,
        usage: usage_of(&next, limits, state),
        crossed,
        needs_confirmation: false,
        too_large: false,
        pace,
        pace_flagged,
    };
    (Some(next), charge)
}

/// Corrects a charged counter after the response: `delta` units more (token
/// usage above the estimate) or fewer (a refund, or usage below it). Applies
/// only while the window the request was charged in is still open; a refund
/// gives back grant units first (they were spent last). `most` is the most
/// units a correction may add: the request's room under its cell's ceiling
/// ([`crate::engine::correction_room`]), so a reported usage never settles
/// one request above what the cell admits in one request.
pub fn adjust(old: Option<Counter>, window_start: i64, delta: i64, most: u64) -> Option<Counter> {
    let mut c = old?.bounded();
    let delta = bounded_delta(delta, most);
    if c.window_start != window_start || delta == 0 {
        return None;
    }
    if delta > 0 {
        c.used = add(c.used, delta.unsigned_abs());
    } else {
        let back = delta.unsigned_abs().min(c.used);
        let from_grant = back.min(c.grant_used);
        c.grant_used -= from_grant;
        c.grant = add(c.grant, from_grant);
        c.used -= back;
    }
    Some(c)
}

/// The usage a counter shows once an admitted charge of `cost` units is
/// given back as [`adjust`] gives it back (grant units first): where the
/// caller stood before the request, for an answer that charged nothing.
pub fn given_back(u: &Usage, limits: &Limits, cost: u64) -> Usage {
    let counter = Counter {
        window_start: u.window.start,
        window_end: u.window.end,
        used: u.used,
        grant_used: u.used.saturating_sub(u.plan_used),
        grant: u.grant,
        ..Counter::default()
    };
    let delta = -i64::try_from(cost).unwrap_or(i64::MAX);
    let back = adjust(Some(counter), u.window.start, delta, 0).unwrap_or(counter);
    usage_of(&back, limits, state_of(&back, limits))
}

/// A correction as [`adjust`] applies it: at most `most` units more (and
/// never past [`crate::units::MAX_UNITS`]), any refund as it is. What the
/// approximate mode syncs to Redis is this same delta.
pub fn bounded_delta(delta: i64, most: u64) -> i64 {
    if delta > 0 {
        i64::try_from(delta.unsigned_abs().min(bounded(most))).unwrap_or(0)
    } else {
        delta
    }
}

/// Adds grant units to a counter. A counter that does not exist yet is
/// created with an already-ended window, so the next charge opens its real
/// window and carries the grant into it.
pub fn add_grant(old: Option<Counter>, units: u64) -> Counter {
    let mut c = old.unwrap_or_default().bounded();
    c.grant = add(c.grant, units);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scope;
    use crate::units::MAX_UNITS;
    use crate::window::{CalendarUnit, Window, WindowSpec};

    fn limits(soft: Option<u64>, hard: u64, at_hard: AtHard) -> Limits {
        let mut warn_levels: Vec<u64> = [0.7f64, 0.95].iter().map(|f| (hard as f64 * f).ceil() as u64).collect();
        warn_levels.extend(soft);
        warn_levels.retain(|l| *l < hard);
        warn_levels.sort_unstable();
        warn_levels.dedup();
        Limits {
            soft,
            hard,
            window: WindowSpec::Calendar(CalendarUnit::Day),
            window_name: "day".into(),
            scope: Scope::User,
            past_soft: PastSoft::Warn,
            at_hard,
            warn_levels,
            confirm_above: None,
            pace: None,
            degrade: None,
            overage_cap: None,
            queue: None,
            copy: Default::default(),
            admin_cap: false,
        }
    }

    const NOON: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

    fn run(limits: &Limits, n: usize, cost: u64) -> (Option<Counter>, Vec<Charge>) {
        let mut stored = None;
        let mut out = Vec::new();
        for _ in 0..n {
            let (write, charge) = decide(stored, limits, cost, false, NOON, Alignment::default());
            if write.is_some() {
                stored = write;
            }
            out.push(charge);
        }
        (stored, out)
    }

    #[test]
    fn admits_exactly_the_hard_limit_then_blocks() {
        let l = limits(None, 3, AtHard::Block);
        let (stored, charges) = run(&l, 5, 1);
        let admitted: Vec<bool> = charges.iter().map(|c| c.admitted).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert_eq!(stored.map(|c| c.used), Some(3));
        assert_eq!(charges[3].usage.state, State::Blocked);
        assert_eq!(charges[3].cost, 0);
        assert_eq!(charges[2].usage.remaining(), 0);
        assert_eq!(charges[2].usage.state, State::Warning);
    }

    #[test]
    fn warns_twice_before_blocking() {
        // Warned at the soft limit (5), at 70% (14) and at 95% (19) of the hard limit.
        let l = limits(Some(5), 20, AtHard::Block);
        assert_eq!(l.warn_levels, vec![5, 14, 19]);
        let (_, charges) = run(&l, 21, 1);
        let crossings: Vec<(u64, usize)> =
            charges.iter().filter_map(|c| c.crossed.map(|i| (c.usage.used, i))).collect();
        assert_eq!(crossings, vec![(5, 0), (14, 1), (19, 2)]);
        assert_eq!(charges[3].usage.state, State::Ok);
        assert_eq!(charges[4].usage.state, State::Warning);
        assert!(!charges[20].admitted);
    }

    #[test]
    fn a_cost_that_does_not_fit_is_refused_whole() {
        let l = limits(None, 10, AtHard::Block);
        let (stored, charges) = run(&l, 3, 4);
        assert_eq!(charges.iter().filter(|c| c.admitted).count(), 2);
        assert_eq!(stored.map(|c| c.used), Some(8));
        assert_eq!(charges[2].requested, 4);
    }

    #[test]
    fn warn_only_cells_admit_past_hard_and_count_it() {
        let l = limits(None, 2, AtHard::Warn);
        let (stored, charges) = run(&l, 4, 1);
        assert!(charges.iter().all(|c| c.admitted));
        assert_eq!(stored.map(|c| c.used), Some(4));
        assert_eq!(charges[3].usage.over, 2);
        assert_eq!(charges[3].usage.state, State::Warning);
        assert_eq!(charges[3].usage.remaining(), 0);
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let l = limits(None, 1, AtHard::Block);
        let (stored, _) = run(&l, 1, 1);
        let (blocked, _) = decide(stored, &l, 1, false, NOON + 3600, Alignment::default());
        assert!(blocked.is_none());
        let next_day = NOON + 12 * 3600;
        let (write, charge) = decide(stored, &l, 1, false, next_day, Alignment::default());
        assert!(charge.admitted);
        assert_eq!(write.map(|c| (c.used, c.window_start)), Some((1, NOON + 12 * 3600)));
    }

    #[test]
    fn changing_the_utc_offset_keeps_the_open_window() {
        let l = limits(None, 1, AtHard::Block);
        let (stored, _) = run(&l, 1, 1);
        // The caller now claims to be 14 hours ahead: their "today" began earlier.
        let far_east = Alignment { utc_offset_minutes: 14 * 60, week_start: 0 };
        let (write, charge) = decide(stored, &l, 1, false, NOON + 60, far_east);
        assert!(!charge.admitted);
        assert!(write.is_none());
    }

    const DAY: i64 = crate::calendar::DAY;

    /// The calendar of a caller who says local midnight is `seconds` after
    /// `now` (`now + seconds` must be a whole minute: offsets are minutes).
    fn midnight_in(now: i64, seconds: i64) -> Alignment {
        assert_eq!((now + seconds) % 60, 0);
        let minutes = (-(now + seconds)).rem_euclid(DAY) / 60;
        let minutes = if minutes >= 12 * 60 { minutes - 24 * 60 } else { minutes };
        Alignment { utc_offset_minutes: minutes as i32, week_start: 0 }
    }

    #[test]
    fn offsets_that_put_midnight_seconds_away_buy_no_fresh_window() {
        let l = limits(None, 1, AtHard::Block);
        // 50 s past the minute: a whole-minute offset puts local midnight 10 s away.
        let first = NOON + 50;
        let mut stored = None;
        let mut admitted = Vec::new();
        // Once a minute for a day, each time with a new "today" that ends in 10 s.
        for minute in 0..24 * 60 {
            let now = first + minute * 60;
            let align = midnight_in(now, 10);
            assert_eq!(l.window.window_at(now, align).end, now + 10);
            let (write, charge) = decide(stored, &l, 1, false, now, align);
            if write.is_some() {
                stored = write;
            }
            if charge.admitted {
                admitted.push((now, charge.usage.window));
            }
        }
        // The first window ends 10 s after the first request; the next one
        // opens there and lasts a whole day, past the last attempt.
        let end = first + 10;
        assert_eq!(
            admitted,
            vec![(first, Window { start: end - DAY, end }), (first + 60, Window { start: end, end: end + DAY })]
        );
    }

    #[test]
    fn a_travellers_new_offset_takes_effect_where_it_no_longer_overlaps() {
        let l = limits(None, 1, AtHard::Block);
        let midnight = NOON - 12 * 3600; // 2026-11-22T00:00:00Z
        let at = |old: Option<Counter>, now: i64, offset_hours: i32| {
            let align = Alignment { utc_offset_minutes: offset_hours * 60, week_start: 0 };
            let (write, charge) = decide(old, &l, 1, false, now, align);
            assert!(charge.admitted, "at {now}");
            (write, charge.usage.window)
        };
        let day = |start: i64| Window { start, end: start + DAY };
        let (spent, window) = at(None, NOON, 0);
        assert_eq!(window, day(midnight));

        // Flying west to UTC-05:00: at 02:00Z the local day began at 05:00Z
        // yesterday, inside the spent window, so the next day starts where
        // that one ended. Until a request comes after both the old end and a
        // local midnight (05:00Z), windows keep the old phase.
        let (next, window) = at(spent, midnight + DAY + 2 * 3600, -5);
        assert_eq!(window, day(midnight + DAY));
        let (_, window) = at(next, midnight + 2 * DAY + 3600, -5);
        assert_eq!(window, day(midnight + 2 * DAY));
        let (_, window) = at(next, midnight + 2 * DAY + 6 * 3600, -5);
        assert_eq!(window, day(midnight + 2 * DAY + 5 * 3600));
        // Straight away when the first request after the old end is past a local midnight.
        let (_, window) = at(spent, midnight + DAY + 6 * 3600, -5);
        assert_eq!(window, day(midnight + DAY + 5 * 3600));

        // Flying east to UTC+05:00 (local midnight at 19:00Z).
        let (next, window) = at(spent, midnight + DAY + 2 * 3600, 5);
        assert_eq!(window, day(midnight + DAY));
        let (_, window) = at(next, midnight + 2 * DAY + 20 * 3600, 5);
        assert_eq!(window, day(midnight + 2 * DAY + 19 * 3600));
    }

    #[test]
    fn no_sequence_of_offsets_admits_more_than_twice_a_daily_limit_in_any_24_hours() {
        // xorshift64: reproducible without a dependency.
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        let mut below = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut shifted = 0;
        for round in 0..300 {
            let hard = 1 + below(5);
            let l = limits(None, hard, AtHard::Block);
            let mut now = NOON + below(DAY as u64) as i64;
            let mut align = Alignment::default();
            let mut stored: Option<Counter> = None;
            let mut windows: Vec<Window> = Vec::new();
            let mut admitted: Vec<(i64, u64)> = Vec::new();
            for _ in 0..400 {
                now += [0, 1, 10, 60, 600, 3600, 4 * 3600][below(7) as usize];
                align = match below(3) {
                    0 => Alignment { utc_offset_minutes: below(28 * 60 + 1) as i32 - 14 * 60, week_start: 0 },
                    // Local midnight within the next minute.
                    1 => midnight_in(now, (-now).rem_euclid(60)),
                    _ => align,
                };
                let cost = 1 + below(2);
                let (write, charge) = decide(stored, &l, cost, false, now, align);
                if let Some(w) = write {
                    if stored.map(|s| s.window_start) != Some(w.window_start) {
                        shifted += usize::from(w.window() != l.window.window_at(now, align));
                        windows.push(w.window());
                    }
                    stored = Some(w);
                }
                if charge.admitted {
                    admitted.push((now, charge.cost));
                }
            }
            for w in &windows {
                assert_eq!(w.length(), DAY, "round {round}");
            }
            for pair in windows.windows(2) {
                assert!(pair[0].end <= pair[1].start, "round {round}: {pair:?} overlap");
            }
            for (i, (start, _)) in admitted.iter().enumerate() {
                let units: u64 = admitted[i..].iter().take_while(|(t, _)| *t < start + DAY).map(|(_, c)| c).sum();
                assert!(units <= 2 * hard, "round {round}: {units} units in the 24 h from {start} (hard {hard})");
            }
        }
        assert!(shifted > 300, "only {shifted} windows moved: the sequences no longer exercise the rule");
    }

    #[test]
    fn a_record_is_reclaimable_one_window_length_after_its_end_unless_it_holds_grants() {
        let l = limits(None, 5, AtHard::Block);
        let (stored, _) = run(&l, 3, 1);
        let c = stored.unwrap();
        let end = c.window_end;
        assert!(!reclaimable(&c, NOON));
        assert!(!reclaimable(&c, end));
        assert!(!reclaimable(&c, end + DAY - 1));
        assert!(reclaimable(&c, end + DAY));
        // Grant units are never forgotten, whenever the window ended.
        let granted = Counter { grant: 1, ..c };
        assert!(!reclaimable(&granted, end + 1000 * DAY));
        // A grant-only record (its window already ended) keeps its units too.
        assert!(!reclaimable(&add_grant(None, 3), NOON));
        assert!(reclaimable(&add_grant(None, 0), NOON));
        // A record with a reversed or absurd window is never kept alive by it.
        let reversed = Counter { window_start: end, window_end: end - DAY, ..c };
        assert!(reclaimable(&reversed, end));
        let forever = Counter { window_end: i64::MAX, ..c };
        assert!(!reclaimable(&forever, i64::MAX - 1));
    }

    #[test]
    fn forgetting_a_reclaimable_record_decides_as_keeping_it_would() {
        let mut seed = 0x2f69_3c1d_5b7a_8e41u64;
        let mut below = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let specs = [
            WindowSpec::Calendar(CalendarUnit::Minute),
            WindowSpec::Calendar(CalendarUnit::Hour),
            WindowSpec::Calendar(CalendarUnit::Day),
            WindowSpec::Calendar(CalendarUnit::Week),
            WindowSpec::Calendar(CalendarUnit::Month),
            WindowSpec::FirstUse { seconds: 5 * 3600 },
            WindowSpec::FirstUse { seconds: 10 },
        ];
        let offset = |minutes: u64| Alignment { utc_offset_minutes: minutes as i32 - 14 * 60, week_start: 0 };
        for round in 0..5_000 {
            let spec = specs[below(specs.len() as u64) as usize];
            let l = Limits { window: spec, ..limits(None, 3, AtHard::Block) };
            let then = NOON + below(400 * DAY as u64) as i64;
            let (old, _) = decide(None, &l, 2, false, then, offset(below(28 * 60 + 1)));
            let old = old.unwrap();
            let forget_at = old.window_end + old.window().length();
            let now = forget_at + below(3 * old.window().length() as u64) as i64;
            assert!(reclaimable(&old, now) && !reclaimable(&old, forget_at - 1), "round {round}");
            let align = offset(below(28 * 60 + 1));
            let kept = decide(Some(old), &l, 1, false, now, align);
            let forgotten = decide(None, &l, 1, false, now, align);
            if spec == WindowSpec::Calendar(CalendarUnit::Month) {
                // Months differ in length: the window may start elsewhere, but
                // holds `now`, is a whole month, and ends past the forgetting point.
                for (write, charge) in [kept, forgotten] {
                    let w = write.unwrap().window();
                    assert!(w.contains(now) && w.end > forget_at, "round {round}: {w:?}");
                    assert!((28 * DAY..=31 * DAY).contains(&w.length()), "round {round}: {w:?}");
                    assert_eq!((charge.admitted, charge.usage.used), (true, 1));
                }
            } else {
                assert_eq!(kept, forgotten, "round {round}: {spec:?} {old:?} at {now}");
            }
        }
    }

    #[test]
    fn changing_a_cells_window_starts_a_new_one() {
        let l = limits(None, 1, AtHard::Block);
        let (stored, _) = run(&l, 1, 1);
        let hourly = Limits { window: WindowSpec::Calendar(CalendarUnit::Hour), ..l };
        let (_, charge) = decide(stored, &hourly, 1, false, NOON + 60, Alignment::default());
        assert!(charge.admitted);
    }

    #[test]
    fn costly_requests_wait_for_confirmation() {
        let l = Limits { confirm_above: Some(0.1), ..limits(None, 100, AtHard::Block) };
        let (stored, _) = run(&limits(None, 100, AtHard::Block), 1, 50);
        // 50 remain: 6 units is more than 10% of them.
        let (write, charge) = decide(stored, &l, 6, false, NOON, Alignment::default());
        assert!(write.is_none());
        assert!(!charge.admitted && charge.needs_confirmation);
        assert_eq!(charge.usage.used, 50);
        let (write, charge) = decide(stored, &l, 6, true, NOON, Alignment::default());
        assert!(charge.admitted && !charge.needs_confirmation);
        assert_eq!(write.map(|c| c.used), Some(56));
        // 5 units is exactly 10%: no confirmation needed.
        assert!(decide(stored, &l, 5, false, NOON, Alignment::default()).1.admitted);
        // Past the hard limit the wall wins over confirmation.
        let (_, charge) = decide(stored, &l, 60, true, NOON, Alignment::default());
        assert!(!charge.admitted && !charge.needs_confirmation);
    }

    #[test]
    fn flags_callers_far_ahead_of_pace_once_per_window() {
        let month = WindowSpec::Calendar(CalendarUnit::Month);
        let l = Limits {
            window: month,
            pace: Some(crate::config::Pace { used: 0.8, before: 0.33 }),
            ..limits(None, 100, AtHard::Block)
        };
        // 2026-11-03T12:00Z: 2.5 days into a 30-day month.
        let early = 1_793_707_200;
        let mut stored = None;
        let mut flagged = Vec::new();
        for i in 0..85 {
            let (write, charge) = decide(stored, &l, 1, false, early, Alignment::default());
            stored = write;
            if charge.pace_flagged {
                flagged.push(i + 1);
            }
            if i + 1 == 85 {
                let pace = charge.pace.unwrap();
                assert!(pace.ahead);
                assert!(pace.exhausted_at.is_some_and(|t| t < stored.unwrap().window_end));
            }
        }
        assert_eq!(flagged, vec![80]);
        // Late in the month the same usage is on pace.
        let late = early + 20 * 86_400;
        let (_, charge) = decide(stored, &l, 1, false, late, Alignment::default());
        assert!(!charge.pace.unwrap().ahead);
    }

    #[test]
    fn overage_admits_past_hard_up_to_its_cap() {
        let l = Limits { overage_cap: Some(2), ..limits(None, 3, AtHard::Overage) };
        let (stored, charges) = run(&l, 6, 1);
        let states: Vec<&str> = charges.iter().map(|c| c.usage.state.as_str()).collect();
        assert_eq!(states, ["ok", "ok", "warning", "overage", "overage", "blocked"]);
        assert_eq!(charges[4].usage.over, 2);
        assert_eq!(stored.map(|c| c.used), Some(5));
        assert_eq!(view(stored, &l, NOON, Alignment::default()).state, State::Blocked);
    }

    #[test]
    fn degrade_past_soft_then_block_at_hard() {
        let d = crate::config::Degrade { model: Some("small".into()), header: None, limit: None };
        let l = Limits { past_soft: PastSoft::Degrade, degrade: Some(d), ..limits(Some(2), 4, AtHard::Block) };
        let (_, charges) = run(&l, 5, 1);
        let served: Vec<Served> = charges.iter().map(|c| c.served).collect();
        assert_eq!(served, [Served::Normally, Served::Normally, Served::Degraded, Served::Degraded, Served::Normally]);
        assert!(!charges[4].admitted);
    }

    #[test]
    fn degrade_at_hard_has_its_own_ceiling() {
        let d = crate::config::Degrade { model: Some("small".into()), header: None, limit: Some(1) };
        let l = Limits { degrade: Some(d), ..limits(None, 2, AtHard::Degrade) };
        let (_, charges) = run(&l, 4, 1);
        let states: Vec<&str> = charges.iter().map(|c| c.usage.state.as_str()).collect();
        assert_eq!(states, ["ok", "warning", "degraded", "blocked"]);
    }

    #[test]
    fn queue_defers_past_hard() {
        let q = crate::config::Queue { header: ("x-quota-deferred".into(), "1".into()), cap: None };
        let l = Limits { queue: Some(q), ..limits(None, 1, AtHard::Queue) };
        let (_, charges) = run(&l, 3, 1);
        assert_eq!(
            charges.iter().map(|c| c.served).collect::<Vec<_>>(),
            [Served::Normally, Served::Queued, Served::Queued]
        );
    }

    #[test]
    fn grants_are_spent_after_the_plan_and_carry_over() {
        let l = limits(None, 2, AtHard::Block);
        let stored = Some(add_grant(None, 3));
        let mut stored = stored;
        let mut out = Vec::new();
        for _ in 0..6 {
            let (write, charge) = decide(stored, &l, 1, false, NOON, Alignment::default());
            if write.is_some() {
                stored = write;
            }
            out.push((charge.admitted, charge.from_grant, charge.usage.grant));
        }
        assert_eq!(out, [(true, 0, 3), (true, 0, 3), (true, 1, 2), (true, 1, 1), (true, 1, 0), (false, 0, 0)]);
        // Tomorrow the plan is fresh and the grant balance (0 here) carries over.
        let with_more = add_grant(stored, 5);
        let tomorrow = NOON + 86_400;
        let usage = view(Some(with_more), &l, tomorrow, Alignment::default());
        assert_eq!((usage.used, usage.grant), (0, 5));
    }

    #[test]
    fn adjustments_correct_only_the_window_they_were_charged_in() {
        let l = limits(None, 100, AtHard::Block);
        let (stored, _) = run(&l, 1, 10);
        let start = stored.unwrap().window_start;
        assert_eq!(adjust(stored, start, 32, MAX_UNITS).map(|c| c.used), Some(42));
        assert_eq!(adjust(stored, start, -4, MAX_UNITS).map(|c| c.used), Some(6));
        assert_eq!(adjust(stored, start, -400, MAX_UNITS).map(|c| c.used), Some(0));
        assert_eq!(adjust(stored, start - 86_400, 5, MAX_UNITS), None);
        assert_eq!(adjust(None, start, 5, MAX_UNITS), None);
    }

    #[test]
    fn refunds_give_back_grant_units_first() {
        let l = limits(None, 1, AtHard::Block);
        let granted = add_grant(None, 5);
        let (write, charge) = decide(Some(granted), &l, 3, false, NOON, Alignment::default());
        assert_eq!(charge.from_grant, 2);
        let refunded = adjust(write, write.unwrap().window_start, -3, 0).unwrap();
        assert_eq!((refunded.used, refunded.grant_used, refunded.grant), (0, 0, 5));
    }

    #[test]
    fn enormous_costs_are_refused_not_overflowed() {
        for at_hard in [AtHard::Block, AtHard::Warn] {
            let l =
                Limits { pace: Some(crate::config::Pace { used: 0.5, before: 0.9 }), ..limits(Some(2), 10, at_hard) };
            let (stored, _) = run(&l, 1, 3);
            let (write, charge) = decide(stored, &l, u64::MAX, true, NOON, Alignment::default());
            assert!(!charge.admitted && charge.too_large, "{at_hard:?}");
            assert_eq!((write, charge.cost, charge.requested), (None, 0, MAX_UNITS));
        }
        let granted = add_grant(None, u64::MAX);
        assert_eq!(granted.grant, MAX_UNITS);
        let l = limits(None, 10, AtHard::Block);
        let (write, charge) = decide(Some(granted), &l, u64::MAX, true, NOON, Alignment::default());
        assert!(charge.admitted);
        assert_eq!(charge.cost, MAX_UNITS);
        assert_eq!(write.map(|c| (c.used, c.grant_used, c.grant)), Some((MAX_UNITS, MAX_UNITS - 10, 10)));
    }

    #[test]
    fn a_request_past_the_cells_ceiling_can_never_fit() {
        let queue = crate::config::Queue { header: ("x-quota-deferred".into(), "1".into()), cap: None };
        let degrade = crate::config::Degrade { model: Some("small".into()), header: None, limit: None };
        let uncapped = [
            limits(None, 10, AtHard::Block),
            limits(None, 10, AtHard::Warn),
            limits(None, 10, AtHard::Overage),
            Limits { queue: Some(queue), ..limits(None, 10, AtHard::Queue) },
            Limits { degrade: Some(degrade), ..limits(None, 10, AtHard::Degrade) },
        ];
        for l in &uncapped {
            assert_eq!(l.request_ceiling(), 10);
            let (write, charge) = decide(None, l, 11, true, NOON, Alignment::default());
            assert!(!charge.admitted && charge.too_large, "{:?}", l.at_hard);
            assert_eq!(write, None);
            // The caller's own standing is unchanged: nothing was used.
            assert_eq!((charge.usage.used, charge.usage.state), (0, State::Ok));
            assert!(decide(None, l, 10, true, NOON, Alignment::default()).1.admitted);
        }
    }

    #[test]
    fn capped_behaviours_admit_up_to_hard_plus_their_cap_in_one_request() {
        let l = Limits { overage_cap: Some(5), ..limits(None, 10, AtHard::Overage) };
        assert_eq!(l.request_ceiling(), 15);
        let (write, charge) = decide(None, &l, 15, false, NOON, Alignment::default());
        assert!(charge.admitted);
        assert_eq!((charge.served, write.map(|c| c.used)), (Served::Overage, Some(15)));
        let (_, charge) = decide(None, &l, 16, false, NOON, Alignment::default());
        assert!(!charge.admitted && charge.too_large);
    }

    #[test]
    fn a_request_that_fits_once_the_window_resets_is_blocked_not_too_large() {
        let l = limits(None, 10, AtHard::Block);
        let (stored, _) = run(&l, 1, 8);
        let (_, charge) = decide(stored, &l, 5, false, NOON, Alignment::default());
        assert!(!charge.admitted && !charge.too_large);
        assert_eq!(charge.usage.state, State::Blocked);
    }

    #[test]
    fn grants_let_a_request_past_the_ceiling_fit() {
        let l = limits(None, 10, AtHard::Block);
        let granted = Some(add_grant(None, 100));
        // The plan's 10 and 95 of the grant.
        let (write, charge) = decide(granted, &l, 105, false, NOON, Alignment::default());
        assert!(charge.admitted && !charge.too_large);
        assert_eq!(charge.from_grant, 95);
        assert_eq!(write.map(|c| (c.used, c.grant)), Some((105, 5)));
        // More than the plan and the grant together: it never fits.
        let (write, charge) = decide(granted, &l, 111, false, NOON, Alignment::default());
        assert!(!charge.admitted && charge.too_large);
        assert_eq!(write, None);
        // Past the ceiling but within the grant once the plan is spent.
        let (spent, _) = run(&l, 1, 10);
        let topped = Some(add_grant(spent, 50));
        assert!(decide(topped, &l, 50, false, NOON, Alignment::default()).1.admitted);
        assert!(decide(topped, &l, 51, false, NOON, Alignment::default()).1.too_large);
    }

    #[test]
    fn stored_sums_saturate_at_the_bound() {
        let l = limits(None, MAX_UNITS, AtHard::Warn);
        let near = Counter { used: MAX_UNITS - 3, ..current(None, &l, NOON, Alignment::default()) };
        let (write, charge) = decide(Some(near), &l, 10, false, NOON, Alignment::default());
        assert!(charge.admitted);
        assert_eq!(write.map(|c| c.used), Some(MAX_UNITS));
        let start = near.window_start;
        assert_eq!(adjust(Some(near), start, i64::MAX, MAX_UNITS).map(|c| c.used), Some(MAX_UNITS));
        assert_eq!(add_grant(Some(Counter { grant: MAX_UNITS - 1, ..near }), 5).grant, MAX_UNITS);
        // A record written before counts were bounded reads at the bound.
        let foreign = Counter { used: u64::MAX, grant_used: u64::MAX, grant: u64::MAX, ..near };
        let usage = view(Some(foreign), &l, NOON, Alignment::default());
        assert_eq!((usage.used, usage.grant), (MAX_UNITS, MAX_UNITS));
        assert_eq!(add_grant(Some(foreign), 1).grant, MAX_UNITS);
        let refunded = adjust(Some(foreign), start, i64::MIN, 0).unwrap();
        assert_eq!((refunded.used, refunded.grant_used, refunded.grant), (0, 0, MAX_UNITS));
    }

    #[test]
    fn corrections_never_settle_a_request_above_its_ceiling() {
        let l = limits(None, 100, AtHard::Warn);
        let (stored, _) = run(&l, 1, 30);
        let start = stored.unwrap().window_start;
        // Charged 30 of a ceiling of 100: a correction adds at most 70.
        assert_eq!(adjust(stored, start, 500, 70).map(|c| c.used), Some(100));
        assert_eq!(adjust(stored, start, 20, 70).map(|c| c.used), Some(50));
        assert_eq!(adjust(stored, start, 5, 0), None);
        // Refunds are not bounded by it.
        assert_eq!(adjust(stored, start, -30, 0).map(|c| c.used), Some(0));
        assert_eq!((bounded_delta(500, 70), bounded_delta(-500, 0)), (70, -500));
        assert_eq!(bounded_delta(i64::MAX, u64::MAX), MAX_UNITS as i64);
    }

    #[test]
    fn a_nonsensical_stored_window_does_not_panic() {
        // Found by fuzzing: a record whose window ends before it starts.
        let l =
            Limits { pace: Some(crate::config::Pace { used: 0.5, before: 0.5 }), ..limits(None, 10, AtHard::Block) };
        let odd = Counter { window_start: NOON + 100, window_end: NOON + 200, used: 3, ..Counter::default() };
        let inverted = Counter { window_start: i64::MAX, window_end: i64::MIN + 1, ..odd };
        for c in [odd, inverted] {
            assert!(pace_of(&c, &l, NOON).is_some());
        }
        assert_eq!(crate::engine::seconds_until(i64::MAX, 0), i64::MAX / 1000);
    }

    #[test]
    fn view_reports_blocked_once_exhausted() {
        let l = limits(None, 2, AtHard::Block);
        let (stored, _) = run(&l, 2, 1);
        let usage = view(stored, &l, NOON, Alignment::default());
        assert_eq!((usage.used, usage.state), (2, State::Blocked));
        assert_eq!(view(None, &l, NOON, Alignment::default()).state, State::Ok);
    }

    #[test]
    fn given_back_shows_the_standing_before_the_charge_grant_units_first() {
        let l = limits(None, 10, AtHard::Block);
        let now = 1_795_348_800;
        let (before, _) = decide(None, &l, 8, false, now, Alignment::default());
        let before = before.map(|c| add_grant(Some(c), 5)).unwrap();
        let was = view(Some(before), &l, now, Alignment::default());
        // 2 from the plan, 3 from the grant: warning, then blocked-at-hard with a grant.
        let (_, charge) = decide(Some(before), &l, 5, false, now, Alignment::default());
        assert!(charge.admitted && charge.from_grant == 3, "{charge:?}");
        let back = given_back(&charge.usage, &l, charge.cost);
        assert_eq!(back, was);
        assert_eq!((back.used, back.plan_used, back.grant, back.state), (8, 8, 5, State::Warning));
        // Nothing charged: nothing changes.
        assert_eq!(given_back(&was, &l, 0), was);
    }
}
