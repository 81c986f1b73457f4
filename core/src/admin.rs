//! The grants endpoint: a trusted caller adds units to a user's or a
//! workspace's counter for a class (a prepaid pack, an admin's approval).
//! Grant units are spent after the plan's own and carry over between windows.

use crate::config::{ClassId, Config};
use crate::identity::{scope_key, ScopeKind};
use serde_json::Value;

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

/// Parses `{"class": "drafts", "user": "alice" | "workspace": "acme", "units": 50}`.
pub fn parse_grant(config: &Config, body: &[u8]) -> Result<GrantRequest, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("the body must be JSON: {e}"))?;
    let class_name = doc.get("class").and_then(Value::as_str).ok_or("\"class\" must name a class")?;
    let class_id = config
        .classes
        .iter()
        .position(|c| c.name == class_name)
        .map(ClassId)
        .ok_or_else(|| format!("no class named \"{class_name}\""))?;
    let (scope, id) = match (doc.get("user").and_then(Value::as_str), doc.get("workspace").and_then(Value::as_str)) {
        (Some(u), None) => (ScopeKind::User, u),
        (None, Some(w)) => (ScopeKind::Workspace, w),
        _ => return Err("set exactly one of \"user\" or \"workspace\"".into()),
    };
    if id.is_empty() || id.len() > config.identity.max_id_bytes || id.chars().any(char::is_control) {
        return Err("the id must be 1 to max_id_bytes characters without control characters".into());
    }
    let units = doc
        .get("units")
        .and_then(Value::as_u64)
        .filter(|u| (1..=1_000_000_000).contains(u))
        .ok_or("\"units\" must be a whole number from 1 to 1000000000")?;
    let class = config.class(class_id).ok_or("no such class")?;
    Ok(GrantRequest { class: class_id, scope, id: id.to_string(), units, key: scope_key(class, scope, id) })
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
        let ok = parse_grant(&config, br#"{"class": "drafts", "workspace": "acme", "units": 50}"#).unwrap();
        assert_eq!((ok.scope, ok.units, ok.key.as_str()), (ScopeKind::Workspace, 50, "q1:drafts:w:acme"));
        for bad in [
            &br#"{"class": "drafts", "user": "a", "workspace": "b", "units": 1}"#[..],
            br#"{"class": "nope", "user": "a", "units": 1}"#,
            br#"{"class": "drafts", "user": "a", "units": 0}"#,
            br#"{"class": "drafts", "user": "a", "units": -3}"#,
            br#"{"class": "drafts", "user": "", "units": 3}"#,
            b"not json",
        ] {
            assert!(parse_grant(&config, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
