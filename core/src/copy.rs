//! The words people read. Every message is a template (see `template.rs`):
//! the most specific override in the config wins (cell, then tier, then
//! class, then the top-level `copy`), else a default written here. Every
//! default says what happened, when it changes, and what would change it.

use crate::calendar::push_rfc3339;
use crate::config::{Cell, Class, ClassId, Config, Cost, Limits, Message, Scope, Tier, TierId};
use crate::decide::Usage;
use crate::decimal::{push_i64, push_u64};
use crate::money::Currency;
use crate::template::{render_text, Var};
use crate::window::{CalendarUnit, WindowSpec};
use std::borrow::Cow;

/// The request header that confirms a costly request (`confirm_above`).
pub const CONFIRM_HEADER: &str = "x-quota-confirm";

/// "45 s", "12 min", "4 h 12 min", "2 days 3 h". Rounds up, so a reset
/// is never announced earlier than it happens.
pub fn human_duration(seconds: i64) -> String {
    let mut out = String::with_capacity(16);
    push_human_duration(&mut out, seconds);
    out
}

/// Appends [`human_duration`]'s text.
pub fn push_human_duration(out: &mut String, seconds: i64) {
    let s = seconds.max(0);
    if s < 60 {
        push_i64(out, s);
        return out.push_str(" s");
    }
    let minutes = s.saturating_add(59) / 60;
    if minutes < 60 {
        push_i64(out, minutes);
        return out.push_str(" min");
    }
    let (h, m) = (minutes / 60, minutes % 60);
    if h < 24 {
        push_i64(out, h);
        out.push_str(" h");
        if m != 0 {
            out.push(' ');
            push_i64(out, m);
            out.push_str(" min");
        }
        return;
    }
    let hours = s.saturating_add(3599) / 3600;
    let (d, h) = (hours / 24, hours % 24);
    push_i64(out, d);
    out.push_str(if d == 1 { " day" } else { " days" });
    if h != 0 {
        out.push(' ');
        push_i64(out, h);
        out.push_str(" h");
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
pub fn this_window(spec: &WindowSpec) -> Cow<'static, str> {
    match spec {
        WindowSpec::Calendar(CalendarUnit::Minute) => "for this minute".into(),
        WindowSpec::Calendar(CalendarUnit::Hour) => "for this hour".into(),
        WindowSpec::Calendar(CalendarUnit::Day) => "for today".into(),
        WindowSpec::Calendar(CalendarUnit::Week) => "for this week".into(),
        WindowSpec::Calendar(CalendarUnit::Month) => "for this month".into(),
        WindowSpec::FirstUse { seconds } => format!("in this {} window", length_words(*seconds)).into(),
    }
}

/// A whole window, for what a plan allows in one: "for a whole day",
/// "for a whole 5-hour window".
pub fn whole_window(spec: &WindowSpec) -> Cow<'static, str> {
    match spec {
        WindowSpec::Calendar(CalendarUnit::Minute) => "for a whole minute".into(),
        WindowSpec::Calendar(CalendarUnit::Hour) => "for a whole hour".into(),
        WindowSpec::Calendar(CalendarUnit::Day) => "for a whole day".into(),
        WindowSpec::Calendar(CalendarUnit::Week) => "for a whole week".into(),
        WindowSpec::Calendar(CalendarUnit::Month) => "for a whole month".into(),
        WindowSpec::FirstUse { seconds } => format!("for a whole {} window", length_words(*seconds)).into(),
    }
}

/// How often an allowance renews: "a day", "a month", "every 5 hours".
pub fn per_window(spec: &WindowSpec) -> Cow<'static, str> {
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
                format!("every {unit}").into()
            } else {
                format!("every {n} {unit}s").into()
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
    /// The class's currency, when it is metered in money (`limit` is then
    /// micro-units).
    pub currency: Option<Currency>,
    pub per_window: String,
    pub url: Option<String>,
}

impl UpgradeHint {
    /// "Pro includes 30 a day: https://…"
    pub fn sentence(&self) -> String {
        let mut out = String::new();
        self.push_sentence(&mut out);
        out
    }

    /// Appends [`UpgradeHint::sentence`].
    pub fn push_sentence(&self, out: &mut String) {
        out.push_str(&self.tier_label);
        out.push_str(" includes ");
        match &self.currency {
            Some(c) => out.push_str(&crate::money::format_amount(self.limit, c)),
            None => push_u64(out, self.limit),
        }
        out.push(' ');
        out.push_str(&self.per_window);
        match &self.url {
            Some(url) => {
                out.push_str(": ");
                out.push_str(url);
            }
            None => out.push('.'),
        }
    }
}

/// The upgrade a tier's users would be offered for a class's limit (its
/// index in the cell's stack): the tier it upgrades to, if that tier has
/// more of it. "It" is the next plan's only limit; from a stack, its limit
/// of the same scope and window; from one limit to a stack, the stack's
/// largest of the same window (a team's pool, not each member's share).
pub fn upgrade_hint(config: &Config, tier: TierId, class: ClassId, limit: usize) -> Option<UpgradeHint> {
    let current = config.tier(tier)?;
    let here = config.cell(tier, class)?.limits().get(limit);
    let next_id = current.upgrade_to?;
    let next = config.tier(next_id)?;
    let stacked_here = config.cell(tier, class)?.limits().len() > 1;
    let there = match (here, config.cell(next_id, class)?.limits()) {
        (_, [only]) => Some(only),
        // From a stack: the same limit (scope and window) in the next plan.
        (Some(h), stack) if stacked_here => stack.iter().find(|l| l.scope == h.scope && l.window == h.window),
        // From one limit (or none) to a stack: its headline, the largest of
        // the same window ("Team includes 300 a day", the team's pool).
        (h, stack) => {
            let same_window = stack.iter().filter(|l| h.is_none_or(|h| l.window == h.window)).max_by_key(|l| l.hard);
            same_window.or_else(|| stack.iter().max_by_key(|l| l.hard))
        }
    };
    match there {
        Some(l) if l.hard > here.map_or(0, |h| h.hard) => Some(UpgradeHint {
            tier: next_id,
            tier_label: next.label.clone(),
            limit: l.hard,
            currency: config.currency_of(class).copied(),
            per_window: per_window(&l.window).into_owned(),
            url: current.upgrade_url.clone(),
        }),
        _ => None,
    }
}

/// Everything a message about one class in one tier can mention.
pub struct Facts<'a> {
    pub class: &'a Class,
    pub tier: &'a Tier,
    /// `None` for a class outside the plan.
    pub limits: Option<&'a Limits>,
    pub usage: Option<Usage>,
    /// Units the request asked for.
    pub requested: u64,
    pub reset_after: i64,
    pub hint: Option<UpgradeHint>,
    /// In a stacked cell: whose allowance this limit is, for the default
    /// wording ("Your team has used its 300…", "…of your team's allowance").
    pub voice: Voice,
    /// The class's currency when it is metered in money: amounts are then
    /// written as money ("$4.20"), with no unit words.
    pub currency: Option<&'a Currency>,
    /// Seconds to wait before trying again, for an upstream's busy answer
    /// (`{retry_in}`); `None`: unknown (an HTTP date).
    pub retry_after: Option<u64>,
}

/// Whose allowance a message speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// The caller's own (a one-limit cell, or a stack without a pool).
    Own,
    /// A pool the caller shares: "your team", "your organisation".
    Pool(Scope),
    /// The caller's own cap inside a pool.
    Member(Scope),
}

impl Voice {
    fn of(stack: &[Limits], limits: &Limits) -> Voice {
        let widest = stack.iter().map(|l| l.scope).max().unwrap_or(Scope::User);
        match (stack.len() > 1, limits.scope) {
            (false, _) => Voice::Own,
            (true, Scope::User) if widest.pooled() => Voice::Member(widest),
            (true, Scope::User) => Voice::Own,
            (true, pool) => Voice::Pool(pool),
        }
    }
}

impl<'a> Facts<'a> {
    /// The facts of one limit of the cell (its index in the stack; 0 for a
    /// one-limit cell).
    pub fn new(config: &'a Config, tier: TierId, class: ClassId, limit: usize) -> Option<Facts<'a>> {
        let facts = Facts::without_hint(config, tier, class, limit)?;
        Some(Facts { hint: upgrade_hint(config, tier, class, limit), ..facts })
    }

    /// [`Facts::new`] without the upgrade hint, for callers that set it
    /// only when they say something about limits.
    pub fn without_hint(config: &'a Config, tier: TierId, class: ClassId, limit: usize) -> Option<Facts<'a>> {
        let (limits, voice) = match config.cell(tier, class)? {
            Cell::Limited(stack) => {
                let limits = stack.get(limit)?;
                (Some(limits), Voice::of(stack, limits))
            }
            Cell::NotIncluded => (None, Voice::Own),
        };
        Some(Facts {
            voice,
            currency: config.currency_of(class),
            class: config.class(class)?,
            tier: config.tier(tier)?,
            limits,
            usage: None,
            requested: 0,
            reset_after: 0,
            hint: None,
            retry_after: None,
        })
    }

    /// Appends the value of `var`; nothing when it does not apply.
    fn write_value(&self, var: Var, out: &mut String) {
        let usage = self.usage.as_ref();
        // In money, every amount as money, with no unit words; what was used
        // and what is left rounded down, so the text never shows more room
        // or more use than there is.
        let amount = |out: &mut String, n: u64, down: bool, words: bool| match self.currency {
            Some(c) if down => out.push_str(&crate::money::format_amount_down(n, c)),
            Some(c) => out.push_str(&crate::money::format_amount(n, c)),
            None if words => push_count(out, self.class, n),
            None => push_u64(out, n),
        };
        let num = |out: &mut String, f: fn(&Usage) -> u64| {
            if let Some(u) = usage {
                amount(out, f(u), false, false);
            }
        };
        let count = |out: &mut String, f: fn(&Usage) -> u64| {
            if let Some(u) = usage {
                amount(out, f(u), false, true);
            }
        };
        let down = |out: &mut String, f: fn(&Usage) -> u64, words: bool| {
            if let Some(u) = usage {
                amount(out, f(u), true, words);
            }
        };
        let spec = self.limits.map(|l| &l.window);
        let hint = self.hint.as_ref();
        match var {
            Var::Used => down(out, |u| u.used, false),
            Var::Limit => num(out, |u| u.hard),
            Var::SoftLimit => {
                if let Some(soft) = usage.and_then(|u| u.soft) {
                    amount(out, soft, false, false);
                }
            }
            Var::Remaining => down(out, Usage::remaining, false),
            Var::Over => num(out, |u| u.over),
            // What a request needs, exactly: "needs $25.000013", never a
            // cost that reads as if it fit ("$25.00, more than the $25.00").
            Var::Cost => match self.currency {
                Some(c) => out.push_str(&crate::money::format_exact(self.requested, c)),
                None => push_u64(out, self.requested),
            },
            Var::Class => out.push_str(&self.class.label),
            Var::Unit => out.push_str(&self.class.unit),
            Var::Units => out.push_str(&self.class.units),
            Var::CountUsed => down(out, |u| u.used, true),
            Var::CountLimit => count(out, |u| u.hard),
            Var::CountRemaining => down(out, Usage::remaining, true),
            Var::CountOver => count(out, |u| u.over),
            Var::CountCost => match self.currency {
                Some(c) => out.push_str(&crate::money::format_exact(self.requested, c)),
                None => push_count(out, self.class, self.requested),
            },
            Var::Window => out.push_str(&spec.map(this_window).unwrap_or_default()),
            Var::PerWindow => out.push_str(&spec.map(per_window).unwrap_or_default()),
            Var::ResetIn => push_human_duration(out, self.reset_after),
            Var::ResetAt => {
                if let Some(u) = usage {
                    push_rfc3339(out, u.window.end);
                }
            }
            Var::ResetSentence => {
                if let Some(u) = usage {
                    // An allowance of money is one amount: "It resets".
                    let one = u.hard == 1 || self.currency.is_some();
                    out.push_str(if one { "It resets in " } else { "They reset in " });
                    push_human_duration(out, self.reset_after);
                    out.push('.');
                }
            }
            Var::Tier => out.push_str(&self.tier.label),
            Var::NextTier => out.push_str(hint.map_or("", |h| &h.tier_label)),
            Var::NextLimit => {
                if let Some(h) = hint {
                    amount(out, h.limit, false, false);
                }
            }
            Var::UpgradeUrl => out.push_str(hint.and_then(|h| h.url.as_deref()).unwrap_or_default()),
            Var::Upgrade => {
                if let Some(h) = hint {
                    h.push_sentence(out);
                }
            }
            Var::UsedPercent => {
                if let Some(u) = usage {
                    // In integers: a float rounds 10^17 - 1 of 10^17 up to "100".
                    let percent = u128::from(u.used) * 100 / u128::from(u.hard.max(1));
                    push_u64(out, u64::try_from(percent).unwrap_or(u64::MAX));
                }
            }
            Var::ConfirmHeader => out.push_str(CONFIRM_HEADER),
            Var::DegradedTo => out.push_str(
                self.limits
                    .and_then(|l| l.degrade.as_ref())
                    .and_then(|d| d.model.as_deref())
                    .unwrap_or("a lighter model"),
            ),
            Var::Grant => num(out, |u| u.grant),
            Var::Ceiling => {
                if let Some(l) = self.limits {
                    amount(out, l.request_ceiling(), false, false);
                }
            }
            Var::CountCeiling => {
                if let Some(l) = self.limits {
                    amount(out, l.request_ceiling(), false, true);
                }
            }
            Var::WholeWindow => out.push_str(&spec.map(whole_window).unwrap_or_default()),
            // Only a body refusal knows these (see `body_message`).
            Var::MaxBody | Var::BodyProblem => {}
            Var::RetryIn => match self.retry_after {
                Some(s) => push_human_duration(out, i64::try_from(s).unwrap_or(i64::MAX)),
                None => out.push_str("a moment"),
            },
        }
    }

    /// The built-in wording for `message` in this situation.
    fn default_text(&self, message: Message) -> &'static str {
        let (used, hard, remaining, over) =
            self.usage.map_or((0, 0, 0, 0), |u| (u.used, u.hard, u.remaining(), u.over));
        if let Some(text) = self.voiced_text(message, used, hard, remaining, over) {
            return text;
        }
        match message {
            Message::Warning if over > 0 => "You're {count_over} past your {count_limit} {window}. {reset_sentence} {upgrade}",
            Message::Warning if remaining == 0 => "That was the last of your {count_limit} {window}. {reset_sentence} {upgrade}",
            Message::Warning if remaining == 1 && self.currency.is_none() => "You have 1 {unit} left {window}. {reset_sentence} {upgrade}",
            Message::Warning => "You've used {used} of your {count_limit} {window}. {reset_sentence} {upgrade}",
            Message::Blocked if self.requested > hard && used == 0 => {
                "This needs {count_cost}, more than your plan's {limit} {per_window}. {upgrade}"
            }
            Message::Blocked if self.requested > 1 && used < hard => {
                "This needs {count_cost}, but you have {remaining} left {window}. {reset_sentence} {upgrade}"
            }
            Message::Blocked => "You've used your {count_limit} {window}. {reset_sentence} {upgrade}",
            Message::NotIncluded => "{class} isn't included in the {tier} plan. {upgrade}",
            Message::Confirm => {
                "This will use {count_cost} of the {remaining} you have left {window}. \
                 To go ahead, send it again with the header {confirm_header}: yes."
            }
            Message::Pace => {
                "You've used {used_percent}% of your {count_limit} {window}, with {reset_in} still to go. {upgrade}"
            }
            Message::Degraded if used < hard => {
                "You've used {used} of your {count_limit} {window}, so this one was answered by {degraded_to}. \
                 {reset_sentence} {upgrade}"
            }
            Message::Degraded => {
                "You've used your {count_limit} {window}, so this one was answered by {degraded_to}. {reset_sentence} {upgrade}"
            }
            Message::Overage => {
                "You're past your {count_limit} {window}: this one counts as overage ({count_over} so far). {reset_sentence}"
            }
            Message::Queued => {
                "You've used your {count_limit} {window}, so this one is queued and will run when capacity frees up. \
                 {reset_sentence} {upgrade}"
            }
            Message::WorkspaceRequired if self.limits.is_some_and(|l| l.scope == Scope::Organisation) => {
                "Your {units} are shared across your organisation, but this request doesn't say which \
                 organisation it's for. Choose an organisation and try again."
            }
            Message::WorkspaceRequired => {
                "Your {units} are shared across your workspace, but this request doesn't say which workspace \
                 it's for. Choose a workspace and try again."
            }
            Message::UpstreamBusy => UPSTREAM_BUSY,
            Message::MissingIdentity => MISSING_IDENTITY,
            Message::InvalidCredentials => INVALID_CREDENTIALS,
            Message::UnknownTier => UNKNOWN_TIER,
            Message::BodyTooLarge => BODY_TOO_LARGE,
            Message::UnreadableBody => UNREADABLE_BODY,
            Message::Unavailable => {
                "We couldn't check your allowance of {units} just now. Please try again in a moment."
            }
            // What would make it fit depends on what the class counts.
            Message::TooLarge => match self.class.cost {
                Cost::Tokens { .. } | Cost::Priced { .. } => {
                    "This request would use {count_cost}, more than the {ceiling} your {tier} plan allows \
                     {whole_window}. Shorten it or ask for less output. {upgrade}"
                }
                Cost::Records { .. } => {
                    "This request would use {count_cost}, more than the {ceiling} your {tier} plan allows \
                     {whole_window}. Split it into smaller batches. {upgrade}"
                }
                Cost::Bytes { .. } => {
                    "This request would use {count_cost}, more than the {ceiling} your {tier} plan allows \
                     {whole_window}. Split it into smaller parts. {upgrade}"
                }
                Cost::Fixed(_) => {
                    "This request would use {count_cost}, more than the {ceiling} your {tier} plan allows \
                     {whole_window}. {upgrade}"
                }
            },
        }
    }
}

impl Facts<'_> {
    /// The default words of a stacked cell's limit in the voice of whose
    /// allowance it is (a team's or an organisation's pool, or a member's
    /// share of one); `None` where the caller's own wording stands.
    fn voiced_text(&self, message: Message, used: u64, hard: u64, remaining: u64, over: u64) -> Option<&'static str> {
        let case = match message {
            Message::Warning if over > 0 => Voiced::WarningOver,
            Message::Warning if remaining == 0 => Voiced::WarningLast,
            Message::Warning if remaining == 1 && self.currency.is_none() => Voiced::WarningOne,
            Message::Warning => Voiced::Warning,
            Message::Blocked if used >= hard => Voiced::Blocked,
            Message::Blocked if self.requested > 1 => Voiced::BlockedNeeds,
            Message::Degraded if used < hard => Voiced::DegradedSoft,
            Message::Degraded => Voiced::Degraded,
            Message::Overage => Voiced::Overage,
            Message::Queued => Voiced::Queued,
            _ => return None,
        };
        let table = match self.voice {
            Voice::Own => return None,
            Voice::Pool(Scope::Organisation) => &ORGANISATION_POOL,
            Voice::Pool(_) => &TEAM_POOL,
            Voice::Member(Scope::Organisation) => &ORGANISATION_MEMBER,
            Voice::Member(_) => &TEAM_MEMBER,
        };
        table.get(case as usize).copied().flatten()
    }
}

/// The situations [`Facts::voiced_text`] words, as indexes of its tables.
#[derive(Clone, Copy)]
enum Voiced {
    WarningOver,
    WarningLast,
    WarningOne,
    Warning,
    Blocked,
    BlockedNeeds,
    DegradedSoft,
    Degraded,
    Overage,
    Queued,
}

const TEAM_POOL: [Option<&str>; 10] = [
    Some("Your team is {count_over} past its {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("That was the last of your team's {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("Your team has 1 {unit} left {window}. {reset_sentence} {upgrade}"),
    Some("Your team has used {used} of its {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("Your team has used its {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("This needs {count_cost}, but your team has {remaining} left {window}. {reset_sentence} {upgrade}"),
    Some(
        "Your team has used {used} of its {count_limit} {window}, so this one was answered by {degraded_to}. \
         {reset_sentence} {upgrade}",
    ),
    Some("Your team has used its {count_limit} {window}, so this one was answered by {degraded_to}. {reset_sentence} {upgrade}"),
    Some("Your team is past its {count_limit} {window}: this one counts as overage ({count_over} so far). {reset_sentence}"),
    Some(
        "Your team has used its {count_limit} {window}, so this one is queued and will run when capacity frees up. \
         {reset_sentence} {upgrade}",
    ),
];

const ORGANISATION_POOL: [Option<&str>; 10] = [
    Some("Your organisation is {count_over} past its {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("That was the last of your organisation's {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("Your organisation has 1 {unit} left {window}. {reset_sentence} {upgrade}"),
    Some("Your organisation has used {used} of its {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("Your organisation has used its {count_limit} {window}. {reset_sentence} {upgrade}"),
    Some("This needs {count_cost}, but your organisation has {remaining} left {window}. {reset_sentence} {upgrade}"),
    Some(
        "Your organisation has used {used} of its {count_limit} {window}, so this one was answered by \
         {degraded_to}. {reset_sentence} {upgrade}",
    ),
    Some(
        "Your organisation has used its {count_limit} {window}, so this one was answered by {degraded_to}. \
         {reset_sentence} {upgrade}",
    ),
    Some(
        "Your organisation is past its {count_limit} {window}: this one counts as overage ({count_over} so far). \
         {reset_sentence}",
    ),
    Some(
        "Your organisation has used its {count_limit} {window}, so this one is queued and will run when capacity \
         frees up. {reset_sentence} {upgrade}",
    ),
];

// A member's share: past the warnings and the wall, the caller's own
// wording reads right ("You've used your 50 drafts for today, so this one
// was answered by ...").
const TEAM_MEMBER: [Option<&str>; 10] = [
    Some("You're {count_over} past your {count_limit} of your team's allowance {window}. {reset_sentence} {upgrade}"),
    Some("That was the last of your {count_limit} of your team's allowance {window}. {reset_sentence} {upgrade}"),
    Some("You have 1 {unit} left of your share of your team's allowance {window}. {reset_sentence} {upgrade}"),
    Some("You've used {used} of your {count_limit} of your team's allowance {window}. {reset_sentence} {upgrade}"),
    Some("You've used your {count_limit} of your team's allowance {window}. {reset_sentence} {upgrade}"),
    None,
    None,
    None,
    None,
    None,
];

const ORGANISATION_MEMBER: [Option<&str>; 10] = [
    Some(
        "You're {count_over} past your {count_limit} of your organisation's allowance {window}. {reset_sentence} \
         {upgrade}",
    ),
    Some(
        "That was the last of your {count_limit} of your organisation's allowance {window}. {reset_sentence} {upgrade}",
    ),
    Some("You have 1 {unit} left of your share of your organisation's allowance {window}. {reset_sentence} {upgrade}"),
    Some(
        "You've used {used} of your {count_limit} of your organisation's allowance {window}. {reset_sentence} \
         {upgrade}",
    ),
    Some("You've used your {count_limit} of your organisation's allowance {window}. {reset_sentence} {upgrade}"),
    None,
    None,
    None,
    None,
    None,
];

const UPSTREAM_BUSY: &str = "The model is busy right now, so this request didn't go through. \
     It didn't count against your allowance. Try again in {retry_in}.";
const MISSING_IDENTITY: &str =
    "We couldn't tell who is making this request, so we can't check its usage allowance. Sign in and try again.";
const INVALID_CREDENTIALS: &str =
    "We couldn't read your sign-in token. Sign in again, or send exactly one `Authorization: Bearer <token>` header.";
const UNKNOWN_TIER: &str =
    "We don't recognise the plan on this account, so we can't check its usage allowance. Please contact support.";
const BODY_TOO_LARGE: &str = "This request's body is larger than the {max_body} the quota check reads. \
     Send a smaller request, or ask your administrator to raise max_body_bytes.";
const UNREADABLE_BODY: &str = "We couldn't read this request's JSON body ({body_problem}). Send valid JSON.";

/// The text of `message` about `facts`, with the config's overrides.
pub fn message(config: &Config, message: Message, facts: &Facts) -> String {
    let chosen = facts
        .limits
        .and_then(|l| l.copy.get(message))
        .or_else(|| facts.tier.copy.get(message))
        .or_else(|| facts.class.copy.get(message))
        .or_else(|| config.copy.get(message));
    match chosen {
        Some(t) => t.render_with(&|v, out| facts.write_value(v, out)),
        None => render_default(facts.default_text(message), &|v, out| facts.write_value(v, out)),
    }
}

/// A message about no class in particular (missing identity, unknown tier):
/// only the top-level `copy` can override it; placeholders render empty.
pub fn plain_message(config: &Config, message: Message) -> String {
    match config.copy.get(message) {
        Some(t) => t.render(&|_| String::new()),
        None => match message {
            Message::UnknownTier => UNKNOWN_TIER.to_string(),
            Message::InvalidCredentials => INVALID_CREDENTIALS.to_string(),
            _ => MISSING_IDENTITY.to_string(),
        },
    }
}

/// The text of a body refusal (`BodyTooLarge`, `UnreadableBody`): only the
/// top-level `copy` can override it, since the body may be what decides the
/// class. `max_body_bytes` fills `{max_body}`, `problem` `{body_problem}`;
/// other placeholders render empty.
pub fn body_message(config: &Config, message: Message, problem: &str) -> String {
    let write = |v: Var, out: &mut String| match v {
        Var::MaxBody => push_human_bytes(out, config.max_body_bytes),
        Var::BodyProblem => out.push_str(problem),
        _ => {}
    };
    match config.copy.get(message) {
        Some(t) => t.render_with(&write),
        None => render_default(if message == Message::BodyTooLarge { BODY_TOO_LARGE } else { UNREADABLE_BODY }, &write),
    }
}

/// A size in bytes as people read it: "256 KB", "1 MB", "1.5 KB", "900
/// bytes" (1 KB = 1024 bytes). Rounded down, so the limit is never
/// announced larger than it is.
pub fn human_bytes(bytes: usize) -> String {
    let mut out = String::new();
    push_human_bytes(&mut out, bytes);
    out
}

fn push_human_bytes(out: &mut String, bytes: usize) {
    let n = u64::try_from(bytes).unwrap_or(u64::MAX);
    let (unit, size) = if n >= 1 << 20 {
        (" MB", 1u64 << 20)
    } else if n >= 1 << 10 {
        (" KB", 1 << 10)
    } else {
        ("", 1)
    };
    if size == 1 {
        push_u64(out, n);
        return out.push_str(if n == 1 { " byte" } else { " bytes" });
    }
    push_u64(out, n / size);
    let tenths = (n % size) * 10 / size;
    if tenths != 0 {
        out.push('.');
        push_u64(out, tenths);
    }
    out.push_str(unit);
}

fn render_default(text: &str, write: &dyn Fn(Var, &mut String)) -> String {
    // The defaults are fixed strings covered by tests; fall back to the raw
    // text rather than fail a request if one were ever malformed.
    render_text(text, write).unwrap_or_else(|| text.to_string())
}

/// Appends `n` with its unit, as [`Class::count`] writes it: "1 draft", "3 drafts".
fn push_count(out: &mut String, class: &Class, n: u64) {
    push_u64(out, n);
    out.push(' ');
    out.push_str(if n == 1 { &class.unit } else { &class.units });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::State;
    use crate::template::Template;
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
        // Found by fuzzing: the largest durations round without overflowing.
        assert!(human_duration(i64::MAX).ends_with(" h") || human_duration(i64::MAX).ends_with("days"));
    }

    #[test]
    fn durations_match_their_format_strings() {
        fn by_format(seconds: i64) -> String {
            let s = seconds.max(0);
            if s < 60 {
                return format!("{s} s");
            }
            let minutes = s.saturating_add(59) / 60;
            if minutes < 60 {
                return format!("{minutes} min");
            }
            let (h, m) = (minutes / 60, minutes % 60);
            if h < 24 {
                return if m == 0 { format!("{h} h") } else { format!("{h} h {m} min") };
            }
            let hours = s.saturating_add(3599) / 3600;
            let (d, h) = (hours / 24, hours % 24);
            let days = if d == 1 { "1 day".to_string() } else { format!("{d} days") };
            if h == 0 {
                days
            } else {
                format!("{days} {h} h")
            }
        }
        let mut s = -100;
        while s < 100 * 86_400 {
            assert_eq!(human_duration(s), by_format(s), "{s}");
            s += if s < 2 * 86_400 { 1 } else { 997 };
        }
        for s in [i64::MIN, i64::MAX, i64::MAX - 3599, 86_400 + 3600, 2 * 86_400] {
            assert_eq!(human_duration(s), by_format(s), "{s}");
        }
    }

    #[test]
    fn sizes_read_in_kilobytes_and_megabytes_rounded_down() {
        assert_eq!(human_bytes(256 * 1024), "256 KB");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64 MB");
        assert_eq!(human_bytes(1536), "1.5 KB");
        assert_eq!(human_bytes(300_000), "292.9 KB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1023.9 KB");
        assert_eq!(human_bytes(1), "1 byte");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn body_refusals_say_the_limit_and_the_problem_and_can_be_overridden() {
        let config = demo_config();
        assert_eq!(
            body_message(&config, Message::BodyTooLarge, "unused"),
            "This request's body is larger than the 256 KB the quota check reads. \
             Send a smaller request, or ask your administrator to raise max_body_bytes."
        );
        assert_eq!(
            body_message(&config, Message::UnreadableBody, "it nests arrays and objects more than 127 levels deep"),
            "We couldn't read this request's JSON body (it nests arrays and objects more than 127 levels deep). \
             Send valid JSON."
        );
        let mut doc: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["copy"] =
            serde_json::json!({"body_too_large": "Over {max_body}. {used}", "unreadable_body": "Bad: {body_problem}"});
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(body_message(&config, Message::BodyTooLarge, "x"), "Over 256 KB.");
        assert_eq!(body_message(&config, Message::UnreadableBody, "why"), "Bad: why");
    }

    #[test]
    fn counts_read_as_the_class_writes_them() {
        let config = demo_config();
        for class in &config.classes {
            for n in [0, 1, 2, 10, u64::MAX] {
                let mut out = String::new();
                push_count(&mut out, class, n);
                assert_eq!(out, class.count(n));
            }
        }
    }

    #[test]
    fn windows_in_words() {
        assert_eq!(this_window(&WindowSpec::Calendar(CalendarUnit::Day)), "for today");
        assert_eq!(this_window(&WindowSpec::FirstUse { seconds: 5 * 3600 }), "in this 5-hour window");
        assert_eq!(per_window(&WindowSpec::FirstUse { seconds: 5 * 3600 }), "every 5 hours");
        assert_eq!(per_window(&WindowSpec::FirstUse { seconds: 86_400 }), "every day");
        assert_eq!(per_window(&WindowSpec::Calendar(CalendarUnit::Month)), "a month");
    }

    fn usage(used: u64, hard: u64) -> Usage {
        Usage {
            used,
            plan_used: used,
            hard,
            soft: None,
            window: Window { start: 0, end: 1 },
            state: State::Blocked,
            over: 0,
            grant: 0,
        }
    }

    fn facts<'a>(config: &'a Config, tier: &str, class: usize, used: u64, requested: u64) -> Facts<'a> {
        let tier = config.tier_by_name(tier).unwrap();
        let mut f = Facts::new(config, tier, ClassId(class), 0).unwrap();
        let hard = f.limits.map_or(0, |l| l.hard);
        f.usage = Some(usage(used, hard));
        f.requested = requested;
        f.reset_after = 4 * 3600 + 12 * 60;
        f
    }

    #[test]
    fn pace_message_rounds_the_share_used_down_in_integers() {
        let config = demo_config();
        let pace = |used: u64, hard: u64| {
            let mut f = facts(&config, "pro", 0, used, 1);
            f.usage = Some(usage(used, hard));
            message(&config, Message::Pace, &f)
        };
        assert!(pace(2, 3).starts_with("You've used 66% of your"), "{}", pace(2, 3));
        assert!(pace(0, 0).starts_with("You've used 0% of your"), "{}", pace(0, 0));
        // Past 2^53 a float cannot tell 10^17 - 1 from 10^17: never "100%" before the wall.
        let near = pace(100_000_000_000_000_000 - 1, 100_000_000_000_000_000);
        assert!(near.starts_with("You've used 99% of your"), "{near}");
        let past = pace(u64::MAX, 1);
        assert!(past.starts_with(&format!("You've used {}% of your", u64::MAX)), "{past}");
    }

    #[test]
    fn blocked_message_names_class_limit_reset_and_upgrade() {
        let config = demo_config();
        let text = message(&config, Message::Blocked, &facts(&config, "pro", 0, 3, 1));
        assert_eq!(
            text,
            "You've used your 3 deep-research calls for today. They reset in 4 h 12 min. \
             Team includes 10 a day: https://example.com/upgrade?plan=team"
        );
        let text = message(&config, Message::Blocked, &facts(&config, "enterprise", 0, 50, 1));
        assert_eq!(text, "You've used your 50 deep-research calls for today. They reset in 4 h 12 min.");
    }

    #[test]
    fn pluralisation_reads_right() {
        let config = demo_config();
        let one_left = message(&config, Message::Warning, &facts(&config, "pro", 0, 2, 1));
        assert_eq!(
            one_left,
            "You have 1 deep-research call left for today. They reset in 4 h 12 min. \
             Team includes 10 a day: https://example.com/upgrade?plan=team"
        );
        let too_big = message(&config, Message::Blocked, &facts(&config, "pro", 0, 1, 5));
        assert!(too_big.starts_with("This needs 5 deep-research calls, but you have 2 left for today."), "{too_big}");
    }

    #[test]
    fn overrides_go_from_cell_to_tier_to_class_to_global() {
        let mut doc: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["copy"] = serde_json::json!({"blocked": "global {count_limit}"});
        doc["classes"][2]["copy"] = serde_json::json!({"blocked": "class {class}"});
        doc["tiers"]["pro"]["copy"] = serde_json::json!({"blocked": "tier {tier} {next_tier} {next_limit}"});
        doc["tiers"]["team"]["limits"]["drafts"][0]["copy"] =
            serde_json::json!({"blocked": "cell {limit} {upgrade_url}"});
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let drafts = 2;
        assert_eq!(
            message(&config, Message::Blocked, &facts(&config, "team", drafts, 300, 1)),
            "cell 300 https://example.com/contact-sales"
        );
        assert_eq!(message(&config, Message::Blocked, &facts(&config, "pro", drafts, 100, 1)), "tier Pro Team 300");
        assert_eq!(message(&config, Message::Blocked, &facts(&config, "free", drafts, 10, 1)), "class Drafts");
        assert_eq!(message(&config, Message::Blocked, &facts(&config, "free", 1, 5, 1)), "global 5 summaries");
    }

    #[test]
    fn bad_placeholders_are_config_errors_with_their_path() {
        let mut doc: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["tiers"]["pro"]["copy"] = serde_json::json!({"warning": "only {remainig} left"});
        let err = Config::from_json(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.path, "tiers.pro.copy.warning");
        assert!(err.reason.starts_with("unknown placeholder {remainig}"));
    }

    #[test]
    fn too_large_copy_says_what_would_make_it_fit() {
        let config = crate::testing::config_with(
            r#"[{"name": "chat", "unit": "token", "cost": {"tokens": {}}},
                {"name": "batch", "unit": "record", "cost": {"records": {}}},
                {"name": "upload", "unit": "page", "cost": {"bytes": {"per": 1000}}},
                {"name": "report", "unit": "report", "cost": {"fixed": 20}}]"#,
        );
        let text = |class: usize| message(&config, Message::TooLarge, &facts(&config, "free", class, 0, 75));
        assert_eq!(
            text(0),
            "This request would use 75 tokens, more than the 10 your Free plan allows for a whole day. \
             Shorten it or ask for less output."
        );
        assert!(text(1).ends_with("Split it into smaller batches."), "{}", text(1));
        assert!(text(2).ends_with("Split it into smaller parts."), "{}", text(2));
        assert!(text(3).ends_with("your Free plan allows for a whole day."), "{}", text(3));
        assert_eq!(whole_window(&WindowSpec::FirstUse { seconds: 5 * 3600 }), "for a whole 5-hour window");
        assert_eq!(whole_window(&WindowSpec::Calendar(CalendarUnit::Month)), "for a whole month");
    }

    #[test]
    fn the_ceiling_placeholders_count_what_the_cell_admits_in_one_request() {
        let mut doc: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["tiers"]["free"]["limits"]["drafts"]["at_hard"] = serde_json::json!("overage");
        doc["tiers"]["free"]["limits"]["drafts"]["overage"] = serde_json::json!({"cap": 5});
        doc["tiers"]["free"]["limits"]["drafts"]["copy"] =
            serde_json::json!({"too_large": "{ceiling} / {count_ceiling} {whole_window}"});
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let text = message(&config, Message::TooLarge, &facts(&config, "free", 2, 0, 50));
        assert_eq!(text, "15 / 15 drafts for a whole day");
    }

    #[test]
    fn no_upgrade_hint_from_the_top_tier_or_to_a_smaller_limit() {
        let config = demo_config();
        let enterprise = config.tier_by_name("enterprise").unwrap();
        assert_eq!(upgrade_hint(&config, enterprise, ClassId(0), 0), None);
        let free = config.tier_by_name("free").unwrap();
        let hint = upgrade_hint(&config, free, ClassId(0), 0).unwrap();
        assert_eq!(hint.sentence(), "Pro includes 3 a day: https://example.com/upgrade?plan=pro");
    }

    #[test]
    fn every_default_template_parses() {
        let config = demo_config();
        let f = facts(&config, "pro", 0, 1, 1);
        for m in [
            Message::Warning,
            Message::Blocked,
            Message::NotIncluded,
            Message::Confirm,
            Message::Pace,
            Message::MissingIdentity,
            Message::InvalidCredentials,
            Message::UnknownTier,
            Message::Unavailable,
            Message::Degraded,
            Message::Overage,
            Message::Queued,
            Message::WorkspaceRequired,
            Message::TooLarge,
            Message::BodyTooLarge,
            Message::UnreadableBody,
            Message::UpstreamBusy,
        ] {
            assert!(Template::parse(f.default_text(m)).is_ok(), "{m:?}");
        }
    }
}
