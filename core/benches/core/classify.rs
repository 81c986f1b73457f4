//! Classification: the ordered rules of the demo matrix on the head alone,
//! the body rules on a parsed 2 KB JSON body, the JSON parse itself, and
//! identity from headers.

use crate::fixtures::{config, head, user_head, BODY_2K};
use criterion::Criterion;
use quota_core::body::{read_body, read_body_keys};
use quota_core::classify::{classify_head, classify_with_body};
use quota_core::identity::identify;
use quota_core::request::NoProperties;
use serde_json::Value;
use std::hint::black_box;

pub fn benches(c: &mut Criterion) {
    let config = config();
    let mut g = c.benchmark_group("classify");
    // The first rule of the first class matches.
    let research = user_head("/v1/research/start", "alice");
    g.bench_function("head/first_rule", |b| b.iter(|| classify_head(&config, black_box(&research))));
    // The demo matrix's last head rule (a glob) matches: every other rule is tried first.
    let drafts = user_head("/v1/projects/p1/drafts", "alice");
    g.bench_function("head/glob_last_rule", |b| b.iter(|| classify_head(&config, black_box(&drafts))));
    let models = head("GET", "/v1/models", &[("x-user-id", "alice")]);
    g.bench_function("head/unclassified", |b| b.iter(|| classify_head(&config, black_box(&models))));
    // A body rule is the first candidate: the filter buffers the body.
    let chat = user_head("/v1/chat/completions", "alice");
    g.bench_function("head/needs_body", |b| b.iter(|| classify_head(&config, black_box(&chat))));

    // What the filter does with the buffered body: parse it, then the body rules.
    g.bench_function("body/parse_json_2kb", |b| b.iter(|| serde_json::from_slice::<Value>(black_box(BODY_2K)).ok()));
    // What the filter reads of it: the members the demo matrix reads, the rest checked and skipped.
    g.bench_function("body/read_members_2kb", |b| {
        b.iter(|| read_body_keys(Some(black_box(BODY_2K)), false, &config.body_keys))
    });
    g.bench_function("body/read_whole_2kb", |b| b.iter(|| read_body(Some(black_box(BODY_2K)), false)));
    let body: Value = serde_json::from_slice(BODY_2K).unwrap();
    g.bench_function("body/rules_on_parsed_2kb", |b| {
        b.iter(|| classify_with_body(&config, black_box(&chat), Some(black_box(&body))))
    });

    g.bench_function("identify/user_and_plan_headers", |b| {
        b.iter(|| identify(&config, black_box(&drafts), &NoProperties).unwrap())
    });
    g.finish();
}
