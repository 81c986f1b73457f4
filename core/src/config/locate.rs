//! The JSON path of a syntax error: where in the document `serde_json`
//! stopped, named as the config's errors name paths (`classes[1].match[0].path`,
//! `.` for the document). Found by scanning the text up to the error's
//! line and column. (Errors in the document's shape name their path as
//! `read.rs` walks the parsed tree.)

/// One step of a path.
enum Step {
    Key(Option<String>),
    Index(usize),
}

/// The path at the point where `error` stopped in `doc` (the text parsed).
pub(super) fn error_path(doc: &[u8], error: &serde_json::Error) -> String {
    path_at(doc, offset_of(doc, error.line(), error.column()))
}

/// The byte just past `column` (1-based, the last byte read) of `line` (1-based).
fn offset_of(doc: &[u8], line: usize, column: usize) -> usize {
    let start = if line <= 1 {
        0
    } else {
        doc.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(line - 2).map_or(doc.len(), |(i, _)| i + 1)
    };
    start.saturating_add(column).min(doc.len())
}

/// The path of the value being read once `doc[..end]` has been read: the
/// key last read in each open object, the element being read in each open array.
fn path_at(doc: &[u8], end: usize) -> String {
    let text = doc.get(..end).unwrap_or(doc);
    let mut stack: Vec<Step> = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'{' => {
                stack.push(Step::Key(None));
                expecting_key = true;
            }
            b'[' => {
                stack.push(Step::Index(0));
                expecting_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expecting_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Step::Index(n)) => *n += 1,
                Some(Step::Key(_)) => expecting_key = true,
                None => {}
            },
            b':' => expecting_key = false,
            b'"' => {
                let close = string_end(text, i);
                if expecting_key {
                    let key = text.get(i..=close).and_then(|raw| serde_json::from_slice::<String>(raw).ok());
                    if let Some(Step::Key(slot)) = stack.last_mut() {
                        *slot = Some(key.unwrap_or_default());
                    }
                }
                i = close;
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for step in &stack {
        match step {
            Step::Key(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Key(None) => {}
            Step::Index(n) => {
                path.push('[');
                path.push_str(&n.to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        ".".to_string()
    } else {
        path
    }
}

/// The index of the quote that closes the string opening at `open` (or
/// the text's end, for a string the text cuts).
fn string_end(text: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of `error` without " at line L column C".
    fn error_reason(error: &serde_json::Error) -> String {
        let text = error.to_string();
        match text.rsplit_once(" at line ") {
            Some((reason, _)) if error.line() > 0 => reason.to_string(),
            _ => text,
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
        #[serde(default)]
        b: Option<u32>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        x: Inner,
        #[serde(default)]
        y: Vec<Inner>,
        #[serde(default)]
        z: std::collections::BTreeMap<String, Inner>,
    }

    fn located(doc: &str) -> String {
        let e = serde_json::from_slice::<Outer>(doc.as_bytes()).map(|_| ()).unwrap_err();
        format!("{}: {}", error_path(doc.as_bytes(), &e), error_reason(&e))
    }

    #[test]
    fn errors_are_named_by_the_path_of_the_value_they_stopped_in() {
        assert_eq!(located(r#"{"x": {"b": 1}}"#), "x: missing field `a`");
        assert_eq!(located(r#"{"x": {"a": 1, "zz": 2}}"#), "x.zz: unknown field `zz`, expected `a` or `b`");
        assert_eq!(located(r#"{"x": {"a": "s"}}"#), "x.a: invalid type: string \"s\", expected u32");
        assert_eq!(
            located("{\"x\": {\"a\": 1},\n \"y\": [{\"a\": 1}, {\"a\": 2, \"q\": 1}]}"),
            "y[1].q: unknown field `q`, expected `a` or `b`"
        );
        assert_eq!(located(r#"{"y": []}"#), ".: missing field `x`");
        assert_eq!(
            located(r#"{"x": {"a": 1}, "z": {"k.\"}\u0041": {"a": -1}}}"#),
            "z.k.\"}A.a: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            located(r#"{"x": {"a": 1}, "y": [{"a": 1}, 7]}"#),
            "y[1]: invalid type: integer `7`, expected struct Inner"
        );
        assert_eq!(located(r#"{"x": {"a": 1}, "y": [{"a": 1}, {"a": [1, 2]}]}"#).split(':').next(), Some("y[1].a"));
    }
}
