//! Stage two of the config: meaning. Every value is checked and turned into
//! the types the filter runs on; every error names its JSON path.

use super::error::{join, ConfigError};
use super::raw::*;
use super::source::Source;
use crate::glob::Glob;
use crate::path::normalize as normalize_path;
use crate::template::Template;
use crate::units::MAX_UNITS;
use crate::window::{Alignment, CalendarUnit, WindowSpec};
use serde_json::Value;

/// Index of a class in [`Config::classes`] (document order = match order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassId(pub usize);

/// Index of a tier in [`Config::tiers`] (document order = upgrade order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TierId(pub usize);

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: IdentityConfig,
    pub calendar: CalendarConfig,
    pub classes: Vec<Class>,
    pub default_class: Option<ClassId>,
    pub tiers: Vec<Tier>,
    pub usage_endpoint: Option<String>,
    /// How often the usage endpoint answers (see `usage_limit.rs`).
    pub usage_reads: UsageReads,
    pub max_body_bytes: usize,
    /// What happens to a request whose class or cost depends on a body the
    /// filter cannot read (see `unreadable.rs`).
    pub unreadable_body: UnreadableBody,
    /// Whether the request headers wait for the body when a body rule needs
    /// it (see the README: needs `allow_on_headers_stop_iteration` in Envoy).
    pub hold_headers_for_body: bool,
    pub counters: CounterConfig,
    pub response_headers: ResponseHeaders,
    /// Copy for every class and tier.
    pub copy: CopySet,
    pub observability: Observability,
    pub admin: Option<Admin>,
    /// Per class (by [`ClassId`]): what it needs of the body.
    pub body_needs: Vec<BodyNeeds>,
    /// Which endings of an admitted request give its units back.
    pub refunds: crate::refund::RefundPolicy,
}

/// The config's choice for a request whose class or cost depends on a body
/// the filter cannot read. Either way it is never cheaper than its head allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnreadableBody {
    /// Answer 413 (too large) or 400 (unreadable) and charge nothing.
    #[default]
    Refuse,
    /// Charge the most restrictive outcome the method, path and headers allow
    /// (`unreadable::strictest`).
    Strictest,
}

/// The grants endpoint: only a caller with the secret may add units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub path: String,
    pub secret: String,
}

/// What the filter reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observability {
    pub metrics: bool,
    pub log_events: bool,
    pub ids: IdPolicy,
    pub analytics: Option<Analytics>,
    /// Events a worker writes a second for callers without an identity
    /// (see `event_budget.rs`); 0: none.
    pub unidentified_events_per_second: u32,
}

/// The usage endpoint's budgets, per worker (see `usage_limit.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReads {
    /// Reads a minute per caller, after the burst.
    pub per_minute: u32,
    /// Reads a caller may make at once.
    pub burst: u32,
    /// Reads a second, every caller together.
    pub per_worker_per_second: u32,
}

impl Default for UsageReads {
    fn default() -> Self {
        UsageReads { per_minute: 120, burst: 30, per_worker_per_second: 1000 }
    }
}

/// How events name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPolicy {
    Plain,
    /// A salted 64-bit hash, hex: stable per id, not reversible by reading logs.
    Hashed {
        salt: String,
    },
    Omitted,
}

/// Where events are POSTed (an Envoy cluster), and the bounds that keep it
/// from ever touching request latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analytics {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub max_in_flight: u32,
    pub max_queue: u32,
    pub flush_ms: u64,
}

/// The messages people read, each overridable by a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Warning,
    Blocked,
    NotIncluded,
    Confirm,
    Pace,
    MissingIdentity,
    InvalidCredentials,
    UnknownTier,
    Unavailable,
    Degraded,
    Overage,
    Queued,
    /// A pooled class asked for without a workspace id.
    WorkspaceRequired,
    /// A request larger than the cell could ever admit (413).
    TooLarge,
    /// The 413 for a body larger than `max_body_bytes`.
    BodyTooLarge,
    /// The 400 for a body the filter cannot read.
    UnreadableBody,
}

/// Templates set at one level (global, class, tier or cell); the most
/// specific level that sets a message wins.
#[derive(Debug, Clone, Default)]
pub struct CopySet {
    templates: Vec<(Message, Template)>,
}

impl CopySet {
    pub fn get(&self, message: Message) -> Option<&Template> {
        self.templates.iter().find(|(m, _)| *m == message).map(|(_, t)| t)
    }
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user: Vec<Source>,
    pub workspace: Vec<Source>,
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

#[derive(Debug, Clone)]
pub struct CalendarConfig {
    pub alignment: Alignment,
    /// Trusted sources of a per-user UTC offset (`+05:30`).
    pub user_utc_offset: Vec<Source>,
}

#[derive(Debug, Clone)]
pub struct Class {
    pub name: String,
    /// Shown to people: "Deep research".
    pub label: String,
    /// One unit: "deep-research call".
    pub unit: String,
    /// Several units: "deep-research calls".
    pub units: String,
    /// Any rule matching selects the class.
    pub rules: Vec<Rule>,
    pub cost: Cost,
    /// Cost multipliers by model: exact names, or prefixes ending in `*`.
    pub models: Vec<(String, f64)>,
    /// Units charged when the body does not say.
    pub cost_fallback: u64,
    pub copy: CopySet,
}

impl Class {
    /// "1 draft", "3 drafts".
    pub fn count(&self, n: u64) -> String {
        format!("{n} {}", if n == 1 { &self.unit } else { &self.units })
    }
}

/// All conditions of a rule must hold.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub path: Option<PathMatch>,
    pub headers: Vec<HeaderCond>,
    pub body: Vec<BodyCond>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Glob(Glob),
}

#[derive(Debug, Clone)]
pub struct HeaderCond {
    /// Lower-case header name.
    pub name: String,
    pub test: TextTest,
}

#[derive(Debug, Clone)]
pub enum TextTest {
    Equals(String),
    OneOf(Vec<String>),
    Prefix(String),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub struct BodyCond {
    /// Path segments into the JSON body; numeric segments also index arrays.
    pub field: Vec<String>,
    pub test: ValueTest,
}

#[derive(Debug, Clone)]
pub enum ValueTest {
    Equals(Value),
    OneOf(Vec<Value>),
    Prefix(String),
    Exists(bool),
    Compare { gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64> },
}

/// Units charged for one request of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cost {
    Fixed(u64),
    /// One unit per record: a JSON array at `field` (the body when `None`),
    /// or the non-empty lines of a JSON Lines body.
    Records {
        field: Option<Vec<String>>,
        jsonl: bool,
    },
    /// One unit per `per` bytes of body, rounded up.
    Bytes {
        per: u64,
    },
    /// Estimated tokens, corrected from the response's `usage`.
    Tokens {
        default_max_tokens: u64,
        reconcile: bool,
        include_usage: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub label: String,
    pub upgrade_url: Option<String>,
    /// The tier an upgrade hint points to.
    pub upgrade_to: Option<TierId>,
    /// One cell per class, indexed by [`ClassId`].
    pub cells: Vec<Cell>,
    pub copy: CopySet,
}

// One cell per tier x class, built once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Cell {
    /// The class is not part of this plan.
    NotIncluded,
    Limited(Limits),
}

/// Whose counter a cell charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    /// Pooled by the caller's workspace; callers without one follow
    /// [`IdentityConfig::missing_workspace`].
    Workspace,
}

/// What happens once usage is past the soft limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastSoft {
    Warn,
    /// Serve the request with the cell's cheaper model.
    Degrade,
}

/// What happens when a request would go past the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtHard {
    /// Refuse with 429.
    Block,
    /// Admit and keep counting; the caller is told they are over.
    Warn,
    /// Admit with the cheaper model, up to the degrade limit.
    Degrade,
    /// Admit and count the units as overage (for billing), up to the cap.
    Overage,
    /// Admit with a header that defers the work, up to the cap.
    Queue,
}

/// How a cell degrades a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degrade {
    pub model: Option<String>,
    /// A request header to set (lower-case name, value).
    pub header: Option<(String, String)>,
    /// The most units a window may use degraded past the hard limit.
    pub limit: Option<u64>,
}

/// How a cell defers work past its hard limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub header: (String, String),
    pub cap: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub soft: Option<u64>,
    pub hard: u64,
    pub window: WindowSpec,
    /// The window as written in the config ("day", "5h").
    pub window_name: String,
    pub scope: Scope,
    pub past_soft: PastSoft,
    pub at_hard: AtHard,
    /// Usage levels at which a warning starts, ascending: the soft limit and
    /// each `warn_at` fraction of the hard limit.
    pub warn_levels: Vec<u64>,
    /// A request costing more than this fraction of what remains needs
    /// confirmation.
    pub confirm_above: Option<f64>,
    pub pace: Option<Pace>,
    pub degrade: Option<Degrade>,
    /// The most overage units per window (`at_hard: overage`); none: no cap.
    pub overage_cap: Option<u64>,
    pub queue: Option<Queue>,
    pub copy: CopySet,
}

impl Limits {
    /// The most units this cell admits past its hard limit (grants aside) in
    /// one window: `None` for no ceiling, `Some(0)` when it blocks.
    pub fn beyond_hard_cap(&self) -> Option<u64> {
        match self.at_hard {
            AtHard::Block => Some(0),
            AtHard::Warn => None,
            AtHard::Degrade => self.degrade.as_ref().and_then(|d| d.limit),
            AtHard::Overage => self.overage_cap,
            AtHard::Queue => self.queue.as_ref().and_then(|q| q.cap),
        }
    }

    /// The most units one request can be charged in this cell from the plan
    /// alone: the hard limit plus the cap past it. Behaviours without a cap
    /// past hard (`warn`, uncapped `degrade`, `overage`, `queue`) admit at
    /// most the hard limit in one request, so no single request can cost
    /// more than a whole window's allowance. Grants may fund a larger one.
    pub fn request_ceiling(&self) -> u64 {
        crate::units::add(self.hard, self.beyond_hard_cap().unwrap_or(0))
    }
}

/// Flag a caller who has used `used` of the hard limit before `before` of
/// the window has passed (both fractions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub used: f64,
    pub before: f64,
}

impl Limits {
    /// The usage at which the caller is first warned, if any.
    pub fn first_warning(&self) -> Option<u64> {
        self.warn_levels.first().copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct CounterConfig {
    pub cas_attempts: u32,
    /// The most counters kept in shared data at once (see `table.rs`).
    pub max_counters: u32,
    pub on_error: FailPolicy,
    /// `None`: Envoy's shared data (this Envoy only).
    pub redis: Option<RedisStore>,
    /// What places counters in the table's buckets: not part of the JSON;
    /// the filter sets the process's own (see [`crate::table::Seed`]).
    pub seed: crate::table::Seed,
}

/// Counters in Redis, reached through an HTTP front (see `redis.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub authorization: Option<String>,
    pub timeout_ms: u64,
    pub key_prefix: String,
    /// SHA-1 of the script, the name EVALSHA calls it by.
    pub script_sha1: String,
    /// Approximate mode: admit from the local counters and send deltas to
    /// Redis every this many milliseconds. `None`: every request waits for Redis.
    pub sync_ms: Option<u64>,
}

impl CounterConfig {
    /// How the shared-data table of counters is laid out.
    pub fn layout(&self) -> crate::table::Layout {
        crate::table::Layout::seeded(self.max_counters, self.seed)
    }

    /// The counters in `store` (Envoy's shared data, or a test's) as the
    /// bounded table reads and writes them, for one operation at `now_ms`.
    pub fn table<'a, S: crate::store::CounterStore + ?Sized>(
        &self,
        store: &'a S,
        now_ms: i64,
    ) -> crate::table::Table<'a, S> {
        crate::table::Table::new(store, self.layout(), now_ms.div_euclid(1000))
    }

    /// The Redis store every request waits for (exact mode).
    pub fn exact_redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref().filter(|r| r.sync_ms.is_none())
    }

    /// The Redis store the local counters are synced to (approximate mode).
    pub fn approximate_redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref().filter(|r| r.sync_ms.is_some())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ResponseHeaders {
    pub ratelimit: bool,
    pub quota: bool,
}

/// Defaults, documented in the README's config reference.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_ID_BYTES: usize = 256;
pub const DEFAULT_CAS_ATTEMPTS: u32 = 32;
pub const DEFAULT_MAX_COUNTERS: u32 = 1_000_000;
/// Bounds of `counters.max_counters`: one bucket, and a table of about 13 GB at worst.
pub const MIN_MAX_COUNTERS: u32 = crate::table::SLOTS;
pub const MAX_MAX_COUNTERS: u32 = 100_000_000;
pub const DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND: u32 = 10;
/// The largest `max_body_bytes`.
pub const MAX_BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;
pub const DEFAULT_WARN_AT: [f64; 2] = [0.7, 0.95];
/// The longest first-use window: a year.
const MAX_FIRST_USE_SECONDS: i64 = 366 * 86_400;

impl Config {
    pub fn class(&self, id: ClassId) -> Option<&Class> {
        self.classes.get(id.0)
    }

    pub fn tier(&self, id: TierId) -> Option<&Tier> {
        self.tiers.get(id.0)
    }

    pub fn tier_by_name(&self, name: &str) -> Option<TierId> {
        self.tiers.iter().position(|t| t.name == name).map(TierId)
    }

    pub fn cell(&self, tier: TierId, class: ClassId) -> Option<&Cell> {
        self.tiers.get(tier.0)?.cells.get(class.0)
    }

    /// Whether any class rule needs the request body to decide.
    pub fn any_rule_reads_body(&self) -> bool {
        self.classes.iter().flat_map(|c| &c.rules).any(|r| !r.body.is_empty())
    }

    /// Whether a request of this class needs its body once classified: to
    /// price it, to rewrite its model (degrade) or to ask for usage reports.
    pub fn class_needs_body(&self, class: ClassId) -> bool {
        self.body_needs.get(class.0).is_some_and(|n| n.read || n.rewrite)
    }

    /// Whether the filter may rewrite request bodies under this config.
    pub fn may_rewrite_body(&self) -> bool {
        self.body_needs.iter().any(|n| n.rewrite)
    }
}

/// What a class needs of the request body once it is classified; worked out
/// once at load, read on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyNeeds {
    /// The cost rule reads it.
    pub read: bool,
    /// A degrading cell rewrites its model, or the class asks for usage reports.
    pub rewrite: bool,
}

fn body_needs(class: &Class, id: ClassId, tiers: &[Tier]) -> BodyNeeds {
    let degrades_model = tiers.iter().any(|t| {
        matches!(t.cells.get(id.0), Some(Cell::Limited(l)) if l.degrade.as_ref().is_some_and(|d| d.model.is_some()))
    });
    let asks_usage = matches!(class.cost, Cost::Tokens { include_usage: true, .. });
    BodyNeeds { read: crate::cost::needs_body(class), rewrite: degrades_model || asks_usage }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let classes = raw
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| check_class(&format!("classes[{i}]"), c))
            .collect::<Result<Vec<_>, _>>()?;
        if classes.is_empty() {
            return Err(ConfigError::new("classes", "must list at least one class"));
        }
        for (i, c) in classes.iter().enumerate() {
            if classes.iter().take(i).any(|earlier| earlier.name == c.name) {
                return Err(ConfigError::new(
                    format!("classes[{i}].name"),
                    format!("duplicate class name \"{}\"", c.name),
                ));
            }
        }
        let class_id = |path: &str, name: &str| {
            classes
                .iter()
                .position(|c| c.name == name)
                .map(ClassId)
                .ok_or_else(|| ConfigError::new(path, format!("no class named \"{name}\"")))
        };
        let default_class = raw.default_class.as_deref().map(|n| class_id("default_class", n)).transpose()?;

        let tier_names: Vec<String> = raw.tiers.keys().cloned().collect();
        if tier_names.is_empty() {
            return Err(ConfigError::new("tiers", "must define at least one tier"));
        }
        let tier_id = |path: &str, name: &str| {
            tier_names.iter().position(|t| t == name).map(TierId).ok_or_else(|| {
                ConfigError::new(path, format!("no tier named \"{name}\" (tiers: {})", tier_names.join(", ")))
            })
        };
        let mut tiers = Vec::with_capacity(tier_names.len());
        for (index, (name, value)) in raw.tiers.iter().enumerate() {
            let path = join("tiers", name);
            check_name(&path, name)?;
            let raw_tier: RawTier = deserialize_at(&path, value.clone())?;
            tiers.push(check_tier(&path, index, name, &raw_tier, &classes, &tier_names, &tier_id)?);
        }

        check_pooled_windows(&classes, &tiers)?;

        let identity = check_identity(&raw.identity, &tier_id)?;
        let calendar = check_calendar(raw.calendar.as_ref())?;

        // Requests are matched by their normalised path, so the endpoint is
        // normalised too: `/quota/` still answers a request for `/quota/`.
        let usage_endpoint = match raw.usage_endpoint {
            Some(p) if !p.starts_with('/') => {
                return Err(ConfigError::new(
                    "usage_endpoint",
                    format!("must be a path starting with '/', got \"{p}\""),
                ))
            }
            other => other.map(|p| normalize_path(p.as_bytes())),
        };
        let usage_endpoint_for_admin = usage_endpoint.clone();
        let max_body_bytes = match raw.max_body_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(0) => return Err(ConfigError::new("max_body_bytes", "must be greater than 0")),
            Some(n) => usize::try_from(n).ok().filter(|n| *n <= MAX_BODY_BYTES_LIMIT).ok_or_else(|| {
                ConfigError::new("max_body_bytes", format!("must be at most {MAX_BODY_BYTES_LIMIT} (64 MiB), got {n}"))
            })?,
        };
        let usage_reads = check_usage_reads(raw.usage_reads.as_ref(), usage_endpoint.is_some())?;
        let unreadable_body = match raw.unreadable_body.as_deref() {
            None | Some("refuse") => UnreadableBody::Refuse,
            Some("strictest") => UnreadableBody::Strictest,
            Some(other) => {
                return Err(ConfigError::new(
                    "unreadable_body",
                    format!("must be \"refuse\" or \"strictest\", got \"{other}\""),
                ))
            }
        };
        let counters = match raw.counters {
            None => CounterConfig {
                cas_attempts: DEFAULT_CAS_ATTEMPTS,
                max_counters: DEFAULT_MAX_COUNTERS,
                on_error: FailPolicy::Open,
                redis: None,
                seed: crate::table::Seed::ZERO,
            },
            Some(c) => CounterConfig {
                seed: crate::table::Seed::ZERO,
                redis: check_store(c.store.as_deref(), c.redis.as_ref())?,
                cas_attempts: match c.cas_attempts {
                    None => DEFAULT_CAS_ATTEMPTS,
                    Some(n @ 1..=1000) => n,
                    Some(n) => {
                        return Err(ConfigError::new(
                            "counters.cas_attempts",
                            format!("must be between 1 and 1000, got {n}"),
                        ))
                    }
                },
                max_counters: match c.max_counters {
                    None => DEFAULT_MAX_COUNTERS,
                    Some(n) => u32::try_from(n)
                        .ok()
                        .filter(|n| (MIN_MAX_COUNTERS..=MAX_MAX_COUNTERS).contains(n))
                        .ok_or_else(|| {
                            ConfigError::new(
                                "counters.max_counters",
                                format!("must be between {MIN_MAX_COUNTERS} and {MAX_MAX_COUNTERS}, got {n}"),
                            )
                        })?,
                },
                on_error: match c.on_error.as_deref() {
                    None | Some("fail_open") => FailPolicy::Open,
                    Some("fail_closed") => FailPolicy::Closed,
                    Some(other) => {
                        return Err(ConfigError::new(
                            "counters.on_error",
                            format!("must be \"fail_open\" or \"fail_closed\", got \"{other}\""),
                        ))
                    }
                },
            },
        };
        let hold_headers_for_body = raw.hold_headers_for_body.unwrap_or(false);
        let body_needs: Vec<BodyNeeds> =
            classes.iter().enumerate().map(|(i, c)| body_needs(c, ClassId(i), &tiers)).collect();
        // Headers can only be set before they leave: a class decided once its
        // body is read needs them held if a cell sets a request header.
        for (tier, name) in tiers.iter().zip(&tier_names) {
            for ((class, cell), needs) in classes.iter().zip(&tier.cells).zip(&body_needs) {
                let Cell::Limited(l) = cell else { continue };
                let sets_header = l.degrade.as_ref().is_some_and(|d| d.header.is_some()) || l.queue.is_some();
                let body_decided = class.rules.iter().any(|r| !r.body.is_empty()) || needs.read || needs.rewrite;
                if sets_header && body_decided && !hold_headers_for_body {
                    return Err(ConfigError::new(
                        format!("tiers.{name}.limits.{}", class.name),
                        "sets a request header for a class decided from the body: needs \"hold_headers_for_body\": true",
                    ));
                }
            }
        }
        let copy = check_copy("copy", raw.copy.as_ref())?;
        let observability = check_observability(raw.observability.as_ref())?;
        let response_headers = ResponseHeaders {
            ratelimit: raw.response_headers.as_ref().and_then(|h| h.ratelimit).unwrap_or(true),
            quota: raw.response_headers.as_ref().and_then(|h| h.quota).unwrap_or(true),
        };
        Ok(Config {
            identity,
            calendar,
            classes,
            default_class,
            tiers,
            usage_endpoint,
            usage_reads,
            max_body_bytes,
            unreadable_body,
            hold_headers_for_body,
            counters,
            response_headers,
            copy,
            observability,
            admin: check_admin(raw.admin.as_ref(), usage_endpoint_for_admin.as_deref())?,
            refunds: crate::refund::RefundPolicy::from_raw(raw.refunds.as_ref())?,
            body_needs,
        })
        .and_then(|config| {
            if config.admin.is_some() && config.counters.approximate_redis().is_some() {
                // A grant balance spent on many Envoys at once needs one exact copy.
                return Err(ConfigError::new(
                    "counters.redis.mode",
                    "\"approximate\" cannot be used with \"admin\" grants: use \"exact\"",
                ));
            }
            Ok(config)
        })
    }
}

/// Members of one workspace on different plans share one pooled counter per
/// class (the key names the workspace and the class, not the tier), and a
/// counter whose window kind changes starts over: a class pooled in two
/// tiers with different windows would let one plan's members reset the
/// other's pool. So every tier that pools a class must give it one window.
fn check_pooled_windows(classes: &[Class], tiers: &[Tier]) -> Result<(), ConfigError> {
    for (i, class) in classes.iter().enumerate() {
        let mut first: Option<(&str, &Limits)> = None;
        for tier in tiers {
            let Some(Cell::Limited(l)) = tier.cells.get(i) else { continue };
            if l.scope != Scope::Workspace {
                continue;
            }
            match first {
                None => first = Some((&tier.name, l)),
                Some((other, o)) if o.window != l.window => {
                    return Err(ConfigError::new(
                        format!("{}.window", join(&join(&join("tiers", &tier.name), "limits"), &class.name)),
                        format!(
                            "must be the same as in tier \"{other}\" (\"{}\"): both pool \"{}\" by workspace, and \
                             members of one workspace share that counter whatever their plan",
                            o.window_name, class.name
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Deserialises a nested value, prefixing error paths with `path`.
pub(super) fn deserialize_at<T: serde::de::DeserializeOwned>(path: &str, value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = if inner == "." { path.to_string() } else { join(path, &inner) };
        ConfigError::new(full, e.into_inner().to_string())
    })
}

/// Names appear in keys, headers and metrics: keep them plain.
fn check_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(path, format!("\"{name}\" must be 1 to 64 characters of a-z, 0-9, '_' or '-'")))
    }
}

/// Copy ends up in header values: no control characters, bounded length.
fn check_text(path: &str, text: &Option<String>) -> Result<(), ConfigError> {
    match text {
        Some(t) if t.trim().is_empty() || t.len() > 1000 || t.chars().any(char::is_control) => {
            Err(ConfigError::new(path, "must be 1 to 1000 characters without line breaks or control characters"))
        }
        _ => Ok(()),
    }
}

fn check_class(path: &str, raw: &RawClass) -> Result<Class, ConfigError> {
    check_name(&join(path, "name"), &raw.name)?;
    check_text(&join(path, "label"), &raw.label)?;
    check_text(&join(path, "unit"), &raw.unit)?;
    check_text(&join(path, "units"), &raw.units)?;
    let label = raw.label.clone().unwrap_or_else(|| raw.name.replace(['_', '-'], " "));
    let units = raw.units.clone().or_else(|| raw.unit.as_ref().map(|u| format!("{u}s"))).unwrap_or_else(|| {
        // "deep_research" → "deep research requests"
        format!("{} requests", raw.name.replace(['_', '-'], " "))
    });
    let unit = raw.unit.clone().unwrap_or_else(|| format!("{} request", raw.name.replace(['_', '-'], " ")));
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| check_rule(&format!("{path}.match[{i}]"), r))
        .collect::<Result<Vec<_>, _>>()?;
    let cost = check_cost(&join(path, "cost"), raw.cost.as_ref())?;
    let copy = check_copy(&join(path, "copy"), raw.copy.as_ref())?;
    Ok(Class {
        name: raw.name.clone(),
        label,
        unit,
        units,
        rules,
        cost: cost.0,
        models: cost.1,
        cost_fallback: cost.2,
        copy,
    })
}

/// A class's cost rule, model multipliers and fallback.
type CostParts = (Cost, Vec<(String, f64)>, u64);

fn check_cost(path: &str, raw: Option<&RawCost>) -> Result<CostParts, ConfigError> {
    let Some(raw) = raw else { return Ok((Cost::Fixed(1), Vec::new(), 1)) };
    let chosen = [raw.fixed.is_some(), raw.records.is_some(), raw.bytes.is_some(), raw.tokens.is_some()];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err(ConfigError::new(path, "must set one of \"fixed\", \"records\", \"bytes\" or \"tokens\""));
    }
    let cost = if let Some(n) = raw.fixed {
        if n == 0 {
            return Err(ConfigError::new(join(path, "fixed"), "must be greater than 0"));
        }
        Cost::Fixed(n)
    } else if let Some(r) = &raw.records {
        let field = match &r.field {
            None => None,
            Some(f) if f.is_empty() || f.split('.').any(str::is_empty) => {
                return Err(ConfigError::new(join(path, "records.field"), format!("\"{f}\" is not a dotted path")))
            }
            Some(f) => Some(f.split('.').map(str::to_string).collect()),
        };
        let jsonl = r.jsonl.unwrap_or(false);
        if jsonl && field.is_some() {
            return Err(ConfigError::new(join(path, "records"), "set \"field\" (a JSON array) or \"jsonl\", not both"));
        }
        Cost::Records { field, jsonl }
    } else if let Some(b) = &raw.bytes {
        match b.per {
            Some(0) => return Err(ConfigError::new(join(path, "bytes.per"), "must be greater than 0")),
            per => Cost::Bytes { per: per.unwrap_or(1) },
        }
    } else if let Some(t) = &raw.tokens {
        Cost::Tokens {
            default_max_tokens: t.default_max_tokens.unwrap_or(256),
            reconcile: t.reconcile.unwrap_or(true),
            include_usage: t.include_usage.unwrap_or(true),
        }
    } else if raw.models.is_some() {
        Cost::Fixed(1)
    } else {
        return Err(ConfigError::new(path, "must set a cost rule, e.g. {\"fixed\": 1}"));
    };
    let mut models = Vec::new();
    for (name, m) in raw.models.iter().flatten() {
        if !(m.is_finite() && *m > 0.0 && *m <= 1_000_000.0) {
            return Err(ConfigError::new(
                format!("{path}.models.{name}"),
                format!("must be a positive multiplier, got {m}"),
            ));
        }
        models.push((name.clone(), *m));
    }
    // Exact names before prefixes, longer prefixes first: the most specific wins.
    models.sort_by_key(|(n, _)| (n.ends_with('*'), std::cmp::Reverse(n.len())));
    let fallback = match raw.fallback {
        Some(0) => return Err(ConfigError::new(join(path, "fallback"), "must be greater than 0")),
        f => f.unwrap_or(1),
    };
    Ok((cost, models, fallback))
}

fn check_header_value(path: &str, raw: &RawHeaderValue) -> Result<(String, String), ConfigError> {
    let name = check_header_name(&join(path, "name"), &raw.name)?;
    if name.starts_with(':') || name == "host" || name == "content-length" {
        return Err(ConfigError::new(join(path, "name"), format!("\"{name}\" cannot be set by the filter")));
    }
    check_text(&join(path, "value"), &Some(raw.value.clone()))?;
    Ok((name, raw.value.clone()))
}

fn check_rule(path: &str, raw: &RawRule) -> Result<Rule, ConfigError> {
    let methods = raw
        .methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                Err(ConfigError::new(format!("{path}.methods[{i}]"), format!("\"{m}\" is not an HTTP method")))
            } else {
                Ok(m.to_ascii_uppercase())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path_match = raw.path.as_ref().map(|p| check_path_match(&join(path, "path"), p)).transpose()?;
    let headers = raw
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| check_header_cond(&format!("{path}.headers[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    let body = raw
        .body
        .iter()
        .enumerate()
        .map(|(i, b)| check_body_cond(&format!("{path}.body[{i}]"), b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule { methods, path: path_match, headers, body })
}

fn check_path_match(path: &str, raw: &RawPath) -> Result<PathMatch, ConfigError> {
    let chosen: Vec<(&str, &String)> = [("exact", &raw.exact), ("prefix", &raw.prefix), ("glob", &raw.glob)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
    let [(kind, value)] = chosen.as_slice() else {
        return Err(ConfigError::new(path, "must set exactly one of \"exact\", \"prefix\" or \"glob\""));
    };
    let at = join(path, kind);
    if !value.starts_with('/') {
        return Err(ConfigError::new(at, format!("must start with '/', got \"{value}\"")));
    }
    // Requests are matched by their normalised path (`crate::path`), so
    // patterns are normalised the same way; a prefix keeps its trailing '/'
    // so that `/v1/files/` does not start matching `/v1/filesystem`.
    let normalized = normalize_path(value.as_bytes());
    Ok(match *kind {
        "exact" => PathMatch::Exact(normalized),
        "prefix" if value.ends_with('/') && normalized != "/" => PathMatch::Prefix(normalized + "/"),
        "prefix" => PathMatch::Prefix(normalized),
        _ => PathMatch::Glob(Glob::new(&normalized).map_err(|reason| ConfigError::new(at, reason))?),
    })
}

fn check_header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        && !name.get(1..).is_some_and(|rest| rest.contains(':'));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ConfigError::new(path, format!("\"{name}\" is not a header name")))
    }
}

fn check_header_cond(path: &str, raw: &RawHeaderCond) -> Result<HeaderCond, ConfigError> {
    let name = check_header_name(&join(path, "name"), &raw.name)?;
    let mut tests = Vec::new();
    if let Some(v) = &raw.equals {
        tests.push(TextTest::Equals(v.clone()));
    }
    if let Some(v) = &raw.one_of {
        tests.push(TextTest::OneOf(v.clone()));
    }
    if let Some(v) = &raw.prefix {
        tests.push(TextTest::Prefix(v.clone()));
    }
    if let Some(v) = raw.exists {
        tests.push(TextTest::Exists(v));
    }
    match <[TextTest; 1]>::try_from(tests) {
        Ok([test]) => Ok(HeaderCond { name, test }),
        Err(_) => {
            Err(ConfigError::new(path, "must set exactly one of \"equals\", \"one_of\", \"prefix\" or \"exists\""))
        }
    }
}

fn check_body_cond(path: &str, raw: &RawBodyCond) -> Result<BodyCond, ConfigError> {
    let field: Vec<String> = raw.field.split('.').map(str::to_string).collect();
    if raw.field.is_empty() || field.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            join(path, "field"),
            format!("\"{}\" must be a dotted path like \"model\" or \"metadata.feature\"", raw.field),
        ));
    }
    let compare = [raw.gt, raw.gte, raw.lt, raw.lte];
    let mut tests = Vec::new();
    if let Some(v) = &raw.equals {
        tests.push(ValueTest::Equals(v.clone()));
    }
    if let Some(v) = &raw.one_of {
        tests.push(ValueTest::OneOf(v.clone()));
    }
    if let Some(v) = &raw.prefix {
        tests.push(ValueTest::Prefix(v.clone()));
    }
    if let Some(v) = raw.exists {
        tests.push(ValueTest::Exists(v));
    }
    if compare.iter().any(Option::is_some) {
        if compare.iter().flatten().any(|n| !n.is_finite()) {
            return Err(ConfigError::new(path, "comparison bounds must be finite numbers"));
        }
        tests.push(ValueTest::Compare { gt: raw.gt, gte: raw.gte, lt: raw.lt, lte: raw.lte });
    }
    match <[ValueTest; 1]>::try_from(tests) {
        Ok([test]) => Ok(BodyCond { field, test }),
        Err(_) => Err(ConfigError::new(
            path,
            "must set exactly one test: \"equals\", \"one_of\", \"prefix\", \"exists\", or the comparisons \"gt\"/\"gte\"/\"lt\"/\"lte\"",
        )),
    }
}

fn check_tier(
    path: &str,
    index: usize,
    name: &str,
    raw: &RawTier,
    classes: &[Class],
    tier_names: &[String],
    tier_id: &dyn Fn(&str, &str) -> Result<TierId, ConfigError>,
) -> Result<Tier, ConfigError> {
    let limits_path = join(path, "limits");
    for key in raw.limits.keys() {
        if !classes.iter().any(|c| &c.name == key) {
            return Err(ConfigError::new(
                join(&limits_path, key),
                format!("no class named \"{key}\" (classes: {})", class_names(classes)),
            ));
        }
    }
    let cells = classes
        .iter()
        .map(|class| {
            let cell_path = join(&limits_path, &class.name);
            match raw.limits.get(&class.name) {
                None => Err(ConfigError::new(
                    cell_path,
                    "missing: every tier needs a cell for every class (use {\"included\": false} for a class the plan does not include)",
                )),
                Some(cell) => check_cell(&cell_path, cell),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let upgrade_to = match &raw.upgrade_to {
        Some(t) => Some(tier_id(&join(path, "upgrade_to"), t)?),
        None => (index + 1 < tier_names.len()).then_some(TierId(index + 1)),
    };
    if upgrade_to == Some(TierId(index)) {
        return Err(ConfigError::new(join(path, "upgrade_to"), "must name another tier"));
    }
    check_text(&join(path, "label"), &raw.label)?;
    if let Some(url) = &raw.upgrade_url {
        let plain = url.bytes().all(|b| b.is_ascii_graphic());
        if !plain || !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/')) {
            return Err(ConfigError::new(
                join(path, "upgrade_url"),
                format!("must be an http(s) URL or a path, got \"{url}\""),
            ));
        }
    }
    Ok(Tier {
        name: name.to_string(),
        label: raw.label.clone().unwrap_or_else(|| capitalise(name)),
        upgrade_url: raw.upgrade_url.clone(),
        upgrade_to,
        cells,
        copy: check_copy(&join(path, "copy"), raw.copy.as_ref())?,
    })
}

fn check_cell(path: &str, raw: &RawCell) -> Result<Cell, ConfigError> {
    if raw.included == Some(false) {
        let extra = [
            ("soft", raw.soft.is_some()),
            ("hard", raw.hard.is_some()),
            ("window", raw.window.is_some()),
            ("scope", raw.scope.is_some()),
            ("past_soft", raw.past_soft.is_some()),
            ("at_hard", raw.at_hard.is_some()),
            ("warn_at", raw.warn_at.is_some()),
            ("confirm_above", raw.confirm_above.is_some()),
            ("degrade", raw.degrade.is_some()),
            ("overage", raw.overage.is_some()),
            ("queue", raw.queue.is_some()),
            ("pace", raw.pace.is_some()),
            ("copy", raw.copy.is_some()),
        ];
        if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(join(path, field), "has no meaning in a cell with \"included\": false"));
        }
        return Ok(Cell::NotIncluded);
    }
    let hard = match raw.hard {
        None => return Err(ConfigError::new(join(path, "hard"), "missing: the hard limit is required")),
        Some(0) => {
            return Err(ConfigError::new(
                join(path, "hard"),
                "must be greater than 0 (use {\"included\": false} for a class the plan does not include)",
            ))
        }
        Some(h) => h,
    };
    at_most_max_units(&join(path, "hard"), Some(hard))?;
    at_most_max_units(&join(path, "soft"), raw.soft)?;
    if let Some(soft) = raw.soft {
        if soft == 0 {
            return Err(ConfigError::new(join(path, "soft"), "must be greater than 0"));
        }
        if hard <= soft {
            return Err(ConfigError::new(join(path, "hard"), format!("must be greater than soft ({soft})")));
        }
    }
    let window_text = raw
        .window
        .as_deref()
        .ok_or_else(|| ConfigError::new(join(path, "window"), "missing: e.g. \"day\", \"month\" or \"5h\""))?;
    let window = parse_window(window_text).map_err(|reason| ConfigError::new(join(path, "window"), reason))?;
    let scope = match raw.scope.as_deref() {
        None | Some("user") => Scope::User,
        Some("workspace") => Scope::Workspace,
        Some(other) => {
            return Err(ConfigError::new(
                join(path, "scope"),
                format!("must be \"user\" or \"workspace\", got \"{other}\""),
            ))
        }
    };
    let past_soft = match raw.past_soft.as_deref() {
        None | Some("warn") => PastSoft::Warn,
        Some("degrade") => PastSoft::Degrade,
        Some(other) => {
            return Err(ConfigError::new(
                join(path, "past_soft"),
                format!("must be \"warn\" or \"degrade\", got \"{other}\""),
            ))
        }
    };
    let at_hard = match raw.at_hard.as_deref() {
        None | Some("block") => AtHard::Block,
        Some("warn") => AtHard::Warn,
        Some("degrade") => AtHard::Degrade,
        Some("overage") => AtHard::Overage,
        Some("queue") => AtHard::Queue,
        Some(other) => {
            return Err(ConfigError::new(
                join(path, "at_hard"),
                format!("must be one of \"block\", \"warn\", \"degrade\", \"overage\", \"queue\"; got \"{other}\""),
            ))
        }
    };
    let fractions = raw.warn_at.clone().unwrap_or_else(|| DEFAULT_WARN_AT.to_vec());
    if fractions.len() > 7 {
        return Err(ConfigError::new(join(path, "warn_at"), "at most 7 warning levels"));
    }
    let mut warn_levels: Vec<u64> = Vec::with_capacity(fractions.len() + 1);
    for (i, f) in fractions.iter().enumerate() {
        if !(f.is_finite() && *f > 0.0 && *f < 1.0) {
            return Err(ConfigError::new(
                format!("{path}.warn_at[{i}]"),
                format!("must be a fraction of the hard limit between 0 and 1 (exclusive), got {f}"),
            ));
        }
        // A level below 1 unit would warn before anything was used.
        warn_levels.push(((hard as f64) * f).ceil().max(1.0) as u64);
    }
    if let Some(soft) = raw.soft {
        warn_levels.push(soft);
    }
    // A level at or past the hard limit is the wall itself, not a warning.
    warn_levels.retain(|l| *l < hard);
    warn_levels.sort_unstable();
    warn_levels.dedup();
    if let Some(f) = raw.confirm_above {
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(ConfigError::new(
                join(path, "confirm_above"),
                format!("must be a fraction of what remains, above 0 and at most 1, got {f}"),
            ));
        }
    }
    let pace = match raw.pace {
        None => None,
        Some(p) => {
            for (field, value) in [("used", p.used), ("before", p.before)] {
                if !(value.is_finite() && value > 0.0 && value < 1.0) {
                    return Err(ConfigError::new(
                        format!("{path}.pace.{field}"),
                        format!("must be a fraction between 0 and 1 (exclusive), got {value}"),
                    ));
                }
            }
            Some(Pace { used: p.used, before: p.before })
        }
    };
    let degrades = past_soft == PastSoft::Degrade || at_hard == AtHard::Degrade;
    let degrade = match (&raw.degrade, degrades) {
        (None, true) => {
            return Err(ConfigError::new(
                join(path, "degrade"),
                "missing: a degrading cell needs {\"model\": \"...\"} and/or {\"header\": {...}}",
            ))
        }
        (Some(_), false) => {
            return Err(ConfigError::new(
                join(path, "degrade"),
                "has no meaning unless past_soft or at_hard is \"degrade\"",
            ))
        }
        (None, false) => None,
        (Some(d), true) => {
            let at = join(path, "degrade");
            if d.model.is_none() && d.header.is_none() {
                return Err(ConfigError::new(at, "must set \"model\" and/or \"header\""));
            }
            if let Some(m) = &d.model {
                check_text(&join(&at, "model"), &Some(m.clone()))?;
            }
            at_most_max_units(&join(&at, "limit"), d.limit)?;
            if d.limit.is_some() && at_hard != AtHard::Degrade {
                return Err(ConfigError::new(join(&at, "limit"), "only applies with \"at_hard\": \"degrade\""));
            }
            let header = d.header.as_ref().map(|h| check_header_value(&join(&at, "header"), h)).transpose()?;
            Some(Degrade { model: d.model.clone(), header, limit: d.limit })
        }
    };
    let overage_cap = match (&raw.overage, at_hard) {
        (Some(o), AtHard::Overage) => {
            at_most_max_units(&format!("{path}.overage.cap"), o.cap)?;
            o.cap
        }
        (None, _) => None,
        (Some(_), _) => {
            return Err(ConfigError::new(join(path, "overage"), "only applies with \"at_hard\": \"overage\""))
        }
    };
    let queue = match (&raw.queue, at_hard) {
        (_, AtHard::Queue) => {
            let q = raw.queue.as_ref();
            let header = match q.and_then(|q| q.header.as_ref()) {
                Some(h) => check_header_value(&format!("{path}.queue.header"), h)?,
                None => ("x-quota-deferred".to_string(), "1".to_string()),
            };
            at_most_max_units(&format!("{path}.queue.cap"), q.and_then(|q| q.cap))?;
            Some(Queue { header, cap: q.and_then(|q| q.cap) })
        }
        (None, _) => None,
        (Some(_), _) => return Err(ConfigError::new(join(path, "queue"), "only applies with \"at_hard\": \"queue\"")),
    };
    if past_soft == PastSoft::Degrade && raw.soft.is_none() {
        return Err(ConfigError::new(join(path, "soft"), "missing: \"past_soft\": \"degrade\" needs a soft limit"));
    }
    Ok(Cell::Limited(Limits {
        degrade,
        overage_cap,
        queue,
        confirm_above: raw.confirm_above,
        pace,
        copy: check_copy(&join(path, "copy"), raw.copy.as_ref())?,
        soft: raw.soft,
        hard,
        window,
        window_name: window_text.to_string(),
        scope,
        past_soft,
        at_hard,
        warn_levels,
    }))
}

/// Every stored count stays exact in the Redis script's doubles (see `units.rs`).
fn at_most_max_units(path: &str, value: Option<u64>) -> Result<(), ConfigError> {
    match value {
        Some(v) if v > MAX_UNITS => Err(ConfigError::new(path, format!("must be at most {MAX_UNITS}, got {v}"))),
        _ => Ok(()),
    }
}

fn check_admin(raw: Option<&RawAdmin>, usage_endpoint: Option<&str>) -> Result<Option<Admin>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if !raw.path.starts_with('/') {
        return Err(ConfigError::new("admin.path", format!("must be a path starting with '/', got \"{}\"", raw.path)));
    }
    let path = normalize_path(raw.path.as_bytes());
    if usage_endpoint == Some(path.as_str()) {
        return Err(ConfigError::new("admin.path", "must differ from usage_endpoint"));
    }
    if raw.secret.len() < 24 || !raw.secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new("admin.secret", "must be at least 24 printable characters without spaces"));
    }
    Ok(Some(Admin { path, secret: raw.secret.clone() }))
}

fn check_usage_reads(raw: Option<&RawUsageReads>, has_endpoint: bool) -> Result<UsageReads, ConfigError> {
    let Some(raw) = raw else { return Ok(UsageReads::default()) };
    if !has_endpoint {
        return Err(ConfigError::new("usage_reads", "only applies with a \"usage_endpoint\""));
    }
    let defaults = UsageReads::default();
    let bounded = |field: &str, value: Option<u64>, default: u32, max: u32| match value {
        None => Ok(default),
        Some(v) if (1..=u64::from(max)).contains(&v) => Ok(u32::try_from(v).unwrap_or(max)),
        Some(v) => {
            Err(ConfigError::new(format!("usage_reads.{field}"), format!("must be between 1 and {max}, got {v}")))
        }
    };
    Ok(UsageReads {
        per_minute: bounded("per_minute", raw.per_minute, defaults.per_minute, 60_000)?,
        burst: bounded("burst", raw.burst, defaults.burst, 1000)?,
        per_worker_per_second: bounded(
            "per_worker_per_second",
            raw.per_worker_per_second,
            defaults.per_worker_per_second,
            100_000,
        )?,
    })
}

fn check_observability(raw: Option<&RawObservability>) -> Result<Observability, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Observability {
            metrics: true,
            log_events: true,
            ids: IdPolicy::Plain,
            analytics: None,
            unidentified_events_per_second: DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND,
        });
    };
    let unidentified_events_per_second = match raw.unidentified_events_per_second {
        None => DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND,
        Some(n @ 0..=10_000) => u32::try_from(n).unwrap_or(10_000),
        Some(n) => {
            return Err(ConfigError::new(
                "observability.unidentified_events_per_second",
                format!("must be between 0 and 10000, got {n}"),
            ))
        }
    };
    let ids = match (raw.ids.as_deref(), &raw.id_salt) {
        (None | Some("plain"), None) => IdPolicy::Plain,
        (Some("omitted"), None) => IdPolicy::Omitted,
        (Some("hashed"), Some(salt)) if salt.len() >= 8 => IdPolicy::Hashed { salt: salt.clone() },
        (Some("hashed"), _) => {
            return Err(ConfigError::new(
                "observability.id_salt",
                "must be at least 8 characters when ids are \"hashed\"",
            ))
        }
        (None | Some("plain" | "omitted"), Some(_)) => {
            return Err(ConfigError::new("observability.id_salt", "only applies with \"ids\": \"hashed\""))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                "observability.ids",
                format!("must be \"plain\", \"hashed\" or \"omitted\", got \"{other}\""),
            ))
        }
    };
    let analytics = match &raw.analytics {
        None => None,
        Some(a) => {
            let at = |f: &str| format!("observability.analytics.{f}");
            if a.cluster.is_empty() || a.cluster.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ConfigError::new(at("cluster"), "must name an Envoy cluster"));
            }
            let path = a.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(ConfigError::new(at("path"), format!("must start with '/', got \"{path}\"")));
            }
            let bounded = |field: &str, value: Option<u64>, default: u64, max: u64| match value {
                None => Ok(default),
                Some(v) if (1..=max).contains(&v) => Ok(v),
                Some(v) => Err(ConfigError::new(at(field), format!("must be between 1 and {max}, got {v}"))),
            };
            Some(Analytics {
                cluster: a.cluster.clone(),
                path,
                authority: a.authority.clone().unwrap_or_else(|| a.cluster.clone()),
                timeout_ms: bounded("timeout_ms", a.timeout_ms, 1000, 60_000)?,
                max_in_flight: bounded("max_in_flight", a.max_in_flight.map(u64::from), 8, 1024)? as u32,
                max_queue: bounded("max_queue", a.max_queue.map(u64::from), 1000, 100_000)? as u32,
                flush_ms: bounded("flush_ms", a.flush_ms, 200, 60_000)?,
            })
        }
    };
    Ok(Observability {
        metrics: raw.metrics.unwrap_or(true),
        log_events: raw.log_events.unwrap_or(true),
        ids,
        analytics,
        unidentified_events_per_second,
    })
}

fn check_store(store: Option<&str>, redis: Option<&RawRedis>) -> Result<Option<RedisStore>, ConfigError> {
    let r = match (store, redis) {
        (None | Some("shared_data"), None) => return Ok(None),
        (None | Some("shared_data"), Some(_)) => {
            return Err(ConfigError::new("counters.redis", "is only read with \"store\": \"redis\""))
        }
        (Some("redis"), Some(r)) => r,
        (Some("redis"), None) => {
            return Err(ConfigError::new("counters.redis", "is required with \"store\": \"redis\""))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                "counters.store",
                format!("must be \"shared_data\" or \"redis\", got \"{other}\""),
            ))
        }
    };
    let at = |f: &str| format!("counters.redis.{f}");
    if r.cluster.is_empty() || r.cluster.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ConfigError::new(at("cluster"), "must name an Envoy cluster"));
    }
    let path = r.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        return Err(ConfigError::new(at("path"), format!("must start with '/', got \"{path}\"")));
    }
    if r.authorization.as_deref().is_some_and(|a| a.chars().any(char::is_control)) {
        return Err(ConfigError::new(at("authorization"), "must not contain control characters"));
    }
    let timeout_ms = match r.timeout_ms {
        None => 200,
        Some(v @ 1..=10_000) => v,
        Some(v) => return Err(ConfigError::new(at("timeout_ms"), format!("must be between 1 and 10000, got {v}"))),
    };
    let key_prefix = r.key_prefix.clone().unwrap_or_else(|| "quota:".into());
    if key_prefix.len() > 64 || key_prefix.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        return Err(ConfigError::new(at("key_prefix"), "must be at most 64 characters, without '{', '}' or controls"));
    }
    let sync_ms = match (r.mode.as_deref(), r.sync_ms) {
        (None | Some("exact"), None) => None,
        (None | Some("exact"), Some(_)) => {
            return Err(ConfigError::new(at("sync_ms"), "is only read with \"mode\": \"approximate\""))
        }
        (Some("approximate"), None) => Some(100),
        (Some("approximate"), Some(v @ 10..=60_000)) => Some(v),
        (Some("approximate"), Some(v)) => {
            return Err(ConfigError::new(at("sync_ms"), format!("must be between 10 and 60000, got {v}")))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(at("mode"), format!("must be \"exact\" or \"approximate\", got \"{other}\"")))
        }
    };
    Ok(Some(RedisStore {
        sync_ms,
        cluster: r.cluster.clone(),
        path,
        authority: r.authority.clone().unwrap_or_else(|| r.cluster.clone()),
        authorization: r.authorization.clone(),
        timeout_ms,
        key_prefix,
        script_sha1: crate::redis::sha1_hex(crate::redis::SCRIPT.as_bytes()),
    }))
}

fn check_copy(path: &str, raw: Option<&RawCopy>) -> Result<CopySet, ConfigError> {
    let Some(raw) = raw else {
        return Ok(CopySet::default());
    };
    let fields = [
        ("warning", Message::Warning, &raw.warning),
        ("blocked", Message::Blocked, &raw.blocked),
        ("not_included", Message::NotIncluded, &raw.not_included),
        ("confirm", Message::Confirm, &raw.confirm),
        ("pace", Message::Pace, &raw.pace),
        ("missing_identity", Message::MissingIdentity, &raw.missing_identity),
        ("invalid_credentials", Message::InvalidCredentials, &raw.invalid_credentials),
        ("unknown_tier", Message::UnknownTier, &raw.unknown_tier),
        ("unavailable", Message::Unavailable, &raw.unavailable),
        ("degraded", Message::Degraded, &raw.degraded),
        ("overage", Message::Overage, &raw.overage),
        ("queued", Message::Queued, &raw.queued),
        ("workspace_required", Message::WorkspaceRequired, &raw.workspace_required),
        ("too_large", Message::TooLarge, &raw.too_large),
        ("body_too_large", Message::BodyTooLarge, &raw.body_too_large),
        ("unreadable_body", Message::UnreadableBody, &raw.unreadable_body),
    ];
    let mut templates = Vec::new();
    for (name, message, text) in fields {
        let Some(text) = text else { continue };
        let at = join(path, name);
        check_text(&at, &Some(text.clone()))?;
        templates.push((message, Template::parse(text).map_err(|reason| ConfigError::new(at, reason))?));
    }
    Ok(CopySet { templates })
}

fn check_identity(
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
        tier: check_sources("identity.tier", &raw.tier)?,
        default_tier: tier_id("identity.default_tier", &raw.default_tier)?,
        unknown_tier,
        anonymous,
        max_id_bytes,
        missing_workspace,
    })
}

fn check_sources(path: &str, raw: &[RawSource]) -> Result<Vec<Source>, ConfigError> {
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

fn check_calendar(raw: Option<&RawCalendar>) -> Result<CalendarConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(CalendarConfig { alignment: Alignment::default(), user_utc_offset: Vec::new() });
    };
    let utc_offset_minutes = match &raw.utc_offset {
        None => 0,
        Some(text) => parse_utc_offset(text).ok_or_else(|| {
            ConfigError::new(
                "calendar.utc_offset",
                format!("\"{text}\" is not a UTC offset like \"+05:30\" or \"-08:00\""),
            )
        })?,
    };
    let week_start = match raw.week_starts_on.as_deref() {
        None => 0,
        Some(day) => WEEKDAYS.iter().position(|d| *d == day.to_ascii_lowercase()).ok_or_else(|| {
            ConfigError::new("calendar.week_starts_on", format!("\"{day}\" is not a day of the week, e.g. \"monday\""))
        })? as u32,
    };
    Ok(CalendarConfig {
        alignment: Alignment { utc_offset_minutes, week_start },
        user_utc_offset: check_sources("calendar.user_utc_offset", &raw.user_utc_offset)?,
    })
}

const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// Parses a window: a calendar unit (`minute`, `hour`, `day`, `week`,
/// `month`) or a first-use length (`90s`, `30m`, `5h`, `7d`).
pub fn parse_window(text: &str) -> Result<WindowSpec, String> {
    let calendar = match text {
        "minute" => Some(CalendarUnit::Minute),
        "hour" => Some(CalendarUnit::Hour),
        "day" => Some(CalendarUnit::Day),
        "week" => Some(CalendarUnit::Week),
        "month" => Some(CalendarUnit::Month),
        _ => None,
    };
    if let Some(unit) = calendar {
        return Ok(WindowSpec::Calendar(unit));
    }
    let bad = || {
        format!("\"{text}\" is not a window: use minute, hour, day, week, month, or a length like \"90s\", \"30m\", \"5h\", \"7d\"")
    };
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = (text.get(..split).ok_or_else(bad)?, text.get(split..).ok_or_else(bad)?);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = n
        .checked_mul(scale)
        .filter(|s| *s > 0 && *s <= MAX_FIRST_USE_SECONDS)
        .ok_or_else(|| format!("\"{text}\" must be between 1 second and 366 days"))?;
    Ok(WindowSpec::FirstUse { seconds })
}

/// Parses `+05:30`, `-0800`, `+9`, `Z` or `UTC` into minutes east of UTC.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text == "Z" || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => (rest.get(..2)?, rest.get(2..)?),
        None => (rest, "0"),
    };
    if h.is_empty()
        || h.len() > 2
        || m.is_empty()
        || m.len() > 2
        || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 60 + m))
}

fn class_names(classes: &[Class]) -> String {
    classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn capitalise(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
