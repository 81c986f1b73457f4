//! The request body as the rules see it: JSON they can read, no body, or a
//! body they cannot read and why. Parses what upstreams parse: JSON that
//! Python's `json` or Node's `JSON.parse` accept is read, even where
//! `serde_json` alone refuses it, so a client cannot hide a field from the
//! quota check that the upstream still sees.

use crate::config::BodyKeys;
use serde_json::Value;
use std::fmt;

/// The deepest nesting of arrays and objects `serde_json` parses (its
/// recursion limit). Not raised: the wasm stack is small.
pub const MAX_DEPTH: usize = 127;

/// What the filter read of a request body.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyRead {
    /// No body: none was sent, or it was empty. The upstream sees nothing
    /// either, so body rules and cost fallbacks apply as to a body without
    /// the fields they read.
    Empty,
    /// JSON the rules can read. Bytes serde refuses but Python or Node
    /// accept are read as those upstreams would, except that `NaN`,
    /// `Infinity`, `-Infinity` and numbers too large for an `f64` are read as
    /// `null`. A lone UTF-16 surrogate escape (`\ud800`) and bytes that are
    /// not UTF-8 (Node decodes them so) are read as U+FFFD; a leading UTF-8
    /// byte order mark is skipped.
    Json(Value),
    /// The rules cannot read it.
    Unreadable(Unreadable),
}

/// Why the rules cannot read a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Larger than `max_body_bytes`: the filter did not read it.
    TooLarge,
    /// Not UTF-8 text, and not JSON even with the bad bytes read as U+FFFD:
    /// the first bad byte's offset.
    NotUtf8 { at: usize },
    /// Arrays and objects nested more than [`MAX_DEPTH`] levels deep.
    TooDeep,
    /// Not JSON: the parser's complaint ("expected value at line 1 column 1";
    /// without the position when the lenient pass had rewritten the text).
    NotJson(String),
}

impl Unreadable {
    /// The refusal's `code`, and the event's name.
    pub fn code(&self) -> &'static str {
        match self {
            Unreadable::TooLarge => "body_too_large",
            _ => "unreadable_body",
        }
    }

    /// Whether the filter has the body's bytes (all but [`Unreadable::TooLarge`]):
    /// a cost that counts bytes or lines can still be worked out.
    pub fn bytes_read(&self) -> bool {
        !matches!(self, Unreadable::TooLarge)
    }
}

/// Why, as the end of "We couldn't read this request's JSON body (...)".
impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::TooLarge => write!(f, "it is larger than the quota check reads"),
            Unreadable::NotUtf8 { at } => write!(f, "it is not UTF-8 text: byte {at} is not"),
            Unreadable::TooDeep => write!(f, "it nests arrays and objects more than {MAX_DEPTH} levels deep"),
            Unreadable::NotJson(why) => write!(f, "it is not valid JSON: {why}"),
        }
    }
}

impl BodyRead {
    /// The JSON, when the body is readable JSON.
    pub fn json(&self) -> Option<&Value> {
        match self {
            BodyRead::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The JSON, owned.
    pub fn into_json(self) -> Option<Value> {
        match self {
            BodyRead::Json(v) => Some(v),
            _ => None,
        }
    }

    /// Why the body cannot be read, when it cannot.
    pub fn unreadable(&self) -> Option<&Unreadable> {
        match self {
            BodyRead::Unreadable(why) => Some(why),
            _ => None,
        }
    }
}

/// Turns the request body the filter read into what the rules see.
/// `bytes`: the body (`None` or empty: no body); `too_large`: the body was
/// larger than `max_body_bytes`, so the filter stopped reading it.
///
/// Valid JSON costs one `serde_json` parse; only bytes it refuses take the
/// lenient pass. Never panics, whatever the bytes.
pub fn read_body(bytes: Option<&[u8]>, too_large: bool) -> BodyRead {
    if too_large {
        return BodyRead::Unreadable(Unreadable::TooLarge);
    }
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return BodyRead::Empty;
    };
    match serde_json::from_slice(bytes) {
        Ok(value) => BodyRead::Json(value),
        Err(first) => lenient(bytes, first),
    }
}

/// Where a body's rewritable members lie in its bytes, so that a rewrite
/// edits those bytes and leaves every other byte as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spans {
    /// The value of the top-level `model`, when the body has one.
    pub model: Option<std::ops::Range<usize>>,
    /// The value of the top-level `stream_options`, when the body has one.
    pub stream_options: Option<std::ops::Range<usize>>,
    /// The offset of the object's closing `}`.
    pub close: usize,
    /// The object has no member.
    pub empty: bool,
}

impl Spans {
    /// `bytes` (the body these spans were read from) with the top-level
    /// `model` and `stream_options` of `rewritten` written in place of the
    /// client's (a member the client did not send goes last). `None` when a
    /// span does not fit `bytes`.
    pub fn splice(&self, bytes: &[u8], rewritten: &Value) -> Option<Vec<u8>> {
        let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
        let mut appended = Vec::new();
        for (name, span) in [("model", &self.model), ("stream_options", &self.stream_options)] {
            let Some(value) = rewritten.get(name) else { continue };
            let text = value.to_string().into_bytes();
            match span {
                Some(range) => edits.push((range.clone(), text)),
                None => {
                    if !(self.empty && appended.is_empty()) {
                        appended.push(b',');
                    }
                    appended.extend_from_slice(&serde_json::to_vec(name).ok()?);
                    appended.push(b':');
                    appended.extend_from_slice(&text);
                }
            }
        }
        edits.push((self.close..self.close, appended));
        edits.sort_by_key(|(range, _)| range.start);
        let mut out = Vec::with_capacity(bytes.len() + 64);
        let mut at = 0;
        for (range, text) in edits {
            out.extend_from_slice(bytes.get(at..range.start)?);
            out.extend_from_slice(&text);
            at = range.end;
        }
        out.extend_from_slice(bytes.get(at..)?);
        Some(out)
    }
}

/// [`read_body`] for the members `keys` names: a JSON object is parsed for
/// those members only (the others are checked as JSON and skipped, never
/// built), in one pass, and comes with the [`Spans`] a rewrite edits. Any
/// other body (not an object, a body only the lenient pass reads, a
/// rewritable member sent twice) is read whole, as [`read_body`] reads it,
/// without spans. What the rules see of the members read is the same
/// either way.
pub fn read_body_keys(bytes: Option<&[u8]>, too_large: bool, keys: &BodyKeys) -> (BodyRead, Option<Spans>) {
    let wanted = match keys {
        BodyKeys::Only(wanted) => wanted,
        BodyKeys::All => return (read_body(bytes, too_large), None),
    };
    let Some(body) = bytes.filter(|b| !b.is_empty() && !too_large) else {
        return (read_body(bytes, too_large), None);
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde::de::DeserializeSeed::deserialize(Sparse { wanted, body }, &mut de).and_then(|top| {
        de.end()?;
        Ok(top)
    });
    match parsed {
        Ok(Some((value, spans))) => (BodyRead::Json(value), Some(spans)),
        // Not an object, a member sent twice, or not JSON serde reads: whole.
        Ok(None) | Err(_) => (read_body(bytes, too_large), None),
    }
}

/// Parses a top-level object for the members it wants: `None` for any
/// other JSON (the caller reads it whole).
struct Sparse<'w, 'b> {
    wanted: &'w std::collections::BTreeSet<String>,
    body: &'b [u8],
}

impl<'de> serde::de::DeserializeSeed<'de> for Sparse<'_, 'de> {
    type Value = Option<(Value, Spans)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Sparse<'_, 'de> {
    type Value = Option<(Value, Spans)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        let mut spans = Spans { empty: true, ..Spans::default() };
        let mut twice = false;
        while let Some(key) = map.next_key::<String>()? {
            spans.empty = false;
            let span = match key.as_str() {
                "model" => Some(&mut spans.model),
                "stream_options" => Some(&mut spans.stream_options),
                _ => None,
            };
            if let Some(span) = span {
                let raw: &'de serde_json::value::RawValue = map.next_value()?;
                let text = raw.get();
                let start = (text.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
                twice |= span.replace(start..start + text.len()).is_some();
                let value: Value = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
                out.insert(key, value);
            } else if self.wanted.contains(&key) {
                let value: Value = map.next_value()?;
                out.insert(key, value);
            } else {
                map.next_value::<Skipped>()?;
            }
        }
        spans.close = self.body.iter().rposition(|b| !b.is_ascii_whitespace()).unwrap_or(0);
        let fits = |r: &Option<std::ops::Range<usize>>| r.as_ref().is_none_or(|r| r.end <= spans.close);
        if twice || !fits(&spans.model) || !fits(&spans.stream_options) || self.body.get(spans.close) != Some(&b'}') {
            return Ok(None);
        }
        Ok(Some((Value::Object(out), spans)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A value checked as JSON and dropped. Unlike serde's `IgnoredAny` it goes
/// through `serde_json`'s own nesting limit, so a body too deep to read
/// whole is too deep to read in part.
struct Skipped;

impl<'de> serde::Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> serde::de::Visitor<'de> for SkipVisitor {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_unit<E>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }
}

/// The second pass: rewrites what Python or Node accept and serde refuses
/// into what serde accepts, then parses again.
fn lenient(bytes: &[u8], first: serde_json::Error) -> BodyRead {
    let unbommed = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bad_byte = std::str::from_utf8(unbommed).err().map(|e| e.valid_up_to() + (bytes.len() - unbommed.len()));
    let text = String::from_utf8_lossy(unbommed);
    let Some(rewritten) = rewrite(text.as_bytes()) else {
        return BodyRead::Unreadable(Unreadable::TooDeep);
    };
    if rewritten.as_slice() == bytes {
        return BodyRead::Unreadable(Unreadable::NotJson(first.to_string()));
    }
    match (serde_json::from_slice(&rewritten), bad_byte) {
        (Ok(value), _) => BodyRead::Json(value),
        (Err(_), Some(at)) => BodyRead::Unreadable(Unreadable::NotUtf8 { at }),
        (Err(e), None) => {
            // Its line and column count the rewritten text, not the client's: leave them out.
            let why = e.to_string();
            BodyRead::Unreadable(Unreadable::NotJson(
                why.rsplit_once(" at line ").map_or(why.as_str(), |(w, _)| w).into(),
            ))
        }
    }
}

/// `text` with the tokens serde refuses replaced: `NaN`, `Infinity`,
/// `-Infinity` and out-of-range numbers by `null`, lone surrogate escapes
/// by `\ufffd`. `None` when it nests deeper than [`MAX_DEPTH`]. One pass,
/// no recursion; anything else is copied for serde to judge.
fn rewrite(text: &[u8]) -> Option<Vec<u8>> {
    // "NaN," is the worst case: 4 bytes become 5.
    let mut out = Vec::with_capacity(text.len().saturating_add(text.len() / 4));
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => i = copy_string(text, i, &mut out),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
                out.push(b);
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                out.push(b);
                i += 1;
            }
            b'N' if text[i..].starts_with(b"NaN") => {
                out.extend_from_slice(b"null");
                i += 3;
            }
            b'I' if text[i..].starts_with(b"Infinity") => {
                out.extend_from_slice(b"null");
                i += 8;
            }
            b'-' if text[i..].starts_with(b"-Infinity") => {
                out.extend_from_slice(b"null");
                i += 9;
            }
            b'-' | b'0'..=b'9' => {
                let len = text[i..]
                    .iter()
                    .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                let number = &text[i..i + len];
                // Python reads 1e400 as inf and Node as Infinity; serde refuses it.
                let infinite =
                    std::str::from_utf8(number).ok().and_then(|n| n.parse::<f64>().ok()).is_some_and(f64::is_infinite);
                out.extend_from_slice(if infinite { b"null" } else { number });
                i += len;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Copies the string starting at the quote at `start`; returns the index
/// after its closing quote (or the end of `text`).
fn copy_string(text: &[u8], start: usize, out: &mut Vec<u8>) -> usize {
    out.push(b'"');
    let mut i = start + 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                out.push(b);
                return i + 1;
            }
            b'\\' => match (text.get(i + 1), hex4(text, i + 2)) {
                (Some(b'u'), Some(unit)) if (0xD800..0xDC00).contains(&unit) => {
                    let low = (text.get(i + 6) == Some(&b'\\') && text.get(i + 7) == Some(&b'u'))
                        .then(|| hex4(text, i + 8))
                        .flatten();
                    if low.is_some_and(|l| (0xDC00..0xE000).contains(&l)) {
                        out.extend_from_slice(&text[i..i + 12]);
                        i += 12;
                    } else {
                        out.extend_from_slice(br"\ufffd");
                        i += 6;
                    }
                }
                (Some(b'u'), Some(unit)) if (0xDC00..0xE000).contains(&unit) => {
                    out.extend_from_slice(br"\ufffd");
                    i += 6;
                }
                (Some(&next), _) => {
                    // Any other escape, `\"` and `\\` included: both bytes as they are.
                    out.push(b'\\');
                    out.push(next);
                    i += 2;
                }
                (None, _) => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    i
}

/// The four hex digits at `at`, as a number.
fn hex4(text: &[u8], at: usize) -> Option<u32> {
    let digits = text.get(at..at.checked_add(4)?)?;
    digits.iter().try_fold(0u32, |n, d| Some(n * 16 + char::from(*d).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> BodyRead {
        read_body(Some(text.as_bytes()), false)
    }

    #[test]
    fn valid_json_is_read_as_serde_reads_it() {
        assert_eq!(read(r#"{"model": "o3", "n": [1, 2.5]}"#), BodyRead::Json(json!({"model": "o3", "n": [1, 2.5]})));
        assert_eq!(read("  [true]\n"), BodyRead::Json(json!([true])));
    }

    #[test]
    fn no_body_and_an_empty_body_are_empty() {
        assert_eq!(read_body(None, false), BodyRead::Empty);
        assert_eq!(read_body(Some(b""), false), BodyRead::Empty);
    }

    #[test]
    fn a_body_past_the_limit_is_too_large_whatever_was_read() {
        assert_eq!(read_body(None, true), BodyRead::Unreadable(Unreadable::TooLarge));
        assert_eq!(read_body(Some(b"{}"), true), BodyRead::Unreadable(Unreadable::TooLarge));
        assert_eq!(Unreadable::TooLarge.code(), "body_too_large");
    }

    #[test]
    fn nan_and_infinities_read_as_null_like_python_reads_them() {
        assert_eq!(
            read(r#"{"model": "o3-deep-research", "temperature": NaN, "t": [Infinity, -Infinity]}"#),
            BodyRead::Json(json!({"model": "o3-deep-research", "temperature": null, "t": [null, null]}))
        );
        assert_eq!(read("NaN"), BodyRead::Json(Value::Null));
    }

    #[test]
    fn numbers_too_large_for_a_float_read_as_null() {
        assert_eq!(
            read(r#"{"model": "o3", "x": 1e400, "y": -1E999}"#),
            BodyRead::Json(json!({"model": "o3", "x": null, "y": null}))
        );
        let huge = format!(r#"{{"model": "o3", "x": {}}}"#, "9".repeat(400));
        assert_eq!(read(&huge), BodyRead::Json(json!({"model": "o3", "x": null})));
    }

    #[test]
    fn lone_surrogate_escapes_read_as_the_replacement_character() {
        assert_eq!(
            read(
                r#"{"model": "o3-deep-research", "messages": ["\ud800", "a\udc00b", "\ud800\u0041", "\ud83d\ude00"]}"#
            ),
            BodyRead::Json(
                json!({"model": "o3-deep-research", "messages": ["\u{fffd}", "a\u{fffd}b", "\u{fffd}A", "😀"]})
            )
        );
        // Tokens that look like NaN inside strings stay as they are.
        assert_eq!(
            read(r#"{"a": "NaN \"Infinity\" \\", "b": NaN}"#),
            BodyRead::Json(json!({"a": "NaN \"Infinity\" \\", "b": null}))
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        assert_eq!(read("\u{feff}{\"model\": \"o3\"}"), BodyRead::Json(json!({"model": "o3"})));
    }

    #[test]
    fn nesting_past_serdes_limit_is_too_deep() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(matches!(read(&ok), BodyRead::Json(_)));
        let deep = format!(r#"{{"model": "o3-deep-research", "x": {}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(read(&deep), BodyRead::Unreadable(Unreadable::TooDeep));
        // Even when the lenient pass would have had to rewrite something too.
        let deep_nan = format!("[NaN, {}{}]", "{\"a\":".repeat(130), "}".repeat(130));
        assert_eq!(read(&deep_nan), BodyRead::Unreadable(Unreadable::TooDeep));
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_node_decodes_them() {
        assert_eq!(read_body(Some(b"{\"model\": \"o3\xff\"}"), false), BodyRead::Json(json!({"model": "o3\u{fffd}"})));
    }

    #[test]
    fn bytes_that_are_neither_utf8_nor_json_say_where() {
        assert_eq!(read_body(Some(b"{\"model\": \xff}"), false), BodyRead::Unreadable(Unreadable::NotUtf8 { at: 10 }));
        assert_eq!(read_body(Some(b"\xEF\xBB\xBF\xc3("), false), BodyRead::Unreadable(Unreadable::NotUtf8 { at: 3 }));
    }

    #[test]
    fn other_malformed_json_says_what_the_parser_saw() {
        let why = |text: &str| match read(text) {
            BodyRead::Unreadable(Unreadable::NotJson(why)) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(why("not json"), "expected ident at line 1 column 2");
        assert_eq!(why("{\"a\": 1,}"), "trailing comma at line 1 column 9");
        assert_eq!(why("{\"a\": NaN,}"), "trailing comma");
        assert_eq!(why("   "), "EOF while parsing a value at line 1 column 3");
        assert_eq!(why(r#""\q""#), "invalid escape at line 1 column 3");
        assert_eq!(
            Unreadable::NotJson(why("{")).to_string(),
            "it is not valid JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_python_and_node_do() {
        assert_eq!(
            read(r#"{"model": "gpt-4o-mini", "model": "o3-deep-research"}"#),
            BodyRead::Json(json!({"model": "o3-deep-research"}))
        );
    }

    /// xorshift64*: a fixed sequence, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A JSON document as Python or Node would accept it: `NaN`, infinities,
    /// huge numbers, lone surrogates and non-UTF-8 bytes in strings, nesting
    /// up to `depth` (past [`MAX_DEPTH`] when asked).
    fn lenient_doc(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        const SCALARS: &[&[u8]] = &[
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"1e400",
            b"-2E999",
            b"0.5",
            b"-12",
            b"true",
            b"false",
            b"null",
            b"\"o3-deep-research\"",
            b"\"\\ud800\"",
            b"\"a\\udc00\\ud800\\u0041\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\xff\xc3(\"",
            b"\"NaN \\\" Infinity\"",
            b"\"\\\\\"",
            b"\"\\n\\u00e9\"",
        ];
        match (depth, rng.below(3)) {
            (0, _) | (_, 0) => out.extend_from_slice(SCALARS[rng.below(SCALARS.len())]),
            (_, 1) => {
                out.push(b'[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(b',');
                    }
                    lenient_doc(rng, depth - 1, out);
                }
                out.push(b']');
            }
            _ => {
                out.extend_from_slice(b"{ ");
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    out.extend_from_slice(if i % 2 == 0 { b"\"model\": " } else { b"\"k\\ud800\" :" });
                    lenient_doc(rng, depth - 1, out);
                }
                out.push(b'}');
            }
        }
    }

    #[test]
    fn never_panics_and_agrees_with_serde_on_any_bytes() {
        const PIECES: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"",
            b"\\",
            b"\\u",
            b"\\ud800",
            b"\\udc00",
            b"d8",
            b"NaN",
            b"Na",
            b"Infinity",
            b"-Infinity",
            b"-",
            b"1e400",
            b"1e",
            b"0.5",
            b"true",
            b"null",
            b" ",
            b"\xEF\xBB\xBF",
            b"\xff",
            b"\xc3",
            b"\xe2\x82",
            b"\x00",
            b"a",
            b"e",
            b"+",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // How often each outcome came up: the generator must reach them all.
        let (mut lenient, mut deep, mut not_json, mut not_utf8, mut generated_deep) = (0, 0, 0, 0, 0);
        for round in 0..20_000 {
            let mut bytes = Vec::new();
            if round % 3 == 0 {
                bytes.extend_from_slice(b"\xEF\xBB\xBF");
            }
            // Some wrapped in 100 to 159 arrays: near serde's limit and past it.
            let wrap = if round % 20 == 0 { 100 + rng.below(60) } else { 0 };
            bytes.extend_from_slice(&b"[".repeat(wrap));
            let depth = rng.below(6);
            lenient_doc(&mut rng, depth, &mut bytes);
            bytes.extend_from_slice(&b"]".repeat(wrap));
            // As generated, Python or Node would read it: so must the rules.
            let read = read_body(Some(&bytes), false);
            // No generated string holds a bracket: counting them gives the nesting.
            let (mut nested, mut deepest) = (0usize, 0usize);
            for b in &bytes {
                match b {
                    b'[' | b'{' => nested += 1,
                    b']' | b'}' => nested -= 1,
                    _ => {}
                }
                deepest = deepest.max(nested);
            }
            let expected_deep = deepest > MAX_DEPTH;
            generated_deep += usize::from(expected_deep);
            match &read {
                BodyRead::Json(_) if !expected_deep => {}
                BodyRead::Unreadable(Unreadable::TooDeep) if expected_deep => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&bytes)),
            }
            // Then damaged: inserted pieces, dropped and flipped bytes, deep runs.
            for _ in 0..rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(4) {
                    0 => drop(bytes.splice(at..at, PIECES[rng.below(PIECES.len())].iter().copied())),
                    1 if at < bytes.len() => drop(bytes.remove(at)),
                    2 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    _ => drop(bytes.splice(at..at, b"[".repeat(rng.below(300)))),
                }
            }
            let read = read_body(Some(&bytes), false);
            match (serde_json::from_slice::<Value>(&bytes), &read) {
                (Ok(value), _) => assert_eq!(read, BodyRead::Json(value), "{bytes:?}"),
                (Err(_), BodyRead::Json(_)) => lenient += 1,
                (Err(_), BodyRead::Unreadable(Unreadable::TooDeep)) => deep += 1,
                (Err(_), BodyRead::Unreadable(Unreadable::NotJson(_))) => not_json += 1,
                (Err(_), BodyRead::Unreadable(Unreadable::NotUtf8 { .. })) => not_utf8 += 1,
                (Err(_), BodyRead::Empty) => assert!(bytes.is_empty()),
                (Err(_), other) => panic!("{bytes:?}: {other:?}"),
            }
            if let BodyRead::Json(value) = &read {
                // What the rules read, the filter can write back.
                assert!(serde_json::from_str::<Value>(&value.to_string()).is_ok(), "{bytes:?}");
            }
            // Any prefix of these bytes, too.
            let cut = rng.below(bytes.len() + 1);
            let _ = read_body(Some(&bytes[..cut]), false);
        }
        assert!(
            lenient > 500 && deep > 500 && not_json > 500 && not_utf8 > 100,
            "{lenient} {deep} {not_json} {not_utf8}"
        );
        assert!(generated_deep > 100, "{generated_deep}");
    }
}

#[cfg(test)]
mod sparse_tests {
    use super::*;
    use serde_json::json;

    fn keys(names: &[&str]) -> BodyKeys {
        BodyKeys::Only(names.iter().map(|k| k.to_string()).collect())
    }

    #[test]
    fn a_deep_member_the_rules_skip_reads_as_the_whole_body_does() {
        let deep = format!("{{\"model\": \"o3\", \"junk\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        let whole = read_body(Some(deep.as_bytes()), false);
        let (sparse, _) = read_body_keys(Some(deep.as_bytes()), false, &keys(&["model"]));
        assert_eq!(sparse, whole);
    }

    #[test]
    fn only_the_wanted_members_are_read_and_a_rewrite_edits_only_their_bytes() {
        let body = br#" {"messages": [{"role": "user", "content": "hi"}], "mod\u0065l" : "gpt-4o" , "n": 1 } "#;
        let (read, spans) = read_body_keys(Some(body), false, &keys(&["model", "stream_options"]));
        assert_eq!(read, BodyRead::Json(json!({"model": "gpt-4o"})));
        let spans = spans.unwrap();
        let mut rewritten = read.into_json().unwrap();
        rewritten["model"] = json!("gpt-4o-mini");
        rewritten["stream_options"] = json!({"include_usage": true});
        let out = spans.splice(body, &rewritten).unwrap();
        let expected = br#" {"messages": [{"role": "user", "content": "hi"}], "mod\u0065l" : "gpt-4o-mini" , "n": 1 ,"stream_options":{"include_usage":true}} "#;
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(expected));
        let whole: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(whole["model"], "gpt-4o-mini");
        assert_eq!(whole["messages"][0]["content"], "hi");
    }

    #[test]
    fn other_bodies_are_read_whole_without_spans() {
        let only = keys(&["model"]);
        for body in [
            &br#"[{"model": "o3"}]"#[..],
            br#"{"model": "a", "model": "b"}"#,
            br#"{"model": NaN}"#,
            b"\xEF\xBB\xBF{\"model\": \"o3\"}",
            br#""text""#,
            br#"{"model": "o3"} x"#,
        ] {
            let (read, spans) = read_body_keys(Some(body), false, &only);
            assert_eq!(read, read_body(Some(body), false), "{}", String::from_utf8_lossy(body));
            assert_eq!(spans, None, "{}", String::from_utf8_lossy(body));
        }
        let (read, spans) = read_body_keys(Some(b"{}"), false, &only);
        assert_eq!(read, BodyRead::Json(json!({})));
        let out = spans.unwrap().splice(b"{}", &json!({"stream_options": {"include_usage": true}})).unwrap();
        assert_eq!(out, br#"{"stream_options":{"include_usage":true}}"#);
    }

    /// A random object of the members a request carries (some twice, some
    /// escaped, some nested), as bytes with random spacing.
    fn object(seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        };
        let names = [
            "\"model\"",
            "\"mod\\u0065l\"",
            "\"stream_options\"",
            "\"stream\"",
            "\"messages\"",
            "\"max_tokens\"",
            "\"x\"",
            "\"\"",
        ];
        let values = [
            "\"gpt-4o\"",
            "{\"include_usage\": false}",
            "[{\"role\": \"user\", \"content\": \"hi {\\\"}\"}]",
            "null",
            "12",
            "1.5e3",
            "true",
            "{\"a\": [1, {\"b\": \"}\"}]}",
            "NaN",
            "\"\\ud800\"",
        ];
        let spaces = ["", " ", "\n\t", "  "];
        let mut out = String::from(spaces[next(4) as usize]);
        out.push('{');
        for i in 0..next(6) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(spaces[next(4) as usize]);
            out.push_str(names[next(names.len() as u64) as usize]);
            out.push_str(spaces[next(4) as usize]);
            out.push(':');
            out.push_str(values[next(values.len() as u64) as usize]);
            out.push_str(spaces[next(4) as usize]);
        }
        out.push('}');
        out.push_str(spaces[next(4) as usize]);
        out.into_bytes()
    }

    #[test]
    fn a_partial_read_agrees_with_the_whole_one_and_a_splice_changes_only_what_it_rewrites() {
        let wanted = ["model", "stream_options", "max_tokens"];
        let only = keys(&wanted);
        let (mut partial, mut whole_only) = (0, 0);
        for seed in 0..5_000 {
            let body = object(seed);
            let full = read_body(Some(&body), false);
            let (read, spans) = read_body_keys(Some(&body), false, &only);
            let Some(spans) = spans else {
                assert_eq!(read, full, "{}", String::from_utf8_lossy(&body));
                whole_only += 1;
                continue;
            };
            partial += 1;
            let (BodyRead::Json(part), BodyRead::Json(all)) = (&read, &full) else {
                panic!("read in part but not whole: {}", String::from_utf8_lossy(&body))
            };
            let all = all.as_object().unwrap();
            let part = part.as_object().unwrap();
            for (k, v) in all {
                assert_eq!(
                    part.get(k),
                    wanted.contains(&k.as_str()).then_some(v),
                    "{k} in {}",
                    String::from_utf8_lossy(&body)
                );
            }
            assert!(part.keys().all(|k| all.contains_key(k)));
            // A rewrite through the spans reads back as the whole body rewritten.
            let mut rewritten = read.clone().into_json().unwrap();
            rewritten["model"] = json!("gpt-4o-mini");
            let options = rewritten.as_object_mut().unwrap().entry("stream_options").or_insert_with(|| json!({}));
            if !options.is_object() {
                *options = json!({});
            }
            options["include_usage"] = json!(true);
            let spliced = spans.splice(&body, &rewritten).unwrap();
            let mut expected = all.clone();
            expected.insert("model".into(), json!("gpt-4o-mini"));
            expected.insert("stream_options".into(), rewritten["stream_options"].clone());
            assert_eq!(
                read_body(Some(&spliced), false),
                BodyRead::Json(Value::Object(expected)),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!(partial > 1_000 && whole_only > 100, "{partial} read in part, {whole_only} whole");
    }
}
