//! The ledger's share of a request: one whole exchange (head, decision,
//! response head, end of the stream) with the ledger on and off, and the
//! record's line on its own.

use crate::fixtures::{self, bench_user, NOON_MS};
use criterion::Criterion;
use quota_core::config::Config;
use quota_core::exchange::memory::MemoryHost;
use quota_core::exchange::response::Ended;
use quota_core::exchange::Exchange;
use std::hint::black_box;

/// The bench config with `observability.ledger` set to `on`.
fn config(on: bool) -> Config {
    let mut config = fixtures::config();
    config.observability.ledger = on;
    config
}

/// A draft classified by its path, as the load benchmark sends it, through
/// the whole exchange; the record's line when the ledger is on.
fn one_request(config: &Config, host: &mut MemoryHost, user: &str) -> Option<String> {
    let mut headers: Vec<(String, Vec<u8>)> = [
        (":authority", "127.0.0.1:10000"),
        (":path", "/v1/projects/p1/drafts"),
        (":method", "POST"),
        (":scheme", "http"),
        ("x-request-id", "0b1c6a52-3f3e-4f7e-9a57-3c0d1c9a4e21"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect();
    headers.extend(bench_user(user).map(|(n, v)| (n.to_string(), v.into_bytes())));
    // The host keeps every note: only this request's.
    host.notes.clear();
    let mut x = Exchange::new();
    x.request_head(config, host, headers, true);
    x.response_head(config, host, Some(200), None, 0);
    x.ended(config, host, Ended::default);
    x.ledger(|| NOON_MS + 3).map(|r| r.to_line())
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");
    for on in [true, false] {
        let config = config(on);
        let mut host = MemoryHost::at(NOON_MS);
        let mut n = 0u64;
        assert_eq!(one_request(&config, &mut host, "bench-user").is_some(), on);
        let name = if on { "exchange/ledger_on" } else { "exchange/ledger_off" };
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let user = format!("user-{}", n % 1000);
                one_request(&config, &mut host, black_box(&user))
            })
        });
    }
    let line = one_request(&config(true), &mut MemoryHost::at(NOON_MS), "bench-user").unwrap();
    let record = quota_core::ledger::LedgerRecord::from_line(&line).unwrap();
    g.bench_function("record/to_line", |b| b.iter(|| black_box(&record).to_line()));

    g.finish();
}
