//! The Redis script (core/src/redis/quota.lua) against the pure functions it
//! mirrors (decide, adjust, add_grant, and the approximate mode's add), on random sequences, in a real
//! redis-server started for the test (`make setup-redis` installs it). Stacked
//! charges (`charge_stack`) against the core's all-or-none charge in shared
//! data (`stack::charge_all`), and through the filter's own path (the call
//! `redis::stack::command` makes, the answer `redis::stack::settle` reads).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quota_core::config::{AtHard, ClassId, Config, Limits, Pace, PastSoft, Scope};
use quota_core::counter::Counter;
use quota_core::decide::{add_grant, adjust, current, decide};
use quota_core::engine::{self, Outcome, Prepared, Ticket};
use quota_core::identity::{identify, ScopeKind};
use quota_core::lease;
use quota_core::member_cap;
use quota_core::redis::stack::recompute;
use quota_core::redis::{
    by_slot, hash_tag, parse, parse_lease, parse_stack, parse_view, record, sha1_hex, Answer, Command, Ids,
    LeaseAnswer, StackAnswer, RECORD_FIELDS, REMEMBERED_S, SCRIPT,
};
use quota_core::request::{NoProperties, RequestHead};
use quota_core::stack::{charge_all, Part};
use quota_core::store::{CounterStore, Expect, MemoryStore};
use quota_core::units::MAX_UNITS;
use quota_core::usage::usage_report;
use quota_core::window::{Alignment, CalendarUnit, WindowSpec};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A redis-server of this test alone, on a Unix socket (a TCP port picked
/// free and then handed to redis-server can be taken meanwhile by another
/// test's server, whose end then breaks this one), stopped when dropped.
struct Redis {
    child: Child,
    conn: BufReader<UnixStream>,
    socket: PathBuf,
}

static SERVERS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl Redis {
    fn start() -> Redis {
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let socket = std::env::temp_dir().join(format!("quota-redis-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let path = socket.to_str().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start redis-server ({e}): run `make setup-redis`"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("redis-server did not listen on {path}: {e}"),
            }
        };
        Redis { child, conn: BufReader::new(stream), socket }
    }

    fn call(&mut self, parts: &[&[u8]]) -> Resp {
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for p in parts {
            out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        self.conn.get_mut().write_all(&out).unwrap();
        self.read()
    }

    fn read(&mut self) -> Resp {
        let mut line = String::new();
        self.conn.read_line(&mut line).unwrap();
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Resp::Simple(rest.into()),
            "-" => Resp::Error(rest.into()),
            ":" => Resp::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Resp::Bulk(None);
                }
                let mut buf = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(&mut self.conn, &mut buf).unwrap();
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                Resp::Array((0..n.max(0)).map(|_| self.read()).collect())
            }
            other => panic!("unexpected RESP type {other:?} in {line:?}"),
        }
    }

    /// Runs `command` by its SHA-1 and returns (before, after).
    fn eval(&mut self, sha: &str, command: &Command) -> (Option<Counter>, Option<Counter>) {
        let n = self.eval_numbers(sha, command);
        let (before, after) = n.split_at(RECORD_FIELDS);
        (record(before).unwrap(), record(after).unwrap())
    }

    /// Runs `command` by its SHA-1 and returns the script's answer as numbers.
    fn eval_numbers(&mut self, sha: &str, command: &Command) -> Vec<i64> {
        let keys = command.keys.len().to_string();
        let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), keys.as_bytes()];
        parts.extend(command.keys.iter().map(|k| k.as_bytes()));
        parts.extend(command.args.iter().map(|a| a.as_bytes()));
        let Resp::Array(fields) = self.call(&parts) else { panic!("no array for {command:?}") };
        fields.iter().map(|v| if let Resp::Int(i) = v { *i } else { panic!("not an int: {v:?}") }).collect()
    }
}

impl Redis {
    /// Runs a stacked charge of `counters` counters by its SHA-1 and reads
    /// its answer as the filter does (through webdis's JSON).
    fn eval_stack(&mut self, sha: &str, command: &Command, counters: usize) -> Vec<Answer> {
        self.eval_capped(sha, command, counters).counters
    }

    /// [`Redis::eval_stack`], with the member cap the script applied when
    /// the call carried one's key.
    fn eval_capped(&mut self, sha: &str, command: &Command, counters: usize) -> StackAnswer {
        let numbers = self.eval_numbers(sha, command);
        let body = format!("{{\"EVALSHA\":{}}}", serde_json::to_string(&numbers).unwrap());
        let capped = command.member_cap_key().is_some();
        parse_stack(Some(200), body.as_bytes(), counters, capped).unwrap_or_else(|e| panic!("{e:?} reading {body}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Runs a view and reads its records as the filter does.
fn view(redis: &mut Redis, sha: &str, command: &Command) -> Vec<Option<Counter>> {
    let numbers = redis.eval_numbers(sha, command);
    let body = format!("{{\"EVALSHA\":{}}}", serde_json::to_string(&numbers).unwrap());
    parse_view(Some(200), body.as_bytes(), command.keys.len()).unwrap()
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn random_limits(rng: &mut Rng) -> Limits {
    let hard = 1 + rng.below(20);
    let soft = rng.chance(50).then(|| 1 + rng.below(hard));
    let at_hard = [AtHard::Block, AtHard::Warn, AtHard::Overage, AtHard::Queue, AtHard::Degrade][rng.below(5) as usize];
    let mut warn_levels: Vec<u64> = [0.5, 0.7, 0.95].iter().map(|f| (hard as f64 * f).ceil() as u64).collect();
    warn_levels.extend(soft);
    warn_levels.retain(|l| *l < hard);
    warn_levels.sort_unstable();
    warn_levels.dedup();
    let window = match rng.below(3) {
        0 => WindowSpec::Calendar(CalendarUnit::Minute),
        // Offsets of a quarter or half hour move its boundaries.
        1 => WindowSpec::Calendar(CalendarUnit::Hour),
        _ => WindowSpec::FirstUse { seconds: 30 + rng.below(90) as i64 },
    };
    Limits {
        soft,
        hard,
        window,
        window_name: "w".into(),
        scope: Scope::User,
        past_soft: PastSoft::Warn,
        at_hard,
        warn_levels,
        confirm_above: rng.chance(30).then(|| [0.25, 0.5, 0.8][rng.below(3) as usize]),
        pace: rng.chance(40).then(|| Pace { used: [0.3, 0.5][rng.below(2) as usize], before: 0.5 }),
        degrade: None,
        overage_cap: rng.chance(60).then(|| rng.below(6)),
        queue: None,
        copy: Default::default(),
        admin_cap: false,
    }
}

#[test]
fn the_script_is_named_by_its_sha1() {
    let mut redis = Redis::start();
    let loaded = redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    assert_eq!(loaded, Resp::Bulk(Some(sha1_hex(SCRIPT.as_bytes()).into_bytes())));
}

#[test]
fn the_script_decides_as_the_core_does() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    assert!(matches!(redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]), Resp::Bulk(Some(_))));
    // Ten years ahead: no simulated window has ended in Redis's own clock, so
    // no record expires during the test.
    let start = 2_100_000_000i64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut operations = 0;
    // What the sequences exercised: refusals, confirmations asked, grants
    // spent, pace flagged, windows rolled over.
    // And windows moved to start where the previous one ended, because the
    // caller's calendar (their UTC offset changes) named an overlapping one.
    let (mut refused, mut confirm, mut from_grant, mut paced, mut rolled, mut moved, mut too_large) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut ids = Ids::new(0xC0FF_EE00_1234);
    let (mut retried, mut cancelled, mut cancelled_first) = (0, 0, 0);
    for round in 0..300 {
        let limits = random_limits(&mut rng);
        let key = format!("test:{{u:{round}}}c");
        let mut align = Alignment::default();
        let mut model: Option<Counter> = None;
        // Charges sent: id, and (window start, units) when it charged.
        let mut charges: Vec<(String, Option<(i64, u64)>)> = Vec::new();
        // Cancels sent, by charge id.
        let mut cancels: Vec<String> = Vec::new();
        // The last correction, to send again as a retry.
        let mut last_correction: Option<Command> = None;
        let mut now = start + rng.below(3600) as i64;
        for _ in 0..40 {
            now += [0, 0, 1, 5, 20, 70, 900][rng.below(7) as usize];
            if rng.chance(30) {
                let minutes = [0, 15, 30, 45, -15, -30, -45, 330, -570, 14 * 60, -12 * 60];
                align.utc_offset_minutes = minutes[rng.below(minutes.len() as u64) as usize];
            }
            let opened = |write: Option<Counter>| {
                write.filter(|w| model.map(|m| m.window_start) != Some(w.window_start)).map(|w| w.window())
            };
            let (command, expected) = match rng.below(12) {
                0..=5 => {
                    let cost = rng.below(8);
                    let confirmed = rng.chance(50);
                    let id = ids.next_id();
                    let (write, charge) = decide(model, &limits, cost, confirmed, now, align);
                    refused += usize::from(!charge.admitted);
                    confirm += usize::from(charge.needs_confirmation);
                    too_large += usize::from(charge.too_large);
                    from_grant += usize::from(charge.from_grant > 0);
                    paced += usize::from(charge.pace_flagged);
                    rolled +=
                        usize::from(model.is_some_and(|m| write.is_some_and(|w| w.window_start != m.window_start)));
                    moved += usize::from(opened(write).is_some_and(|w| w != limits.window.window_at(now, align)));
                    // A charge whose cancel arrived first charges nothing.
                    let (write, took) = if rng.chance(5) {
                        redis.eval(&sha, &Command::cancel(key.clone(), &id));
                        cancels.push(id.clone());
                        cancelled_first += 1;
                        (None, None)
                    } else {
                        let took = write.map(|w| (w.window_start, w.used - current(model, &limits, now, align).used));
                        (write, took)
                    };
                    charges.push((id.clone(), took));
                    (Command::charge(key.clone(), &limits, cost, confirmed, now, align, &id), write.or(model))
                }
                6 => {
                    // The approximate mode's sync: what `add` must do, by hand.
                    let delta = rng.below(10) as i64 - 3;
                    let mut c = current(model, &limits, now, align);
                    c.used = c.used.saturating_add_signed(delta).max(c.grant_used).min(MAX_UNITS);
                    moved += usize::from(opened(Some(c)).is_some_and(|w| w != limits.window.window_at(now, align)));
                    let command = Command::add(key.clone(), &limits, delta, now, align, &ids.next_id());
                    last_correction = Some(command.clone());
                    (command, Some(c))
                }
                7 => {
                    let window_start = match model {
                        Some(c) if rng.chance(80) => c.window_start,
                        _ => now - 1,
                    };
                    let delta = rng.below(11) as i64 - 5;
                    let most = rng.below(4);
                    let command = Command::adjust(key.clone(), window_start, delta, most, &ids.next_id());
                    last_correction = Some(command.clone());
                    (command, adjust(model, window_start, delta, most).or(model))
                }
                8 => match last_correction.clone() {
                    // A retry after a timeout: the first attempt applied, this one must not.
                    Some(again) => {
                        retried += 1;
                        (again, model)
                    }
                    None => (Command::view(vec![key.clone()]), model),
                },
                9 | 10 => {
                    // Cancels a charge sent before (or one never sent); a second cancel gives nothing back.
                    let pick = rng.below(charges.len() as u64 + 1) as usize;
                    let (id, took) = charges.get(pick).cloned().unwrap_or_else(|| (ids.next_id(), None));
                    let expected = match took {
                        Some((window_start, units)) if !cancels.contains(&id) => {
                            cancelled += 1;
                            adjust(model, window_start, -(units as i64), 0).or(model)
                        }
                        _ => model,
                    };
                    cancels.push(id.clone());
                    (Command::cancel(key.clone(), &id), expected)
                }
                _ => {
                    let units = 1 + rng.below(5);
                    (Command::grant(key.clone(), units), Some(add_grant(model, units)))
                }
            };
            if command.op() == "view" {
                let viewed = view(&mut redis, &sha, &command);
                assert_eq!(viewed, vec![model], "view (round {round})");
                operations += 1;
                continue;
            }
            let (before, after) = redis.eval(&sha, &command);
            assert_eq!(before, model, "before {command:?} (round {round})");
            assert_eq!(after, expected, "after {command:?} (round {round}, limits {limits:?})");
            model = expected;
            operations += 1;
        }
        assert_eq!(view(&mut redis, &sha, &Command::view(vec![key.clone()])), vec![model]);
    }
    assert!(retried >= 100 && cancelled >= 100 && cancelled_first >= 50, "{retried} {cancelled} {cancelled_first}");
    assert_eq!(operations, 300 * 40);
    for (what, n) in [
        ("refused", refused),
        ("confirm", confirm),
        ("grant", from_grant),
        ("pace", paced),
        ("rolled", rolled),
        ("moved", moved),
        ("too large", too_large),
    ] {
        assert!(n >= 20, "only {n} {what} cases: the sequences no longer exercise it");
    }
}

#[test]
fn records_outlive_their_window_by_its_length_unless_they_hold_grants() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let mut rng = Rng(7);
    let mut limits = random_limits(&mut rng);
    limits.window = WindowSpec::Calendar(CalendarUnit::Day);
    limits.confirm_above = None;
    let now = 2_100_000_000;
    redis.eval(&sha, &Command::charge("t:{u:a}c".into(), &limits, 1, false, now, Alignment::default(), "i.1"));
    let window = limits.window.window_at(now, Alignment::default());
    // One window length past its end: a window opened later must still see
    // where this one ended (decide::current).
    assert_eq!(redis.call(&[b"EXPIRETIME", b"t:{u:a}c"]), Resp::Int(window.end + 86_400 + 60));
    redis.eval(&sha, &Command::grant("t:{u:a}c".into(), 3));
    assert_eq!(redis.call(&[b"EXPIRETIME", b"t:{u:a}c"]), Resp::Int(-1));
    // A window moved to start at the previous end keeps its own length in the TTL.
    let later = window.end + 60;
    // UTC-00:05: at 00:01Z the local day began at 00:05Z the day before.
    let near_midnight = Alignment { utc_offset_minutes: -5, week_start: 0 };
    let (_, after) = redis.eval(
        &sha,
        &Command::charge("t:{u:b}c".into(), &limits, 1, false, window.end - 3600, Alignment::default(), "i.2"),
    );
    assert_eq!(after.map(|c| c.window_end), Some(window.end));
    let (_, after) =
        redis.eval(&sha, &Command::charge("t:{u:b}c".into(), &limits, 1, false, later, near_midnight, "i.3"));
    assert_eq!(after.map(|c| (c.window_start, c.window_end)), Some((window.end, window.end + 86_400)));
    assert_eq!(redis.call(&[b"EXPIRETIME", b"t:{u:b}c"]), Resp::Int(window.end + 2 * 86_400 + 60));
}

#[test]
fn an_unknown_operation_is_an_error() {
    let mut redis = Redis::start();
    let answer = redis.call(&[b"EVAL", SCRIPT.as_bytes(), b"1", b"k", b"drop"]);
    assert!(matches!(answer, Resp::Error(ref e) if e.contains("unknown operation")), "{answer:?}");
}

/// The script's answer as webdis carries it to the filter, read by the
/// filter's own parser: it must never meet a number it cannot read.
fn through_webdis(numbers: &[i64]) -> (Option<Counter>, Option<Counter>) {
    let body = format!("{{\"EVALSHA\":{}}}", serde_json::to_string(numbers).unwrap());
    let answer = parse(Some(200), body.as_bytes()).unwrap_or_else(|e| panic!("{e:?} reading {body}"));
    (answer.before, answer.after)
}

/// A day cell with `hard` units, `at_hard` past it, no confirmation and a pace rule.
fn bound_limits(hard: u64, at_hard: AtHard) -> Limits {
    let warn_levels = [0.5, 0.95].iter().map(|f| (hard as f64 * f).ceil() as u64).filter(|l| *l < hard).collect();
    Limits {
        soft: None,
        hard,
        window: WindowSpec::Calendar(CalendarUnit::Day),
        window_name: "day".into(),
        scope: Scope::User,
        past_soft: PastSoft::Warn,
        at_hard,
        warn_levels,
        confirm_above: None,
        pace: Some(Pace { used: 0.5, before: 0.9 }),
        degrade: None,
        overage_cap: None,
        queue: None,
        copy: Default::default(),
        admin_cap: false,
    }
}

#[test]
fn a_counter_driven_to_the_bound_reads_back() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let align = Alignment::default();
    let now = 2_100_000_000;
    let warn = bound_limits(MAX_UNITS, AtHard::Warn);
    let block = bound_limits(MAX_UNITS - 1, AtHard::Block);
    let key = "t:{u:bound}c".to_string();
    let mut model: Option<Counter> = None;
    let charge = |model: Option<Counter>, limits: &Limits, cost: u64| {
        let (write, c) = decide(model, limits, cost, false, now, align);
        (Command::charge(key.clone(), limits, cost, false, now, align, &format!("b.{cost}")), write.or(model), c)
    };
    let mut steps = Vec::new();
    // The issue's attack on a cell as large as a config may set: all of it, once.
    let (command, next, c) = charge(model, &warn, u64::MAX);
    assert!(c.admitted && c.cost == MAX_UNITS);
    steps.push((command, next));
    model = next;
    // Past the hard limit (warn): the counter stays at the bound.
    let (command, next, c) = charge(model, &warn, 5);
    assert!(c.admitted);
    assert_eq!(next.map(|n| n.used), Some(MAX_UNITS));
    steps.push((command, next));
    model = next;
    for units in [u64::MAX, 1] {
        let next = Some(add_grant(model, units));
        steps.push((Command::grant(key.clone(), units), next));
        model = next;
    }
    assert_eq!(model.map(|m| m.grant), Some(MAX_UNITS));
    let start = model.unwrap().window_start;
    for delta in [i64::MAX, -3, 2, i64::MIN] {
        let next = adjust(model, start, delta, u64::MAX).or(model);
        steps.push((Command::adjust(key.clone(), start, delta, u64::MAX, &format!("a.{delta}")), next));
        model = next;
    }
    // Spend the grant past the plan: a request larger than the block cell's ceiling fits.
    let (command, next, c) = charge(model, &block, MAX_UNITS);
    assert!(c.admitted && !c.too_large);
    steps.push((command, next));
    model = next;
    let mut approximate = current(model, &warn, now, align);
    approximate.used = approximate.used.saturating_add_signed(i64::MAX).max(approximate.grant_used).min(MAX_UNITS);
    steps.push((Command::add(key.clone(), &warn, i64::MAX, now, align, "s.1"), Some(approximate)));
    let mut replayed = None;
    for (command, expected) in steps {
        let numbers = redis.eval_numbers(&sha, &command);
        let (before, after) = through_webdis(&numbers);
        assert_eq!(before, replayed, "before {command:?}");
        assert_eq!(after, expected, "after {command:?}");
        replayed = expected;
    }
    assert_eq!(view(&mut redis, &sha, &Command::view(vec![key.clone()])), vec![replayed]);
    assert_eq!(replayed.map(|c| c.used), Some(MAX_UNITS));
}

#[test]
fn a_request_past_the_ceiling_is_refused_by_the_script_as_by_the_core() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let align = Alignment::default();
    let now = 2_100_000_000;
    let mut overage = bound_limits(20_000, AtHard::Overage);
    let key = "t:{u:huge}c".to_string();
    for cap in [None, Some(5_000)] {
        overage.overage_cap = cap;
        for cost in [u64::MAX, MAX_UNITS, 20_001, 25_000, 25_001] {
            let (write, charge) = decide(None, &overage, cost, false, now, align);
            let too_large = cost > overage.request_ceiling();
            assert_eq!((charge.too_large, charge.admitted), (too_large, !too_large), "{cost} with cap {cap:?}");
            let charge = Command::charge(key.clone(), &overage, cost, false, now, align, &format!("o.{cost}.{cap:?}"));
            let (before, after) = redis.eval(&sha, &charge);
            assert_eq!((before, after), (None, write), "{cost} with cap {cap:?}");
            redis.call(&[b"DEL", key.as_bytes()]);
        }
    }
    // A grant that makes a large request fit.
    let granted = add_grant(None, 100_000);
    redis.eval(&sha, &Command::grant(key.clone(), 100_000));
    let (write, charge) = decide(Some(granted), &overage, 75_000, false, now, align);
    assert!(charge.admitted && charge.from_grant == 55_000);
    let (_, after) = redis.eval(&sha, &Command::charge(key.clone(), &overage, 75_000, false, now, align, "o.last"));
    assert_eq!(after, write);
}

#[test]
fn a_record_written_past_the_bound_reads_at_the_bound() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let align = Alignment::default();
    let now = 2_100_000_000;
    let limits = bound_limits(10, AtHard::Warn);
    let window = limits.window.window_at(now, align);
    // What the script wrote before counts were bounded, for a charge of u64::MAX.
    let (code, start, end) = (limits.window.code().to_string(), window.start.to_string(), window.end.to_string());
    let fields: [&[u8]; 16] = [
        b"c",
        code.as_bytes(),
        b"s",
        start.as_bytes(),
        b"e",
        end.as_bytes(),
        b"u",
        b"1.8446744073709552e+19",
        b"g",
        b"0",
        b"b",
        b"1e+300",
        b"w",
        b"0",
        b"f",
        b"0",
    ];
    let mut parts: Vec<&[u8]> = vec![b"HSET", b"t:{u:old}c"];
    parts.extend(fields);
    redis.call(&parts);
    let stored = Counter {
        window_code: limits.window.code(),
        window_start: window.start,
        window_end: window.end,
        used: u64::MAX,
        grant: u64::MAX,
        ..Counter::default()
    };
    assert_eq!(view(&mut redis, &sha, &Command::view(vec!["t:{u:old}c".into()])), vec![Some(stored.bounded())]);
    let (write, _) = decide(Some(stored), &limits, 3, false, now, align);
    let charged = Command::charge("t:{u:old}c".into(), &limits, 3, false, now, align, "old.1");
    let (_, after) = through_webdis(&redis.eval_numbers(&sha, &charged));
    assert_eq!(after, write);
    assert_eq!(after.map(|c| (c.used, c.grant)), Some((MAX_UNITS, MAX_UNITS - 3)));
}

/// A day cell of 10, blocking at the wall.
fn day_limits() -> Limits {
    bound_limits(10, AtHard::Block)
}

fn used(redis: &mut Redis, sha: &str, key: &str) -> u64 {
    view(redis, sha, &Command::view(vec![key.to_string()]))[0].map_or(0, |c| c.used)
}

#[test]
fn a_correction_sent_twice_applies_once() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (now, align, key) = (2_100_000_000, Alignment::default(), "t:{u:r}c");
    let limits = day_limits();
    for i in 0..5 {
        redis.eval(&sha, &Command::charge(key.into(), &limits, 1, false, now, align, &format!("c.{i}")));
    }
    let start = limits.window.window_at(now, align).start;
    let refund = Command::adjust(key.into(), start, -2, 0, "v.9");
    // The first attempt applied but its answer was lost; the retry changes nothing.
    let (_, after) = redis.eval(&sha, &refund);
    assert_eq!(after.map(|c| c.used), Some(3));
    let (before, after) = redis.eval(&sha, &refund);
    assert_eq!((before, after), (after, after));
    assert_eq!(used(&mut redis, &sha, key), 3);
    // Another correction (another id) applies.
    redis.eval(&sha, &Command::adjust(key.into(), start, -2, 0, "v.10"));
    assert_eq!(used(&mut redis, &sha, key), 1);
    // The approximate mode's sync too.
    let sync = Command::add(key.into(), &limits, 4, now, align, "s.1");
    redis.eval(&sha, &sync);
    redis.eval(&sha, &sync);
    assert_eq!(used(&mut redis, &sha, key), 5);
    // The id is remembered beside the counter, in its slot, for REMEMBER seconds.
    let ttl = redis.call(&[b"TTL", b"t:{u:r}c#v.9"]);
    assert!(matches!(ttl, Resp::Int(t) if t > REMEMBERED_S - 5 && t <= REMEMBERED_S), "{ttl:?}");
}

#[test]
fn a_cancelled_charge_gives_its_units_back_once_in_either_order() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (now, align, key) = (2_100_000_000, Alignment::default(), "t:{u:k}c");
    let limits = day_limits();
    redis.eval(&sha, &Command::charge(key.into(), &limits, 2, false, now, align, "c.1"));
    redis.eval(&sha, &Command::charge(key.into(), &limits, 3, false, now, align, "c.2"));
    assert_eq!(used(&mut redis, &sha, key), 5);
    // The answer to c.2 never came: its cancel gives back its 3 units, once.
    redis.eval(&sha, &Command::cancel(key.into(), "c.2"));
    assert_eq!(used(&mut redis, &sha, key), 2);
    redis.eval(&sha, &Command::cancel(key.into(), "c.2"));
    assert_eq!(used(&mut redis, &sha, key), 2, "a retried cancel");
    // A cancel that overtook its charge: the charge, when it comes, charges nothing.
    redis.eval(&sha, &Command::cancel(key.into(), "c.3"));
    let (before, after) = redis.eval(&sha, &Command::charge(key.into(), &limits, 4, false, now, align, "c.3"));
    assert_eq!(before, after);
    assert_eq!(used(&mut redis, &sha, key), 2);
    // A refused charge has nothing to give back.
    redis.eval(&sha, &Command::charge(key.into(), &limits, 8, false, now, align, "c.4"));
    assert_eq!(used(&mut redis, &sha, key), 10);
    let (_, refused) = redis.eval(&sha, &Command::charge(key.into(), &limits, 1, false, now, align, "c.5"));
    assert_eq!(refused.map(|c| c.used), Some(10));
    redis.eval(&sha, &Command::cancel(key.into(), "c.5"));
    assert_eq!(used(&mut redis, &sha, key), 10);
    // Grant units a cancelled charge spent go back to the balance.
    redis.eval(&sha, &Command::grant(key.into(), 5));
    let (_, spent) = redis.eval(&sha, &Command::charge(key.into(), &limits, 3, false, now, align, "c.6"));
    assert_eq!(spent.map(|c| (c.used, c.grant_used, c.grant)), Some((13, 3, 2)));
    let (_, back) = redis.eval(&sha, &Command::cancel(key.into(), "c.6"));
    assert_eq!(back.map(|c| (c.used, c.grant_used, c.grant)), Some((10, 0, 5)));
    // A charge of a window that has ended is not taken back from the next one.
    let next_day = now + 86_400;
    redis.eval(&sha, &Command::charge(key.into(), &limits, 1, false, next_day, align, "c.7"));
    redis.eval(&sha, &Command::cancel(key.into(), "c.4"));
    assert_eq!(used(&mut redis, &sha, key), 1);
}

#[test]
fn a_view_reads_every_key_of_a_slot_in_one_call() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (now, align) = (2_100_000_000, Alignment::default());
    let limits = day_limits();
    redis.eval(&sha, &Command::charge("t:{u:v}a".into(), &limits, 2, false, now, align, "c.1"));
    redis.eval(&sha, &Command::charge("t:{u:v}c".into(), &limits, 7, false, now, align, "c.2"));
    let keys: Vec<String> = ["t:{u:v}a", "t:{u:v}b", "t:{u:v}c"].iter().map(|k| k.to_string()).collect();
    let records = view(&mut redis, &sha, &Command::view(keys));
    let used: Vec<Option<u64>> = records.iter().map(|r| r.map(|c| c.used)).collect();
    assert_eq!(used, [Some(2), None, Some(7)]);
}

/// A config for the core's stacked charge in shared data, which reads only
/// how many compare-and-swap attempts to make from it.
fn shared_data_config() -> Config {
    let doc = r#"{"identity": {"user": [{"header": "x-user-id"}], "default_tier": "t"},
        "classes": [{"name": "c"}], "tiers": {"t": {"limits": {"c": {"hard": 1, "window": "day"}}}}}"#;
    Config::from_json(doc.as_bytes()).unwrap()
}

/// The core's stacked charge ([`charge_all`]) in a shared-data store that
/// holds `records`: how it went, and the records it left.
#[allow(clippy::too_many_arguments)]
fn charge_in_shared_data(
    config: &Config,
    keys: &[String],
    limits: &[Limits],
    records: &[Option<Counter>],
    cost: u64,
    confirmed: bool,
    now: i64,
    align: Alignment,
) -> (quota_core::stack::Stacked, Vec<Option<Counter>>) {
    let store = MemoryStore::new();
    for (key, record) in keys.iter().zip(records) {
        if let Some(c) = record {
            store.set(key, &c.encode(), Expect::Absent).unwrap();
        }
    }
    let parts: Vec<Part<'_>> = keys.iter().zip(limits).map(|(key, limits)| Part { key, limits }).collect();
    let stacked = charge_all(config, &parts, cost, confirmed, now * 1000, align, &store);
    let left = keys.iter().map(|k| store.get(k).unwrap().and_then(|(bytes, _)| Counter::decode(&bytes))).collect();
    (stacked, left)
}

/// What a charge took from one counter: its window's start and the units.
type Took = Option<(i64, u64)>;

#[test]
fn the_script_charges_a_stack_all_or_none_as_the_core_does() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    assert!(matches!(redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]), Resp::Bulk(Some(_))));
    let config = shared_data_config();
    let start = 2_100_000_000i64;
    let mut rng = Rng(0x5EED_57AC_CAFE_0001);
    let mut ids = Ids::new(0x57AC_0000_0001);
    // What the sequences exercised.
    let (mut admitted, mut refused_first, mut refused_later, mut refused_new) = (0, 0, 0, 0);
    let (mut cancelled_first, mut cancelled, mut corrected, mut granted, mut rolled) = (0, 0, 0, 0, 0);
    let mut operations = 0;
    for round in 0..200 {
        let n = 2 + rng.below(2) as usize;
        let limits: Vec<Limits> = (0..n).map(|_| random_limits(&mut rng)).collect();
        // One hash tag, as a stacked cell's counters have.
        let keys: Vec<String> = (0..n).map(|i| format!("test:{{w:{round}}}c@{i}")).collect();
        assert!(keys.iter().all(|k| hash_tag(k) == hash_tag(&keys[0])));
        let counters: Vec<(String, &Limits)> = keys.iter().cloned().zip(limits.iter()).collect();
        let mut align = Alignment::default();
        let mut model: Vec<Option<Counter>> = vec![None; n];
        // Stacked charges sent: id, and per counter (window start, units) when it charged.
        let mut charges: Vec<(String, Vec<Took>)> = Vec::new();
        // Cancels sent: (charge id, counter).
        let mut cancels: Vec<(String, usize)> = Vec::new();
        let mut now = start + rng.below(3600) as i64;
        for _ in 0..40 {
            now += [0, 0, 1, 5, 20, 70, 900][rng.below(7) as usize];
            if rng.chance(30) {
                let minutes = [0, 15, 30, 45, -15, -30, -45, 330, -570, 14 * 60, -12 * 60];
                align.utc_offset_minutes = minutes[rng.below(minutes.len() as u64) as usize];
            }
            operations += 1;
            let c = rng.below(n as u64) as usize;
            match rng.below(10) {
                0..=5 => {
                    let cost = rng.below(8);
                    let confirmed = rng.chance(50);
                    let id = ids.next_id();
                    let command = Command::charge_stack(&counters, cost, confirmed, now, align, &id);
                    assert_eq!(
                        (command.op(), command.id(), command.keys.len()),
                        ("charge_stack", Some(id.as_str()), 2 * n)
                    );
                    // What the filter recomputes from the records before...
                    let before: Vec<(Option<Counter>, &Limits)> = model.iter().copied().zip(limits.iter()).collect();
                    let r = recompute(&before, cost, confirmed, now, align);
                    // ...is what the core decides in shared data.
                    let (stacked, left) =
                        charge_in_shared_data(&config, &keys, &limits, &model, cost, confirmed, now, align);
                    let core: Vec<_> = stacked.charges.iter().map(|c| c.clone().unwrap()).collect();
                    assert_eq!(r.charges, core, "round {round}: the charges, up to the first refusal");
                    assert_eq!((r.admitted, r.refused_by()), (stacked.admitted, stacked.refused_by()), "round {round}");
                    if r.admitted {
                        assert_eq!(left, r.after, "round {round}: shared data holds what the script must write");
                        admitted += 1;
                        rolled += usize::from(
                            model
                                .iter()
                                .zip(&r.after)
                                .any(|(m, a)| m.is_some_and(|m| a.is_some_and(|a| a.window_start != m.window_start))),
                        );
                    } else {
                        assert_eq!(r.after, model, "round {round}: a refusal writes nothing");
                        // Shared data gives each charge back: the exact record where
                        // there was one, an emptied one where there was none.
                        for (k, (l, m)) in left.iter().zip(&model).enumerate() {
                            match m {
                                Some(_) => assert_eq!(l, m, "round {round}, counter {k}"),
                                None => assert_eq!(l.map_or(0, |l| l.used), 0, "round {round}, counter {k}"),
                            }
                        }
                        if r.refused_by() == Some(0) {
                            refused_first += 1;
                        } else {
                            refused_later += 1;
                            refused_new += usize::from(model.iter().take(r.charges.len() - 1).any(Option::is_none));
                        }
                    }
                    // A cancel that reached Redis first, on any counter: nothing is charged.
                    let cancel_first = rng.chance(6);
                    if cancel_first {
                        let (b, a) = redis.eval(&sha, &Command::cancel(keys[c].clone(), &id));
                        assert_eq!((b, a), (model[c], model[c]));
                        cancels.push((id.clone(), c));
                        cancelled_first += 1;
                    }
                    let answers = redis.eval_stack(&sha, &command, n);
                    let befores: Vec<Option<Counter>> = answers.iter().map(|a| a.before).collect();
                    let afters: Vec<Option<Counter>> = answers.iter().map(|a| a.after).collect();
                    assert_eq!(befores, model, "round {round}: before {command:?}");
                    let expected = if cancel_first { model.clone() } else { r.after.clone() };
                    assert_eq!(afters, expected, "round {round}: after {command:?} (limits {limits:?})");
                    let took = model
                        .iter()
                        .zip(&expected)
                        .zip(&limits)
                        .map(|((m, e), l)| match e {
                            Some(e) if r.admitted && !cancel_first => {
                                Some((e.window_start, e.used - current(*m, l, now, align).used))
                            }
                            _ => None,
                        })
                        .collect();
                    charges.push((id, took));
                    if !r.admitted || cancel_first {
                        // Stored as it was, every counter.
                        assert_eq!(view(&mut redis, &sha, &Command::view(keys.clone())), model, "round {round}");
                    }
                    model = expected;
                }
                6 => {
                    let window_start = match model[c] {
                        Some(m) if rng.chance(80) => m.window_start,
                        _ => now - 1,
                    };
                    let (delta, most) = (rng.below(11) as i64 - 5, rng.below(4));
                    let expected = adjust(model[c], window_start, delta, most).or(model[c]);
                    corrected += usize::from(expected != model[c]);
                    let command = Command::adjust(keys[c].clone(), window_start, delta, most, &ids.next_id());
                    let (before, after) = redis.eval(&sha, &command);
                    assert_eq!((before, after), (model[c], expected), "round {round}: {command:?}");
                    model[c] = expected;
                }
                7 => {
                    let units = 1 + rng.below(5);
                    let expected = Some(add_grant(model[c], units));
                    let (before, after) = redis.eval(&sha, &Command::grant(keys[c].clone(), units));
                    assert_eq!((before, after), (model[c], expected), "round {round}");
                    granted += 1;
                    model[c] = expected;
                }
                _ => {
                    // One counter's cancel of a stacked charge sent before (or of
                    // one never sent): its units back on that counter, once.
                    let pick = rng.below(charges.len() as u64 + 1) as usize;
                    let (id, took) = charges.get(pick).cloned().unwrap_or_else(|| (ids.next_id(), vec![None; n]));
                    let expected = match took[c] {
                        Some((window_start, units)) if !cancels.contains(&(id.clone(), c)) => {
                            adjust(model[c], window_start, -(units as i64), 0).or(model[c])
                        }
                        _ => model[c],
                    };
                    cancelled += usize::from(expected != model[c]);
                    cancels.push((id.clone(), c));
                    let (before, after) = redis.eval(&sha, &Command::cancel(keys[c].clone(), &id));
                    assert_eq!((before, after), (model[c], expected), "round {round}: cancel {id} on {c}");
                    model[c] = expected;
                }
            }
        }
        assert_eq!(view(&mut redis, &sha, &Command::view(keys.clone())), model, "round {round}");
    }
    assert_eq!(operations, 200 * 40);
    for (what, count) in [
        ("admitted", admitted),
        ("refused by the first counter", refused_first),
        ("refused by a later counter", refused_later),
        ("refused after charging a new counter", refused_new),
        ("cancelled first", cancelled_first),
        ("cancelled", cancelled),
        ("corrected", corrected),
        ("granted", granted),
        ("rolled", rolled),
    ] {
        assert!(count >= 20, "only {count} {what} cases: the sequences no longer exercise it");
    }
}

#[test]
fn a_stacked_charge_is_given_back_counter_by_counter_once_in_either_order() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (now, align) = (2_100_000_000, Alignment::default());
    let (member, pool) = (bound_limits(4, AtHard::Block), bound_limits(6, AtHard::Block));
    let keys = ["t:{w:acme}c@u\u{1f}u:ann".to_string(), "t:{w:acme}c@w".to_string()];
    let counters = [(keys[0].clone(), &member), (keys[1].clone(), &pool)];
    let used = |redis: &mut Redis| -> Vec<u64> {
        view(redis, &sha, &Command::view(keys.to_vec())).iter().map(|c| c.map_or(0, |c| c.used)).collect()
    };
    let charge = |redis: &mut Redis, cost, id: &str| {
        redis.eval_stack(&sha, &Command::charge_stack(&counters, cost, false, now, align, id), 2)
    };
    charge(&mut redis, 2, "s.1");
    charge(&mut redis, 1, "s.2");
    assert_eq!(used(&mut redis), [3, 3]);
    // Both counters remember what each charge took, for REMEMBER seconds.
    for key in &keys {
        let ttl = redis.call(&[b"TTL", format!("{key}#s.2").as_bytes()]);
        assert!(matches!(ttl, Resp::Int(t) if t > REMEMBERED_S - 5 && t <= REMEMBERED_S), "{ttl:?}");
        let window = member.window.window_at(now, align);
        assert_eq!(redis.call(&[b"EXPIRETIME", key.as_bytes()]), Resp::Int(window.end + 86_400 + 60));
    }
    // s.2's answer never came: one cancel per counter gives back its unit there, once.
    redis.eval(&sha, &Command::cancel(keys[1].clone(), "s.2"));
    assert_eq!(used(&mut redis), [3, 2]);
    redis.eval(&sha, &Command::cancel(keys[1].clone(), "s.2"));
    redis.eval(&sha, &Command::cancel(keys[0].clone(), "s.2"));
    redis.eval(&sha, &Command::cancel(keys[0].clone(), "s.2"));
    assert_eq!(used(&mut redis), [2, 2]);
    // A cancel that overtook its charge, on one counter only: nothing charged anywhere.
    redis.eval(&sha, &Command::cancel(keys[1].clone(), "s.3"));
    let answers = charge(&mut redis, 1, "s.3");
    assert!(answers.iter().all(|a| a.before == a.after), "{answers:?}");
    redis.eval(&sha, &Command::cancel(keys[0].clone(), "s.3"));
    assert_eq!(used(&mut redis), [2, 2]);
    // Refused by the member's cap (2 + 3 > 4): the pool, which had room, is untouched too.
    let answers = charge(&mut redis, 3, "s.4");
    assert!(answers.iter().all(|a| a.before == a.after), "{answers:?}");
    assert_eq!(redis.call(&[b"EXISTS", format!("{}#s.4", keys[1]).as_bytes()]), Resp::Int(0), "no marker either");
    redis.eval(&sha, &Command::cancel(keys[1].clone(), "s.4"));
    assert_eq!(used(&mut redis), [2, 2]);
    // What it takes to fill the member's cap fits: both charged.
    charge(&mut redis, 2, "s.5");
    assert_eq!(used(&mut redis), [4, 4]);
}

#[test]
fn a_malformed_stacked_charge_is_an_error_that_writes_nothing() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (now, align) = (2_100_000_000, Alignment::default());
    let limits = day_limits();
    let counters = [("t:{w:m}a".to_string(), &limits), ("t:{w:m}b".to_string(), &limits)];
    let good = Command::charge_stack(&counters, 1, false, now, align, "m.1");
    let run = |redis: &mut Redis, keys: &[String], args: &[String]| {
        let n = keys.len().to_string();
        let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), n.as_bytes()];
        parts.extend(keys.iter().map(|k| k.as_bytes()));
        parts.extend(args.iter().map(|a| a.as_bytes()));
        redis.call(&parts)
    };
    // A marker missing, a limit's arguments cut short, one counter's too many.
    let short = &good.args[..good.args.len() - 1];
    let mut long = good.args.clone();
    long.push("7".into());
    for (keys, args, why) in [
        (&good.keys[..3], &good.args[..], "a counter and its marker"),
        (&good.keys[..], short, "malformed limit arguments for counter 2"),
        (&good.keys[..], &long[..], "more limit arguments than counters"),
        (&good.keys[..2], &good.args[..], "more limit arguments than counters"),
    ] {
        let answer = run(&mut redis, keys, args);
        assert!(matches!(&answer, Resp::Error(e) if e.contains(why)), "{why}: {answer:?}");
    }
    let single = Command::charge("t:{w:m}a".into(), &limits, 1, false, now, align, "m.2");
    let answer = run(&mut redis, &single.keys, &single.args[..single.args.len() - 1]);
    assert!(matches!(&answer, Resp::Error(e) if e.contains("malformed charge arguments")), "{answer:?}");
    assert_eq!(view(&mut redis, &sha, &Command::view(good.keys.iter().step_by(2).cloned().collect())), [None, None]);
    // The well-formed call charges both.
    let answers = redis.eval_stack(&sha, &good, 2);
    assert!(answers.iter().all(|a| a.after.map(|c| c.used) == Some(1)), "{answers:?}");
}

/// A team plan: drafts are a workspace's pool of `pool` a day with at most
/// `member` per member; counters in Redis (exact) or in shared data.
fn team_config(pool: u64, member: u64, redis: bool) -> Config {
    let counters = if redis {
        r#", "counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "t:"}}"#
    } else {
        ""
    };
    let doc = format!(
        r#"{{
            "identity": {{"user": [{{"header": "x-user-id"}}], "workspace": [{{"header": "x-workspace-id"}}], "default_tier": "team"}},
            "classes": [{{"name": "drafts"}}],
            "tiers": {{"team": {{"limits": {{"drafts": [
                {{"scope": "workspace", "hard": {pool}, "window": "day", "warn_at": [0.5, 0.9]}},
                {{"scope": "user", "hard": {member}, "window": "day"}}
            ]}}}}}}{counters}
        }}"#
    );
    Config::from_json(doc.as_bytes()).unwrap()
}

#[test]
fn a_team_pool_in_redis_admits_exactly_its_limits_and_decides_as_shared_data_does() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (remote, local) = (team_config(30, 5, true), team_config(30, 5, false));
    let store = MemoryStore::new();
    let now_ms = 2_100_000_000_000;
    let mut ids = Ids::new(0x7EA4);
    let callers = |config: &Config| -> Vec<_> {
        (0..7)
            .map(|i| {
                let user = format!("m{i}");
                let head = RequestHead::new(vec![
                    ("x-user-id".into(), user.into_bytes()),
                    ("x-workspace-id".into(), b"acme".to_vec()),
                ]);
                identify(config, &head, &NoProperties).unwrap()
            })
            .collect()
    };
    let (remote_callers, local_callers) = (callers(&remote), callers(&local));
    let mut admitted = [0u64; 7];
    let (mut admissions, mut refunded) = (0, 0);
    let mut refusals = Vec::new();
    for round in 0..12 {
        for m in 0..7 {
            let ticket = match engine::prepare(&remote, &remote_callers[m], ClassId(0), 1, false, now_ms) {
                Prepared::Charge(t) => t,
                other => panic!("{other:?}"),
            };
            assert_eq!(ticket.stack.len(), 2);
            let command = quota_core::redis::stack::command(&remote, &ticket, &ids.next_id()).unwrap();
            let answers = redis.eval_stack(&sha, &command, 2);
            let settled = quota_core::redis::stack::settle(&remote, ticket, Ok(answers.into()));
            assert!(settled.mismatches.is_empty(), "round {round}, member {m}: {settled:?}");
            let d = settled.decision;
            // The same request in shared data: the same decision.
            let shared = engine::charge(&local, &local_callers[m], ClassId(0), 1, false, now_ms, &store);
            assert_eq!((d.limit, d.scope, &d.outcome), (shared.limit, shared.scope, &shared.outcome), "round {round}");
            let held = |d: &engine::Decision| d.others.iter().map(|h| (h.limit, h.scope, h.usage)).collect::<Vec<_>>();
            assert_eq!(held(&d), held(&shared));
            if !d.admitted() {
                refusals.push((d.limit, d.scope));
                continue;
            }
            admitted[m] += 1;
            admissions += 1;
            // Every seventh admitted request is refunded: one adjust per counter.
            if admissions % 7 == 0 {
                let charged = d.charged();
                assert_eq!(charged.len(), 2);
                for (key, _, window_start) in charged {
                    let (_, after) =
                        redis.eval(&sha, &Command::adjust(key.into(), window_start, -1, 0, &ids.next_id()));
                    assert!(after.is_some());
                }
                for (key, _, window_start) in shared.charged() {
                    engine::correct(&local, key, window_start, -1, 0, &store).unwrap();
                }
                admitted[m] -= 1;
                refunded += 1;
            }
        }
    }
    assert!(refunded >= 4, "{refunded}");
    assert_eq!(admitted.iter().sum::<u64>(), 30, "the pool fills exactly: {admitted:?}");
    assert!(admitted.iter().all(|n| *n <= 5), "no member past their cap: {admitted:?}");
    assert!(refusals.contains(&(1, ScopeKind::User)) && refusals.contains(&(0, ScopeKind::Workspace)), "{refusals:?}");
    // Redis holds what the members were admitted.
    let t = match engine::prepare(&remote, &remote_callers[0], ClassId(0), 1, false, now_ms) {
        Prepared::Charge(t) => t,
        other => panic!("{other:?}"),
    };
    let records = view(&mut redis, &sha, &Command::view(t.stack.iter().map(|(_, _, k)| k.clone()).collect()));
    assert_eq!(records.iter().map(|r| r.map_or(0, |c| c.used)).collect::<Vec<_>>(), vec![admitted[0], 30]);
    assert!(
        matches!(engine::charge(&local, &local_callers[0], ClassId(0), 1, false, now_ms, &store).outcome, Outcome::Charged(c) if !c.admitted)
    );
}

/// A team plan drawn at random: drafts stack a workspace's pool of the day,
/// a member's limit an admin may cap (of the day or the hour, with random
/// warning levels, soft limit, behaviour past it, confirmation and pace)
/// and, sometimes, a member's weekly limit. Counters in shared data: the
/// Redis twin adds `counters` ([`in_redis`]).
fn capped_team(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    let pool = 4 + rng.below(40);
    let hard = 1 + rng.below(pool);
    let warn_at: Vec<f64> =
        [0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95].iter().copied().filter(|_| rng.chance(40)).collect();
    let window = if rng.chance(50) { "day" } else { "hour" };
    let mut member = json!({"scope": "user", "hard": hard, "window": window, "admin_cap": true, "warn_at": warn_at});
    if hard > 1 && rng.chance(40) {
        member["soft"] = json!(1 + rng.below(hard - 1));
        if rng.chance(50) {
            member["past_soft"] = json!("degrade");
            member["degrade"] = json!({"model": "mini"});
        }
    }
    match rng.below(3) {
        0 => {}
        1 => member["at_hard"] = json!("warn"),
        _ => {
            member["at_hard"] = json!("overage");
            member["overage"] = json!({"cap": 1 + rng.below(3)});
        }
    }
    if rng.chance(25) {
        member["confirm_above"] = json!(0.5);
    }
    if rng.chance(25) {
        member["pace"] = json!({"used": 0.5, "before": 0.5});
    }
    let mut stack = vec![json!({"scope": "workspace", "hard": pool, "window": "day", "warn_at": [0.5]}), member];
    if rng.chance(40) {
        stack.push(json!({"scope": "user", "hard": 1 + rng.below(3 * pool), "window": "week"}));
    }
    json!({
        "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}], "default_tier": "team"},
        "classes": [{"name": "drafts"}],
        "admin": {"path": "/quota/admin", "secret": "s3cret-s3cret-s3cret-s3cret"},
        "tiers": {"team": {"limits": {"drafts": stack}}}
    })
}

/// `doc` with its counters in Redis (exact).
fn in_redis(doc: &serde_json::Value) -> Config {
    let mut doc = doc.clone();
    doc["counters"] = serde_json::json!({"store": "redis", "redis": {"cluster": "redis", "key_prefix": "t:"}});
    Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {doc}"))
}

/// A shared-data store holding `records` under `keys`, and the member cap
/// `cap` at `cap_key` (written as the admin endpoint writes it there).
fn shared_data_with(
    config: &Config,
    keys: &[String],
    records: &[Option<Counter>],
    cap_key: &str,
    cap: Option<u64>,
) -> MemoryStore {
    let store = MemoryStore::new();
    for (key, record) in keys.iter().zip(records) {
        if let Some(c) = record {
            store.set(key, &c.encode(), Expect::Absent).unwrap();
        }
    }
    if cap.is_some() {
        member_cap::write(config, &store, cap_key, cap).unwrap();
    }
    store
}

fn ticket_of(
    config: &Config,
    caller: &quota_core::identity::Caller,
    cost: u64,
    confirmed: bool,
    now_ms: i64,
) -> Ticket {
    match engine::prepare(config, caller, ClassId(0), cost, confirmed, now_ms) {
        Prepared::Charge(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_cap_in_redis_decides_as_it_does_in_shared_data() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let mut rng = Rng(0x00CA_950F_7EA4_0001);
    let mut ids = Ids::new(0xCA95);
    // What the sequences exercised.
    let (mut charged_capped, mut refused_by_cap, mut past_ceiling, mut warned_capped) = (0, 0, 0, 0);
    let (mut set, mut cleared, mut uncapped, mut reports) = (0, 0, 0, 0);
    for round in 0..80 {
        let doc = capped_team(&mut rng);
        let local = Config::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {doc}"));
        let remote = in_redis(&doc);
        let stack = local.cell(local.identity.default_tier, ClassId(0)).unwrap().limits();
        let ceiling = member_cap::ceiling(stack).unwrap();
        let capped_limit = stack.iter().position(|l| l.admin_cap).unwrap();
        let workspace = format!("ws{round}");
        let members = ["ann", "bo"];
        let callers = |config: &Config| {
            members.map(|m| {
                let head = RequestHead::new(vec![
                    ("x-user-id".into(), m.as_bytes().to_vec()),
                    ("x-workspace-id".into(), workspace.as_bytes().to_vec()),
                ]);
                identify(config, &head, &NoProperties).unwrap()
            })
        };
        let (remote_callers, local_callers) = (callers(&remote), callers(&local));
        let mut caps: [Option<u64>; 2] = [None, None];
        // What Redis holds, by key.
        let mut model: HashMap<String, Option<Counter>> = HashMap::new();
        let mut now_ms = 2_100_000_000_000 + rng.below(86_400_000) as i64;
        for step in 0..40 {
            now_ms += [0, 0, 1_000, 60_000, 600_000, 3_600_000, 86_400_000][rng.below(7) as usize];
            let m = rng.below(2) as usize;
            let cap_key = |config: &Config| member_cap::store_key(config, &config.classes[0], &workspace, members[m]);
            let at = format!("round {round}, step {step}, {}: {doc}", members[m]);
            match rng.below(10) {
                0 | 1 => {
                    // Mostly within the pool; past it only by hand (the endpoint refuses it).
                    let cap = 1 + rng.below(ceiling + 3);
                    let (before, after) = redis.eval(&sha, &Command::cap(cap_key(&remote), Some(cap)));
                    assert_eq!(
                        (member_cap::of_record(before), member_cap::of_record(after)),
                        (caps[m], Some(cap)),
                        "{at}"
                    );
                    caps[m] = Some(cap);
                    set += 1;
                    continue;
                }
                2 => {
                    let (before, after) = redis.eval(&sha, &Command::cap(cap_key(&remote), None));
                    assert_eq!((member_cap::of_record(before), after), (caps[m], None), "{at}");
                    caps[m] = None;
                    cleared += 1;
                    continue;
                }
                _ => {}
            }
            let cost = [0, 1, 1, 1, 2, 3, 5][rng.below(7) as usize];
            let confirmed = rng.chance(50);
            let ticket = ticket_of(&remote, &remote_callers[m], cost, confirmed, now_ms);
            let local_ticket = ticket_of(&local, &local_callers[m], cost, confirmed, now_ms);
            assert_eq!(ticket.member_cap, Some(cap_key(&remote)), "{at}");
            let command = quota_core::redis::stack::command(&remote, &ticket, &ids.next_id()).unwrap();
            assert_eq!(command.member_cap_key(), ticket.member_cap.as_deref(), "{at}");
            assert!(command.keys.iter().all(|k| hash_tag(k) == format!("w:{workspace}")), "{:?}", command.keys);
            let keys: Vec<String> = ticket.stack.iter().map(|(_, _, k)| k.clone()).collect();
            let local_keys: Vec<String> = local_ticket.stack.iter().map(|(_, _, k)| k.clone()).collect();
            let before: Vec<Option<Counter>> = keys.iter().map(|k| model.get(k).copied().flatten()).collect();
            // Shared data holding what Redis holds, the cap included.
            let local_cap_key = local_ticket.member_cap.clone().unwrap();
            let store = shared_data_with(&local, &local_keys, &before, &local_cap_key, caps[m]);
            let shared = engine::charge(&local, &local_callers[m], ClassId(0), cost, confirmed, now_ms, &store);

            let answer = redis.eval_capped(&sha, &command, keys.len());
            assert_eq!(answer.cap, caps[m], "{at}: the cap the script read");
            let befores: Vec<Option<Counter>> = answer.counters.iter().map(|a| a.before).collect();
            let afters: Vec<Option<Counter>> = answer.counters.iter().map(|a| a.after).collect();
            assert_eq!(befores, before, "{at}");
            let settled = quota_core::redis::stack::settle(&remote, ticket, Ok(answer));
            assert!(settled.mismatches.is_empty(), "{at}: {settled:?}");
            let d = settled.decision;
            assert_eq!((d.limit, d.scope, &d.outcome), (shared.limit, shared.scope, &shared.outcome), "{at}");
            let held = |d: &engine::Decision| d.others.iter().map(|h| (h.limit, h.scope, h.usage)).collect::<Vec<_>>();
            assert_eq!(held(&d), held(&shared), "{at}");
            let left: Vec<Option<Counter>> = local_keys
                .iter()
                .map(|k| store.get(k).unwrap().and_then(|(bytes, _)| Counter::decode(&bytes)))
                .collect();
            if d.admitted() {
                assert_eq!(afters, left, "{at}: Redis and shared data hold the same");
            } else {
                assert_eq!(afters, before, "{at}: a refusal writes nothing");
                // Shared data gives each charge back (an emptied record where there was none).
                for (l, b) in left.iter().zip(&before) {
                    match b {
                        Some(_) => assert_eq!(l, b, "{at}"),
                        None => assert_eq!(l.map_or(0, |l| l.used), 0, "{at}"),
                    }
                }
            }
            for (key, after) in keys.iter().zip(&afters) {
                model.insert(key.clone(), *after);
            }
            let hard = d.limits().iter().find(|(i, _)| *i == capped_limit).map(|(_, u)| u.hard);
            match caps[m] {
                Some(cap) => {
                    assert_eq!(hard, Some(cap.min(ceiling)), "{at}");
                    charged_capped += 1;
                    past_ceiling += usize::from(cap > ceiling);
                    refused_by_cap += usize::from(!d.admitted() && d.limit == capped_limit);
                    warned_capped += usize::from(
                        d.limit == capped_limit && matches!(&d.outcome, Outcome::Charged(c) if c.crossed.is_some()),
                    );
                }
                None => {
                    assert_eq!(hard, Some(stack[capped_limit].hard), "{at}");
                    uncapped += 1;
                }
            }

            // The usage endpoint reads the cap with the counters (one slot)
            // and shows what shared data shows.
            if step % 4 == 0 {
                let viewed: Vec<String> = engine::store_keys(&remote, &remote_callers[m])
                    .into_iter()
                    .chain(member_cap::keys_of(&remote, &remote_callers[m]))
                    .collect();
                assert_eq!(by_slot(viewed.clone()).len(), 1, "{at}: {viewed:?}");
                let records = view(&mut redis, &sha, &Command::view(viewed.clone()));
                let from_redis = MemoryStore::new();
                for (key, record) in viewed.iter().zip(records) {
                    if let Some(c) = record {
                        from_redis.set(key, &c.encode(), Expect::Absent).unwrap();
                    }
                }
                let remote_report = usage_report(&remote, &remote_callers[m], now_ms, &from_redis);
                let shared = shared_data_with(&local, &local_keys, &afters, &local_cap_key, caps[m]);
                let local_report = usage_report(&local, &local_callers[m], now_ms, &shared);
                assert_eq!(remote_report, local_report, "{at}");
                reports += 1;
            }
        }
    }
    for (what, count) in [
        ("charged with a cap", charged_capped),
        ("charged without one", uncapped),
        ("refused by a cap", refused_by_cap),
        ("capped past the pool", past_ceiling),
        ("warned under a cap", warned_capped),
        ("caps set", set),
        ("caps cleared", cleared),
        ("usage reports", reports),
    ] {
        assert!(count >= 20, "only {count} cases {what}: the sequences no longer exercise it");
    }
}

#[test]
fn the_script_scales_a_capped_limits_warning_levels_as_the_core_does() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let mut rng = Rng(0x0005_CA1E_0F1E_7E15);
    let (now, align) = (2_100_000_000, Alignment::default());
    // Small numbers, and numbers near 2^53, whose products no double holds.
    let draw = |rng: &mut Rng, big: bool| -> u64 {
        if big {
            MAX_UNITS - rng.below(1 << 40)
        } else {
            1 + rng.below(200)
        }
    };
    let (mut big_cases, mut merged, mut clamped, mut moved, mut probes) = (0, 0, 0, 0, 0);
    for case in 0..300 {
        let big = rng.chance(50);
        let hard = draw(&mut rng, big).max(2);
        let mut levels: Vec<u64> = (0..1 + rng.below(8)).map(|_| 1 + rng.below(hard - 1)).collect();
        levels.sort_unstable();
        levels.dedup();
        let mut member =
            Limits { hard, warn_levels: levels.clone(), admin_cap: true, ..bound_limits(hard, AtHard::Block) };
        member.pace = None;
        member.soft = levels.last().copied().filter(|_| rng.chance(50));
        let (other_pool, big_pool, big_cap) = (rng.chance(30), rng.chance(50), rng.chance(50));
        let pool_hard = if other_pool { draw(&mut rng, big_pool) } else { hard };
        let pool = Limits { scope: Scope::Workspace, pace: None, ..bound_limits(pool_hard, AtHard::Block) };
        let cap = draw(&mut rng, big_cap);
        let stack = [pool, member];
        let applied = member_cap::apply(&stack, Some(cap));
        let expected = &applied[1];
        assert_eq!(expected.hard, cap.min(pool_hard));
        big_cases += usize::from(big);
        merged += usize::from(expected.warn_levels.len() < levels.len());
        clamped += usize::from(cap > pool_hard);
        moved += usize::from(expected.warn_levels.iter().any(|l| !levels.contains(l)));
        let cap_key = format!("t:{{w:{case}}}c@cap\u{1f}u:m");
        redis.eval(&sha, &Command::cap(cap_key.clone(), Some(cap)));
        // A fresh counter charged just below each scaled level, then at it:
        // the level's bit (its index in the scaled list) is set only at it.
        for (j, level) in expected.warn_levels.iter().enumerate() {
            for (n, cost) in [level - 1, *level].into_iter().enumerate() {
                let keys = [format!("t:{{w:{case}}}c@{j}.{n}.u"), format!("t:{{w:{case}}}c@{j}.{n}.w")];
                let counters = [(keys[0].clone(), &stack[1]), (keys[1].clone(), &stack[0])];
                let command = Command::charge_stack(&counters, cost, false, now, align, "l.1").with_member_cap(
                    cap_key.clone(),
                    0,
                    member_cap::ceiling(&stack).unwrap(),
                );
                let answer = redis.eval_capped(&sha, &command, 2);
                assert_eq!(answer.cap, Some(cap));
                let r = recompute(&[(None, expected), (None, &applied[0])], cost, false, now, align);
                assert!(r.admitted, "case {case}: {cost} of {expected:?}");
                let afters: Vec<Option<Counter>> = answer.counters.iter().map(|a| a.after).collect();
                assert_eq!(afters, r.after, "case {case}: hard {hard}, levels {levels:?}, cap {cap}, pool {pool_hard}");
                let warned = afters[0].map_or(0, |c| c.warned);
                let bits: u8 =
                    expected.warn_levels.iter().enumerate().filter(|(_, l)| **l <= cost).map(|(i, _)| 1 << i).sum();
                assert_eq!(warned, bits, "case {case}: charged {cost}, scaled levels {:?}", expected.warn_levels);
                assert_eq!(warned & (1 << j) != 0, n == 1, "case {case}: level {j} at {level}");
                probes += 1;
            }
        }
    }
    // Cases near 2^53, levels merged or dropped, caps clamped to the pool, levels moved.
    assert!(
        big_cases >= 100 && merged >= 20 && clamped >= 20 && moved >= 20 && probes >= 500,
        "{big_cases} {merged} {clamped} {moved} {probes}"
    );
}

#[test]
fn a_member_cap_is_kept_until_cleared_and_a_malformed_capped_charge_is_an_error() {
    let mut redis = Redis::start();
    let sha = sha1_hex(SCRIPT.as_bytes());
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let (now, align) = (2_100_000_000, Alignment::default());
    let key = "t:{w:acme}c@cap\u{1f}u:ann".to_string();
    let (before, after) = redis.eval(&sha, &Command::cap(key.clone(), Some(20)));
    assert_eq!((member_cap::of_record(before), member_cap::of_record(after)), (None, Some(20)));
    // Never expires while set; read back by a view as the cap it is.
    assert_eq!(redis.call(&[b"TTL", key.as_bytes()]), Resp::Int(-1));
    let viewed = view(&mut redis, &sha, &Command::view(vec![key.clone()]));
    assert_eq!(member_cap::of_record(viewed[0]), Some(20));
    let (before, after) = redis.eval(&sha, &Command::cap(key.clone(), Some(3)));
    assert_eq!((member_cap::of_record(before), member_cap::of_record(after)), (Some(20), Some(3)));
    // Cleared: deleted.
    let (before, after) = redis.eval(&sha, &Command::cap(key.clone(), None));
    assert_eq!((member_cap::of_record(before), after), (Some(3), None));
    assert_eq!(redis.call(&[b"EXISTS", key.as_bytes()]), Resp::Int(0));
    for bad in ["0", "-2", "1.5", "x", "9007199254740992"] {
        let answer = redis.call(&[b"EVALSHA", sha.as_bytes(), b"1", key.as_bytes(), b"cap", bad.as_bytes()]);
        assert!(matches!(&answer, Resp::Error(e) if e.contains("a member cap is a whole number")), "{bad}: {answer:?}");
    }
    assert_eq!(redis.call(&[b"EXISTS", key.as_bytes()]), Resp::Int(0));

    // A capped charge with its cap's arguments missing, or naming no counter: refused, nothing written.
    redis.eval(&sha, &Command::cap(key.clone(), Some(1)));
    let limits = day_limits();
    let counters = [("t:{w:acme}a".to_string(), &limits), ("t:{w:acme}b".to_string(), &limits)];
    let good = Command::charge_stack(&counters, 1, false, now, align, "k.1").with_member_cap(key.clone(), 0, 9);
    assert_eq!(good.member_cap_key(), Some(key.as_str()));
    let run = |redis: &mut Redis, args: &[String]| {
        let n = good.keys.len().to_string();
        let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), n.as_bytes()];
        parts.extend(good.keys.iter().map(|k| k.as_bytes()));
        parts.extend(args.iter().map(|a| a.as_bytes()));
        redis.call(&parts)
    };
    let cut = good.args.len() - 2;
    let with = |position: &str, most: &str| [&good.args[..cut], &[position.to_string(), most.to_string()]].concat();
    let (short, shorter) = (good.args[..cut + 1].to_vec(), good.args[..cut].to_vec());
    let mut long = good.args.clone();
    long.push("1".into());
    for args in [
        shorter,
        short,
        long,
        with("0", "9"),
        with("3", "9"),
        with("1.5", "9"),
        with("1", "-1"),
        with("1", "2.5"),
        with("1", "x"),
    ] {
        let answer = run(&mut redis, &args);
        assert!(matches!(&answer, Resp::Error(e) if e.contains("a member cap's key")), "{args:?}: {answer:?}");
    }
    assert_eq!(view(&mut redis, &sha, &Command::view(vec!["t:{w:acme}a".into(), "t:{w:acme}b".into()])), [None, None]);
    // The well-formed call applies the cap of 1 to the first counter: a second unit is refused.
    assert!(redis.eval_stack(&sha, &good, 2).iter().all(|a| a.after.map(|c| c.used) == Some(1)));
    let again = Command::charge_stack(&counters, 1, false, now, align, "k.2").with_member_cap(key, 0, 9);
    let answer = redis.eval_capped(&sha, &again, 2);
    assert_eq!(answer.cap, Some(1));
    assert!(answer.counters.iter().all(|a| a.before == a.after), "{answer:?}");
}

/// One Envoy of the lease mode: its config (its own seed, so its own holder
/// name) and its shared data.
struct Holder {
    config: Config,
    store: MemoryStore,
}

fn lease_config(hard: u64, fraction: f64, seed: u64) -> Config {
    let doc = format!(
        r#"{{
            "identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
            "classes": [{{"name": "drafts"}}],
            "tiers": {{"free": {{"limits": {{"drafts": {{"hard": {hard}, "window": "day", "warn_at": [0.5, 0.9]}}}}}}}},
            "counters": {{"store": "redis", "redis": {{"cluster": "redis", "key_prefix": "t:", "mode": "lease",
                "lease_ms": 2000, "lease_fraction": {fraction}}}}}
        }}"#
    );
    let mut config = Config::from_json(doc.as_bytes()).unwrap();
    config.counters.seed = quota_core::table::Seed(seed, seed.wrapping_mul(31));
    config
}

impl Holder {
    fn new(hard: u64, fraction: f64, seed: u64) -> Holder {
        Holder { config: lease_config(hard, fraction, seed), store: MemoryStore::new() }
    }

    fn ticket(&self, cost: u64, now_ms: i64) -> Ticket {
        let head = RequestHead::new(vec![("x-user-id".into(), b"alice".to_vec())]);
        let caller = identify(&self.config, &head, &NoProperties).unwrap();
        match engine::prepare(&self.config, &caller, ClassId(0), cost, false, now_ms) {
            Prepared::Charge(t) => t,
            Prepared::Decided(d) => panic!("decided without a counter: {d:?}"),
        }
    }

    fn table(&self, now_ms: i64) -> quota_core::table::Table<'_, MemoryStore> {
        self.config.counters.table(&self.store, now_ms)
    }

    fn share(&self, key: &str, now_ms: i64) -> Option<lease::LeaseRecord> {
        self.table(now_ms).get(key).unwrap().and_then(|(b, _)| lease::LeaseRecord::decode(&b))
    }

    /// The lease call for `ticket`'s counter (`need`, `give`), as the filter sends it.
    fn command(&self, ticket: &Ticket, need: u64, give: u64, now_ms: i64, id: Option<&str>) -> Command {
        let limits = engine::limits_of(&self.config, ticket).unwrap();
        let share = self.share(&ticket.key, now_ms);
        lease::command(&self.config, &ticket.key, limits, share.as_ref(), need, give, now_ms, ticket.alignment, id)
            .unwrap()
    }

    fn merge(&self, ticket: &Ticket, answer: &LeaseAnswer, sent_ms: i64, now_ms: i64) {
        let limits = engine::limits_of(&self.config, ticket).unwrap();
        lease::merge(&self.config, &ticket.key, limits, ticket.alignment, answer, sent_ms, &self.table(now_ms), now_ms)
            .unwrap();
    }

    /// One request of `cost` units decided as the exchange decides it (one
    /// lease call when the share is short, the answer merged, decided
    /// again); `renewals` collects the renewals it asks for. Whether it was admitted.
    fn request(&self, redis: &mut Redis, sha: &str, cost: u64, now_ms: i64, renewals: &mut Vec<Ticket>) -> bool {
        let ticket = self.ticket(cost, now_ms);
        let mut last_try = false;
        loop {
            match lease::admit(&self.config, &ticket, &self.table(now_ms), last_try) {
                lease::Admit::Decided { decision, renew } => {
                    if renew {
                        renewals.push(ticket.clone());
                    }
                    return decision.admitted();
                }
                lease::Admit::Needs { need } => {
                    assert!(!last_try, "asked Redis twice for one request");
                    let answer = lease_call(redis, sha, &self.command(&ticket, need, 0, now_ms, None));
                    self.merge(&ticket, &answer, now_ms, now_ms);
                    last_try = true;
                }
            }
        }
    }
}

fn lease_call(redis: &mut Redis, sha: &str, command: &Command) -> LeaseAnswer {
    let numbers = redis.eval_numbers(sha, command);
    let body = format!("{{\"EVALSHA\":{}}}", serde_json::to_string(&numbers).unwrap());
    parse_lease(Some(200), body.as_bytes()).unwrap_or_else(|e| panic!("{e:?} reading {body}"))
}

/// The units every holder spent, as their shares say.
fn spent(holders: &[Holder], key: &str, now_ms: i64) -> u64 {
    holders.iter().map(|h| h.share(key, now_ms).map_or(0, |s| s.spent)).sum()
}

const LEASE_NOON_MS: i64 = 2_100_000_000_000;

#[test]
fn leased_blocks_never_admit_past_the_limit_whatever_the_order_of_answers() {
    let sha = sha1_hex(SCRIPT.as_bytes());
    for seed in 1..=12u64 {
        let mut redis = Redis::start();
        redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let hard = 20 + rng.below(200);
        let fraction = [0.05, 0.1, 0.25, 1.0][rng.below(4) as usize];
        let holders: Vec<Holder> = (0..3).map(|i| Holder::new(hard, fraction, 100 * seed + i)).collect();
        let key = holders[0].ticket(1, LEASE_NOON_MS).key;
        let mut now_ms = LEASE_NOON_MS;
        // Answers held back (crossing later ones) and answers lost.
        let mut held: Vec<(usize, Ticket, LeaseAnswer, i64)> = Vec::new();
        let mut lost_units = 0;
        let mut admitted = 0;
        for step in 0..(hard * 6) {
            now_ms += rng.below(120) as i64;
            let h = rng.below(3) as usize;
            let holder = &holders[h];
            match rng.below(10) {
                // A renewal ahead of need: answered now, later, or never.
                0 | 1 => {
                    let ticket = holder.ticket(1, now_ms);
                    let answer = lease_call(&mut redis, &sha, &holder.command(&ticket, 0, 0, now_ms, None));
                    match rng.below(4) {
                        0 => held.push((h, ticket, answer, now_ms)),
                        1 if step % 7 == 0 => lost_units += answer.granted_now,
                        _ => holder.merge(&ticket, &answer, now_ms, now_ms),
                    }
                }
                // A held-back answer arrives.
                2 if !held.is_empty() => {
                    let (h, ticket, answer, sent) = held.remove(rng.below(held.len() as u64) as usize);
                    holders[h].merge(&ticket, &answer, sent, now_ms);
                }
                // An idle holder gives back what it holds (past its block's lifetime).
                3 => {
                    let later = now_ms + 2_500;
                    let ticket = holder.ticket(1, later);
                    if let Some((give, _)) = lease::release(&holder.config, &key, &holder.table(later), later).unwrap()
                    {
                        let id = format!("r.{seed}.{step}");
                        // The share as marked given back is what the release reports.
                        let command = holder.command(&ticket, 0, give, later, Some(&id));
                        lease_call(&mut redis, &sha, &command);
                        // Sent twice (a retry): applied once.
                        lease_call(&mut redis, &sha, &command);
                    }
                }
                _ => {
                    let cost = 1 + rng.below(3);
                    let mut renewals = Vec::new();
                    if holder.request(&mut redis, &sha, cost, now_ms, &mut renewals) {
                        admitted += cost;
                    }
                }
            }
            assert!(admitted <= hard, "seed {seed}: {admitted} admitted past the limit of {hard}");
            assert_eq!(spent(&holders, &key, now_ms), admitted, "seed {seed}: the shares count what was admitted");
        }
        for (h, ticket, answer, sent) in held.drain(..) {
            holders[h].merge(&ticket, &answer, sent, now_ms);
        }
        // Every holder gives back what it holds: Redis then counts what was
        // admitted, and the units of answers that were lost.
        let later = now_ms + 3_000;
        for (i, holder) in holders.iter().enumerate() {
            let ticket = holder.ticket(1, later);
            if let Some((give, _)) = lease::release(&holder.config, &key, &holder.table(later), later).unwrap() {
                lease_call(&mut redis, &sha, &holder.command(&ticket, 0, give, later, Some(&format!("end.{i}"))));
            }
            // A last report of its spending (a renewal that asks for nothing more is not needed: give 0, need 0 grants).
        }
        let u = match redis.call(&[b"HGET", key.as_bytes(), b"u"]) {
            Resp::Bulk(Some(b)) => String::from_utf8(b).unwrap().parse::<u64>().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(u, admitted + lost_units, "seed {seed}: Redis counts what was admitted and what was lost");
        assert!(admitted + lost_units <= hard);
    }
}

#[test]
fn leased_blocks_shrink_near_the_limit_and_a_refusal_leaves_at_most_the_stated_bound_unspent() {
    let sha = sha1_hex(SCRIPT.as_bytes());
    for (hard, fraction) in [(200u64, 0.1), (1000, 0.05), (50, 0.25), (30, 1.0)] {
        let mut redis = Redis::start();
        redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
        let holders: Vec<Holder> = (0..3).map(|i| Holder::new(hard, fraction, 7 + i)).collect();
        let key = holders[0].ticket(1, LEASE_NOON_MS).key;
        let (_, settings) = holders[0].config.counters.lease().unwrap();
        let bound = lease::refusal_bound(settings, hard, 3);
        let mut now_ms = LEASE_NOON_MS;
        let mut admitted = 0;
        let mut refused = [false; 3];
        let mut blocks = Vec::new();
        // Round robin of one-unit requests, each renewal sent at once, until all refuse.
        let mut turn = 0;
        while refused.iter().any(|r| !r) {
            now_ms += 5;
            let h = turn % 3;
            turn += 1;
            if refused[h] {
                continue;
            }
            let mut renewals = Vec::new();
            if holders[h].request(&mut redis, &sha, 1, now_ms, &mut renewals) {
                admitted += 1;
            } else {
                refused[h] = true;
                let unspent: u64 = holders.iter().map(|x| x.share(&key, now_ms).map_or(0, |s| s.left())).sum();
                assert!(unspent <= bound, "{hard}/{fraction}: {unspent} unspent at a refusal, bound {bound}");
                assert_eq!(admitted + unspent, hard, "{hard}/{fraction}: every unit is spent or held");
            }
            for ticket in renewals {
                let answer = lease_call(&mut redis, &sha, &holders[h].command(&ticket, 0, 0, now_ms, None));
                blocks.push(answer.granted_now);
                holders[h].merge(&ticket, &answer, now_ms, now_ms);
            }
            assert!(turn < 100_000);
        }
        assert!(admitted <= hard && admitted + bound >= hard, "{hard}/{fraction}: {admitted} admitted");
        // No block is more than the fraction of what was left (plus a request's need).
        let largest = blocks.iter().max().copied().unwrap_or(0);
        assert!(largest as f64 <= (hard as f64 * fraction).ceil(), "{hard}/{fraction}: a block of {largest}");
        // Blocks shrink: the last ones are single units.
        assert!(blocks.iter().rev().take(3).all(|b| *b <= 1), "{hard}/{fraction}: {blocks:?}");
    }
}

#[test]
fn a_leased_share_is_shown_as_spent_and_given_back_when_idle_and_a_new_window_starts_empty() {
    let sha = sha1_hex(SCRIPT.as_bytes());
    let mut redis = Redis::start();
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let holders: Vec<Holder> = (0..2).map(|i| Holder::new(100, 0.1, 40 + i)).collect();
    let key = holders[0].ticket(1, LEASE_NOON_MS).key;
    let mut renewals = Vec::new();
    for _ in 0..3 {
        assert!(holders[0].request(&mut redis, &sha, 1, LEASE_NOON_MS, &mut renewals));
    }
    assert!(holders[1].request(&mut redis, &sha, 2, LEASE_NOON_MS + 10, &mut renewals));
    // Redis reserved two blocks; the usage endpoint reads what was spent as last reported.
    let reserved = match redis.call(&[b"HGET", key.as_bytes(), b"u"]) {
        Resp::Bulk(Some(b)) => String::from_utf8(b).unwrap().parse::<u64>().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reserved, 10 + 9, "two blocks, each a tenth of what was not reserved yet");
    // Holder 0 reported nothing spent yet (its first call came before its spending); holder 1 reported 0 too.
    assert_eq!(used(&mut redis, &sha, &key), 0);
    // Holder 1's next call reports; its share shows both Envoys' spending as known.
    let t1 = holders[1].ticket(1, LEASE_NOON_MS + 20);
    let answer = lease_call(&mut redis, &sha, &holders[1].command(&t1, 0, 0, LEASE_NOON_MS + 20, None));
    holders[1].merge(&t1, &answer, LEASE_NOON_MS + 20, LEASE_NOON_MS + 20);
    assert_eq!(used(&mut redis, &sha, &key), 2);
    assert_eq!(holders[1].share(&key, LEASE_NOON_MS + 20).unwrap().counter.used, 2);
    // Past the lifetime, holder 0 gives its unspent 7 back.
    let later = LEASE_NOON_MS + 2_500;
    let (give, share) = lease::release(&holders[0].config, &key, &holders[0].table(later), later).unwrap().unwrap();
    assert_eq!((give, share.left()), (7, 0));
    let t0 = holders[0].ticket(1, later);
    lease_call(&mut redis, &sha, &holders[0].command(&t0, 0, give, later, Some("rel.1")));
    let reserved = match redis.call(&[b"HGET", key.as_bytes(), b"u"]) {
        Resp::Bulk(Some(b)) => String::from_utf8(b).unwrap().parse::<u64>().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reserved, 14, "19, topped up by 2 for holder 1 (to a block of 9 unspent), less the 7 given back");
    assert_eq!(used(&mut redis, &sha, &key), 5, "3 spent by holder 0 (reported by its release), 2 by holder 1");
    // Nothing more to give back.
    assert_eq!(lease::release(&holders[0].config, &key, &holders[0].table(later), later).unwrap(), None);
    // The next day: a fresh window, empty shares, old holders' fields gone.
    let tomorrow = LEASE_NOON_MS + 86_400_000;
    assert!(holders[0].request(&mut redis, &sha, 1, tomorrow, &mut renewals));
    let share = holders[0].share(&key, tomorrow).unwrap();
    assert_eq!((share.spent, share.granted), (1, 10));
    let fields = match redis.call(&[b"HKEYS", key.as_bytes()]) {
        Resp::Array(f) => f.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(fields, 8 + 1, "the counter's fields and one holder's share");
}

#[test]
fn a_malformed_lease_call_is_an_error_that_writes_nothing() {
    let sha = sha1_hex(SCRIPT.as_bytes());
    let mut redis = Redis::start();
    redis.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
    let holder = Holder::new(100, 0.1, 5);
    let ticket = holder.ticket(1, LEASE_NOON_MS);
    let good = holder.command(&ticket, 1, 0, LEASE_NOON_MS, None);
    for (i, bad) in ["x", "-1", ""].iter().enumerate() {
        for at in [2usize, 4, 6] {
            let mut command = good.clone();
            command.args[at] = bad.to_string();
            let keys = command.keys.len().to_string();
            let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), keys.as_bytes()];
            parts.extend(command.keys.iter().map(|k| k.as_bytes()));
            parts.extend(command.args.iter().map(|a| a.as_bytes()));
            assert!(matches!(redis.call(&parts), Resp::Error(_)), "{i}/{at}");
        }
    }
    // A holder name that is not hex (it becomes a field name) is refused too.
    let mut command = good.clone();
    command.args[3] = "h:other".into();
    let keys = command.keys.len().to_string();
    let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), keys.as_bytes()];
    parts.extend(command.keys.iter().map(|k| k.as_bytes()));
    parts.extend(command.args.iter().map(|a| a.as_bytes()));
    assert!(matches!(redis.call(&parts), Resp::Error(_)));
    assert_eq!(redis.call(&[b"EXISTS", ticket.key.as_bytes()]), Resp::Int(0));
}
