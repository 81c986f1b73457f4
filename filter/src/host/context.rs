//! The host as every context sees it: time, properties, logs, the tick, the
//! effective context and Envoy's foreign functions.

use super::refused::{check, take, Refused, OK};
use proxy_wasm::types::LogLevel;
use quota_core::clock::Clock;
use quota_core::request::Properties;
use std::ptr::{null, null_mut};

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

/// The host's wall clock; 0 if the host will not say.
pub struct HostClock;

impl Clock for HostClock {
    fn now_ms(&self) -> i64 {
        let mut nanos: u64 = 0;
        // SAFETY: the host writes one integer.
        let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
        if status == OK {
            i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
        } else {
            0
        }
    }
}

/// Envoy attributes and metadata.
pub struct HostProperties;

impl Properties for HostProperties {
    fn property(&self, path: &[String]) -> Option<Vec<u8>> {
        property(path.iter().map(String::as_str))
    }
}

/// The ABI's path: the segments joined by NUL.
fn path_bytes<'a>(path: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, part) in path.enumerate() {
        if i > 0 {
            bytes.push(0);
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// An attribute's value; `None` if absent or the host will not say.
fn property<'a>(path: impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let bytes = path_bytes(path);
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host reads `bytes` during the call and may hand us a
    // buffer it allocated for us.
    let status = unsafe { proxy_get_property(bytes.as_ptr(), bytes.len(), &mut data, &mut size) };
    // SAFETY: see above.
    let value = unsafe { take(data, size) };
    value.filter(|_| status == OK)
}

/// Sets this stream's property `name` to `value`. Envoy keeps it as filter
/// state under `wasm.<name>` (bytes, read-write, for the filter chain's
/// life), which access logs print with `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), Refused> {
    let path = path_bytes(std::iter::once(name));
    // SAFETY: the host reads both borrowed buffers during the call.
    let status = unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
    check("proxy_set_property", status)
}

/// Logs through the host; a log that cannot be written is dropped.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the host reads the borrowed message during the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Envoy's response flags for this stream (`response.flags`, a little-endian
/// integer); 0 when the host does not say.
pub fn response_flags() -> u64 {
    property(["response", "flags"].into_iter())
        .and_then(|bytes| bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()))
        .map_or(0, u64::from_le_bytes)
}

/// Whether Envoy connected this stream to an upstream host (`upstream.address`).
pub fn upstream_connected() -> bool {
    property(["upstream", "address"].into_iter()).is_some_and(|a| !a.is_empty())
}

/// Asks for `on_tick` every `ms` milliseconds on this root context.
pub fn set_tick(ms: u64) -> Result<(), Refused> {
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    // SAFETY: a plain call with an integer argument.
    check("proxy_set_tick_period_milliseconds", unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Makes `context_id` the context later host calls act on, until the
/// current callback returns or this is called again. False if the host
/// refused.
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: a plain call with an integer argument.
    unsafe { proxy_set_effective_context(context_id) == OK }
}

/// Asks Envoy to pick this request's route again (the foreign function
/// `clear_route_cache`), after headers a route may match on changed.
pub fn clear_route_cache() -> Result<(), Refused> {
    let name = "clear_route_cache";
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host reads `name` during the call and may hand us a
    // buffer it allocated for us, which is dropped here.
    let status = unsafe { proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, &mut data, &mut size) };
    // SAFETY: see above.
    drop(unsafe { take(data, size) });
    check("proxy_call_foreign_function(clear_route_cache)", status)
}
