//! Who is calling: user, workspace, plan tier and local calendar, read from
//! trusted sources only.

use crate::config::{parse_utc_offset, Class, Config, MissingWorkspace, Scope, Source, TierId, UnknownTier};
use crate::jwt;
use crate::request::{Properties, RequestHead};
use crate::window::Alignment;
use std::borrow::Cow;

/// The caller a request is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id, or the anonymous key for anonymous callers.
    pub id: String,
    pub anonymous: bool,
    pub workspace: Option<String>,
    pub organisation: Option<String>,
    pub tier: TierId,
    /// The caller's calendar: the configured one, or their own UTC offset.
    pub alignment: Alignment,
}

/// Why a caller could not be identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// No usable user id, and no anonymous tier configured.
    MissingUser,
    /// The tier source named a tier the matrix does not have, and the
    /// config says to refuse such callers.
    UnknownTier(String),
    /// A `jwt_claim` source's header was sent, but not as exactly one
    /// `Bearer <token>` value: the token read might not be the one Envoy's
    /// `jwt_authn` verified.
    InvalidCredentials,
}

/// Whose counter a charge lands on, as reported in headers and the usage endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    User,
    Workspace,
    Organisation,
    Anonymous,
}

impl ScopeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ScopeKind::User => "user",
            ScopeKind::Workspace => "workspace",
            ScopeKind::Organisation => "organisation",
            ScopeKind::Anonymous => "anonymous",
        }
    }

    /// The letter a counter key names the scope by.
    pub fn letter(&self) -> char {
        match self {
            ScopeKind::User => 'u',
            ScopeKind::Workspace => 'w',
            ScopeKind::Organisation => 'o',
            ScopeKind::Anonymous => 'a',
        }
    }
}

impl Caller {
    /// The caller's own scope: their user id, or their anonymous key.
    pub fn own_scope(&self) -> ScopeKind {
        if self.anonymous {
            ScopeKind::Anonymous
        } else {
            ScopeKind::User
        }
    }

    /// The scope a limit charges for this caller. A pooled limit charges the
    /// caller's workspace (or organisation); a caller who names none
    /// (anonymous or not) is refused (`None`) or charged alone, as `missing`
    /// says.
    pub fn scope(&self, scope: Scope, missing: MissingWorkspace) -> Option<ScopeKind> {
        self.scope_id(scope, missing).map(|(kind, _)| kind)
    }

    /// The scope a limit charges and the id counted under it (see [`Caller::scope`]).
    pub fn scope_id(&self, scope: Scope, missing: MissingWorkspace) -> Option<(ScopeKind, &str)> {
        let pool = match scope {
            Scope::User => None,
            Scope::Workspace => Some((ScopeKind::Workspace, &self.workspace)),
            Scope::Organisation => Some((ScopeKind::Organisation, &self.organisation)),
        };
        match (pool, missing) {
            (Some((kind, Some(id))), _) => Some((kind, id)),
            (Some((_, None)), MissingWorkspace::Reject) => None,
            _ => Some((self.own_scope(), &self.id)),
        }
    }
}

/// The shared-data key of the counter of (`kind`, `id`) for `class`.
pub fn scope_key(class: &Class, kind: ScopeKind, id: &str) -> String {
    let mut letter = [0u8; 4];
    let kind: &str = kind.letter().encode_utf8(&mut letter);
    // Class names have no ':' and the id comes last, so no two counters
    // share a key. No prefix: the key is stored in full beside its record in
    // a bucket of the counter table (`table.rs`), and only counters live
    // in the filter's shared data.
    let mut key = String::with_capacity(class.name.len() + kind.len() + id.len() + 2);
    for part in [class.name.as_str(), ":", kind, ":", id] {
        key.push_str(part);
    }
    key
}

/// Identifies the caller of a request.
pub fn identify(config: &Config, req: &RequestHead, props: &dyn Properties) -> Result<Caller, IdentityError> {
    let id = &config.identity;
    let max = id.max_id_bytes;
    let (caller_id, anonymous, anonymous_tier) = match first_value(&id.user, req, props, max)? {
        Some(user) => (user, false, None),
        None => match &id.anonymous {
            Some(anon) => match first_value(&anon.key, req, props, max)? {
                Some(key) => (key, true, Some(anon.tier)),
                None => return Err(IdentityError::MissingUser),
            },
            None => return Err(IdentityError::MissingUser),
        },
    };
    let tier = match anonymous_tier {
        Some(t) => t,
        None => match first_value(&id.tier, req, props, max)? {
            None => id.default_tier,
            Some(name) => match config.tier_by_name(&name.to_ascii_lowercase()) {
                Some(t) => t,
                None if id.unknown_tier == UnknownTier::UseDefault => id.default_tier,
                None => return Err(IdentityError::UnknownTier(name)),
            },
        },
    };
    let workspace = first_value(&id.workspace, req, props, max)?;
    let organisation = first_value(&id.organisation, req, props, max)?;
    let mut alignment = config.calendar.alignment;
    if let Some(offset) =
        first_value(&config.calendar.user_utc_offset, req, props, 16)?.and_then(|v| parse_utc_offset(&v))
    {
        alignment.utc_offset_minutes = offset;
    }
    Ok(Caller { id: caller_id, anonymous, workspace, organisation, tier, alignment })
}

/// The first source that yields a usable value; a source that finds
/// credentials it must not read stops the search.
fn first_value(
    sources: &[Source],
    req: &RequestHead,
    props: &dyn Properties,
    max_bytes: usize,
) -> Result<Option<String>, IdentityError> {
    for source in sources {
        if let Some(value) = read(source, req, props)?.and_then(|v| usable(&v, max_bytes)) {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// A source's value; headers are borrowed, not copied.
fn read<'a>(
    source: &Source,
    req: &'a RequestHead,
    props: &dyn Properties,
) -> Result<Option<Cow<'a, [u8]>>, IdentityError> {
    Ok(match source {
        Source::Header(name) => req.header(name).map(Cow::Borrowed),
        Source::JwtClaim { header, claim } => {
            jwt_token(req, header)?.and_then(|t| jwt::claim(t.as_bytes(), claim)).map(|c| Cow::Owned(c.into_bytes()))
        }
        Source::Property(path) => props.property(path).map(Cow::Owned),
    })
}

/// The token in `header`, or `None` when the header is absent. Every value
/// is checked, not the first: Envoy's `jwt_authn` may have verified another.
fn jwt_token<'a>(req: &'a RequestHead, header: &str) -> Result<Option<&'a str>, IdentityError> {
    let mut values = req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(header)).map(|(_, v)| v);
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(IdentityError::InvalidCredentials);
    }
    // A custom header may carry the bare token; `authorization` has a scheme.
    let bare = !header.eq_ignore_ascii_case("authorization");
    jwt::bearer_token(value, bare).map(Some).ok_or(IdentityError::InvalidCredentials)
}

/// Ids become counter keys and header values: they must be UTF-8, non-empty,
/// bounded, and free of control characters. Anything else counts as absent.
fn usable(value: &[u8], max_bytes: usize) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let ok = !text.is_empty() && text.len() <= max_bytes && !text.chars().any(char::is_control);
    ok.then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{demo_config, head};

    /// The key the engine charges for `caller`'s cell of `class`, as the
    /// filter computes it ([`Caller::scope_id`], then [`crate::engine::store_key`]).
    fn counter_key(
        config: &Config,
        caller: &Caller,
        class: &Class,
        scope: Scope,
        missing: MissingWorkspace,
    ) -> Option<String> {
        let (kind, id) = caller.scope_id(scope, missing)?;
        Some(crate::engine::store_key(config, class, kind, id))
    }

    #[test]
    fn reads_user_workspace_and_tier_from_headers() {
        let config = demo_config();
        let req = head(&[("x-user-id", "alice"), ("x-workspace-id", "acme"), ("x-plan", "Pro")]);
        let caller = identify(&config, &req, &crate::request::NoProperties).unwrap();
        assert_eq!(caller.id, "alice");
        assert_eq!(caller.workspace.as_deref(), Some("acme"));
        assert_eq!(config.tiers[caller.tier.0].name, "pro");
        assert!(!caller.anonymous);
    }

    #[test]
    fn unknown_tier_falls_back_to_the_default() {
        let config = demo_config();
        let req = head(&[("x-user-id", "alice"), ("x-plan", "platinum")]);
        let caller = identify(&config, &req, &crate::request::NoProperties).unwrap();
        assert_eq!(caller.tier, config.identity.default_tier);
    }

    #[test]
    fn unknown_tier_can_be_refused() {
        let mut config = demo_config();
        config.identity.unknown_tier = UnknownTier::Reject;
        let req = head(&[("x-user-id", "alice"), ("x-plan", "platinum")]);
        assert_eq!(
            identify(&config, &req, &crate::request::NoProperties),
            Err(IdentityError::UnknownTier("platinum".into()))
        );
    }

    #[test]
    fn callers_without_a_user_id_can_be_anonymous() {
        let mut config = demo_config();
        let free = config.tier_by_name("free").unwrap();
        config.identity.anonymous =
            Some(crate::config::Anonymous { tier: free, key: vec![Source::Header("x-client-ip".into())] });
        let req = head(&[("x-client-ip", "203.0.113.9"), ("x-plan", "enterprise")]);
        let caller = identify(&config, &req, &crate::request::NoProperties).unwrap();
        assert!(caller.anonymous);
        assert_eq!((caller.id.as_str(), caller.tier), ("203.0.113.9", free));
        assert_eq!(
            counter_key(&config, &caller, &config.classes[2], Scope::User, MissingWorkspace::Reject).as_deref(),
            Some("drafts:a:203.0.113.9")
        );
        assert_eq!(identify(&config, &head(&[]), &crate::request::NoProperties), Err(IdentityError::MissingUser));
    }

    #[test]
    fn identity_can_come_from_properties() {
        struct Metadata;
        impl Properties for Metadata {
            fn property(&self, path: &[String]) -> Option<Vec<u8>> {
                (path == ["metadata", "sub"]).then(|| b"from-metadata".to_vec())
            }
        }
        let mut config = demo_config();
        config.identity.user = vec![Source::Property(vec!["metadata".into(), "sub".into()])];
        let caller = identify(&config, &head(&[]), &Metadata).unwrap();
        assert_eq!(caller.id, "from-metadata");
    }

    #[test]
    fn unusable_ids_count_as_missing() {
        let config = demo_config();
        let long = "x".repeat(300);
        for bad in ["", "   ", "a\u{0}b", "a\rb", long.as_str()] {
            let req = head(&[("x-user-id", bad)]);
            assert_eq!(
                identify(&config, &req, &crate::request::NoProperties),
                Err(IdentityError::MissingUser),
                "{bad:?}"
            );
        }
        let mut req = head(&[]);
        req.headers.push(("x-user-id".into(), vec![0xff, 0xfe]));
        assert_eq!(identify(&config, &req, &crate::request::NoProperties), Err(IdentityError::MissingUser));
    }

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    /// An unsigned token with these claims; the filter never checks signatures.
    fn token(claims: serde_json::Value) -> String {
        format!("{}.{}.c2ln", base64url(br#"{"alg":"RS256"}"#), base64url(claims.to_string().as_bytes()))
    }

    fn jwt_config() -> Config {
        let mut config = demo_config();
        config.identity.user = vec![Source::JwtClaim { header: "authorization".into(), claim: vec!["sub".into()] }];
        config.identity.tier = vec![Source::JwtClaim { header: "authorization".into(), claim: vec!["plan".into()] }];
        config
    }

    fn identify_with(config: &Config, headers: &[(&str, &str)]) -> Result<Caller, IdentityError> {
        identify(config, &head(headers), &crate::request::NoProperties)
    }

    #[test]
    fn reads_the_caller_from_one_bearer_token() {
        let config = jwt_config();
        let attacker = token(serde_json::json!({"sub": "attacker", "plan": "free"}));
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let value = format!("{scheme} {attacker}");
            let caller = identify_with(&config, &[("Authorization", &value)]).unwrap();
            assert_eq!(caller.id, "attacker");
            assert_eq!(config.tiers[caller.tier.0].name, "free");
        }
    }

    #[test]
    fn a_second_token_beside_the_verified_one_is_refused() {
        let config = jwt_config();
        let victim = token(serde_json::json!({"sub": "victim", "plan": "enterprise"}));
        let attacker = token(serde_json::json!({"sub": "attacker", "plan": "free"}));
        let shapes: Vec<Vec<(&str, String)>> = vec![
            // jwt_authn finds the `Bearer ` inside the value and verifies the attacker's token.
            vec![("authorization", format!("{victim} Bearer {attacker}"))],
            vec![("authorization", format!("Bearer {victim} Bearer {attacker}"))],
            vec![("authorization", format!("Bearer {attacker}, Bearer {victim}"))],
            vec![("authorization", format!("Bearer {victim},Bearer {attacker}"))],
            vec![("authorization", format!("Bearer {attacker} {victim}"))],
            vec![("authorization", format!("x Bearer {attacker}"))],
            vec![("authorization", format!("Bearer {attacker} x"))],
            vec![("authorization", format!("Bearer  {attacker}"))],
            vec![("authorization", victim.clone())],
            vec![("authorization", victim.clone()), ("authorization", format!("Bearer {attacker}"))],
            vec![("Authorization", format!("Bearer {victim}")), ("authorization", format!("Bearer {attacker}"))],
            vec![("authorization", format!("Bearer {attacker}")), ("AUTHORIZATION", format!("Bearer {attacker}"))],
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
            vec![("authorization", "".into())],
        ];
        for shape in shapes {
            let headers: Vec<(&str, &str)> = shape.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(identify_with(&config, &headers), Err(IdentityError::InvalidCredentials), "{headers:?}");
        }
    }

    #[test]
    fn a_malformed_token_is_refused_wherever_its_claim_is_read() {
        // The user comes from a trusted header; the tier from the token.
        let mut config = demo_config();
        config.identity.tier = vec![Source::JwtClaim { header: "authorization".into(), claim: vec!["plan".into()] }];
        let victim = token(serde_json::json!({"plan": "enterprise"}));
        let attacker = token(serde_json::json!({"plan": "free"}));
        let value = format!("{victim} Bearer {attacker}");
        let headers = [("x-user-id", "alice"), ("authorization", value.as_str())];
        assert_eq!(identify_with(&config, &headers), Err(IdentityError::InvalidCredentials));
    }

    #[test]
    fn an_absent_credential_header_falls_through_to_the_next_source() {
        let mut config = jwt_config();
        config.identity.user.push(Source::Header("x-user-id".into()));
        let caller = identify_with(&config, &[("x-user-id", "alice")]).unwrap();
        assert_eq!(caller.id, "alice");
        assert_eq!(caller.tier, config.identity.default_tier);
        assert_eq!(identify_with(&jwt_config(), &[]), Err(IdentityError::MissingUser));
    }

    #[test]
    fn a_well_formed_token_without_the_claim_yields_nothing() {
        let mut config = jwt_config();
        config.identity.user.push(Source::Header("x-user-id".into()));
        let anonymous = format!("Bearer {}", token(serde_json::json!({"iss": "x"})));
        let caller = identify_with(&config, &[("authorization", &anonymous), ("x-user-id", "alice")]).unwrap();
        assert_eq!(caller.id, "alice");
        let undecodable = "Bearer e30.bm90IGpzb24.";
        assert_eq!(identify_with(&jwt_config(), &[("authorization", undecodable)]), Err(IdentityError::MissingUser));
    }

    #[test]
    fn a_custom_jwt_header_may_carry_the_bare_token() {
        let mut config = demo_config();
        config.identity.user = vec![Source::JwtClaim { header: "x-jwt-assertion".into(), claim: vec!["sub".into()] }];
        let alice = token(serde_json::json!({"sub": "alice"}));
        for value in [alice.clone(), format!("Bearer {alice}")] {
            assert_eq!(identify_with(&config, &[("x-jwt-assertion", &value)]).unwrap().id, "alice");
        }
        let two = format!("{alice},{alice}");
        assert_eq!(identify_with(&config, &[("x-jwt-assertion", &two)]), Err(IdentityError::InvalidCredentials));
        // The authorization header is not read by this source.
        let caller = identify_with(&config, &[("x-jwt-assertion", &alice), ("authorization", "garbage")]).unwrap();
        assert_eq!(caller.id, "alice");
    }

    #[test]
    fn user_utc_offset_moves_the_calendar() {
        let config = demo_config();
        let req = head(&[("x-user-id", "alice"), ("x-user-utc-offset", "-05:00")]);
        let caller = identify(&config, &req, &crate::request::NoProperties).unwrap();
        assert_eq!(caller.alignment.utc_offset_minutes, -300);
        let req = head(&[("x-user-id", "alice"), ("x-user-utc-offset", "banana")]);
        let caller = identify(&config, &req, &crate::request::NoProperties).unwrap();
        assert_eq!(caller.alignment.utc_offset_minutes, 0);
    }

    #[test]
    fn workspace_scope_pools_and_falls_back_to_the_user() {
        let config = demo_config();
        let class = &config.classes[0];
        let with = identify(
            &config,
            &head(&[("x-user-id", "a:b"), ("x-workspace-id", "acme")]),
            &crate::request::NoProperties,
        )
        .unwrap();
        let fallback = MissingWorkspace::User;
        assert_eq!(
            counter_key(&config, &with, class, Scope::Workspace, fallback),
            Some(format!("{}:w:acme", class.name))
        );
        assert_eq!(counter_key(&config, &with, class, Scope::User, fallback), Some(format!("{}:u:a:b", class.name)));
        let without = identify(&config, &head(&[("x-user-id", "bob")]), &crate::request::NoProperties).unwrap();
        assert_eq!(without.scope(Scope::Workspace, fallback), Some(ScopeKind::User));
    }

    #[test]
    fn workspace_scope_without_a_workspace_charges_no_counter_by_default() {
        let mut config = demo_config();
        let class = &config.classes[0];
        let reject = MissingWorkspace::Reject;
        let bob = identify(&config, &head(&[("x-user-id", "bob")]), &crate::request::NoProperties).unwrap();
        assert_eq!(bob.scope(Scope::Workspace, reject), None);
        assert_eq!(bob.scope_id(Scope::Workspace, reject), None);
        assert_eq!(counter_key(&config, &bob, class, Scope::Workspace, reject), None);
        // Per-user cells are unaffected.
        assert_eq!(bob.scope(Scope::User, reject), Some(ScopeKind::User));
        // Anonymous callers follow the same rule.
        let free = config.tier_by_name("free").unwrap();
        config.identity.anonymous =
            Some(crate::config::Anonymous { tier: free, key: vec![Source::Header("x-client-ip".into())] });
        let anon = identify(&config, &head(&[("x-client-ip", "203.0.113.9")]), &crate::request::NoProperties).unwrap();
        assert_eq!(anon.scope(Scope::Workspace, reject), None);
        assert_eq!(
            anon.scope_id(Scope::Workspace, MissingWorkspace::User),
            Some((ScopeKind::Anonymous, "203.0.113.9"))
        );
    }
}
