//! What the filter answers itself: refusals (429, 403, 401, 503) with an
//! OpenAI-compatible error envelope whose `error.message` is the human copy,
//! plus a machine-readable `quota` object.

use crate::calendar::rfc3339;
use crate::config::{Cell, Config, FailPolicy};
use crate::copy;
use crate::engine::{Decision, Outcome};
use crate::headers::{response_headers, Headers};
use crate::identity::IdentityError;
use serde_json::{json, Value};

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

/// Turns a decision into the filter's action.
pub fn respond(config: &Config, d: &Decision) -> Action {
    let headers = response_headers(config, d);
    let (Some(class), Some(tier)) = (config.class(d.class), config.tier(d.tier)) else {
        return Action::Continue(headers);
    };
    let hint = copy::upgrade_hint(config, d.tier, d.class);
    let upgrade = hint.as_ref().map(|h| {
        json!({ "tier": config.tier(h.tier).map(|t| t.name.clone()), "limit": h.limit, "url": h.url })
    });
    match &d.outcome {
        Outcome::Charged(c) if c.admitted => Action::Continue(headers),
        Outcome::Unavailable {
            policy: FailPolicy::Open,
            ..
        } => Action::Continue(headers),
        Outcome::Charged(c) => {
            let Some(Cell::Limited(limits)) = config.cell(d.tier, d.class) else {
                return Action::Continue(headers);
            };
            let reset_after = d.reset_after().unwrap_or(0);
            let message = copy::blocked(
                class,
                &limits.window,
                &c.usage,
                c.requested,
                reset_after,
                hint.as_ref(),
            );
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
                "window": limits.window_name,
                "reset": rfc3339(c.usage.window.end),
                "reset_after": reset_after,
                "upgrade": upgrade,
            });
            let mut headers = headers;
            headers.push(("retry-after", reset_after.max(1).to_string()));
            Action::Reply(error_reply(
                429,
                headers,
                &message,
                "quota_exceeded",
                "quota_exceeded",
                Some(quota),
            ))
        }
        Outcome::NotIncluded => {
            let message = copy::not_included(class, &tier.label, hint.as_ref());
            let quota = json!({
                "class": class.name,
                "label": class.label,
                "tier": tier.name,
                "state": crate::headers::STATE_NOT_INCLUDED,
                "upgrade": upgrade,
            });
            Action::Reply(error_reply(
                403,
                headers,
                &message,
                "quota_exceeded",
                "not_included_in_plan",
                Some(quota),
            ))
        }
        Outcome::Unavailable {
            policy: FailPolicy::Closed,
            ..
        } => {
            let mut headers = headers;
            headers.push(("retry-after", "1".into()));
            let quota = json!({ "class": class.name, "tier": tier.name, "state": crate::headers::STATE_UNAVAILABLE });
            Action::Reply(error_reply(
                503,
                headers,
                &copy::unavailable(class),
                "server_error",
                "quota_unavailable",
                Some(quota),
            ))
        }
    }
}

/// The answer to a request whose caller could not be identified.
pub fn refuse_identity(err: &IdentityError) -> LocalReply {
    match err {
        IdentityError::MissingUser => error_reply(
            401,
            Headers::new(),
            &copy::missing_identity(),
            "authentication_error",
            "missing_identity",
            None,
        ),
        IdentityError::UnknownTier(_) => error_reply(
            403,
            Headers::new(),
            &copy::unknown_tier(),
            "permission_error",
            "unknown_tier",
            None,
        ),
    }
}

/// An OpenAI-style error envelope: SDKs surface `error.message` as the
/// exception text, so the human copy is what users see.
fn error_reply(
    status: u16,
    mut headers: Headers,
    message: &str,
    kind: &str,
    code: &str,
    quota: Option<Value>,
) -> LocalReply {
    let mut error = json!({ "message": message, "type": kind, "param": null, "code": code });
    if let (Some(q), Some(obj)) = (quota, error.as_object_mut()) {
        obj.insert("quota".into(), q);
    }
    headers.push(("content-type", "application/json".into()));
    headers.push(("cache-control", "no-store".into()));
    LocalReply {
        status,
        headers,
        body: json!({ "error": error }).to_string(),
    }
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

    #[test]
    fn blocked_requests_get_a_friendly_429() {
        let config = demo_config();
        let store = MemoryStore::new();
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        for _ in 0..10 {
            assert!(matches!(
                respond(
                    &config,
                    &charge(&config, &alice, ClassId(2), 1, NOON_MS, &store)
                ),
                Action::Continue(_)
            ));
        }
        let Action::Reply(reply) = respond(
            &config,
            &charge(&config, &alice, ClassId(2), 1, NOON_MS, &store),
        ) else {
            panic!("expected a reply")
        };
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
    fn missing_identity_is_a_friendly_401() {
        let reply = refuse_identity(&IdentityError::MissingUser);
        assert_eq!(reply.status, 401);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "missing_identity");
    }
}
