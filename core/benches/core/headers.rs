//! What the caller is told: the header contract from one decision (state
//! `ok`, and `warning` with its sentence), a 429 with its body in each
//! format, and stripping clients' `x-quota-*` headers.

use crate::fixtures::{class, config, head, user_head, NOON_MS};
use criterion::Criterion;
use quota_core::engine::{charge, Decision};
use quota_core::headers::{is_quota_header, response_headers};
use quota_core::identity::identify;
use quota_core::negotiate::{negotiate, BodyFormat};
use quota_core::reply::respond;
use quota_core::request::NoProperties;
use quota_core::store::MemoryStore;
use std::hint::black_box;

/// The decision on the `n`-th free-tier draft of a caller (limit 10, soft 5).
fn nth_free_draft(n: usize) -> Decision {
    let config = config();
    let store = MemoryStore::new();
    let free =
        identify(&config, &head("POST", "/v1/projects/p1/drafts", &[("x-user-id", "dana")]), &NoProperties).unwrap();
    let drafts = class(&config, "drafts");
    (0..n).map(|_| charge(&config, &free, drafts, 1, false, NOON_MS, &store)).last().unwrap()
}

pub fn benches(c: &mut Criterion) {
    let config = config();
    let mut g = c.benchmark_group("headers");
    let ok = nth_free_draft(1);
    g.bench_function("response/ok", |b| b.iter(|| response_headers(&config, black_box(&ok))));
    let warning = nth_free_draft(6);
    g.bench_function("response/warning_with_sentence", |b| b.iter(|| response_headers(&config, black_box(&warning))));
    let blocked = nth_free_draft(11);
    assert!(!blocked.admitted());
    for (name, format) in
        [("openai_json", BodyFormat::OpenAi), ("problem_json", BodyFormat::Problem), ("html", BodyFormat::Html)]
    {
        g.bench_function(format!("refusal_429/{name}"), |b| b.iter(|| respond(&config, black_box(&blocked), format)));
    }
    g.bench_function("negotiate/browser_accept", |b| {
        b.iter(|| negotiate(black_box(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"))))
    });
    // The filter checks every request header for the x-quota- prefix.
    let req = user_head("/v1/projects/p1/drafts", "alice");
    g.bench_function("strip/scan_request_headers", |b| {
        b.iter(|| black_box(&req).headers.iter().filter(|(n, _)| is_quota_header(n)).count())
    });
    g.finish();
}
