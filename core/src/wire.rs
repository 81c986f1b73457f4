//! The wire contract read back: what a client makes of the headers
//! [`crate::headers`] writes, of a refusal's JSON body ([`crate::reply`]) and
//! of the usage endpoint's report ([`crate::usage`]). The header names are
//! the ones in `headers.rs`, so the contract has one definition; the tests
//! render with the filter's own code and parse the result back.
//!
//! Readers are lenient, as a client should be: unknown headers and fields
//! are ignored, and a malformed value reads as absent rather than failing
//! the whole reading.

use crate::calendar::parse_rfc3339_utc;
use crate::decide::State;
use crate::headers::{
    CLASS, COST, DEGRADED_TO, GRANT, LIMIT, OVERAGE, PACE, RATELIMIT, RATELIMIT_POLICY, REMAINING, RESET, RESET_AFTER,
    SCOPE, SOFT_LIMIT, STATE, STATE_CONFIRMATION_REQUIRED, STATE_NOT_INCLUDED, STATE_TOO_LARGE, STATE_UNAVAILABLE,
    STATE_WORKSPACE_REQUIRED, TIER, UPGRADE, USED, WARNING,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;

pub use crate::headers::{PACE_AHEAD, RETRY_AFTER};

/// Every header [`read_headers`] looks at, for hosts that can only look
/// names up one at a time (a browser's `Headers.get`).
pub const READ_HEADERS: [&str; 20] = [
    CLASS,
    TIER,
    SCOPE,
    USED,
    LIMIT,
    SOFT_LIMIT,
    REMAINING,
    RESET,
    RESET_AFTER,
    STATE,
    WARNING,
    UPGRADE,
    COST,
    PACE,
    DEGRADED_TO,
    OVERAGE,
    GRANT,
    RATELIMIT_POLICY,
    RATELIMIT,
    RETRY_AFTER,
];

// ---------------------------------------------------------------------------
// Structured fields (RFC 8941): the lists of items RateLimit fields are made of
// ---------------------------------------------------------------------------

/// A bare item of an HTTP structured field (RFC 8941 section 3.3).
#[derive(Debug, Clone, PartialEq)]
pub enum BareItem {
    Integer(i64),
    Decimal(f64),
    String(String),
    Token(String),
    /// Kept in its base64 form: nothing in the contract uses byte sequences.
    ByteSequence(String),
    Boolean(bool),
}

/// One member of a structured-field list: a bare item and its parameters,
/// in the order they were sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: BareItem,
    pub params: Vec<(String, BareItem)>,
}

impl Item {
    /// The parameter named `key` (the last one, if it was sent twice).
    pub fn param(&self, key: &str) -> Option<&BareItem> {
        self.params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A parameter that must be a non-negative integer.
    fn count(&self, key: &str) -> Option<u64> {
        match self.param(key)? {
            BareItem::Integer(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// The item's name: a string (as the draft writes it) or a token.
    fn name(&self) -> Option<&str> {
        match &self.value {
            BareItem::String(s) | BareItem::Token(s) => Some(s),
            _ => None,
        }
    }
}

/// Why a structured field could not be parsed: the byte offset and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfError {
    pub at: usize,
    pub reason: &'static str,
}

impl fmt::Display for SfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.at, self.reason)
    }
}

impl std::error::Error for SfError {}

/// Parses a structured-field list of items (RFC 8941 section 4.2.1).
/// Inner lists are refused: the RateLimit fields never use them.
pub fn parse_list(input: &str) -> Result<Vec<Item>, SfError> {
    let mut p = Parser { bytes: input.as_bytes(), at: 0 };
    p.skip(|b| b == b' ');
    let mut items = Vec::new();
    while !p.done() {
        items.push(p.item()?);
        p.skip(|b| b == b' ' || b == b'\t');
        if p.done() {
            break;
        }
        p.expect(b',', "expected ',' between list members")?;
        p.skip(|b| b == b' ' || b == b'\t');
        if p.done() {
            return Err(p.error("a list must not end with ','"));
        }
    }
    Ok(items)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn error(&self, reason: &'static str) -> SfError {
        SfError { at: self.at, reason }
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), SfError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    /// The bytes from `start` to here, as text (the caller only consumed ASCII).
    fn text_from(&self, start: usize) -> String {
        String::from_utf8_lossy(self.bytes.get(start..self.at).unwrap_or_default()).into_owned()
    }

    fn item(&mut self) -> Result<Item, SfError> {
        if self.peek() == Some(b'(') {
            return Err(self.error("inner lists are not part of this contract"));
        }
        let value = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { value, params })
    }

    fn params(&mut self) -> Result<Vec<(String, BareItem)>, SfError> {
        let mut params = Vec::new();
        while self.peek() == Some(b';') {
            self.at += 1;
            self.skip(|b| b == b' ');
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.at += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            params.push((key, value));
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, SfError> {
        if !self.peek().is_some_and(|b| b.is_ascii_lowercase() || b == b'*') {
            return Err(self.error("a parameter key starts with a-z or '*'"));
        }
        let start = self.at;
        self.skip(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*'));
        Ok(self.text_from(start))
    }

    fn bare_item(&mut self) -> Result<BareItem, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string().map(BareItem::String),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => self.boolean(),
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => Ok(self.token()),
            _ => Err(self.error("expected an item")),
        }
    }

    fn number(&mut self) -> Result<BareItem, SfError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits_start = self.at;
        self.skip(|b| b.is_ascii_digit());
        let int_digits = self.at - digits_start;
        if int_digits == 0 {
            return Err(self.error("expected a digit"));
        }
        if self.peek() != Some(b'.') {
            if int_digits > 15 {
                return Err(self.error("an integer has at most 15 digits"));
            }
            return self.text_from(start).parse().map(BareItem::Integer).map_err(|_| self.error("not an integer"));
        }
        if int_digits > 12 {
            return Err(self.error("a decimal has at most 12 integer digits"));
        }
        self.at += 1;
        let frac_start = self.at;
        self.skip(|b| b.is_ascii_digit());
        let frac_digits = self.at - frac_start;
        if frac_digits == 0 || frac_digits > 3 {
            return Err(self.error("a decimal has 1 to 3 fractional digits"));
        }
        self.text_from(start).parse().map(BareItem::Decimal).map_err(|_| self.error("not a decimal"))
    }

    fn string(&mut self) -> Result<String, SfError> {
        self.expect(b'"', "expected '\"'")?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        _ => return Err(self.error("only '\\\"' and '\\\\' escapes are allowed")),
                    }
                }
                Some(c @ 0x20..=0x7e) => out.push(char::from(c)),
                Some(_) => return Err(self.error("strings hold printable ASCII only")),
            }
            self.at += 1;
        }
    }

    fn token(&mut self) -> BareItem {
        let start = self.at;
        self.at += 1;
        self.skip(|b| b.is_ascii_alphanumeric() || b":/!#$%&'*+-.^_`|~".contains(&b));
        BareItem::Token(self.text_from(start))
    }

    fn byte_sequence(&mut self) -> Result<BareItem, SfError> {
        self.at += 1;
        let start = self.at;
        self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        let text = self.text_from(start);
        self.expect(b':', "unterminated byte sequence")?;
        Ok(BareItem::ByteSequence(text))
    }

    fn boolean(&mut self) -> Result<BareItem, SfError> {
        self.at += 1;
        let value = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(self.error("a boolean is ?0 or ?1")),
        };
        self.at += 1;
        Ok(BareItem::Boolean(value))
    }
}

// ---------------------------------------------------------------------------
// The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10)
// ---------------------------------------------------------------------------

/// One `RateLimit-Policy` item: `"drafts";q=10;w=86400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// `q`: the quota (the hard limit).
    pub quota: u64,
    /// `w`: the window's length in seconds.
    pub window: Option<u64>,
}

/// One `RateLimit` item: `"drafts";r=9;t=20494`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    /// `r`: what remains.
    pub remaining: u64,
    /// `t`: seconds until the quota resets.
    pub reset_after: Option<u64>,
}

/// Parses a `RateLimit-Policy` field. Items without a name or a valid `q`
/// are skipped, as the draft asks of recipients.
pub fn parse_policies(field: &str) -> Result<Vec<Policy>, SfError> {
    Ok(parse_list(field)?
        .iter()
        .filter_map(|item| {
            Some(Policy { name: item.name()?.to_string(), quota: item.count("q")?, window: item.count("w") })
        })
        .collect())
}

/// Parses a `RateLimit` field. Items without a name or a valid `r` are skipped.
pub fn parse_limits(field: &str) -> Result<Vec<Limit>, SfError> {
    Ok(parse_list(field)?
        .iter()
        .filter_map(|item| {
            Some(Limit { name: item.name()?.to_string(), remaining: item.count("r")?, reset_after: item.count("t") })
        })
        .collect())
}

// ---------------------------------------------------------------------------
// States
// ---------------------------------------------------------------------------

/// `x-quota-state`, and `state` in bodies and the usage report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireState {
    Ok,
    Warning,
    /// Served with a cheaper model.
    Degraded,
    /// Past the hard limit, counted as overage.
    Overage,
    /// Past the hard limit, deferred.
    Queued,
    Blocked,
    ConfirmationRequired,
    /// The request could never fit the caller's plan (413): waiting does not help.
    TooLarge,
    NotIncluded,
    Unavailable,
    /// A pooled class asked for without a workspace id.
    WorkspaceRequired,
    /// A state this reader does not know (a newer filter); kept as sent.
    Other(String),
}

impl WireState {
    pub fn parse(text: &str) -> WireState {
        let known = [
            (State::Ok.as_str(), WireState::Ok),
            (State::Warning.as_str(), WireState::Warning),
            (State::Degraded.as_str(), WireState::Degraded),
            (State::Overage.as_str(), WireState::Overage),
            (State::Queued.as_str(), WireState::Queued),
            (State::Blocked.as_str(), WireState::Blocked),
            (STATE_CONFIRMATION_REQUIRED, WireState::ConfirmationRequired),
            (STATE_TOO_LARGE, WireState::TooLarge),
            (STATE_NOT_INCLUDED, WireState::NotIncluded),
            (STATE_UNAVAILABLE, WireState::Unavailable),
            (STATE_WORKSPACE_REQUIRED, WireState::WorkspaceRequired),
        ];
        known
            .into_iter()
            .find(|(name, _)| *name == text)
            .map(|(_, state)| state)
            .unwrap_or_else(|| WireState::Other(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            WireState::Ok => State::Ok.as_str(),
            WireState::Warning => State::Warning.as_str(),
            WireState::Degraded => State::Degraded.as_str(),
            WireState::Overage => State::Overage.as_str(),
            WireState::Queued => State::Queued.as_str(),
            WireState::Blocked => State::Blocked.as_str(),
            WireState::ConfirmationRequired => STATE_CONFIRMATION_REQUIRED,
            WireState::TooLarge => STATE_TOO_LARGE,
            WireState::NotIncluded => STATE_NOT_INCLUDED,
            WireState::Unavailable => STATE_UNAVAILABLE,
            WireState::WorkspaceRequired => STATE_WORKSPACE_REQUIRED,
            WireState::Other(s) => s,
        }
    }
}

impl From<String> for WireState {
    fn from(text: String) -> Self {
        WireState::parse(&text)
    }
}

impl<'de> Deserialize<'de> for WireState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(WireState::from)
    }
}

// ---------------------------------------------------------------------------
// Response headers
// ---------------------------------------------------------------------------

/// The quota headers of one response. Every field is `None` (or `false`)
/// when its header is absent or malformed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderReading {
    pub class: Option<String>,
    pub tier: Option<String>,
    pub scope: Option<String>,
    pub used: Option<u64>,
    pub limit: Option<u64>,
    pub soft_limit: Option<u64>,
    pub remaining: Option<u64>,
    /// When the window resets, Unix seconds.
    pub reset: Option<i64>,
    /// Seconds from the response to the reset.
    pub reset_after: Option<i64>,
    pub state: Option<WireState>,
    /// The human sentence on an admitted response past a level: warning,
    /// degraded, overage or queued.
    pub warning: Option<String>,
    pub upgrade: Option<String>,
    /// Units this request was charged.
    pub cost: Option<u64>,
    /// `x-quota-pace: ahead`.
    pub pace_ahead: bool,
    /// The cheaper model the request was served with.
    pub degraded_to: Option<String>,
    /// Units past the hard limit in this window.
    pub overage: Option<u64>,
    /// Grant units left (prepaid packs, approvals).
    pub grant: Option<u64>,
    /// The `RateLimit-Policy` item for this response's class (or the first).
    pub policy: Option<Policy>,
    /// The `RateLimit` item for this response's class (or the first).
    pub limit_field: Option<Limit>,
    pub retry_after: Option<i64>,
}

impl HeaderReading {
    /// Whether the response carried nothing of the contract (a request the
    /// filter did not classify).
    pub fn is_empty(&self) -> bool {
        *self == HeaderReading::default()
    }
}

/// Reads the quota headers from `(name, value)` pairs; names are matched
/// case-insensitively. A field sent on several lines (`RateLimit`) is read
/// as one list; other headers keep their first value.
pub fn read_headers<'a, I>(headers: I) -> HeaderReading
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut values: [Option<String>; READ_HEADERS.len()] = Default::default();
    for (name, value) in headers {
        let Some(i) = READ_HEADERS.iter().position(|known| known.eq_ignore_ascii_case(name)) else {
            continue;
        };
        let Some(slot) = values.get_mut(i) else {
            continue;
        };
        let value = value.trim();
        match slot {
            Some(previous) if is_list_field(name) => {
                previous.push_str(", ");
                previous.push_str(value);
            }
            Some(_) => {}
            None => *slot = Some(value.to_string()),
        }
    }
    let get = |name: &str| -> Option<&str> {
        let i = READ_HEADERS.iter().position(|known| *known == name)?;
        values.get(i)?.as_deref()
    };
    let text = |name: &str| get(name).filter(|v| !v.is_empty()).map(str::to_string);
    let count = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
    let seconds = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok());

    let class = text(CLASS);
    let policies = get(RATELIMIT_POLICY).and_then(|v| parse_policies(v).ok()).unwrap_or_default();
    let limits = get(RATELIMIT).and_then(|v| parse_limits(v).ok()).unwrap_or_default();
    HeaderReading {
        tier: text(TIER),
        scope: text(SCOPE),
        used: count(USED),
        limit: count(LIMIT),
        soft_limit: count(SOFT_LIMIT),
        remaining: count(REMAINING),
        reset: get(RESET).and_then(parse_rfc3339_utc),
        reset_after: seconds(RESET_AFTER),
        state: get(STATE).filter(|v| !v.is_empty()).map(WireState::parse),
        warning: text(WARNING),
        upgrade: text(UPGRADE),
        cost: count(COST),
        pace_ahead: get(PACE) == Some(PACE_AHEAD),
        degraded_to: text(DEGRADED_TO),
        overage: count(OVERAGE),
        grant: count(GRANT),
        policy: pick(policies, class.as_deref(), |p| &p.name),
        limit_field: pick(limits, class.as_deref(), |l| &l.name),
        retry_after: seconds(RETRY_AFTER),
        class,
    }
}

fn is_list_field(name: &str) -> bool {
    name.eq_ignore_ascii_case(RATELIMIT) || name.eq_ignore_ascii_case(RATELIMIT_POLICY)
}

/// The item named after the class, else the first.
fn pick<T>(items: Vec<T>, class: Option<&str>, name: impl Fn(&T) -> &String) -> Option<T> {
    let at = class.and_then(|c| items.iter().position(|item| name(item) == c)).unwrap_or(0);
    items.into_iter().nth(at)
}

// ---------------------------------------------------------------------------
// Bodies: refusals and the usage report
// ---------------------------------------------------------------------------

/// What an upgrade would give (`upgrade` in bodies and the usage report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Upgrade {
    pub tier: Option<String>,
    pub label: Option<String>,
    pub limit: Option<u64>,
    /// "a day", "every 5 hours" (usage report only).
    pub per_window: Option<String>,
    pub url: Option<String>,
    /// The ready sentence: "Pro includes 100 a day: https://..." (usage report only).
    pub text: Option<String>,
}

/// The numbers of a refusal (`error.quota`, or the problem's `quota` member).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefusalQuota {
    pub class: Option<String>,
    pub label: Option<String>,
    pub tier: Option<String>,
    pub scope: Option<String>,
    pub state: Option<WireState>,
    pub used: Option<u64>,
    pub limit: Option<u64>,
    pub soft_limit: Option<u64>,
    pub remaining: Option<u64>,
    /// What the refused request would have cost.
    pub requested: Option<u64>,
    /// The window's name in the config: "day", "month", "5h".
    pub window: Option<String>,
    /// Unix seconds.
    #[serde(deserialize_with = "rfc3339_or_none")]
    pub reset: Option<i64>,
    pub reset_after: Option<i64>,
    pub upgrade: Option<Upgrade>,
    /// The header that confirms a costly request (428 only).
    pub confirm_header: Option<String>,
    /// The most one request may cost in this cell (413 only).
    pub max_request: Option<u64>,
}

/// A refusal's body: the OpenAI-compatible envelope (`error.message`) or
/// RFC 9457 problem details (`detail`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Refusal {
    /// The human sentence.
    #[serde(alias = "detail")]
    pub message: Option<String>,
    /// `quota_exceeded`, `not_included_in_plan`, `confirmation_required`...
    pub code: Option<String>,
    pub quota: Option<RefusalQuota>,
}

/// Reads a refusal from a response body; `None` for anything else (an
/// upstream's own body, HTML, not JSON).
pub fn read_refusal(body: &str) -> Option<Refusal> {
    let doc: Value = serde_json::from_str(body).ok()?;
    let inner = doc.get("error").filter(|e| e.is_object()).unwrap_or(&doc);
    let refusal = Refusal::deserialize(inner).ok()?;
    (refusal.message.is_some() || refusal.quota.is_some()).then_some(refusal)
}

/// The pace reading of a class in the usage report.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PaceReport {
    pub ahead: bool,
    pub used_share: Option<f64>,
    pub elapsed_share: Option<f64>,
    /// When the allowance runs out at the average rate so far, Unix seconds.
    #[serde(deserialize_with = "rfc3339_or_none")]
    pub exhausted_at: Option<i64>,
    pub message: Option<String>,
}

/// One class of the usage report.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClassUsage {
    pub class: String,
    pub label: Option<String>,
    pub unit: Option<String>,
    pub units: Option<String>,
    pub included: Option<bool>,
    pub scope: Option<String>,
    pub window: Option<String>,
    pub used: Option<u64>,
    pub limit: Option<u64>,
    pub soft_limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Units past the hard limit in this window.
    pub over: Option<u64>,
    /// Grant units left.
    pub grant: Option<u64>,
    pub fraction_used: Option<f64>,
    pub state: Option<WireState>,
    /// The warning or block sentence (`None` while ok).
    pub message: Option<String>,
    /// Unix seconds.
    #[serde(deserialize_with = "rfc3339_or_none")]
    pub reset: Option<i64>,
    /// Seconds from the report's `now` to the reset.
    pub reset_after: Option<i64>,
    pub pace: Option<PaceReport>,
    pub upgrade: Option<Upgrade>,
}

/// The usage endpoint's answer: the caller's standing in every class.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UsageReport {
    pub user: Option<String>,
    pub anonymous: bool,
    pub workspace: Option<String>,
    pub tier: Option<String>,
    pub tier_label: Option<String>,
    /// When the report was made, Unix seconds.
    #[serde(deserialize_with = "rfc3339_or_none")]
    pub now: Option<i64>,
    pub classes: Vec<ClassUsage>,
}

/// Reads the usage endpoint's JSON (an object).
pub fn read_usage(json: &str) -> Result<UsageReport, serde_json::Error> {
    let doc: Value = serde_json::from_str(json)?;
    if !doc.is_object() {
        return Err(serde::de::Error::custom("the usage report is a JSON object"));
    }
    UsageReport::deserialize(doc)
}

/// An RFC 3339 UTC time as Unix seconds; anything else reads as absent.
fn rfc3339_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(Value::as_str).and_then(parse_rfc3339_utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::rfc3339;
    use crate::config::{ClassId, Config};
    use crate::engine::{charge, Decision, Outcome};
    use crate::headers::response_headers;
    use crate::identity::{identify, Caller};
    use crate::negotiate::BodyFormat;
    use crate::reply::{respond, Action, LocalReply};
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::head;
    use crate::usage::usage_report;

    /// 2026-11-22T12:00:00Z: twelve hours before the daily reset.
    const NOON_MS: i64 = 1_795_348_800_000;
    const MIDNIGHT: i64 = 1_795_392_000;
    const DRAFTS: ClassId = ClassId(0);
    const RESEARCH: ClassId = ClassId(1);

    fn config() -> Config {
        Config::from_json(
            br#"{
              "identity": {"user": [{"header": "x-user-id"}], "tier": [{"header": "x-plan"}], "default_tier": "free"},
              "classes": [
                {"name": "drafts", "unit": "draft", "match": [{"path": {"exact": "/v1/chat/completions"}}]},
                {"name": "research", "label": "Deep research", "unit": "research call",
                 "match": [{"path": {"prefix": "/v1/research"}}]}
              ],
              "tiers": {
                "free": {"upgrade_url": "https://example.com/up", "limits": {
                  "drafts": {"soft": 2, "hard": 4, "window": "day"},
                  "research": {"included": false}}},
                "pro": {"limits": {
                  "drafts": {"hard": 40, "window": "day"},
                  "research": {"hard": 3, "window": "day"}}}
              },
              "usage_endpoint": "/v1/quota"
            }"#,
        )
        .unwrap()
    }

    fn caller(config: &Config, user: &str) -> Caller {
        identify(config, &head(&[("x-user-id", user)]), &NoProperties).unwrap()
    }

    /// Charges `n` drafts for `user`; the last decision.
    fn drafts(config: &Config, store: &MemoryStore, user: &str, n: usize) -> Decision {
        let who = caller(config, user);
        let mut last = None;
        for _ in 0..n {
            last = Some(charge(config, &who, DRAFTS, 1, false, NOON_MS, store));
        }
        last.unwrap()
    }

    fn read(config: &Config, d: &Decision) -> HeaderReading {
        let headers = response_headers(config, d);
        read_headers(headers.iter().map(|(n, v)| (*n, v.as_str())))
    }

    fn reply(config: &Config, d: &Decision, format: BodyFormat) -> LocalReply {
        match respond(config, d, format) {
            Action::Reply(r) => r,
            Action::Continue(h) => panic!("expected a local reply, got headers {h:?}"),
        }
    }

    fn item(value: BareItem, params: &[(&str, BareItem)]) -> Item {
        Item { value, params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
    }

    #[test]
    fn parses_lists_of_items_with_parameters() {
        let items = parse_list(r#""drafts";r=9;t=3600, "a\"b\\c";q=1.5, tok/en:x;flag, ?0, :aGk=:"#);
        assert_eq!(
            items.unwrap(),
            vec![
                item(BareItem::String("drafts".into()), &[("r", BareItem::Integer(9)), ("t", BareItem::Integer(3600))]),
                item(BareItem::String(r#"a"b\c"#.into()), &[("q", BareItem::Decimal(1.5))]),
                item(BareItem::Token("tok/en:x".into()), &[("flag", BareItem::Boolean(true))]),
                item(BareItem::Boolean(false), &[]),
                item(BareItem::ByteSequence("aGk=".into()), &[]),
            ]
        );
        assert_eq!(parse_list("").unwrap(), vec![]);
        assert_eq!(parse_list("  -7 ,\t8").unwrap().len(), 2);
    }

    #[test]
    fn malformed_structured_fields_say_where() {
        let err = |s: &str| parse_list(s).unwrap_err();
        assert_eq!(err(r#""drafts";r=9,"#).reason, "a list must not end with ','");
        assert_eq!(err(r#""drafts" "x""#).at, 9);
        assert_eq!(err(r#""unterminated"#).reason, "unterminated string");
        assert_eq!(err(r#""a";R=1"#).reason, "a parameter key starts with a-z or '*'");
        assert_eq!(err("(1 2)").reason, "inner lists are not part of this contract");
        assert_eq!(err("1234567890123456").reason, "an integer has at most 15 digits");
        assert_eq!(err("1.2345").reason, "a decimal has 1 to 3 fractional digits");
        assert_eq!(err(r#""\n""#).reason, "only '\\\"' and '\\\\' escapes are allowed");
        assert_eq!(err("\"caf\u{e9}\"").reason, "strings hold printable ASCII only");
        assert!(err("?2").to_string().starts_with("at byte 1:"));
    }

    #[test]
    fn ratelimit_items_need_a_name_and_their_number() {
        assert_eq!(
            parse_policies(r#""drafts";q=10;w=86400, "x";w=5, 7;q=1, "neg";q=-1"#).unwrap(),
            vec![Policy { name: "drafts".into(), quota: 10, window: Some(86400) }]
        );
        assert_eq!(
            parse_limits(r#"drafts;r=0, "summaries";r=3;t=60;pk=:YWJj:"#).unwrap(),
            vec![
                Limit { name: "drafts".into(), remaining: 0, reset_after: None },
                Limit { name: "summaries".into(), remaining: 3, reset_after: Some(60) },
            ]
        );
    }

    #[test]
    fn admitted_headers_read_back_as_the_decision() {
        let config = config();
        let store = MemoryStore::new();
        let reading = read(&config, &drafts(&config, &store, "ana", 1));
        assert_eq!(
            reading,
            HeaderReading {
                class: Some("drafts".into()),
                tier: Some("free".into()),
                scope: Some("user".into()),
                used: Some(1),
                limit: Some(4),
                soft_limit: Some(2),
                remaining: Some(3),
                reset: Some(MIDNIGHT),
                reset_after: Some(43_200),
                state: Some(WireState::Ok),
                warning: None,
                upgrade: None,
                cost: Some(1),
                pace_ahead: false,
                degraded_to: None,
                overage: None,
                grant: None,
                policy: Some(Policy { name: "drafts".into(), quota: 4, window: Some(86_400) }),
                limit_field: Some(Limit { name: "drafts".into(), remaining: 3, reset_after: Some(43_200) }),
                retry_after: None,
            }
        );
    }

    #[test]
    fn warning_headers_read_back_with_the_sentence_and_upgrade() {
        let config = config();
        let store = MemoryStore::new();
        let reading = read(&config, &drafts(&config, &store, "ana", 3));
        assert_eq!(reading.state, Some(WireState::Warning));
        assert_eq!((reading.used, reading.remaining), (Some(3), Some(1)));
        assert_eq!(
            reading.warning.as_deref(),
            Some("You have 1 draft left for today. They reset in 12 h. Pro includes 40 a day: https://example.com/up")
        );
        assert_eq!(reading.upgrade.as_deref(), Some("https://example.com/up"));
    }

    #[test]
    fn a_block_reads_back_from_headers_and_both_json_bodies() {
        let config = config();
        let store = MemoryStore::new();
        let blocked = drafts(&config, &store, "ana", 5);
        let openai = reply(&config, &blocked, BodyFormat::OpenAi);
        assert_eq!(openai.status, 429);
        let reading = read_headers(openai.headers.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!(reading.state, Some(WireState::Blocked));
        assert_eq!((reading.used, reading.remaining, reading.cost), (Some(4), Some(0), Some(0)));
        assert_eq!(reading.retry_after, Some(43_200));
        assert_eq!(reading.limit_field.map(|l| l.remaining), Some(0));

        let message =
            "You've used your 4 drafts for today. They reset in 12 h. Pro includes 40 a day: https://example.com/up";
        let expected = Refusal {
            message: Some(message.into()),
            code: Some("quota_exceeded".into()),
            quota: Some(RefusalQuota {
                class: Some("drafts".into()),
                label: Some("drafts".into()),
                tier: Some("free".into()),
                scope: Some("user".into()),
                state: Some(WireState::Blocked),
                used: Some(4),
                limit: Some(4),
                soft_limit: Some(2),
                remaining: Some(0),
                requested: Some(1),
                window: Some("day".into()),
                reset: Some(MIDNIGHT),
                reset_after: Some(43_200),
                upgrade: Some(Upgrade {
                    tier: Some("pro".into()),
                    label: Some("Pro".into()),
                    limit: Some(40),
                    url: Some("https://example.com/up".into()),
                    ..Upgrade::default()
                }),
                confirm_header: None,
                max_request: None,
            }),
        };
        assert_eq!(read_refusal(&openai.body), Some(expected.clone()));
        let problem = reply(&config, &blocked, BodyFormat::Problem);
        assert_eq!(read_refusal(&problem.body), Some(expected));
        let html = reply(&config, &blocked, BodyFormat::Html);
        assert_eq!(read_refusal(&html.body), None);
    }

    #[test]
    fn a_request_that_can_never_fit_reads_back_as_too_large() {
        let config = config();
        let who = caller(&config, "ana");
        let d = charge(&config, &who, DRAFTS, 41, false, NOON_MS, &MemoryStore::new());
        let openai = reply(&config, &d, BodyFormat::OpenAi);
        assert_eq!(openai.status, 413);
        let reading = read_headers(openai.headers.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!(reading.state, Some(WireState::TooLarge));
        assert_eq!((reading.used, reading.cost, reading.retry_after), (Some(0), Some(0), None));
        let refusal = read_refusal(&openai.body).unwrap();
        assert_eq!(refusal.code.as_deref(), Some("request_too_large"));
        let quota = refusal.quota.unwrap();
        assert_eq!((quota.state, quota.requested, quota.max_request), (Some(WireState::TooLarge), Some(41), Some(4)));
        // Pro's 40 would not take 41 either.
        assert_eq!(quota.upgrade, None);
        assert_eq!(read_refusal(&reply(&config, &d, BodyFormat::Problem).body).and_then(|r| r.code), refusal.code);
        assert_eq!(WireState::parse("too_large").as_str(), "too_large");
    }

    #[test]
    fn a_class_outside_the_plan_reads_back_as_not_included() {
        let config = config();
        let who = caller(&config, "ana");
        let d = charge(&config, &who, RESEARCH, 1, false, NOON_MS, &MemoryStore::new());
        let r = reply(&config, &d, BodyFormat::OpenAi);
        let reading = read_headers(r.headers.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!(reading.state, Some(WireState::NotIncluded));
        assert_eq!(reading.class.as_deref(), Some("research"));
        assert_eq!(reading.used, None);
        let refusal = read_refusal(&r.body).unwrap();
        assert_eq!(refusal.code.as_deref(), Some("not_included_in_plan"));
        assert_eq!(
            refusal.message.as_deref(),
            Some("Deep research isn't included in the Free plan. Pro includes 3 a day: https://example.com/up")
        );
        let quota = refusal.quota.unwrap();
        assert_eq!(quota.state, Some(WireState::NotIncluded));
        assert_eq!(quota.upgrade.and_then(|u| u.limit), Some(3));
    }

    #[test]
    fn the_usage_report_reads_back_class_by_class() {
        let config = config();
        let store = MemoryStore::new();
        drafts(&config, &store, "ana", 2);
        let report = usage_report(&config, &caller(&config, "ana"), NOON_MS, &store);
        let usage = read_usage(&report.to_string()).unwrap();
        assert_eq!(usage.user.as_deref(), Some("ana"));
        assert_eq!(usage.tier.as_deref(), Some("free"));
        assert_eq!(usage.tier_label.as_deref(), Some("Free"));
        assert_eq!(usage.now, Some(NOON_MS / 1000));
        assert_eq!(usage.classes.len(), 2);
        let d = &usage.classes[0];
        assert_eq!(d.class, "drafts");
        assert_eq!((d.used, d.limit, d.soft_limit, d.remaining), (Some(2), Some(4), Some(2), Some(2)));
        assert_eq!(d.fraction_used, Some(0.5));
        assert_eq!(d.state, Some(WireState::Warning));
        assert_eq!(d.reset, Some(MIDNIGHT));
        assert_eq!(d.reset_after, Some(43_200));
        assert_eq!(d.window.as_deref(), Some("day"));
        assert_eq!(
            d.message.as_deref(),
            Some("You've used 2 of your 4 drafts for today. They reset in 12 h. Pro includes 40 a day: https://example.com/up")
        );
        assert_eq!(
            d.upgrade.as_ref().and_then(|u| u.text.as_deref()),
            Some("Pro includes 40 a day: https://example.com/up")
        );
        let r = &usage.classes[1];
        assert_eq!((r.included, &r.state), (Some(false), &Some(WireState::NotIncluded)));
        assert_eq!(r.label.as_deref(), Some("Deep research"));
    }

    #[test]
    fn past_the_hard_limit_reads_back_overage_and_degraded_service() {
        let config = Config::from_json(
            br#"{
              "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
              "classes": [
                {"name": "drafts", "unit": "draft", "match": [{"path": {"exact": "/d"}}]},
                {"name": "summaries", "unit": "summary", "units": "summaries", "match": [{"path": {"exact": "/s"}}]}
              ],
              "tiers": {"free": {"limits": {
                "drafts": {"hard": 2, "window": "day", "at_hard": "overage", "overage": {"cap": 2}},
                "summaries": {"soft": 1, "hard": 3, "window": "day", "past_soft": "degrade", "degrade": {"model": "small"}}
              }}}
            }"#,
        )
        .unwrap();
        let store = MemoryStore::new();
        let who = caller(&config, "ana");
        let last = |class: ClassId, n: usize| {
            let mut d = None;
            for _ in 0..n {
                d = Some(charge(&config, &who, class, 1, false, NOON_MS, &store));
            }
            d.unwrap()
        };
        let over = last(ClassId(0), 3);
        let reading = read(&config, &over);
        assert_eq!(reading.state, Some(WireState::Overage));
        assert_eq!(reading.overage, Some(1));
        assert!(reading.warning.is_some_and(|w| !w.is_empty()));

        let degraded = last(ClassId(1), 2);
        let reading = read(&config, &degraded);
        assert_eq!(reading.degraded_to.as_deref(), Some("small"));
        let Outcome::Charged(c) = degraded.outcome else { panic!("charged") };
        assert_eq!(reading.state, Some(WireState::parse(c.usage.state.as_str())));
    }

    #[test]
    fn ratelimit_fields_alone_still_read_when_the_quota_family_is_off() {
        let mut config = config();
        config.response_headers.quota = false;
        let store = MemoryStore::new();
        let reading = read(&config, &drafts(&config, &store, "ana", 1));
        assert_eq!(reading.class, None);
        assert_eq!((reading.policy.map(|p| p.quota), reading.limit_field.map(|l| l.remaining)), (Some(4), Some(3)));
    }

    #[test]
    fn names_match_in_any_case_and_the_class_picks_its_ratelimit_item() {
        let reading = read_headers([
            ("X-Quota-Class", "summaries"),
            ("RateLimit-Policy", r#""drafts";q=10;w=86400"#),
            ("ratelimit-policy", r#""summaries";q=5;w=86400"#),
            ("RateLimit", r#""drafts";r=9;t=10, "summaries";r=4;t=10"#),
            ("X-Quota-Pace", "ahead"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(reading.policy.map(|p| p.quota), Some(5));
        assert_eq!(reading.limit_field.map(|l| l.remaining), Some(4));
        assert!(reading.pace_ahead);
    }

    #[test]
    fn malformed_values_read_as_absent_and_leave_the_rest() {
        let reading = read_headers([
            ("x-quota-class", "drafts"),
            ("x-quota-used", "lots"),
            ("x-quota-limit", "10"),
            ("x-quota-reset", "tomorrow"),
            ("x-quota-state", "sleepy"),
            ("ratelimit", "\"drafts\";r=9;t=10,"),
        ]);
        assert_eq!((reading.used, reading.limit), (None, Some(10)));
        assert_eq!(reading.reset, None);
        assert_eq!(reading.state, Some(WireState::Other("sleepy".into())));
        assert_eq!(reading.limit_field, None);
        assert!(read_headers([("content-type", "text/plain")]).is_empty());
    }

    #[test]
    fn every_state_the_filter_writes_reads_back() {
        for s in [
            "ok",
            "warning",
            "degraded",
            "overage",
            "queued",
            "blocked",
            "confirmation_required",
            "not_included",
            "unavailable",
            "workspace_required",
        ] {
            let state = WireState::parse(s);
            assert!(!matches!(state, WireState::Other(_)), "{s}");
            assert_eq!(state.as_str(), s);
        }
        assert_eq!(rfc3339(MIDNIGHT), "2026-11-23T00:00:00Z");
    }

    #[test]
    fn bodies_that_are_not_refusals_read_as_none() {
        assert_eq!(read_refusal("<html></html>"), None);
        assert_eq!(read_refusal(r#"{"id":"chatcmpl-1","choices":[]}"#), None);
        assert_eq!(
            read_refusal(r#"{"error":{"message":"upstream down","code":null}}"#).and_then(|r| r.message),
            Some("upstream down".into())
        );
        assert_eq!(read_usage("[]").unwrap_err().to_string(), "the usage report is a JSON object");
    }
}
