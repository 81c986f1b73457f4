//! The HTTP stream's own host calls: answering locally and resuming a
//! paused request.

use super::header_map::encode;
use super::refused::{check, Refused};
use std::ptr::null;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// The ABI's `StreamType::HttpRequest`.
const HTTP_REQUEST: u32 = 0;

/// Answers the client with `status`, `headers` and `body`; the request
/// goes no further.
pub fn send_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Refused> {
    let headers = encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    // SAFETY: the host reads the borrowed buffers during the call.
    let code = unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    check("proxy_send_local_response", code)
}

/// Lets a paused request go on.
pub fn resume_request() -> Result<(), Refused> {
    // SAFETY: a plain call with an integer argument.
    check("proxy_continue_stream", unsafe { proxy_continue_stream(HTTP_REQUEST) })
}
