//! The one host boundary: every call into Envoy goes through here, as a
//! small named binding that returns what happened instead of panicking (the
//! SDK's own bindings panic on a status they do not expect, and a panic
//! kills the VM and every request on its worker). The rest of the filter
//! never names `hostcalls`.

mod buffer;
mod call;
mod context;
pub mod doorbell;
pub mod header_map;
mod http;
mod metrics;
mod refused;
mod shared_data;

pub use buffer::{
    call_response_body, plugin_configuration, request_body, response_body, set_request_body, set_response_body,
};
pub use call::dispatch_call;
pub use context::{
    clear_route_cache, log, response_flags, set_effective_context, set_property, set_tick, upstream_connected,
    HostClock, HostProperties,
};
pub use http::{resume_request, send_reply};
pub use metrics::{define_counter, increment};
pub use shared_data::SharedData;
