//! Small, non-panicking views of the host: time, properties and logs.

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use quota_core::clock::Clock;
use quota_core::request::Properties;
use std::time::UNIX_EPOCH;

/// The host's wall clock.
pub struct HostClock;

impl Clock for HostClock {
    fn now_ms(&self) -> i64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Envoy attributes and metadata.
pub struct HostProperties;

impl Properties for HostProperties {
    fn property(&self, path: &[String]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.iter().map(String::as_str).collect()).ok().flatten()
    }
}

/// Logs through the host; a log that cannot be written is dropped.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Envoy's response flags for this stream (`response.flags`, a little-endian
/// integer); 0 when the host does not say.
pub fn response_flags() -> u64 {
    match hostcalls::get_property(vec!["response", "flags"]) {
        Ok(Some(bytes)) => bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_le_bytes),
        _ => 0,
    }
}

/// Whether Envoy connected this stream to an upstream host (`upstream.address`).
pub fn upstream_connected() -> bool {
    matches!(hostcalls::get_property(vec!["upstream", "address"]), Ok(Some(a)) if !a.is_empty())
}

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

/// Makes `context_id` the context later host calls act on, until the
/// current callback returns or this is called again. False if the host
/// refused (the SDK's binding panics on statuses it does not expect).
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: a plain call with an integer argument.
    unsafe { proxy_set_effective_context(context_id) == 0 }
}
