//! An upstream's own capacity refusal ("busy": a 429, 503 or 529 the model
//! provider answered) is not the caller's quota. The filter gives the
//! request's charge back, whatever `refunds` says, and replaces the
//! provider's body with its own friendly answer in the format the client
//! reads (see `reply::busy`), keeping the upstream's status and
//! `Retry-After` and telling the SDKs to retry (`x-should-retry: true`).
//!
//! Only the upstream's status decides, never anything the caller sends; and
//! only an answer the upstream gave, or Envoy gave for a request it never
//! forwarded: Envoy's own 503 after the upstream had the request (a reset)
//! keeps its charge (the work may have been done) and its body.

use crate::config::read::read_object;
use crate::config::ConfigError;
use crate::refund::flags;

/// The statuses that mean "busy" by default: rate limited (429),
/// unavailable (503) and Anthropic's overloaded (529).
pub const DEFAULT_STATUSES: [u16; 3] = [429, 503, 529];

/// Seconds a busy answer asks the client to wait when the upstream's says
/// nothing (`upstream_busy.retry_after`).
pub const DEFAULT_RETRY_AFTER: u64 = 2;

/// The longest `upstream_busy.retry_after`: an hour.
pub const MAX_RETRY_AFTER: u64 = 3600;

/// `upstream_busy`: which upstream answers are rewritten as "busy, not your quota".
#[derive(Debug, Clone)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawUpstreamBusy {
    /// Rewrite busy answers (default true); `false` passes them through as
    /// any other upstream error (refunded as `refunds` says).
    #[cfg_attr(feature = "schema", serde(default))]
    pub enabled: Option<bool>,
    /// The upstream statuses that mean the model is busy, each from 400 to
    /// 599. Default `[429, 503, 529]`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub statuses: Option<Vec<u16>>,
    /// Seconds the answer's `Retry-After` says when the upstream's says
    /// nothing (1 to 3600, default 2). An upstream's own `Retry-After` is kept.
    #[cfg_attr(feature = "schema", serde(default))]
    pub retry_after: Option<u64>,
}

read_object!(RawUpstreamBusy { enabled, statuses, retry_after });

/// The checked `upstream_busy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyPolicy {
    pub enabled: bool,
    pub statuses: Vec<u16>,
    pub retry_after: u64,
}

impl Default for BusyPolicy {
    fn default() -> Self {
        BusyPolicy { enabled: true, statuses: DEFAULT_STATUSES.to_vec(), retry_after: DEFAULT_RETRY_AFTER }
    }
}

impl BusyPolicy {
    /// Checks `upstream_busy` (`None`: the default policy).
    pub fn from_raw(raw: Option<&RawUpstreamBusy>) -> Result<BusyPolicy, ConfigError> {
        let Some(raw) = raw else { return Ok(BusyPolicy::default()) };
        let mut policy = BusyPolicy { enabled: raw.enabled.unwrap_or(true), ..BusyPolicy::default() };
        if let Some(statuses) = &raw.statuses {
            for (i, status) in statuses.iter().enumerate() {
                if !(400..=599).contains(status) {
                    return Err(ConfigError::new(
                        format!("upstream_busy.statuses[{i}]"),
                        format!("must be a status from 400 to 599, got {status}"),
                    ));
                }
            }
            policy.statuses = statuses.clone();
        }
        if let Some(seconds) = raw.retry_after {
            if !(1..=MAX_RETRY_AFTER).contains(&seconds) {
                return Err(ConfigError::new(
                    "upstream_busy.retry_after",
                    format!("must be between 1 and {MAX_RETRY_AFTER} seconds, got {seconds}"),
                ));
            }
            policy.retry_after = seconds;
        }
        Ok(policy)
    }

    /// Whether a status could be a busy answer (the response head is read
    /// for it); [`BusyPolicy::is_busy`] decides with Envoy's flags.
    pub fn may_be_busy(&self, status: Option<u16>) -> bool {
        self.enabled && status.is_some_and(|s| self.statuses.contains(&s))
    }

    /// Whether the response head with `status` and Envoy's `response_flags`
    /// is the upstream saying it is busy: a listed status the upstream
    /// answered itself (or Envoy for a request it never forwarded, which
    /// did no work either).
    pub fn is_busy(&self, status: Option<u16>, response_flags: u64) -> bool {
        self.may_be_busy(status) && response_flags & flags::ANSWERED_BY_ENVOY_AFTER_FORWARDING == 0
    }
}

/// The upstream's `Retry-After`, when it is a number of seconds (an
/// HTTP date, or anything else, reads as unknown: the header is kept as
/// it is all the same).
pub fn retry_after_seconds(value: Option<&[u8]>) -> Option<u64> {
    let text = std::str::from_utf8(value?).ok()?.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refund::flags::{NO_HEALTHY_UPSTREAM, UPSTREAM_REMOTE_RESET, UPSTREAM_REQUEST_TIMEOUT};

    fn policy(json: &str) -> Result<BusyPolicy, ConfigError> {
        let raw: RawUpstreamBusy = crate::config::read::from_json(json).unwrap();
        BusyPolicy::from_raw(Some(&raw))
    }

    #[test]
    fn the_default_policy_calls_429_503_and_529_busy() {
        let p = BusyPolicy::default();
        for status in [429, 503, 529] {
            assert!(p.is_busy(Some(status), 0), "{status}");
        }
        for status in [None, Some(200), Some(400), Some(500), Some(502), Some(504)] {
            assert!(!p.is_busy(status, 0), "{status:?}");
        }
        assert_eq!(p.retry_after, 2);
    }

    #[test]
    fn only_the_upstreams_own_answer_or_one_never_forwarded_is_busy() {
        let p = BusyPolicy::default();
        // Envoy's 503 after the upstream had the request: the work may be done.
        assert!(!p.is_busy(Some(503), UPSTREAM_REMOTE_RESET));
        assert!(!p.is_busy(Some(503), UPSTREAM_REQUEST_TIMEOUT));
        // Envoy's 503 for a request that never left: no work was done.
        assert!(p.is_busy(Some(503), NO_HEALTHY_UPSTREAM));
        assert!(p.may_be_busy(Some(503)));
    }

    #[test]
    fn statuses_and_the_default_wait_are_configurable_and_it_can_be_off() {
        let p = policy(r#"{"statuses": [503], "retry_after": 30}"#).unwrap();
        assert!(p.is_busy(Some(503), 0));
        assert!(!p.is_busy(Some(429), 0));
        assert_eq!(p.retry_after, 30);
        let off = policy(r#"{"enabled": false}"#).unwrap();
        assert!(!off.is_busy(Some(429), 0) && !off.may_be_busy(Some(529)));
        let none = policy(r#"{"statuses": []}"#).unwrap();
        assert!(!none.is_busy(Some(429), 0));
    }

    #[test]
    fn bad_values_name_their_path() {
        let e = policy(r#"{"statuses": [429, 200]}"#).unwrap_err();
        assert_eq!(e.to_string(), "upstream_busy.statuses[1]: must be a status from 400 to 599, got 200");
        let e = policy(r#"{"retry_after": 0}"#).unwrap_err();
        assert_eq!(e.to_string(), "upstream_busy.retry_after: must be between 1 and 3600 seconds, got 0");
        let e = policy(r#"{"retry_after": 3601}"#).unwrap_err();
        assert_eq!(e.path, "upstream_busy.retry_after");
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(retry_after_seconds(Some(b"7")), Some(7));
        assert_eq!(retry_after_seconds(Some(b" 30 ")), Some(30));
        assert_eq!(retry_after_seconds(Some(b"Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after_seconds(Some(b"-1")), None);
        assert_eq!(retry_after_seconds(Some(b"1.5")), None);
        assert_eq!(retry_after_seconds(Some(b"99999999999999999999")), None);
        assert_eq!(retry_after_seconds(Some(b"")), None);
        assert_eq!(retry_after_seconds(Some(b"\xff")), None);
        assert_eq!(retry_after_seconds(None), None);
    }
}
