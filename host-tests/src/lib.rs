//! A proxy-wasm host for tests, on wasmtime: it runs the compiled quota filter
//! (`quota_filter.wasm`) the way Envoy does, and records what the filter did.
//!
//! - [`Host`]: the "Envoy process" of one test: clock, shared data, queues,
//!   stats, logs, properties. Tests each make their own and run in parallel.
//! - [`Vm`]: one instance of the filter (one Envoy worker). Several VMs of a host
//!   share its shared data, like workers do.
//! - [`RequestBuilder`] / [`Exchange`]: one request in, everything observable out.
//! - [`Stream`]: the same, phase by phase, for interleavings.
//!
//! Semantics follow Envoy and proxy-wasm-cpp-host where the guest can tell the
//! difference: shared-data CAS rules, which header maps are reachable in which
//! phase, `Pause` on headers holding the body back, body buffering, deferred local
//! replies running through the filter's response callbacks, traps killing the VM.

mod abi;
mod callout;
mod clock;
mod error;
mod exchange;
mod headers;
mod host;
mod logs;
mod memory;
mod metrics;
mod module;
mod properties;
mod shared_data;
mod shared_queue;
mod state;
mod status;
mod stream;
mod stubs;
mod sync;
mod vm;
mod wasi;

pub use callout::{Callout, CalloutReply};
pub use clock::{format_rfc3339, parse_rfc3339, Clock, TimeParseError};
pub use error::{HostError, BUILD_COMMAND};
pub use exchange::{Exchange, RequestBuilder, UpstreamResponse};
pub use headers::{decode_headers, decode_pairs, encode_pairs, BytePair, Headers};
pub use host::{CalloutPolicy, CalloutTokens, Host, DEFAULT_START};
pub use logs::{render as render_logs, LogRecord, LogSource};
pub use metrics::MetricSnapshot;
pub use module::{quota_filter_path, ModuleSource, WASM_ENV};
pub use properties::{encode_path, int_value, parse_path, PropertyPath};
pub use shared_data::{SetAttempt, SharedData, SharedDataStats};
pub use shared_queue::SharedQueues;
pub use state::LocalReply;
pub use status::{Action, BufferType, LogLevel, MapType, MetricType, Status, StreamType};
pub use stream::{Message, Phase, Stream, StreamRecord};
pub use vm::{Vm, VmBuilder};
pub use wasmtime;
