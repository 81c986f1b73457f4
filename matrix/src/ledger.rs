//! Reading a ledger (`report`, `whatif`): one [`LedgerRecord`] per line, as
//! an access log carries them.
//!
//! A ledger is input from elsewhere, so nothing in it may crash the tool:
//!
//! - Lines that are not records are passed over and counted: an access
//!   log's `-` for a request the filter did not classify, blank lines, JSON
//!   of another format (no `v` or no `class`), as
//!   [`LedgerRecord::from_line`] reads them.
//! - A line that looks like a record but is not a valid one (malformed
//!   JSON, a negative or fractional count, a count past
//!   [`MAX_UNITS`], a time that is not RFC 3339, an HTTP status outside
//!   100..=599 (or 0: no response), more cached than input tokens, a line longer than
//!   [`MAX_LINE`] bytes, bytes that are not UTF-8) is skipped; its line number
//!   and the reason are kept for the warning the command prints.
//! - Records are put in arrival order (their `time`; ties keep file order):
//!   an access log writes a record when its request ends, not when it began.

use quota_core::calendar::parse_rfc3339_utc;
use quota_core::ledger::LedgerRecord;
use quota_core::units::MAX_UNITS;
use serde_json::Value;
use std::io::BufRead;

/// The longest line read; a longer one is skipped (a record is a few
/// hundred bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// One record and where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its line number in the file (1-based).
    pub line: usize,
    /// Its `time` in Unix milliseconds.
    pub time_ms: i64,
    pub record: LedgerRecord,
}

/// A line that looked like a record and was not a valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub reason: String,
}

/// A ledger as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Where it was read from, as given on the command line.
    pub source: String,
    /// The records, in arrival order.
    pub entries: Vec<Entry>,
    /// Lines skipped as invalid records.
    pub skipped: Vec<Skipped>,
    /// Lines that are not records at all (`-`, blank, another format).
    pub not_records: usize,
}

impl Ledger {
    /// The warning for skipped lines (stderr), if any were: how many, and
    /// the first few with their reasons.
    pub fn warning(&self) -> Option<String> {
        let n = self.skipped.len();
        if n == 0 {
            return None;
        }
        let mut out = format!(
            "warning: {}: skipped {n} line{} that {} not valid ledger records\n",
            self.source,
            if n == 1 { "" } else { "s" },
            if n == 1 { "is" } else { "are" }
        );
        for s in self.skipped.iter().take(5) {
            out.push_str(&format!("  {}:{}: {}\n", self.source, s.line, s.reason));
        }
        if n > 5 {
            out.push_str(&format!("  ... and {} more\n", n - 5));
        }
        Some(out)
    }
}

/// Reads the ledger at `path` (`-`: standard input), line by line.
pub fn read(path: &str) -> Result<Ledger, String> {
    let ledger = if path == "-" {
        parse(std::io::stdin().lock(), "standard input")?
    } else {
        let file =
            std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {}", crate::load::io_reason(&e)))?;
        parse(std::io::BufReader::new(file), path)?
    };
    if ledger.entries.is_empty() {
        let lines = ledger.not_records + ledger.skipped.len();
        let mut message = format!(
            "{}: no ledger records ({lines} line{} read); a ledger has one JSON record per line, as \
             `quota-matrix generate` writes",
            ledger.source,
            if lines == 1 { "" } else { "s" }
        );
        if let Some(first) = ledger.skipped.first() {
            message.push_str(&format!("; line {}: {}", first.line, first.reason));
        }
        return Err(message);
    }
    Ok(ledger)
}

/// Reads a ledger from `input`; `source` names it.
pub fn parse(mut input: impl BufRead, source: &str) -> Result<Ledger, String> {
    let mut ledger = Ledger { source: source.to_string(), ..Ledger::default() };
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        buf.clear();
        let (read, too_long) =
            read_line(&mut input, &mut buf).map_err(|e| format!("{source}:{n}: cannot read: {e}"))?;
        if read == 0 {
            break;
        }
        if too_long {
            ledger.skipped.push(Skipped { line: n, reason: format!("longer than {MAX_LINE} bytes") });
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            ledger.skipped.push(Skipped { line: n, reason: "not UTF-8 text".into() });
            continue;
        };
        match record(text) {
            Line::NotRecord => ledger.not_records += 1,
            Line::Invalid(reason) => ledger.skipped.push(Skipped { line: n, reason }),
            Line::Record(record, time_ms) => ledger.entries.push(Entry { line: n, time_ms, record: *record }),
        }
    }
    // Stable: records of the same millisecond keep their file order.
    ledger.entries.sort_by_key(|e| e.time_ms);
    Ok(ledger)
}

/// One line into `buf` (without its newline), keeping at most [`MAX_LINE`]
/// bytes: the bytes consumed, and whether the line was longer.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok((consumed, too_long));
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (chunk.get(..at).unwrap_or_default(), Some(at + 1)),
            None => (chunk, None),
        };
        if buf.len().saturating_add(part.len()) > MAX_LINE {
            too_long = true;
            buf.clear();
        } else if !too_long {
            buf.extend_from_slice(part);
        }
        let used = done.unwrap_or(chunk.len());
        input.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok((consumed, too_long));
        }
    }
}

enum Line {
    NotRecord,
    Invalid(String),
    Record(Box<LedgerRecord>, i64),
}

/// One line: what [`LedgerRecord::from_line`] takes for a record, checked.
fn record(text: &str) -> Line {
    let text = text.trim();
    if !text.starts_with('{') {
        return Line::NotRecord;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Line::Invalid(format!("not JSON: {}", without_position(&e.to_string()))),
    };
    // Another format's JSON (no version or class) is not a record.
    let version = value.get("v").and_then(Value::as_u64).unwrap_or(0);
    let class = value.get("class").and_then(Value::as_str).unwrap_or("");
    if version < 1 || class.is_empty() {
        return Line::NotRecord;
    }
    let record: LedgerRecord = match serde_path_to_error::deserialize(value) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            return Line::Invalid(format!("{path}: {}", without_position(&e.into_inner().to_string())));
        }
    };
    match check(&record) {
        Ok(time_ms) => Line::Record(Box::new(record), time_ms),
        Err(reason) => Line::Invalid(reason),
    }
}

/// serde's "at line 1 column 9" says little of a one-line document.
fn without_position(reason: &str) -> String {
    reason.rsplit_once(" at line ").map_or(reason, |(r, _)| r).to_string()
}

/// What a record must hold to be counted: its time in milliseconds.
fn check(r: &LedgerRecord) -> Result<i64, String> {
    let time_ms = parse_time_ms(&r.time)
        .ok_or_else(|| format!("time: \"{}\" is not an RFC 3339 UTC time like \"2026-11-02T09:15:02.250Z\"", r.time))?;
    if r.tier.is_empty() {
        return Err("tier: missing".into());
    }
    for (name, n) in [
        ("units_requested", r.units_requested),
        ("units_charged", r.units_charged),
        ("units_settled", r.units_settled),
        ("duration_ms", r.duration_ms.unwrap_or(0)),
    ] {
        if n > MAX_UNITS {
            return Err(format!("{name}: {n} is past the largest count the filter keeps ({MAX_UNITS})"));
        }
    }
    if let Some(t) = &r.tokens {
        for (name, n) in [
            ("input", t.input),
            ("output", t.output),
            ("cached_input", t.cached_input),
            ("reasoning", t.reasoning),
            ("cache_write", t.cache_write),
        ] {
            if n > MAX_UNITS {
                return Err(format!("tokens.{name}: {n} is past the largest count the filter keeps ({MAX_UNITS})"));
            }
        }
        if t.cached_input.saturating_add(t.cache_write) > t.input {
            return Err(format!(
                "tokens: cached_input ({}) and cache_write ({}) are part of input ({})",
                t.cached_input, t.cache_write, t.input
            ));
        }
        if t.reasoning > t.output {
            return Err(format!("tokens: reasoning ({}) is part of output ({})", t.reasoning, t.output));
        }
    }
    for (name, status) in [("status", Some(r.status)), ("upstream_status", r.upstream_status)] {
        // 0: the client got no response (it left first).
        if let Some(s) = status.filter(|s| *s != 0 && !(100..=599).contains(s)) {
            return Err(format!("{name}: {s} is not an HTTP status (100 to 599, or 0 for none)"));
        }
    }
    Ok(time_ms)
}

/// `2026-11-02T09:15:02Z` or with a fraction (`.250Z`, up to 9 digits) as
/// Unix milliseconds (the fraction past milliseconds dropped).
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let whole = text.get(..19)?;
    let rest = text.get(19..)?;
    let seconds = parse_rfc3339_utc(&format!("{whole}Z"))?;
    let fraction = rest.strip_prefix('.').map_or(Some(""), |f| f.strip_suffix('Z'));
    let ms = match fraction? {
        "" if rest == "Z" => 0,
        "" => return None,
        digits if digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{digits:0<3}");
            padded.get(..3)?.parse::<i64>().ok()?
        }
        _ => return None,
    };
    seconds.checked_mul(1000)?.checked_add(ms)
}

/// Unix milliseconds as the ledger writes them: `2026-11-02T09:15:02.250Z`.
pub fn time_text(ms: i64) -> String {
    let seconds = quota_core::calendar::rfc3339(ms.div_euclid(1000));
    let stem = seconds.strip_suffix('Z').unwrap_or(&seconds);
    format!("{stem}.{:03}Z", ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Ledger {
        parse(text.as_bytes(), "l.jsonl").unwrap()
    }

    const GOOD: &str = r#"{"v":1,"time":"2026-11-02T09:00:00.250Z","user":"ana","tier":"free","class":"drafts","method":"POST","route":"/v1/x","units_requested":1,"units_charged":1,"units_settled":1,"status":200,"upstream_reached":true,"state":"ok"}"#;

    #[test]
    fn times_read_with_or_without_milliseconds() {
        assert_eq!(parse_time_ms("2026-11-02T09:00:00Z"), Some(1_793_610_000_000));
        assert_eq!(parse_time_ms("2026-11-02T09:00:00.250Z"), Some(1_793_610_000_250));
        assert_eq!(parse_time_ms("2026-11-02T09:00:00.5Z"), Some(1_793_610_000_500));
        assert_eq!(parse_time_ms("2026-11-02T09:00:00.123456789Z"), Some(1_793_610_000_123));
        for bad in [
            "2026-11-02T09:00:00.Z",
            "2026-11-02T09:00:00",
            "2026-11-02 09:00:00Z",
            "9am",
            "",
            "2026-11-02T09:00:00.25xZ",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
        assert_eq!(time_text(1_793_610_000_250), "2026-11-02T09:00:00.250Z");
        assert_eq!(parse_time_ms(&time_text(1_793_610_000_007)), Some(1_793_610_000_007));
    }

    #[test]
    fn access_log_dashes_and_other_json_are_not_records() {
        let l = read_text(&format!("-\n\n{GOOD}\n{{\"level\":\"info\"}}\n-\n"));
        assert_eq!((l.entries.len(), l.not_records, l.skipped.len()), (1, 4, 0));
        assert_eq!(l.entries[0].line, 3);
        assert_eq!(Some(&l.entries[0].record), LedgerRecord::from_line(GOOD).as_ref());
    }

    #[test]
    fn hostile_lines_are_skipped_with_their_line_and_reason() {
        let negative = GOOD.replace("\"units_settled\":1", "\"units_settled\":-5");
        let absurd = GOOD.replace("\"units_charged\":1", "\"units_charged\":18446744073709551615");
        let fraction = GOOD.replace("\"status\":200", "\"status\":200.5");
        let status = GOOD.replace("\"status\":200", "\"status\":9000");
        let time = GOOD.replace("2026-11-02T09:00:00.250Z", "yesterday");
        let tokens = GOOD.replace("\"status\"", "\"tokens\":{\"input\":5,\"cached_input\":9},\"status\"");
        let huge = format!("{{\"v\":1,\"class\":\"{}\"}}", "x".repeat(MAX_LINE));
        let text = [GOOD, "{\"v\":1,\"class\":", &negative, &absurd, &fraction, &status, &time, &tokens, &huge, GOOD]
            .join("\n");
        let l = read_text(&text);
        assert_eq!(l.entries.len(), 2);
        let reasons: Vec<(usize, &str)> = l.skipped.iter().map(|s| (s.line, s.reason.as_str())).collect();
        assert_eq!(reasons[0], (2, "not JSON: EOF while parsing a value"));
        assert_eq!(reasons[1], (3, "units_settled: invalid value: integer `-5`, expected u64"));
        assert_eq!(
            reasons[2],
            (4, "units_charged: 18446744073709551615 is past the largest count the filter keeps (9007199254740991)")
        );
        assert_eq!(reasons[3], (5, "status: invalid type: floating point `200.5`, expected u16"));
        assert_eq!(reasons[4], (6, "status: 9000 is not an HTTP status (100 to 599, or 0 for none)"));
        assert!(reasons[5].1.starts_with("time: \"yesterday\" is not an RFC 3339"), "{:?}", reasons[5]);
        assert_eq!(reasons[6], (8, "tokens: cached_input (9) and cache_write (0) are part of input (5)"));
        assert_eq!(reasons[7], (9, "longer than 65536 bytes"));
        let warning = l.warning().unwrap();
        assert!(warning.starts_with("warning: l.jsonl: skipped 8 lines that are not valid ledger records\n"));
        assert!(warning.contains("  l.jsonl:3: units_settled: invalid value"), "{warning}");
        assert!(warning.ends_with("  ... and 3 more\n"), "{warning}");
    }

    #[test]
    fn deeply_nested_json_is_refused_not_followed_down() {
        let deep = format!("{{\"v\":1,\"class\":\"x\",\"a\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(deep.len() < MAX_LINE);
        let l = read_text(&format!("{deep}\n{GOOD}"));
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.skipped, vec![Skipped { line: 1, reason: "not JSON: recursion limit exceeded".into() }]);
    }

    #[test]
    fn bytes_that_are_not_utf8_skip_only_their_line() {
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n{\"v\":1,\"class\":\"\xff\"}\n");
        bytes.extend_from_slice(GOOD.as_bytes());
        let l = parse(&bytes[..], "l").unwrap();
        assert_eq!((l.entries.len(), l.skipped), (2, vec![Skipped { line: 2, reason: "not UTF-8 text".into() }]));
    }

    #[test]
    fn records_are_put_in_arrival_order() {
        let late = GOOD.replace("09:00:00.250", "09:00:01.000");
        let l = read_text(&format!("{late}\n{GOOD}\n{GOOD}"));
        let order: Vec<usize> = l.entries.iter().map(|e| e.line).collect();
        assert_eq!(order, [2, 3, 1]);
    }
}
