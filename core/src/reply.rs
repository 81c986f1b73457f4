//! What the filter answers itself: refusals (429, 428, 413, 403, 401, 400, 503) in the
//! format the client asked for: an OpenAI-compatible error envelope by
//! default (SDKs show `error.message`, the human copy), RFC 9457 problem
//! details, or a small HTML page.

use crate::body::Unreadable;
use crate::calendar::rfc3339;
use crate::config::{Config, FailPolicy, Message};
use crate::copy::{self, Facts, CONFIRM_HEADER};
use crate::decide::Charge;
use crate::engine::{Decision, Outcome};
use crate::headers::{response_headers, Headers, RETRY_AFTER, STATE_NOT_INCLUDED, STATE_UNAVAILABLE};
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
    /// The class whose policy was violated (429 only).
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
    let Some(mut facts) = Facts::new(config, d.tier, d.class) else {
        return Action::Continue(headers);
    };
    let upgrade_json = facts.hint.as_ref().map(|h| {
        json!({ "tier": config.tier(h.tier).map(|t| t.name.clone()), "label": h.tier_label, "limit": h.limit, "url": h.url })
    });
    let upgrade_link = facts.hint.as_ref().and_then(|h| h.url.clone().map(|u| (h.tier_label.clone(), u)));
    let (class, tier) = (facts.class, facts.tier);
    let refusal = match &d.outcome {
        Outcome::Charged(c) if c.admitted => return Action::Continue(headers),
        Outcome::Unavailable { policy: FailPolicy::Open, .. } => return Action::Continue(headers),
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
            } else {
                headers.push((RETRY_AFTER, reset_after.max(1).to_string()));
                Refusal {
                    status: 429,
                    kind: "quota_exceeded",
                    code: "quota_exceeded",
                    title: format!("You've reached your limit for {}", class.label.to_lowercase()),
                    message: copy::message(config, Message::Blocked, &facts),
                    quota: Some(quota),
                    violated: Some(class.name.clone()),
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
        BodyFormat::Html => html_page(&r),
    };
    headers.push(("content-type", format.content_type().into()));
    headers.push(("cache-control", "no-store".into()));
    LocalReply { status: r.status, headers, body }
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

    #[test]
    fn missing_identity_is_a_friendly_401() {
        let reply = refuse_identity(&demo_config(), &IdentityError::MissingUser, BodyFormat::OpenAi);
        assert_eq!(reply.status, 401);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "missing_identity");
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
}
