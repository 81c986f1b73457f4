//! Counters in proxy-wasm shared data, shared by every worker's VM.
//!
//! The SDK's shared-data helpers panic on statuses they do not expect, and a
//! panic kills the VM; these bindings turn every status into a `StoreError`
//! so the configured fail policy decides instead.

use quota_core::store::{Cas, CounterStore, Expect, StoreError};
use std::ptr::null_mut;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// Envoy's shared data ignores the version when a key does not exist yet,
/// so two workers creating the same counter could overwrite each other.
/// Writing a new key with a version no live value has (Envoy hands out
/// versions from 1 upwards and would reach this one only after 2^32 - 1
/// writes, and then only for that one key) makes the write fail with
/// CasMismatch if another worker created the key first.
const CREATE_ONLY: Cas = u32::MAX;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

/// The embedded counter store: Envoy's process-wide shared data.
pub struct SharedData;

impl CounterStore for SharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the host writes a buffer it allocated through the module's
        // allocator (proxy_on_memory_allocate) into `data`; we take ownership.
        let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
        let value = if data.is_null() {
            Vec::new()
        } else {
            // SAFETY: see above; `size` bytes were allocated for us.
            unsafe { Vec::from_raw_parts(data, size, size) }
        };
        match status {
            OK if cas == 0 => Err(StoreError::Unavailable("shared data returned a value without a version".into())),
            OK => Ok(Some((value, cas))),
            NOT_FOUND => Ok(None),
            other => Err(StoreError::Unavailable(format!("proxy_get_shared_data returned status {other}"))),
        }
    }

    fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
        let cas = match expect {
            Expect::Absent => CREATE_ONLY,
            Expect::Version(v) => v,
        };
        // SAFETY: plain reads of borrowed buffers for the duration of the call.
        let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
        match status {
            OK => Ok(()),
            CAS_MISMATCH => Err(StoreError::CasMismatch),
            other => Err(StoreError::Unavailable(format!("proxy_set_shared_data returned status {other}"))),
        }
    }
}
