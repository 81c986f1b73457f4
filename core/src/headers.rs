//! The wire contract on responses: IETF RateLimit fields
//! (draft-ietf-httpapi-ratelimit-headers-10) and the `x-quota-*` family.
//! One definition, built from one [`Decision`].

use crate::calendar::rfc3339;
use crate::config::{Config, Cost, Message};
use crate::copy::{self, upgrade_hint, Facts};
use crate::decide::{Served, State};
use crate::decimal::{i64_text, push_u64, u64_text};
use crate::engine::{push_policy_name, Decision, Outcome};
use crate::money::Rounding;

/// The largest integer a structured field carries (RFC 8941, section 3.3.1):
/// RateLimit parameters are capped there so clients can always parse them.
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

fn sf_count(n: u64) -> u64 {
    n.min(SF_INTEGER_MAX)
}

fn sf_seconds(n: i64) -> u64 {
    u64::try_from(n).map_or(0, sf_count)
}

/// Every header the filter owns starts with this; clients' copies are
/// stripped before the upstream sees the request.
pub const QUOTA_PREFIX: &str = "x-quota-";

pub const CLASS: &str = "x-quota-class";
pub const TIER: &str = "x-quota-tier";
pub const SCOPE: &str = "x-quota-scope";
/// The binding limit's window as the config names it ("day", "5h").
pub const WINDOW: &str = "x-quota-window";
/// The ISO 4217 code of a class metered in money; its amounts (`used`,
/// `limit`, ...) are then decimal text in that currency ("4.20").
pub const CURRENCY: &str = "x-quota-currency";
pub const USED: &str = "x-quota-used";
pub const LIMIT: &str = "x-quota-limit";
pub const SOFT_LIMIT: &str = "x-quota-soft-limit";
pub const REMAINING: &str = "x-quota-remaining";
pub const RESET: &str = "x-quota-reset";
pub const RESET_AFTER: &str = "x-quota-reset-after";
pub const STATE: &str = "x-quota-state";
pub const WARNING: &str = "x-quota-warning";
pub const UPGRADE: &str = "x-quota-upgrade";
pub const COST: &str = "x-quota-cost";
pub const PACE: &str = "x-quota-pace";
/// The value of [`PACE`] while a caller is ahead of the window's pace.
pub const PACE_AHEAD: &str = "ahead";
/// Sent with 429 (seconds until the reset) and 503.
pub const RETRY_AFTER: &str = "retry-after";
pub const DEGRADED_TO: &str = "x-quota-degraded-to";
pub const OVERAGE: &str = "x-quota-overage";
pub const GRANT: &str = "x-quota-grant";
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
pub const RATELIMIT: &str = "ratelimit";
/// OpenAI's rate-limit headers (`response_headers.openai_ratelimit`): a
/// class counted per request sends the `-requests` three, a class metered
/// in tokens the `-tokens` three.
pub const OPENAI_LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
pub const OPENAI_REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
pub const OPENAI_RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
pub const OPENAI_LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
pub const OPENAI_REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
pub const OPENAI_RESET_TOKENS: &str = "x-ratelimit-reset-tokens";

/// States beyond the counter's own, for requests that never reached it.
pub const STATE_NOT_INCLUDED: &str = "not_included";
pub const STATE_UNAVAILABLE: &str = "unavailable";
pub const STATE_CONFIRMATION_REQUIRED: &str = "confirmation_required";
/// A pooled class asked for without a workspace id (no counter was read).
pub const STATE_WORKSPACE_REQUIRED: &str = "workspace_required";
/// A request refused because it could never fit its cell (413). Not
/// "blocked": the caller's own allowance may be untouched, and waiting for
/// the reset would not help.
pub const STATE_TOO_LARGE: &str = "too_large";

pub type Headers = Vec<(&'static str, String)>;

/// The state a response to this decision names in [`STATE`] (and the
/// ledger records): the counter's own state, or why the counter was never
/// reached or the request was refused before it.
pub fn state_name(d: &Decision) -> &'static str {
    match &d.outcome {
        Outcome::NotIncluded => STATE_NOT_INCLUDED,
        Outcome::Unavailable { .. } => STATE_UNAVAILABLE,
        Outcome::WorkspaceRequired => STATE_WORKSPACE_REQUIRED,
        Outcome::Charged(c) if c.needs_confirmation => STATE_CONFIRMATION_REQUIRED,
        Outcome::Charged(c) if c.too_large => STATE_TOO_LARGE,
        Outcome::Charged(c) => c.usage.state.as_str(),
    }
}

/// The headers a response to this decision carries (admitted or refused).
pub fn response_headers(config: &Config, d: &Decision) -> Headers {
    let mut out = Headers::with_capacity(16);
    // The upgrade hint only shows once a limit is near or reached.
    let Some(mut facts) = Facts::without_hint(config, d.tier, d.class, d.limit) else {
        return out;
    };
    let quota = config.response_headers.quota;
    if quota {
        out.push((CLASS, facts.class.name.clone()));
        out.push((TIER, facts.tier.name.clone()));
    }
    match &d.outcome {
        Outcome::NotIncluded => {
            if quota {
                out.push((STATE, STATE_NOT_INCLUDED.into()));
                facts.hint = upgrade_hint(config, d.tier, d.class, d.limit);
                if let Some(url) = facts.hint.as_ref().and_then(|h| h.url.clone()) {
                    out.push((UPGRADE, url));
                }
            }
        }
        Outcome::Unavailable { .. } => {
            if quota {
                out.push((STATE, STATE_UNAVAILABLE.into()));
            }
        }
        Outcome::WorkspaceRequired => {
            if quota {
                out.push((SCOPE, d.scope.as_str().into()));
                out.push((STATE, STATE_WORKSPACE_REQUIRED.into()));
            }
        }
        Outcome::Charged(charge) => {
            let usage = charge.usage;
            let reset_after = d.reset_after().unwrap_or(0);
            // Counts as units, or amounts of the class's currency ("4.20").
            let currency = config.currency_of(d.class);
            let amount = |n: u64| match currency {
                Some(c) => crate::money::decimal_text(n, c),
                None => u64_text(n),
            };
            if quota {
                let state = state_name(d);
                out.push((SCOPE, d.scope.as_str().into()));
                if let Some(l) = facts.limits {
                    out.push((WINDOW, l.window_name.clone()));
                }
                if let Some(c) = currency {
                    out.push((CURRENCY, c.code().to_string()));
                }
                out.push((USED, amount(usage.used)));
                out.push((LIMIT, amount(usage.hard)));
                if let Some(soft) = usage.soft {
                    out.push((SOFT_LIMIT, amount(soft)));
                }
                out.push((REMAINING, amount(usage.remaining())));
                out.push((RESET, rfc3339(usage.window.end)));
                out.push((RESET_AFTER, i64_text(reset_after)));
                out.push((STATE, state.into()));
                out.push((COST, amount(charge.cost)));
                if charge.pace.is_some_and(|p| p.ahead) {
                    out.push((PACE, PACE_AHEAD.into()));
                }
                if charge.served == Served::Degraded {
                    let model = facts.limits.and_then(|l| l.degrade.as_ref()).and_then(|d| d.model.clone());
                    if let Some(model) = model {
                        out.push((DEGRADED_TO, model));
                    }
                }
                if charge.served == Served::Overage || usage.state == State::Overage {
                    out.push((OVERAGE, amount(usage.over)));
                }
                if usage.grant > 0 || charge.from_grant > 0 {
                    out.push((GRANT, amount(usage.grant)));
                }
                if usage.state != State::Ok {
                    facts.hint = upgrade_hint(config, d.tier, d.class, d.limit);
                    let message = match usage.state {
                        State::Warning => Some(Message::Warning),
                        State::Degraded => Some(Message::Degraded),
                        State::Overage => Some(Message::Overage),
                        State::Queued => Some(Message::Queued),
                        State::Ok | State::Blocked => None,
                    };
                    if let (Some(message), true) = (message, charge.admitted) {
                        facts.usage = Some(usage);
                        facts.requested = charge.requested;
                        facts.reset_after = reset_after;
                        out.push((WARNING, copy::message(config, message, &facts)));
                    }
                    if let Some(url) = facts.hint.as_ref().and_then(|h| h.url.clone()) {
                        out.push((UPGRADE, url));
                    }
                }
            }
            if config.response_headers.ratelimit {
                // Integers: in money, minor units (cents), the room rounded
                // down so a client never sees room that is not there.
                let minor = |n: u64, mode| match currency {
                    Some(c) => crate::money::minor_units(n, c, mode),
                    None => n,
                };
                // Every limit that applies (a list), the binding one's standing.
                let mut policies = String::with_capacity(64);
                for (i, u) in d.limits() {
                    if !policies.is_empty() {
                        policies.push_str(", ");
                    }
                    let (q, w) = (sf_count(minor(u.hard, Rounding::Down)), sf_seconds(u.window.length()));
                    push_limit_item(&mut policies, config, d, i, ("q", q), ("w", w));
                }
                let (r, t) = (sf_count(minor(usage.remaining(), Rounding::Down)), sf_seconds(reset_after));
                let mut ratelimit = String::with_capacity(48);
                push_limit_item(&mut ratelimit, config, d, d.limit, ("r", r), ("t", t));
                out.push((RATELIMIT_POLICY, policies));
                out.push((RATELIMIT, ratelimit));
            }
            if config.response_headers.openai_ratelimit {
                openai_ratelimit(&mut out, config, d, &usage, reset_after);
            }
        }
    }
    out
}

/// OpenAI's `x-ratelimit-*` headers for the binding limit: `-tokens` for a
/// class metered in tokens; `-requests` for a class that charges a fixed
/// number of units a request (its limit and room in whole requests).
/// Classes counted in records, bytes or money send none: OpenAI's headers
/// have no words for them (the RateLimit fields and `x-quota-*` do).
fn openai_ratelimit(out: &mut Headers, config: &Config, d: &Decision, usage: &crate::decide::Usage, reset_after: i64) {
    let Some(class) = config.class(d.class) else { return };
    if class.in_money() {
        return;
    }
    let (names, per) = match class.cost {
        Cost::Tokens { .. } => ([OPENAI_LIMIT_TOKENS, OPENAI_REMAINING_TOKENS, OPENAI_RESET_TOKENS], 1),
        Cost::Fixed(n) => ([OPENAI_LIMIT_REQUESTS, OPENAI_REMAINING_REQUESTS, OPENAI_RESET_REQUESTS], n.max(1)),
        _ => return,
    };
    let [limit, remaining, reset] = names;
    out.push((limit, u64_text(usage.hard / per)));
    out.push((remaining, u64_text(usage.remaining() / per)));
    out.push((reset, go_duration(reset_after)));
}

/// A duration as OpenAI's headers write it (Go's `time.Duration` text, to
/// the second): `0s`, `45s`, `6m0s`, `1h0m0s`, `36h12m5s`.
pub fn go_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::with_capacity(12);
    if h > 0 {
        push_u64(&mut out, h.unsigned_abs());
        out.push('h');
    }
    if h > 0 || m > 0 {
        push_u64(&mut out, m.unsigned_abs());
        out.push('m');
    }
    push_u64(&mut out, s.unsigned_abs());
    out.push('s');
    out
}

/// Appends a RateLimit field's item for limit `limit` of `d`'s cell:
/// `"name";a=1;b=2`, the name as [`crate::engine::policy_name`] writes it.
fn push_limit_item(out: &mut String, config: &Config, d: &Decision, limit: usize, a: (&str, u64), b: (&str, u64)) {
    let param = |out: &mut String, (key, value): (&str, u64)| {
        out.push_str(key);
        out.push('=');
        push_u64(out, value);
    };
    out.push('"');
    push_policy_name(out, config, d.tier, d.class, limit);
    out.push_str("\";");
    param(out, a);
    out.push(';');
    param(out, b);
}

/// Whether a request header is one the filter owns (and strips from clients).
pub fn is_quota_header(name: &str) -> bool {
    name.len() >= QUOTA_PREFIX.len()
        && name.get(..QUOTA_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(QUOTA_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::engine::charge;
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::{demo_config, head};

    const NOON_MS: i64 = 1_795_348_800_000;

    fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn admitted_requests_carry_the_whole_contract() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let drafts = ClassId(2);
        let d = charge(&config, &alice, drafts, 1, false, NOON_MS, &store);
        let h = response_headers(&config, &d);
        assert_eq!(header(&h, CLASS), Some("drafts"));
        assert_eq!(header(&h, TIER), Some("free"));
        assert_eq!(header(&h, SCOPE), Some("user"));
        assert_eq!(header(&h, USED), Some("1"));
        assert_eq!(header(&h, LIMIT), Some("10"));
        assert_eq!(header(&h, SOFT_LIMIT), Some("5"));
        assert_eq!(header(&h, REMAINING), Some("9"));
        assert_eq!(header(&h, RESET), Some("2026-11-23T00:00:00Z"));
        assert_eq!(header(&h, RESET_AFTER), Some("43200"));
        assert_eq!(header(&h, STATE), Some("ok"));
        assert_eq!(header(&h, COST), Some("1"));
        assert_eq!(header(&h, WARNING), None);
        assert_eq!(header(&h, RATELIMIT_POLICY), Some("\"drafts\";q=10;w=86400"));
        assert_eq!(header(&h, RATELIMIT), Some("\"drafts\";r=9;t=43200"));
    }

    #[test]
    fn warning_state_carries_the_sentence_and_upgrade() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let mut last = None;
        for _ in 0..5 {
            last = Some(charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store));
        }
        let h = response_headers(&config, &last.unwrap());
        assert_eq!(header(&h, STATE), Some("warning"));
        assert_eq!(
            header(&h, WARNING),
            Some("You've used 5 of your 10 drafts for today. They reset in 12 h. Pro includes 100 a day: https://example.com/upgrade?plan=pro")
        );
        assert_eq!(header(&h, UPGRADE), Some("https://example.com/upgrade?plan=pro"));
    }

    #[test]
    fn durations_read_as_openai_writes_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(-5), "0s");
        assert_eq!(go_duration(1), "1s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(360), "6m0s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(go_duration(43_200), "12h0m0s");
        assert_eq!(go_duration(36 * 3600 + 12 * 60 + 5), "36h12m5s");
        assert!(go_duration(i64::MAX).ends_with('s'));
    }

    fn with_openai_headers(classes: &str) -> crate::config::Config {
        let doc = format!(
            r#"{{"identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
                "classes": {classes},
                "tiers": {{"free": {{"limits": {{"chat": {{"hard": 1000, "window": "day"}},
                    "calls": {{"hard": 10, "window": "hour"}}, "batch": {{"hard": 50, "window": "day"}}}}}}}},
                "response_headers": {{"openai_ratelimit": true}}}}"#
        );
        crate::config::Config::from_json(doc.as_bytes()).unwrap()
    }

    #[test]
    fn openai_ratelimit_headers_say_requests_or_tokens_when_asked_for() {
        let config = with_openai_headers(
            r#"[{"name": "chat", "cost": {"tokens": {}}}, {"name": "calls", "cost": {"fixed": 2}},
                {"name": "batch", "cost": {"records": {}}}]"#,
        );
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let store = MemoryStore::new();
        let chat = charge(&config, &alice, ClassId(0), 52, false, NOON_MS, &store);
        let h = response_headers(&config, &chat);
        assert_eq!(header(&h, OPENAI_LIMIT_TOKENS), Some("1000"));
        assert_eq!(header(&h, OPENAI_REMAINING_TOKENS), Some("948"));
        assert_eq!(header(&h, OPENAI_RESET_TOKENS), Some("12h0m0s"));
        assert_eq!(header(&h, OPENAI_LIMIT_REQUESTS), None);
        // Two units a request: 10 units an hour is 5 requests, 4 after this one.
        let calls = charge(&config, &alice, ClassId(1), 2, false, NOON_MS + 90_000, &store);
        let h = response_headers(&config, &calls);
        assert_eq!(header(&h, OPENAI_LIMIT_REQUESTS), Some("5"));
        assert_eq!(header(&h, OPENAI_REMAINING_REQUESTS), Some("4"));
        assert_eq!(header(&h, OPENAI_RESET_REQUESTS), Some("58m30s"));
        assert_eq!(header(&h, OPENAI_LIMIT_TOKENS), None);
        // Records have no OpenAI words.
        let batch = charge(&config, &alice, ClassId(2), 3, false, NOON_MS, &store);
        let h = response_headers(&config, &batch);
        assert!(h.iter().all(|(n, _)| !n.starts_with("x-ratelimit-")), "{h:?}");
    }

    #[test]
    fn openai_ratelimit_headers_are_off_by_default() {
        let config = demo_config();
        assert!(!config.response_headers.openai_ratelimit);
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let d = charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &MemoryStore::new());
        assert!(response_headers(&config, &d).iter().all(|(n, _)| !n.starts_with("x-ratelimit-")));
    }

    #[test]
    fn quota_headers_are_recognised_case_insensitively() {
        assert!(is_quota_header("x-quota-used"));
        assert!(is_quota_header("X-Quota-State"));
        assert!(!is_quota_header("x-quot"));
        assert!(!is_quota_header("x-user-id"));
    }

    #[test]
    fn ratelimit_fields_stay_within_structured_field_integers() {
        // fuzz/regressions/config-hard-limit-past-sf-integer: a limit past what
        // RFC 8941 carries (10^15 - 1) is announced as that, so clients parse it.
        // The largest limit a config may set (2^53 - 1) is past it.
        let doc = r#"{"identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": [{"name": "tokens", "match": [{"path": {"prefix": "/"}}]}],
            "tiers": {"free": {"limits": {"tokens": {"hard": 9007199254740991, "window": "day"}}}}}"#;
        let config = crate::config::Config::from_json(doc.as_bytes()).unwrap();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let d = charge(&config, &alice, ClassId(0), 1, false, NOON_MS, &MemoryStore::new());
        let h = response_headers(&config, &d);
        assert_eq!(header(&h, RATELIMIT_POLICY), Some("\"tokens\";q=999999999999999;w=86400"));
        assert_eq!(header(&h, RATELIMIT), Some("\"tokens\";r=999999999999999;t=43200"));
        assert!(crate::wire::parse_policies(header(&h, RATELIMIT_POLICY).unwrap()).is_ok());
    }
}
