//! Log lines the guest wrote, through `proxy_log` or to stdout/stderr (WASI
//! `fd_write`, where Rust's default panic message goes), as Envoy would print them.

use std::fmt;
use std::sync::Mutex;

use crate::status::LogLevel;
use crate::sync::lock;

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// `proxy_log`.
    Proxy,
    /// WASI fd 1, logged by Envoy at info.
    Stdout,
    /// WASI fd 2, logged by Envoy at error.
    Stderr,
    /// Written by the host itself (a trap, a VM marked dead).
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Index of the VM in its host (0 for the first VM created).
    pub vm: u32,
    /// The context that was running (root or stream id), 0 outside any call.
    pub context_id: u32,
    pub level: LogLevel,
    pub message: String,
    pub source: LogSource,
}

impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            LogSource::Proxy => "",
            LogSource::Stdout => " (stdout)",
            LogSource::Stderr => " (stderr)",
            LogSource::Host => " (host)",
        };
        write!(f, "[vm {} ctx {}] {}{}: {}", self.vm, self.context_id, self.level, source, self.message)
    }
}

/// All lines of one host, in order. Set `HOST_TESTS_LOG=1` to also print them to
/// stderr as they happen (shown by `cargo test -- --nocapture`).
#[derive(Debug, Default)]
pub(crate) struct LogBook {
    records: Mutex<Vec<LogRecord>>,
}

impl LogBook {
    pub(crate) fn push(&self, record: LogRecord) {
        if std::env::var_os("HOST_TESTS_LOG").is_some_and(|v| v != "0") {
            eprintln!("{record}");
        }
        lock(&self.records).push(record);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.records).len()
    }

    pub(crate) fn since(&self, start: usize) -> Vec<LogRecord> {
        lock(&self.records).get(start..).map(<[_]>::to_vec).unwrap_or_default()
    }

    pub(crate) fn all(&self) -> Vec<LogRecord> {
        lock(&self.records).clone()
    }
}

/// Formats log lines one per line, for assertion messages.
pub fn render(records: &[LogRecord]) -> String {
    if records.is_empty() {
        return "  (no log lines)".to_string();
    }
    records.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n")
}
