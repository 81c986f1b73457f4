//! The proxy-wasm adapter: translates between the host ABI and `quota_core`.
//! Every decision is made in the core; this crate only reads what the host
//! has, hands it over, and carries the answer back.

// The module's allocator; native builds (the unit tests) keep the standard one.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod alloc;
mod host;
mod ledger;
mod remote;
mod report;
mod root;
mod shared;
mod stream;

use proxy_wasm::types::LogLevel;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: alloc::Classes = alloc::Classes::new();

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic aborts the VM and fails every request on this worker: say why first.
    std::panic::set_hook(Box::new(|info| host::log(LogLevel::Critical, &format!("quota: panic: {info}"))));
    proxy_wasm::set_root_context(|id| Box::new(root::QuotaRoot::new(id)));
}}
