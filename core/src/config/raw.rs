//! Stage one of the config: the JSON document as written, checked only for
//! shape. Unknown fields are rejected so a typo never silently does nothing.
//! `checked.rs` (with one module per part) turns this into the types the
//! filter runs on.
//!
//! Each struct's reader is declared under it with `read_object!` (see
//! `read.rs`): its JSON names, aliases and required fields. The `serde`
//! attributes only shape the JSON Schema (schemars reads them, with the
//! `schema` feature); `schema.rs` tests that the two agree.

use super::read::{invalid_type, members, read_object, FromNode};
use super::tree::{Node, Number};
use super::ConfigError;
use serde_json::Value;
use std::collections::BTreeMap;

/// A JSON object's members by name, in the order first written (of a name
/// written twice, the last value, as `serde_json`'s map keeps it). Their
/// order means nothing: Kubernetes control planes (Istio's `pluginConfig`,
/// Envoy Gateway's `config`) sort the keys before Envoy sees them, so the
/// upgrade order is `tier_order`.
#[derive(Debug)]
pub struct OrderedMap<V>(Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(key, _)| key)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Tiers are kept as written, to be read one by one so errors name the tier.
impl FromNode for OrderedMap<Node> {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        let mut map: Vec<(String, Node)> = Vec::new();
        for (key, value) in members(node, path, "a map")? {
            if map.iter().any(|(seen, _)| seen == key) {
                return Err(super::read::duplicate_name(path, key));
            }
            map.push((key.clone(), value.clone()));
        }
        Ok(OrderedMap(map))
    }
}

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawConfig {
    /// The JSON Schema this document follows, for editors (`quota-matrix schema`); ignored by the filter.
    #[cfg_attr(feature = "schema", serde(default, rename = "$schema"))]
    pub schema: Option<String>,
    pub identity: RawIdentity,
    #[cfg_attr(feature = "schema", serde(default))]
    pub calendar: Option<RawCalendar>,
    pub classes: Vec<RawClass>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub default_class: Option<String>,
    /// Tier name to tier. Kept as written here and read one by one so
    /// errors name the tier.
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, RawTier>"))]
    pub tiers: OrderedMap<Node>,
    /// The tiers' names in upgrade order, cheapest first: a tier's upgrade
    /// hint points to the next one (unless its `upgrade_to` names another).
    /// Required with more than one tier; every tier listed once.
    #[cfg_attr(feature = "schema", serde(default))]
    pub tier_order: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub usage_endpoint: Option<String>,
    /// How often each worker answers the usage endpoint (reads are free, not
    /// unbounded): per caller and for all callers together; past either, 429
    /// with `Retry-After`. Only with `usage_endpoint`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub usage_reads: Option<RawUsageReads>,
    /// The most request body the filter holds to classify (at most 64 MiB).
    /// Envoy must hold as much plus one read: see the README, "Envoy's buffer limit".
    #[cfg_attr(feature = "schema", serde(default))]
    pub max_body_bytes: Option<u64>,
    /// A request whose class or cost depends on a body the filter cannot read
    /// (larger than `max_body_bytes`, not UTF-8, not JSON, nested more than
    /// 127 deep): `refuse` (the default: 413 `body_too_large` or 400
    /// `unreadable_body`, nothing charged) or `strictest` (charged as the most
    /// restrictive class its method, path and headers allow, at that class's
    /// highest cost).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["refuse", "strictest", null])))]
    pub unreadable_body: Option<String>,
    /// Keep the request headers from the upstream while a body rule reads
    /// the body. Needs Envoy >= 1.35 with `allow_on_headers_stop_iteration`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub hold_headers_for_body: Option<bool>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub counters: Option<RawCounters>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub response_headers: Option<RawResponseHeaders>,
    /// Message templates for every class and tier (overridable below).
    #[cfg_attr(feature = "schema", serde(default))]
    pub copy: Option<RawCopy>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub observability: Option<RawObservability>,
    /// The admin endpoint that adds grants (prepaid packs, approvals).
    #[cfg_attr(feature = "schema", serde(default))]
    pub admin: Option<RawAdmin>,
    /// Which upstream answers give a charge back (see the README's refund policy).
    #[cfg_attr(feature = "schema", serde(default))]
    pub refunds: Option<crate::refund::RawRefunds>,
    /// An upstream's own capacity refusal (429, 503, 529): rewritten as a
    /// friendly "busy, not your quota" answer and never charged.
    #[cfg_attr(feature = "schema", serde(default))]
    pub upstream_busy: Option<crate::busy::RawUpstreamBusy>,
    /// What models cost, in one currency, per million tokens (and per request).
    #[cfg_attr(feature = "schema", serde(default))]
    pub prices: Option<RawPrices>,
}

read_object!(RawConfig {
    schema = "$schema",
    identity: required,
    calendar,
    classes: required,
    default_class,
    tiers: required,
    tier_order,
    usage_endpoint,
    usage_reads,
    max_body_bytes,
    unreadable_body,
    hold_headers_for_body,
    counters,
    response_headers,
    copy,
    observability,
    admin,
    refunds,
    upstream_busy,
    prices,
});

/// A price table: what a model's tokens and requests cost, in one currency.
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawPrices {
    /// The ISO 4217 code of the currency of every amount, e.g. `USD`.
    #[cfg_attr(feature = "schema", schemars(pattern("^[A-Z]{3}$")))]
    pub currency: String,
    /// Prices by the body's `model`: exact names, or prefixes ending in `*`
    /// (`"o3*"`). An exact name wins over a prefix, a longer prefix over a shorter.
    #[cfg_attr(feature = "schema", serde(default))]
    pub models: Option<BTreeMap<String, RawModelPrice>>,
    /// Prices of a model no entry names, and of a request that names none.
    #[cfg_attr(feature = "schema", serde(default))]
    pub default: Option<RawModelPrice>,
}

read_object!(RawPrices { currency: required, models, default });

/// One model's prices. Token prices are per million tokens; amounts are
/// decimal strings (`"2.50"`, at most 6 decimals) or whole numbers.
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawModelPrice {
    /// A million input tokens read neither from nor into the prompt cache.
    /// Required with `output`, unless the model is priced by `per_request` alone.
    #[cfg_attr(feature = "schema", serde(default))]
    pub input: Option<RawAmount>,
    /// A million input tokens read from the prompt cache; `input` when absent.
    #[cfg_attr(feature = "schema", serde(default))]
    pub cached_input: Option<RawAmount>,
    /// A million input tokens written to the prompt cache; `input` when absent.
    #[cfg_attr(feature = "schema", serde(default))]
    pub cache_write: Option<RawAmount>,
    /// A million output tokens (reasoning apart).
    #[cfg_attr(feature = "schema", serde(default))]
    pub output: Option<RawAmount>,
    /// A million reasoning tokens; `output` when absent.
    #[cfg_attr(feature = "schema", serde(default))]
    pub reasoning: Option<RawAmount>,
    /// Each request, on top of its tokens (images, searches, non-token routes).
    #[cfg_attr(feature = "schema", serde(default))]
    pub per_request: Option<RawAmount>,
}

read_object!(RawModelPrice { input, cached_input, cache_write, output, reasoning, per_request });

/// An amount as written: decimal text (exact), or a whole JSON number. A
/// JSON number with a fraction is kept to be refused when checked: it was
/// read as a float, which may not be the amount written.
#[derive(Debug, Clone, PartialEq)]
pub enum RawAmount {
    Text(String),
    Whole(u64),
    Negative(i64),
    Float(f64),
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for RawAmount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RawAmount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // `pattern` only constrains strings and `minimum` only numbers.
        schemars::json_schema!({
            "description": "An amount: decimal text with at most 6 decimals (\"2.50\"), or a whole number.",
            "type": ["string", "integer"],
            "pattern": "^[0-9]+(\\.[0-9]{1,6})?$",
            "minimum": 0,
        })
    }
}

// By hand: an untagged enum would say "did not match any variant".
impl FromNode for RawAmount {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::String(text) => Ok(RawAmount::Text(text.clone())),
            Node::Number(Number::Unsigned(n)) => Ok(RawAmount::Whole(*n)),
            Node::Number(Number::Signed(n)) => Ok(RawAmount::Negative(*n)),
            Node::Number(Number::Float(f)) => Ok(RawAmount::Float(*f)),
            other => Err(invalid_type(path, other, "an amount as a string, e.g. \"2.50\"")),
        }
    }
}

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawAdmin {
    /// Path of the grants endpoint, e.g. `/quota/admin/grants`.
    pub path: String,
    /// The bearer token a caller must present (at least 24 characters).
    pub secret: String,
}

read_object!(RawAdmin { path: required, secret: required });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawUsageReads {
    /// Reads a minute per caller, after the burst (default 120).
    #[cfg_attr(feature = "schema", serde(default))]
    pub per_minute: Option<u64>,
    /// Reads a caller may make at once (default 30).
    #[cfg_attr(feature = "schema", serde(default))]
    pub burst: Option<u64>,
    /// Reads a second per worker, every caller together (default 1000).
    #[cfg_attr(feature = "schema", serde(default))]
    pub per_worker_per_second: Option<u64>,
}

read_object!(RawUsageReads { per_minute, burst, per_worker_per_second });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawObservability {
    /// Envoy stats per class x tier x event.
    #[cfg_attr(feature = "schema", serde(default))]
    pub metrics: Option<bool>,
    /// One JSON log line per event.
    #[cfg_attr(feature = "schema", serde(default))]
    pub log_events: Option<bool>,
    /// How events name the caller: `plain`, `hashed` (with `id_salt`) or `omitted`.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["plain", "hashed", "omitted", null])))]
    pub ids: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub id_salt: Option<String>,
    /// POST events to an Envoy cluster, fire-and-forget.
    #[cfg_attr(feature = "schema", serde(default))]
    pub analytics: Option<RawAnalytics>,
    /// One ledger record (a line of JSON) per classified request, in Envoy's
    /// filter state as `wasm.quota_ledger` for access logs to print
    /// (`%FILTER_STATE(wasm.quota_ledger:PLAIN)%`). Default true.
    #[cfg_attr(feature = "schema", serde(default))]
    pub ledger: Option<bool>,
    /// POST every ledger record to the `analytics` cluster too, beside the
    /// events (each with `"event": "ledger"`). Default false; needs `analytics`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub ledger_analytics: Option<bool>,
    /// Events each worker writes a second for refusals of callers without an
    /// identity (401, unknown tier); the rest are counted in
    /// `quota.events_suppressed` and summed up in one line. Default 10; 0: none.
    #[cfg_attr(feature = "schema", serde(default))]
    pub unidentified_events_per_second: Option<u64>,
}

read_object!(RawObservability {
    metrics,
    log_events,
    ids,
    id_salt,
    analytics,
    ledger,
    ledger_analytics,
    unidentified_events_per_second
});

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawAnalytics {
    pub cluster: String,
    #[cfg_attr(feature = "schema", serde(default))]
    pub path: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub authority: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub timeout_ms: Option<u64>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub max_in_flight: Option<u32>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub max_queue: Option<u32>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub flush_ms: Option<u64>,
}

read_object!(RawAnalytics { cluster: required, path, authority, timeout_ms, max_in_flight, max_queue, flush_ms });

/// Message templates; each may use the `{placeholders}` of `template::VARS`.
#[derive(Debug, Default, Clone)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawCopy {
    #[cfg_attr(feature = "schema", serde(default))]
    pub warning: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub blocked: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub not_included: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub confirm: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub pace: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub missing_identity: Option<String>,
    /// Refusal (401) of a request whose sign-in token header is not exactly
    /// one `Bearer <token>`; placeholders render empty.
    #[cfg_attr(feature = "schema", serde(default))]
    pub invalid_credentials: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub unknown_tier: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub unavailable: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub degraded: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub overage: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub queued: Option<String>,
    /// A pooled (`"scope": "workspace"`) class asked for without a workspace id
    /// (403, with `identity.missing_workspace`: `reject`).
    #[cfg_attr(feature = "schema", serde(default))]
    pub workspace_required: Option<String>,
    /// A request that costs more than the cell could ever admit (413), e.g.
    /// a `max_tokens` past the whole window's allowance.
    #[cfg_attr(feature = "schema", serde(default))]
    pub too_large: Option<String>,
    /// The 413 for a body larger than `max_body_bytes` (top-level `copy` only;
    /// `{max_body}` and `{body_problem}` apply).
    #[cfg_attr(feature = "schema", serde(default))]
    pub body_too_large: Option<String>,
    /// The 400 for a body the filter cannot read (top-level `copy` only;
    /// `{max_body}` and `{body_problem}` apply).
    #[cfg_attr(feature = "schema", serde(default))]
    pub unreadable_body: Option<String>,
    /// The answer that replaces an upstream's own capacity refusal (429,
    /// 503, 529: see `upstream_busy`); `{retry_in}` says when to try again.
    #[cfg_attr(feature = "schema", serde(default))]
    pub upstream_busy: Option<String>,
}

read_object!(RawCopy {
    warning,
    blocked,
    not_included,
    confirm,
    pace,
    missing_identity,
    invalid_credentials,
    unknown_tier,
    unavailable,
    degraded,
    overage,
    queued,
    workspace_required,
    too_large,
    body_too_large,
    unreadable_body,
    upstream_busy
});

/// Where a value comes from. Exactly one of `header`, `jwt_claim` or `property`.
#[derive(Debug, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawSource {
    #[cfg_attr(feature = "schema", serde(default))]
    pub header: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub jwt_claim: Option<String>,
    /// Header holding the JWT for `jwt_claim`; `authorization` (Bearer) by default.
    #[cfg_attr(feature = "schema", serde(default))]
    pub jwt_header: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub property: Option<Vec<String>>,
}

read_object!(RawSource { header, jwt_claim, jwt_header, property });

#[derive(Debug, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawIdentity {
    pub user: Vec<RawSource>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub workspace: Vec<RawSource>,
    /// Where the caller's organisation id comes from, for limits with
    /// `"scope": "organisation"`.
    #[cfg_attr(feature = "schema", serde(default, alias = "org"))]
    pub organisation: Vec<RawSource>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub tier: Vec<RawSource>,
    pub default_tier: String,
    /// `default` (use the default tier) or `reject` (403).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["default", "reject", null])))]
    pub unknown_tier: Option<String>,
    /// How to treat a request without a user id; absent means a friendly 401.
    #[cfg_attr(feature = "schema", serde(default))]
    pub anonymous: Option<RawAnonymous>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub max_id_bytes: Option<u64>,
    /// What a pooled (`"scope": "workspace"` or `"organisation"`) limit does
    /// with a caller who names no workspace (or organisation; anonymous
    /// callers included): `reject` (default: a 403 with code
    /// `workspace_required`) or `user` (the caller's own counter, as if the
    /// limit were per user).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["reject", "user", null])))]
    pub missing_workspace: Option<String>,
}

read_object!(RawIdentity {
    user: required,
    workspace,
    organisation | "org",
    tier,
    default_tier: required,
    unknown_tier,
    anonymous,
    max_id_bytes,
    missing_workspace,
});

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawAnonymous {
    pub tier: String,
    pub key: Vec<RawSource>,
}

read_object!(RawAnonymous { tier: required, key: required });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawCalendar {
    #[cfg_attr(feature = "schema", serde(default))]
    pub utc_offset: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub week_starts_on: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub user_utc_offset: Vec<RawSource>,
}

read_object!(RawCalendar { utc_offset, week_starts_on, user_utc_offset });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawClass {
    pub name: String,
    #[cfg_attr(feature = "schema", serde(default))]
    pub label: Option<String>,
    /// What one unit is called, singular ("draft") and plural ("drafts").
    #[cfg_attr(feature = "schema", serde(default))]
    pub unit: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub units: Option<String>,
    #[cfg_attr(feature = "schema", serde(default, rename = "match"))]
    pub rules: Vec<RawRule>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub cost: Option<RawCost>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub copy: Option<RawCopy>,
    /// The JSON error envelope of the filter's answers to this class:
    /// `auto` (default: Anthropic's for a request to an Anthropic path such
    /// as `/v1/messages`, or with an `anthropic-version` header; else
    /// OpenAI's), `openai` or `anthropic`. An `Accept` asking for
    /// `application/problem+json` or `text/html` still gets those.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["auto", "openai", "anthropic", null])))]
    pub error_format: Option<String>,
}

read_object!(RawClass { name: required, label, unit, units, rules = "match", cost, copy, error_format });

#[derive(Debug, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawRule {
    #[cfg_attr(feature = "schema", serde(default))]
    pub methods: Vec<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub path: Option<RawPath>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub headers: Vec<RawHeaderCond>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub body: Vec<RawBodyCond>,
}

read_object!(RawRule { methods, path, headers, body });

#[derive(Debug, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawPath {
    #[cfg_attr(feature = "schema", serde(default))]
    pub exact: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub prefix: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub glob: Option<String>,
}

read_object!(RawPath { exact, prefix, glob });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawHeaderCond {
    pub name: String,
    #[cfg_attr(feature = "schema", serde(default))]
    pub equals: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub one_of: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub prefix: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub exists: Option<bool>,
}

read_object!(RawHeaderCond { name: required, equals, one_of, prefix, exists });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawBodyCond {
    /// Dotted path into the JSON body: `model`, `metadata.feature`, `messages.0.role`.
    pub field: String,
    #[cfg_attr(feature = "schema", serde(default))]
    pub equals: Option<Value>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub one_of: Option<Vec<Value>>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub prefix: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub exists: Option<bool>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub gt: Option<f64>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub gte: Option<f64>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub lt: Option<f64>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub lte: Option<f64>,
}

read_object!(RawBodyCond { field: required, equals, one_of, prefix, exists, gt, gte, lt, lte });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawCost {
    /// Units charged per request.
    #[cfg_attr(feature = "schema", serde(default))]
    pub fixed: Option<u64>,
    /// One unit per record in the body: a JSON array (at `field`, or the body
    /// itself) or JSON Lines.
    #[cfg_attr(feature = "schema", serde(default))]
    pub records: Option<RawRecords>,
    /// One unit per `per` bytes of request body (pages of a size).
    #[cfg_attr(feature = "schema", serde(default))]
    pub bytes: Option<RawBytes>,
    /// Estimated tokens (message text / 4 + the completion budget),
    /// corrected from the upstream's reported `usage`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub tokens: Option<RawTokens>,
    /// Metered in money: the request's tokens priced by the `prices` table
    /// (input, cached input, cache writes, output and reasoning apart),
    /// reserved at admission and settled from the reported usage.
    #[cfg_attr(feature = "schema", serde(default))]
    pub price: Option<RawPriced>,
    /// Metered in money: each unit of the rule (`fixed`, `records`,
    /// `bytes`) costs this amount of the `prices` currency ("0.004").
    #[cfg_attr(feature = "schema", serde(default))]
    pub unit_price: Option<RawAmount>,
    /// Multipliers by the body's `model` (`"gpt-4o": 2`, `"o3*": 10`).
    #[cfg_attr(feature = "schema", serde(default))]
    pub models: Option<BTreeMap<String, f64>>,
    /// Units charged when a readable body does not say (no body, a missing
    /// field); 1 by default. A body the filter cannot read follows `unreadable_body`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub fallback: Option<u64>,
}

read_object!(RawCost { fixed, records, bytes, tokens, price, unit_price, models, fallback });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawRecords {
    /// Dotted path of the array; the body itself when absent.
    #[cfg_attr(feature = "schema", serde(default))]
    pub field: Option<String>,
    /// Count non-empty lines of a JSON Lines body instead.
    #[cfg_attr(feature = "schema", serde(default))]
    pub jsonl: Option<bool>,
}

read_object!(RawRecords { field, jsonl });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawBytes {
    /// Bytes per unit (a "page"); 1 by default.
    #[cfg_attr(feature = "schema", serde(default))]
    pub per: Option<u64>,
}

read_object!(RawBytes { per });

/// A class priced from its tokens by the `prices` table.
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawPriced {
    /// Completion budget assumed when the request sets no `max_tokens`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub default_max_tokens: Option<u64>,
    /// Ask streaming upstreams to report usage (`stream_options.include_usage`, default true).
    #[cfg_attr(feature = "schema", serde(default))]
    pub include_usage: Option<bool>,
}

read_object!(RawPriced { default_max_tokens, include_usage });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawTokens {
    /// Completion budget assumed when the request sets no `max_tokens`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub default_max_tokens: Option<u64>,
    /// Correct the estimate with the upstream's reported usage (default true).
    #[cfg_attr(feature = "schema", serde(default))]
    pub reconcile: Option<bool>,
    /// Ask streaming upstreams to report usage (`stream_options.include_usage`, default true).
    #[cfg_attr(feature = "schema", serde(default))]
    pub include_usage: Option<bool>,
    /// Which tokens count: `all` (default), `input` (the prompt, cached
    /// and cache-written tokens too) or `output` (reasoning tokens too).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["all", "input", "output", null])))]
    pub count: Option<String>,
}

read_object!(RawTokens { default_max_tokens, reconcile, include_usage, count });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawTier {
    #[cfg_attr(feature = "schema", serde(default))]
    pub label: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub upgrade_url: Option<String>,
    /// The tier an upgrade hint points to; the next one in `tier_order` by default.
    #[cfg_attr(feature = "schema", serde(default))]
    pub upgrade_to: Option<String>,
    /// Class name to cell: one limit, or a list of stacked limits. Every
    /// class must have a cell in every tier.
    pub limits: BTreeMap<String, RawCellEntry>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub copy: Option<RawCopy>,
}

read_object!(RawTier { label, upgrade_url, upgrade_to, limits: required, copy });

/// A cell as written: one limit (an object), or several stacked limits (a
/// list of objects) that a request must all fit.
#[derive(Debug)]
pub enum RawCellEntry {
    One(Box<RawCell>),
    Stack(Vec<RawCell>),
}

// By hand rather than `untagged` (an `anyOf`), for the reason its reader
// is (below): a validator reports a field's error inside an `anyOf` as the whole
// cell's ("not valid under any of the given schemas"). `if`/`then`/`else`
// picks the form by the value's type, so the error keeps the field's path
// (`tiers.free.limits.drafts.hard`, `...drafts[1].hard`).
#[cfg(feature = "schema")]
impl schemars::JsonSchema for RawCellEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RawCellEntry".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = generator.subschema_for::<RawCell>();
        let stack = generator.subschema_for::<Vec<RawCell>>();
        schemars::json_schema!({
            "description": "A cell as written: one limit (an object), or several stacked limits (a list of objects) that a request must all fit.",
            "if": { "type": "object" },
            "then": one,
            "else": stack,
        })
    }
}

// By hand rather than `untagged`: an untagged enum reports "did not
// match any variant" and loses the JSON path of the field at fault.
impl FromNode for RawCellEntry {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::Object(_) => RawCell::from_node(node, path).map(|cell| RawCellEntry::One(Box::new(cell))),
            Node::Array(_) => Vec::<RawCell>::from_node(node, path).map(RawCellEntry::Stack),
            other => Err(invalid_type(path, other, "a cell (an object) or a list of stacked limits (objects)")),
        }
    }
}

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawCell {
    /// `false` marks the class as not part of this plan (403 with an upgrade hint).
    #[cfg_attr(feature = "schema", serde(default))]
    pub included: Option<bool>,
    /// Units after which the caller is warned (below `hard`); at most 9007199254740991.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub soft: Option<u64>,
    /// Units per window; also the most one request may cost unless `at_hard`
    /// allows a capped amount past it. At most 9007199254740991.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub hard: Option<u64>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub window: Option<String>,
    /// `user` (default), `workspace` (pooled by the team) or `organisation`
    /// (`org`: pooled by the organisation). In a stacked cell with a pooled
    /// limit, a `user` limit counts the member inside that pool.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(
        feature = "schema",
        schemars(extend("enum" = ["user", "workspace", "organisation", "org", null]))
    )]
    pub scope: Option<String>,
    /// In a stacked cell, on the `user` limit: a workspace admin may set this
    /// member's cap through the admin endpoint (at most the pool's hard
    /// limit); it replaces this limit's `hard` for that member until cleared.
    #[cfg_attr(feature = "schema", serde(default))]
    pub admin_cap: Option<bool>,
    /// `warn` (default) or `degrade`.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["warn", "degrade", null])))]
    pub past_soft: Option<String>,
    /// `block` (default), `warn`, `degrade`, `overage` or `queue`.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["block", "warn", "degrade", "overage", "queue", null])))]
    pub at_hard: Option<String>,
    /// Fractions of the hard limit at which the caller is warned.
    #[cfg_attr(feature = "schema", serde(default))]
    pub warn_at: Option<Vec<f64>>,
    /// A single request costing more than this fraction of what remains
    /// needs the caller's confirmation (428 until they confirm).
    #[cfg_attr(feature = "schema", serde(default))]
    pub confirm_above: Option<f64>,
    /// Flag callers who are far ahead of the window's pace.
    #[cfg_attr(feature = "schema", serde(default))]
    pub pace: Option<RawPace>,
    /// For `degrade` (past soft or at hard): the cheaper model and its ceiling.
    #[cfg_attr(feature = "schema", serde(default))]
    pub degrade: Option<RawDegrade>,
    /// For `at_hard: overage`: the most overage units before blocking.
    #[cfg_attr(feature = "schema", serde(default))]
    pub overage: Option<RawCap>,
    /// For `at_hard: queue`: the header that defers the work, and a ceiling.
    #[cfg_attr(feature = "schema", serde(default))]
    pub queue: Option<RawQueue>,
    #[cfg_attr(feature = "schema", serde(default))]
    pub copy: Option<RawCopy>,
}

read_object!(RawCell {
    included,
    soft,
    hard,
    window,
    scope,
    admin_cap,
    past_soft,
    at_hard,
    warn_at,
    confirm_above,
    pace,
    degrade,
    overage,
    queue,
    copy
});

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawDegrade {
    /// Rewrite the JSON body's `model` to this.
    #[cfg_attr(feature = "schema", serde(default))]
    pub model: Option<String>,
    /// Set this request header (a route can match it) and clear the route cache.
    #[cfg_attr(feature = "schema", serde(default))]
    pub header: Option<RawHeaderValue>,
    /// The most units a window may use degraded past the hard limit.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub limit: Option<u64>,
}

read_object!(RawDegrade { model, header, limit });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawHeaderValue {
    pub name: String,
    pub value: String,
}

read_object!(RawHeaderValue { name: required, value: required });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawCap {
    /// The most overage units a window may use past the hard limit.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub cap: Option<u64>,
}

read_object!(RawCap { cap });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawQueue {
    /// Request header telling the upstream to defer the work (`x-quota-deferred: 1` by default).
    #[cfg_attr(feature = "schema", serde(default))]
    pub header: Option<RawHeaderValue>,
    /// The most units a window may queue past the hard limit.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub cap: Option<u64>,
}

read_object!(RawQueue { header, cap });

/// "80% of the allowance used before a third of the window has passed".
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawPace {
    /// Share of the hard limit used.
    pub used: f64,
    /// Share of the window elapsed.
    pub before: f64,
}

read_object!(RawPace { used: required, before: required });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawCounters {
    /// Compare-and-swap attempts before giving up.
    #[cfg_attr(feature = "schema", serde(default))]
    pub cas_attempts: Option<u32>,
    /// The most counters this Envoy keeps in shared data at once (default
    /// 1000000, from 32 to 100000000): the bound on their memory. A new
    /// counter that finds no room gets the `on_error` policy.
    #[cfg_attr(feature = "schema", serde(default))]
    pub max_counters: Option<u64>,
    /// `fail_open` (admit) or `fail_closed` (503) when the counter store cannot answer.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["fail_open", "fail_closed", null])))]
    pub on_error: Option<String>,
    /// Where counters live: `shared_data` (this Envoy, the default) or `redis`
    /// (shared by every Envoy, through `redis`).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["shared_data", "redis", null])))]
    pub store: Option<String>,
    /// The Redis store, reached over HTTP through an Envoy cluster (webdis).
    #[cfg_attr(feature = "schema", serde(default))]
    pub redis: Option<RawRedis>,
}

read_object!(RawCounters { cas_attempts, max_counters, on_error, store, redis });

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawRedis {
    /// The Envoy cluster of the HTTP front to Redis (webdis).
    pub cluster: String,
    /// Request path of the front's command endpoint (default `/`).
    #[cfg_attr(feature = "schema", serde(default))]
    pub path: Option<String>,
    /// `:authority` of the calls (default: the cluster name).
    #[cfg_attr(feature = "schema", serde(default))]
    pub authority: Option<String>,
    /// `authorization` header of the calls, e.g. webdis HTTP basic auth.
    #[cfg_attr(feature = "schema", serde(default))]
    pub authorization: Option<String>,
    /// How long a request waits for Redis before the fail policy applies (default 200).
    #[cfg_attr(feature = "schema", serde(default))]
    pub timeout_ms: Option<u64>,
    /// Prefix of every Redis key (default `quota:`).
    #[cfg_attr(feature = "schema", serde(default))]
    pub key_prefix: Option<String>,
    /// `exact` (the default: every request waits for Redis), `lease` (admit
    /// from blocks of units reserved in Redis, never past a limit) or
    /// `approximate` (admit from this Envoy's counters, send the deltas
    /// every `sync_ms`; may pass a limit).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["exact", "lease", "approximate", null])))]
    pub mode: Option<String>,
    /// How often the approximate mode sends its deltas (default 100).
    #[cfg_attr(feature = "schema", serde(default))]
    pub sync_ms: Option<u64>,
    /// Lease mode: how long a block may be spent after Redis granted it,
    /// in milliseconds (default 5000): also how long an Envoy cut off from
    /// Redis admits on the blocks it holds.
    #[cfg_attr(feature = "schema", serde(default))]
    pub lease_ms: Option<u64>,
    /// Lease mode: the most one block takes of the units not yet reserved
    /// (default 0.1).
    #[cfg_attr(feature = "schema", serde(default))]
    pub lease_fraction: Option<f64>,
    /// Lease mode: the most units one block holds (default: no bound but
    /// the fraction).
    #[cfg_attr(feature = "schema", serde(default))]
    pub lease_max_units: Option<u64>,
}

read_object!(RawRedis {
    cluster: required,
    path,
    authority,
    authorization,
    timeout_ms,
    key_prefix,
    mode,
    sync_ms,
    lease_ms,
    lease_fraction,
    lease_max_units
});

#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawResponseHeaders {
    /// IETF `RateLimit-Policy` and `RateLimit` fields.
    #[cfg_attr(feature = "schema", serde(default))]
    pub ratelimit: Option<bool>,
    /// The `x-quota-*` family.
    #[cfg_attr(feature = "schema", serde(default))]
    pub quota: Option<bool>,
    /// OpenAI-style `x-ratelimit-{limit,remaining,reset}-requests` (classes
    /// counted per request) or `-tokens` (classes metered in tokens), from
    /// the binding limit; resets as OpenAI writes them (`6m0s`). Default false.
    #[cfg_attr(feature = "schema", serde(default))]
    pub openai_ratelimit: Option<bool>,
}

read_object!(RawResponseHeaders { ratelimit, quota, openai_ratelimit });
