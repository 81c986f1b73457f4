//! `render`: the matrix as a document a person reads, built once
//! ([`document::build`]) and written as Markdown or a standalone HTML page.

mod document;
mod html;
mod markdown;

pub use document::build;
pub(crate) use html::escape;
pub use html::html;
pub use markdown::markdown;
