//! The filter's JSON configuration: parsed in two stages (shape, then meaning).

mod checked;
mod error;
mod parse;
mod raw;
mod source;

pub use checked::*;
pub use error::ConfigError;
pub use source::Source;

#[cfg(test)]
mod tests;
