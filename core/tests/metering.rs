//! Token kinds read from recorded provider responses (tests/fixtures/usage/):
//! OpenAI Chat Completions and Responses, Anthropic Messages, as JSON bodies
//! and as event streams split anywhere, plus hostile usage objects. Every
//! test also checks that `tokens()` (what token-metered classes charge) is
//! what the reading before token kinds gave: [`legacy_tokens`] is that
//! reading, kept here as the oracle.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quota_core::exchange::response::MAX_EVENT_LINE;
use quota_core::metering::{usage_in, SseScanner, TokenKinds, TokenUsage};
use serde_json::{json, Value};

const OPENAI_CHAT: &str = include_str!("fixtures/usage/openai_chat.json");
const OPENAI_CHAT_STREAM: &str = include_str!("fixtures/usage/openai_chat_stream.sse");
const OPENAI_RESPONSES: &str = include_str!("fixtures/usage/openai_responses.json");
const OPENAI_RESPONSES_STREAM: &str = include_str!("fixtures/usage/openai_responses_stream.sse");
const ANTHROPIC: &str = include_str!("fixtures/usage/anthropic_messages.json");
const ANTHROPIC_STREAM: &str = include_str!("fixtures/usage/anthropic_messages_stream.sse");
const ANTHROPIC_THINKING_STREAM: &str = include_str!("fixtures/usage/anthropic_messages_thinking_stream.sse");

fn kinds(input: u64, cached_input: u64, cache_write: u64, output: u64, reasoning: u64) -> TokenKinds {
    TokenKinds { input, cached_input, cache_write, output, reasoning }
}

/// `tokens()` of one document as it was read before token kinds, plus the
/// Responses API's `response.usage` (charged since a streamed Responses
/// call was found to settle to its estimate): top-level `usage` if an
/// object, else `message.usage`, else `response.usage`; `prompt_tokens`
/// else `input_tokens`, `completion_tokens` else `output_tokens`,
/// `total_tokens`.
fn legacy_counts(doc: &Value) -> (Option<u64>, Option<u64>, Option<u64>) {
    // The old reading, and the Responses API's `response.usage` since it is charged too.
    let Some(usage) = doc
        .get("usage")
        .filter(|u| u.is_object())
        .or_else(|| doc.get("message")?.get("usage"))
        .or_else(|| doc.get("response")?.get("usage").filter(|u| u.is_object()))
    else {
        return (None, None, None);
    };
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    (
        n("prompt_tokens").or_else(|| n("input_tokens")),
        n("completion_tokens").or_else(|| n("output_tokens")),
        n("total_tokens"),
    )
}

fn legacy_tokens_of(counts: (Option<u64>, Option<u64>, Option<u64>)) -> Option<u64> {
    match counts {
        (None, None, None) => None,
        (input, output, total) => total.or(Some(input.unwrap_or(0).saturating_add(output.unwrap_or(0)))),
    }
}

fn legacy_tokens(doc: &Value) -> Option<u64> {
    legacy_tokens_of(legacy_counts(doc))
}

/// The same for a stream: each complete `data: {...}` line's counts, later
/// ones overriding earlier ones field by field.
fn legacy_stream_tokens(stream: &str) -> Option<u64> {
    let mut merged = (None, None, None);
    let complete = stream.rsplit_once('\n').map_or("", |(lines, _)| lines);
    for line in complete.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some(data) = line.strip_prefix("data:") else { continue };
        let data = data.strip_prefix(' ').unwrap_or(data);
        if !data.starts_with('{') {
            continue;
        }
        let Ok(doc) = serde_json::from_str::<Value>(data) else { continue };
        let (i, o, t) = legacy_counts(&doc);
        merged = (i.or(merged.0), o.or(merged.1), t.or(merged.2));
    }
    legacy_tokens_of(merged)
}

fn json_usage(body: &str) -> (TokenUsage, Value) {
    let doc: Value = serde_json::from_str(body).unwrap();
    (usage_in(&doc).expect("the body reports usage"), doc)
}

fn scan<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Option<TokenUsage> {
    let mut scanner = SseScanner::new(MAX_EVENT_LINE);
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.usage()
}

/// The stream read whole, then cut in two at every byte boundary and in
/// chunks of every size up to 97 bytes: the same usage each time.
fn scan_split_everywhere(stream: &str) -> TokenUsage {
    let bytes = stream.as_bytes();
    let whole = scan([bytes]).expect("the stream reports usage");
    for at in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(at);
        assert_eq!(scan([head, tail]), Some(whole), "cut at byte {at}");
    }
    for size in 1..=97 {
        assert_eq!(scan(bytes.chunks(size)), Some(whole), "chunks of {size}");
    }
    whole
}

#[test]
fn openai_chat_json_splits_cached_and_reasoning_tokens() {
    let (usage, doc) = json_usage(OPENAI_CHAT);
    // prompt 2150 of which 1920 cached; completion 863 of which 640 reasoning.
    assert_eq!(usage.kinds(), Some(kinds(230, 1920, 0, 223, 640)));
    assert_eq!(usage.tokens(), Some(3013));
    assert_eq!(usage.tokens(), legacy_tokens(&doc));
}

#[test]
fn openai_chat_stream_reads_the_include_usage_chunk_split_anywhere() {
    let usage = scan_split_everywhere(OPENAI_CHAT_STREAM);
    // prompt 1310 of which 1152 cached; completion 412 of which 256 reasoning.
    assert_eq!(usage.kinds(), Some(kinds(158, 1152, 0, 156, 256)));
    assert_eq!(usage.tokens(), Some(1722));
    assert_eq!(usage.tokens(), legacy_stream_tokens(OPENAI_CHAT_STREAM));
}

#[test]
fn responses_json_splits_cached_and_reasoning_tokens() {
    let (usage, doc) = json_usage(OPENAI_RESPONSES);
    // input 3408 of which 3072 cached; output 1187 of which 896 reasoning.
    assert_eq!(usage.kinds(), Some(kinds(336, 3072, 0, 291, 896)));
    assert_eq!(usage.tokens(), Some(4595));
    assert_eq!(usage.tokens(), legacy_tokens(&doc));
}

#[test]
fn responses_stream_reads_response_completed_split_anywhere() {
    let usage = scan_split_everywhere(OPENAI_RESPONSES_STREAM);
    // input 1984 of which 1792 cached; output 534 of which 448 reasoning.
    assert_eq!(usage.kinds(), Some(kinds(192, 1792, 0, 86, 448)));
    // `response.usage` is charged: a streamed Responses call settles to what it used.
    assert_eq!(usage.tokens(), Some(2518));
    assert_eq!(usage.tokens(), legacy_stream_tokens(OPENAI_RESPONSES_STREAM));
}

#[test]
fn responses_events_before_completion_report_nothing() {
    let created = OPENAI_RESPONSES_STREAM.split("\n\n").next().unwrap();
    let data = created.split_once("data: ").unwrap().1;
    assert_eq!(usage_in(&serde_json::from_str(data).unwrap()), None);
}

#[test]
fn anthropic_json_counts_cache_reads_and_writes_beside_the_input() {
    let (usage, doc) = json_usage(ANTHROPIC);
    assert_eq!(usage.kinds(), Some(kinds(42, 10250, 1843, 389, 0)));
    assert_eq!(usage.tokens(), Some(42 + 389));
    assert_eq!(usage.tokens(), legacy_tokens(&doc));
}

#[test]
fn anthropic_stream_merges_message_start_and_message_delta_split_anywhere() {
    let usage = scan_split_everywhere(ANTHROPIC_STREAM);
    // The input side from message_start, the cumulative output (57, not 1 + 57) from message_delta.
    assert_eq!(usage.kinds(), Some(kinds(18, 12087, 0, 57, 0)));
    assert_eq!(usage.tokens(), Some(18 + 57));
    assert_eq!(usage.tokens(), legacy_stream_tokens(ANTHROPIC_STREAM));
}

#[test]
fn anthropic_thinking_stream_reads_thinking_tokens_as_reasoning_split_anywhere() {
    let usage = scan_split_everywhere(ANTHROPIC_THINKING_STREAM);
    // message_delta repeats the input side and reports 734 output tokens, 598 of them thinking.
    assert_eq!(usage.kinds(), Some(kinds(512, 0, 2048, 136, 598)));
    assert_eq!(usage.tokens(), Some(512 + 734));
    assert_eq!(usage.tokens(), legacy_stream_tokens(ANTHROPIC_THINKING_STREAM));
}

#[test]
fn later_events_override_earlier_ones_field_by_field() {
    let stream = concat!(
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,",
        "\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":7,\"output_tokens\":1}}}\n\n",
        "data: {\"type\":\"message_delta\",\"usage\":{\"cache_read_input_tokens\":null,",
        "\"cache_creation_input_tokens\":9,\"output_tokens\":15}}\n\n",
    );
    let usage = scan([stream.as_bytes()]).unwrap();
    // A null is no report: the earlier 100 cache reads stand; 9 writes replace 7.
    assert_eq!(usage.kinds(), Some(kinds(25, 100, 9, 15, 0)));
    assert_eq!(usage.tokens(), Some(40));
}

#[test]
fn counts_that_are_not_whole_numbers_in_range_are_absent() {
    let too_large: Value = serde_json::from_str("18446744073709551616").unwrap();
    let not_counts = [
        json!("12"),
        json!(-5),
        json!(i64::MIN),
        json!(1.5),
        json!(12.0),
        json!(1e30),
        too_large,
        json!(null),
        json!(true),
        json!([12]),
        json!({"value": 12}),
    ];
    for bad in not_counts {
        let openai = json!({"usage": {
            "prompt_tokens": bad, "completion_tokens": 7, "total_tokens": bad,
            "prompt_tokens_details": {"cached_tokens": bad},
            "completion_tokens_details": {"reasoning_tokens": bad},
        }});
        let usage = usage_in(&openai).unwrap();
        assert_eq!(usage.kinds(), Some(kinds(0, 0, 0, 7, 0)), "{bad}");
        assert_eq!(usage.tokens(), Some(7), "{bad}");
        assert_eq!(usage.tokens(), legacy_tokens(&openai), "{bad}");

        let anthropic = json!({"usage": {
            "input_tokens": 3, "output_tokens": bad,
            "cache_read_input_tokens": bad, "cache_creation_input_tokens": bad,
        }});
        let usage = usage_in(&anthropic).unwrap();
        assert_eq!(usage.kinds(), Some(kinds(3, 0, 0, 0, 0)), "{bad}");
        assert_eq!(usage.tokens(), legacy_tokens(&anthropic), "{bad}");

        let only_bad = json!({"usage": {"input_tokens": bad, "cache_read_input_tokens": bad}});
        assert_eq!(usage_in(&only_bad), None, "{bad}");
    }
}

#[test]
fn u64_max_counts_saturate() {
    let max = u64::MAX;
    let openai = json!({"usage": {
        "prompt_tokens": max, "completion_tokens": max,
        "prompt_tokens_details": {"cached_tokens": max},
        "completion_tokens_details": {"reasoning_tokens": max},
    }});
    let usage = usage_in(&openai).unwrap();
    assert_eq!(usage.kinds(), Some(kinds(0, max, 0, 0, max)));
    assert_eq!(usage.kinds().unwrap().total(), max);
    assert_eq!(usage.tokens(), Some(max));
    assert_eq!(usage.tokens(), legacy_tokens(&openai));

    let anthropic = json!({"usage": {
        "input_tokens": max, "output_tokens": max,
        "cache_read_input_tokens": max, "cache_creation_input_tokens": max,
    }});
    let usage = usage_in(&anthropic).unwrap();
    assert_eq!(usage.kinds(), Some(kinds(max, max, max, max, 0)));
    assert_eq!(usage.kinds().unwrap().total(), max);
    assert_eq!(usage.tokens(), Some(max));

    // Cache reads both within (an OpenAI event) and beside the input (an
    // Anthropic one) in one stream: their sum saturates.
    let stream = format!(
        "data: {}\n\ndata: {}\n\n",
        json!({"usage": {"prompt_tokens": max, "prompt_tokens_details": {"cached_tokens": max}}}),
        json!({"usage": {"cache_read_input_tokens": max}}),
    );
    let usage = scan([stream.as_bytes()]).unwrap();
    assert_eq!(usage.kinds(), Some(kinds(0, max, 0, 0, 0)));
    assert_eq!(usage.tokens(), Some(max));
}

#[test]
fn parts_larger_than_their_count_are_clamped_to_it() {
    let chat = json!({"usage": {
        "prompt_tokens": 500, "completion_tokens": 40, "total_tokens": 540,
        "prompt_tokens_details": {"cached_tokens": 900},
        "completion_tokens_details": {"reasoning_tokens": 41},
    }});
    assert_eq!(usage_in(&chat).unwrap().kinds(), Some(kinds(0, 500, 0, 0, 40)));
    assert_eq!(usage_in(&chat).unwrap().tokens(), Some(540));

    let responses = json!({"object": "response", "usage": {
        "input_tokens": 10, "output_tokens": 3,
        "input_tokens_details": {"cached_tokens": 11},
        "output_tokens_details": {"reasoning_tokens": 4},
    }});
    assert_eq!(usage_in(&responses).unwrap().kinds(), Some(kinds(0, 10, 0, 0, 3)));

    let anthropic =
        json!({"usage": {"input_tokens": 10, "output_tokens": 3, "output_tokens_details": {"thinking_tokens": 9}}});
    assert_eq!(usage_in(&anthropic).unwrap().kinds(), Some(kinds(10, 0, 0, 0, 3)));
}

#[test]
fn parts_without_their_count_are_zero() {
    let details_only = json!({"usage": {
        "prompt_tokens_details": {"cached_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 6},
    }});
    let usage = usage_in(&details_only).unwrap();
    assert_eq!(usage.kinds(), None);
    assert_eq!(usage.tokens(), None);
    assert_eq!(usage.tokens(), legacy_tokens(&details_only));

    let no_prompt = json!({"usage": {"completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 5}}});
    assert_eq!(usage_in(&no_prompt).unwrap().kinds(), Some(kinds(0, 0, 0, 3, 0)));

    // A part in one event and its count in a later one do meet.
    let stream = "data: {\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":5}}}\n\ndata: {\"usage\":{\"prompt_tokens\":8}}\n\n";
    assert_eq!(scan([stream.as_bytes()]).unwrap().kinds(), Some(kinds(3, 5, 0, 0, 0)));
}

#[test]
fn missing_or_malformed_details_split_nothing() {
    for details in
        [json!(null), json!(5), json!("cached"), json!([{"cached_tokens": 5}]), json!({}), json!({"other": 5})]
    {
        let doc = json!({"usage": {
            "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
            "prompt_tokens_details": details, "completion_tokens_details": details,
        }});
        let usage = usage_in(&doc).unwrap();
        assert_eq!(usage.kinds(), Some(kinds(10, 0, 0, 4, 0)), "{details}");
        assert_eq!(usage.tokens(), Some(14), "{details}");
    }
    let bare = json!({"usage": {"input_tokens": 10, "output_tokens": 4}});
    assert_eq!(usage_in(&bare).unwrap().kinds(), Some(kinds(10, 0, 0, 4, 0)));
}

#[test]
fn a_bare_total_cannot_be_split() {
    let doc = json!({"usage": {"total_tokens": 5}});
    let usage = usage_in(&doc).unwrap();
    assert_eq!(usage.tokens(), Some(5));
    assert_eq!(usage.kinds(), None);
}

#[test]
fn usage_that_is_not_an_object_reports_nothing() {
    let docs = [
        json!({"usage": null}),
        json!({"usage": [1, 2]}),
        json!({"usage": "12"}),
        json!({"usage": 12}),
        json!({"message": null}),
        json!({"message": {"usage": null}}),
        json!({"message": {"usage": [{"input_tokens": 3}]}}),
        json!({"response": "done"}),
        json!({"response": {"usage": null}}),
        json!({"response": {"usage": 7}}),
        json!({"type": "response.completed", "response": [{"usage": {"input_tokens": 3}}]}),
        json!([{"usage": {"input_tokens": 3}}]),
        json!("usage"),
        json!(null),
    ];
    for doc in docs {
        assert_eq!(usage_in(&doc), None, "{doc}");
        assert_eq!(legacy_tokens(&doc), None, "{doc}");
    }
}

#[test]
fn nested_junk_is_ignored() {
    let doc = json!({"usage": {
        "prompt_tokens": {"prompt_tokens": 5},
        "completion_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": {"cached_tokens": 5}, "nested": [[[[1]]]]},
        "completion_tokens_details": {"reasoning_tokens": [4]},
        "output_tokens_details": {"thinking_tokens": 2},
        "extra": {"usage": {"input_tokens": 1000}},
    }});
    let usage = usage_in(&doc).unwrap();
    // `thinking_tokens` is read where `reasoning_tokens` is not a count.
    assert_eq!(usage.kinds(), Some(kinds(0, 0, 0, 7, 2)));
    assert_eq!(usage.tokens(), Some(9));
    assert_eq!(usage.tokens(), legacy_tokens(&doc));

    // Nesting past serde_json's recursion limit is a parse error: the line is skipped.
    let deep = format!("data: {{\"usage\":{}1{}}}\n\n", "[".repeat(10_000), "]".repeat(10_000));
    let stream = format!("{deep}data: {{\"usage\":{{\"prompt_tokens\":4,\"completion_tokens\":1}}}}\n\n");
    let mut scanner = SseScanner::new(usize::MAX);
    scanner.feed(stream.as_bytes());
    assert_eq!(scanner.usage().unwrap().kinds(), Some(kinds(4, 0, 0, 1, 0)));
}

#[test]
fn anthropic_cache_fields_in_an_openai_usage_are_ignored() {
    let chat = json!({"usage": {
        "prompt_tokens": 100, "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 30},
        "cache_read_input_tokens": 30, "cache_creation_input_tokens": 10,
    }});
    assert_eq!(usage_in(&chat).unwrap().kinds(), Some(kinds(70, 30, 0, 5, 0)));

    // A Responses document is OpenAI's even without its details objects.
    let responses = json!({"object": "response", "usage": {"input_tokens": 100, "output_tokens": 5, "cache_read_input_tokens": 30}});
    assert_eq!(usage_in(&responses).unwrap().kinds(), Some(kinds(100, 0, 0, 5, 0)));
    let event = json!({"type": "response.completed", "response": {"object": "response", "usage": {"input_tokens": 100, "output_tokens": 5, "cache_creation_input_tokens": 9}}});
    assert_eq!(usage_in(&event).unwrap().kinds(), Some(kinds(100, 0, 0, 5, 0)));
}

/// A small deterministic generator (64-bit LCG): no dependency for one test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

fn random_count(rng: &mut Lcg) -> Value {
    let values = [
        json!(0),
        json!(1),
        json!(7),
        json!(500),
        json!(u64::MAX),
        json!(u64::MAX - 1),
        json!(-1),
        json!(2.5),
        json!("9"),
        json!(null),
        json!([3]),
        json!({"cached_tokens": 3}),
    ];
    values[rng.next(values.len())].clone()
}

fn random_usage(rng: &mut Lcg) -> Value {
    let counts = [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ];
    let details = [
        ("prompt_tokens_details", "cached_tokens"),
        ("input_tokens_details", "cached_tokens"),
        ("completion_tokens_details", "reasoning_tokens"),
        ("output_tokens_details", "reasoning_tokens"),
        ("output_tokens_details", "thinking_tokens"),
    ];
    let mut usage = serde_json::Map::new();
    for key in counts {
        if rng.next(2) == 0 {
            usage.insert(key.into(), random_count(rng));
        }
    }
    for (outer, inner) in details {
        match rng.next(4) {
            0 => {
                let entry = usage.entry(outer).or_insert_with(|| json!({}));
                if let Some(map) = entry.as_object_mut() {
                    map.insert(inner.into(), random_count(rng));
                }
            }
            1 => {
                usage.insert(outer.into(), random_count(rng));
            }
            _ => {}
        }
    }
    Value::Object(usage)
}

fn random_doc(rng: &mut Lcg) -> Value {
    let usage = random_usage(rng);
    match rng.next(5) {
        0 => json!({"object": "chat.completion", "usage": usage}),
        1 => json!({"object": "response", "usage": usage}),
        2 => json!({"type": "message_start", "message": {"type": "message", "usage": usage}}),
        3 => json!({"type": "response.completed", "response": {"object": "response", "usage": usage}}),
        _ => json!({"type": "message_delta", "usage": usage}),
    }
}

#[test]
fn random_usage_objects_keep_tokens_and_split_exactly() {
    let mut rng = Lcg(0x005e_ed0f_706b_656e);
    for round in 0..20_000 {
        let doc = random_doc(&mut rng);
        let usage = usage_in(&doc);
        assert_eq!(usage.and_then(|u| u.tokens()), legacy_tokens(&doc), "round {round}: {doc}");
        let Some(k) = usage.and_then(|u| u.kinds()) else { continue };
        let (owner, raw) = [&doc, &doc["message"], &doc["response"]]
            .into_iter()
            .find_map(|owner| Some((owner, owner.get("usage").filter(|u| u.is_object())?)))
            .unwrap();
        let n = |k: &str| raw.get(k).and_then(Value::as_u64);
        let input = n("prompt_tokens").or_else(|| n("input_tokens")).unwrap_or(0);
        let output = n("completion_tokens").or_else(|| n("output_tokens")).unwrap_or(0);
        assert_eq!(k.output + k.reasoning, output, "round {round}: {doc}");
        let includes_cache = raw.get("prompt_tokens").is_some()
            || raw.get("prompt_tokens_details").is_some_and(Value::is_object)
            || raw.get("input_tokens_details").is_some_and(Value::is_object)
            || owner["object"] == "response";
        if includes_cache {
            assert_eq!(k.input + k.cached_input, input, "round {round}: {doc}");
            assert_eq!(k.cache_write, 0, "round {round}: {doc}");
        } else {
            assert_eq!(k.input, input, "round {round}: {doc}");
            assert_eq!(k.cached_input, n("cache_read_input_tokens").unwrap_or(0), "round {round}: {doc}");
            assert_eq!(k.cache_write, n("cache_creation_input_tokens").unwrap_or(0), "round {round}: {doc}");
        }
    }
}

#[test]
fn random_streams_keep_tokens() {
    let mut rng = Lcg(0x0057_7265_616d);
    for round in 0..2_000 {
        let events = rng.next(5);
        let stream: String = (0..events).map(|_| format!("data: {}\n\n", random_doc(&mut rng))).collect();
        let usage = scan([stream.as_bytes()]);
        assert_eq!(usage.and_then(|u| u.tokens()), legacy_stream_tokens(&stream), "round {round}: {stream}");
        if let Some(k) = usage.and_then(|u| u.kinds()) {
            assert!(k.total() >= k.input.max(k.cached_input).max(k.cache_write), "round {round}: {stream}");
        }
    }
}
