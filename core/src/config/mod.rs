//! The filter's JSON configuration: parsed in two stages (shape, then meaning).
//!
//! `raw.rs` is the document as written; `checked.rs` composes the checked
//! [`Config`] from one module per part of it.

mod body;
mod calendar;
mod cells;
mod checked;
mod classes;
mod copy;
mod costs;
mod counters;
mod endpoints;
mod error;
mod fields;
mod identity;
mod locate;
mod observability;
mod parse;
mod prices;
mod raw;
pub(crate) mod read;
mod rules;
#[cfg(feature = "schema")]
mod schema;
mod source;
mod tiers;
pub(crate) mod tree;

pub use body::{
    BodyKeys, BodyNeeds, UnreadableBody, BUDGET_KEYS, DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES_LIMIT, PROMPT_KEYS,
};
pub use calendar::{parse_utc_offset, parse_window, CalendarConfig};
pub use cells::{AtHard, Cell, Degrade, Limits, Pace, PastSoft, Queue, Scope, DEFAULT_WARN_AT};
pub use checked::Config;
pub use classes::{Class, ClassId};
pub use copy::{CopySet, Message, ResponseHeaders};
pub use costs::{Cost, TokenCount};
pub use counters::{
    CounterConfig, FailPolicy, Lease, RedisStore, DEFAULT_CAS_ATTEMPTS, DEFAULT_MAX_COUNTERS, MAX_MAX_COUNTERS,
    MIN_MAX_COUNTERS,
};
pub use endpoints::{Admin, UsageReads};
pub use error::ConfigError;
pub use identity::{Anonymous, IdentityConfig, MissingWorkspace, UnknownTier, DEFAULT_MAX_ID_BYTES};
pub use observability::{Analytics, IdPolicy, Observability, DEFAULT_UNIDENTIFIED_EVENTS_PER_SECOND};
pub use prices::{names_model, ModelPrice, Prices, TokenKinds};
pub use rules::{BodyCond, HeaderCond, PathMatch, Rule, TextTest, ValueTest};
#[cfg(feature = "schema")]
pub use schema::json_schema;
pub use source::Source;
pub use tiers::{Tier, TierId};

#[cfg(test)]
mod shape_tests;
#[cfg(test)]
mod tests;
