//! The ledger: one record per classified request, what a PM and a cost team
//! review ("route, model family, input tokens, output tokens, status,
//! workspace ID, and plan ID"), and what `quota-matrix report` and
//! `quota-matrix whatif` read back.
//!
//! The filter writes each record as one line of JSON into Envoy's filter
//! state when the request ends, so any access log (a file, gRPC,
//! OpenTelemetry) carries it with `%FILTER_STATE(wasm.quota_ledger:PLAIN)%`.
//! The field names below are the wire format: add fields, never rename one.

use serde::{Deserialize, Serialize};

/// The version written in every record's `v`.
pub const LEDGER_VERSION: u32 = 1;

/// One classified request, from its arrival to its end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerRecord {
    /// [`LEDGER_VERSION`].
    pub v: u32,
    /// When the request arrived: RFC 3339, UTC, milliseconds
    /// (`2026-12-03T09:15:02.250Z`).
    pub time: String,
    /// Envoy's `x-request-id`, when the request had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The caller, as `observability.ids` shows ids (plain, hashed, or
    /// absent when omitted or anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// Whether the caller had no identity and was counted as anonymous.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// The tier (plan) the request was charged under.
    pub tier: String,
    /// The operation class.
    pub class: String,
    pub method: String,
    /// The path the filter classified, normalised, without its query.
    pub route: String,
    /// The model the request asked for (the body's `model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_asked: Option<String>,
    /// The model that served it: the upstream's reported model, else the
    /// model a degrade cell rewrote the request to, else the one asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_served: Option<String>,
    /// Whether the request asked for a streamed answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Units the request asked for at admission (its estimate: what it was
    /// charged, or would have been had it been admitted), in the class's
    /// units. A what-if replays refused requests at this cost.
    pub units_requested: u64,
    /// Units charged when the request was admitted (the estimate or
    /// reservation), in the class's own units: micro-units of the currency
    /// for a class metered in money. 0 for a refused request.
    pub units_charged: u64,
    /// Units the request finally cost, after corrections to reported usage
    /// and refunds.
    pub units_settled: u64,
    /// The ISO 4217 currency of a class metered in money (its units are
    /// micro-units of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Tokens the upstream reported, by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<LedgerTokens>,
    /// The status the client got.
    pub status: u16,
    /// The status the upstream answered, when it was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Whether the request reached the upstream.
    pub upstream_reached: bool,
    /// The quota state the caller was told (`x-quota-state`): `ok`,
    /// `warning`, `degraded`, `overage`, `queued`, `blocked`,
    /// `confirmation_required`, `not_included`, `too_large`,
    /// `workspace_required`, `unavailable`; `busy` when the upstream
    /// refused for its own capacity.
    pub state: String,
    /// The warning level this request was in (0 = the first level), when
    /// its state is a warning or past it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_level: Option<u32>,
    /// Whether this request crossed a warning level for the first time in
    /// its window (the warning event it caused).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
    /// The tier the caller was invited to upgrade to, when the answer
    /// carried an upgrade hint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_to: Option<String>,
    /// How long the request took in the filter's view, arrival to end, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Tokens reported by the upstream's usage, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerTokens {
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache (part of `input`).
    pub cached_input: u64,
    /// Reasoning tokens (part of `output`).
    pub reasoning: u64,
}

impl LedgerRecord {
    /// The record as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record from one line of a ledger: `None` for a line that is not
    /// one (an access log's `-` for a request the filter did not classify,
    /// or another format's line).
    pub fn from_line(line: &str) -> Option<LedgerRecord> {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str(line).ok().filter(|r: &LedgerRecord| r.v >= 1 && !r.class.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_from_its_line() {
        let record = LedgerRecord {
            v: LEDGER_VERSION,
            time: "2026-12-03T09:15:02.250Z".into(),
            user: Some("ana".into()),
            tier: "free".into(),
            class: "drafts".into(),
            method: "POST".into(),
            route: "/v1/chat/completions".into(),
            model_asked: Some("gpt-4o".into()),
            units_requested: 1,
            units_charged: 1,
            units_settled: 1,
            tokens: Some(LedgerTokens { input: 12, output: 30, cached_input: 0, reasoning: 0 }),
            status: 200,
            upstream_status: Some(200),
            upstream_reached: true,
            state: "warning".into(),
            warning_level: Some(0),
            warned: true,
            ..LedgerRecord::default()
        };
        let line = record.to_line();
        assert!(!line.contains('\n'));
        assert!(!line.contains("\"workspace\""), "absent fields are left out: {line}");
        assert_eq!(LedgerRecord::from_line(&line), Some(record));
    }

    #[test]
    fn lines_that_are_not_records_are_skipped() {
        for line in ["-", "", "{}", "{\"v\": 1}", "not json", "{\"v\": 0, \"class\": \"drafts\"}", "[1]"] {
            assert_eq!(LedgerRecord::from_line(line), None, "{line}");
        }
        // A newer record with fields this reader does not know still reads.
        let newer = r#"{"v": 2, "class": "drafts", "tier": "free", "state": "ok", "shiny": true}"#;
        assert_eq!(LedgerRecord::from_line(newer).map(|r| r.v), Some(2));
    }
}
