//! The words people read: durations, windows and the default messages.
//! Every message states what happened, when it changes, and what would
//! change it, in plain language.

use crate::config::{Cell, Class, ClassId, Config, TierId};
use crate::decide::Usage;
use crate::window::{CalendarUnit, WindowSpec};

/// "45 s", "12 min", "4 h 12 min", "2 days 3 h". Rounds up, so a reset
/// is never announced earlier than it happens.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        return format!("{s} s");
    }
    let minutes = (s + 59) / 60;
    if minutes < 60 {
        return format!("{minutes} min");
    }
    let (h, m) = (minutes / 60, minutes % 60);
    if h < 24 {
        return if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        };
    }
    let hours = (s + 3599) / 3600;
    let (d, h) = (hours / 24, hours % 24);
    let days = if d == 1 {
        "1 day".to_string()
    } else {
        format!("{d} days")
    };
    if h == 0 {
        days
    } else {
        format!("{days} {h} h")
    }
}

/// A window length in words, for first-use windows: "5-hour", "90-second".
fn length_words(seconds: i64) -> String {
    let (n, unit) = if seconds % 86_400 == 0 {
        (seconds / 86_400, "day")
    } else if seconds % 3600 == 0 {
        (seconds / 3600, "hour")
    } else if seconds % 60 == 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    format!("{n}-{unit}")
}

/// The current window as the end of a sentence: "for today", "for this month",
/// "in this 5-hour window".
pub fn this_window(spec: &WindowSpec) -> String {
    match spec {
        WindowSpec::Calendar(CalendarUnit::Minute) => "for this minute".into(),
        WindowSpec::Calendar(CalendarUnit::Hour) => "for this hour".into(),
        WindowSpec::Calendar(CalendarUnit::Day) => "for today".into(),
        WindowSpec::Calendar(CalendarUnit::Week) => "for this week".into(),
        WindowSpec::Calendar(CalendarUnit::Month) => "for this month".into(),
        WindowSpec::FirstUse { seconds } => format!("in this {} window", length_words(*seconds)),
    }
}

/// How often an allowance renews: "a day", "a month", "every 5 hours".
pub fn per_window(spec: &WindowSpec) -> String {
    match spec {
        WindowSpec::Calendar(CalendarUnit::Minute) => "a minute".into(),
        WindowSpec::Calendar(CalendarUnit::Hour) => "an hour".into(),
        WindowSpec::Calendar(CalendarUnit::Day) => "a day".into(),
        WindowSpec::Calendar(CalendarUnit::Week) => "a week".into(),
        WindowSpec::Calendar(CalendarUnit::Month) => "a month".into(),
        WindowSpec::FirstUse { seconds } => {
            let words = length_words(*seconds);
            let (n, unit) = words.split_once('-').unwrap_or(("", ""));
            if n == "1" {
                format!("every {unit}")
            } else {
                format!("every {n} {unit}s")
            }
        }
    }
}

/// What the next tier would give for this class, for upgrade hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeHint {
    pub tier: TierId,
    pub tier_label: String,
    pub limit: u64,
    pub per_window: String,
    pub url: Option<String>,
}

impl UpgradeHint {
    /// "Pro includes 30 a day: https://…"
    pub fn sentence(&self) -> String {
        match &self.url {
            Some(url) => format!(
                "{} includes {} {}: {url}",
                self.tier_label, self.limit, self.per_window
            ),
            None => format!(
                "{} includes {} {}.",
                self.tier_label, self.limit, self.per_window
            ),
        }
    }
}

/// The upgrade a tier's users would be offered for a class: the tier it
/// upgrades to, if that tier includes the class with a higher limit.
pub fn upgrade_hint(config: &Config, tier: TierId, class: ClassId) -> Option<UpgradeHint> {
    let current = config.tier(tier)?;
    let current_hard = match config.cell(tier, class)? {
        Cell::Limited(l) => l.hard,
        Cell::NotIncluded => 0,
    };
    let next_id = current.upgrade_to?;
    let next = config.tier(next_id)?;
    match config.cell(next_id, class)? {
        Cell::Limited(l) if l.hard > current_hard => Some(UpgradeHint {
            tier: next_id,
            tier_label: next.label.clone(),
            limit: l.hard,
            per_window: per_window(&l.window),
            url: current.upgrade_url.clone(),
        }),
        _ => None,
    }
}

fn they_reset(n: u64, reset_after: i64) -> String {
    let verb = if n == 1 { "It resets" } else { "They reset" };
    format!("{verb} in {}.", human_duration(reset_after))
}

fn with_hint(sentence: String, hint: Option<&UpgradeHint>) -> String {
    match hint {
        Some(h) => format!("{sentence} {}", h.sentence()),
        None => sentence,
    }
}

/// At the wall: "You've used your 3 deep-research calls for today. They reset
/// in 4 h 12 min. Pro includes 30 a day: https://…"
pub fn blocked(
    class: &Class,
    spec: &WindowSpec,
    usage: &Usage,
    requested: u64,
    reset_after: i64,
    hint: Option<&UpgradeHint>,
) -> String {
    let first = if requested > 1 && usage.used < usage.hard {
        format!(
            "This needs {} but you have {} left {}.",
            class.count(requested),
            usage.remaining(),
            this_window(spec)
        )
    } else if requested > usage.hard && usage.used == 0 {
        format!(
            "This needs {}, more than your plan's {} {}.",
            class.count(requested),
            usage.hard,
            per_window(spec)
        )
    } else {
        format!(
            "You've used your {} {}.",
            class.count(usage.hard),
            this_window(spec)
        )
    };
    with_hint(
        format!("{first} {}", they_reset(usage.hard, reset_after)),
        hint,
    )
}

/// Before the wall: "You've used 7 of your 10 drafts for today. They reset in 6 h."
pub fn warning(
    class: &Class,
    spec: &WindowSpec,
    usage: &Usage,
    reset_after: i64,
    hint: Option<&UpgradeHint>,
) -> String {
    let first = if usage.used > usage.hard {
        format!(
            "You're {} past your {} {}.",
            class.count(usage.used - usage.hard),
            class.count(usage.hard),
            this_window(spec)
        )
    } else if usage.used == usage.hard {
        format!(
            "That was the last of your {} {}.",
            class.count(usage.hard),
            this_window(spec)
        )
    } else {
        format!(
            "You've used {} of your {} {}.",
            usage.used,
            class.count(usage.hard),
            this_window(spec)
        )
    };
    with_hint(
        format!("{first} {}", they_reset(usage.hard, reset_after)),
        hint,
    )
}

/// A class outside the caller's plan.
pub fn not_included(class: &Class, tier_label: &str, hint: Option<&UpgradeHint>) -> String {
    with_hint(
        format!("{} isn't included in the {tier_label} plan.", class.label),
        hint,
    )
}

/// No usable identity and no anonymous tier.
pub fn missing_identity() -> String {
    "We couldn't tell who is making this request, so we can't check its usage allowance. Sign in and try again.".into()
}

/// A tier name the matrix does not know, with `unknown_tier: reject`.
pub fn unknown_tier() -> String {
    "We don't recognise the plan on this account, so we can't check its usage allowance. Please contact support.".into()
}

/// The counter store could not answer and the policy is to refuse.
pub fn unavailable(class: &Class) -> String {
    format!(
        "We couldn't check your {} allowance just now. Please try again in a moment.",
        class.label.to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::State;
    use crate::testing::demo_config;
    use crate::window::Window;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(61), "2 min");
        assert_eq!(human_duration(3600), "1 h");
        assert_eq!(human_duration(4 * 3600 + 12 * 60), "4 h 12 min");
        assert_eq!(human_duration(86_400), "1 day");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600), "2 days 3 h");
    }

    #[test]
    fn windows_in_words() {
        assert_eq!(
            this_window(&WindowSpec::Calendar(CalendarUnit::Day)),
            "for today"
        );
        assert_eq!(
            this_window(&WindowSpec::FirstUse { seconds: 5 * 3600 }),
            "in this 5-hour window"
        );
        assert_eq!(
            per_window(&WindowSpec::FirstUse { seconds: 5 * 3600 }),
            "every 5 hours"
        );
        assert_eq!(
            per_window(&WindowSpec::FirstUse { seconds: 86_400 }),
            "every day"
        );
        assert_eq!(
            per_window(&WindowSpec::Calendar(CalendarUnit::Month)),
            "a month"
        );
    }

    fn usage(used: u64, hard: u64) -> Usage {
        Usage {
            used,
            hard,
            soft: None,
            window: Window { start: 0, end: 1 },
            state: State::Blocked,
            over: 0,
        }
    }

    #[test]
    fn blocked_message_names_class_limit_reset_and_upgrade() {
        let config = demo_config();
        let pro = config.tier_by_name("pro").unwrap();
        let research = crate::config::ClassId(0);
        let class = &config.classes[0];
        let hint = upgrade_hint(&config, pro, research);
        let day = WindowSpec::Calendar(CalendarUnit::Day);
        let text = blocked(
            class,
            &day,
            &usage(3, 3),
            1,
            4 * 3600 + 12 * 60,
            hint.as_ref(),
        );
        assert_eq!(
            text,
            "You've used your 3 deep-research calls for today. They reset in 4 h 12 min. \
             Team includes 10 a day: https://example.com/upgrade?plan=team"
        );
        let one = blocked(class, &day, &usage(1, 1), 1, 59, None);
        assert_eq!(
            one,
            "You've used your 1 deep-research call for today. It resets in 59 s."
        );
    }

    #[test]
    fn no_upgrade_hint_from_the_top_tier_or_to_a_smaller_limit() {
        let config = demo_config();
        let enterprise = config.tier_by_name("enterprise").unwrap();
        assert_eq!(
            upgrade_hint(&config, enterprise, crate::config::ClassId(0)),
            None
        );
        let free = config.tier_by_name("free").unwrap();
        let hint = upgrade_hint(&config, free, crate::config::ClassId(0)).unwrap();
        assert_eq!(
            hint.sentence(),
            "Pro includes 3 a day: https://example.com/upgrade?plan=pro"
        );
    }
}
