//! The quota filter's client library: reads what the filter tells a caller
//! (the `x-quota-*` headers, the IETF `RateLimit` fields, a refusal's body,
//! the usage endpoint's report) into one [`QuotaState`] a UI can draw from,
//! with a [`Meter`] for each limit of the class (several when the cell
//! stacks limits: a team's pool and each member's share, or 5 hours and a
//! week), and a [`Reading`] that tells a request the filter did not classify
//! from a cross-origin response whose quota headers the browser hid.
//!
//! Parsing is `quota_core::wire`, next to the code that writes the same
//! contract; this crate adds what a UI needs (fractions, a live countdown,
//! words) and, in `js.rs`, the wasm-bindgen bindings that `make client`
//! packages for npm.

mod js;
pub mod meter;
pub mod reading;
pub mod state;

pub use meter::Meter;
pub use reading::Reading;
pub use state::QuotaState;
