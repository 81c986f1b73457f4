//! The ledger: one record per classified request, what a PM and a cost team
//! review ("route, model family, input tokens, output tokens, status,
//! workspace ID, and plan ID"), and what `quota-matrix report` and
//! `quota-matrix whatif` read back.
//!
//! The filter writes each record as one line of JSON into Envoy's filter
//! state when the request ends, so any access log (a file, gRPC,
//! OpenTelemetry) carries it with `%FILTER_STATE(wasm.quota_ledger:PLAIN)%`.
//! The field names below are the wire format: add fields, never rename one.

use crate::metering::TokenKinds;
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
    /// Whether the client sent the confirmation header (`x-quota-confirm`)
    /// for a costly request: a what-if replays the request as confirmed, as
    /// the filter decided it, instead of asking for confirmation again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
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
    /// Input tokens written to the provider's prompt cache (part of
    /// `input`; Anthropic's `cache_creation_input_tokens`): priced apart
    /// from plain and cached input, so a what-if can price every kind.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LedgerTokens {
    /// The ledger's counts from the exclusive kinds the metering reads
    /// ([`TokenKinds`]): `input` and `output` include their parts, as
    /// OpenAI reports them, whatever the provider.
    pub fn of(k: &TokenKinds) -> LedgerTokens {
        LedgerTokens {
            input: k.input.saturating_add(k.cached_input).saturating_add(k.cache_write),
            output: k.output.saturating_add(k.reasoning),
            cached_input: k.cached_input,
            reasoning: k.reasoning,
            cache_write: k.cache_write,
        }
    }

    /// Back to exclusive kinds, as a price table prices them (a part
    /// larger than its whole counts the whole as that part).
    pub fn kinds(&self) -> TokenKinds {
        let cached_input = self.cached_input.min(self.input);
        let cache_write = self.cache_write.min(self.input - cached_input);
        let reasoning = self.reasoning.min(self.output);
        TokenKinds {
            input: self.input - cached_input - cache_write,
            cached_input,
            cache_write,
            output: self.output - reasoning,
            reasoning,
        }
    }
}

impl LedgerRecord {
    /// The record as one line of JSON (no newline). Besides what JSON
    /// escapes (`"`, `\\`, and controls below U+0020), the other control
    /// characters (U+007F to U+009F) and the line and paragraph separators
    /// (U+2028, U+2029), which some readers take for a line break (Python's
    /// `str.splitlines` does), are written as `\\u` escapes: whatever a
    /// caller sends, a record is one line to every reader.
    ///
    /// Written by hand, field by field in the struct's order, leaving out
    /// what serde's attributes above leave out: this runs once per request,
    /// and serde's serializer cost the filter more than the rest of the log
    /// phase (a test checks the line is serde's, byte for byte).
    pub fn to_line(&self) -> String {
        let mut w = Line(String::with_capacity(512));
        w.0.push('{');
        w.number("v", u64::from(self.v));
        w.text("time", &self.time);
        w.some_text("request_id", &self.request_id);
        w.some_text("user", &self.user);
        w.some_text("workspace", &self.workspace);
        w.some_text("organisation", &self.organisation);
        w.flag("anonymous", self.anonymous);
        w.text("tier", &self.tier);
        w.text("class", &self.class);
        w.text("method", &self.method);
        w.text("route", &self.route);
        w.some_text("model_asked", &self.model_asked);
        w.some_text("model_served", &self.model_served);
        w.flag("stream", self.stream);
        w.number("units_requested", self.units_requested);
        w.number("units_charged", self.units_charged);
        w.number("units_settled", self.units_settled);
        w.some_text("currency", &self.currency);
        if let Some(t) = &self.tokens {
            w.key("tokens");
            w.0.push('{');
            w.number("input", t.input);
            w.number("output", t.output);
            w.number("cached_input", t.cached_input);
            w.number("reasoning", t.reasoning);
            if !is_zero(&t.cache_write) {
                w.number("cache_write", t.cache_write);
            }
            w.0.push('}');
        }
        w.number("status", u64::from(self.status));
        if let Some(status) = self.upstream_status {
            w.number("upstream_status", u64::from(status));
        }
        w.key("upstream_reached");
        w.0.push_str(if self.upstream_reached { "true" } else { "false" });
        w.flag("confirmed", self.confirmed);
        w.text("state", &self.state);
        if let Some(level) = self.warning_level {
            w.number("warning_level", u64::from(level));
        }
        w.flag("warned", self.warned);
        w.some_text("upgrade_to", &self.upgrade_to);
        if let Some(ms) = self.duration_ms {
            w.number("duration_ms", ms);
        }
        w.0.push('}');
        w.0
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

/// A record's line being written: members after the first get a comma.
struct Line(String);

impl Line {
    fn key(&mut self, key: &str) {
        self.open(key);
        self.0.push_str("\":");
    }

    /// `"key` after a comma when a member came before.
    fn open(&mut self, key: &str) {
        self.0.push_str(if self.0.ends_with('{') { "\"" } else { ",\"" });
        self.0.push_str(key);
    }

    fn number(&mut self, key: &str, n: u64) {
        self.key(key);
        crate::decimal::push_u64(&mut self.0, n);
    }

    fn flag(&mut self, key: &str, on: bool) {
        if on {
            self.key(key);
            self.0.push_str("true");
        }
    }

    fn text(&mut self, key: &str, text: &str) {
        self.open(key);
        self.0.push_str("\":\"");
        escape_into(&mut self.0, text);
        self.0.push('"');
    }

    fn some_text(&mut self, key: &str, text: &Option<String>) {
        if let Some(text) = text {
            self.text(key, text);
        }
    }
}

/// The bytes an escaped character starts with: controls, `"`, `\`, DEL,
/// and the lead bytes of U+0080 to U+009F (0xC2) and U+2028/U+2029 (0xE2).
const STARTS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b == 0x7f || b == 0xc2 || b == 0xe2;
        b += 1;
    }
    table
};

/// `text` as the inside of a JSON string on one line: serde_json's escapes
/// (`\"`, `\\`, `\n` and the other short forms, `\u00XX` for the other
/// controls), and `\uXXXX` for U+007F to U+009F, U+2028 and U+2029.
fn escape_into(out: &mut String, text: &str) {
    // Almost every text is plain printable ASCII: one pass over its bytes
    // finds none of the bytes an escaped character starts with.
    if !text.as_bytes().iter().any(|b| STARTS_ESCAPE[usize::from(*b)]) {
        out.push_str(text);
        return;
    }
    let mut rest = text;
    while let Some(at) = rest
        .find(|c: char| matches!(c, '"' | '\\' | '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}'))
    {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let mut chars = after.chars();
        let Some(c) = chars.next() else { break };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = u32::from(c);
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(char::from(HEX.get(((n >> shift) & 0xf) as usize).copied().unwrap_or(b'0')));
                }
            }
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// The most bytes of a model name a record keeps (asked or served): a
/// caller's `model` is whatever it sends.
pub const MAX_MODEL_BYTES: usize = 256;
/// The most bytes of a route a record keeps.
pub const MAX_ROUTE_BYTES: usize = 1024;
/// The most bytes of any other text a record keeps (a request id, a method).
pub const MAX_TEXT_BYTES: usize = 256;

/// `text` cut to at most `max` bytes at a character boundary, marked with a
/// trailing `…` when cut: one record stays small whatever a caller sends.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(text.get(..end).unwrap_or_default());
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's compact format, escaping what [`LedgerRecord::to_line`]
    /// escapes: the reference the hand-written line is checked against.
    struct OneLine;

    impl serde_json::ser::Formatter for OneLine {
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            out: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            for c in fragment.chars() {
                if matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}') {
                    write!(out, "\\u{:04x}", u32::from(c))?;
                } else {
                    write!(out, "{c}")?;
                }
            }
            Ok(())
        }
    }

    fn serde_line(record: &LedgerRecord) -> String {
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, OneLine);
        record.serialize(&mut serializer).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Text with every kind of character the writer treats apart.
    fn odd_text(seed: u64) -> String {
        const PIECES: [&str; 14] = [
            "a", "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{1}", "\u{1f}", "\u{7f}", "\u{85}", "\u{2028}",
            "é😀",
        ];
        let mut x = seed;
        let mut out = String::new();
        for _ in 0..(seed % 9) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            out.push_str(PIECES[(x >> 33) as usize % PIECES.len()]);
        }
        out
    }

    #[test]
    fn the_hand_written_line_is_serdes_byte_for_byte() {
        for seed in 0..3000u64 {
            let text = |k: u64| odd_text(seed.wrapping_mul(31).wrapping_add(k));
            let maybe = |k: u64| (seed >> (k % 13) & 1 == 1).then(|| text(k));
            let bit = |k: u64| seed >> (k % 11) & 1 == 1;
            let record = LedgerRecord {
                v: (seed % 3) as u32,
                time: text(1),
                request_id: maybe(2),
                user: maybe(3),
                workspace: maybe(4),
                organisation: maybe(5),
                anonymous: bit(6),
                tier: text(7),
                class: text(8),
                method: text(9),
                route: text(10),
                model_asked: maybe(11),
                model_served: maybe(12),
                stream: bit(13),
                units_requested: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                units_charged: if bit(14) { u64::MAX } else { seed },
                units_settled: seed / 3,
                currency: maybe(15),
                tokens: bit(16).then_some(LedgerTokens {
                    input: seed,
                    output: u64::MAX - seed,
                    cached_input: seed % 7,
                    reasoning: seed % 5,
                    cache_write: seed % 4,
                }),
                status: (seed % 600) as u16,
                upstream_status: bit(17).then_some(u16::MAX),
                upstream_reached: bit(18),
                confirmed: bit(19),
                state: text(20),
                warning_level: bit(21).then_some(u32::MAX),
                warned: bit(22),
                upgrade_to: maybe(23),
                duration_ms: bit(24).then_some(seed),
            };
            assert_eq!(record.to_line(), serde_line(&record), "seed {seed}");
        }
    }

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
            tokens: Some(LedgerTokens { input: 12, output: 30, ..LedgerTokens::default() }),
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
    fn characters_some_readers_break_lines_at_are_escaped() {
        let odd = "a\nb\r\u{85}c\u{2028}d\u{2029}e\u{9f}\"}{é\u{7f}";
        let record = LedgerRecord { v: 1, class: "c".into(), model_asked: Some(odd.into()), ..LedgerRecord::default() };
        let line = record.to_line();
        assert!(line.contains(r#"a\nb\r\u0085c\u2028d\u2029e\u009f\"}{é\u007f"#), "{line}");
        assert_eq!(line.lines().count(), 1);
        assert!(!line.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')), "{line}");
        assert_eq!(LedgerRecord::from_line(&line), Some(record));
    }

    #[test]
    fn a_confirmed_request_and_cache_writes_are_written_only_when_there() {
        let mut record = LedgerRecord {
            v: LEDGER_VERSION,
            class: "drafts".into(),
            tokens: Some(LedgerTokens { input: 10, ..LedgerTokens::default() }),
            ..LedgerRecord::default()
        };
        let line = record.to_line();
        assert!(!line.contains("confirmed") && !line.contains("cache_write"), "{line}");
        record.confirmed = true;
        record.tokens = Some(LedgerTokens { input: 10, cache_write: 4, ..LedgerTokens::default() });
        let line = record.to_line();
        assert!(line.contains("\"confirmed\":true") && line.contains("\"cache_write\":4"), "{line}");
        assert_eq!(LedgerRecord::from_line(&line), Some(record));
    }

    #[test]
    fn text_is_bounded_at_a_character_boundary() {
        assert_eq!(bounded("gpt-4o", MAX_MODEL_BYTES), "gpt-4o");
        assert_eq!(bounded("abcdef", 3), "abc…");
        // "é" is two bytes: a cut inside it moves back to its start.
        assert_eq!(bounded("aé", 2), "a…");
        let huge = "m".repeat(1_000_000);
        assert_eq!(bounded(&huge, MAX_MODEL_BYTES).len(), MAX_MODEL_BYTES + '…'.len_utf8());
    }

    #[test]
    fn token_kinds_round_trip_through_the_ledgers_counts() {
        let kinds = TokenKinds { input: 100, cached_input: 900, cache_write: 50, output: 30, reasoning: 70 };
        let tokens = LedgerTokens::of(&kinds);
        assert_eq!(
            tokens,
            LedgerTokens { input: 1050, output: 100, cached_input: 900, reasoning: 70, cache_write: 50 }
        );
        assert_eq!(tokens.kinds(), kinds);
        // A record that claims more cached than input tokens prices no negative input.
        let odd = LedgerTokens { input: 5, cached_input: 9, cache_write: 3, output: 1, reasoning: 4 };
        assert_eq!(odd.kinds(), TokenKinds { input: 0, cached_input: 5, cache_write: 0, output: 0, reasoning: 1 });
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
