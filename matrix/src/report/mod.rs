//! `report`: the experience of the limits, from a ledger. The numbers are
//! worked out once ([`metrics::report`]) and written as a terminal table,
//! Markdown, JSON or a standalone HTML page with charts.

mod chart;
mod grid;
mod html;
mod json;
pub mod metrics;
mod text;

pub use grid::Grid;
pub use html::html;
pub use json::json;
pub use text::{markdown, table};
