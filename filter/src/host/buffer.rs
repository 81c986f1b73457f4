//! Bodies and other buffers the host holds: the request and response body
//! chunks, a call's answer, the plugin configuration.

use super::refused::{check, take, Refused, NOT_FOUND, OK};
use proxy_wasm::types::BufferType;
use std::ptr::null_mut;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
}

/// Up to `max` bytes of a buffer from its start; `Ok(None)` if there is none.
fn get(buffer: BufferType, max: usize) -> Result<Option<Vec<u8>>, Refused> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host may hand us a buffer it allocated for us.
    let status = unsafe { proxy_get_buffer_bytes(buffer, 0, max, &mut data, &mut size) };
    // SAFETY: see above.
    let bytes = unsafe { take(data, size) };
    match status {
        OK => Ok(bytes),
        NOT_FOUND => Ok(None),
        status => Err(Refused { call: "proxy_get_buffer_bytes", status }),
    }
}

/// The request body buffered so far, up to `max` bytes.
pub fn request_body(max: usize) -> Result<Option<Vec<u8>>, Refused> {
    get(BufferType::HttpRequestBody, max)
}

/// The response body chunk passing now, up to `max` bytes.
pub fn response_body(max: usize) -> Result<Option<Vec<u8>>, Refused> {
    get(BufferType::HttpResponseBody, max)
}

/// The body of a call that just came back, up to `max` bytes.
pub fn call_response_body(max: usize) -> Result<Option<Vec<u8>>, Refused> {
    get(BufferType::HttpCallResponseBody, max)
}

/// The plugin configuration, `size` bytes (empty if the host has none).
pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, Refused> {
    get(BufferType::PluginConfiguration, size).map(Option::unwrap_or_default)
}

/// Replaces the first `len` bytes of the buffered request body with `bytes`.
pub fn set_request_body(len: usize, bytes: &[u8]) -> Result<(), Refused> {
    // SAFETY: the host reads the borrowed bytes during the call.
    let status = unsafe { proxy_set_buffer_bytes(BufferType::HttpRequestBody, 0, len, bytes.as_ptr(), bytes.len()) };
    check("proxy_set_buffer_bytes", status)
}

/// Replaces the first `len` bytes of the response body chunk passing now with `bytes`.
pub fn set_response_body(len: usize, bytes: &[u8]) -> Result<(), Refused> {
    // SAFETY: the host reads the borrowed bytes during the call.
    let status = unsafe { proxy_set_buffer_bytes(BufferType::HttpResponseBody, 0, len, bytes.as_ptr(), bytes.len()) };
    check("proxy_set_buffer_bytes", status)
}
