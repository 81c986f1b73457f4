//! Envoy counters defined and bumped by the filter.

use super::refused::{check, Refused};
use proxy_wasm::types::MetricType;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_define_metric(metric_type: MetricType, name_data: *const u8, name_size: usize, return_id: *mut u32)
        -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
}

/// Defines the counter `name` and returns its id.
pub fn define_counter(name: &str) -> Result<u32, Refused> {
    let mut id: u32 = 0;
    // SAFETY: the host reads `name` during the call and writes `id`.
    let status = unsafe { proxy_define_metric(MetricType::Counter, name.as_ptr(), name.len(), &mut id) };
    check("proxy_define_metric", status).map(|()| id)
}

/// Adds `by` to the counter `id`.
pub fn increment(id: u32, by: i64) -> Result<(), Refused> {
    // SAFETY: a plain call with integer arguments.
    check("proxy_increment_metric", unsafe { proxy_increment_metric(id, by) })
}
