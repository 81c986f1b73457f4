//! Reading what the upstream says a response cost: the `usage` object of an
//! OpenAI-style (`prompt_tokens`, `completion_tokens`, `total_tokens`) or
//! Anthropic-style (`input_tokens`, `output_tokens`) response, from a JSON
//! body or from server-sent events scanned as they pass.
//!
//! Two readings of the same report:
//!
//! - [`TokenUsage::tokens`], the raw count a token-metered class charges:
//!   `total_tokens`, else input + output as the provider counts them.
//! - [`TokenUsage::kinds`], the same usage split into exclusive kinds
//!   ([`TokenKinds`]) so each can be priced apart. Providers nest the kinds
//!   differently:
//!
//! | provider | input side | output side |
//! | --- | --- | --- |
//! | OpenAI Chat Completions | `prompt_tokens` includes `prompt_tokens_details.cached_tokens` | `completion_tokens` includes `completion_tokens_details.reasoning_tokens` |
//! | OpenAI Responses | `input_tokens` includes `input_tokens_details.cached_tokens` | `output_tokens` includes `output_tokens_details.reasoning_tokens` |
//! | Anthropic Messages | `input_tokens` excludes `cache_read_input_tokens` and `cache_creation_input_tokens` | `output_tokens` includes `output_tokens_details.thinking_tokens` |
//!
//! Where a usage object sits: top-level `usage` (a JSON body, an OpenAI
//! chunk, an Anthropic `message_delta`), `message.usage` (Anthropic's
//! `message_start`) or `response.usage` (the Responses API's
//! `response.completed`, `response.incomplete` and `response.failed` events).

use serde_json::Value;

/// Token counts as reported; later reports override earlier ones, field by
/// field (a stream's events each report some).
///
/// `input`, `output` and `total` are what [`TokenUsage::tokens`] charges,
/// read as they always were; the counts [`TokenUsage::kinds`] splits are
/// kept beside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
    split: Split,
}

/// The counts behind [`TokenUsage::kinds`], as reported. A part "within" a
/// count is included in it; a part "beside" it is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Split {
    /// `prompt_tokens`, else `input_tokens`.
    input: Option<u64>,
    /// `completion_tokens`, else `output_tokens`.
    output: Option<u64>,
    /// Cache reads within `input` (OpenAI's `cached_tokens`).
    cached_within: Option<u64>,
    /// Cache reads beside `input` (Anthropic's `cache_read_input_tokens`).
    cache_read: Option<u64>,
    /// Cache writes beside `input` (Anthropic's `cache_creation_input_tokens`).
    cache_write: Option<u64>,
    /// Reasoning within `output` (`reasoning_tokens`, Anthropic's `thinking_tokens`).
    reasoning_within: Option<u64>,
}

/// One response's tokens in the kinds a provider prices apart. The kinds
/// are exclusive: no token is in two of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenKinds {
    /// Plain input tokens: not read from a cache, not written to one.
    pub input: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: u64,
    /// Input tokens written to the cache (Anthropic's `cache_creation_input_tokens`).
    pub cache_write: u64,
    /// Output tokens that are not reasoning tokens.
    pub output: u64,
    /// Reasoning tokens (billed as output by providers).
    pub reasoning: u64,
}

impl TokenKinds {
    /// Every token of every kind, saturating at `u64::MAX`.
    pub fn total(&self) -> u64 {
        [self.cached_input, self.cache_write, self.output, self.reasoning]
            .into_iter()
            .fold(self.input, u64::saturating_add)
    }
}

impl TokenUsage {
    /// The tokens to charge: the reported total, else input + output.
    ///
    /// These are the provider's own counts: Anthropic's `input_tokens`
    /// leaves out its cache reads and writes, and a Responses API stream's
    /// usage (in `response.completed`) is not read for this at all.
    pub fn tokens(&self) -> Option<u64> {
        self.total.or(match (self.input, self.output) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        })
    }

    /// The usage split into exclusive kinds; `None` when no input, output or
    /// cache count was reported (a bare `total_tokens` cannot be split).
    ///
    /// - A count not reported, or reported as anything but a whole number
    ///   in `0..=u64::MAX` (a string, a negative, a fraction, a larger
    ///   number), is 0.
    /// - A part the provider counts within another is clamped to it: the
    ///   input count is the authority on the input side's total and
    ///   `cached_tokens` only says how it splits (`cached_tokens` 900 of
    ///   `prompt_tokens` 500 is 500 cached and 0 plain input), and likewise
    ///   the output count for its reasoning part. A part reported without
    ///   its count is therefore 0.
    /// - Parts reported beside the input count (Anthropic's cache reads and
    ///   writes) are taken as reported; sums saturate at `u64::MAX`.
    ///
    /// So for OpenAI `input + cached_input` is the reported input count and,
    /// for every provider, `output + reasoning` is the reported output count.
    pub fn kinds(&self) -> Option<TokenKinds> {
        let s = &self.split;
        if s.input.is_none() && s.output.is_none() && s.cache_read.is_none() && s.cache_write.is_none() {
            return None;
        }
        let input = s.input.unwrap_or(0);
        let cached_within = s.cached_within.unwrap_or(0).min(input);
        let output = s.output.unwrap_or(0);
        let reasoning = s.reasoning_within.unwrap_or(0).min(output);
        Some(TokenKinds {
            input: input.saturating_sub(cached_within),
            cached_input: cached_within.saturating_add(s.cache_read.unwrap_or(0)),
            cache_write: s.cache_write.unwrap_or(0),
            output: output.saturating_sub(reasoning),
            reasoning,
        })
    }

    fn merge(&mut self, other: TokenUsage) {
        self.input = other.input.or(self.input);
        self.output = other.output.or(self.output);
        self.total = other.total.or(self.total);
        let (s, o) = (&mut self.split, other.split);
        s.input = o.input.or(s.input);
        s.output = o.output.or(s.output);
        s.cached_within = o.cached_within.or(s.cached_within);
        s.cache_read = o.cache_read.or(s.cache_read);
        s.cache_write = o.cache_write.or(s.cache_write);
        s.reasoning_within = o.reasoning_within.or(s.reasoning_within);
    }
}

/// The usage reported in one JSON document (a response body or one event):
/// top-level `usage`, else `message.usage` (Anthropic's `message_start`),
/// else `response.usage` (a Responses API event); `None` when it reports
/// no count read here.
///
/// `input`, `output` and `total` are read from `usage` and `message.usage`
/// only, as they always were, so [`TokenUsage::tokens`] is what it was; a
/// Responses API event's usage feeds [`TokenUsage::kinds`] alone.
///
/// Whether the input count includes the cache reads is told per usage
/// object, not by the name of the count: Anthropic's `input_tokens` leaves
/// them out, the Responses API's `input_tokens` includes them. It includes
/// them (OpenAI) when the object has `prompt_tokens`, or a
/// `prompt_tokens_details` or `input_tokens_details` object, or its document
/// says `"object": "response"`: then the details' `cached_tokens` is read and
/// Anthropic's cache fields are ignored. Otherwise (Anthropic)
/// `cache_read_input_tokens` and `cache_creation_input_tokens` are read, as
/// counts beside the input. The reasoning part is read alike for every
/// provider, within the output count: `reasoning_tokens` of
/// `completion_tokens_details` or `output_tokens_details`, else
/// `thinking_tokens` of `output_tokens_details` (Anthropic).
pub fn usage_in(doc: &Value) -> Option<TokenUsage> {
    let (owner, usage, charged) = located(doc)?;
    let n = |k: &str| count(usage, k);
    let detail = |details: &str, k: &str| usage.get(details).and_then(|d| count(d, k));
    let input = n("prompt_tokens").or_else(|| n("input_tokens"));
    let output = n("completion_tokens").or_else(|| n("output_tokens"));
    let cache_within_input = usage.get("prompt_tokens").is_some()
        || ["prompt_tokens_details", "input_tokens_details"].iter().any(|k| usage.get(k).is_some_and(Value::is_object))
        || owner.get("object").and_then(Value::as_str) == Some("response");
    let beside = |k: &str| if cache_within_input { None } else { n(k) };
    let split = Split {
        input,
        output,
        cached_within: if cache_within_input {
            detail("prompt_tokens_details", "cached_tokens").or_else(|| detail("input_tokens_details", "cached_tokens"))
        } else {
            None
        },
        cache_read: beside("cache_read_input_tokens"),
        cache_write: beside("cache_creation_input_tokens"),
        reasoning_within: detail("completion_tokens_details", "reasoning_tokens")
            .or_else(|| detail("output_tokens_details", "reasoning_tokens"))
            .or_else(|| detail("output_tokens_details", "thinking_tokens")),
    };
    let found = if charged {
        TokenUsage { input, output, total: n("total_tokens"), split }
    } else {
        TokenUsage { split, ..TokenUsage::default() }
    };
    (found != TokenUsage::default()).then_some(found)
}

/// The usage object of `doc`, the document it belongs to, and whether its
/// counts are charged by [`TokenUsage::tokens`]: always, a Responses API
/// event's (`response.usage`, in `response.completed`) too. (They once were
/// not, so a streamed Responses call was charged its estimate whatever it
/// used: a caller could stream long answers for the price of the default
/// completion budget.)
fn located(doc: &Value) -> Option<(&Value, &Value, bool)> {
    let object = |u: &&Value| u.is_object();
    let within = |key: &str| doc.get(key).and_then(|owner| Some((owner, owner.get("usage").filter(object)?)));
    if let Some(usage) = doc.get("usage").filter(object) {
        return Some((doc, usage, true));
    }
    within("message").map(|(owner, usage)| (owner, usage, true)).or_else(|| {
        let (owner, usage) = within("response")?;
        Some((owner, usage, true))
    })
}

/// The model a JSON document (a response body or one event) says served
/// it: top-level `model` (OpenAI, an Anthropic message), else
/// `message.model` (Anthropic's `message_start`), else `response.model` (a
/// Responses API event); a string, else absent.
pub fn model_in(doc: &Value) -> Option<&str> {
    [Some(doc), doc.get("message"), doc.get("response")]
        .into_iter()
        .flatten()
        .find_map(|owner| owner.get("model").and_then(Value::as_str))
}

/// A token count: a whole number in `0..=u64::MAX`, anything else absent.
fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
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
    /// The first model an event named ([`model_in`]), bounded as the ledger
    /// bounds model names.
    model: Option<String>,
}

impl SseScanner {
    pub fn new(max_line: usize) -> Self {
        SseScanner {
            line: Vec::new(),
            max_line,
            overflowed: false,
            usage: TokenUsage::default(),
            seen: false,
            model: None,
        }
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
        let Ok(event) = serde_json::from_slice::<Value>(data) else { return };
        if self.model.is_none() {
            self.model = model_in(&event).map(|m| crate::ledger::bounded(m, crate::ledger::MAX_MODEL_BYTES));
        }
        if let Some(u) = usage_in(&event) {
            self.usage.merge(u);
            self.seen = true;
        }
    }

    /// The model the stream's first event naming one reported.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
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
    fn kinds_need_an_input_output_or_cache_count() {
        assert_eq!(TokenUsage::default().kinds(), None);
        assert_eq!(usage_in(&json!({"usage": {"total_tokens": 9}})).and_then(|u| u.kinds()), None);
        let reads = json!({"usage": {"cache_read_input_tokens": 9}});
        let only_reads = TokenKinds { cached_input: 9, ..TokenKinds::default() };
        assert_eq!(usage_in(&reads).and_then(|u| u.kinds()), Some(only_reads));
        assert_eq!(usage_in(&reads).and_then(|u| u.tokens()), None);
    }

    #[test]
    fn kinds_total_saturates() {
        let kinds = TokenKinds { input: u64::MAX, reasoning: 1, ..TokenKinds::default() };
        assert_eq!(kinds.total(), u64::MAX);
        assert_eq!(TokenKinds { input: 1, cached_input: 2, cache_write: 3, output: 4, reasoning: 5 }.total(), 15);
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
    fn names_the_model_each_api_reports() {
        assert_eq!(model_in(&json!({"model": "gpt-4o-2024-08-06", "usage": {}})), Some("gpt-4o-2024-08-06"));
        let start = json!({"type": "message_start", "message": {"model": "claude-sonnet-4", "usage": {}}});
        assert_eq!(model_in(&start), Some("claude-sonnet-4"));
        assert_eq!(model_in(&json!({"type": "response.created", "response": {"model": "o3"}})), Some("o3"));
        assert_eq!(model_in(&json!({"model": 7})), None);
        assert_eq!(model_in(&json!({"choices": []})), None);
    }

    #[test]
    fn a_stream_keeps_the_first_model_it_names_bounded() {
        let mut scanner = SseScanner::new(64 * 1024);
        let long = "x".repeat(10_000);
        scanner.feed(b"data: {\"choices\":[]}\n\n");
        scanner.feed(format!("data: {{\"model\":\"{long}\"}}\n\ndata: {{\"model\":\"other\"}}\n\n").as_bytes());
        let model = scanner.model().unwrap_or_default();
        assert!(model.starts_with("xxx") && model.len() <= crate::ledger::MAX_MODEL_BYTES + 3, "{}", model.len());
    }

    #[test]
    fn skips_overlong_lines_and_garbage() {
        let mut scanner = SseScanner::new(16);
        scanner.feed(b"data: {\"usage\":{\"total_tokens\":5}, \"padding\": \"xxxxxxxxxxxxxxxx\"}\n");
        scanner.feed(b"data: {not json\n: comment\nretry: 10\n");
        assert_eq!(scanner.usage(), None);
    }
}
