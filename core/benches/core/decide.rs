//! The decision: the pure `decide` on a counter, the record codec, a charge
//! through the compare-and-swap loop on the in-memory store (one caller, and
//! 10,000 callers in rotation; directly and through the bounded counter
//! table, alone in a bucket and in a full one), and the whole per-request core path the
//! filter runs (classify, identify, charge, respond) for a header-only
//! request and for a request classified by its 2 KB JSON body.

use crate::fixtures::{class, config, user_head, BODY_2K, NOON_MS};
use criterion::{BatchSize, Criterion};
use quota_core::body::read_body_keys;
use quota_core::classify::{classify_head, classify_with_body, HeadMatch};
use quota_core::clock::{Clock, ManualClock};
use quota_core::config::{Cell, ClassId, Config};
use quota_core::cost::Body;
use quota_core::counter::Counter;
use quota_core::decide::decide;
use quota_core::engine::{charge, request_cost};
use quota_core::headers::Headers;
use quota_core::identity::{identify, Caller};
use quota_core::negotiate::negotiate;
use quota_core::reply::{respond, Action};
use quota_core::request::{NoProperties, RequestHead};
use quota_core::store::MemoryStore;
use std::hint::black_box;

pub fn benches(c: &mut Criterion) {
    let config = config();
    let drafts = class(&config, "drafts");
    let alice = identify(&config, &user_head("/v1/projects/p1/drafts", "alice"), &NoProperties).unwrap();
    let Some(Cell::Limited(stack)) = config.cell(alice.tier, drafts) else { panic!("bench tier covers drafts") };
    let [limits] = stack.as_slice() else { panic!("one limit") };
    let now = NOON_MS / 1000;
    let mut g = c.benchmark_group("decide");

    g.bench_function("pure/first_request_of_window", |b| {
        b.iter(|| decide(black_box(None), limits, 1, false, black_box(now), alice.alignment))
    });
    let (Some(open), _) = decide(None, limits, 1, false, now, alice.alignment) else { panic!("admitted") };
    g.bench_function("pure/open_window", |b| {
        b.iter(|| decide(black_box(Some(open)), limits, 1, false, black_box(now), alice.alignment))
    });
    let record = open.encode();
    g.bench_function("counter/encode_decode", |b| b.iter(|| Counter::decode(&black_box(open).encode())));
    g.bench_function("counter/decode", |b| b.iter(|| Counter::decode(black_box(&record))));

    // Charges through the CAS loop; the manual clock moves 1 ms per request.
    let clock = ManualClock::at(NOON_MS);
    let store = MemoryStore::new();
    g.bench_function("charge/one_caller", |b| {
        b.iter(|| {
            clock.advance_ms(1);
            charge(&config, &alice, drafts, 1, false, clock.now_ms(), &store)
        })
    });
    let callers: Vec<Caller> = (0..10_000)
        .map(|i| identify(&config, &user_head("/v1/projects/p1/drafts", &format!("user-{i:07}")), &NoProperties))
        .collect::<Result<_, _>>()
        .unwrap();
    let store = MemoryStore::new();
    let mut next = 0;
    g.bench_function("charge/10k_callers_rotating", |b| {
        b.iter(|| {
            next = (next + 1) % callers.len();
            clock.advance_ms(1);
            charge(&config, &callers[next], drafts, 1, false, clock.now_ms(), &store)
        })
    });
    // A charge that opens a counter: the first request of a new caller.
    g.bench_function("charge/new_caller", |b| {
        b.iter_batched(
            MemoryStore::new,
            |store| charge(&config, &alice, drafts, 1, false, NOON_MS, &store),
            BatchSize::SmallInput,
        )
    });

    // The same charges through the bounded counter table, as the filter
    // makes them: one caller alone in its bucket, and one caller sharing a
    // full bucket with 31 others (the bucket read, searched and rewritten).
    let store = MemoryStore::new();
    g.bench_function("charge/table_one_caller", |b| {
        b.iter(|| {
            clock.advance_ms(1);
            charge(&config, &alice, drafts, 1, false, clock.now_ms(), &config.counters.table(&store, clock.now_ms()))
        })
    });
    let mut one_bucket = config.clone();
    one_bucket.counters.max_counters = quota_core::table::SLOTS;
    let store = MemoryStore::new();
    for neighbour in &callers[..31] {
        charge(
            &one_bucket,
            neighbour,
            drafts,
            1,
            false,
            clock.now_ms(),
            &one_bucket.counters.table(&store, clock.now_ms()),
        );
    }
    g.bench_function("charge/table_full_bucket", |b| {
        b.iter(|| {
            clock.advance_ms(1);
            let table = one_bucket.counters.table(&store, clock.now_ms());
            charge(&one_bucket, &alice, drafts, 1, false, clock.now_ms(), &table)
        })
    });

    // The filter's whole per-request work in the core, as stream.rs runs it
    // (the counters in the bounded table).
    let store = MemoryStore::new();
    let req = user_head("/v1/projects/p1/drafts", "bench-user");
    g.bench_function("request/headers_only", |b| {
        b.iter(|| {
            clock.advance_ms(1);
            let HeadMatch::Class(class) = classify_head(&config, black_box(&req)) else { panic!("classified") };
            let cost = request_cost(&config, class, Body { bytes: None, json: None, prompt_chars: 0 });
            admit(&config, &req, class, cost, clock.now_ms(), &store)
        })
    });
    let store = MemoryStore::new();
    let req = user_head("/v1/chat/completions", "bench-user");
    g.bench_function("request/json_body_2kb", |b| {
        b.iter(|| {
            clock.advance_ms(1);
            assert_eq!(classify_head(&config, black_box(&req)), HeadMatch::NeedsBody);
            // The exchange reads the body once, for the members the config
            // reads, to classify and to price it.
            let part = read_body_keys(Some(black_box(BODY_2K)), false, &config.body_keys);
            let json = part.body.json();
            let class = classify_with_body(&config, &req, json).unwrap();
            let body = Body { bytes: Some(BODY_2K), json, prompt_chars: part.prompt_chars };
            let cost = request_cost(&config, class, body);
            admit(&config, &req, class, cost, clock.now_ms(), &store)
        })
    });
    g.finish();
}

/// The rest of stream.rs's work on a classified, priced request: who is
/// asking, the charge in the bounded table, the headers of the admission.
fn admit(config: &Config, req: &RequestHead, class: ClassId, cost: u64, now_ms: i64, store: &MemoryStore) -> Headers {
    let caller = identify(config, req, &NoProperties).unwrap();
    let d = charge(config, &caller, class, cost, false, now_ms, &config.counters.table(store, now_ms));
    let Action::Continue(headers) = respond(config, &d, negotiate(req.header_str("accept"))) else {
        panic!("admitted")
    };
    headers
}
