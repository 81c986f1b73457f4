//! The filter's JSON configuration: parsed in two stages (shape, then meaning).

mod checked;
mod error;
mod parse;
mod raw;
#[cfg(feature = "schema")]
mod schema;
mod source;

pub use checked::*;
pub use error::ConfigError;
#[cfg(feature = "schema")]
pub use schema::json_schema;
pub use source::Source;

#[cfg(test)]
mod tests;
