//! The one spelling of a request path that rules match against.
//!
//! Upstream frameworks route `/v1/chat/%63ompletions`, `//v1/chat/completions`,
//! `/v1/chat/./completions` and `/v1/chat/completions/` as chat completions;
//! if the filter compared the raw path, each spelling would reach the upstream
//! unmetered. Normalising errs on the side of charging: a spelling some
//! framework would route to a metered endpoint is metered.

/// Normalises a raw `:path` value: the query and fragment dropped;
/// percent-escapes of unreserved characters (ALPHA / DIGIT / `-` `.` `_` `~`)
/// and of `/` and `\` (`%2F`, `%5C`, any case) decoded; `\` read as `/`;
/// runs of `/` merged; `.` and `..` segments removed (RFC 3986 5.2.4, never
/// above the root); a trailing `/` removed, except for the root `/`.
///
/// Decoding is one pass: `%252F` keeps its `%25` (it decodes to `%`, which is
/// not unreserved), so it never becomes `/`. Invalid escapes (`%zz`, a lone
/// `%`) and escapes of other characters are kept as they are. Bytes that are
/// not UTF-8 (which decoding never produces, so they come from the raw path)
/// become U+FFFD.
pub fn normalize(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(raw.len());
    let raw = raw.get(..end).unwrap_or(raw);
    match already_normal(raw) {
        Some(text) => text.to_string(),
        None => rebuilt(raw),
    }
}

/// [`normalize`]'s work on a path without its query: decoded, then its
/// segments walked.
fn rebuilt(raw: &[u8]) -> String {
    let decoded = decode(raw);
    let absolute = decoded.first() == Some(&b'/');
    let mut out: Vec<u8> = Vec::with_capacity(decoded.len());
    // Empty segments are skipped, which both merges runs of '/' and drops a
    // trailing one.
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                // Popping from an empty path is a no-op: never above the root.
                let keep = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(keep);
            }
            _ => {
                if absolute || !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(segment);
            }
        }
    }
    if absolute && out.is_empty() {
        out.push(b'/');
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `raw` as text when normalising would give it back unchanged (the path of
/// almost every request): absolute, UTF-8, without escapes, `\\`, empty,
/// `.` or `..` segments, nor a trailing `/` (the root aside). One pass.
fn already_normal(raw: &[u8]) -> Option<&str> {
    if raw == b"/" {
        return Some("/");
    }
    let rest = raw.strip_prefix(b"/")?;
    let plain = rest
        .split(|&b| b == b'/')
        .all(|segment| !matches!(segment, b"" | b"." | b"..") && !segment.iter().any(|&b| b == b'%' || b == b'\\'));
    if plain {
        std::str::from_utf8(raw).ok()
    } else {
        None
    }
}

/// The percent-decoding pass, with `\` (literal or escaped) as `/`.
fn decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = match (b, raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => Some((hi << 4) | lo),
            _ => None,
        };
        match escaped {
            Some(c) if is_unreserved(c) || c == b'/' || c == b'\\' => {
                out.push(if c == b'\\' { b'/' } else { c });
                i += 3;
            }
            _ => {
                out.push(if b == b'\\' { b'/' } else { b });
                i += 1;
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &str) -> String {
        normalize(raw.as_bytes())
    }

    const CHAT: &str = "/v1/chat/completions";

    #[test]
    fn the_fast_path_gives_what_the_long_way_gives() {
        let pieces = ["/", "a", "v1", ".", "..", "%2F", "%63", "\\", "é", "//", "x.y", "...", "?q", "#f", "%"];
        for seed in 0..20_000u64 {
            let mut x = seed;
            let mut raw = String::new();
            for _ in 0..(seed % 7 + 1) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                raw.push_str(pieces[(x >> 33) as usize % pieces.len()]);
            }
            let path = raw.split(['?', '#']).next().unwrap_or("");
            assert_eq!(n(&raw), rebuilt(path.as_bytes()), "{raw:?}");
        }
    }

    #[test]
    fn a_plain_path_is_unchanged() {
        assert_eq!(n(CHAT), CHAT);
        assert_eq!(n("/"), "/");
        assert_eq!(n("/v1/projects/p-1_x~y.z/drafts"), "/v1/projects/p-1_x~y.z/drafts");
    }

    #[test]
    fn query_and_fragment_are_dropped() {
        assert_eq!(n("/v1/chat/completions?stream=true"), CHAT);
        assert_eq!(n("/v1/chat/completions#top"), CHAT);
        assert_eq!(n("/v1/chat/completions/?a=/../x"), CHAT);
        assert_eq!(n("/?x"), "/");
        assert_eq!(n("?x"), "");
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded() {
        assert_eq!(n("/v1/chat/%63ompletions"), CHAT);
        assert_eq!(n("/%76%31/%43hat"), "/v1/Chat");
        assert_eq!(n("/a%2Db%2ec%5Fd%7Ee%30"), "/a-b.c_d~e0");
    }

    #[test]
    fn escaped_and_backward_slashes_are_separators() {
        assert_eq!(n("/v1%2Fchat%2fcompletions"), CHAT);
        assert_eq!(n("/v1%5Cchat%5ccompletions"), CHAT);
        assert_eq!(n("\\v1\\chat\\completions"), CHAT);
        assert_eq!(n("/v1/chat/completions%2F"), CHAT);
        assert_eq!(n("/v1/chat/completions\\"), CHAT);
    }

    #[test]
    fn runs_of_slashes_are_merged() {
        assert_eq!(n("//v1/chat/completions"), CHAT);
        assert_eq!(n("/v1///chat//completions"), CHAT);
        assert_eq!(n("///"), "/");
        assert_eq!(n("/%2F%2f/v1/chat/completions"), CHAT);
    }

    #[test]
    fn dot_segments_are_removed_never_above_the_root() {
        assert_eq!(n("/v1/chat/./completions"), CHAT);
        assert_eq!(n("/v1/x/../chat/completions"), CHAT);
        assert_eq!(n("/../v1/chat/completions"), CHAT);
        assert_eq!(n("/../../.."), "/");
        assert_eq!(n("/%2e%2e/v1/chat/completions"), CHAT);
        assert_eq!(n("/%2E./v1/x/.%2e/chat/%2e/completions"), CHAT);
        assert_eq!(n("/v1/chat/completions/."), CHAT);
        assert_eq!(n("/v1/chat/completions/x/.."), CHAT);
        assert_eq!(n("/v1/chat/completions/%2e"), CHAT);
        // Only whole segments are dots.
        assert_eq!(n("/v1/.well-known/..x/x.."), "/v1/.well-known/..x/x..");
    }

    #[test]
    fn a_trailing_slash_is_removed_except_at_the_root() {
        assert_eq!(n("/v1/chat/completions/"), CHAT);
        assert_eq!(n("/v1/chat/completions//"), CHAT);
        assert_eq!(n("/"), "/");
    }

    #[test]
    fn invalid_and_reserved_escapes_are_kept_as_they_are() {
        assert_eq!(n("%"), "%");
        assert_eq!(n("/a%"), "/a%");
        assert_eq!(n("/a%2"), "/a%2");
        assert_eq!(n("/a%zz/b"), "/a%zz/b");
        assert_eq!(n("/a%3Fb%3fc%20d%25e"), "/a%3Fb%3fc%20d%25e");
        assert_eq!(n("/a%%2e"), "/a%.");
    }

    #[test]
    fn decoding_is_one_pass() {
        assert_eq!(n("/v1/chat%252Fcompletions"), "/v1/chat%252Fcompletions");
        assert_eq!(n("/%252e%252e/v1"), "/%252e%252e/v1");
        // A decoded '%' never starts a new escape.
        assert_eq!(n("/%2563ompletions"), "/%2563ompletions");
    }

    #[test]
    fn empty_and_relative_paths_stay_relative() {
        assert_eq!(n(""), "");
        assert_eq!(n("*"), "*");
        assert_eq!(n("a/./b/../c/"), "a/c");
        assert_eq!(n("../a"), "a");
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(normalize(b"/v1/\xff\xfe/../chat/completions"), CHAT);
        assert_eq!(normalize(b"/a/\xff"), "/a/\u{fffd}");
        // Escapes of non-ASCII bytes are not decoded, so they stay valid text.
        assert_eq!(n("/a/%FF"), "/a/%FF");
    }

    #[test]
    fn very_long_paths_are_normalised_in_linear_time() {
        let deep = format!("{}{}{}", "/a".repeat(50_000), "/..".repeat(50_000), CHAT);
        assert_eq!(n(&deep), CHAT);
        let slashes = format!("{}{CHAT}{}", "/".repeat(100_000), "%2F".repeat(100_000));
        assert_eq!(n(&slashes), CHAT);
        let dots = "/%2e%2e".repeat(100_000);
        assert_eq!(n(&dots), "/");
    }
}
