//! A shared queue of this VM's own, which a stream rings so that the root
//! context runs soon (`on_queue_ready`) and sends what the stream queued
//! from there: a call made from a root callback is answered to the root.
//! Rung at most once until the root answers; the item is one byte.
//!
//! The SDK's queue bindings panic on statuses they do not expect; these
//! return `None` or `false` instead.

use std::ptr::null_mut;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_register_shared_queue(name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(queue_id: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
}

const OK: u32 = 0;

/// Registers the queue `name` to this VM's root context (call from the root).
pub fn register(name: &str) -> Option<u32> {
    let mut id: u32 = 0;
    // SAFETY: the host reads `name` for the duration of the call and writes `id`.
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

/// Rings: the root's `on_queue_ready` follows.
pub fn ring(queue: u32) -> bool {
    // SAFETY: the host copies the one-byte value during the call.
    unsafe { proxy_enqueue_shared_queue(queue, [1u8].as_ptr(), 1) == OK }
}

/// Empties the queue (the root answers the bell).
pub fn drain(queue: u32) {
    for _ in 0..64 {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a buffer it allocated through the module's
        // allocator (proxy_on_memory_allocate) into `data`; we take ownership.
        let status = unsafe { proxy_dequeue_shared_queue(queue, &mut data, &mut size) };
        if !data.is_null() {
            // SAFETY: see above; `size` bytes were allocated for us.
            drop(unsafe { Vec::from_raw_parts(data, size, size) });
        }
        if status != OK {
            return;
        }
    }
}
