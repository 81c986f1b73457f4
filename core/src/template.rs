//! Message templates: text with `{placeholders}`, checked when the config
//! loads so a typo in copy is a config error, not a broken sentence.

/// A value a template can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Used,
    Limit,
    SoftLimit,
    Remaining,
    Cost,
    Over,
    Class,
    Unit,
    Units,
    CountUsed,
    CountLimit,
    CountRemaining,
    CountCost,
    CountOver,
    Window,
    PerWindow,
    ResetIn,
    ResetAt,
    ResetSentence,
    Tier,
    NextTier,
    NextLimit,
    UpgradeUrl,
    Upgrade,
    UsedPercent,
    ConfirmHeader,
    DegradedTo,
    Grant,
}

/// Placeholder names as written in templates, with what each stands for
/// (the README's copy reference is generated from the same list).
pub const VARS: &[(&str, Var, &str)] = &[
    ("used", Var::Used, "units used in this window: 7"),
    ("limit", Var::Limit, "the hard limit: 10"),
    ("soft_limit", Var::SoftLimit, "the soft limit (empty without one)"),
    ("remaining", Var::Remaining, "units left: 3"),
    ("cost", Var::Cost, "units this request costs: 1"),
    ("over", Var::Over, "units past the hard limit: 2"),
    ("class", Var::Class, "the class label: Drafts"),
    ("unit", Var::Unit, "one unit: draft"),
    ("units", Var::Units, "several units: drafts"),
    ("count_used", Var::CountUsed, "used, with its unit: 7 drafts"),
    ("count_limit", Var::CountLimit, "limit, with its unit: 10 drafts"),
    ("count_remaining", Var::CountRemaining, "remaining, with its unit: 1 draft"),
    ("count_cost", Var::CountCost, "cost, with its unit: 5 drafts"),
    ("count_over", Var::CountOver, "over, with its unit: 2 drafts"),
    ("window", Var::Window, "the current window: for today, for this month, in this 5-hour window"),
    ("per_window", Var::PerWindow, "how often it renews: a day, a month, every 5 hours"),
    ("reset_in", Var::ResetIn, "time until reset: 4 h 12 min"),
    ("reset_at", Var::ResetAt, "reset time, RFC 3339 UTC: 2026-11-23T00:00:00Z"),
    ("reset_sentence", Var::ResetSentence, "They reset in 4 h 12 min. (It resets ... for a limit of 1)"),
    ("tier", Var::Tier, "the caller's tier label: Free"),
    ("next_tier", Var::NextTier, "the upgrade tier's label: Pro (empty without one)"),
    ("next_limit", Var::NextLimit, "its limit for this class: 100 (empty without one)"),
    ("upgrade_url", Var::UpgradeUrl, "the upgrade URL (empty without one)"),
    ("upgrade", Var::Upgrade, "Pro includes 100 a day: https://... (empty when an upgrade would not help)"),
    ("used_percent", Var::UsedPercent, "share of the limit used: 80"),
    ("confirm_header", Var::ConfirmHeader, "the header that confirms a costly request: x-quota-confirm"),
    ("degraded_to", Var::DegradedTo, "the cheaper model a degrading cell uses: gpt-4o-mini"),
    ("grant", Var::Grant, "grant units left (prepaid packs, approvals): 50"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => return Err(format!("unclosed '{{' in \"{text}\"")),
                        }
                    }
                    let var = VARS.iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| *v).ok_or_else(|| {
                        let known: Vec<&str> = VARS.iter().map(|(n, _, _)| *n).collect();
                        format!("unknown placeholder {{{name}}} (known: {})", known.join(", "))
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(var));
                }
                '}' => return Err(format!("unmatched '}}' in \"{text}\" (write '}}}}' for a literal brace)")),
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Renders with `value` supplying each placeholder. Runs of spaces left
    /// by empty placeholders are collapsed, so optional parts vanish cleanly.
    pub fn render(&self, value: &dyn Fn(Var) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&value(*v)),
            }
        }
        let mut tidy = String::with_capacity(out.len());
        for word in out.split(' ').filter(|w| !w.is_empty()) {
            if !tidy.is_empty() {
                tidy.push(' ');
            }
            tidy.push_str(word);
        }
        tidy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: Var) -> String {
        match v {
            Var::Used => "7".into(),
            Var::CountLimit => "10 drafts".into(),
            Var::Upgrade => String::new(),
            _ => "?".into(),
        }
    }

    #[test]
    fn renders_placeholders_and_drops_empty_ones_cleanly() {
        let t = Template::parse("You've used {used} of your {count_limit}. {upgrade}").unwrap();
        assert_eq!(t.render(&values), "You've used 7 of your 10 drafts.");
        let t = Template::parse("{{literal}} {used}").unwrap();
        assert_eq!(t.render(&values), "{literal} 7");
    }

    #[test]
    fn refuses_unknown_placeholders_and_stray_braces() {
        assert!(Template::parse("{usd}").unwrap_err().starts_with("unknown placeholder {usd}"));
        assert!(Template::parse("oops {used").unwrap_err().starts_with("unclosed"));
        assert!(Template::parse("oops }").unwrap_err().starts_with("unmatched"));
    }
}
