//! The quota logic of the filter, free of `proxy-wasm` so it is tested
//! natively: config, identity, classification, windows, counters,
//! decisions, and what the caller is told.
//!
//! The flow for one request: [`classify::classify_head`] (and, when a body
//! rule or cost asks, [`buffering`] while the body arrives, then
//! [`body::read_body`] → [`unreadable::classify_body`]) →
//! [`identity::identify`] →
//! [`engine::charge`] (read, [`decide::decide`], compare-and-swap) →
//! [`reply::respond`] (headers or a local reply); once admitted, the
//! response's head, body and end go to an [`exchange::response::Charged`],
//! which returns the corrections of the charge (refunds, reported usage).

pub mod admin;
pub mod admission;
pub mod body;
pub mod bucket;
pub mod buffering;
pub mod busy;
pub mod calendar;
pub mod classify;
pub mod clock;
pub mod config;
pub mod copy;
pub mod cost;
pub mod counter;
pub mod decide;
pub mod decimal;
pub mod engine;
pub mod event_budget;
pub mod events;
pub mod exchange;
pub mod glob;
pub mod headers;
pub mod identity;
pub mod jwt;
pub mod lease;
pub mod ledger;
pub mod member_cap;
pub mod metering;
pub mod money;
pub mod negotiate;
pub mod path;
pub mod redis;
pub mod refund;
pub mod reply;
pub mod request;
pub mod stack;
pub mod store;
pub mod table;
pub mod template;
pub mod units;
pub mod unreadable;
pub mod usage;
pub mod usage_limit;
pub mod window;
pub mod wire;

#[cfg(test)]
mod testing;
