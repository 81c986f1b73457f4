/// Where an identity value (user, workspace, tier, UTC offset) is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header, set by something trusted in front of the filter.
    Header(String),
    /// A claim of the JWT in `header` (Bearer token). The signature is NOT
    /// checked here: put Envoy's `jwt_authn` in front to verify it.
    JwtClaim { header: String, claim: Vec<String> },
    /// An Envoy property path, e.g. `["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "sub"]`.
    Property(Vec<String>),
}
