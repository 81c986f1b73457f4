//! Random event sequences fed to the core's [`Exchange`]: a random request
//! head, then any events in any order, sensible or not: body chunks of any
//! size that end the stream or not, trailers, the body handed over (its
//! bytes, other bytes, none) or refused, answers from Redis to calls the
//! exchange asked for or never made (well-formed records, NOSCRIPT, errors,
//! junk, no answer), calls that could not be sent, the response's head and
//! body chunks, the stream's end, an abandoned stream. A few exchanges
//! share one [`MemoryHost`] (and its counter store) so limits are reached.
//!
//! What must hold whatever the sequence (asserted after every event):
//!
//! - nothing panics; replies and headers are well-formed ([`check_reply`],
//!   [`check_headers`], [`check_edits`]); the request head's step strips
//!   every `x-quota-*` header the client sent ([`check_strip`]);
//! - a request is decided at most once, and once answered it stays
//!   answered: every later step is `Pause`, with no edits;
//! - a call to Redis comes only from a config in Redis's exact mode;
//! - each counter of a charge (a stacked cell's several) is cancelled at
//!   most once, only if the charge was sent, and never after the exchange
//!   heard it could not be sent;
//! - each counter of a charge is corrected at most once, never below what
//!   it charged nor past the rest of its limit's ceiling
//!   ([`check_corrections`]; in shared data, also as the counter itself
//!   moves).

use crate::{
    arbitrary_request, check_corrections, check_edits, check_headers, check_reply, check_strip, configs, report,
    FuzzStore, BASE_CONFIGS,
};
use libfuzzer_sys::arbitrary::{self, Unstructured};
use quota_core::config::Config;
use quota_core::counter::Counter;
use quota_core::engine::{self, Outcome};
use quota_core::exchange::memory::{MemoryHost, Noted};
use quota_core::exchange::response::Ended;
use quota_core::exchange::{Call, Exchange, Next, Step};
use quota_core::redis::RECORD_FIELDS;
use quota_core::refund::flags;
use quota_core::store::CounterStore;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// The configs the sequences run against: [`configs`], then variants of
/// them: counters in Redis in the exact mode (every charge, usage read and
/// grant is a call; failing closed with refunds, or open with headers that
/// go on before the body), in the approximate mode (synced), the
/// `strictest` answer to an unreadable body with a small body cap, and the
/// lease mode (a request short of units waits for one lease call).
pub fn sequence_configs() -> &'static [Config] {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let redis = json!({"cluster": "redis"});
        let variants = [
            (
                2,
                json!({
                    "counters": {"store": "redis", "redis": redis, "on_error": "fail_closed"},
                    "refunds": {"statuses": [429, 503]},
                }),
            ),
            (1, json!({"counters": {"store": "redis", "redis": redis, "on_error": "fail_open"}})),
            (
                0,
                json!({
                    "counters": {"store": "redis", "redis": redis, "on_error": "fail_open"},
                    "hold_headers_for_body": false,
                }),
            ),
            // The demo stacks team drafts, which the approximate mode refuses:
            // the seeds example, without the grants it refuses too.
            (
                1,
                json!({"counters": {"store": "redis", "redis": {"cluster": "redis", "mode": "approximate"}}, "admin": null}),
            ),
            (2, json!({"unreadable_body": "strictest", "max_body_bytes": 256})),
            // The lease mode: a request short of units waits for a lease call.
            (
                1,
                json!({"counters": {"store": "redis", "on_error": "fail_closed", "redis": {"cluster": "redis", "mode": "lease"}}, "admin": null}),
            ),
        ];
        let mut all = configs().to_vec();
        // Member caps in shared data: the rich config's team pool, with one.
        let mut capped: Value =
            serde_json::from_slice(BASE_CONFIGS[2]).unwrap_or_else(|e| panic!("base config 2 is not JSON: {e}"));
        if let Some(member) = capped.pointer_mut("/tiers/team/limits/chat/2").and_then(Value::as_object_mut) {
            member.insert("admin_cap".into(), Value::Bool(true));
        }
        all.push(
            Config::from_json(capped.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("the member-cap variant of base config 2 is invalid: {e}")),
        );
        // And in Redis's exact mode, where a cap shares its workspace's slot:
        // without the organisation's pool, which would put the stack in the
        // organisation's (validation refuses the pair).
        let mut in_redis = capped;
        if let Some(chat) = in_redis.pointer_mut("/tiers/team/limits/chat").and_then(Value::as_array_mut) {
            chat.retain(|l| l.get("scope").and_then(Value::as_str) != Some("organisation"));
        }
        if let Some(doc) = in_redis.as_object_mut() {
            doc.insert("counters".into(), json!({"store": "redis", "redis": redis, "on_error": "fail_closed"}));
        }
        all.push(
            Config::from_json(in_redis.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("the member-cap variant of base config 2 in Redis is invalid: {e}")),
        );
        for (base, patch) in variants {
            let mut doc: Value = serde_json::from_slice(BASE_CONFIGS[base])
                .unwrap_or_else(|e| panic!("base config {base} is not JSON: {e}"));
            if let (Some(doc), Some(patch)) = (doc.as_object_mut(), patch.as_object()) {
                doc.extend(patch.clone());
            }
            let config = Config::from_json(doc.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("a variant of base config {base} is invalid: {e}"));
            all.push(config);
        }
        all
    })
}

/// What the sequences of one input reached: the native test checks that
/// its inputs reach every path worth checking.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub exchanges: u64,
    pub decisions: u64,
    pub replies: u64,
    pub calls: u64,
    /// Answers to calls the exchange made that it could read (records).
    pub answers: u64,
    pub cancels: u64,
    /// Corrections seen in notes (exact and approximate modes) or in the counter (shared data).
    pub corrections: u64,
    /// Events after a reply.
    pub after_reply: u64,
    pub body_reads: u64,
    /// Decisions on a stacked cell, and stacked charges sent to Redis.
    pub stacked: u64,
    /// Decisions on a class metered in money.
    pub money: u64,
    /// Calls to Redis about a member cap: a stacked charge that applies
    /// one, or the admin endpoint's setting or clearing one.
    pub capped: u64,
    /// Lease calls a request waited for (the lease mode).
    pub leases: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.exchanges += o.exchanges;
        self.decisions += o.decisions;
        self.replies += o.replies;
        self.calls += o.calls;
        self.answers += o.answers;
        self.cancels += o.cancels;
        self.corrections += o.corrections;
        self.after_reply += o.after_reply;
        self.body_reads += o.body_reads;
        self.stacked += o.stacked;
        self.money += o.money;
        self.capped += o.capped;
        self.leases += o.leases;
    }
}

/// Feeds the sequences `data` describes to exchanges, asserting what must
/// hold (see the module). Data running out part-way ends the sequence;
/// what ran was checked.
pub fn run(data: &[u8]) -> Tally {
    let mut u = Unstructured::new(data);
    let mut tally = Tally::default();
    let _ = sequences(&mut u, &mut tally);
    tally
}

fn sequences(u: &mut Unstructured, tally: &mut Tally) -> arbitrary::Result<()> {
    let all = sequence_configs();
    let config = &all[u.choose_index(all.len())?];
    let (_, _, plan, mode) = arbitrary_request(config, u)?;
    let store = FuzzStore::new(mode, None);
    let mut host = MemoryHost::with_store(plan.now_ms, &store);
    host.script_cached = u.arbitrary()?;
    // Charge ids sent to Redis (and their counters), over every exchange of the host.
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    let mut unsent: HashSet<String> = HashSet::new();
    for _ in 0..u.int_in_range(1..=3)? {
        let result = exchange(config, u, &mut host, &mut sent, &mut unsent, tally);
        check_cancels(&host.notes, &sent, &unsent, tally);
        result?;
        host.now_ms = host.now_ms.saturating_add(*u.choose(&[0, 1_000, 3_600_000, 86_400_000])?);
    }
    Ok(())
}

/// Each charge cancelled at most once, only if it was sent, never after
/// the exchange heard it was not.
fn check_cancels(notes: &[Noted], sent: &HashMap<String, Vec<String>>, unsent: &HashSet<String>, tally: &mut Tally) {
    let mut cancelled = HashSet::new();
    for note in notes {
        if let Noted::Cancel { key, id } = note {
            // A stacked charge is cancelled counter by counter, by its one id.
            let counters = sent.get(id).map(Vec::as_slice).unwrap_or_default();
            assert!(counters.contains(key), "cancel of charge {id} of {key}, which was not sent");
            assert!(!unsent.contains(id), "cancel of charge {id}, which the exchange heard was not sent");
            assert!(cancelled.insert((id.clone(), key.clone())), "charge {id} of {key} cancelled twice");
        }
    }
    tally.cancels = tally.cancels.max(cancelled.len() as u64);
}

/// One exchange: a random head, then random events.
fn exchange(
    config: &Config,
    u: &mut Unstructured,
    host: &mut MemoryHost<&FuzzStore>,
    sent: &mut HashMap<String, Vec<String>>,
    unsent: &mut HashSet<String>,
    tally: &mut Tally,
) -> arbitrary::Result<()> {
    let (head, body, _, _) = arbitrary_request(config, u)?;
    let body: Option<Vec<u8>> = match u.int_in_range(0..=5)? {
        0 => {
            let len = u.int_in_range(0..=u.len().min(300))?;
            Some(u.bytes(len)?.to_vec())
        }
        _ => body.map(<[u8]>::to_vec),
    };
    let mut headers = head.headers;
    // The client's own x-quota-* headers, in any case, anywhere.
    for _ in 0..u.int_in_range(0..=3)? {
        let name = *u.choose(&["x-quota-confirm", "X-Quota-State", "x-quota-used", "X-QUOTA-COST", "x-quota-"])?;
        let value = *u.choose(&["yes", "no", "1", ""])?;
        let at = u.int_in_range(0..=headers.len())?;
        headers.insert(at, (name.to_string(), value.as_bytes().to_vec()));
    }
    let mut watch = Watch::new(config, host.notes.len());
    let mut x = Exchange::new();
    tally.exchanges += 1;
    let end_of_stream = body.is_none() || u.ratio(1, 8)?;
    let step = x.request_head(config, host, headers.clone(), end_of_stream);
    check_strip(&headers, &step.edits);
    watch.stepped(&x, host, step, sent, tally);
    let result = events(config, u, host, &mut x, &mut watch, body.as_deref(), sent, unsent, tally);
    // However the sequence ended, the stream ends (or is gone).
    if u.arbitrary().unwrap_or(true) {
        let (response_flags, upstream_connected) = (*u.choose(&FLAGS).unwrap_or(&0), u.arbitrary().unwrap_or(true));
        x.ended(config, host, || Ended { response_flags, upstream_connected });
    } else {
        x.abandon(host);
    }
    watch.ends(host, tally);
    result
}

const FLAGS: [u64; 4] = [0, flags::UPSTREAM_CONNECTION_FAILURE, flags::DOWNSTREAM_REMOTE_RESET, u64::MAX];

const RESPONSE_PIECES: [&str; 6] = [
    r#"{"usage":{"prompt_tokens":7,"completion_tokens":900,"total_tokens":907}}"#,
    r#"{"usage":{"input_tokens":18446744073709551615,"output_tokens":1}}"#,
    r#"{"usage":{"total_tokens":1}}"#,
    "data: {\"choices\":[]}\n\ndata: {\"usage\":{\"total_tokens\":3}}\n\ndata: [DONE]\n\n",
    "data: {\"usage\":{\"prompt_tokens\":100000,\"completion_tokens\":100000}}\n\n",
    "",
];

/// Random events until the data or the count runs out.
#[allow(clippy::too_many_arguments)]
fn events(
    config: &Config,
    u: &mut Unstructured,
    host: &mut MemoryHost<&FuzzStore>,
    x: &mut Exchange,
    watch: &mut Watch,
    body: Option<&[u8]>,
    sent: &mut HashMap<String, Vec<String>>,
    unsent: &mut HashSet<String>,
    tally: &mut Tally,
) -> arbitrary::Result<()> {
    let body_len = body.map_or(0, <[u8]>::len);
    for _ in 0..u.int_in_range(0..=24)? {
        if u.is_empty() {
            break;
        }
        if watch.replied {
            tally.after_reply += 1;
        }
        let step = match u.int_in_range(0..=17)? {
            0 | 1 => {
                let buffered = match u.int_in_range(0..=3)? {
                    0 => body_len,
                    1 => u.int_in_range(0..=body_len)?,
                    2 => config.max_body_bytes.saturating_add(u.int_in_range(0..=2)?),
                    _ => usize::try_from(u.arbitrary::<u32>()?).unwrap_or(usize::MAX),
                };
                Some(x.request_body(config, host, buffered, u.arbitrary()?))
            }
            2 => Some(x.request_trailers(config)),
            3 | 4 => {
                let bytes = match u.int_in_range(0..=3)? {
                    0 | 1 => body.map(|b| b.get(..watch.asked.unwrap_or(b.len())).unwrap_or(b).to_vec()),
                    2 => {
                        let len = u.int_in_range(0..=u.len().min(64))?;
                        Some(u.bytes(len)?.to_vec())
                    }
                    _ => None,
                };
                Some(x.body_read(config, host, bytes))
            }
            5 => Some(x.body_unreadable(config, host)),
            6..=10 => {
                let call = watch.pick_call(u)?;
                let (status, answer) = redis_answer(u, call.as_ref())?;
                if call.is_some() && redis_readable(status, &answer) {
                    tally.answers += 1;
                }
                let n = call.as_ref().map_or(u.int_in_range(0..=3)?, |c| c.n);
                Some(x.answered(config, host, n, status, &answer))
            }
            11 => {
                let call = watch.pick_call(u)?;
                let n = call.as_ref().map_or(u.int_in_range(0..=3)?, |c| c.n);
                // A charge the exchange waits for and hears was not sent never
                // ran: nothing may cancel it.
                let charge = call
                    .as_ref()
                    .filter(|c| x.waiting_for_store() && matches!(c.command.op(), "charge" | "charge_stack"));
                if let Some(id) = charge.and_then(|c| c.command.id()) {
                    unsent.insert(id.to_string());
                }
                Some(x.not_sent(config, host, n, "fuzz: could not send".into()))
            }
            12 | 13 => {
                let status = *u.choose(&[None, Some(200), Some(201), Some(429), Some(500), Some(503), Some(999)])?;
                let content_type: Option<&[u8]> =
                    *u.choose(&[None, Some(&b"application/json"[..]), Some(&b"text/event-stream"[..]), Some(b"\xff")])?;
                x.response_head(config, host, status, content_type, *u.choose(&FLAGS)?);
                None
            }
            14 | 15 => {
                let piece = match u.int_in_range(0..=5)? {
                    0 => {
                        let len = u.int_in_range(0..=u.len().min(64))?;
                        u.bytes(len)?.to_vec()
                    }
                    _ => u.choose(&RESPONSE_PIECES)?.as_bytes().to_vec(),
                };
                let at = u.int_in_range(0..=piece.len())?;
                let (first, rest) = piece.split_at(at);
                x.response_body(config, host, first, false);
                x.response_body(config, host, rest, u.arbitrary()?);
                None
            }
            16 => {
                let (response_flags, upstream_connected) = (*u.choose(&FLAGS)?, u.arbitrary()?);
                x.ended(config, host, || Ended { response_flags, upstream_connected });
                None
            }
            _ => {
                x.abandon(host);
                None
            }
        };
        match step {
            Some(step) => watch.stepped(x, host, step, sent, tally),
            None => watch.unstepped(x, host),
        }
    }
    Ok(())
}

/// An answer from webdis to `call` (or to a call never made): records the
/// script could have written, NOSCRIPT, a Redis error, junk, an HTTP error,
/// no answer.
fn redis_answer(u: &mut Unstructured, call: Option<&Call>) -> arbitrary::Result<(Option<u16>, Vec<u8>)> {
    // A view answers a record per key; a stacked charge a record before and
    // after per counter, one per key (each counter has its marker), and the
    // member cap's record when it carries its key.
    let records = match call {
        Some(c) if matches!(c.command.op(), "view" | "charge_stack") => c.command.keys.len(),
        _ => 2,
    };
    let answer = match u.int_in_range(0..=7)? {
        0..=3 => {
            let mut fields = Vec::with_capacity(records * RECORD_FIELDS);
            for n in 0..records {
                let cap = call.and_then(|c| match c.command.op() {
                    // What a cap call asked for (its record after it ran), or a charge's cap.
                    "cap" => Some(c.command.args.get(1).and_then(|a| a.parse::<i64>().ok())),
                    _ if c.command.member_cap_key().is_some() && n + 1 == records => Some(None),
                    _ => None,
                });
                match cap {
                    Some(asked) if u.ratio(3, 4)? => fields.extend(cap_record(u, asked)?),
                    _ => fields.extend(record(u, call)?),
                }
            }
            if call.is_some_and(|c| c.command.op() == "lease") {
                // Granted now, the holder's granted and spent, the others' unspent.
                for _ in 0..4 {
                    fields.push(*u.choose(&[0, 1, 3, 50, i64::MAX, -1])?);
                }
            }
            let verb = if u.ratio(1, 4)? { "EVAL" } else { "EVALSHA" };
            (Some(200), json!({ verb: fields }).to_string().into_bytes())
        }
        4 => (Some(200), br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#.to_vec()),
        5 => (Some(200), br#"{"EVALSHA":[false,"READONLY You can't write against a read only replica."]}"#.to_vec()),
        6 => {
            let len = u.int_in_range(0..=u.len().min(48))?;
            (Some(200), u.bytes(len)?.to_vec())
        }
        _ => (*u.choose(&[None, Some(500), Some(502), Some(503), Some(504), Some(404)])?, b"oops".to_vec()),
    };
    Ok(answer)
}

/// One record of an answer (`exists, code, start, end, used, grant_used,
/// grant, warned, flags`): absent, or in the call's window (a charge carries
/// it) or any other, with usage small or huge.
fn record(u: &mut Unstructured, call: Option<&Call>) -> arbitrary::Result<Vec<i64>> {
    if u.ratio(1, 4)? {
        return Ok(vec![0; RECORD_FIELDS]);
    }
    let arg = |i: usize| call.and_then(|c| c.command.args.get(i)).and_then(|a| a.parse::<i64>().ok());
    let window = match (call.map(|c| c.command.op()), arg(4), arg(5), arg(6)) {
        (Some("charge" | "charge_stack"), Some(code), Some(start), Some(end)) if u.ratio(3, 4)? => [code, start, end],
        _ => [u.int_in_range(0..=9)?, u.int_in_range(0..=2_000_000_000)?, u.int_in_range(0..=2_000_000_000)?],
    };
    let used = *u.choose(&[0, 1, 5, 99, 1_000, 100_000, i64::MAX, -1])?;
    let grant_used = u.int_in_range(0..=used.clamp(0, 10))?;
    let grant = *u.choose(&[0, 3, 40, i64::MAX])?;
    Ok(vec![
        1,
        window[0],
        window[1],
        window[2],
        used,
        grant_used,
        grant,
        u.int_in_range(0..=8)?,
        u.int_in_range(0..=3)?,
    ])
}

/// A member cap's record: the cap `asked` for, or any (0, 1 and the
/// largest among them).
fn cap_record(u: &mut Unstructured, asked: Option<i64>) -> arbitrary::Result<Vec<i64>> {
    let cap = match asked {
        Some(cap) if u.ratio(3, 4)? => cap,
        _ => *u.choose(&[0, 1, 2, 5, 40, 9_007_199_254_740_991])?,
    };
    let code = i64::from(quota_core::member_cap::MEMBER_CAP_CODE);
    Ok(vec![1, code, 0, 9_007_199_254_740_991, cap, 0, 0, 0, 0])
}

/// Whether webdis's answer holds records (what the exchange can decide from).
fn redis_readable(status: Option<u16>, body: &[u8]) -> bool {
    status == Some(200)
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("EVALSHA").or_else(|| v.get("EVAL")).and_then(Value::as_array).cloned())
            .is_some_and(|a| a.first().is_some_and(Value::is_i64))
}

/// What one exchange did so far, and the assertions on each step.
struct Watch<'c> {
    config: &'c Config,
    /// Where this exchange's notes start in the host's.
    first_note: usize,
    /// The request was answered here.
    replied: bool,
    /// Calls asked for and not yet answered.
    out: Vec<Call>,
    /// The body size the exchange last asked to read.
    asked: Option<usize>,
    /// The charged counter's usage once the request was decided (shared data).
    used_at_decision: Option<(String, u64)>,
}

impl<'c> Watch<'c> {
    fn new(config: &'c Config, first_note: usize) -> Self {
        Watch { config, first_note, replied: false, out: Vec::new(), asked: None, used_at_decision: None }
    }

    fn notes<'n>(&self, host: &'n MemoryHost<&FuzzStore>) -> &'n [Noted] {
        host.notes.get(self.first_note..).unwrap_or_default()
    }

    /// A call the exchange asked for (most often), or none (an answer to a
    /// call never made).
    fn pick_call(&mut self, u: &mut Unstructured) -> arbitrary::Result<Option<Call>> {
        if self.out.is_empty() || u.ratio(1, 8)? {
            return Ok(None);
        }
        let i = u.choose_index(self.out.len())?;
        Ok(Some(self.out.swap_remove(i)))
    }

    /// Checks a step the exchange returned, then what it left behind.
    fn stepped(
        &mut self,
        x: &Exchange,
        host: &MemoryHost<&FuzzStore>,
        step: Step,
        sent: &mut HashMap<String, Vec<String>>,
        tally: &mut Tally,
    ) {
        let config = self.config;
        check_edits(&step.edits);
        if self.replied {
            // Answered, it stays answered: the request goes no further.
            assert_eq!(step.next, Next::Pause, "a step after the reply");
            assert!(step.edits.is_empty(), "edits after the reply: {:?}", step.edits);
            assert!(x.response_headers().is_none() && !x.corrects_charge(), "admitted after the reply");
        }
        match step.next {
            Next::Reply(reply) => {
                check_reply(&reply);
                self.replied = true;
                tally.replies += 1;
                assert!(x.response_headers().is_none(), "response headers for a request answered here");
            }
            Next::Call(calls) => {
                assert!(config.counters.exact_redis().is_some(), "a call to Redis without its exact mode: {calls:?}");
                assert!(!calls.is_empty(), "a call step without calls");
                tally.calls += calls.len() as u64;
                for call in calls {
                    tally.stacked += u64::from(call.command.op() == "charge_stack");
                    tally.capped += u64::from(call.command.member_cap_key().is_some() || call.command.op() == "cap");
                    tally.leases += u64::from(call.command.op() == "lease");
                    if let (Some(id), "charge" | "charge_stack") = (call.command.id(), call.command.op()) {
                        // Counters and their markers alternate (a member cap's key may follow).
                        let counters = call.command.keys.chunks_exact(2).filter_map(|p| p.first().cloned()).collect();
                        sent.insert(id.to_string(), counters);
                    }
                    self.out.retain(|c| c.n != call.n);
                    self.out.push(call);
                }
            }
            Next::ReadBody(n) => {
                self.asked = Some(n);
                tally.body_reads += 1;
            }
            Next::Continue | Next::Pause => {}
        }
        self.unstepped(x, host);
    }

    /// After any event: the headers a forwarded request's response gets, a
    /// single decision, and the counter as it stood when decided.
    fn unstepped(&mut self, x: &Exchange, host: &MemoryHost<&FuzzStore>) {
        if let Some(headers) = x.response_headers() {
            check_headers(headers);
        }
        let notes = self.notes(host);
        let decisions: Vec<_> = notes
            .iter()
            .filter_map(|n| match n {
                Noted::Decided { decision, .. } => Some(decision),
                _ => None,
            })
            .collect();
        assert!(decisions.len() <= 1, "a request decided {} times", decisions.len());
        if let (Some(d), None, None) = (decisions.first(), &self.used_at_decision, self.config.counters.exact_redis()) {
            if let Some(key) = &d.key {
                if let Some(used) = used(self.config, host, key) {
                    self.used_at_decision = Some((key.clone(), used));
                }
            }
        }
    }

    /// The stream is over: its corrections, in notes and in the counter.
    fn ends(&self, host: &MemoryHost<&FuzzStore>, tally: &mut Tally) {
        let config = self.config;
        let notes = self.notes(host);
        report(config, notes, host.now_ms);
        tally.corrections += check_corrections(config, notes) as u64;
        let Some(d) = notes.iter().find_map(|n| match n {
            Noted::Decided { decision, .. } => Some(decision),
            _ => None,
        }) else {
            return;
        };
        tally.decisions += 1;
        tally.stacked += u64::from(!d.others.is_empty());
        tally.money += u64::from(config.currency_of(d.class).is_some());
        // In shared data the correction is the counter's own move.
        if let (Some((key, before)), Outcome::Charged(c)) = (&self.used_at_decision, &d.outcome) {
            if let Some(after) = used(config, host, key) {
                let moved = i128::from(after) - i128::from(*before);
                let room = i128::from(engine::correction_room(config, d));
                assert!(
                    moved >= -i128::from(c.cost) && moved <= room,
                    "the counter moved {moved} after a charge of {} with room {room}",
                    c.cost
                );
                if moved != 0 {
                    tally.corrections += 1;
                }
            }
        }
    }
}

/// The usage a counter records in the host's shared data, if it can be read.
fn used(config: &Config, host: &MemoryHost<&FuzzStore>, key: &str) -> Option<u64> {
    let table = config.counters.table(host.store, host.now_ms);
    let (bytes, _) = table.get(key).ok()??;
    Counter::decode(&bytes).map(|c| c.used)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same driver as the `exchange` fuzz target, over deterministic
    /// pseudo-random inputs (xorshift), so every test run checks the
    /// invariants on a few thousand sequences without cargo-fuzz.
    #[test]
    fn random_event_sequences_keep_the_exchange_invariants() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut total = Tally::default();
        for _ in 0..8_000 {
            let len = 16 + (next() % 600) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            total.add(&run(&data));
        }
        println!("{total:?}");
        // The inputs reach every path the invariants are about.
        assert!(total.exchanges > 8_000, "{total:?}");
        assert!(total.decisions > 500 && total.replies > 500 && total.after_reply > 500, "{total:?}");
        assert!(total.calls > 200 && total.answers > 100 && total.cancels > 0, "{total:?}");
        assert!(total.stacked > 50, "{total:?}");
        assert!(total.money > 20, "{total:?}");
        assert!(total.capped > 5, "{total:?}");
        assert!(total.leases > 20, "{total:?}");
        assert!(total.corrections > 20 && total.body_reads > 100, "{total:?}");
    }
}
