//! Who the caller is: the sources of the user, workspace and tier ids, and
//! what happens when one is missing or unknown.

use super::error::{join, ConfigError};
use super::fields::check_header_name;
use super::raw::{RawIdentity, RawSource};
use super::source::Source;
use super::tiers::TierId;

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user: Vec<Source>,
    pub workspace: Vec<Source>,
    pub organisation: Vec<Source>,
    pub tier: Vec<Source>,
    pub default_tier: TierId,
    pub unknown_tier: UnknownTier,
    pub anonymous: Option<Anonymous>,
    /// Longest accepted id, in bytes; longer ids count as absent.
    pub max_id_bytes: usize,
    pub missing_workspace: MissingWorkspace,
}

/// What a pooled (`Scope::Workspace`) cell does with a caller who names no
/// workspace. Without a rule, leaving the header out would be a way to get a
/// personal copy of the team's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingWorkspace {
    /// Refuse the request (403, `workspace_required`).
    Reject,
    /// Charge the caller's own counter, as if the cell were per user.
    User,
}

/// What to do when the tier source names a tier the matrix does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTier {
    UseDefault,
    Reject,
}

/// Callers without a user id are counted under another key in a fixed tier.
#[derive(Debug, Clone)]
pub struct Anonymous {
    pub tier: TierId,
    pub key: Vec<Source>,
}

pub const DEFAULT_MAX_ID_BYTES: usize = 256;

pub(super) fn check_identity(
    raw: &RawIdentity,
    tier_id: &dyn Fn(&str, &str) -> Result<TierId, ConfigError>,
) -> Result<IdentityConfig, ConfigError> {
    let user = check_sources("identity.user", &raw.user)?;
    if user.is_empty() {
        return Err(ConfigError::new(
            "identity.user",
            "must list at least one source, e.g. {\"header\": \"x-user-id\"}",
        ));
    }
    let unknown_tier = match raw.unknown_tier.as_deref() {
        None | Some("default") => UnknownTier::UseDefault,
        Some("reject") => UnknownTier::Reject,
        Some(other) => {
            return Err(ConfigError::new(
                "identity.unknown_tier",
                format!("must be \"default\" or \"reject\", got \"{other}\""),
            ))
        }
    };
    let anonymous = match &raw.anonymous {
        None => None,
        Some(a) => {
            let key = check_sources("identity.anonymous.key", &a.key)?;
            if key.is_empty() {
                return Err(ConfigError::new("identity.anonymous.key", "must list at least one source"));
            }
            Some(Anonymous { tier: tier_id("identity.anonymous.tier", &a.tier)?, key })
        }
    };
    let max_id_bytes = match raw.max_id_bytes {
        None => DEFAULT_MAX_ID_BYTES,
        Some(n @ 1..=4096) => n as usize,
        Some(n) => {
            return Err(ConfigError::new("identity.max_id_bytes", format!("must be between 1 and 4096, got {n}")))
        }
    };
    let missing_workspace = match raw.missing_workspace.as_deref() {
        None | Some("reject") => MissingWorkspace::Reject,
        Some("user") => MissingWorkspace::User,
        Some(other) => {
            return Err(ConfigError::new(
                "identity.missing_workspace",
                format!("must be \"reject\" or \"user\", got \"{other}\""),
            ))
        }
    };
    Ok(IdentityConfig {
        user,
        workspace: check_sources("identity.workspace", &raw.workspace)?,
        organisation: check_sources("identity.organisation", &raw.organisation)?,
        tier: check_sources("identity.tier", &raw.tier)?,
        default_tier: tier_id("identity.default_tier", &raw.default_tier)?,
        unknown_tier,
        anonymous,
        max_id_bytes,
        missing_workspace,
    })
}

pub(super) fn check_sources(path: &str, raw: &[RawSource]) -> Result<Vec<Source>, ConfigError> {
    raw.iter().enumerate().map(|(i, s)| check_source(&format!("{path}[{i}]"), s)).collect()
}

fn check_source(path: &str, raw: &RawSource) -> Result<Source, ConfigError> {
    match (&raw.header, &raw.jwt_claim, &raw.property) {
        (Some(h), None, None) => {
            if raw.jwt_header.is_some() {
                return Err(ConfigError::new(join(path, "jwt_header"), "only applies with \"jwt_claim\""));
            }
            Ok(Source::Header(check_header_name(&join(path, "header"), h)?))
        }
        (None, Some(claim), None) => {
            let claim_path: Vec<String> = claim.split('.').map(str::to_string).collect();
            if claim_path.iter().any(String::is_empty) {
                return Err(ConfigError::new(join(path, "jwt_claim"), format!("\"{claim}\" is not a claim name")));
            }
            let header = match &raw.jwt_header {
                Some(h) => check_header_name(&join(path, "jwt_header"), h)?,
                None => "authorization".to_string(),
            };
            Ok(Source::JwtClaim { header, claim: claim_path })
        }
        (None, None, Some(segments)) => {
            if segments.is_empty() || segments.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    join(path, "property"),
                    "must be a non-empty list of non-empty path segments",
                ));
            }
            Ok(Source::Property(segments.clone()))
        }
        _ => Err(ConfigError::new(path, "must set exactly one of \"header\", \"jwt_claim\" or \"property\"")),
    }
}
