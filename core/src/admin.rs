//! The grants endpoint: a trusted caller adds units to a user's or a
//! workspace's counter for a class (a prepaid pack, an admin's approval).
//! Grant units are spent after the plan's own and carry over between windows.

use crate::config::{ClassId, Config};
use crate::identity::ScopeKind;

/// The most units one grant call may add (more is a 400): a typo or a
/// script gone wrong cannot hand out an unbounded balance in one call, and
/// the balance itself saturates at [`crate::units::MAX_UNITS`].
pub const MAX_GRANT_UNITS: u64 = 1_000_000_000;

/// A validated grant request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub class: ClassId,
    pub scope: ScopeKind,
    pub id: String,
    pub units: u64,
    /// The counter key the grant lands on.
    pub key: String,
}

/// Whether `authorization` carries the admin secret (compared in constant
/// time, so response timing does not leak it).
pub fn authorized(config: &Config, authorization: Option<&[u8]>) -> bool {
    let (Some(admin), Some(header)) = (&config.admin, authorization) else { return false };
    let Some(token) = header.strip_prefix(b"Bearer ") else { return false };
    let secret = admin.secret.as_bytes();
    token.len() == secret.len() && token.iter().zip(secret).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// What the admin endpoint was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Grant(GrantRequest),
    MemberCap(CapRequest),
}

/// A validated member cap: set (`cap: Some`) or cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapRequest {
    pub class: ClassId,
    pub workspace: String,
    pub user: String,
    pub cap: Option<u64>,
    /// Where the cap is kept (see [`crate::member_cap::store_key`]).
    pub key: String,
}

/// Parses the admin endpoint's query: a grant (see [`parse_grant`]), or a
/// member cap, `POST <admin path>?class=drafts&workspace=acme&user=alice&cap=20`
/// (`cap=none` clears it). The cap must be 1 to the pool's hard limit, in a
/// class whose cells take member caps (`"admin_cap": true`).
pub fn parse_admin(config: &Config, query: &str) -> Result<AdminRequest, String> {
    let mut fields = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("\"{k}\" is not valid percent-encoded UTF-8"))?;
        fields.push((k, v));
    }
    if !fields.iter().any(|(k, _)| *k == "cap") {
        return parse_grant(config, query).map(AdminRequest::Grant);
    }
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    if let Some((other, _)) = fields.iter().find(|(k, _)| !["class", "workspace", "user", "cap"].contains(k)) {
        return Err(format!("unknown parameter \"{other}\" (a member cap takes class, workspace, user and cap)"));
    }
    let class_name = field("class").ok_or("\"class\" must name a class")?;
    let (class_id, class) = config
        .classes
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == class_name)
        .ok_or_else(|| format!("no class named \"{class_name}\""))?;
    let ceiling = config
        .tiers
        .iter()
        .filter_map(|t| t.cells.get(class_id))
        .filter_map(|c| crate::member_cap::ceiling(c.limits()))
        .max()
        .ok_or_else(|| format!("\"{class_name}\" takes no member caps: no cell of it has \"admin_cap\": true"))?;
    let (Some(workspace), Some(user)) = (field("workspace"), field("user")) else {
        return Err("a member cap names both \"workspace\" and \"user\"".into());
    };
    for id in [&workspace, &user] {
        if id.is_empty() || id.len() > config.identity.max_id_bytes || id.chars().any(char::is_control) {
            return Err("the id must be 1 to max_id_bytes characters without control characters".into());
        }
    }
    // In money, a cap is written in minor units (cents), as the limits are.
    let scale = config.scale_of(ClassId(class_id));
    let most = ceiling / scale;
    let cap = match field("cap").as_deref() {
        Some("none") => None,
        text => Some(
            text.and_then(|t| t.parse::<u64>().ok())
                .filter(|c| (1..=most).contains(c))
                .map(|c| c.saturating_mul(scale))
                .ok_or_else(|| format!("\"cap\" must be a whole number from 1 to {most} (the pool), or \"none\""))?,
        ),
    };
    let key = crate::member_cap::store_key(config, class, &workspace, &user);
    Ok(AdminRequest::MemberCap(CapRequest { class: ClassId(class_id), workspace, user, cap, key }))
}

/// Parses the query of `POST <admin path>?class=drafts&user=alice&units=50`
/// (or `workspace=acme`). The grant travels in the query, not a body, so the
/// endpoint never has to hold a request open for its body.
pub fn parse_grant(config: &Config, query: &str) -> Result<GrantRequest, String> {
    let mut class_name = None;
    let mut user = None;
    let mut workspace = None;
    let mut units = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("\"{k}\" is not valid percent-encoded UTF-8"))?;
        match k {
            "class" => class_name = Some(v),
            "user" => user = Some(v),
            "workspace" => workspace = Some(v),
            "units" => units = Some(v),
            other => return Err(format!("unknown parameter \"{other}\" (use class, user or workspace, units)")),
        }
    }
    let class_name = class_name.ok_or("\"class\" must name a class")?;
    let class_id = config
        .classes
        .iter()
        .position(|c| c.name == class_name)
        .map(ClassId)
        .ok_or_else(|| format!("no class named \"{class_name}\""))?;
    let (scope, id) = match (user, workspace) {
        (Some(u), None) => (ScopeKind::User, u),
        (None, Some(w)) => (ScopeKind::Workspace, w),
        _ => return Err("set exactly one of \"user\" or \"workspace\"".into()),
    };
    if id.is_empty() || id.len() > config.identity.max_id_bytes || id.chars().any(char::is_control) {
        return Err("the id must be 1 to max_id_bytes characters without control characters".into());
    }
    // In money, grants are written in minor units (cents), as the limits are.
    let units = units
        .and_then(|u| u.parse::<u64>().ok())
        .filter(|u| (1..=MAX_GRANT_UNITS).contains(u))
        .map(|u| crate::units::bounded(u.saturating_mul(config.scale_of(class_id))))
        .ok_or_else(|| format!("\"units\" must be a whole number from 1 to {MAX_GRANT_UNITS}"))?;
    let class = config.class(class_id).ok_or("no such class")?;
    // A stack has several counters of each scope (one per window): which
    // one a grant should fund is not settled, so a grant funds the class's
    // one-limit cells only, and a class no tier limits with one cell
    // cannot take one.
    let cells = config.tiers.iter().filter_map(|t| t.cells.get(class_id.0)).filter(|c| !c.limits().is_empty());
    if cells.clone().count() > 0 && cells.clone().all(|c| c.limits().len() > 1) {
        return Err(format!(
            "grants do not apply to \"{}\": every plan that includes it stacks its limits (an admin can raise a member's cap instead)",
            class.name
        ));
    }
    let key = crate::engine::store_key(config, class, scope, &id);
    Ok(GrantRequest { class: class_id, scope, id, units, key })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::demo_config;

    fn with_admin() -> Config {
        let mut config = demo_config();
        config.admin = Some(crate::config::Admin {
            path: "/quota/admin/grants".into(),
            secret: "s3cret-s3cret-s3cret-s3cret".into(),
        });
        config
    }

    #[test]
    fn only_the_secret_opens_the_endpoint() {
        let config = with_admin();
        assert!(authorized(&config, Some(b"Bearer s3cret-s3cret-s3cret-s3cret")));
        assert!(!authorized(&config, Some(b"Bearer s3cret-s3cret-s3cret-s3creT")));
        assert!(!authorized(&config, Some(b"Bearer s3cret")));
        assert!(!authorized(&config, Some(b"s3cret-s3cret-s3cret-s3cret")));
        assert!(!authorized(&config, None));
        assert!(!authorized(&demo_config(), Some(b"Bearer s3cret-s3cret-s3cret-s3cret")));
    }

    #[test]
    fn grant_requests_are_checked() {
        let config = with_admin();
        let ok = parse_grant(&config, "class=drafts&workspace=acme%20corp&units=50").unwrap();
        assert_eq!((ok.scope, ok.units, ok.key.as_str()), (ScopeKind::Workspace, 50, "drafts:w:acme corp"));
        for bad in [
            "class=drafts&user=a&workspace=b&units=1",
            "class=nope&user=a&units=1",
            "class=drafts&user=a&units=0",
            "class=drafts&user=a&units=-3",
            "class=drafts&user=a&units=1000000001",
            "class=drafts&user=a&units=18446744073709551616",
            "class=drafts&user=&units=3",
            "class=drafts&user=a%ZZ&units=3",
            "class=drafts&user=a&units=3&extra=1",
            "",
        ] {
            assert!(parse_grant(&config, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_and_caps_of_a_class_in_money_are_written_in_cents() {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
            "admin": {"path": "/quota/admin", "secret": "s3cret-s3cret-s3cret-s3cret"},
            "prices": {"currency": "USD", "default": {"input": "1", "output": "1"}},
            "classes": [{"name": "spend", "cost": {"fixed": 1, "unit_price": "0.01"}},
                        {"name": "pooled", "cost": {"fixed": 1, "unit_price": "0.01"}}],
            "tiers": {"team": {"limits": {"spend": {"hard": 500, "window": "month"},
                "pooled": [{"scope": "workspace", "hard": 1000, "window": "day"},
                           {"hard": 300, "window": "day", "admin_cap": true}]}}}
        }"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        // $0.50 of grant: 500,000 micro-dollars.
        assert_eq!(parse_grant(&config, "class=spend&user=a&units=50").unwrap().units, 500_000);
        let Ok(AdminRequest::MemberCap(cap)) = parse_admin(&config, "class=pooled&workspace=w&user=a&cap=250") else {
            panic!()
        };
        assert_eq!(cap.cap, Some(2_500_000));
        // The pool ($10.00) bounds the cap, in cents.
        let error = parse_admin(&config, "class=pooled&workspace=w&user=a&cap=1001").unwrap_err();
        assert!(error.contains("from 1 to 1000"), "{error}");
    }
}
