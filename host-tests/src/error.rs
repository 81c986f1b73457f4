//! What can go wrong when loading or driving a filter, each with the facts a test
//! failure needs: the build command, the trap message, the log lines.

use std::fmt;
use std::path::PathBuf;

use crate::logs::{render, LogRecord};

/// The command that builds the quota filter's `.wasm`.
pub const BUILD_COMMAND: &str = "cargo build --release --target wasm32-wasip1 -p quota-filter";

#[derive(Clone, Debug)]
pub enum HostError {
    /// The `.wasm` file does not exist.
    WasmMissing { path: PathBuf, build_command: String },
    /// The file exists but could not be read or compiled.
    Compile { path: PathBuf, message: String },
    /// The module does not look like a proxy-wasm filter, or failed to instantiate.
    Instantiate { message: String },
    /// The guest trapped (a Rust panic is an `unreachable` trap); the VM is dead.
    Trap { call: String, message: String, logs: Vec<LogRecord> },
    /// The VM died earlier; nothing more runs in it (as in Envoy).
    VmDead { reason: String },
    /// `proxy_on_vm_start` returned false.
    VmStartRejected { logs: Vec<LogRecord> },
    /// `proxy_on_configure` returned false: Envoy refuses the configuration.
    ConfigRejected { logs: Vec<LogRecord> },
    /// The test asked for something the host cannot do (unknown callout token...).
    Usage(String),
}

impl HostError {
    /// The guest's log lines attached to this error (empty if none).
    pub fn logs(&self) -> &[LogRecord] {
        match self {
            HostError::Trap { logs, .. } | HostError::VmStartRejected { logs } | HostError::ConfigRejected { logs } => {
                logs
            }
            _ => &[],
        }
    }

    /// True when some attached log line contains `needle`.
    pub fn logs_contain(&self, needle: &str) -> bool {
        self.logs().iter().any(|r| r.message.contains(needle))
    }

    pub fn is_trap(&self) -> bool {
        matches!(self, HostError::Trap { .. })
    }

    pub fn is_config_rejected(&self) -> bool {
        matches!(self, HostError::ConfigRejected { .. })
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::WasmMissing { path, build_command } => write!(
                f,
                "filter module not found at {}: build it with `{}` (or `make build`), \
                 or point QUOTA_FILTER_WASM at a .wasm file",
                path.display(),
                build_command
            ),
            HostError::Compile { path, message } => {
                write!(f, "cannot compile {}: {}", path.display(), message)
            }
            HostError::Instantiate { message } => write!(f, "cannot instantiate: {message}"),
            HostError::Trap { call, message, logs } => {
                write!(f, "guest trapped in {call}; the VM is dead:\n{message}\nlog:\n{}", render(logs))
            }
            HostError::VmDead { reason } => write!(f, "the VM is dead: {reason}"),
            HostError::VmStartRejected { logs } => {
                write!(f, "proxy_on_vm_start returned false\nlog:\n{}", render(logs))
            }
            HostError::ConfigRejected { logs } => {
                write!(f, "proxy_on_configure returned false: configuration rejected\nlog:\n{}", render(logs))
            }
            HostError::Usage(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for HostError {}
