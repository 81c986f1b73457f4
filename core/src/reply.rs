//! What the filter answers itself: refusals (429, 428, 413, 403, 401, 400, 503) in the
//! format the client asked for: an OpenAI-compatible error envelope by
//! default (SDKs show `error.message`, the human copy), Anthropic's error
//! envelope for Anthropic-style requests, RFC 9457 problem details, or a
//! small HTML page. And the answer that replaces an upstream's own busy
//! refusal ([`busy`]), in the same formats.

use crate::body::Unreadable;
use crate::calendar::rfc3339;
use crate::config::{Cell, Config, FailPolicy, Limits, Message};
use crate::copy::{self, upgrade_hint, Facts, UpgradeHint, CONFIRM_HEADER};
use crate::decide::{Charge, State};
use crate::engine::{policy_name, Decision, Outcome};
use crate::headers::{
    response_headers, Headers, RETRY_AFTER, STATE_NOT_INCLUDED, STATE_TOO_LARGE, STATE_UNAVAILABLE,
    STATE_WORKSPACE_REQUIRED,
};
use crate::identity::IdentityError;
use crate::negotiate::BodyFormat;
use serde_json::{json, Value};

/// The IETF RateLimit draft's problem type for a refused quota.
pub const QUOTA_EXCEEDED_TYPE: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// A response the filter sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Headers,
    pub body: String,
}

/// What the filter does with a decided request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward it; add these headers to the upstream's response.
    Continue(Headers),
    /// Answer it here.
    Reply(LocalReply),
}

/// A refusal, before it is written in a format.
struct Refusal {
    status: u16,
    /// OpenAI `error.type`.
    kind: &'static str,
    code: &'static str,
    title: String,
    message: String,
    /// The machine-readable numbers (`error.quota`, or a problem member).
    quota: Option<Value>,
    /// The class whose policy was violated (429 and 413).
    violated: Option<String>,
    reset: Option<i64>,
    upgrade: Option<(String, String)>,
}

/// Turns a decision into the filter's action.
pub fn respond(config: &Config, d: &Decision, format: BodyFormat) -> Action {
    let mut headers = response_headers(config, d);
    // The common case first: a forwarded request needs nothing below.
    if let Outcome::Charged(Charge { admitted: true, .. }) | Outcome::Unavailable { policy: FailPolicy::Open, .. } =
        &d.outcome
    {
        return Action::Continue(headers);
    }
    let Some(mut facts) = Facts::new(config, d.tier, d.class, d.limit) else {
        return Action::Continue(headers);
    };
    let upgrade_json = facts.hint.as_ref().map(|h| {
        json!({ "tier": config.tier(h.tier).map(|t| t.name.clone()), "label": h.tier_label, "limit": h.limit, "url": h.url })
    });
    let upgrade_link = facts.hint.as_ref().and_then(|h| h.url.clone().map(|u| (h.tier_label.clone(), u)));
    let (class, tier) = (facts.class, facts.tier);
    let refusal = match &d.outcome {
        // Forwarded: answered at the top.
        Outcome::Charged(Charge { admitted: true, .. }) | Outcome::Unavailable { policy: FailPolicy::Open, .. } => {
            return Action::Continue(headers)
        }
        Outcome::Charged(c) => {
            let reset_after = d.reset_after().unwrap_or(0);
            facts.usage = Some(c.usage);
            facts.requested = c.requested;
            facts.reset_after = reset_after;
            let quota = json!({
                "class": class.name,
                "label": class.label,
                "tier": tier.name,
                "scope": d.scope.as_str(),
                "state": c.usage.state.as_str(),
                "used": c.usage.used,
                "limit": c.usage.hard,
                "soft_limit": c.usage.soft,
                "remaining": c.usage.remaining(),
                "requested": c.requested,
                "window": facts.limits.map(|l| l.window_name.clone()),
                "reset": rfc3339(c.usage.window.end),
                "reset_after": reset_after,
                "upgrade": upgrade_json,
                "policy": policy_name(config, d.tier, d.class, d.limit),
                "limits": every_limit(config, d),
                "money": crate::usage::money(config, d.class, &c.usage),
            });
            if c.needs_confirmation {
                let mut quota = quota;
                if let Some(q) = quota.as_object_mut() {
                    q.insert("state".into(), json!(crate::headers::STATE_CONFIRMATION_REQUIRED));
                    q.insert("confirm_header".into(), json!(CONFIRM_HEADER));
                }
                Refusal {
                    status: 428,
                    kind: "quota_confirmation_required",
                    code: "confirmation_required",
                    title: format!("Please confirm this {}", class.unit),
                    message: copy::message(config, Message::Confirm, &facts),
                    quota: Some(quota),
                    violated: None,
                    reset: Some(c.usage.window.end),
                    upgrade: None,
                }
            } else if c.too_large {
                too_large(config, d, c, &mut facts, quota, upgrade_link)
            } else {
                headers.push((RETRY_AFTER, reset_after.max(1).to_string()));
                Refusal {
                    status: 429,
                    kind: "quota_exceeded",
                    code: "quota_exceeded",
                    title: format!("You've reached your limit for {}", class.label.to_lowercase()),
                    message: copy::message(config, Message::Blocked, &facts),
                    quota: Some(quota),
                    violated: Some(policy_name(config, d.tier, d.class, d.limit)),
                    reset: Some(c.usage.window.end),
                    upgrade: upgrade_link,
                }
            }
        }
        Outcome::NotIncluded => Refusal {
            status: 403,
            kind: "quota_exceeded",
            code: "not_included_in_plan",
            title: format!("{} isn't part of your plan", class.label),
            message: copy::message(config, Message::NotIncluded, &facts),
            quota: Some(json!({
                "class": class.name,
                "label": class.label,
                "tier": tier.name,
                "state": STATE_NOT_INCLUDED,
                "upgrade": upgrade_json,
            })),
            violated: None,
            reset: None,
            upgrade: upgrade_link,
        },
        Outcome::WorkspaceRequired => Refusal {
            status: 403,
            kind: "permission_error",
            code: "workspace_required",
            title: "Please choose a workspace".into(),
            message: copy::message(config, Message::WorkspaceRequired, &facts),
            quota: Some(json!({
                "class": class.name,
                "label": class.label,
                "tier": tier.name,
                "scope": d.scope.as_str(),
                "state": STATE_WORKSPACE_REQUIRED,
                "limit": facts.limits.map(|l| l.hard),
                "window": facts.limits.map(|l| l.window_name.clone()),
            })),
            violated: None,
            reset: None,
            upgrade: None,
        },
        Outcome::Unavailable { policy: FailPolicy::Closed, .. } => {
            headers.push((RETRY_AFTER, "1".into()));
            Refusal {
                status: 503,
                kind: "server_error",
                code: "quota_unavailable",
                title: "Please try again in a moment".into(),
                message: copy::message(config, Message::Unavailable, &facts),
                quota: Some(json!({ "class": class.name, "tier": tier.name, "state": STATE_UNAVAILABLE })),
                violated: None,
                reset: None,
                upgrade: None,
            }
        }
    };
    Action::Reply(render(refusal, headers, format))
}

/// A request that could never fit its cell: 413 without `Retry-After`
/// (waiting for the reset would not help). The upgrade is offered only when
/// the next tier's ceiling would take the request.
fn too_large(
    config: &Config,
    d: &Decision,
    c: &Charge,
    facts: &mut Facts,
    mut quota: Value,
    upgrade_link: Option<(String, String)>,
) -> Refusal {
    let helps = facts.hint.as_ref().is_some_and(|h| upgrade_fits(config, d, c.requested, h));
    if !helps {
        facts.hint = None;
    }
    if let Some(q) = quota.as_object_mut() {
        q.insert("state".into(), json!(STATE_TOO_LARGE));
        q.insert("max_request".into(), json!(facts.limits.map(Limits::request_ceiling)));
        if !helps {
            q.insert("upgrade".into(), Value::Null);
        }
    }
    Refusal {
        status: 413,
        kind: "invalid_request_error",
        code: "request_too_large",
        title: "This request is larger than your plan allows".into(),
        message: copy::message(config, Message::TooLarge, facts),
        quota: Some(quota),
        violated: Some(facts.class.name.clone()),
        reset: None,
        upgrade: upgrade_link.filter(|_| helps),
    }
}

/// Whether the plan `hint` offers would take a request of `requested`
/// units in one go (every limit of its cell has the room).
fn upgrade_fits(config: &Config, d: &Decision, requested: u64, hint: &UpgradeHint) -> bool {
    matches!(config.cell(hint.tier, d.class), Some(Cell::Limited(stack)) if stack.iter().all(|l| l.request_ceiling() >= requested))
}

/// The upgrade the answer to `d` offers, if any: the refusals' bodies (429,
/// 428, 403 not included; 413 only when the next plan would take the
/// request) and, once a limit is near or reached (the state is not `ok`),
/// an admitted request's headers and warning.
pub fn upgrade_offered(config: &Config, d: &Decision) -> Option<UpgradeHint> {
    let hint = || upgrade_hint(config, d.tier, d.class, d.limit);
    match &d.outcome {
        Outcome::NotIncluded => hint(),
        Outcome::Charged(c) if c.admitted && c.usage.state == State::Ok => None,
        Outcome::Charged(c) if c.admitted => hint(),
        Outcome::Charged(c) if c.too_large => hint().filter(|h| upgrade_fits(config, d, c.requested, h)),
        Outcome::Charged(_) => hint(),
        Outcome::WorkspaceRequired | Outcome::Unavailable { .. } => None,
    }
}

/// The answer to a request whose caller could not be identified.
pub fn refuse_identity(config: &Config, err: &IdentityError, format: BodyFormat) -> LocalReply {
    let refusal = match err {
        IdentityError::MissingUser => Refusal {
            status: 401,
            kind: "authentication_error",
            code: "missing_identity",
            title: "Please sign in".into(),
            message: copy::plain_message(config, Message::MissingIdentity),
            quota: None,
            violated: None,
            reset: None,
            upgrade: None,
        },
        IdentityError::InvalidCredentials => Refusal {
            status: 401,
            kind: "authentication_error",
            code: "invalid_credentials",
            title: "Please sign in again".into(),
            message: copy::plain_message(config, Message::InvalidCredentials),
            quota: None,
            violated: None,
            reset: None,
            upgrade: None,
        },
        IdentityError::UnknownTier(_) => Refusal {
            status: 403,
            kind: "permission_error",
            code: "unknown_tier",
            title: "We don't recognise your plan".into(),
            message: copy::plain_message(config, Message::UnknownTier),
            quota: None,
            violated: None,
            reset: None,
            upgrade: None,
        },
    };
    render(refusal, Headers::new(), format)
}

/// The answer to a request whose class or cost depends on a body the filter
/// cannot read, under `unreadable_body: refuse`: 413 `body_too_large` or 400
/// `unreadable_body`, an `invalid_request_error` SDKs do not retry. Nothing
/// was charged.
pub fn refuse_body(config: &Config, why: &Unreadable, format: BodyFormat) -> LocalReply {
    let refusal = match why {
        Unreadable::TooLarge => Refusal {
            status: 413,
            kind: "invalid_request_error",
            code: why.code(),
            title: "This request is too large to check".into(),
            message: copy::body_message(config, Message::BodyTooLarge, &why.to_string()),
            quota: Some(json!({ "max_body_bytes": config.max_body_bytes })),
            violated: None,
            reset: None,
            upgrade: None,
        },
        _ => Refusal {
            status: 400,
            kind: "invalid_request_error",
            code: why.code(),
            title: "We couldn't read this request".into(),
            message: copy::body_message(config, Message::UnreadableBody, &why.to_string()),
            quota: None,
            violated: None,
            reset: None,
            upgrade: None,
        },
    };
    render(refusal, Headers::new(), format)
}

/// Every limit of the decision's cell, as the refusal body lists them.
fn every_limit(config: &Config, d: &Decision) -> Value {
    let stack = config.cell(d.tier, d.class).map_or(&[][..], Cell::limits);
    d.limits()
        .into_iter()
        .map(|(i, u)| {
            json!({
                "policy": policy_name(config, d.tier, d.class, i),
                "scope": stack.get(i).map(|l| l.scope.as_str()),
                "window": stack.get(i).map(|l| l.window_name.clone()),
                "used": u.used,
                "limit": u.hard,
                "remaining": u.remaining(),
                "state": u.state.as_str(),
                "reset": rfc3339(u.window.end),
                "reset_after": crate::engine::seconds_until(u.window.end, d.now_ms),
                "binding": i == d.limit,
            })
        })
        .collect()
}

fn render(r: Refusal, mut headers: Headers, format: BodyFormat) -> LocalReply {
    let body = match format {
        BodyFormat::OpenAi => {
            let mut error = json!({ "message": r.message, "type": r.kind, "param": null, "code": r.code });
            if let (Some(q), Some(obj)) = (r.quota, error.as_object_mut()) {
                obj.insert("quota".into(), q);
            }
            json!({ "error": error }).to_string()
        }
        BodyFormat::Problem => {
            let mut problem = json!({
                "type": if r.violated.is_some() { QUOTA_EXCEEDED_TYPE } else { "about:blank" },
                "title": r.title,
                "status": r.status,
                "detail": r.message,
                "code": r.code,
            });
            if let Some(obj) = problem.as_object_mut() {
                if let Some(policy) = r.violated {
                    obj.insert("violated-policies".into(), json!([policy]));
                }
                if let Some(q) = r.quota {
                    obj.insert("quota".into(), q);
                }
            }
            problem.to_string()
        }
        BodyFormat::Anthropic => {
            let mut error = json!({ "type": anthropic_type(r.status, r.code), "message": r.message, "code": r.code });
            if let (Some(q), Some(obj)) = (r.quota, error.as_object_mut()) {
                obj.insert("quota".into(), q);
            }
            json!({ "type": "error", "error": error }).to_string()
        }
        BodyFormat::Html => html_page(&r),
    };
    if let Some(retry) = should_retry(r.code, &headers) {
        headers.push((SHOULD_RETRY, retry.into()));
    }
    headers.push(("content-type", format.content_type().into()));
    headers.push(("cache-control", "no-store".into()));
    LocalReply { status: r.status, headers, body }
}

/// Read by the OpenAI and Anthropic SDKs before their automatic retries
/// (two by default, with backoff): `false` stops them.
pub const SHOULD_RETRY: &str = "x-should-retry";

/// Whether retrying a refusal can help soon: `true` only for a counter
/// store that gave up (`fail_closed`: a blip); not said for a wall that
/// resets within a minute (the SDKs wait out a `Retry-After` up to 60 s);
/// `false` for every other refusal: a wall hours away, a class outside the
/// plan, a request too large, a missing confirmation or identity. A retry
/// would fail the same way and, at a wall, spend the user's wait on backoff.
fn should_retry(code: &str, headers: &Headers) -> Option<&'static str> {
    match code {
        "quota_unavailable" | UPSTREAM_BUSY => Some("true"),
        "quota_exceeded" => {
            let soon = headers
                .iter()
                .find(|(n, _)| *n == RETRY_AFTER)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .is_some_and(|s| s <= 60);
            (!soon).then_some("false")
        }
        _ => Some("false"),
    }
}

/// Anthropic's `error.type` for an answer: its documented type for the
/// status (400 `invalid_request_error`, 401 `authentication_error`, 403
/// `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
/// `rate_limit_error`, 500 `api_error`, 529 `overloaded_error`), so the
/// Anthropic SDKs raise the error class they would for the API itself.
/// Other 4xx (428) are `invalid_request_error`, as Anthropic uses it; a
/// busy upstream's 503 is `overloaded_error`, other 5xx `api_error`.
fn anthropic_type(status: u16, code: &str) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        503 if code == UPSTREAM_BUSY => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The `code` (and OpenAI `error.type`) of the answer that replaces an
/// upstream's own busy refusal.
pub const UPSTREAM_BUSY: &str = "upstream_busy";

/// The answer that replaces an upstream's own capacity refusal (see
/// `busy.rs`): the upstream's `status` kept, the caller's standing as it
/// was before the request (`d` given back: [`Decision::given_back`]), the
/// `upstream_busy` copy, and `x-should-retry: true`. `Retry-After` is set
/// only when the upstream sent none (`upstream_retry_after`: the upstream's
/// value, which the response keeps); the copy's `{retry_in}` reads either.
pub fn busy(
    config: &Config,
    d: &Decision,
    status: u16,
    upstream_retry_after: Option<&[u8]>,
    format: BodyFormat,
) -> LocalReply {
    let mut headers = response_headers(config, d);
    let retry_after = match upstream_retry_after {
        Some(value) => crate::busy::retry_after_seconds(Some(value)),
        None => {
            headers.push((RETRY_AFTER, config.upstream_busy.retry_after.to_string()));
            Some(config.upstream_busy.retry_after)
        }
    };
    let Some(mut facts) = Facts::without_hint(config, d.tier, d.class, d.limit) else {
        // A decision always names a cell of its config; say it plainly all the same.
        let text = "The model is busy right now, so this request didn't go through. Try again in a moment.";
        let refusal = busy_refusal(status, text.into(), None);
        return render(refusal, headers, format);
    };
    facts.retry_after = retry_after;
    let mut quota = json!({
        "class": facts.class.name,
        "label": facts.class.label,
        "tier": facts.tier.name,
        "scope": d.scope.as_str(),
        "upstream_status": status,
        "retry_after": retry_after,
        "cost": 0,
    });
    if let (Outcome::Charged(c), Some(q)) = (&d.outcome, quota.as_object_mut()) {
        facts.usage = Some(c.usage);
        facts.reset_after = d.reset_after().unwrap_or(0);
        q.insert("state".into(), json!(c.usage.state.as_str()));
        q.insert("used".into(), json!(c.usage.used));
        q.insert("limit".into(), json!(c.usage.hard));
        q.insert("remaining".into(), json!(c.usage.remaining()));
        q.insert("window".into(), json!(facts.limits.map(|l| l.window_name.clone())));
        q.insert("reset".into(), json!(rfc3339(c.usage.window.end)));
        q.insert("reset_after".into(), json!(facts.reset_after));
        q.insert("money".into(), crate::usage::money(config, d.class, &c.usage));
    }
    let message = copy::message(config, Message::UpstreamBusy, &facts);
    render(busy_refusal(status, message, Some(quota)), headers, format)
}

fn busy_refusal(status: u16, message: String, quota: Option<Value>) -> Refusal {
    Refusal {
        status,
        kind: UPSTREAM_BUSY,
        code: UPSTREAM_BUSY,
        title: "The model is busy right now".into(),
        message,
        quota,
        violated: None,
        reset: None,
        upgrade: None,
    }
}

/// A small, accessible page: one heading, the message, when it resets, and
/// the upgrade link.
fn html_page(r: &Refusal) -> String {
    let reset = r.reset.map_or_else(String::new, |t| {
        let when = rfc3339(t);
        let shown = when.replacen('T', " ", 1).replacen(":00Z", " UTC", 1);
        format!("<p>Your allowance resets at <time datetime=\"{when}\">{shown}</time>.</p>")
    });
    let upgrade = r.upgrade.as_ref().map_or_else(String::new, |(label, url)| {
        format!("<p><a href=\"{}\">See what {} includes</a></p>", escape(url), escape(label))
    });
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
         <style>body{{font:1.05rem/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}}\
         a{{color:#0b57d0}}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n<p>{message}</p>\n{reset}{upgrade}</main>\n</body>\n</html>\n",
        title = escape(&r.title),
        message = escape(&r.message),
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::cost::Body;
    use crate::engine::charge;
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::{demo_config, head};

    const NOON_MS: i64 = 1_795_348_800_000;

    fn blocked_reply(format: BodyFormat) -> LocalReply {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        for _ in 0..10 {
            let d = charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
            assert!(matches!(respond(&config, &d, format), Action::Continue(_)));
        }
        let d = charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
        match respond(&config, &d, format) {
            Action::Reply(reply) => reply,
            Action::Continue(_) => panic!("expected a reply"),
        }
    }

    #[test]
    fn blocked_requests_get_a_friendly_429() {
        let reply = blocked_reply(BodyFormat::OpenAi);
        assert_eq!(reply.status, 429);
        assert!(reply.headers.contains(&("retry-after", "43200".into())));
        assert!(reply.headers.contains(&("x-quota-state", "blocked".into())));
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body["error"]["message"],
            "You've used your 10 drafts for today. They reset in 12 h. Pro includes 100 a day: https://example.com/upgrade?plan=pro"
        );
        assert_eq!(body["error"]["code"], "quota_exceeded");
        assert_eq!(body["error"]["quota"]["used"], 10);
        assert_eq!(body["error"]["quota"]["reset"], "2026-11-23T00:00:00Z");
        assert_eq!(body["error"]["quota"]["upgrade"]["tier"], "pro");
    }

    #[test]
    fn problem_details_name_the_violated_policy() {
        let reply = blocked_reply(BodyFormat::Problem);
        assert!(reply.headers.contains(&("content-type", "application/problem+json".into())));
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["type"], QUOTA_EXCEEDED_TYPE);
        assert_eq!(body["status"], 429);
        assert_eq!(body["violated-policies"], json!(["drafts"]));
        assert!(body["detail"].as_str().unwrap().starts_with("You've used your 10 drafts"));
        assert_eq!(body["quota"]["remaining"], 0);
    }

    #[test]
    fn browsers_get_a_small_accessible_page() {
        let reply = blocked_reply(BodyFormat::Html);
        assert!(reply.headers.contains(&("content-type", "text/html; charset=utf-8".into())));
        let page = reply.body;
        assert!(page.contains("<html lang=\"en\">"));
        assert!(page.contains("<h1>You&#39;ve reached your limit for drafts</h1>"));
        assert!(page.contains("<time datetime=\"2026-11-23T00:00:00Z\">2026-11-23 00:00 UTC</time>"));
        assert!(page.contains("<a href=\"https://example.com/upgrade?plan=pro\">See what Pro includes</a>"));
    }

    fn workspace_required_reply(format: BodyFormat) -> LocalReply {
        let config = demo_config();
        let store = MemoryStore::new();
        let solo = identify(&config, &head(&[("x-user-id", "solo"), ("x-plan", "team")]), &NoProperties).unwrap();
        let d = charge(&config, &solo, ClassId(2), 1, false, NOON_MS, &store);
        match respond(&config, &d, format) {
            Action::Reply(reply) => reply,
            Action::Continue(_) => panic!("expected a reply"),
        }
    }

    /// A chat class metered in tokens: Free allows 20000 a day, Pro 200000.
    fn tokens_config(free: serde_json::Value) -> Config {
        let doc = json!({
            "identity": {"user": [{"header": "x-user-id"}], "tier": [{"header": "x-plan"}], "default_tier": "free"},
            "classes": [{"name": "chat", "unit": "token", "match": [{"path": {"prefix": "/v1/chat"}}],
                         "cost": {"tokens": {}}}],
            "tier_order": ["free", "pro"],
            "tiers": {
                "free": {"label": "Free", "upgrade_url": "https://example.com/upgrade", "limits": {"chat": free}},
                "pro": {"limits": {"chat": {"hard": 200000, "window": "day"}}}
            }
        });
        Config::from_json(doc.to_string().as_bytes()).unwrap()
    }

    /// The decision on one chat request asking for `max_tokens`, after `granted` grant units.
    fn ask(config: &Config, max_tokens: u64, granted: u64) -> Decision {
        let store = MemoryStore::new();
        let alice = identify(config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let class = ClassId(0);
        let (kind, id) = alice.scope_id(crate::config::Scope::User, crate::config::MissingWorkspace::User).unwrap();
        let key = crate::engine::store_key(config, &config.classes[0], kind, id);
        if granted > 0 {
            crate::engine::grant(config, &key, granted, &store).unwrap();
        }
        let body = format!(r#"{{"messages": [{{"role": "user", "content": "hi"}}], "max_tokens": {max_tokens}}}"#);
        let json: Value = serde_json::from_str(&body).unwrap();
        let cost = crate::engine::request_cost(
            config,
            class,
            Body { bytes: Some(body.as_bytes()), json: Some(&json), prompt_chars: 0 },
        );
        charge(config, &alice, class, cost, false, NOON_MS, &store)
    }

    fn reply_to(config: &Config, d: &Decision, format: BodyFormat) -> LocalReply {
        match respond(config, d, format) {
            Action::Reply(reply) => reply,
            Action::Continue(_) => panic!("expected a reply"),
        }
    }

    #[test]
    fn a_pooled_class_without_a_workspace_is_a_clear_403() {
        let reply = workspace_required_reply(BodyFormat::OpenAi);
        assert_eq!(reply.status, 403);
        assert!(reply.headers.contains(&("x-quota-state", "workspace_required".into())));
        assert!(reply.headers.contains(&("x-quota-scope", "workspace".into())));
        assert!(!reply.headers.iter().any(|(n, _)| *n == RETRY_AFTER));
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["type"], "permission_error");
        assert_eq!(body["error"]["code"], "workspace_required");
        assert_eq!(
            body["error"]["message"],
            "Your drafts are shared across your workspace, but this request doesn't say which workspace it's for. \
             Choose a workspace and try again."
        );
        assert_eq!(
            body["error"]["quota"],
            json!({"class": "drafts", "label": "Drafts", "tier": "team", "scope": "workspace",
                   "state": "workspace_required", "limit": 300, "window": "day"})
        );

        let problem: Value = serde_json::from_str(&workspace_required_reply(BodyFormat::Problem).body).unwrap();
        assert_eq!((problem["status"].as_u64(), problem["type"].as_str()), (Some(403), Some("about:blank")));
        assert_eq!(problem["code"], "workspace_required");
        assert!(problem["detail"].as_str().unwrap().starts_with("Your drafts are shared across your workspace"));
        assert_eq!(problem.get("violated-policies"), None);

        let page = workspace_required_reply(BodyFormat::Html).body;
        assert!(page.contains("<h1>Please choose a workspace</h1>"));
        assert!(page.contains("this request doesn&#39;t say which workspace it&#39;s for"));
        assert!(!page.contains("resets at"));
    }

    #[test]
    fn the_workspace_required_message_can_be_overridden() {
        let mut doc: Value = serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["copy"] = json!({"workspace_required": "Pick a team for {units}."});
        doc["tiers"]["team"]["limits"]["deep_research"]["copy"] =
            json!({"workspace_required": "Research needs a team."});
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let store = MemoryStore::new();
        let solo = identify(&config, &head(&[("x-user-id", "solo"), ("x-plan", "team")]), &NoProperties).unwrap();
        let message = |class| {
            let d = charge(&config, &solo, class, 1, false, NOON_MS, &store);
            let Action::Reply(reply) = respond(&config, &d, BodyFormat::OpenAi) else { panic!("expected a reply") };
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            body["error"]["message"].as_str().unwrap().to_string()
        };
        assert_eq!(message(ClassId(2)), "Pick a team for drafts.");
        assert_eq!(message(ClassId(0)), "Research needs a team.");
    }

    fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
        reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_huge_max_tokens_on_an_uncapped_overage_cell_is_a_413() {
        // The issue's attack: admitted at face value before, charging u64::MAX.
        let config = tokens_config(json!({"hard": 20000, "window": "day", "at_hard": "overage"}));
        let d = ask(&config, u64::MAX, 0);
        assert!(!d.admitted());
        assert_eq!(d.events(&config), vec![crate::engine::Event::TooLarge]);
        let reply = reply_to(&config, &d, BodyFormat::OpenAi);
        assert_eq!(reply.status, 413);
        assert_eq!(header(&reply, RETRY_AFTER), None);
        assert_eq!(header(&reply, "x-quota-state"), Some("too_large"));
        assert_eq!(header(&reply, "x-quota-cost"), Some("0"));
        assert_eq!(header(&reply, "x-quota-used"), Some("0"));
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "request_too_large");
        // Pro's 200000 would not take it either: no upgrade offered.
        assert_eq!(
            body["error"]["message"],
            "This request would use 9007199254740991 tokens, more than the 20000 your Free plan allows \
             for a whole day. Shorten it or ask for less output."
        );
        assert_eq!(body["error"]["quota"]["state"], "too_large");
        assert_eq!(body["error"]["quota"]["requested"], crate::units::MAX_UNITS);
        assert_eq!(body["error"]["quota"]["max_request"], 20000);
        assert_eq!(body["error"]["quota"]["upgrade"], Value::Null);
    }

    #[test]
    fn a_request_past_a_blocking_cell_says_an_upgrade_would_take_it() {
        let config = tokens_config(json!({"hard": 20000, "window": "day"}));
        let d = ask(&config, 75000, 0);
        let reply = reply_to(&config, &d, BodyFormat::OpenAi);
        assert_eq!(reply.status, 413);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body["error"]["message"],
            "This request would use 75001 tokens, more than the 20000 your Free plan allows for a whole day. \
             Shorten it or ask for less output. Pro includes 200000 a day: https://example.com/upgrade"
        );
        assert_eq!(body["error"]["quota"]["upgrade"]["tier"], "pro");
    }

    #[test]
    fn too_large_reads_the_same_in_every_format() {
        let config = tokens_config(json!({"hard": 20000, "window": "day"}));
        let d = ask(&config, 75000, 0);
        let problem = reply_to(&config, &d, BodyFormat::Problem);
        assert_eq!(problem.status, 413);
        assert_eq!(header(&problem, RETRY_AFTER), None);
        let body: Value = serde_json::from_str(&problem.body).unwrap();
        assert_eq!(body["type"], QUOTA_EXCEEDED_TYPE);
        assert_eq!(body["status"], 413);
        assert_eq!(body["code"], "request_too_large");
        assert_eq!(body["violated-policies"], json!(["chat"]));
        assert!(body["detail"].as_str().unwrap().starts_with("This request would use 75001 tokens"));
        let page = reply_to(&config, &d, BodyFormat::Html).body;
        assert!(page.contains("<h1>This request is larger than your plan allows</h1>"));
        assert!(page.contains("This request would use 75001 tokens"));
        // Waiting for the reset would not help: the page does not suggest it.
        assert!(!page.contains("resets at"));
        assert!(page.contains("<a href=\"https://example.com/upgrade\">See what Pro includes</a>"));
    }

    #[test]
    fn a_grant_lets_a_request_past_the_ceiling_through() {
        let config = tokens_config(json!({"hard": 20000, "window": "day"}));
        let d = ask(&config, 75000, 100_000);
        assert!(d.admitted());
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        assert_eq!((c.cost, c.from_grant, c.usage.grant), (75001, 55001, 44999));
        // Without enough grant it can never fit.
        let d = ask(&config, 75000, 50_000);
        assert!(matches!(&d.outcome, Outcome::Charged(c) if c.too_large));
    }

    #[test]
    fn missing_identity_is_a_friendly_401() {
        let reply = refuse_identity(&demo_config(), &IdentityError::MissingUser, BodyFormat::OpenAi);
        assert_eq!(reply.status, 401);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "missing_identity");
    }

    #[test]
    fn unreadable_credentials_are_a_401_that_says_how_to_send_them() {
        let reply = refuse_identity(&demo_config(), &IdentityError::InvalidCredentials, BodyFormat::OpenAi);
        assert_eq!(reply.status, 401);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_credentials");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("exactly one `Authorization: Bearer <token>`"));
    }

    #[test]
    fn a_body_too_large_to_check_is_a_413_that_says_the_limit() {
        let config = demo_config();
        let reply = refuse_body(&config, &Unreadable::TooLarge, BodyFormat::OpenAi);
        assert_eq!(reply.status, 413);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "body_too_large");
        assert_eq!(body["error"]["quota"]["max_body_bytes"], 262_144);
        assert_eq!(
            body["error"]["message"],
            "This request's body is larger than the 256 KB the quota check reads. \
             Send a smaller request, or ask your administrator to raise max_body_bytes."
        );
        let problem = refuse_body(&config, &Unreadable::TooLarge, BodyFormat::Problem);
        let body: Value = serde_json::from_str(&problem.body).unwrap();
        assert_eq!((body["status"].as_u64(), body["code"].as_str()), (Some(413), Some("body_too_large")));
        assert_eq!(body["type"], "about:blank");
    }

    #[test]
    fn an_unreadable_body_is_a_400_that_says_why() {
        let config = demo_config();
        let why = Unreadable::NotJson("expected value at line 1 column 1".into());
        let reply = refuse_body(&config, &why, BodyFormat::OpenAi);
        assert_eq!(reply.status, 400);
        assert!(reply.headers.contains(&("content-type", "application/json".into())));
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "unreadable_body");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            body["error"]["message"],
            "We couldn't read this request's JSON body (it is not valid JSON: expected value at line 1 column 1). \
             Send valid JSON."
        );
        let page = refuse_body(&config, &Unreadable::TooDeep, BodyFormat::Html);
        assert_eq!(page.status, 400);
        assert!(page.body.contains("<h1>We couldn&#39;t read this request</h1>"), "{}", page.body);
        assert!(page.body.contains("more than 127 levels deep"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
    }

    /// A team pool of 6 drafts a day in which a member may use 4.
    fn stacked() -> Config {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
            "classes": [{"name": "drafts", "unit": "draft", "units": "drafts"}],
            "tiers": {"team": {"limits": {"drafts": [
                {"scope": "workspace", "hard": 6, "window": "day"},
                {"scope": "user", "hard": 4, "window": "day"}
            ]}}}
        }"#;
        crate::config::Config::from_json(doc.as_bytes()).unwrap()
    }

    fn refusals(config: &Config, d: &Decision) -> Vec<LocalReply> {
        [BodyFormat::OpenAi, BodyFormat::Problem, BodyFormat::Html]
            .into_iter()
            .map(|format| match respond(config, d, format) {
                Action::Reply(reply) => reply,
                Action::Continue(_) => panic!("expected a refusal: {d:?}"),
            })
            .collect()
    }

    #[test]
    fn a_stacked_refusal_names_the_limit_that_refused_in_every_format() {
        let config = stacked();
        let store = MemoryStore::new();
        let who = |user: &str| {
            identify(&config, &head(&[("x-user-id", user), ("x-workspace-id", "acme")]), &NoProperties).unwrap()
        };
        let (alice, bob) = (who("alice"), who("bob"));
        for _ in 0..4 {
            assert!(charge(&config, &alice, ClassId(0), 1, false, NOON_MS, &store).admitted());
        }
        // Alice's own cap refuses: 4 of the team's 6.
        let d = charge(&config, &alice, ClassId(0), 1, false, NOON_MS, &store);
        let member = "You've used your 4 drafts of your team's allowance for today. They reset in 12 h.";
        for reply in refusals(&config, &d) {
            assert_eq!(reply.status, 429);
            assert_eq!(header(&reply, "x-quota-scope"), Some("user"));
            assert_eq!(header(&reply, "x-quota-window"), Some("day"));
            assert_eq!(
                header(&reply, "ratelimit-policy"),
                Some("\"drafts.workspace.day\";q=6;w=86400, \"drafts.user.day\";q=4;w=86400")
            );
            assert_eq!(header(&reply, "ratelimit"), Some("\"drafts.user.day\";r=0;t=43200"));
            let html = member.replace('\'', "&#39;");
            assert!(reply.body.contains(member) || reply.body.contains(&html), "{}", reply.body);
        }
        let bodies = refusals(&config, &d);
        let openai: Value = serde_json::from_str(&bodies[0].body).unwrap();
        assert_eq!(openai["error"]["quota"]["policy"], "drafts.user.day");
        assert_eq!(
            openai["error"]["quota"]["limits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["policy"].clone(), l["used"].clone(), l["binding"].clone()))
                .collect::<Vec<_>>(),
            vec![
                (json!("drafts.workspace.day"), json!(4), json!(false)),
                (json!("drafts.user.day"), json!(4), json!(true))
            ]
        );
        let problem: Value = serde_json::from_str(&bodies[1].body).unwrap();
        assert_eq!(problem["violated-policies"], json!(["drafts.user.day"]));

        // Bob takes the team's last 2: then the pool refuses him.
        for _ in 0..2 {
            assert!(charge(&config, &bob, ClassId(0), 1, false, NOON_MS, &store).admitted());
        }
        let d = charge(&config, &bob, ClassId(0), 1, false, NOON_MS, &store);
        let team = "Your team has used its 6 drafts for today. They reset in 12 h.";
        for reply in refusals(&config, &d) {
            assert_eq!(header(&reply, "x-quota-scope"), Some("workspace"));
            assert_eq!(header(&reply, "ratelimit"), Some("\"drafts.workspace.day\";r=0;t=43200"));
            let html = team.replace('\'', "&#39;");
            assert!(reply.body.contains(team) || reply.body.contains(&html), "{}", reply.body);
        }
        let problem: Value = serde_json::from_str(&refusals(&config, &d)[1].body).unwrap();
        assert_eq!(problem["violated-policies"], json!(["drafts.workspace.day"]));
    }

    #[test]
    fn a_one_limit_cell_keeps_its_policy_name() {
        let reply = blocked_reply(BodyFormat::Problem);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["violated-policies"], json!(["drafts"]));
        assert_eq!(body["quota"]["limits"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_sdks_are_told_whether_a_retry_can_help() {
        // A wall hours away: no.
        let blocked = blocked_reply(BodyFormat::OpenAi);
        assert_eq!(header(&blocked, SHOULD_RETRY), Some("false"));
        // A class outside the plan: no.
        let config = demo_config();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let d = charge(&config, &alice, ClassId(0), 1, false, NOON_MS, &MemoryStore::new());
        let Action::Reply(not_included) = respond(&config, &d, BodyFormat::OpenAi) else { panic!("{d:?}") };
        assert_eq!((not_included.status, header(&not_included, SHOULD_RETRY)), (403, Some("false")));
        // The store gave up, failing closed: a blip, yes.
        let mut closed = demo_config();
        closed.counters.on_error = FailPolicy::Closed;
        let store = MemoryStore::new();
        *store.fail_next_sets.borrow_mut() = 1000;
        let d = charge(&closed, &alice, ClassId(2), 1, false, NOON_MS, &store);
        let Action::Reply(unavailable) = respond(&closed, &d, BodyFormat::OpenAi) else { panic!("{d:?}") };
        assert_eq!((unavailable.status, header(&unavailable, SHOULD_RETRY)), (503, Some("true")));
        // A wall that resets within the minute: the SDKs wait out Retry-After.
        let doc = r#"{"identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": [{"name": "calls"}], "tiers": {"free": {"limits": {"calls": {"hard": 1, "window": "minute"}}}}}"#;
        let minute = crate::config::Config::from_json(doc.as_bytes()).unwrap();
        let store = MemoryStore::new();
        let now = NOON_MS + 30_000;
        charge(&minute, &alice, ClassId(0), 1, false, now, &store);
        let d = charge(&minute, &alice, ClassId(0), 1, false, now, &store);
        let Action::Reply(soon) = respond(&minute, &d, BodyFormat::OpenAi) else { panic!("{d:?}") };
        assert_eq!((soon.status, header(&soon, SHOULD_RETRY)), (429, None));
    }

    fn anthropic(reply: &LocalReply) -> (u16, String, String, Value) {
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert!(reply.headers.contains(&("content-type", "application/json".into())));
        let error = body["error"].clone();
        (reply.status, error["type"].as_str().unwrap().into(), error["code"].as_str().unwrap().into(), error)
    }

    #[test]
    fn every_refusal_has_its_anthropic_type() {
        let config = demo_config();
        let store = MemoryStore::new();
        let who = |h: &[(&str, &str)]| identify(&config, &head(h), &NoProperties).unwrap();
        let alice = who(&[("x-user-id", "alice")]);
        let reply = |d: &Decision| match respond(&config, d, BodyFormat::Anthropic) {
            Action::Reply(r) => r,
            Action::Continue(_) => panic!("expected a refusal: {d:?}"),
        };
        // 429 at the wall, its message and numbers where the SDK reads them.
        for _ in 0..10 {
            charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
        }
        let blocked = reply(&charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store));
        let (status, kind, code, error) = anthropic(&blocked);
        assert_eq!((status, kind.as_str(), code.as_str()), (429, "rate_limit_error", "quota_exceeded"));
        assert!(error["message"].as_str().unwrap().starts_with("You've used your 10 drafts for today."));
        assert_eq!(error["quota"]["used"], 10);
        assert_eq!(header(&blocked, SHOULD_RETRY), Some("false"));
        // 403: a class outside the plan.
        let (status, kind, code, _) =
            anthropic(&reply(&charge(&config, &alice, ClassId(0), 1, false, NOON_MS, &store)));
        assert_eq!((status, kind.as_str(), code.as_str()), (403, "permission_error", "not_included_in_plan"));
        // 403: a pooled class without a workspace.
        let solo = who(&[("x-user-id", "solo"), ("x-plan", "team")]);
        let (status, kind, code, _) = anthropic(&reply(&charge(&config, &solo, ClassId(2), 1, false, NOON_MS, &store)));
        assert_eq!((status, kind.as_str(), code.as_str()), (403, "permission_error", "workspace_required"));
        // 428: a costly request to confirm.
        let mut doc: Value = serde_json::from_slice(include_bytes!("../../envoy/demo-config.json")).unwrap();
        doc["tiers"]["free"]["limits"]["drafts"]["confirm_above"] = json!(0.1);
        let confirming = crate::config::Config::from_json(doc.to_string().as_bytes()).unwrap();
        let d = charge(&confirming, &alice, ClassId(2), 5, false, NOON_MS, &MemoryStore::new());
        let Action::Reply(confirm) = respond(&confirming, &d, BodyFormat::Anthropic) else { panic!("{d:?}") };
        let (status, kind, code, _) = anthropic(&confirm);
        assert_eq!((status, kind.as_str(), code.as_str()), (428, "invalid_request_error", "confirmation_required"));
        // 413: more than the cell could ever admit.
        let tokens = tokens_config(json!({"hard": 20000, "window": "day"}));
        let d = ask(&tokens, 75000, 0);
        let (status, kind, code, _) = anthropic(&reply_to(&tokens, &d, BodyFormat::Anthropic));
        assert_eq!((status, kind.as_str(), code.as_str()), (413, "request_too_large", "request_too_large"));
        // 503: the store gave up, failing closed.
        let mut closed = demo_config();
        closed.counters.on_error = FailPolicy::Closed;
        let failing = MemoryStore::new();
        *failing.fail_next_sets.borrow_mut() = 1000;
        let d = charge(&closed, &alice, ClassId(2), 1, false, NOON_MS, &failing);
        let Action::Reply(unavailable) = respond(&closed, &d, BodyFormat::Anthropic) else { panic!("{d:?}") };
        let (status, kind, code, _) = anthropic(&unavailable);
        assert_eq!((status, kind.as_str(), code.as_str()), (503, "api_error", "quota_unavailable"));
        // 401 and 403 for identity, 413 and 400 for the body.
        for (err, expected) in [
            (IdentityError::MissingUser, (401, "authentication_error", "missing_identity")),
            (IdentityError::InvalidCredentials, (401, "authentication_error", "invalid_credentials")),
            (IdentityError::UnknownTier("gold".into()), (403, "permission_error", "unknown_tier")),
        ] {
            let (status, kind, code, _) = anthropic(&refuse_identity(&config, &err, BodyFormat::Anthropic));
            assert_eq!((status, kind.as_str(), code.as_str()), expected);
        }
        let (status, kind, code, error) =
            anthropic(&refuse_body(&config, &Unreadable::TooLarge, BodyFormat::Anthropic));
        assert_eq!((status, kind.as_str(), code.as_str()), (413, "request_too_large", "body_too_large"));
        assert_eq!(error["quota"]["max_body_bytes"], 262_144);
        let (status, kind, code, _) = anthropic(&refuse_body(&config, &Unreadable::TooDeep, BodyFormat::Anthropic));
        assert_eq!((status, kind.as_str(), code.as_str()), (400, "invalid_request_error", "unreadable_body"));
    }

    #[test]
    fn the_anthropic_envelope_reads_back_as_a_refusal() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        for _ in 0..10 {
            charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
        }
        let d = charge(&config, &alice, ClassId(2), 1, false, NOON_MS, &store);
        let Action::Reply(reply) = respond(&config, &d, BodyFormat::Anthropic) else { panic!("{d:?}") };
        let read = crate::wire::read_refusal(&reply.body).unwrap();
        assert_eq!(read.code.as_deref(), Some("quota_exceeded"));
        assert_eq!(read.quota.and_then(|q| q.used), Some(10));
    }

    #[test]
    fn anthropic_types_follow_the_status() {
        assert_eq!(anthropic_type(404, "x"), "not_found_error");
        assert_eq!(anthropic_type(500, "x"), "api_error");
        assert_eq!(anthropic_type(503, UPSTREAM_BUSY), "overloaded_error");
        assert_eq!(anthropic_type(529, UPSTREAM_BUSY), "overloaded_error");
        assert_eq!(anthropic_type(422, "x"), "invalid_request_error");
    }
}
