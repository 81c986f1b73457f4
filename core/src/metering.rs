//! Reading what the upstream says a response cost: the `usage` object of an
//! OpenAI-style (`prompt_tokens`, `completion_tokens`, `total_tokens`) or
//! Anthropic-style (`input_tokens`, `output_tokens`) response, from a JSON
//! body or from server-sent events scanned as they pass.

use serde_json::Value;

/// Token counts as reported; later reports override earlier ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
}

impl TokenUsage {
    /// The tokens to charge: the reported total, else input + output.
    pub fn tokens(&self) -> Option<u64> {
        self.total.or(match (self.input, self.output) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        })
    }

    fn merge(&mut self, other: TokenUsage) {
        self.input = other.input.or(self.input);
        self.output = other.output.or(self.output);
        self.total = other.total.or(self.total);
    }
}

/// The usage reported in one JSON document (a response body or one event):
/// top-level `usage`, or `message.usage` (Anthropic's `message_start`).
pub fn usage_in(doc: &Value) -> Option<TokenUsage> {
    let usage = doc.get("usage").filter(|u| u.is_object()).or_else(|| doc.get("message")?.get("usage"))?;
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    let found = TokenUsage {
        input: n("prompt_tokens").or_else(|| n("input_tokens")),
        output: n("completion_tokens").or_else(|| n("output_tokens")),
        total: n("total_tokens"),
    };
    (found != TokenUsage::default()).then_some(found)
}

/// Scans a `text/event-stream` body chunk by chunk without holding more
/// than one line, collecting the usage its `data:` events report.
#[derive(Debug)]
pub struct SseScanner {
    line: Vec<u8>,
    /// A line longer than this is skipped (its usage, if any, is lost).
    max_line: usize,
    overflowed: bool,
    usage: TokenUsage,
    seen: bool,
}

impl SseScanner {
    pub fn new(max_line: usize) -> Self {
        SseScanner { line: Vec::new(), max_line, overflowed: false, usage: TokenUsage::default(), seen: false }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if b == b'\n' {
                if !self.overflowed {
                    self.line_done();
                }
                self.line.clear();
                self.overflowed = false;
            } else if self.line.len() < self.max_line {
                self.line.push(b);
            } else {
                self.overflowed = true;
            }
        }
    }

    fn line_done(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data.first() != Some(&b'{') {
            return;
        }
        if let Some(u) = serde_json::from_slice::<Value>(data).ok().as_ref().and_then(usage_in) {
            self.usage.merge(u);
            self.seen = true;
        }
    }

    /// The usage reported so far, if any event reported one.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.seen.then_some(self.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_openai_and_anthropic_json_usage() {
        let openai = json!({"usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}});
        assert_eq!(usage_in(&openai).and_then(|u| u.tokens()), Some(42));
        let anthropic = json!({"usage": {"input_tokens": 10, "output_tokens": 5}});
        assert_eq!(usage_in(&anthropic).and_then(|u| u.tokens()), Some(15));
        assert_eq!(usage_in(&json!({"usage": null})), None);
        assert_eq!(usage_in(&json!({"choices": []})), None);
        assert_eq!(usage_in(&json!({"usage": {"other": 1}})), None);
        let huge = json!({"usage": {"input_tokens": u64::MAX, "output_tokens": 5}});
        assert_eq!(usage_in(&huge).and_then(|u| u.tokens()), Some(u64::MAX));
    }

    #[test]
    fn scans_openai_streams_split_anywhere() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 3, 7, 64, stream.len()] {
            let mut scanner = SseScanner::new(64 * 1024);
            for chunk in stream.as_bytes().chunks(split) {
                scanner.feed(chunk);
            }
            assert_eq!(scanner.usage().and_then(|u| u.tokens()), Some(11), "chunks of {split}");
        }
    }

    #[test]
    fn scans_anthropic_streams() {
        let stream = concat!(
            "event: message_start\r\n",
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n",
            "event: message_delta\r\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n"
        );
        let mut scanner = SseScanner::new(1024);
        scanner.feed(stream.as_bytes());
        assert_eq!(scanner.usage().and_then(|u| u.tokens()), Some(40));
    }

    #[test]
    fn skips_overlong_lines_and_garbage() {
        let mut scanner = SseScanner::new(16);
        scanner.feed(b"data: {\"usage\":{\"total_tokens\":5}, \"padding\": \"xxxxxxxxxxxxxxxx\"}\n");
        scanner.feed(b"data: {not json\n: comment\nretry: 10\n");
        assert_eq!(scanner.usage(), None);
    }
}
