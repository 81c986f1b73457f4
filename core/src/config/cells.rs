//! One cell of the matrix (tier x class): its limits and window, and what
//! happens past the soft limit and at the hard one.

use super::calendar::parse_window;
use super::copy::{check_copy, CopySet};
use super::error::{join, ConfigError};
use super::fields::{at_most_max_units, check_header_value, check_text};
use super::raw::{RawCap, RawCell, RawCellEntry, RawDegrade, RawPace, RawQueue};
use crate::window::WindowSpec;

// One cell per tier x class, built once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Cell {
    /// The class is not part of this plan.
    NotIncluded,
    /// One limit, or several stacked (never empty): a request must fit every
    /// one and is charged to all of them.
    Limited(Vec<Limits>),
}

impl Cell {
    /// The cell's limits (none when the class is not included).
    pub fn limits(&self) -> &[Limits] {
        match self {
            Cell::NotIncluded => &[],
            Cell::Limited(stack) => stack,
        }
    }
}

/// The most limits one cell may stack.
pub const MAX_STACKED: usize = 6;

/// Whose counter a limit charges, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    User,
    /// Pooled by the caller's workspace; callers without one follow
    /// [`IdentityConfig::missing_workspace`].
    Workspace,
    /// Pooled by the caller's organisation (`identity.organisation`), with
    /// the same rule for callers without one.
    Organisation,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Workspace => "workspace",
            Scope::Organisation => "organisation",
        }
    }

    /// Whether the limit pools many users.
    pub fn pooled(&self) -> bool {
        *self != Scope::User
    }
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
    /// A workspace admin may set each member's own hard limit here (a `user`
    /// limit stacked with a workspace pool).
    pub admin_cap: bool,
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

pub const DEFAULT_WARN_AT: [f64; 2] = [0.7, 0.95];

/// `scale`: micro-units per number written, for a class metered in money
/// (its limits are written in the currency's minor units: 500 is $5.00);
/// 1 for a class counted in units.
pub(super) fn check_cell(path: &str, raw: &RawCellEntry, scale: u64) -> Result<Cell, ConfigError> {
    let raw = match raw {
        RawCellEntry::One(raw) if raw.included == Some(false) => return check_not_included(path, raw),
        RawCellEntry::One(raw) => return Ok(Cell::Limited(vec![scaled(path, check_limit(path, raw)?, scale)?])),
        RawCellEntry::Stack(raw) => raw,
    };
    if raw.is_empty() || raw.len() > MAX_STACKED {
        return Err(ConfigError::new(
            path,
            format!("a list of stacked limits must hold 1 to {MAX_STACKED} limits, got {}", raw.len()),
        ));
    }
    let mut stack = Vec::with_capacity(raw.len());
    for (i, limit) in raw.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if limit.included.is_some() {
            return Err(ConfigError::new(
                join(&at, "included"),
                "has no meaning in a stacked limit: write {\"included\": false} in place of the whole list",
            ));
        }
        stack.push(scaled(&at, check_limit(&at, limit)?, scale)?);
    }
    check_stack(path, &stack)?;
    Ok(Cell::Limited(stack))
}

/// `limits` in micro-units when its numbers were written in minor units of
/// a currency (`scale` micro-units each); unchanged for a scale of 1.
fn scaled(path: &str, mut l: Limits, scale: u64) -> Result<Limits, ConfigError> {
    if scale == 1 {
        return Ok(l);
    }
    let up = |field: &str, n: u64| {
        n.checked_mul(scale).filter(|m| *m <= crate::units::MAX_UNITS).ok_or_else(|| {
            ConfigError::new(join(path, field), format!("{n} minor units is more than the largest amount"))
        })
    };
    l.hard = up("hard", l.hard)?;
    l.soft = l.soft.map(|s| up("soft", s)).transpose()?;
    l.warn_levels = l.warn_levels.iter().map(|w| up("warn_at", *w)).collect::<Result<_, _>>()?;
    l.overage_cap = l.overage_cap.map(|c| up("overage.cap", c)).transpose()?;
    if let Some(d) = &mut l.degrade {
        d.limit = d.limit.map(|n| up("degrade.limit", n)).transpose()?;
    }
    if let Some(q) = &mut l.queue {
        q.cap = q.cap.map(|n| up("queue.cap", n)).transpose()?;
    }
    Ok(l)
}

/// What a stack must not say: two limits on one counter, a limit that can
/// never bind under a pool of the same window, a member cap without a pool.
fn check_stack(path: &str, stack: &[Limits]) -> Result<(), ConfigError> {
    for (i, l) in stack.iter().enumerate() {
        let at = format!("{path}[{i}]");
        for (j, other) in stack.iter().enumerate().take(i) {
            if other.scope == l.scope && other.window == l.window {
                return Err(ConfigError::new(
                    join(&at, "window"),
                    format!(
                        "limit [{j}] already counts \"{}\" per {}: two limits with one scope and window would be one counter",
                        l.window_name,
                        l.scope.as_str()
                    ),
                ));
            }
            let (narrow, wide, n) = if other.scope < l.scope { (other, l, j) } else { (l, other, i) };
            // Calendar windows only: first-use windows of two counters open
            // at different times, so a member's may overlap two of the pool's.
            let calendar = matches!(narrow.window, WindowSpec::Calendar(_));
            if narrow.scope < wide.scope && calendar && narrow.window == wide.window && narrow.hard > wide.hard {
                return Err(ConfigError::new(
                    format!("{path}[{n}].hard"),
                    format!(
                        "{} per {} can never bind: the {} pool of the same window holds only {}",
                        narrow.hard,
                        narrow.scope.as_str(),
                        wide.scope.as_str(),
                        wide.hard
                    ),
                ));
            }
        }
        if l.admin_cap && !(l.scope == Scope::User && stack.iter().any(|p| p.scope == Scope::Workspace)) {
            return Err(ConfigError::new(
                join(&at, "admin_cap"),
                "only applies to a \"user\" limit stacked with a \"workspace\" pool (the member's cap inside it)",
            ));
        }
    }
    if stack.iter().filter(|l| l.admin_cap).count() > 1 {
        return Err(ConfigError::new(path, "at most one limit may take an \"admin_cap\""));
    }
    Ok(())
}

/// One limit: a whole cell of today, or one entry of a stack.
fn check_limit(path: &str, raw: &RawCell) -> Result<Limits, ConfigError> {
    let hard = check_hard_and_soft(path, raw)?;
    let (window, window_text) = check_window(path, raw.window.as_deref())?;
    let scope = check_scope(path, raw.scope.as_deref())?;
    let past_soft = check_past_soft(path, raw.past_soft.as_deref())?;
    let at_hard = check_at_hard(path, raw.at_hard.as_deref())?;
    let warn_levels = check_warn_levels(path, raw.warn_at.as_deref(), raw.soft, hard)?;
    check_confirm_above(path, raw.confirm_above)?;
    let pace = check_pace(path, raw.pace)?;
    let degrade = check_degrade(path, raw.degrade.as_ref(), past_soft, at_hard)?;
    let overage_cap = check_overage(path, raw.overage.as_ref(), at_hard)?;
    let queue = check_queue(path, raw.queue.as_ref(), at_hard)?;
    if past_soft == PastSoft::Degrade && raw.soft.is_none() {
        return Err(ConfigError::new(join(path, "soft"), "missing: \"past_soft\": \"degrade\" needs a soft limit"));
    }
    Ok(Limits {
        admin_cap: raw.admin_cap == Some(true),
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
    })
}

/// A class the plan does not include: any other field is a mistake.
fn check_not_included(path: &str, raw: &RawCell) -> Result<Cell, ConfigError> {
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
        ("admin_cap", raw.admin_cap.is_some()),
    ];
    if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
        return Err(ConfigError::new(join(path, field), "has no meaning in a cell with \"included\": false"));
    }
    Ok(Cell::NotIncluded)
}

/// The hard limit (required, above 0) and the soft limit below it.
fn check_hard_and_soft(path: &str, raw: &RawCell) -> Result<u64, ConfigError> {
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
    Ok(hard)
}

/// The window, parsed, and as written.
fn check_window<'a>(path: &str, window: Option<&'a str>) -> Result<(WindowSpec, &'a str), ConfigError> {
    let window_text =
        window.ok_or_else(|| ConfigError::new(join(path, "window"), "missing: e.g. \"day\", \"month\" or \"5h\""))?;
    let window = parse_window(window_text).map_err(|reason| ConfigError::new(join(path, "window"), reason))?;
    Ok((window, window_text))
}

fn check_scope(path: &str, scope: Option<&str>) -> Result<Scope, ConfigError> {
    match scope {
        None | Some("user") => Ok(Scope::User),
        Some("workspace") => Ok(Scope::Workspace),
        Some("organisation" | "org") => Ok(Scope::Organisation),
        Some(other) => Err(ConfigError::new(
            join(path, "scope"),
            format!("must be \"user\", \"workspace\" or \"organisation\", got \"{other}\""),
        )),
    }
}

fn check_past_soft(path: &str, past_soft: Option<&str>) -> Result<PastSoft, ConfigError> {
    match past_soft {
        None | Some("warn") => Ok(PastSoft::Warn),
        Some("degrade") => Ok(PastSoft::Degrade),
        Some(other) => {
            Err(ConfigError::new(join(path, "past_soft"), format!("must be \"warn\" or \"degrade\", got \"{other}\"")))
        }
    }
}

fn check_at_hard(path: &str, at_hard: Option<&str>) -> Result<AtHard, ConfigError> {
    match at_hard {
        None | Some("block") => Ok(AtHard::Block),
        Some("warn") => Ok(AtHard::Warn),
        Some("degrade") => Ok(AtHard::Degrade),
        Some("overage") => Ok(AtHard::Overage),
        Some("queue") => Ok(AtHard::Queue),
        Some(other) => Err(ConfigError::new(
            join(path, "at_hard"),
            format!("must be one of \"block\", \"warn\", \"degrade\", \"overage\", \"queue\"; got \"{other}\""),
        )),
    }
}

/// The usage levels that start a warning: each `warn_at` fraction of the
/// hard limit and the soft limit, below the hard limit, ascending.
fn check_warn_levels(
    path: &str,
    warn_at: Option<&[f64]>,
    soft: Option<u64>,
    hard: u64,
) -> Result<Vec<u64>, ConfigError> {
    let fractions = warn_at.map(<[f64]>::to_vec).unwrap_or_else(|| DEFAULT_WARN_AT.to_vec());
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
    if let Some(soft) = soft {
        warn_levels.push(soft);
    }
    // A level at or past the hard limit is the wall itself, not a warning.
    warn_levels.retain(|l| *l < hard);
    warn_levels.sort_unstable();
    warn_levels.dedup();
    Ok(warn_levels)
}

fn check_confirm_above(path: &str, confirm_above: Option<f64>) -> Result<(), ConfigError> {
    if let Some(f) = confirm_above {
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(ConfigError::new(
                join(path, "confirm_above"),
                format!("must be a fraction of what remains, above 0 and at most 1, got {f}"),
            ));
        }
    }
    Ok(())
}

fn check_pace(path: &str, pace: Option<RawPace>) -> Result<Option<Pace>, ConfigError> {
    let Some(p) = pace else { return Ok(None) };
    for (field, value) in [("used", p.used), ("before", p.before)] {
        if !(value.is_finite() && value > 0.0 && value < 1.0) {
            return Err(ConfigError::new(
                format!("{path}.pace.{field}"),
                format!("must be a fraction between 0 and 1 (exclusive), got {value}"),
            ));
        }
    }
    Ok(Some(Pace { used: p.used, before: p.before }))
}

/// `degrade` is required exactly when `past_soft` or `at_hard` degrades.
fn check_degrade(
    path: &str,
    raw: Option<&RawDegrade>,
    past_soft: PastSoft,
    at_hard: AtHard,
) -> Result<Option<Degrade>, ConfigError> {
    let degrades = past_soft == PastSoft::Degrade || at_hard == AtHard::Degrade;
    match (raw, degrades) {
        (None, true) => Err(ConfigError::new(
            join(path, "degrade"),
            "missing: a degrading cell needs {\"model\": \"...\"} and/or {\"header\": {...}}",
        )),
        (Some(_), false) => {
            Err(ConfigError::new(join(path, "degrade"), "has no meaning unless past_soft or at_hard is \"degrade\""))
        }
        (None, false) => Ok(None),
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
            Ok(Some(Degrade { model: d.model.clone(), header, limit: d.limit }))
        }
    }
}

fn check_overage(path: &str, raw: Option<&RawCap>, at_hard: AtHard) -> Result<Option<u64>, ConfigError> {
    match (raw, at_hard) {
        (Some(o), AtHard::Overage) => {
            at_most_max_units(&format!("{path}.overage.cap"), o.cap)?;
            Ok(o.cap)
        }
        (None, _) => Ok(None),
        (Some(_), _) => Err(ConfigError::new(join(path, "overage"), "only applies with \"at_hard\": \"overage\"")),
    }
}

fn check_queue(path: &str, raw: Option<&RawQueue>, at_hard: AtHard) -> Result<Option<Queue>, ConfigError> {
    match (raw, at_hard) {
        (q, AtHard::Queue) => {
            let header = match q.and_then(|q| q.header.as_ref()) {
                Some(h) => check_header_value(&format!("{path}.queue.header"), h)?,
                None => ("x-quota-deferred".to_string(), "1".to_string()),
            };
            at_most_max_units(&format!("{path}.queue.cap"), q.and_then(|q| q.cap))?;
            Ok(Some(Queue { header, cap: q.and_then(|q| q.cap) }))
        }
        (None, _) => Ok(None),
        (Some(_), _) => Err(ConfigError::new(join(path, "queue"), "only applies with \"at_hard\": \"queue\"")),
    }
}
