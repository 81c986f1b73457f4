//! Header-map calls that never panic. The SDK's helpers panic on any status
//! they do not expect (and on a header value that is not UTF-8), which would
//! kill the VM; these return what happened and let the caller carry on.

use proxy_wasm::types::MapType;
use std::ptr::null_mut;

const OK: u32 = 0;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: MapType, key_data: *const u8, key_size: usize) -> u32;
}

/// A header's value as bytes; `None` if absent or the map cannot be read.
pub fn get(map: MapType, name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host allocates the value with the module's allocator and
    // hands ownership to us.
    let status = unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    if data.is_null() {
        return (status == OK).then(Vec::new);
    }
    // SAFETY: see above.
    let value = unsafe { Vec::from_raw_parts(data, size, size) };
    (status == OK).then_some(value)
}

/// Sets (replaces) a header; returns whether the host accepted it.
pub fn set(map: MapType, name: &str, value: &str) -> bool {
    // SAFETY: borrowed buffers, read during the call only.
    unsafe { proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len()) == OK }
}

/// Removes a header; returns whether the host accepted it.
pub fn remove(map: MapType, name: &str) -> bool {
    // SAFETY: borrowed buffer, read during the call only.
    unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) == OK }
}
