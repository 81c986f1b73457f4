//! When a charged request gets its units back. The rule: only when the
//! upstream did not do the work. A failed connection, a route or cluster
//! that does not exist, a circuit breaker, or an upstream status that says
//! the request was not processed give the units back; a client that leaves
//! after the request was forwarded, a timeout or a reset after the upstream
//! had the request keep the charge (the upstream may have done, and billed,
//! the work).

use crate::config::read::{read_object, FromNode};
use crate::config::tree::{Node, Number};
use crate::config::ConfigError;

/// Envoy's response flags, as its `response.flags` attribute reports them
/// (the legacy bit values of `StreamInfo::ResponseFlag`).
pub mod flags {
    pub const FAILED_LOCAL_HEALTH_CHECK: u64 = 0x1;
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    pub const LOCAL_RESET: u64 = 0x8;
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    pub const UPSTREAM_OVERFLOW: u64 = 0x80;
    pub const NO_ROUTE_FOUND: u64 = 0x100;
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x10000;
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 0x80000;
    pub const DURATION_TIMEOUT: u64 = 0x400000;
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x800000;
    pub const NO_CLUSTER_FOUND: u64 = 0x1000000;
    pub const DNS_RESOLUTION_FAILED: u64 = 0x4000000;
    pub const DOWNSTREAM_REMOTE_RESET: u64 = 0x10000000;

    /// The request never left Envoy for an upstream.
    pub const NOT_FORWARDED: u64 = FAILED_LOCAL_HEALTH_CHECK
        | NO_HEALTHY_UPSTREAM
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_OVERFLOW
        | NO_ROUTE_FOUND
        | NO_CLUSTER_FOUND
        | DNS_RESOLUTION_FAILED;

    /// The upstream had the request, and the answer is Envoy's, not the
    /// upstream's: the work may have been done.
    pub const ANSWERED_BY_ENVOY_AFTER_FORWARDING: u64 = UPSTREAM_REQUEST_TIMEOUT
        | LOCAL_RESET
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_TERMINATION
        | DOWNSTREAM_CONNECTION_TERMINATION
        | STREAM_IDLE_TIMEOUT
        | UPSTREAM_MAX_STREAM_DURATION_REACHED
        | DURATION_TIMEOUT
        | UPSTREAM_PROTOCOL_ERROR
        | DOWNSTREAM_REMOTE_RESET;
}

/// The upstream statuses that give a charge back (`refunds.statuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundPolicy {
    /// Inclusive ranges of statuses, each within 400..=599.
    statuses: Vec<(u16, u16)>,
}

impl Default for RefundPolicy {
    /// Every 4xx and 5xx the upstream itself answers: it refused or failed
    /// the request, and providers do not bill those.
    fn default() -> Self {
        RefundPolicy { statuses: vec![(400, 599)] }
    }
}

/// One entry of `refunds.statuses`: a status code, or a class such as `"4xx"`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(untagged))]
pub enum RawStatus {
    Code(u16),
    Class(String),
}

impl FromNode for RawStatus {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::Number(Number::Unsigned(code)) => match u16::try_from(*code) {
                Ok(code) => Ok(RawStatus::Code(code)),
                Err(_) => Err(not_a_status(path, node)),
            },
            Node::String(class) => Ok(RawStatus::Class(class.clone())),
            other => Err(not_a_status(path, other)),
        }
    }
}

/// Worded as the checks of `RefundPolicy::from_raw` word a status they refuse.
fn not_a_status(path: &str, node: &Node) -> ConfigError {
    let found = match node {
        Node::Null => "null".to_string(),
        other => other.unexpected().to_string(),
    };
    ConfigError::new(path, format!("must be a status code, \"4xx\" or \"5xx\", got {found}"))
}

/// `refunds`: which upstream answers give the units back.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RawRefunds {
    /// Upstream statuses that give the charge back: codes (`503`) or classes
    /// (`"4xx"`, `"5xx"`), each from 400 to 599. Default `["4xx", "5xx"]`;
    /// `[]` keeps every charge the upstream answered. Requests Envoy never
    /// forwarded are always refunded, and requests it forwarded but the
    /// upstream did not answer (timeouts, resets, the client leaving) never are.
    pub statuses: Vec<RawStatus>,
}

read_object!(RawRefunds { statuses: required });

impl RefundPolicy {
    /// Checks `refunds` (`None`: the default policy).
    pub fn from_raw(raw: Option<&RawRefunds>) -> Result<RefundPolicy, ConfigError> {
        let Some(raw) = raw else { return Ok(RefundPolicy::default()) };
        let mut statuses = Vec::with_capacity(raw.statuses.len());
        for (i, status) in raw.statuses.iter().enumerate() {
            let path = format!("refunds.statuses[{i}]");
            let range = match status {
                RawStatus::Code(code) if (400..=599).contains(code) => (*code, *code),
                RawStatus::Code(code) => {
                    return Err(ConfigError::new(path, format!("must be a status from 400 to 599, got {code}")))
                }
                RawStatus::Class(class) => match class.to_ascii_lowercase().as_str() {
                    "4xx" => (400, 499),
                    "5xx" => (500, 599),
                    _ => {
                        return Err(ConfigError::new(
                            path,
                            format!("must be a status code, \"4xx\" or \"5xx\", got \"{class}\""),
                        ))
                    }
                },
            };
            statuses.push(range);
        }
        Ok(RefundPolicy { statuses })
    }

    fn refunds_status(&self, status: u16) -> bool {
        self.statuses.iter().any(|(from, to)| (*from..=*to).contains(&status))
    }

    /// The response's head arrived with `status` (`None`: unreadable) and
    /// Envoy's response flags: whether the charge is given back.
    pub fn after_response(&self, status: Option<u16>, response_flags: u64) -> bool {
        if response_flags & flags::NOT_FORWARDED != 0 {
            return true;
        }
        match status {
            Some(s) if s < 400 => false,
            // Envoy answered (504 after a timeout, 503 after a reset) for an
            // upstream that had the request: the work may be done.
            _ if response_flags & flags::ANSWERED_BY_ENVOY_AFTER_FORWARDING != 0 => false,
            Some(s) => self.refunds_status(s),
            None => false,
        }
    }

    /// The stream ended before any response head (the client left, or the
    /// upstream never answered): refunded only if the request was never
    /// forwarded: Envoy's flags say so, or no upstream connection was made.
    pub fn without_response(&self, response_flags: u64, upstream_connected: bool) -> bool {
        response_flags & flags::NOT_FORWARDED != 0 || !upstream_connected
    }
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;

    fn policy(json: &str) -> Result<RefundPolicy, ConfigError> {
        let raw: RawRefunds = crate::config::read::from_json(json).unwrap();
        RefundPolicy::from_raw(Some(&raw))
    }

    #[test]
    fn a_client_that_leaves_after_forwarding_keeps_its_charge() {
        let p = RefundPolicy::default();
        assert!(!p.without_response(DOWNSTREAM_CONNECTION_TERMINATION, true));
        assert!(!p.without_response(DOWNSTREAM_REMOTE_RESET, true));
        assert!(!p.without_response(0, true));
    }

    #[test]
    fn a_request_never_forwarded_is_refunded() {
        let p = RefundPolicy::default();
        // The client left before Envoy had an upstream connection.
        assert!(p.without_response(DOWNSTREAM_CONNECTION_TERMINATION, false));
        for flag in [UPSTREAM_CONNECTION_FAILURE, NO_HEALTHY_UPSTREAM, UPSTREAM_OVERFLOW, NO_ROUTE_FOUND] {
            assert!(p.without_response(flag, true), "{flag:#x}");
            // Envoy's own 503 for it.
            assert!(p.after_response(Some(503), flag), "{flag:#x}");
        }
    }

    #[test]
    fn upstream_errors_are_refunded_but_envoy_timeouts_after_forwarding_are_not() {
        let p = RefundPolicy::default();
        assert!(p.after_response(Some(400), 0));
        assert!(p.after_response(Some(429), 0));
        assert!(p.after_response(Some(503), 0));
        assert!(!p.after_response(Some(200), 0));
        assert!(!p.after_response(Some(304), 0));
        // A long request that outlives the route timeout: the upstream worked on it.
        assert!(!p.after_response(Some(504), UPSTREAM_REQUEST_TIMEOUT));
        assert!(!p.after_response(Some(503), UPSTREAM_REMOTE_RESET));
        assert!(!p.after_response(Some(503), UPSTREAM_CONNECTION_TERMINATION));
        assert!(!p.after_response(None, 0));
    }

    #[test]
    fn statuses_are_configurable() {
        let only_busy = policy(r#"{"statuses": [429, 503, "4XX"]}"#).unwrap();
        assert!(only_busy.after_response(Some(503), 0));
        assert!(only_busy.after_response(Some(404), 0));
        assert!(!only_busy.after_response(Some(500), 0));
        let never = policy(r#"{"statuses": []}"#).unwrap();
        assert!(!never.after_response(Some(500), 0));
        // Never forwarded is refunded whatever the statuses say.
        assert!(never.after_response(Some(503), UPSTREAM_CONNECTION_FAILURE));
    }

    #[test]
    fn bad_statuses_name_their_path() {
        let e = policy(r#"{"statuses": ["5xx", 200]}"#).unwrap_err();
        assert_eq!(e.to_string(), "refunds.statuses[1]: must be a status from 400 to 599, got 200");
        let e = policy(r#"{"statuses": ["oops"]}"#).unwrap_err();
        assert!(e.to_string().starts_with("refunds.statuses[0]: must be a status code"), "{e}");
    }
}
