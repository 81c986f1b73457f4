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
    Ceiling,
    CountCeiling,
    WholeWindow,
    MaxBody,
    BodyProblem,
    RetryIn,
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
    ("ceiling", Var::Ceiling, "the most one request may cost: the hard limit plus any cap past it: 10"),
    ("count_ceiling", Var::CountCeiling, "ceiling, with its unit: 10 drafts"),
    ("whole_window", Var::WholeWindow, "a whole window: for a whole day, for a whole 5-hour window"),
    ("max_body", Var::MaxBody, "the largest request body the quota check reads: 256 KB (body refusals only)"),
    (
        "body_problem",
        Var::BodyProblem,
        "why the body could not be read: it is not valid JSON: expected value at line 1 column 1 (body refusals only)",
    ),
    (
        "retry_in",
        Var::RetryIn,
        "when to try again: 2 s (an upstream's busy answer only; \"a moment\" when the upstream names a date)",
    ),
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

/// A piece of template text: literal text (escapes resolved) or a placeholder.
enum Piece<'a> {
    Text(&'a str),
    Var(Var),
}

/// The pieces of `text` in order, borrowed from it; parsing stops at the
/// first error.
struct Pieces<'a> {
    text: &'a str,
    rest: &'a str,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<Piece<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let Some(at) = rest.find(['{', '}']) else {
            self.rest = "";
            return (!rest.is_empty()).then_some(Ok(Piece::Text(rest)));
        };
        let (before, from) = rest.split_at(at);
        let brace = &from[..1];
        if from[1..].starts_with(brace) {
            // `{{` or `}}`: the text up to and with one brace, then skip the other.
            self.rest = &from[2..];
            return Some(Ok(Piece::Text(&rest[..at + 1])));
        }
        if !before.is_empty() {
            self.rest = from;
            return Some(Ok(Piece::Text(before)));
        }
        self.rest = "";
        if brace == "}" {
            return Some(Err(format!("unmatched '}}' in \"{}\" (write '}}}}' for a literal brace)", self.text)));
        }
        let Some((name, after)) = from[1..].split_once('}') else {
            return Some(Err(format!("unclosed '{{' in \"{}\"", self.text)));
        };
        let Some(var) = VARS.iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| *v) else {
            let known: Vec<&str> = VARS.iter().map(|(n, _, _)| *n).collect();
            return Some(Err(format!("unknown placeholder {{{name}}} (known: {})", known.join(", "))));
        };
        self.rest = after;
        Some(Ok(Piece::Var(var)))
    }
}

fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, rest: text }
}

impl Template {
    /// Parses `text`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        for piece in pieces(text) {
            match piece? {
                Piece::Text(t) => literal.push_str(t),
                Piece::Var(var) => {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(var));
                }
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
        self.render_with(&|var, out| out.push_str(&value(var)))
    }

    /// [`Template::render`], with `write` appending each placeholder's value.
    pub fn render_with(&self, write: &dyn Fn(Var, &mut String)) -> String {
        let mut out = String::with_capacity(256);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => write(*v, &mut out),
            }
        }
        tidy(&mut out);
        out
    }
}

/// Renders `text` as a template without keeping its parsed form (for the
/// built-in wording, fixed and tested); `None` if it is not a valid template.
pub fn render_text(text: &str, write: &dyn Fn(Var, &mut String)) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 128);
    for piece in pieces(text) {
        match piece.ok()? {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => write(v, &mut out),
        }
    }
    tidy(&mut out);
    Some(out)
}

/// Collapses runs of spaces into one and trims spaces at both ends.
fn tidy(text: &mut String) {
    let mut after_space = true;
    text.retain(|c| {
        let keep = c != ' ' || !after_space;
        after_space = c == ' ';
        keep
    });
    if text.ends_with(' ') {
        text.pop();
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
    fn renders_text_without_parsing_it_first() {
        let text = "You've used {used} of your {count_limit}. {upgrade}";
        let write = |v: Var, out: &mut String| out.push_str(&values(v));
        assert_eq!(render_text(text, &write).as_deref(), Some("You've used 7 of your 10 drafts."));
        assert_eq!(render_text("{{literal}} {used}", &write).as_deref(), Some("{literal} 7"));
        assert_eq!(render_text("oops {used", &write), None);
    }

    #[test]
    fn parses_escapes_and_placeholders_into_merged_parts() {
        let t = Template::parse("a{{b}}c{used}{{{used}}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Text("a{b}c".into()),
                Part::Var(Var::Used),
                Part::Text("{".into()),
                Part::Var(Var::Used),
                Part::Text("}".into())
            ]
        );
        assert_eq!(Template::parse("").unwrap().parts, vec![]);
        assert_eq!(Template::parse("{{").unwrap().parts, vec![Part::Text("{".into())]);
        assert_eq!(Template::parse("é{used}ü").unwrap().render(&values), "é7ü");
    }

    #[test]
    fn tidies_spaces_like_splitting_and_joining_words() {
        for text in ["", " ", "  a  b  ", "a", " a", "a ", "a  b", "\ta \t b\n", "é  ü "] {
            let mut tidied = text.to_string();
            tidy(&mut tidied);
            let joined: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
            assert_eq!(tidied, joined.join(" "), "{text:?}");
        }
    }

    #[test]
    fn refuses_unknown_placeholders_and_stray_braces() {
        assert!(Template::parse("{usd}").unwrap_err().starts_with("unknown placeholder {usd}"));
        assert!(Template::parse("oops {used").unwrap_err().starts_with("unclosed"));
        assert!(Template::parse("oops }").unwrap_err().starts_with("unmatched"));
    }
}
