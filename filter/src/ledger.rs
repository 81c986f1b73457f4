//! Hands each request's ledger record (`quota_core::ledger`) to Envoy: a
//! property, which Envoy keeps as filter state for every access log to
//! print, and (`observability.ledger_analytics`) the analytics queue.
//!
//! Written from `on_log`: Envoy 1.40 runs a filter's access-log handler
//! (the wasm `proxy_on_log`) before the access logs of the HTTP connection
//! manager, for forwarded requests, the filter's own answers and clients
//! that left alike; `on_done` comes after them, too late.

use crate::host::{self, log};
use crate::shared::Shared;
use proxy_wasm::types::LogLevel;
use quota_core::ledger::LedgerRecord;

/// The property's name: Envoy stores it as filter state `wasm.quota_ledger`
/// (bytes, mutable, for the filter chain's life), which access logs print
/// with `%FILTER_STATE(wasm.quota_ledger:PLAIN)%`.
pub const PROPERTY: &str = "quota_ledger";

/// Writes `record` where the configuration says.
pub fn write(shared: &Shared, record: &LedgerRecord) {
    let line = record.to_line();
    let observability = &shared.config.observability;
    if observability.ledger_analytics {
        shared.reporter.ledger(&line);
    }
    if observability.ledger {
        if let Err(e) = host::set_property(PROPERTY, line.as_bytes()) {
            // Only a stream without stream info refuses it; not worth a line per request.
            log(LogLevel::Debug, &format!("quota: could not write the ledger record: {e}"));
        }
    }
}
