//! HTTP calls to other clusters (Redis's front, the analytics sink).
//!
//! The one call left to the SDK: its `dispatch_http_call` records which
//! context made the call, and the SDK's `proxy_on_http_call_response`
//! refuses (panics on) an answer whose call it did not record, so a direct
//! binding would trade a panic on an unlikely status for one on every
//! answer. The SDK returns `Err` for the statuses Envoy documents for this
//! call (`BadArgument`: unknown cluster or bad headers; `InternalFailure`)
//! and panics only on any other.

use super::refused::Refused;
use proxy_wasm::hostcalls;
use std::time::Duration;

/// Sends `body` with `headers` to `cluster`; the token names the answer.
pub fn dispatch_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Refused> {
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout)
        .map_err(|status| Refused { call: "proxy_http_call", status: status as u32 })
}
