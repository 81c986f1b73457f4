//! How much of a request body the filter asks the proxy to hold while it
//! reads it, and when it stops.
//!
//! To classify a request by its body the filter pauses each body chunk, and
//! Envoy keeps it (`StopIterationAndBuffer`) until the filter decides. Envoy
//! 1.40 adds each new chunk to what it holds *before* the filter sees it, and
//! answers `413 Payload Too Large` itself, without asking the filter, the
//! moment the total passes the stream's buffer limit. So the filter must never
//! be holding so much that one more chunk can cross that limit:
//!
//! - it never holds more than `max_body_bytes`: the chunk that takes the body
//!   past the cap ends the reading ([`Chunk::TooLarge`]) and goes on at once;
//! - a body whose declared length (`content-length`) is already over the cap
//!   is not held at all ([`at_head`]): the decision is made from the head;
//! - what one more chunk can add is one read from the client connection:
//!   Envoy reads, in 16 KiB slices, until it holds the listener's
//!   `per_connection_buffer_limit_bytes`, so that limit and a slice or two more.
//!
//! Hence the rule the README gives operators: the stream's limit (the route's
//! or virtual host's `request_body_buffer_limit`, else the listener's limit)
//! must be at least `max_body_bytes` plus one read: `max_body_bytes` plus
//! twice a listener limit of 32 KiB or more, as the configs we ship set. Bodies with a
//! `content-length` need only `max_body_bytes` (they are held only when they
//! fit under the cap); chunked bodies of unknown length need the sum.

use crate::request::RequestHead;

/// What the filter does with a body, known from the request head alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtHead {
    /// Hold the body's chunks and read it once it ends (or passes the cap).
    Read,
    /// The body says it is larger than `max_body_bytes`: hold none of it;
    /// it is unread (`body::Unreadable::TooLarge`) and the decision is made now.
    TooLarge,
}

/// What to do with a request whose class or cost needs its body, before any
/// byte of the body arrived.
pub fn at_head(head: &RequestHead, max_body_bytes: usize) -> AtHead {
    match head.content_length() {
        Some(declared) if declared > u64::try_from(max_body_bytes).unwrap_or(u64::MAX) => AtHead::TooLarge,
        _ => AtHead::Read,
    }
}

/// What to do after a body chunk arrived, given all that is held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Not the end, still under the cap: keep holding (pause).
    Hold,
    /// The whole body is in, within the cap: read it and decide.
    Read,
    /// Past the cap: stop holding, decide without the body.
    TooLarge,
}

/// `held`: the bytes the proxy holds with this chunk (what the host reports
/// for a buffering filter); `end_of_stream`: this chunk ends the body.
pub fn after_chunk(held: usize, end_of_stream: bool, max_body_bytes: usize) -> Chunk {
    if held > max_body_bytes {
        Chunk::TooLarge
    } else if end_of_stream {
        Chunk::Read
    } else {
        Chunk::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::head;

    const CAP: usize = 256 * 1024;

    #[test]
    fn a_declared_length_over_the_cap_is_decided_at_the_head() {
        assert_eq!(at_head(&head(&[("content-length", "262145")]), CAP), AtHead::TooLarge);
        assert_eq!(at_head(&head(&[("content-length", "104857600")]), CAP), AtHead::TooLarge);
        assert_eq!(at_head(&head(&[("content-length", "18446744073709551615")]), CAP), AtHead::TooLarge);
    }

    #[test]
    fn a_body_that_fits_or_says_nothing_is_read() {
        assert_eq!(at_head(&head(&[("content-length", "262144")]), CAP), AtHead::Read);
        assert_eq!(at_head(&head(&[("content-length", "0")]), CAP), AtHead::Read);
        // Chunked (or HTTP/2 without a length): only the chunks tell.
        assert_eq!(at_head(&head(&[("transfer-encoding", "chunked")]), CAP), AtHead::Read);
        // A length Envoy would not have let through is no promise either way.
        for odd in ["", "12a", "-1", "+5", "1, 1", "99999999999999999999999"] {
            assert_eq!(at_head(&head(&[("content-length", odd)]), CAP), AtHead::Read, "{odd:?}");
        }
    }

    #[test]
    fn the_filter_never_holds_more_than_the_cap() {
        assert_eq!(after_chunk(CAP - 1, false, CAP), Chunk::Hold);
        assert_eq!(after_chunk(CAP, false, CAP), Chunk::Hold);
        assert_eq!(after_chunk(CAP, true, CAP), Chunk::Read);
        assert_eq!(after_chunk(CAP + 1, false, CAP), Chunk::TooLarge);
        assert_eq!(after_chunk(CAP + 1, true, CAP), Chunk::TooLarge);
        assert_eq!(after_chunk(0, true, CAP), Chunk::Read);
    }
}
