//! The wire contract read back: what a client makes of the headers
//! [`crate::headers`] writes, of a refusal's JSON body ([`crate::reply`]) and
//! of the usage endpoint's report ([`crate::usage`]). The header names are
//! the ones in `headers.rs`, so the contract has one definition; the tests
//! render with the filter's own code and parse the result back.
//!
//! Readers are lenient, as a client should be: unknown headers and fields
//! are ignored, and a malformed value reads as absent rather than failing
//! the whole reading.
//!
//! ## Classes metered in money
//!
//! A class metered in money sends `x-quota-currency` (`USD`) and writes its
//! amounts as decimal text of that currency (`x-quota-used: 0.01025`);
//! [`read_headers`] reads them back to **micro-units** (10250), the numbers
//! the usage endpoint and refusal bodies carry for such a class, so every
//! number of a reading is an exact integer in one scale. Those bodies add a
//! `money` object ([`MoneyReport`]): the currency and the amounts as people
//! read them (`"$4.20"`). The IETF RateLimit fields stay integers, in the
//! currency's **minor units** (cents): [`Policy::quota`] and
//! [`Limit::remaining`] of a money class are cents, and only
//! `x-quota-currency` says so.

use crate::calendar::parse_rfc3339_utc;
use crate::decide::State;
use crate::headers::{
    CLASS, COST, CURRENCY, DEGRADED_TO, GRANT, LIMIT, OVERAGE, PACE, RATELIMIT, RATELIMIT_POLICY, REMAINING, RESET,
    RESET_AFTER, SCOPE, SOFT_LIMIT, STATE, STATE_CONFIRMATION_REQUIRED, STATE_NOT_INCLUDED, STATE_TOO_LARGE,
    STATE_UNAVAILABLE, STATE_WORKSPACE_REQUIRED, TIER, UPGRADE, USED, WARNING, WINDOW,
};
use crate::money::{parse_amount, Currency};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;

pub use crate::headers::{PACE_AHEAD, RETRY_AFTER};

/// Every header [`read_headers`] looks at, for hosts that can only look
/// names up one at a time (a browser's `Headers.get`).
pub const READ_HEADERS: [&str; 22] = [
    CLASS,
    TIER,
    SCOPE,
    WINDOW,
    CURRENCY,
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

/// One `RateLimit-Policy` item: `"drafts";q=10;w=86400`, or one limit of a
/// stacked cell: `"drafts.workspace.day";q=300;w=86400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// `q`: the quota (the hard limit); for a class metered in money, in
    /// the currency's minor units (cents).
    pub quota: u64,
    /// `w`: the window's length in seconds.
    pub window: Option<u64>,
}

impl Policy {
    /// The name split into class, scope and window.
    pub fn parts(&self) -> PolicyName<'_> {
        PolicyName::parse(&self.name)
    }
}

/// A limit's name in the RateLimit fields and refusal bodies, split. A
/// one-limit cell's limit is named after its class (`drafts`); each limit of
/// a stacked cell is `<class>.<scope>.<window>` (`drafts.workspace.day`,
/// `chats.user.5h`), which is unique in its cell. Class names hold no `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyName<'a> {
    pub class: &'a str,
    /// Whose counter a stacked cell's limit is: "user", "workspace", "organisation".
    pub scope: Option<&'a str>,
    /// A stacked cell's limit's window as the config names it: "day", "5h".
    pub window: Option<&'a str>,
}

impl<'a> PolicyName<'a> {
    /// Any name reads: one that is not `<class>.<scope>.<window>` is a class.
    pub fn parse(name: &'a str) -> PolicyName<'a> {
        let mut parts = name.splitn(3, '.');
        let class = parts.next().unwrap_or_default();
        match (parts.next(), parts.next()) {
            (Some(scope), Some(window)) if !class.is_empty() && !scope.is_empty() && !window.is_empty() => {
                PolicyName { class, scope: Some(scope), window: Some(window) }
            }
            _ => PolicyName { class: name, scope: None, window: None },
        }
    }
}

/// One `RateLimit` item: `"drafts";r=9;t=20494`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    /// `r`: what remains; for a class metered in money, whole minor units
    /// (cents), rounded down.
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
///
/// The amounts (`used`, `limit`, `soft_limit`, `remaining`, `cost`,
/// `overage`, `grant`) are units, or, when `currency` is set (a class
/// metered in money), micro-units of that currency read from its decimal
/// text: `x-quota-used: 4.20` is 4 200 000.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderReading {
    pub class: Option<String>,
    pub tier: Option<String>,
    /// Whose counter the binding limit is: "user", "workspace",
    /// "organisation" or "anonymous".
    pub scope: Option<String>,
    /// The binding limit's window as the config names it: "day", "5h".
    pub window: Option<String>,
    /// `x-quota-currency`: the ISO 4217 code of a class metered in money,
    /// as sent ("USD"); see [`HeaderReading::money`].
    pub currency: Option<String>,
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
    /// The binding limit's `RateLimit-Policy` item: the one `RateLimit`
    /// names (else the class's, else the first).
    pub policy: Option<Policy>,
    /// Every `RateLimit-Policy` item of this response's class, in the order
    /// sent, which is the cell's: one for a one-limit cell, one per limit of
    /// a stacked cell.
    pub policies: Vec<Policy>,
    /// The `RateLimit` item for this response's class (or the first): the
    /// binding limit's standing.
    pub limit_field: Option<Limit>,
    pub retry_after: Option<i64>,
}

impl HeaderReading {
    /// Whether the response carried nothing of the contract (a request the
    /// filter did not classify).
    pub fn is_empty(&self) -> bool {
        *self == HeaderReading::default()
    }

    /// The currency of a class metered in money, when `x-quota-currency`
    /// names one (three capital letters).
    pub fn money(&self) -> Option<Currency> {
        self.currency.as_deref().and_then(|code| Currency::from_code(code).ok())
    }

    /// Where the binding limit (the one `RateLimit` reports) is in
    /// [`HeaderReading::policies`].
    pub fn binding(&self) -> Option<usize> {
        let policy = self.policy.as_ref()?;
        self.policies.iter().position(|p| p == policy)
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
    let currency = text(CURRENCY);
    // Counts, or in money the currency's decimal text as micro-units.
    let in_money = currency.is_some();
    let count =
        |name: &str| get(name).and_then(|v| if in_money { parse_amount(v).ok() } else { v.parse::<u64>().ok() });
    let seconds = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok());

    let class = text(CLASS);
    let policies = get(RATELIMIT_POLICY).and_then(|v| parse_policies(v).ok()).unwrap_or_default();
    let limits = get(RATELIMIT).and_then(|v| parse_limits(v).ok()).unwrap_or_default();
    let limit_field = pick(limits, class.as_deref(), |l| &l.name);
    // The class the items belong to: the header's, else the one RateLimit names.
    let owner = class.as_deref().or_else(|| limit_field.as_ref().map(|l| PolicyName::parse(&l.name).class));
    let (mine, others): (Vec<Policy>, Vec<Policy>) =
        policies.into_iter().partition(|p| owner.is_none_or(|c| p.parts().class == c));
    // Items of no known class still say something: keep them, as `pick` does.
    let policies = if mine.is_empty() { others } else { mine };
    let policy = limit_field
        .as_ref()
        .and_then(|l| policies.iter().find(|p| p.name == l.name))
        .or_else(|| policies.first())
        .cloned();
    HeaderReading {
        tier: text(TIER),
        scope: text(SCOPE),
        window: text(WINDOW),
        currency,
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
        policy,
        policies,
        limit_field,
        retry_after: seconds(RETRY_AFTER),
        class,
    }
}

fn is_list_field(name: &str) -> bool {
    name.eq_ignore_ascii_case(RATELIMIT) || name.eq_ignore_ascii_case(RATELIMIT_POLICY)
}

/// The item of the class (named after it, or one of its stacked limits),
/// else the first.
fn pick<T>(items: Vec<T>, class: Option<&str>, name: impl Fn(&T) -> &String) -> Option<T> {
    let at = class.and_then(|c| items.iter().position(|item| PolicyName::parse(name(item)).class == c)).unwrap_or(0);
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

/// A class metered in money's amounts as people read them (`money` in a
/// refusal's `quota` and in the usage report; `null` for a class counted in
/// units): its currency's code, what was used and what remains rounded
/// down, the rest to the nearest ("$4.20"). The same amounts as the entry's
/// numbers, which are micro-units of the currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MoneyReport {
    /// The ISO 4217 code: "USD".
    pub currency: Option<String>,
    pub used: Option<String>,
    pub limit: Option<String>,
    pub soft_limit: Option<String>,
    pub remaining: Option<String>,
    /// Past the hard limit in this window.
    pub over: Option<String>,
    /// Grant money left.
    pub grant: Option<String>,
}

impl MoneyReport {
    /// The currency, when the code is one (three capital letters).
    pub fn money(&self) -> Option<Currency> {
        self.currency.as_deref().and_then(|code| Currency::from_code(code).ok())
    }
}

/// The numbers of a refusal (`error.quota`, or the problem's `quota` member).
/// For a class metered in money the amounts are micro-units of the
/// currency `money` names.
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
    /// The binding limit's name: the class's for a one-limit cell, else
    /// `<class>.<scope>.<window>` (see [`PolicyName`]).
    pub policy: Option<String>,
    /// Every limit of the cell, in the config's order.
    #[serde(deserialize_with = "lenient_list")]
    pub limits: Vec<RefusalLimit>,
    /// The amounts as money, for a class metered in money.
    #[serde(deserialize_with = "lenient")]
    pub money: Option<MoneyReport>,
}

impl RefusalQuota {
    /// The limit that decided the refusal.
    pub fn binding_limit(&self) -> Option<&RefusalLimit> {
        self.limits.iter().find(|l| l.binding)
    }
}

/// One limit of a refused request's cell (`quota.limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefusalLimit {
    /// "drafts.user.day" (see [`PolicyName`]).
    pub policy: Option<String>,
    pub scope: Option<String>,
    /// "day", "5h".
    pub window: Option<String>,
    pub used: Option<u64>,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub state: Option<WireState>,
    /// Unix seconds.
    #[serde(deserialize_with = "rfc3339_or_none")]
    pub reset: Option<i64>,
    pub reset_after: Option<i64>,
    /// The limit whose standing the headers report, and whose words the
    /// refusal says.
    pub binding: bool,
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
    /// The names of the limits that refused (problem details only).
    #[serde(rename = "violated-policies", deserialize_with = "lenient_list")]
    pub violated_policies: Vec<String>,
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

/// One limit of a class in the usage report (`limits`): the same numbers
/// as a class's own, for this limit alone (micro-units of the currency
/// `money` names, for a class metered in money).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LimitUsage {
    pub scope: Option<String>,
    /// "day", "5h".
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
    /// This limit's warning or block sentence (`None` while ok).
    pub message: Option<String>,
    /// Unix seconds.
    #[serde(deserialize_with = "rfc3339_or_none")]
    pub reset: Option<i64>,
    /// Seconds from the report's `now` to the reset.
    pub reset_after: Option<i64>,
    pub pace: Option<PaceReport>,
    pub upgrade: Option<Upgrade>,
    /// This limit's amounts as money, for a class metered in money.
    #[serde(deserialize_with = "lenient")]
    pub money: Option<MoneyReport>,
}

/// One class of the usage report. Its own numbers are the binding limit's
/// (the one closest to refusing, or changing how requests are served);
/// `limits` has every limit's. For a class metered in money the numbers
/// are micro-units of the currency `money` names.
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
    /// Every limit of the class's cell, in the config's order: one for a
    /// one-limit cell; none for a class outside the plan, or a pooled one
    /// asked for without a workspace.
    #[serde(deserialize_with = "lenient_list")]
    pub limits: Vec<LimitUsage>,
    /// The amounts as money, for a class metered in money.
    #[serde(deserialize_with = "lenient")]
    pub money: Option<MoneyReport>,
}

impl ClassUsage {
    /// Where the binding limit (the one the class's own numbers are) is in
    /// `limits`: a cell has one limit per scope and window.
    pub fn binding(&self) -> Option<usize> {
        let found = self.limits.iter().position(|l| l.scope == self.scope && l.window == self.window);
        found.or_else(|| (self.limits.len() == 1).then_some(0))
    }
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

/// A list whose members that do not read are left out, and which reads as
/// empty when absent, `null` or not a list.
fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Array(items)) => items.into_iter().filter_map(|item| T::deserialize(item).ok()).collect(),
        _ => Vec::new(),
    })
}

/// A value that reads as absent when it does not read (`null`, or the
/// wrong shape) rather than failing its whole document.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| T::deserialize(v).ok()))
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
              "tier_order": ["free", "pro"],
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
                window: Some("day".into()),
                currency: None,
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
                policies: vec![Policy { name: "drafts".into(), quota: 4, window: Some(86_400) }],
                limit_field: Some(Limit { name: "drafts".into(), remaining: 3, reset_after: Some(43_200) }),
                retry_after: None,
            }
        );
        assert_eq!(reading.binding(), Some(0));
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
                policy: Some("drafts".into()),
                limits: vec![RefusalLimit {
                    policy: Some("drafts".into()),
                    scope: Some("user".into()),
                    window: Some("day".into()),
                    used: Some(4),
                    limit: Some(4),
                    remaining: Some(0),
                    state: Some(WireState::Blocked),
                    reset: Some(MIDNIGHT),
                    reset_after: Some(43_200),
                    binding: true,
                }],
                money: None,
            }),
            violated_policies: Vec::new(),
        };
        assert_eq!(read_refusal(&openai.body), Some(expected.clone()));
        let problem = reply(&config, &blocked, BodyFormat::Problem);
        assert_eq!(read_refusal(&problem.body), Some(Refusal { violated_policies: vec!["drafts".into()], ..expected }));
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
        // A one-limit cell lists its one limit; a class outside the plan none.
        assert_eq!(d.limits.len(), 1);
        assert_eq!(d.binding(), Some(0));
        let only = &d.limits[0];
        assert_eq!((only.scope.as_deref(), only.window.as_deref()), (Some("user"), Some("day")));
        assert_eq!((only.used, only.limit, only.remaining, only.reset), (Some(2), Some(4), Some(2), Some(MIDNIGHT)));
        assert_eq!(only.message, d.message);
        assert_eq!((r.limits.len(), r.binding()), (0, None));
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

    const STACKED_DRAFTS: ClassId = ClassId(0);
    const CHATS: ClassId = ClassId(1);

    /// A team pool of 6 drafts a day (warnings from 4) in which a member may
    /// use 4, and chats capped at 3 every 5 hours and 5 a week.
    fn stacked() -> Config {
        Config::from_json(
            br#"{
              "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                           "default_tier": "team"},
              "classes": [
                {"name": "drafts", "unit": "draft", "match": [{"path": {"exact": "/v1/chat/completions"}}]},
                {"name": "chats", "unit": "chat", "match": [{"path": {"exact": "/v1/chats"}}]}
              ],
              "tiers": {"team": {"limits": {
                "drafts": [{"scope": "workspace", "soft": 4, "hard": 6, "window": "day"},
                           {"scope": "user", "hard": 4, "window": "day"}],
                "chats": [{"hard": 3, "window": "5h"}, {"hard": 5, "window": "week"}]
              }}},
              "usage_endpoint": "/v1/quota"
            }"#,
        )
        .unwrap()
    }

    fn member(config: &Config, user: &str) -> Caller {
        identify(config, &head(&[("x-user-id", user), ("x-workspace-id", "acme")]), &NoProperties).unwrap()
    }

    /// `n` requests of `class` for `user` of the workspace acme; the last decision.
    fn stacked_charges(config: &Config, store: &MemoryStore, user: &str, class: ClassId, n: usize) -> Decision {
        let who = member(config, user);
        let mut last = None;
        for _ in 0..n {
            last = Some(charge(config, &who, class, 1, false, NOON_MS, store));
        }
        last.unwrap()
    }

    fn policy(name: &str, quota: u64, window: u64) -> Policy {
        Policy { name: name.into(), quota, window: Some(window) }
    }

    #[test]
    fn policy_names_split_into_class_scope_and_window() {
        let name = |class, scope, window| PolicyName { class, scope, window };
        assert_eq!(PolicyName::parse("drafts"), name("drafts", None, None));
        assert_eq!(PolicyName::parse("drafts.workspace.day"), name("drafts", Some("workspace"), Some("day")));
        assert_eq!(PolicyName::parse("chats.user.5h"), name("chats", Some("user"), Some("5h")));
        // Not the filter's shape: the whole name is the class.
        assert_eq!(PolicyName::parse("a.b"), name("a.b", None, None));
        assert_eq!(PolicyName::parse(".user.day"), name(".user.day", None, None));
        assert_eq!(PolicyName::parse("a..day"), name("a..day", None, None));
        assert_eq!(PolicyName::parse(""), name("", None, None));
    }

    #[test]
    fn a_stacked_cell_lists_every_limit_and_ratelimit_reports_the_binding_one() {
        let config = stacked();
        let store = MemoryStore::new();
        let pool = policy("drafts.workspace.day", 6, 86_400);
        let own = policy("drafts.user.day", 4, 86_400);
        // Alice's first: her own 3 of 4 left is less room than the team's 5 of 6.
        let reading = read(&config, &stacked_charges(&config, &store, "alice", STACKED_DRAFTS, 1));
        assert_eq!(reading.class.as_deref(), Some("drafts"));
        assert_eq!(reading.policies, vec![pool.clone(), own.clone()]);
        assert_eq!((reading.policy.as_ref(), reading.binding()), (Some(&own), Some(1)));
        assert_eq!(
            reading.limit_field,
            Some(Limit { name: "drafts.user.day".into(), remaining: 3, reset_after: Some(43_200) })
        );
        assert_eq!((reading.scope.as_deref(), reading.window.as_deref()), (Some("user"), Some("day")));
        assert_eq!((reading.used, reading.limit, reading.remaining), (Some(1), Some(4), Some(3)));
        assert_eq!(reading.state, Some(WireState::Ok));

        // Three more for Alice, then Bob's first leaves the team 1 of 6: the pool binds.
        stacked_charges(&config, &store, "alice", STACKED_DRAFTS, 3);
        let reading = read(&config, &stacked_charges(&config, &store, "bob", STACKED_DRAFTS, 1));
        assert_eq!(reading.policies, vec![pool.clone(), own]);
        assert_eq!((reading.policy.as_ref(), reading.binding()), (Some(&pool), Some(0)));
        assert_eq!(reading.limit_field.map(|l| (l.name, l.remaining)), Some(("drafts.workspace.day".into(), 1)));
        assert_eq!(
            (reading.scope.as_deref(), reading.used, reading.limit, reading.soft_limit, reading.remaining),
            (Some("workspace"), Some(5), Some(6), Some(4), Some(1))
        );
        assert_eq!(reading.state, Some(WireState::Warning));
        assert_eq!(reading.warning.as_deref(), Some("Your team has 1 draft left for today. They reset in 12 h."));
        assert_eq!(pool.parts(), PolicyName { class: "drafts", scope: Some("workspace"), window: Some("day") });
    }

    #[test]
    fn a_stacked_refusal_reads_back_every_limit_from_both_bodies() {
        let config = stacked();
        let store = MemoryStore::new();
        stacked_charges(&config, &store, "alice", STACKED_DRAFTS, 4);
        // Her fifth: her own cap refuses, the team still has 2.
        let refused = stacked_charges(&config, &store, "alice", STACKED_DRAFTS, 1);
        let openai = reply(&config, &refused, BodyFormat::OpenAi);
        assert_eq!(openai.status, 429);
        let reading = read_headers(openai.headers.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!((reading.binding(), reading.policies.len()), (Some(1), 2));
        assert_eq!(
            (reading.scope.as_deref(), reading.remaining, reading.retry_after),
            (Some("user"), Some(0), Some(43_200))
        );

        let refusal = read_refusal(&openai.body).unwrap();
        assert_eq!(
            refusal.message.as_deref(),
            Some("You've used your 4 drafts of your team's allowance for today. They reset in 12 h.")
        );
        assert_eq!(refusal.violated_policies, Vec::<String>::new());
        let quota = refusal.quota.clone().unwrap();
        assert_eq!(quota.policy.as_deref(), Some("drafts.user.day"));
        assert_eq!((quota.scope.as_deref(), quota.used, quota.limit), (Some("user"), Some(4), Some(4)));
        let limit = |policy: &str, scope: &str, used, limit, state, binding| RefusalLimit {
            policy: Some(policy.into()),
            scope: Some(scope.into()),
            window: Some("day".into()),
            used: Some(used),
            limit: Some(limit),
            remaining: Some(limit - used),
            state: Some(state),
            reset: Some(MIDNIGHT),
            reset_after: Some(43_200),
            binding,
        };
        assert_eq!(
            quota.limits,
            vec![
                limit("drafts.workspace.day", "workspace", 4, 6, WireState::Warning, false),
                limit("drafts.user.day", "user", 4, 4, WireState::Blocked, true),
            ]
        );
        assert_eq!(quota.binding_limit().and_then(|l| l.policy.as_deref()), Some("drafts.user.day"));

        let problem = read_refusal(&reply(&config, &refused, BodyFormat::Problem).body).unwrap();
        assert_eq!(problem.violated_policies, vec!["drafts.user.day".to_string()]);
        assert_eq!(problem, Refusal { violated_policies: problem.violated_policies.clone(), ..refusal });

        // Bob takes the team's last 2; the pool refuses his third.
        stacked_charges(&config, &store, "bob", STACKED_DRAFTS, 2);
        let refused = stacked_charges(&config, &store, "bob", STACKED_DRAFTS, 1);
        let problem = read_refusal(&reply(&config, &refused, BodyFormat::Problem).body).unwrap();
        assert_eq!(problem.violated_policies, vec!["drafts.workspace.day".to_string()]);
        let quota = problem.quota.unwrap();
        assert_eq!(
            (quota.policy.as_deref(), quota.scope.as_deref()),
            (Some("drafts.workspace.day"), Some("workspace"))
        );
        assert_eq!(
            quota.limits.iter().map(|l| (l.used, l.remaining, l.binding)).collect::<Vec<_>>(),
            vec![(Some(6), Some(0), true), (Some(2), Some(2), false)]
        );
    }

    #[test]
    fn the_usage_report_lists_every_limit_of_a_stacked_class() {
        let config = stacked();
        let store = MemoryStore::new();
        stacked_charges(&config, &store, "alice", STACKED_DRAFTS, 4);
        let report = usage_report(&config, &member(&config, "alice"), NOON_MS, &store);
        let usage = read_usage(&report.to_string()).unwrap();
        assert_eq!(usage.workspace.as_deref(), Some("acme"));
        let drafts = &usage.classes[0];
        // The class's own numbers are the binding limit's: her own cap, reached.
        assert_eq!(
            (drafts.scope.as_deref(), drafts.used, drafts.limit, drafts.state.clone()),
            (Some("user"), Some(4), Some(4), Some(WireState::Blocked))
        );
        assert_eq!(drafts.binding(), Some(1));
        let [pool, own] = &drafts.limits[..] else { panic!("two limits: {:?}", drafts.limits) };
        assert_eq!((pool.scope.as_deref(), pool.window.as_deref()), (Some("workspace"), Some("day")));
        assert_eq!(
            (pool.used, pool.limit, pool.soft_limit, pool.remaining, pool.fraction_used),
            (Some(4), Some(6), Some(4), Some(2), Some(4.0 / 6.0))
        );
        assert_eq!(
            (pool.state.clone(), pool.reset, pool.reset_after),
            (Some(WireState::Warning), Some(MIDNIGHT), Some(43_200))
        );
        assert!(pool.message.as_deref().is_some_and(|m| m.starts_with("Your team")), "{:?}", pool.message);
        assert_eq!(
            (own.scope.as_deref(), own.used, own.limit, own.remaining),
            (Some("user"), Some(4), Some(4), Some(0))
        );
        assert_eq!((own.state.clone(), &own.message), (Some(WireState::Blocked), &drafts.message));

        // Bob empties the pool: Carol, who has used nothing, is bound by it.
        stacked_charges(&config, &store, "bob", STACKED_DRAFTS, 2);
        let report = usage_report(&config, &member(&config, "carol"), NOON_MS, &store);
        let drafts = &read_usage(&report.to_string()).unwrap().classes[0];
        assert_eq!((drafts.scope.as_deref(), drafts.state.clone()), (Some("workspace"), Some(WireState::Blocked)));
        assert_eq!(drafts.binding(), Some(0));
        assert_eq!(drafts.limits.iter().map(|l| l.used).collect::<Vec<_>>(), vec![Some(6), Some(0)]);

        let chats = &read_usage(&report.to_string()).unwrap().classes[1];
        assert_eq!(
            chats.limits.iter().map(|l| (l.window.as_deref(), l.limit, l.used)).collect::<Vec<_>>(),
            vec![(Some("5h"), Some(3), Some(0)), (Some("week"), Some(5), Some(0))]
        );
        assert!(chats.binding().is_some());
    }

    #[test]
    fn a_five_hour_and_a_weekly_limit_read_back_with_their_own_windows() {
        let config = stacked();
        let store = MemoryStore::new();
        let reading = read(&config, &stacked_charges(&config, &store, "dana", CHATS, 1));
        assert_eq!(reading.policies, vec![policy("chats.user.5h", 3, 18_000), policy("chats.user.week", 5, 604_800)]);
        assert_eq!((reading.binding(), reading.window.as_deref()), (Some(0), Some("5h")));
        assert_eq!((reading.remaining, reading.reset_after), (Some(2), Some(18_000)));

        let refused = stacked_charges(&config, &store, "dana", CHATS, 3);
        let refusal = read_refusal(&reply(&config, &refused, BodyFormat::OpenAi).body).unwrap();
        let quota = refusal.quota.unwrap();
        assert_eq!(
            quota
                .limits
                .iter()
                .map(|l| (l.window.as_deref(), l.remaining, l.reset_after, l.binding))
                .collect::<Vec<_>>(),
            // 2026-11-22 is a Sunday: the week turns at midnight.
            vec![(Some("5h"), Some(0), Some(18_000), true), (Some("week"), Some(2), Some(43_200), false)]
        );
        assert_eq!(quota.binding_limit().and_then(|l| l.reset), Some(NOON_MS / 1000 + 18_000));
    }

    #[test]
    fn stacked_ratelimit_fields_alone_name_their_class() {
        let mut config = stacked();
        config.response_headers.quota = false;
        let store = MemoryStore::new();
        let reading = read(&config, &stacked_charges(&config, &store, "alice", STACKED_DRAFTS, 1));
        assert_eq!((&reading.class, &reading.window), (&None, &None));
        assert_eq!(reading.policies.len(), 2);
        assert_eq!(reading.policy.as_ref().map(|p| p.parts()), Some(PolicyName::parse("drafts.user.day")));
        assert_eq!(reading.binding(), Some(1));

        // Items of another class are not this response's limits.
        let reading = read_headers([
            ("ratelimit-policy", r#""drafts";q=10;w=86400, "chats.user.5h";q=3;w=18000, "chats.user.week";q=5"#),
            ("ratelimit", r#""chats.user.week";r=4;t=60"#),
        ]);
        assert_eq!(
            reading.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["chats.user.5h", "chats.user.week"]
        );
        assert_eq!((reading.binding(), reading.policy.map(|p| p.quota)), (Some(1), Some(5)));
    }

    #[test]
    fn limits_that_do_not_read_are_left_out() {
        let usage = read_usage(
            r#"{"classes": [{"class": "a", "limits": null}, {"class": "b", "limits": [1, {"scope": "user", "used": 2}]},
                            {"class": "c", "limits": {"scope": "user"}}]}"#,
        )
        .unwrap();
        let counts: Vec<usize> = usage.classes.iter().map(|c| c.limits.len()).collect();
        assert_eq!(counts, [0, 1, 0]);
        assert_eq!(usage.classes[1].limits[0].used, Some(2));
        let refusal =
            read_refusal(r#"{"detail": "no", "violated-policies": "drafts", "quota": {"limits": [{"binding": 1}]}}"#)
                .unwrap();
        assert_eq!(refusal.violated_policies, Vec::<String>::new());
        assert_eq!(refusal.quota.map(|q| q.limits.len()), Some(0));
    }

    // Classes metered in money, with what the filter's own code writes.

    const CHAT: ClassId = ClassId(0);
    const ACTIONS: ClassId = ClassId(1);

    /// Chat priced by the table ($1.00 a day, warnings from $0.50), and
    /// actions at $0.004 each ($5.00 a month).
    fn priced() -> Config {
        Config::from_json(
            br#"{
              "identity": {"user": [{"header": "x-user-id"}], "tier": [{"header": "x-plan"}], "default_tier": "free"},
              "prices": {"currency": "USD", "models": {"gpt-4o": {"input": "2.50", "output": "10.00"}}},
              "classes": [
                {"name": "chat", "label": "Chat", "match": [{"path": {"exact": "/chat"},
                  "body": [{"field": "model", "equals": "gpt-4o"}]}], "cost": {"price": {"default_max_tokens": 1000}}},
                {"name": "actions", "unit": "action", "match": [{"path": {"prefix": "/a"}}],
                 "cost": {"fixed": 1, "unit_price": "0.004"}}
              ],
              "tier_order": ["free", "pro"],
              "tiers": {
                "free": {"upgrade_url": "https://example.com/up", "limits": {
                  "chat": {"soft": 50, "hard": 100, "window": "day"},
                  "actions": {"hard": 500, "window": "month"}}},
                "pro": {"limits": {
                  "chat": {"hard": 2000, "window": "day"},
                  "actions": {"hard": 5000, "window": "month"}}}
              },
              "usage_endpoint": "/quota"
            }"#,
        )
        .unwrap()
    }

    fn spend(config: &Config, store: &MemoryStore, class: ClassId, micros: u64) -> Decision {
        charge(config, &caller(config, "ana"), class, micros, false, NOON_MS, store)
    }

    #[test]
    fn money_headers_read_back_as_micro_units_of_their_currency() {
        let config = priced();
        let store = MemoryStore::new();
        // 100 prompt tokens at $2.50 and 1000 at $10.00 a million: $0.01025.
        let d = spend(&config, &store, CHAT, 10_250);
        let headers = response_headers(&config, &d);
        assert!(headers.contains(&(USED, "0.01025".to_string())), "{headers:?}");
        let reading = read_headers(headers.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!(reading.currency.as_deref(), Some("USD"));
        assert_eq!(reading.money().map(|c| c.code().to_string()).as_deref(), Some("USD"));
        assert_eq!(
            (reading.used, reading.limit, reading.soft_limit, reading.remaining, reading.cost),
            (Some(10_250), Some(1_000_000), Some(500_000), Some(989_750), Some(10_250))
        );
        // The RateLimit fields: cents, the room rounded down ($0.98975 is 98).
        assert_eq!(reading.policy, Some(Policy { name: "chat".into(), quota: 100, window: Some(86_400) }));
        assert_eq!(reading.limit_field.map(|l| l.remaining), Some(98));
        // A unit price: one action, $0.004.
        let reading = read(&config, &spend(&config, &store, ACTIONS, 4_000));
        assert_eq!((reading.cost, reading.used, reading.limit), (Some(4_000), Some(4_000), Some(5_000_000)));
        // Units stay units: no currency, integers.
        let units = self::config();
        let units = read(&units, &drafts(&units, &MemoryStore::new(), "ana", 1));
        assert_eq!((units.currency.as_deref(), units.money(), units.used), (None, None, Some(1)));
    }

    #[test]
    fn money_amounts_that_do_not_read_are_left_out() {
        let reading = read_headers([
            ("x-quota-class", "chat"),
            ("x-quota-currency", "USD"),
            ("x-quota-used", "4.2.0"),
            ("x-quota-limit", "5"),
            ("x-quota-remaining", "0.0000001"),
            ("x-quota-cost", "-1"),
        ]);
        assert_eq!((reading.used, reading.limit, reading.remaining, reading.cost), (None, Some(5_000_000), None, None));
        // Not a currency code: the amounts are still the currency's text.
        let odd = read_headers([("x-quota-currency", "usd"), ("x-quota-used", "0.50")]);
        assert_eq!((odd.currency.as_deref(), odd.money(), odd.used), (Some("usd"), None, Some(500_000)));
    }

    #[test]
    fn a_money_refusal_reads_back_its_numbers_and_its_money() {
        let config = priced();
        let store = MemoryStore::new();
        spend(&config, &store, CHAT, 990_000);
        // $0.02 does not fit the $0.01 left.
        let refused = spend(&config, &store, CHAT, 20_000);
        let openai = reply(&config, &refused, BodyFormat::OpenAi);
        assert_eq!(openai.status, 429);
        let reading = read_headers(openai.headers.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!((reading.used, reading.remaining, reading.cost), (Some(990_000), Some(10_000), Some(0)));
        let refusal = read_refusal(&openai.body).unwrap();
        assert_eq!(
            refusal.message.as_deref(),
            Some("This needs $0.02, but you have $0.01 left for today. It resets in 12 h. Pro includes $20.00 a day: https://example.com/up")
        );
        let quota = refusal.quota.clone().unwrap();
        assert_eq!(
            (quota.used, quota.limit, quota.soft_limit, quota.remaining, quota.requested),
            (Some(990_000), Some(1_000_000), Some(500_000), Some(10_000), Some(20_000))
        );
        let money = MoneyReport {
            currency: Some("USD".into()),
            used: Some("$0.99".into()),
            limit: Some("$1.00".into()),
            soft_limit: Some("$0.50".into()),
            remaining: Some("$0.01".into()),
            over: Some("$0.00".into()),
            grant: Some("$0.00".into()),
        };
        assert_eq!(quota.money.as_ref(), Some(&money));
        assert_eq!(money.money().map(|c| c.minor_digits()), Some(2));
        assert_eq!(
            quota.limits.iter().map(|l| (l.used, l.remaining)).collect::<Vec<_>>(),
            [(Some(990_000), Some(10_000))]
        );
        // Problem details carry the same object.
        let problem = read_refusal(&reply(&config, &refused, BodyFormat::Problem).body).unwrap();
        assert_eq!(problem.quota.and_then(|q| q.money), Some(money));
        // A unit class's refusal has none.
        let units = self::config();
        let blocked =
            read_refusal(&reply(&units, &drafts(&units, &MemoryStore::new(), "ana", 5), BodyFormat::OpenAi).body);
        assert_eq!(blocked.and_then(|r| r.quota).map(|q| q.money), Some(None));
    }

    #[test]
    fn the_usage_report_reads_back_the_money_of_each_class_and_limit() {
        let config = priced();
        let store = MemoryStore::new();
        spend(&config, &store, CHAT, 612_345);
        spend(&config, &store, ACTIONS, 4_000);
        let report = usage_report(&config, &caller(&config, "ana"), NOON_MS, &store);
        let usage = read_usage(&report.to_string()).unwrap();
        let [chat, actions] = &usage.classes[..] else { panic!("two classes: {:?}", usage.classes) };
        assert_eq!((chat.used, chat.limit, chat.remaining), (Some(612_345), Some(1_000_000), Some(387_655)));
        assert_eq!(chat.state, Some(WireState::Warning));
        // What was used and what remains rounded down; never more than there is.
        let money = chat.money.clone().unwrap();
        assert_eq!(
            (money.currency.as_deref(), money.used.as_deref(), money.remaining.as_deref(), money.limit.as_deref()),
            (Some("USD"), Some("$0.61"), Some("$0.38"), Some("$1.00"))
        );
        assert_eq!(chat.limits.first().and_then(|l| l.money.clone()), Some(money));
        assert_eq!(
            chat.message.as_deref(),
            Some("You've used $0.61 of your $1.00 for today. It resets in 12 h. Pro includes $20.00 a day: https://example.com/up")
        );
        let money = actions.money.clone().unwrap();
        assert_eq!(
            (money.used.as_deref(), money.limit.as_deref(), money.soft_limit),
            (Some("$0.004"), Some("$5.00"), None)
        );
        // A class counted in units: `money` is null.
        let units = self::config();
        let units = usage_report(&units, &caller(&units, "ana"), NOON_MS, &MemoryStore::new());
        let units = read_usage(&units.to_string()).unwrap();
        assert!(units.classes.iter().all(|c| c.money.is_none() && c.limits.iter().all(|l| l.money.is_none())));
    }

    #[test]
    fn a_money_object_that_does_not_read_is_left_out() {
        let refusal = read_refusal(r#"{"error": {"message": "no", "quota": {"used": 5, "money": "USD"}}}"#).unwrap();
        assert_eq!(refusal.quota.map(|q| (q.used, q.money)), Some((Some(5), None)));
        let usage = read_usage(r#"{"classes": [{"class": "a", "used": 1, "money": {"currency": 840}}]}"#).unwrap();
        assert_eq!((usage.classes[0].used, &usage.classes[0].money), (Some(1), &None));
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
