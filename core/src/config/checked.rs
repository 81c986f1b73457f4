//! Stage two of the config: meaning. The checked configuration the filter
//! runs on, composed from the parts checked in the sibling modules; every
//! error names its JSON path.

use super::body::{
    body_keys, body_needs, check_held_headers, check_max_body_bytes, check_unreadable_body, BodyKeys, BodyNeeds,
    UnreadableBody,
};
use super::calendar::{check_calendar, CalendarConfig};
use super::cells::{Cell, Scope};
use super::classes::{check_classes, class_id, Class, ClassId};
use super::copy::{check_copy, check_response_headers, CopySet, ResponseHeaders};
use super::counters::{check_counters, CounterConfig};
use super::endpoints::{check_admin, check_usage_endpoint, check_usage_reads, Admin, UsageReads};
use super::error::ConfigError;
use super::identity::{check_identity, IdentityConfig};
use super::observability::{check_observability, Observability};
use super::prices::{check_prices, Prices};
use super::raw::RawConfig;
use super::tiers::{check_pooled_windows, check_tiers, tier_id, tier_names, Tier, TierId};

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
    /// The members of a JSON request body the filter reads (see `body.rs`).
    pub body_keys: BodyKeys,
    /// Which endings of an admitted request give its units back.
    pub refunds: crate::refund::RefundPolicy,
    /// What models cost, for classes metered in money (not used yet).
    pub prices: Option<Prices>,
    /// Which upstream answers are rewritten as "busy, not your quota".
    pub upstream_busy: crate::busy::BusyPolicy,
}

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

    /// How many of the units a class counts one number written for it is: 1
    /// for a class counted in units; for a class in money, the micro-units
    /// of one minor unit (10,000 for a cent). Limits, grants and member caps
    /// are written in these numbers.
    pub fn scale_of(&self, class: ClassId) -> u64 {
        self.currency_of(class).map_or(1, crate::money::micros_per_minor)
    }

    /// The currency of a class metered in money (`None`: counted in units).
    pub fn currency_of(&self, class: ClassId) -> Option<&crate::money::Currency> {
        self.class(class).filter(|c| c.in_money()).and(self.prices.as_ref()).map(Prices::currency)
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

/// A limit pooled by organisation needs a source for the organisation id,
/// and the approximate mode syncs one counter per request, not a stack
/// (Redis's exact mode charges a stack in one script call, a member cap
/// with it when the stack is tagged by the workspace).
fn check_stack_sources(
    classes: &[Class],
    tiers: &[Tier],
    tier_names: &[String],
    identity: &IdentityConfig,
    counters: &CounterConfig,
) -> Result<(), ConfigError> {
    for (tier, name) in tiers.iter().zip(tier_names) {
        for (class, cell) in classes.iter().zip(&tier.cells) {
            let path = format!("tiers.{name}.limits.{}", class.name);
            let stack = cell.limits();
            if let Some(i) = stack.iter().position(|l| l.scope == Scope::Organisation) {
                if identity.organisation.is_empty() {
                    let at = if stack.len() > 1 { format!("{path}[{i}].scope") } else { format!("{path}.scope") };
                    return Err(ConfigError::new(
                        at,
                        "pools by organisation, but \"identity.organisation\" names no source for the organisation id",
                    ));
                }
            }
            // In Redis a member's cap shares the workspace's hash slot (see
            // member_cap::redis_key); an organisation's pool puts the stack's
            // counters in the organisation's, out of one call's reach.
            let capped = stack.iter().position(|l| l.admin_cap);
            let pooled_by_organisation = stack.iter().any(|l| l.scope == Scope::Organisation);
            if let (Some(i), true, Some(_)) = (capped, pooled_by_organisation, counters.exact_redis()) {
                return Err(ConfigError::new(
                    format!("{path}[{i}].admin_cap"),
                    "with counters in Redis a member cap is kept in the workspace's hash slot, and an \"organisation\" pool keeps this stack's counters in the organisation's: not both in one stack",
                ));
            }
            if stack.len() > 1 && counters.approximate_redis().is_some() {
                return Err(ConfigError::new(
                    path,
                    "stacked limits need exact counters: \"counters.redis.mode\": \"approximate\" syncs one counter per request",
                ));
            }
            if stack.len() > 1 && counters.lease().is_some() {
                return Err(ConfigError::new(
                    path,
                    "stacked limits need exact counters: \"counters.redis.mode\": \"lease\" reserves blocks of one counter per request",
                ));
            }
        }
    }
    Ok(())
}

/// Micro-units per number a cell of each class writes: 1 for a class
/// counted in units; for a class metered in money (its limits in the
/// currency's minor units: 500 is $5.00), 10^(6 - minor digits). A class in
/// money needs the `prices` table, which names the currency.
fn money_scales(classes: &[Class], prices: Option<&Prices>) -> Result<Vec<u64>, ConfigError> {
    classes
        .iter()
        .enumerate()
        .map(|(i, class)| match (class.in_money(), prices) {
            (false, _) => Ok(1),
            (true, None) => Err(ConfigError::new(
                format!("classes[{i}].cost"),
                "is metered in money, but the config has no \"prices\" table to name its currency",
            )),
            (true, Some(p)) => Ok(crate::money::micros_per_minor(p.currency())),
        })
        .collect()
}

/// Every model a `price` class can be served with has a price: without a
/// `default`, each class's rules must name its models (`model` equals or
/// one of), and each must be in the table, as must each cheaper model a
/// cell degrades to.
fn check_priced_models(classes: &[Class], tiers: &[Tier], prices: Option<&Prices>) -> Result<(), ConfigError> {
    let Some(prices) = prices else { return Ok(()) };
    if prices.default_price().is_some() {
        return Ok(());
    }
    for (i, class) in classes.iter().enumerate() {
        if !matches!(class.cost, super::costs::Cost::Priced { .. }) {
            continue;
        }
        let mut named: Vec<String> = Vec::new();
        for (r, rule) in class.rules.iter().enumerate() {
            let pinned = rule.body.iter().find_map(|cond| match (&cond.field[..], &cond.test) {
                ([f], super::rules::ValueTest::Equals(v)) if f == "model" => Some(vec![v.clone()]),
                ([f], super::rules::ValueTest::OneOf(vs)) if f == "model" => Some(vs.clone()),
                _ => None,
            });
            let Some(models) = pinned else {
                return Err(ConfigError::new(
                    format!("classes[{i}].match[{r}]"),
                    "may route any model to a class priced by the prices table, which has no \"default\": \
                     name its models (a body condition on \"model\") or give prices a default",
                ));
            };
            named.extend(models.iter().filter_map(|m| m.as_str().map(str::to_string)));
        }
        if class.rules.is_empty() {
            return Err(ConfigError::new(
                format!("classes[{i}].cost.price"),
                "a class without match rules may see any model, and prices has no \"default\"",
            ));
        }
        for tier in tiers {
            for l in tier.cells.get(i).map_or(&[][..], |c| c.limits()) {
                named.extend(l.degrade.as_ref().and_then(|d| d.model.clone()));
            }
        }
        if let Some(model) = named.iter().find(|m| prices.price_of(Some(m)).is_none()) {
            return Err(ConfigError::new(
                format!("classes[{i}].cost.price"),
                format!("\"{model}\" can be served in this class, but prices has no entry for it (nor a default)"),
            ));
        }
    }
    Ok(())
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    /// Checks each part in turn; the first refusal names its JSON path.
    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let classes = check_classes(&raw.classes)?;
        let default_class = raw.default_class.as_deref().map(|n| class_id(&classes, "default_class", n)).transpose()?;
        let tier_names = tier_names(&raw.tiers, raw.tier_order.as_deref())?;
        let prices = check_prices(raw.prices.as_ref())?;
        let scales = money_scales(&classes, prices.as_ref())?;
        let tiers = check_tiers(&raw.tiers, &classes, &tier_names, &scales)?;
        check_priced_models(&classes, &tiers, prices.as_ref())?;
        check_pooled_windows(&classes, &tiers)?;
        let identity = check_identity(&raw.identity, &|path, name| tier_id(&tier_names, path, name))?;
        let calendar = check_calendar(raw.calendar.as_ref())?;
        let usage_endpoint = check_usage_endpoint(raw.usage_endpoint)?;
        let max_body_bytes = check_max_body_bytes(raw.max_body_bytes)?;
        let usage_reads = check_usage_reads(raw.usage_reads.as_ref(), usage_endpoint.is_some())?;
        let unreadable_body = check_unreadable_body(raw.unreadable_body.as_deref())?;
        let counters = check_counters(raw.counters.as_ref())?;
        let hold_headers_for_body = raw.hold_headers_for_body.unwrap_or(false);
        let body_needs: Vec<BodyNeeds> =
            classes.iter().enumerate().map(|(i, c)| body_needs(c, ClassId(i), &tiers)).collect();
        check_held_headers(&classes, &tiers, &tier_names, &body_needs, hold_headers_for_body)?;
        let body_keys = body_keys(&classes);
        let copy = check_copy("copy", raw.copy.as_ref())?;
        let observability = check_observability(raw.observability.as_ref())?;
        let response_headers = check_response_headers(raw.response_headers.as_ref());
        let admin = check_admin(raw.admin.as_ref(), usage_endpoint.as_deref())?;
        let refunds = crate::refund::RefundPolicy::from_raw(raw.refunds.as_ref())?;
        let upstream_busy = crate::busy::BusyPolicy::from_raw(raw.upstream_busy.as_ref())?;
        check_stack_sources(&classes, &tiers, &tier_names, &identity, &counters)?;
        if admin.is_none() {
            for (tier, name) in tiers.iter().zip(&tier_names) {
                for (class, cell) in classes.iter().zip(&tier.cells) {
                    if let Some(i) = cell.limits().iter().position(|l| l.admin_cap) {
                        return Err(ConfigError::new(
                            format!("tiers.{name}.limits.{}[{i}].admin_cap", class.name),
                            "member caps are set through the admin endpoint: configure \"admin\"",
                        ));
                    }
                }
            }
        }
        if admin.is_some() && counters.approximate_redis().is_some() {
            // A grant balance spent on many Envoys at once needs one exact copy.
            return Err(ConfigError::new(
                "counters.redis.mode",
                "\"approximate\" cannot be used with \"admin\" grants: use \"exact\"",
            ));
        }
        if admin.is_some() && counters.lease().is_some() {
            // Blocks are reserved from the plan; a grant balance is spent by one exact copy.
            return Err(ConfigError::new(
                "counters.redis.mode",
                "\"lease\" cannot be used with \"admin\" grants: use \"exact\"",
            ));
        }
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
            admin,
            refunds,
            body_needs,
            body_keys,
            prices,
            upstream_busy,
        })
    }
}
