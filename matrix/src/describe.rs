//! The matrix in words: cells, windows, rules, and sample copy, written from
//! the checked config (and, for the sentences users read, by the core's own
//! copy code, so the samples are exactly what the filter would say).

use quota_core::calendar::rfc3339;
use quota_core::config::{
    AtHard, Cell, Class, ClassId, Config, Cost, Limits, Message, Pace, PastSoft, PathMatch, Rule, Scope, TextTest,
    TierId, TokenCount, ValueTest,
};
use quota_core::copy::{self, per_window, Facts};
use quota_core::cost::Body;
use quota_core::decide::{State, Usage};
use quota_core::money::{self, Currency};
use quota_core::window::{CalendarUnit, Window, WindowSpec};
use serde_json::Value;

/// The moment the sample copy pretends it is: 2026-11-22 19:48 UTC.
pub const SAMPLE_NOW: i64 = 1_795_376_880;
/// The sample's time until the window resets: 4 h 12 min.
pub const SAMPLE_RESET_AFTER: i64 = 4 * 3600 + 12 * 60;

/// How a class's numbers read: counts as integers; for a class metered in
/// money (its numbers are micro-units of the currency), amounts of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts<'a> {
    currency: Option<&'a Currency>,
}

impl<'a> Amounts<'a> {
    /// A class counted in units.
    #[cfg(test)]
    pub const UNITS: Amounts<'static> = Amounts { currency: None };

    /// The numbers of `class` in `config`.
    pub fn of(config: &'a Config, class: ClassId) -> Amounts<'a> {
        Amounts { currency: config.currency_of(class) }
    }

    /// Amounts of `currency`; counts when `None`.
    pub fn in_currency(currency: Option<&'a Currency>) -> Amounts<'a> {
        Amounts { currency }
    }

    /// The class's currency, when it is metered in money.
    pub fn currency(&self) -> Option<&'a Currency> {
        self.currency
    }

    /// A limit, a level, a cap: "10", "$5.00" (money rounded as the
    /// filter's copy rounds limits; a limit is a whole number of minor
    /// units, so it reads exactly).
    pub fn show(&self, n: u64) -> String {
        match self.currency {
            Some(c) => money::format_amount(n, c),
            None => n.to_string(),
        }
    }

    /// An amount as it is, never rounded: a cost, a price ("$0.01025").
    pub fn exact(&self, n: u64) -> String {
        match self.currency {
            Some(c) => exact_money(n, c),
            None => n.to_string(),
        }
    }
}

/// `micros` of `currency` exactly, for people: "$0.004", "$2.50", "0.50 CHF".
pub fn exact_money(micros: u64, currency: &Currency) -> String {
    let text = money::decimal_text(micros, currency);
    match currency.symbol() {
        Some(symbol) => format!("{symbol}{text}"),
        None => format!("{text} {}", currency.code()),
    }
}

/// "5 / 10 a day", "10 a month", "3 / 5 every 5 hours", "$3.00 / $5.00 a month".
pub fn limits(l: &Limits, a: Amounts) -> String {
    let amount = match l.soft {
        Some(soft) => format!("{} / {}", a.show(soft), a.show(l.hard)),
        None => a.show(l.hard),
    };
    format!("{amount} {}", per_window(&l.window))
}

/// A matrix cell: the limits and whatever departs from the defaults. A
/// stack lists each limit with its scope: "300 a day pooled per workspace +
/// 50 a day per member".
pub fn cell(c: &Cell, a: Amounts) -> String {
    match c.limits() {
        [] => "not included".into(),
        [l] => limit(l, a),
        stack => stack.iter().map(|l| stacked(l, stack, a)).collect::<Vec<_>>().join(" + "),
    }
}

/// One limit of a one-limit cell: its amounts and window, and whatever
/// departs from the defaults.
fn limit(l: &Limits, a: Amounts) -> String {
    let mut parts = vec![limits(l, a)];
    match l.scope {
        Scope::User => {}
        Scope::Workspace => parts.push("pooled".into()),
        Scope::Organisation => parts.push("pooled per organisation".into()),
    }
    parts.extend(behaviours(l, a));
    parts.join(", ")
}

/// One limit of a stack: "300 a day pooled per workspace", "50 a day per
/// member", and whatever departs from the defaults. A stack of per-user
/// limits names no scope ("45 every 5 hours + 900 a week"), as a one-limit
/// cell names none.
fn stacked(l: &Limits, stack: &[Limits], a: Amounts) -> String {
    let head = match (l.scope, stack.iter().any(|o| o.scope.pooled())) {
        (Scope::User, false) => limits(l, a),
        _ => format!("{} {}", limits(l, a), stack_scope(l, stack)),
    };
    let mut parts = vec![head];
    if l.admin_cap {
        parts.push("workspace admins may set each member's cap".into());
    }
    parts.extend(behaviours(l, a));
    parts.join(", ")
}

/// Whose counter a limit of `stack` charges: "pooled per workspace",
/// "per member" (a per-user limit inside a pool), "per user".
pub fn stack_scope(l: &Limits, stack: &[Limits]) -> &'static str {
    match l.scope {
        Scope::User if stack.iter().any(|o| o.scope.pooled()) => "per member",
        s => scope(s),
    }
}

/// How the tables name one limit of a cell: the class alone for a one-limit
/// cell, else the class and the limit ("Drafts (50 a day per member)").
pub fn limit_label(class: &str, stack: &[Limits], i: usize, a: Amounts) -> String {
    match (stack, stack.get(i)) {
        ([_], _) | (_, None) => class.to_string(),
        (_, Some(l)) => format!("{class} ({} {} {})", a.show(l.hard), per_window(&l.window), stack_scope(l, stack)),
    }
}

/// What a limit does past its soft and hard limits, beyond the defaults.
fn behaviours(l: &Limits, a: Amounts) -> Vec<String> {
    let mut parts = Vec::new();
    if l.past_soft == PastSoft::Degrade {
        parts.push(format!("past soft {}", degraded_to(l)));
    }
    match l.at_hard {
        AtHard::Block => {}
        AtHard::Warn => parts.push("then warn only".into()),
        AtHard::Degrade => parts.push(format!("then {}{}", degraded_to(l), cap(l, a))),
        AtHard::Overage => parts.push(format!("then overage{}", cap(l, a))),
        AtHard::Queue => parts.push(format!("then queued{}", cap(l, a))),
    }
    if let Some(f) = l.confirm_above {
        parts.push(format!("confirm above {} of what remains", percent(f)));
    }
    if let Some(p) = l.pace {
        parts.push(format!("pace alert at {}", pace(&p, &l.window)));
    }
    parts
}

/// "served by gpt-4o-mini", "routed with x-route: lite".
pub fn degraded_to(l: &Limits) -> String {
    match l.degrade.as_ref() {
        Some(d) => match (&d.model, &d.header) {
            (Some(model), _) => format!("served by {model}"),
            (None, Some((name, value))) => format!("routed with {name}: {value}"),
            (None, None) => "degraded".into(),
        },
        None => "degraded".into(),
    }
}

/// " (up to 50 more)" for behaviours past the hard limit with a ceiling.
fn cap(l: &Limits, a: Amounts) -> String {
    match l.beyond_hard_cap() {
        Some(n) if l.at_hard != AtHard::Block => format!(" (up to {} more)", a.show(n)),
        _ => String::new(),
    }
}

/// "80% used before 33% of the month".
pub fn pace(p: &Pace, window: &WindowSpec) -> String {
    format!("{} used before {} of the {}", percent(p.used), percent(p.before), window_noun(window))
}

/// "10%", "33%", "12.5%".
pub fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{:.1}%", p)
    }
}

/// One window, as a noun: "day", "month", "5-hour window".
pub fn window_span(spec: &WindowSpec) -> String {
    match spec {
        WindowSpec::FirstUse { seconds } => {
            let (n, unit) = match *seconds {
                s if s % 86_400 == 0 => (s / 86_400, "day"),
                s if s % 3600 == 0 => (s / 3600, "hour"),
                s if s % 60 == 0 => (s / 60, "minute"),
                s => (s, "second"),
            };
            format!("{n}-{unit} window")
        }
        calendar => window_noun(calendar),
    }
}

/// "day", "month", "window" (for the pace alert's "33% of the window").
fn window_noun(spec: &WindowSpec) -> String {
    match spec {
        WindowSpec::Calendar(CalendarUnit::Minute) => "minute".into(),
        WindowSpec::Calendar(CalendarUnit::Hour) => "hour".into(),
        WindowSpec::Calendar(CalendarUnit::Day) => "day".into(),
        WindowSpec::Calendar(CalendarUnit::Week) => "week".into(),
        WindowSpec::Calendar(CalendarUnit::Month) => "month".into(),
        WindowSpec::FirstUse { .. } => "window".into(),
    }
}

const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// When a window resets, in the calendar's time zone: "daily at 00:00",
/// "every 5 hours, from the first request".
pub fn resets(config: &Config, spec: &WindowSpec) -> String {
    match spec {
        WindowSpec::Calendar(CalendarUnit::Minute) => "every minute".into(),
        WindowSpec::Calendar(CalendarUnit::Hour) => "every hour, on the hour".into(),
        WindowSpec::Calendar(CalendarUnit::Day) => "daily at 00:00".into(),
        WindowSpec::Calendar(CalendarUnit::Week) => {
            let start = config.calendar.alignment.week_start as usize;
            format!("{}s at 00:00", WEEKDAYS.get(start).copied().unwrap_or("Monday"))
        }
        WindowSpec::Calendar(CalendarUnit::Month) => "the 1st of each month at 00:00".into(),
        WindowSpec::FirstUse { .. } => format!("{}, from the first request", per_window(spec)),
    }
}

/// The calendar windows' time zone: "UTC", "UTC+05:30", and whether callers bring their own.
pub fn time_zone(config: &Config) -> String {
    let minutes = config.calendar.alignment.utc_offset_minutes;
    let zone = if minutes == 0 {
        "UTC".to_string()
    } else {
        let sign = if minutes < 0 { '-' } else { '+' };
        let m = minutes.unsigned_abs();
        format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
    };
    if config.calendar.user_utc_offset.is_empty() {
        format!("Calendar windows (day, week, month) follow {zone}.")
    } else {
        format!(
            "Calendar windows (day, week, month) follow {zone}, or the caller's own UTC offset when a `calendar.user_utc_offset` source gives one."
        )
    }
}

pub fn scope(s: Scope) -> &'static str {
    match s {
        Scope::User => "per user",
        Scope::Workspace => "pooled per workspace",
        Scope::Organisation => "pooled per organisation",
    }
}

/// What happens to a request past the hard limit.
pub fn at_hard(l: &Limits, a: Amounts) -> String {
    let then = match l.beyond_hard_cap() {
        Some(n) if l.at_hard != AtHard::Block => format!(", up to {} more, then refused (429)", a.show(n)),
        _ => String::new(),
    };
    match l.at_hard {
        AtHard::Block => "refused (429)".into(),
        AtHard::Warn => "allowed, still warning".into(),
        AtHard::Degrade => format!("allowed, {}{then}", degraded_to(l)),
        AtHard::Overage => format!("allowed as overage{then}"),
        AtHard::Queue => {
            let header = l.queue.as_ref().map(|q| format!(" ({}: {})", q.header.0, q.header.1)).unwrap_or_default();
            format!("allowed, queued{header}{then}")
        }
    }
}

/// What happens past the soft limit, when it is more than a warning.
pub fn past_soft(l: &Limits) -> String {
    match l.past_soft {
        PastSoft::Warn => "—".into(),
        PastSoft::Degrade => degraded_to(l),
    }
}

/// "refused (428) until confirmed, when one request costs more than 10% of what remains".
pub fn confirm(fraction: f64) -> String {
    format!("asked (428) when one request costs more than {} of what remains", percent(fraction))
}

/// Units per request: "1", "1 per record in `items`", with model
/// multipliers; in money, what a request costs: "$0.004", "1 per item of
/// the array `requests` (10 if absent), at $0.002 each", or the rule of a
/// class priced by the prices table.
pub fn cost(config: &Config, class: &Class) -> String {
    let fallback = class.cost_fallback;
    let currency = class.unit_price.and(config.prices.as_ref()).map(|p| p.currency());
    let mut text = match &class.cost {
        Cost::Fixed(n) => match (class.unit_price, currency) {
            (Some(price), Some(c)) if *n == 1 => exact_money(price, c),
            (Some(price), Some(c)) => format!(
                "{} ({n} at {} each)",
                exact_money(quota_core::cost::priced_units(class, *n), c),
                exact_money(price, c)
            ),
            _ => n.to_string(),
        },
        Cost::Records { jsonl: true, .. } => format!("1 per line of a JSON Lines body ({fallback} if unreadable)"),
        Cost::Records { field: Some(f), .. } => {
            format!("1 per item of the array `{}` ({fallback} if absent)", f.join("."))
        }
        Cost::Records { field: None, .. } => format!("1 per item of the body's array ({fallback} if not one)"),
        Cost::Bytes { per: 1 } => format!("1 per byte of body ({fallback} if unread)"),
        Cost::Bytes { per } => format!("1 per {per} bytes of body, rounded up ({fallback} if unread)"),
        Cost::Priced { default_max_tokens, .. } => format!(
            "priced by the model (see Prices): the prompt at its input price and the completion budget \
             ({default_max_tokens} tokens if unset) at its output price reserved, then settled to the reported \
             tokens of each kind at their prices"
        ),
        Cost::Tokens { default_max_tokens, reconcile, count, .. } => {
            let mut t = match count {
                TokenCount::All => format!(
                    "estimated tokens: prompt characters / 4 + the completion budget ({default_max_tokens} if unset)"
                ),
                TokenCount::Input => "input tokens only, estimated as prompt characters / 4".to_string(),
                TokenCount::Output => {
                    format!("output tokens only, estimated as the completion budget ({default_max_tokens} if unset)")
                }
            };
            if *reconcile {
                t.push_str(", corrected from the response's reported usage");
            }
            t
        }
    };
    if let (Some(price), Some(c), false) = (class.unit_price, currency, matches!(class.cost, Cost::Fixed(_))) {
        text.push_str(&format!(", at {} each", exact_money(price, c)));
    }
    if !class.models.is_empty() {
        let factors: Vec<String> = class.models.iter().map(|(m, f)| format!("{m} ×{f}")).collect();
        text.push_str(&format!("; by model: {}", factors.join(", ")));
    }
    text
}

/// A match rule in words: "POST /v1/chat/completions when model is gpt-4o-mini".
/// `raw` is the rule as written (for a glob's text).
pub fn rule(r: &Rule, raw: Option<&Value>) -> String {
    let methods = if r.methods.is_empty() { "any method".to_string() } else { r.methods.join(" or ") };
    let path = match &r.path {
        None => "any path".to_string(),
        Some(PathMatch::Exact(p)) => format!("`{p}`"),
        Some(PathMatch::Prefix(p)) => format!("paths starting `{p}`"),
        Some(PathMatch::Glob(_)) => raw
            .and_then(|v| v.pointer("/path/glob"))
            .and_then(Value::as_str)
            .map_or_else(|| "a path pattern".to_string(), |g| format!("`{g}`")),
    };
    let mut conditions: Vec<String> = Vec::new();
    for h in &r.headers {
        let name = &h.name;
        conditions.push(match &h.test {
            TextTest::Equals(v) => format!("header {name} is {v}"),
            TextTest::OneOf(vs) => format!("header {name} is one of {}", vs.join(", ")),
            TextTest::Prefix(p) => format!("header {name} starts with {p}"),
            TextTest::Exists(true) => format!("header {name} is present"),
            TextTest::Exists(false) => format!("header {name} is absent"),
        });
    }
    for b in &r.body {
        let field = b.field.join(".");
        conditions.push(match &b.test {
            ValueTest::Equals(v) => format!("{field} is {}", value(v)),
            ValueTest::OneOf(vs) => {
                format!("{field} is one of {}", vs.iter().map(value).collect::<Vec<_>>().join(", "))
            }
            ValueTest::Prefix(p) => format!("{field} starts with {p}"),
            ValueTest::Exists(true) => format!("the body has {field}"),
            ValueTest::Exists(false) => format!("the body has no {field}"),
            ValueTest::Compare { gt, gte, lt, lte } => {
                let bounds: Vec<String> = [(">", gt), (">=", gte), ("<", lt), ("<=", lte)]
                    .iter()
                    .filter_map(|(op, b)| b.map(|b| format!("{field} {op} {b}")))
                    .collect();
                bounds.join(" and ")
            }
        });
    }
    let head = format!("{methods} {path}");
    if conditions.is_empty() {
        head
    } else {
        format!("{head} when {}", conditions.join(" and "))
    }
}

/// A JSON value in a sentence: strings bare, the rest as JSON.
fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The sentences one cell shows, with sample numbers.
pub struct Samples {
    /// The first warning level and the warning shown there.
    pub warning: Option<(u64, String)>,
    /// At the hard limit: the 429 message, the past-the-limit message of the
    /// cell's `at_hard` behaviour, or the 403 for a class outside the plan.
    pub wall: String,
    /// `past_soft: degrade`: the first degraded request's usage and message.
    pub degraded: Option<(u64, String)>,
    /// Units left when a request is first asked for confirmation, and the 428 message.
    pub confirm: Option<(u64, String)>,
    /// The pace message at the pace threshold, with the time still to go.
    pub pace: Option<String>,
}

/// What a `tier` user reads about `class` when the cell's limit `limit`
/// (its index in the stack; 0 for a one-limit cell) binds, by the core's
/// own copy code.
pub fn samples(config: &Config, tier: TierId, class: ClassId, limit: usize) -> Option<Samples> {
    let base = Facts::new(config, tier, class, limit)?;
    let Some(l) = base.limits else {
        return Some(Samples {
            warning: None,
            wall: copy::message(config, Message::NotIncluded, &base),
            degraded: None,
            confirm: None,
            pace: None,
        });
    };
    // A sample request: what a request without a readable body would cost
    // (in money: its units at the unit price, or a priced class's
    // reservation of the completion budget at the dearest price).
    let requested = quota_core::engine::request_cost(config, class, Body::default());
    let say = |message: Message, used: u64, state: State, reset_after: i64| {
        let mut facts = Facts::new(config, tier, class, limit)?;
        facts.usage = Some(sample_usage(l, used, state, reset_after));
        facts.requested = requested;
        facts.reset_after = reset_after;
        Some(copy::message(config, message, &facts))
    };
    let warning = l
        .first_warning()
        .and_then(|at| say(Message::Warning, at, State::Warning, SAMPLE_RESET_AFTER).map(|text| (at, text)));
    let past = l.hard.saturating_add(requested);
    let wall = match l.at_hard {
        AtHard::Block => say(Message::Blocked, l.hard, State::Blocked, SAMPLE_RESET_AFTER)?,
        AtHard::Warn => say(Message::Warning, past, State::Warning, SAMPLE_RESET_AFTER)?,
        AtHard::Degrade => say(Message::Degraded, past, State::Degraded, SAMPLE_RESET_AFTER)?,
        AtHard::Overage => say(Message::Overage, past, State::Overage, SAMPLE_RESET_AFTER)?,
        AtHard::Queue => say(Message::Queued, past, State::Queued, SAMPLE_RESET_AFTER)?,
    };
    let degraded = match (l.past_soft, l.soft) {
        (PastSoft::Degrade, Some(soft)) => {
            let used = soft.saturating_add(requested).min(l.hard);
            say(Message::Degraded, used, State::Degraded, SAMPLE_RESET_AFTER).map(|t| (used, t))
        }
        _ => None,
    };
    let confirm = l.confirm_above.and_then(|f| {
        // The most units left at which a request of this class is asked
        // to confirm; in money, the most whole minor units (cents).
        let step = Amounts::of(config, class).currency().map_or(1, minor_unit);
        let left = ((requested as f64 / f).ceil() as u64).saturating_sub(1).min(l.hard);
        let left = left - left % step;
        (left >= requested && left > 0)
            .then(|| {
                let used = l.hard - left;
                say(Message::Confirm, used, State::Ok, SAMPLE_RESET_AFTER).map(|t| (left, t))
            })
            .flatten()
    });
    let pace = l.pace.and_then(|p| {
        let used = ((l.hard as f64) * p.used).ceil() as u64;
        let to_go = ((1.0 - p.before) * l.window.nominal_seconds() as f64) as i64;
        say(Message::Pace, used.min(l.hard), State::Ok, to_go)
    });
    Some(Samples { warning, wall, degraded, confirm, pace })
}

/// Micro-units in one minor unit of `currency` (10 000 for a cent).
pub fn minor_unit(currency: &Currency) -> u64 {
    10u64.pow(money::MAX_DECIMALS.saturating_sub(currency.minor_digits()))
}

/// A counter at `used` whose window ends `reset_after` seconds after [`SAMPLE_NOW`].
fn sample_usage(l: &Limits, used: u64, state: State, reset_after: i64) -> Usage {
    let end = SAMPLE_NOW + reset_after;
    Usage {
        used,
        plan_used: used,
        hard: l.hard,
        soft: l.soft,
        window: Window { start: end - l.window.nominal_seconds(), end },
        state,
        over: used.saturating_sub(l.hard),
        grant: 0,
    }
}

/// The sample's reset moment, for the note under the copy.
pub fn sample_reset_at() -> String {
    rfc3339(SAMPLE_NOW + SAMPLE_RESET_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Config {
        Config::from_json(include_bytes!("../../envoy/demo-config.json")).unwrap()
    }

    #[test]
    fn the_sample_moment_is_4_h_12_min_before_midnight() {
        assert_eq!(rfc3339(SAMPLE_NOW), "2026-11-22T19:48:00Z");
        assert_eq!(sample_reset_at(), "2026-11-23T00:00:00Z");
    }

    #[test]
    fn cells_read_like_the_product_table() {
        let config = demo();
        let text = |t: usize, c: usize| cell(&config.tiers[t].cells[c], Amounts::UNITS);
        assert_eq!(text(0, 2), "5 / 10 a day");
        assert_eq!(text(0, 0), "not included");
        assert_eq!(text(2, 2), "200 / 300 a day pooled per workspace + 50 a day per member");
        assert_eq!(text(2, 0), "8 / 10 a day, pooled");
        assert_eq!(text(3, 2), "2000 a day, then warn only");
        assert_eq!(text(1, 3), "10 a month, pace alert at 80% used before 33% of the month");
    }

    #[test]
    fn samples_are_the_filters_own_sentences() {
        let config = demo();
        let s = samples(&config, TierId(0), ClassId(2), 0).unwrap();
        assert_eq!(
            s.warning,
            Some((
                5,
                "You've used 5 of your 10 drafts for today. They reset in 4 h 12 min. Pro includes 100 a day: https://example.com/upgrade?plan=pro".to_string()
            ))
        );
        assert_eq!(
            s.wall,
            "You've used your 10 drafts for today. They reset in 4 h 12 min. Pro includes 100 a day: https://example.com/upgrade?plan=pro"
        );
        let past = samples(&config, TierId(3), ClassId(2), 0).unwrap();
        assert!(past.wall.starts_with("You're 1 draft past your 2000 drafts for today."));
    }

    fn stacked() -> Config {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stacked.json");
        Config::from_json(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_stacked_cell_lists_each_limit_with_its_scope() {
        let config = stacked();
        let text = |t: usize, c: usize| cell(&config.tiers[t].cells[c], Amounts::UNITS);
        // Per-user limits only: no scope, as in a one-limit cell.
        assert_eq!(text(0, 0), "3 every 5 hours + 5 a week");
        assert_eq!(
            text(2, 1),
            "200 / 300 a day pooled per workspace + 50 a day per member, workspace admins may set each member's cap"
        );
        assert_eq!(text(2, 2), "1000 a month pooled per organisation, then queued + 100 a month per member");
        let drafts = config.tiers[2].cells[1].limits();
        assert_eq!(limit_label("Drafts", drafts, 0, Amounts::UNITS), "Drafts (300 a day pooled per workspace)");
        assert_eq!(limit_label("Drafts", drafts, 1, Amounts::UNITS), "Drafts (50 a day per member)");
        assert_eq!(limit_label("Drafts", config.tiers[1].cells[1].limits(), 0, Amounts::UNITS), "Drafts");
        assert_eq!(
            limit_label("Chats", config.tiers[0].cells[0].limits(), 1, Amounts::UNITS),
            "Chats (5 a week per user)"
        );
    }

    #[test]
    fn each_limit_of_a_stack_has_its_own_samples() {
        let config = stacked();
        let (team, drafts) = (TierId(2), ClassId(1));
        let pool = samples(&config, team, drafts, 0).unwrap();
        let member = samples(&config, team, drafts, 1).unwrap();
        assert_eq!(pool.warning.as_ref().map(|(at, _)| *at), Some(200));
        assert_eq!(
            pool.wall,
            "Your team has used its 300 drafts for today. They reset in 4 h 12 min. Enterprise includes 3000 a day: https://example.com/contact-sales"
        );
        // The member's limit has its own copy, and its own upgrade (Enterprise's member cap).
        assert_eq!(member.wall, "You've reached your own cap of 50 drafts for today. They reset in 4 h 12 min. A workspace admin can raise it.");
        assert!(member
            .warning
            .unwrap()
            .1
            .ends_with("Enterprise includes 500 a day: https://example.com/contact-sales"));
        assert!(samples(&config, team, drafts, 2).is_none());
        // The weekly chats limit of Pro has the pace alert, not the 5-hour one.
        assert!(samples(&config, TierId(1), ClassId(0), 0).unwrap().pace.is_none());
        assert!(samples(&config, TierId(1), ClassId(0), 1).unwrap().pace.is_some());
    }

    fn priced() -> Config {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/priced.json");
        Config::from_json(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn money_classes_read_as_money_and_unit_classes_as_counts() {
        let config = priced();
        let text = |t: usize, c: usize| cell(&config.tiers[t].cells[c], Amounts::of(&config, ClassId(c)));
        // 300 and 500 cents, held as micro-dollars.
        assert_eq!(config.tiers[0].cells[1].limits()[0].hard, 5_000_000);
        assert_eq!(text(0, 1), "$3.00 / $5.00 a month");
        assert_eq!(text(1, 0), "$15.00 / $20.00 a month, then overage (up to $5.00 more)");
        assert_eq!(text(0, 3), "5 / 10 a day");
        assert_eq!(cost(&config, &config.classes[1]), "$0.004");
        assert!(cost(&config, &config.classes[0]).starts_with("priced by the model"));
        let three = Class { cost: Cost::Fixed(3), ..config.classes[1].clone() };
        assert_eq!(cost(&config, &three), "$0.012 (3 at $0.004 each)");
        let a = Amounts::of(&config, ClassId(1));
        assert_eq!(
            (a.show(10_250), a.exact(10_250), Amounts::UNITS.exact(10_250)),
            ("$0.01".into(), "$0.01025".into(), "10250".into())
        );
        let chf = Currency::from_code("CHF").unwrap();
        assert_eq!((exact_money(2_500_000, &chf), minor_unit(&chf)), ("2.50 CHF".to_string(), 10_000));
        assert_eq!(minor_unit(&Currency::from_code("JPY").unwrap()), 1_000_000);
    }

    #[test]
    fn a_money_sample_costs_what_a_request_without_a_body_would() {
        let config = priced();
        // Standard: one unit at $0.004. Premium: no body, so the completion
        // budget (4000) at the dearest output price ($10.00 a million).
        let team = samples(&config, TierId(2), ClassId(1), 0).unwrap();
        assert_eq!(
            team.confirm.map(|(left, _)| left),
            // 25% of what remains is less than $0.004 below $0.016: $0.01, in whole cents.
            Some(10_000)
        );
        let pro = samples(&config, TierId(1), ClassId(0), 0).unwrap();
        assert!(pro.wall.contains("this one counts as overage ($0.04 so far)"), "{}", pro.wall);
    }

    #[test]
    fn first_use_windows_are_named_by_their_length() {
        assert_eq!(window_span(&WindowSpec::FirstUse { seconds: 5 * 3600 }), "5-hour window");
        assert_eq!(window_span(&WindowSpec::FirstUse { seconds: 90 }), "90-second window");
        assert_eq!(window_span(&WindowSpec::Calendar(CalendarUnit::Week)), "week");
    }

    #[test]
    fn percentages_keep_one_decimal_when_needed() {
        assert_eq!(percent(0.1), "10%");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(0.33), "33%");
    }
}
