//! One limit of a class as a meter of its own. A one-limit cell has one; a
//! stacked cell (a team's pool and each member's share, or 45 chats every
//! 5 hours and 900 a week) has one per limit, and the binding limit (the one
//! the class's numbers and words are about) is marked.

use quota_core::config::parse_window;
use quota_core::copy::{human_duration, this_window};
use quota_core::money::{format_amount, format_amount_down, Currency, MICROS_PER_UNIT};
use quota_core::window::WindowSpec;
use quota_core::wire::WireState;
use serde_json::{json, Value};

/// Where a caller stands against one limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    /// The limit's name in the RateLimit fields: "drafts.workspace.day", or
    /// the class's name for a one-limit cell (responses only).
    pub policy: Option<String>,
    /// Whose counter: "user", "workspace", "organisation" or "anonymous".
    pub scope: Option<String>,
    /// The window as the config names it: "day", "5h", "week".
    pub window: Option<String>,
    /// The window's length in seconds (`RateLimit-Policy`'s `w`; responses only).
    pub window_seconds: Option<u64>,
    /// The currency of a class metered in money: `used`, `limit`,
    /// `soft_limit` and `remaining` are then micro-units of it.
    pub currency: Option<Currency>,
    /// `None` when the reading did not say: an admitted response's headers
    /// give the binding limit's numbers, and only the quota of the others.
    pub used: Option<u64>,
    pub limit: Option<u64>,
    pub soft_limit: Option<u64>,
    pub remaining: Option<u64>,
    /// `None` when the reading did not say (see `used`).
    pub state: Option<WireState>,
    /// This limit's sentence: the usage report's for each limit; on a
    /// response, the warning or refusal on the binding limit only.
    pub message: Option<String>,
    /// When this limit's window resets, Unix seconds (the server's clock).
    pub reset_at: Option<i64>,
    /// Seconds from the reading to this limit's reset.
    pub reset_after: Option<i64>,
    /// When the reading was taken, Unix milliseconds (the client's clock).
    pub observed_ms: i64,
    /// The limit the class's own numbers and words are about: the one that
    /// refused, or changed how the request was served, else the one with
    /// the least room left.
    pub binding: bool,
}

impl Meter {
    /// How full the meter is, 0 to 1. A refusal without numbers is full;
    /// a limit whose use the reading did not give is empty.
    pub fn fraction_used(&self) -> f64 {
        fraction(self.used, self.limit, self.state.as_ref())
    }

    /// Whole seconds from `now_ms` to this limit's reset, rounded up; 0 once passed.
    pub fn reset_after_at(&self, now_ms: i64) -> Option<i64> {
        seconds_left(deadline_ms(self.reset_after, self.reset_at, self.observed_ms), now_ms)
    }

    /// The time to the reset in words: "4 h 12 min", "45 s".
    pub fn reset_in_words_at(&self, now_ms: i64) -> Option<String> {
        self.reset_after_at(now_ms).map(human_duration)
    }

    /// Whether this limit's window has reset by `now_ms`.
    pub fn has_reset_at(&self, now_ms: i64) -> bool {
        deadline_ms(self.reset_after, self.reset_at, self.observed_ms).is_some_and(|at| at <= now_ms)
    }

    /// What was used, for people: "30", "$4.20" (rounded down).
    pub fn used_text(&self) -> Option<String> {
        self.used.map(|n| used_text(n, self.currency.as_ref()))
    }

    /// The hard limit, for people: "50", "$5.00".
    pub fn limit_text(&self) -> Option<String> {
        self.limit.map(|n| amount_text(n, self.currency.as_ref()))
    }

    /// The soft limit, for people: "40", "$4.00".
    pub fn soft_limit_text(&self) -> Option<String> {
        self.soft_limit.map(|n| amount_text(n, self.currency.as_ref()))
    }

    /// What remains, for people: "20", "$0.80" (rounded down).
    pub fn remaining_text(&self) -> Option<String> {
        self.remaining.map(|n| used_text(n, self.currency.as_ref()))
    }

    /// The meter's caption: whose limit, how much of it, and when:
    /// "Team: 120 of 300 today", "You: 30 of 50 today", "You: 2 of 45 in
    /// this 5-hour window", "You: $0.45 of $1.00 today"; "Team: up to 300
    /// today" when the use is unknown.
    pub fn label(&self) -> String {
        let mut out = String::with_capacity(40);
        if let Some(who) = self.scope.as_deref().map(whose) {
            out.push_str(who);
            out.push_str(": ");
        }
        match (self.used_text(), self.limit_text()) {
            (Some(used), Some(limit)) => out.push_str(&format!("{used} of {limit}")),
            (None, Some(limit)) => out.push_str(&format!("up to {limit}")),
            (Some(used), None) => out.push_str(&format!("{used} used")),
            (None, None) => {}
        }
        if let Some(when) = self.window_words() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push_str(&when);
        }
        out.trim_end_matches([' ', ':']).to_string()
    }

    /// The current window in words: "today", "this week", "in this 5-hour window".
    fn window_words(&self) -> Option<String> {
        let spec = match (self.window.as_deref(), self.window_seconds) {
            (Some(name), _) => parse_window(name).ok()?,
            (None, Some(seconds)) => WindowSpec::FirstUse { seconds: i64::try_from(seconds).ok()? },
            (None, None) => return None,
        };
        let words = this_window(&spec);
        Some(words.strip_prefix("for ").unwrap_or(&words).to_string())
    }

    /// Everything, as a JSON object with the JavaScript names.
    pub fn to_json(&self, now_ms: i64) -> Value {
        let number = |n: Option<u64>| number_json(n, self.currency.as_ref());
        json!({
            "policy": self.policy,
            "scope": self.scope,
            "window": self.window,
            "windowSeconds": self.window_seconds,
            "currency": self.currency.as_ref().map(Currency::code),
            "used": number(self.used),
            "limit": number(self.limit),
            "softLimit": number(self.soft_limit),
            "remaining": number(self.remaining),
            "usedText": self.used_text(),
            "limitText": self.limit_text(),
            "softLimitText": self.soft_limit_text(),
            "remainingText": self.remaining_text(),
            "fractionUsed": self.fraction_used(),
            "state": self.state.as_ref().map(WireState::as_str),
            "message": self.message,
            "resetAt": self.reset_at.map(quota_core::calendar::rfc3339),
            "resetAfterSeconds": self.reset_after_at(now_ms),
            "resetInWords": self.reset_in_words_at(now_ms),
            "binding": self.binding,
            "label": self.label(),
        })
    }
}

/// Whose limit a scope is, for people.
fn whose(scope: &str) -> &str {
    match scope {
        "user" | "anonymous" => "You",
        "workspace" => "Team",
        "organisation" => "Organisation",
        other => other,
    }
}

/// An amount as JavaScript gets it: a count, or for a class metered in
/// money the amount in the currency's major unit (4.2 for $4.20; from
/// micro-units, so the nearest double to the exact decimal).
pub(crate) fn number(n: Option<u64>, currency: Option<&Currency>) -> Option<f64> {
    n.map(|n| match currency {
        Some(_) => n as f64 / MICROS_PER_UNIT as f64,
        None => n as f64,
    })
}

/// An amount in JSON: a count as an integer, an amount of money as
/// [`number`] gives it.
pub(crate) fn number_json(n: Option<u64>, currency: Option<&Currency>) -> Value {
    match (n, currency) {
        (None, _) => Value::Null,
        (Some(n), None) => Value::from(n),
        (Some(_), Some(_)) => number(n, currency).map_or(Value::Null, Value::from),
    }
}

/// A limit, a cost, for people: "50", "$5.00" (to the nearest minor unit,
/// as the filter's copy writes them).
pub(crate) fn amount_text(n: u64, currency: Option<&Currency>) -> String {
    match currency {
        Some(c) => format_amount(n, c),
        None => n.to_string(),
    }
}

/// What was used or what remains, for people: "30", "$4.20", rounded down
/// as the filter's copy rounds them, so neither claims more than there is.
pub(crate) fn used_text(n: u64, currency: Option<&Currency>) -> String {
    match currency {
        Some(c) => format_amount_down(n, c),
        None => n.to_string(),
    }
}

/// Micro-units in one minor unit of `currency` (10 000 for a cent): the
/// RateLimit fields of a class metered in money count minor units.
pub(crate) fn minor_unit(currency: &Currency) -> u64 {
    10u64.pow(quota_core::money::MAX_DECIMALS.saturating_sub(currency.minor_digits()))
}

/// How full a meter is, 0 to 1: a refusal without numbers is full; no
/// numbers otherwise is empty.
pub(crate) fn fraction(used: Option<u64>, limit: Option<u64>, state: Option<&WireState>) -> f64 {
    match (used, limit) {
        (Some(used), Some(limit)) if limit > 0 => (used as f64 / limit as f64).clamp(0.0, 1.0),
        _ if state == Some(&WireState::Blocked) => 1.0,
        _ => 0.0,
    }
}

/// When a window resets on the client's clock, Unix milliseconds: the
/// server's seconds to the reset counted from the reading (so a client
/// clock that is off does not move the countdown), else its reset time.
pub(crate) fn deadline_ms(reset_after: Option<i64>, reset_at: Option<i64>, observed_ms: i64) -> Option<i64> {
    match reset_after {
        Some(after) => Some(observed_ms.saturating_add(after.saturating_mul(1000))),
        None => reset_at.map(|at| at.saturating_mul(1000)),
    }
}

/// Whole seconds from `now_ms` to `deadline_ms`, rounded up (a reset is
/// never announced early); 0 once it has passed.
pub(crate) fn seconds_left(deadline_ms: Option<i64>, now_ms: i64) -> Option<i64> {
    let left_ms = deadline_ms?.saturating_sub(now_ms).max(0);
    Some((left_ms + 999) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_348_800_000;

    fn meter(scope: &str, window: &str, used: Option<u64>, limit: u64) -> Meter {
        Meter {
            policy: None,
            scope: Some(scope.into()),
            window: Some(window.into()),
            window_seconds: None,
            currency: None,
            used,
            limit: Some(limit),
            soft_limit: None,
            remaining: used.map(|u| limit.saturating_sub(u)),
            state: used.map(|_| WireState::Ok),
            message: None,
            reset_at: None,
            reset_after: Some(3_600),
            observed_ms: T0,
            binding: false,
        }
    }

    #[test]
    fn labels_say_whose_limit_how_much_and_when() {
        assert_eq!(meter("workspace", "day", Some(120), 300).label(), "Team: 120 of 300 today");
        assert_eq!(meter("user", "day", Some(30), 50).label(), "You: 30 of 50 today");
        assert_eq!(meter("user", "5h", Some(2), 45).label(), "You: 2 of 45 in this 5-hour window");
        assert_eq!(meter("user", "week", Some(0), 900).label(), "You: 0 of 900 this week");
        assert_eq!(meter("organisation", "month", None, 5000).label(), "Organisation: up to 5000 this month");
        assert_eq!(meter("anonymous", "hour", Some(1), 3).label(), "You: 1 of 3 this hour");
        let unnamed = Meter { scope: None, window: None, window_seconds: Some(60), ..meter("user", "day", Some(1), 5) };
        assert_eq!(unnamed.label(), "1 of 5 in this 1-minute window");
        let bare = Meter { window: Some("fortnight".into()), ..meter("user", "day", Some(1), 5) };
        assert_eq!(bare.label(), "You: 1 of 5");
    }

    #[test]
    fn a_money_meter_reads_as_money_rounded_as_the_filter_rounds() {
        let usd = Currency::from_code("USD").ok();
        // $0.459999 used of $1.00: used and what remains round down.
        let m = Meter { currency: usd, ..meter("user", "day", Some(459_999), 1_000_000) };
        assert_eq!(m.label(), "You: $0.45 of $1.00 today");
        assert_eq!((m.used_text(), m.remaining_text()), (Some("$0.45".into()), Some("$0.54".into())));
        assert_eq!(m.fraction_used(), 0.459_999);
        let v = m.to_json(T0);
        assert_eq!(
            (v["used"].as_f64(), v["limit"].as_f64(), v["currency"].as_str()),
            (Some(0.459_999), Some(1.0), Some("USD"))
        );
        let pool = Meter { currency: usd, ..meter("workspace", "month", None, 500_000_000) };
        assert_eq!(pool.label(), "Team: up to $500.00 this month");
        // Yen have no minor digits; a currency without a symbol is written after.
        let yen =
            Meter { currency: Currency::from_code("JPY").ok(), ..meter("user", "day", Some(120_000_000), 500_000_000) };
        assert_eq!(yen.label(), "You: ¥120 of ¥500 today");
        let chf = Meter { currency: Currency::from_code("CHF").ok(), ..meter("user", "day", Some(4_000), 5_000_000) };
        assert_eq!(chf.label(), "You: 0.004 CHF of 5.00 CHF today");
        // Counts stay integers in JSON.
        assert_eq!(meter("user", "day", Some(3), 10).to_json(T0)["used"], json!(3));
    }

    #[test]
    fn a_limit_without_its_use_is_an_empty_meter_unless_it_refused() {
        let unknown = meter("workspace", "day", None, 300);
        assert_eq!((unknown.fraction_used(), unknown.state.clone()), (0.0, None));
        let refused = Meter { state: Some(WireState::Blocked), ..unknown };
        assert_eq!(refused.fraction_used(), 1.0);
        assert_eq!(meter("user", "day", Some(75), 50).fraction_used(), 1.0);
    }

    #[test]
    fn each_meter_counts_down_to_its_own_reset() {
        let m = meter("user", "5h", Some(1), 45);
        assert_eq!(m.reset_after_at(T0 + 1), Some(3_600));
        assert_eq!(m.reset_in_words_at(T0 + 60_000).as_deref(), Some("59 min"));
        assert!(!m.has_reset_at(T0 + 3_599_999));
        assert!(m.has_reset_at(T0 + 3_600_000));
        let v = m.to_json(T0);
        assert_eq!(
            (v["label"].as_str(), v["resetAfterSeconds"].as_i64()),
            (Some("You: 1 of 45 in this 5-hour window"), Some(3_600))
        );
        assert_eq!(
            (v["binding"].as_bool(), v["state"].as_str(), v["softLimit"].as_u64()),
            (Some(false), Some("ok"), None)
        );
    }
}
