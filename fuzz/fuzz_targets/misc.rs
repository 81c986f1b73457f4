//! The small parsers and the arithmetic around them, one per selector byte:
//! JWT claims, path globs (checked against a plain reference matcher),
//! message templates, UTC offsets, windows (checked to hold their instant),
//! Accept negotiation, the grants query, RFC 3339, counter records (and buckets of
//! the counter table), and human durations.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::calendar::{parse_rfc3339_utc, rfc3339};
use quota_core::config::{parse_utc_offset, parse_window};
use quota_core::counter::Counter;
use quota_core::glob::Glob;
use quota_core::store::{compare_and_swap, CounterStore, Expect, MemoryStore};
use quota_core::table::{entries, Layout, Table};
use quota_core::template::{Template, VARS};
use quota_core::window::{Alignment, WindowSpec};
use quota_core::{admin, copy, decide, jwt, negotiate};
use quota_core_fuzz::{configs, counter_from_fixed_layout};

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn i64_at(data: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    for (i, x) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *x;
    }
    i64::from_le_bytes(b)
}

fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn jwt_claims(data: &[u8]) {
    let paths: [&[&str]; 4] = [&["sub"], &["org", "id"], &[], &["a", "b", "c"]];
    // The bytes as a whole token, and as the payload of a well-formed one.
    let token = format!("Bearer h.{}.s", base64url(data));
    for path in paths {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let _ = jwt::claim(data, &path);
        let _ = jwt::claim(token.as_bytes(), &path);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = jwt::base64url_decode(s);
    }
    assert_eq!(jwt::base64url_decode(&base64url(data)).as_deref(), Some(data), "base64url round trip");
}

#[derive(Clone, Copy)]
enum Tok {
    Byte(u8),
    Star,
    DoubleStar,
}

/// The glob semantics written the obvious way (memoised backtracking).
fn reference(pattern: &str, path: &[u8]) -> Option<bool> {
    let p = pattern.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let stars = p[i..].iter().take_while(|b| **b == b'*').count();
        match stars {
            0 => toks.push(Tok::Byte(p[i])),
            1 => toks.push(Tok::Star),
            2 => toks.push(Tok::DoubleStar),
            _ => return None,
        }
        i += stars.max(1);
    }
    let mut memo = vec![None; (toks.len() + 1) * (path.len() + 1)];
    fn go(t: &[Tok], s: &[u8], ti: usize, si: usize, memo: &mut Vec<Option<bool>>) -> bool {
        let key = ti * (s.len() + 1) + si;
        if let Some(v) = memo[key] {
            return v;
        }
        let v = match t.get(ti) {
            None => si == s.len(),
            Some(Tok::Byte(b)) => s.get(si) == Some(b) && go(t, s, ti + 1, si + 1, memo),
            Some(Tok::Star) => {
                let run = s[si..].iter().take_while(|b| **b != b'/').count();
                (si..=si + run).any(|k| go(t, s, ti + 1, k, memo))
            }
            Some(Tok::DoubleStar) => (si..=s.len()).any(|k| go(t, s, ti + 1, k, memo)),
        };
        memo[key] = Some(v);
        v
    }
    Some(go(&toks, path, 0, 0, &mut memo))
}

fn globs(data: &[u8]) {
    let s = text(data);
    let (pattern, path) = s.split_once('\n').unwrap_or((&s, "/"));
    match Glob::new(pattern) {
        Ok(g) => {
            let got = g.matches(path);
            if pattern.len() <= 64 && path.len() <= 256 {
                let want = reference(pattern, path.as_bytes());
                assert_eq!(Some(got), want, "glob {pattern:?} on {path:?}");
            }
        }
        Err(_) => assert_eq!(reference(pattern, path.as_bytes()), None, "glob {pattern:?} refused"),
    }
}

fn templates(data: &[u8]) {
    let (values, body) = data.split_first().map_or((0, &[][..]), |(v, b)| (*v, b));
    if let Ok(t) = Template::parse(&text(body)) {
        let out = t.render(&|v| match values % 4 {
            0 => String::new(),
            1 => "  ".into(),
            2 => format!("{v:?}"),
            _ => VARS.iter().find(|(_, x, _)| *x == v).map_or(String::new(), |(n, _, _)| format!(" {n} ")),
        });
        assert!(!out.contains("  ") && !out.starts_with(' ') && !out.ends_with(' '), "untidy: {out:?}");
    }
}

fn offsets(data: &[u8]) {
    if let Some(m) = parse_utc_offset(&text(data)) {
        assert!((-840..=840).contains(&m), "offset {m}");
    }
}

fn windows(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(12));
    let now = NOON + (i64_at(head, 0) % (200 * 365 * 86_400));
    let align = Alignment {
        utc_offset_minutes: i32::try_from(i64_at(head, 8) % 841).unwrap_or(0),
        week_start: u32::from(head.get(11).copied().unwrap_or(0) % 7),
    };
    let specs = match parse_window(&text(rest)) {
        Ok(WindowSpec::FirstUse { seconds }) => {
            assert!((1..=366 * 86_400).contains(&seconds), "window of {seconds} s");
            vec![WindowSpec::FirstUse { seconds }]
        }
        Ok(spec) => vec![spec],
        Err(_) => ["minute", "hour", "day", "week", "month"].iter().filter_map(|w| parse_window(w).ok()).collect(),
    };
    for spec in specs {
        let w = spec.window_at(now, align);
        assert!(w.contains(now) && w.length() > 0, "{spec:?} at {now} ({align:?}): {w:?}");
        let _ = spec.code();
        let _ = (copy::this_window(&spec), copy::per_window(&spec));
    }
}

fn grants(data: &[u8]) {
    let config = &configs()[2];
    let _ = admin::parse_grant(config, &text(data));
    let _ = admin::authorized(config, Some(data));
}

const NOON: i64 = 1_795_348_800;

fn times(data: &[u8]) {
    let _ = parse_rfc3339_utc(&text(data));
    let t = NOON + i64_at(data, 0) % (7_000 * 365 * 86_400);
    let written = rfc3339(t);
    if (0..=253_402_300_799).contains(&t) {
        assert_eq!(parse_rfc3339_utc(&written), Some(t), "{written}");
    }
    let _ = copy::human_duration(i64_at(data, 8));
}

fn counters(data: &[u8]) {
    let mut fixed = [0u8; 48];
    for (r, d) in fixed.iter_mut().zip(data) {
        *r = *d;
    }
    let c = counter_from_fixed_layout(&fixed);
    assert_eq!(Counter::decode(&c.encode()), Some(c), "record round trip");
    if let Some(found) = Counter::decode(data) {
        assert_eq!(&*found.encode(), data, "one encoding per counter");
    }
    let now = NOON + i64_at(data, 48) % (365 * 86_400);
    // A record as another worker (or a corrupt store) left it, read by every
    // cell of the rich config.
    for tier in &configs()[2].tiers {
        for cell in &tier.cells {
            for limits in cell.limits() {
                let align = Alignment::default();
                let _ = decide::view(Some(c), limits, now, align);
                let _ = decide::current(Some(c), limits, now, align);
                let _ = decide::pace_of(&c, limits, now);
                for cost in [1, 7, u64::MAX] {
                    let _ = decide::decide(Some(c), limits, cost, false, now, align);
                }
                let _ = decide::adjust(Some(c), c.window_start, i64_at(data, 56), limits.request_ceiling());
                let _ = decide::add_grant(Some(c), c.grant);
            }
        }
    }
    let _ = decide::reclaimable(&c, now);
    // The same bytes as a bucket of the counter table, as a damaged store or
    // another release left it: read every entry, then write a counter into it.
    let store = MemoryStore::new();
    let _ = store.set(&Layout::bucket_key(0), data, Expect::Absent);
    let table = Table::new(&store, Layout::new(32), now);
    for (key, _) in entries(data) {
        let _ = table.get(&String::from_utf8_lossy(key));
    }
    if compare_and_swap(&table, "drafts:u:fuzz", 2, |_| (Some(c.encode().to_vec()), ())).is_ok() {
        let read = table.get("drafts:u:fuzz").ok().flatten().map(|(record, _)| record);
        assert_eq!(read.as_deref(), Some(&*c.encode()), "a counter written to the table reads back");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 10 {
        0 => jwt_claims(rest),
        1 => globs(rest),
        2 => templates(rest),
        3 => offsets(rest),
        4 => windows(rest),
        5 => {
            let _ = negotiate::negotiate(Some(&text(rest)));
        }
        6 => grants(rest),
        7 => times(rest),
        8 => counters(rest),
        _ => {
            let _ = jwt::base64url_decode(&text(rest));
        }
    }
});
