//! Each provider's usage, as recorded in `fixtures/usage/`, priced to the
//! exact micro-unit: the kinds read by `metering` times the table's prices
//! per million tokens, summed exactly and rounded up once.

use quota_core::config::ModelPrice;
use quota_core::exchange::response::MAX_EVENT_LINE;
use quota_core::metering::{usage_in, SseScanner, TokenUsage};
use serde_json::Value;

/// Micro-dollars per million tokens: input, cached input, cache write,
/// output, reasoning.
fn price(input: u64, cached_input: u64, cache_write: u64, output: u64, reasoning: u64) -> ModelPrice {
    ModelPrice { input, cached_input, cache_write, output, reasoning, per_request: None }
}

/// gpt-4o: $2.50 / $1.25 cached / $10.00 output.
fn gpt_4o() -> ModelPrice {
    price(2_500_000, 1_250_000, 2_500_000, 10_000_000, 10_000_000)
}

/// o3: $2.00 / $0.50 cached / $8.00 output and reasoning.
fn o3() -> ModelPrice {
    price(2_000_000, 500_000, 2_000_000, 8_000_000, 8_000_000)
}

/// A Claude Sonnet: $3.00 / $0.30 cache reads / $3.75 cache writes / $15.00 output.
fn sonnet() -> ModelPrice {
    price(3_000_000, 300_000, 3_750_000, 15_000_000, 15_000_000)
}

fn json(body: &str) -> TokenUsage {
    let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    usage_in(&doc).unwrap_or_default()
}

fn stream(body: &str) -> TokenUsage {
    let mut scanner = SseScanner::new(MAX_EVENT_LINE);
    // In uneven pieces, as a network hands them over.
    for chunk in body.as_bytes().chunks(37) {
        scanner.feed(chunk);
    }
    scanner.usage().unwrap_or_default()
}

fn cost(usage: TokenUsage, price: ModelPrice) -> Option<u64> {
    usage.kinds().map(|k| price.cost(&k))
}

#[test]
fn each_providers_usage_is_priced_to_the_micro_unit() {
    let cases: [(&str, TokenUsage, ModelPrice, u64); 7] = [
        // 230 × 2.50 + 1920 × 1.25 + 223 × 10 + 640 × 10 (reasoning) = 11605 µ$, exactly.
        ("openai chat json", json(include_str!("fixtures/usage/openai_chat.json")), gpt_4o(), 11_605),
        ("openai chat stream", stream(include_str!("fixtures/usage/openai_chat_stream.sse")), gpt_4o(), 5_955),
        ("responses json", json(include_str!("fixtures/usage/openai_responses.json")), o3(), 11_704),
        ("responses stream", stream(include_str!("fixtures/usage/openai_responses_stream.sse")), o3(), 5_552),
        // 42 × 3 + 10250 × 0.30 + 1843 × 3.75 + 389 × 15 = 15947.25 µ$: rounded up once.
        ("anthropic json", json(include_str!("fixtures/usage/anthropic_messages.json")), sonnet(), 15_948),
        ("anthropic stream", stream(include_str!("fixtures/usage/anthropic_messages_stream.sse")), sonnet(), 4_536),
        (
            "anthropic thinking stream",
            stream(include_str!("fixtures/usage/anthropic_messages_thinking_stream.sse")),
            sonnet(),
            20_226,
        ),
    ];
    for (name, usage, price, micros) in cases {
        assert_eq!(cost(usage, price), Some(micros), "{name}: {usage:?}");
    }
}

#[test]
fn a_request_price_is_added_once_and_a_free_model_costs_nothing() {
    let usage = json(include_str!("fixtures/usage/openai_chat.json"));
    let with_fee = ModelPrice { per_request: Some(1_000), ..gpt_4o() };
    assert_eq!(cost(usage, with_fee), Some(11_605 + 1_000));
    assert_eq!(cost(usage, price(0, 0, 0, 0, 0)), Some(0));
}
