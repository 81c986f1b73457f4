//! Counters in Redis, for many Envoys sharing one quota: the commands the
//! filter sends (through an HTTP front to Redis such as webdis) and how it
//! reads their answers. No I/O here: the filter pauses the request, sends
//! [`Command::body`] with an HTTP callout and hands the answer to [`parse`].
//!
//! Each operation is one call of one Lua script (`redis/quota.lua`), atomic
//! in Redis: the whole check-and-charge of a request, a correction, a grant,
//! a read. Charges and corrections carry an id ([`Ids`]) that the script
//! remembers beside the counter, so a correction retried after a timeout
//! applies once and a charge whose answer never came can be cancelled once
//! ([`Command::cancel`]); [`corrections`] is the queue that retries them.
//! The script answers the record before and after it ran; the filter
//! recomputes the decision from the "before" record with the same pure
//! [`decide`](crate::decide::decide) the local store runs, so headers, bodies
//! and events are built exactly as in local mode, and checks the script's
//! "after" record against its own (a mismatch is counted and logged).

use crate::config::{Limits, RedisStore};
use crate::counter::Counter;
use crate::identity::ScopeKind;
use crate::units::{add, bounded};
use crate::window::Alignment;
use serde_json::Value;
use std::fmt::Write as _;

pub mod corrections;
pub mod stack;
pub mod sync;

/// The Lua script every operation calls.
pub const SCRIPT: &str = include_str!("redis/quota.lua");

/// How long the script remembers an operation's id (its `REMEMBER`), in
/// seconds: longer than any correction is retried
/// ([`corrections::GIVE_UP_AFTER_MS`]) plus the longest call timeout.
pub const REMEMBERED_S: i64 = 300;

/// The Redis key of the counter of (`kind`, `id`) for class `class`. The
/// scope is the hash tag, so every counter of one user (or workspace) lives
/// in the same Redis Cluster slot; class names never contain `}`, so the
/// last `}` ends the id and no two counters share a key.
pub fn key(prefix: &str, class: &str, kind: ScopeKind, id: &str) -> String {
    format!("{prefix}{{{}:{id}}}{class}", kind.letter())
}

/// The key of an operation's marker: the counter's key, `#` and the
/// operation's id. Appended to the key, the id keeps the counter's hash tag
/// (Redis reads the tag from the first `{` to the next `}`), so the marker
/// lives in the counter's Redis Cluster slot; class names never contain `#`,
/// so no marker is another counter's key.
pub fn marker(key: &str, id: &str) -> String {
    format!("{key}#{id}")
}

/// A counter's key and the marker of operation `id` on it.
fn marked(key: String, id: &str) -> Vec<String> {
    let m = marker(&key, id);
    vec![key, m]
}

/// The arguments every charge starts with: the operation, the time, the
/// cost (at most [`crate::units::MAX_UNITS`], as `decide` reads it) and
/// whether the caller confirmed it.
fn charge_args(op: &str, cost: u64, confirmed: bool, now: i64) -> Vec<String> {
    vec![op.to_string(), now.to_string(), bounded(cost).to_string(), if confirmed { "1" } else { "0" }.to_string()]
}

/// The most warning levels a counter records (one bit each in `w`).
const MAX_LEVELS: usize = 8;

/// Appends what the script decides one counter's charge with (its
/// `limit_at`): the window's code and the caller's calendar window for
/// `now`, the hard limit, the cap past it, `confirm_above`, the pace rule
/// (-1 for what the cell has not), the request ceiling
/// ([`Limits::request_ceiling`]), then how many warning levels follow and
/// the levels.
fn push_limit(args: &mut Vec<String>, limits: &Limits, now: i64, align: Alignment) {
    let fresh = limits.window.window_at(now, align);
    let optional = |v: Option<String>| v.unwrap_or_else(|| "-1".to_string());
    let levels = limits.warn_levels.len().min(MAX_LEVELS);
    args.extend([
        limits.window.code().to_string(),
        fresh.start.to_string(),
        fresh.end.to_string(),
        limits.hard.to_string(),
        optional(limits.beyond_hard_cap().map(|c| c.to_string())),
        optional(limits.confirm_above.map(|f| f.to_string())),
        optional(limits.pace.map(|p| p.used.to_string())),
        optional(limits.pace.map(|p| p.before.to_string())),
        limits.request_ceiling().to_string(),
        levels.to_string(),
    ]);
    args.extend(limits.warn_levels.iter().take(levels).map(u64::to_string));
}

/// The hash tag Redis Cluster places `key` by: what lies between its first
/// `{` and the next `}` when that is not empty, else the whole key. Keys
/// with the same tag live in the same slot, so one script call may read them all.
pub fn hash_tag(key: &str) -> &str {
    let Some(open) = key.find('{') else { return key };
    match key[open + 1..].find('}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// `keys` grouped by hash tag, in order of first appearance: one
/// [`Command::view`] per group reads them all.
pub fn by_slot(keys: Vec<String>) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for key in keys {
        match groups.iter_mut().find(|g| g.first().is_some_and(|k| hash_tag(k) == hash_tag(&key))) {
            Some(group) => group.push(key),
            None => groups.push(vec![key]),
        }
    }
    groups
}

/// Ids of charges and corrections: unique per Envoy VM (a prefix drawn at
/// random when the VM configures) and per operation (a sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    prefix: String,
    next: u64,
}

impl Ids {
    /// Ids of the VM that drew `seed` (48 bits of it name the VM).
    pub fn new(seed: u64) -> Ids {
        Ids { prefix: format!("{:012x}", seed & 0xFFFF_FFFF_FFFF), next: 0 }
    }

    /// What names this VM in its ids.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next id: `<prefix>.<sequence, base 36>`.
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        let mut digits = Vec::new();
        let mut n = self.next;
        while n > 0 {
            digits.push(char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]));
            n /= 36;
        }
        let mut id = self.prefix.clone();
        id.push('.');
        id.extend(digits.iter().rev());
        id
    }
}

/// What a counter's key names: its scope kind, the scope's id and the
/// class (the inverse of [`key`] under `prefix`); `None` for another key. A
/// stacked cell's counter ([`crate::engine::stacked_key`]: the widest
/// scope's key, `@`, the limit's window code and scope letter, then `\u{1f}`
/// and the counter's own scope when it is narrower) names its own scope.
pub fn describe<'k>(key: &'k str, prefix: &str) -> Option<(ScopeKind, &'k str, &'k str)> {
    // No id holds a control character: the first one ends the tag's key.
    let (key, own) = match key.split_once('\u{1f}') {
        Some((key, own)) => (key, Some(own)),
        None => (key, None),
    };
    let rest = key.strip_prefix(prefix)?.strip_prefix('{')?;
    let (scope, class) = rest.rsplit_once('}')?;
    // Class names hold no '@': one after the tag starts a stacked limit's part.
    let class = match class.split_once('@') {
        Some((class, limit)) if is_stacked_limit(limit) => class,
        Some(_) => return None,
        None if own.is_some() => return None,
        None => class,
    };
    let (kind, id) = own.unwrap_or(scope).split_once(':')?;
    let kind = match kind {
        "w" => ScopeKind::Workspace,
        "o" => ScopeKind::Organisation,
        "a" => ScopeKind::Anonymous,
        "u" => ScopeKind::User,
        _ => return None,
    };
    Some((kind, id, class))
}

/// Whether `part` is what a stacked limit's key adds after the class:
/// `<window code>.<scope letter>`.
fn is_stacked_limit(part: &str) -> bool {
    match part.split_once('.') {
        Some((code, letter)) => {
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) && matches!(letter, "u" | "w" | "o")
        }
        None => false,
    }
}

/// One call of the script: its keys (the counter first, then the
/// operation's marker; each counter of a stacked charge followed by its
/// marker, and a member cap's key last; a member cap; or the counters a
/// view reads) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl Command {
    /// The counter the command works on (a view's first).
    pub fn key(&self) -> &str {
        self.keys.first().map_or("", String::as_str)
    }

    /// The operation: `charge`, `charge_stack`, `adjust`, `cancel`, `add`, `grant`, `cap` or `view`.
    pub fn op(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    /// The id the operation carries (in its marker's key), if any.
    pub fn id(&self) -> Option<&str> {
        self.keys.get(1).filter(|_| self.op() != "view").and_then(|m| m.rsplit_once('#')).map(|(_, id)| id)
    }

    /// Charges `cost` units at `now` (Unix seconds): the script's mirror of
    /// `decide`. It carries the caller's calendar window for `now`; the
    /// script moves it past the stored window's end as
    /// [`current`](crate::decide::current) does. The cost is sent at most
    /// [`crate::units::MAX_UNITS`], as `decide` reads it. The script
    /// remembers what charge `id` took, for [`Command::cancel`].
    #[allow(clippy::too_many_arguments)]
    pub fn charge(
        key: String,
        limits: &Limits,
        cost: u64,
        confirmed: bool,
        now: i64,
        align: Alignment,
        id: &str,
    ) -> Command {
        let mut args = charge_args("charge", cost, confirmed, now);
        push_limit(&mut args, limits, now, align);
        Command { keys: marked(key, id), args }
    }

    /// Charges `cost` units at `now` to every counter of a stacked cell, or
    /// to none: `counters` are each limit's key and limits, in the order the
    /// core charges them (narrowest first), all of one hash tag (see
    /// [`crate::engine::stacked_key`]). The script decides each as
    /// [`Command::charge`] would, writes them only if all admit, and answers
    /// each counter's record before and after ([`parse_stack`]). Charge `id`
    /// marks every counter: [`Command::cancel`] on each key with that id
    /// gives back what it took there.
    pub fn charge_stack(
        counters: &[(String, &Limits)],
        cost: u64,
        confirmed: bool,
        now: i64,
        align: Alignment,
        id: &str,
    ) -> Command {
        let mut args = charge_args("charge_stack", cost, confirmed, now);
        let mut keys = Vec::with_capacity(counters.len() * 2);
        for (key, limits) in counters {
            keys.extend(marked(key.clone(), id));
            push_limit(&mut args, limits, now, align);
        }
        Command { keys, args }
    }

    /// Has a [`Command::charge_stack`] apply a member cap: `key` (the
    /// member's cap, see [`crate::member_cap::redis_key`], in the counters'
    /// slot) follows the counters and their markers as the last key, and the
    /// arguments end with the capped counter's position in the charge (from
    /// 0, sent from 1) and the most the cap may be
    /// ([`crate::member_cap::ceiling`]). The script reads the cap, applies it
    /// to that counter's limits as [`crate::member_cap::apply`] does, and
    /// answers the cap's record after the counters' ([`parse_stack`]).
    pub fn with_member_cap(mut self, key: String, counter: usize, ceiling: u64) -> Command {
        self.keys.push(key);
        self.args.push(counter.saturating_add(1).to_string());
        self.args.push(bounded(ceiling).to_string());
        self
    }

    /// The member cap a [`Command::charge_stack`] applies (see
    /// [`Command::with_member_cap`]): the last of an odd number of keys.
    pub fn member_cap_key(&self) -> Option<&str> {
        match self.keys.as_slice() {
            [.., last] if self.op() == "charge_stack" && self.keys.len() % 2 == 1 => Some(last),
            _ => None,
        }
    }

    /// Sets a member's cap at `key` ([`crate::member_cap::redis_key`]) to
    /// `cap` units, kept until cleared, or clears it (`None`: the key is
    /// deleted). Answered, as a correction is, with the record before and
    /// after ([`parse`]; the cap is [`crate::member_cap::of_record`]).
    pub fn cap(key: String, cap: Option<u64>) -> Command {
        let units = cap.map_or_else(|| "none".to_string(), |c| bounded(c).to_string());
        Command { keys: vec![key], args: vec!["cap".into(), units] }
    }

    /// Corrects a charge made in the window starting at `window_start` by
    /// `delta` units, adding at most `most` (see `decide::adjust`); applied
    /// once however often correction `id` is sent.
    pub fn adjust(key: String, window_start: i64, delta: i64, most: u64, id: &str) -> Command {
        let args = vec!["adjust".into(), window_start.to_string(), delta.to_string(), bounded(most).to_string()];
        Command { keys: marked(key, id), args }
    }

    /// Gives back what charge `id` took, once: nothing if it was refused or
    /// is already cancelled, and if it has not reached Redis yet, it never
    /// charges. For a charge whose answer never came.
    pub fn cancel(key: String, id: &str) -> Command {
        Command { keys: marked(key, id), args: vec!["cancel".into()] }
    }

    /// Adds `delta` units admitted elsewhere (the approximate mode's sync) to
    /// the window open at `now`, never refusing; applied once however often
    /// sync `id` is sent.
    pub fn add(key: String, limits: &Limits, delta: i64, now: i64, align: Alignment, id: &str) -> Command {
        let fresh = limits.window.window_at(now, align);
        let args = [
            "add".to_string(),
            now.to_string(),
            delta.to_string(),
            limits.window.code().to_string(),
            fresh.start.to_string(),
            fresh.end.to_string(),
        ];
        Command { keys: marked(key, id), args: args.to_vec() }
    }

    /// The lease mode's call (see [`crate::lease`]): holder `lease.holder`
    /// reports the units it spent in the window starting at
    /// `lease.spent_window`, gives back `lease.give` units it holds unspent
    /// (a release: applied once however often `id` is sent), or else is
    /// granted a block of at least `lease.need` units. Answered with
    /// [`parse_lease`].
    pub fn lease(
        key: String,
        limits: &Limits,
        now: i64,
        align: Alignment,
        lease: &LeaseArgs,
        id: Option<&str>,
    ) -> Command {
        let mut args = vec![
            "lease".to_string(),
            now.to_string(),
            bounded(lease.need).to_string(),
            lease.holder.clone(),
            bounded(lease.spent).to_string(),
            lease.spent_window.to_string(),
            bounded(lease.give).to_string(),
            lease.settings.fraction_ppm.to_string(),
            lease.settings.max_units.map_or_else(|| "-1".to_string(), |m| bounded(m).to_string()),
            lease.warned.to_string(),
            lease.flags.to_string(),
        ];
        push_limit(&mut args, limits, now, align);
        let keys = match id {
            Some(id) => marked(key, id),
            None => vec![key],
        };
        Command { keys, args }
    }

    /// Adds `units` of grant (the balance saturates at [`crate::units::MAX_UNITS`]).
    pub fn grant(key: String, units: u64) -> Command {
        Command { keys: vec![key], args: vec!["grant".into(), bounded(units).to_string()] }
    }

    /// Reads counters without changing them: keys of one hash tag (see
    /// [`by_slot`]), so Redis Cluster takes them in one call. Answered with
    /// [`parse_view`].
    pub fn view(keys: Vec<String>) -> Command {
        Command { keys, args: vec!["view".into()] }
    }

    /// The HTTP request body for webdis: `EVALSHA/<sha1>/<number of keys>/<key>.../<arg>...`,
    /// every part percent-encoded. With `load`, `EVAL/<script>/...` instead,
    /// which also puts the script in Redis's cache for the next EVALSHA.
    pub fn body(&self, sha1: &str, load: bool) -> String {
        let mut out = String::with_capacity(if load { SCRIPT.len() * 2 } else { 128 });
        if load {
            out.push_str("EVAL/");
            percent_encode(&mut out, SCRIPT);
        } else {
            out.push_str("EVALSHA/");
            out.push_str(sha1);
        }
        let _ = write!(out, "/{}", self.keys.len());
        for key in &self.keys {
            out.push('/');
            percent_encode(&mut out, key);
        }
        for arg in &self.args {
            out.push('/');
            percent_encode(&mut out, arg);
        }
        out
    }
}

/// The HTTP request headers of a call to the store's front.
pub fn request_headers(store: &RedisStore) -> Vec<(&str, &str)> {
    let mut headers = vec![
        (":method", "POST"),
        (":path", store.path.as_str()),
        (":authority", store.authority.as_str()),
        ("content-type", "text/plain"),
    ];
    if let Some(auth) = &store.authorization {
        headers.push(("authorization", auth.as_str()));
    }
    headers
}

fn percent_encode(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The approximate mode's merge: the local counter after Redis answered a
/// sync with the `global` counter. While both count the same kind of window
/// and the local one is still open, the local usage rises to the global
/// plan usage (other Envoys' requests) and never falls (requests of this
/// Envoy not synced yet). `None`: nothing to write.
pub fn merge(local: Option<Counter>, global: &Counter, now: i64) -> Option<Counter> {
    let mut c = local?.bounded();
    if c.window_code != global.window_code || now >= c.window_end || now >= global.window_end {
        return None;
    }
    let used = add(global.plan_used(), c.grant_used);
    (used > c.used).then(|| {
        c.used = used;
        c
    })
}

/// What the script answered: the record before and after the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub before: Option<Counter>,
    pub after: Option<Counter>,
}

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Redis does not have the script cached (a restart, a flush): send it with EVAL.
    NoScript,
    /// Refused before the script ran: an HTTP error from webdis or Envoy
    /// (Redis or webdis unreachable) other than a gateway timeout, or an
    /// error reply from Redis (read-only replica, out of memory, busy...).
    Refused(String),
    /// No usable answer, and the script may have run: no answer at all (a
    /// timeout, a reset), a gateway timeout, an answer that cannot be read.
    Failed(String),
}

impl CallError {
    /// Whether the script may have run (and, for a charge, charged).
    pub fn may_have_run(&self) -> bool {
        matches!(self, CallError::Failed(_))
    }

    /// Why, in words.
    pub fn why(&self) -> String {
        match self {
            CallError::NoScript => "Redis has no copy of the script".into(),
            CallError::Refused(why) | CallError::Failed(why) => why.clone(),
        }
    }
}

/// Reads an answer from webdis: HTTP `status`, JSON `body` such as
/// `{"EVALSHA":[1,3,...]}` (the two records, flat), or
/// `{"EVALSHA":[false,"NOSCRIPT ..."]}`.
pub fn parse(status: Option<u16>, body: &[u8]) -> Result<Answer, CallError> {
    let records = parse_records(status, body, 2)?;
    match records.as_slice() {
        [before, after] => Ok(Answer { before: *before, after: *after }),
        _ => Err(CallError::Failed("malformed answer: not two records".into())),
    }
}

/// The answer to a [`Command::charge_stack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackAnswer {
    /// Each counter's record before and after, in the order sent.
    pub counters: Vec<Answer>,
    /// The member cap the script applied: read from the cap's record when
    /// the call carried its key ([`Command::with_member_cap`]) and one is set.
    pub cap: Option<u64>,
}

impl From<Vec<Answer>> for StackAnswer {
    /// The answer of a charge that carried no member cap.
    fn from(counters: Vec<Answer>) -> StackAnswer {
        StackAnswer { counters, cap: None }
    }
}

/// Reads the answer to a [`Command::charge_stack`] of `counters` counters:
/// each counter's record before and after, in the order the counters were
/// sent, then, with `capped` (the call carried a member cap's key), the
/// cap's record.
pub fn parse_stack(status: Option<u16>, body: &[u8], counters: usize, capped: bool) -> Result<StackAnswer, CallError> {
    if counters == 0 {
        return Err(CallError::Failed("a stacked charge of no counter".into()));
    }
    let mut records = parse_records(status, body, counters.saturating_mul(2).saturating_add(usize::from(capped)))?;
    let cap = if capped { crate::member_cap::of_record(records.pop().flatten()) } else { None };
    let counters = records
        .chunks_exact(2)
        .filter_map(|pair| match *pair {
            [before, after] => Some(Answer { before, after }),
            _ => None,
        })
        .collect();
    Ok(StackAnswer { counters, cap })
}

/// Reads the answer to a queued correction: two records, or a lease
/// call's answer (a release), whose records are the counter's.
pub fn parse_correction(status: Option<u16>, body: &[u8]) -> Result<Answer, CallError> {
    match parse(status, body) {
        Err(CallError::Failed(why)) => parse_lease(status, body).map(|l| l.counter).map_err(|_| CallError::Failed(why)),
        other => other,
    }
}

/// What a [`Command::lease`] carries besides the counter's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseArgs {
    /// The Envoy asking (see [`crate::lease::holder`]).
    pub holder: String,
    /// Units the request in hand needs beyond what the holder holds (0: a
    /// renewal ahead of need, or a release).
    pub need: u64,
    /// Units the holder admitted in the window starting at `spent_window`.
    pub spent: u64,
    pub spent_window: i64,
    /// Units given back (a release; nothing is granted then).
    pub give: u64,
    pub settings: crate::config::Lease,
    /// The warning levels and once-per-window flags the holder reported.
    pub warned: u8,
    pub flags: u8,
}

/// The answer to a [`Command::lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAnswer {
    /// The record before, and after with its usage as spent so far (less
    /// every holder's unspent units).
    pub counter: Answer,
    /// Units granted by this call.
    pub granted_now: u64,
    /// This holder's units in the window: granted (less given back), and
    /// spent as it last reported.
    pub granted: u64,
    pub spent: u64,
    /// Units the other holders hold unspent.
    pub others_unspent: u64,
}

/// Reads the answer to a [`Command::lease`]: two records, then four numbers.
pub fn parse_lease(status: Option<u16>, body: &[u8]) -> Result<LeaseAnswer, CallError> {
    let numbers = parse_numbers(status, body, 2 * RECORD_FIELDS + 4)?;
    let malformed = || CallError::Failed("malformed lease answer".into());
    let (records, extra) = numbers.split_at(2 * RECORD_FIELDS);
    let before = record(records.get(..RECORD_FIELDS).ok_or_else(malformed)?).ok_or_else(malformed)?;
    let after = record(records.get(RECORD_FIELDS..).ok_or_else(malformed)?).ok_or_else(malformed)?;
    let unsigned: Option<Vec<u64>> = extra.iter().map(|n| u64::try_from(*n).ok()).collect();
    match unsigned.as_deref() {
        Some(&[granted_now, granted, spent, others_unspent]) => {
            Ok(LeaseAnswer { counter: Answer { before, after }, granted_now, granted, spent, others_unspent })
        }
        _ => Err(malformed()),
    }
}

/// Reads the answer to a [`Command::view`] of `keys` counters: one record
/// per key, in the order the keys were sent.
pub fn parse_view(status: Option<u16>, body: &[u8], keys: usize) -> Result<Vec<Option<Counter>>, CallError> {
    parse_records(status, body, keys)
}

/// The `count` records of an answer.
fn parse_records(status: Option<u16>, body: &[u8], count: usize) -> Result<Vec<Option<Counter>>, CallError> {
    if count == 0 {
        return Err(CallError::Failed("an answer of no record".into()));
    }
    let numbers = parse_numbers(status, body, count * RECORD_FIELDS)?;
    let malformed = || CallError::Failed("malformed answer: a record out of range".into());
    numbers.chunks_exact(RECORD_FIELDS).map(|n| record(n).ok_or_else(malformed)).collect()
}

/// The `count` numbers of an answer (an error reply, a NOSCRIPT or another
/// count is an error).
fn parse_numbers(status: Option<u16>, body: &[u8], count: usize) -> Result<Vec<i64>, CallError> {
    let failed = |why: String| Err(CallError::Failed(why));
    let status_text = |s: u16| format!("HTTP status {s}: {}", String::from_utf8_lossy(truncate(body, 200)));
    match status {
        None => return failed("no answer (timeout or connection failure)".into()),
        Some(200) => {}
        // The front waited for Redis and gave up: the call may have run.
        Some(s @ 504) => return failed(status_text(s)),
        Some(s) => return Err(CallError::Refused(status_text(s))),
    }
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return failed(format!("not a JSON object: {}", String::from_utf8_lossy(truncate(body, 200))));
    };
    let Some(value) = doc.get("EVALSHA").or_else(|| doc.get("EVAL")) else {
        return failed("no EVALSHA or EVAL member in the answer".into());
    };
    let malformed = || CallError::Failed(format!("malformed answer: {}", truncate_str(&value.to_string(), 200)));
    match value.as_array().map(Vec::as_slice) {
        Some([Value::Bool(false), Value::String(error)]) if error.starts_with("NOSCRIPT") => Err(CallError::NoScript),
        Some([Value::Bool(false), Value::String(error)]) if refused_by_redis(error) => {
            Err(CallError::Refused(format!("Redis error: {error}")))
        }
        // Another error reply comes from a proxy on the way (Envoy's
        // redis_proxy answers "upstream failure" when a master dies with
        // the call): the script may have run before the connection went.
        Some([Value::Bool(false), Value::String(error)]) => {
            Err(CallError::Failed(format!("error on the way to Redis: {error}")))
        }
        Some(fields) if fields.len() == count => {
            let numbers: Option<Vec<i64>> = fields.iter().map(Value::as_i64).collect();
            numbers.ok_or_else(malformed)
        }
        _ => Err(malformed()),
    }
}

/// Whether an error reply is Redis's own refusal of a call it did not run:
/// its first word one of Redis's error codes (a script error, a read-only
/// replica, out of memory, a busy server, a login, a slot that moved...).
/// The script checks its arguments before it writes anything.
fn refused_by_redis(error: &str) -> bool {
    const CODES: [&str; 19] = [
        "ERR",
        "WRONGTYPE",
        "OOM",
        "BUSY",
        "READONLY",
        "NOPERM",
        "NOAUTH",
        "WRONGPASS",
        "CLUSTERDOWN",
        "MOVED",
        "ASK",
        "TRYAGAIN",
        "LOADING",
        "MASTERDOWN",
        "MISCONF",
        "NOREPLICAS",
        "EXECABORT",
        "CROSSSLOT",
        "NOSCRIPT",
    ];
    let code = error.split(' ').next().unwrap_or("");
    CODES.contains(&code)
}

/// Numbers per record in an answer: `exists, c, s, e, u, g, b, w, f`.
pub const RECORD_FIELDS: usize = 9;

/// One record of an answer as a counter: `Some(None)` when it did not exist,
/// `None` when a field is out of range.
pub fn record(n: &[i64]) -> Option<Option<Counter>> {
    let [exists, code, start, end, used, grant_used, grant, warned, flags] = *n else { return None };
    if exists == 0 {
        return Some(None);
    }
    Some(Some(Counter {
        window_code: u32::try_from(code).ok()?,
        window_start: start,
        window_end: end,
        used: u64::try_from(used).ok()?,
        grant_used: u64::try_from(grant_used).ok()?,
        grant: u64::try_from(grant).ok()?,
        warned: u8::try_from(warned).ok()?,
        flags: u8::try_from(flags).ok()?,
    }))
}

fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

fn truncate_str(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The SHA-1 of `data` in lowercase hex: what Redis names a cached script by.
pub fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(v);
        }
    }
    h.iter().fold(String::with_capacity(40), |mut s, v| {
        let _ = write!(s, "{v:08x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(sha1_hex(&[b'a'; 1000]), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
    }

    #[test]
    fn keys_tag_the_scope_for_redis_cluster() {
        assert_eq!(key("quota:", "drafts", ScopeKind::User, "alice"), "quota:{u:alice}drafts");
        assert_eq!(key("", "research", ScopeKind::Workspace, "acme"), "{w:acme}research");
        // An id with braces: the class still follows the last '}'.
        assert_eq!(key("", "b", ScopeKind::User, "a}:c{"), "{u:a}:c{}b");
        assert_ne!(key("", "b", ScopeKind::User, "a}b"), key("", "b", ScopeKind::User, "a"));
    }

    #[test]
    fn bodies_percent_encode_every_part() {
        let c = Command::grant("quota:{u:a/b c}drafts".into(), 7);
        assert_eq!(c.body("abc", false), "EVALSHA/abc/1/quota%3A%7Bu%3Aa%2Fb%20c%7Ddrafts/grant/7");
        let c = Command::adjust("quota:{u:a/b c}drafts".into(), 100, -2, 7, "0a1b.2c");
        assert_eq!(
            c.body("abc", false),
            "EVALSHA/abc/2/quota%3A%7Bu%3Aa%2Fb%20c%7Ddrafts/quota%3A%7Bu%3Aa%2Fb%20c%7Ddrafts%230a1b.2c/adjust/100/-2/7"
        );
        let loaded = c.body("abc", true);
        assert!(loaded.starts_with("EVAL/--%20The%20quota"));
        assert!(loaded.ends_with(
            "/2/quota%3A%7Bu%3Aa%2Fb%20c%7Ddrafts/quota%3A%7Bu%3Aa%2Fb%20c%7Ddrafts%230a1b.2c/adjust/100/-2/7"
        ));
        assert!(!loaded.contains('\n'));
    }

    #[test]
    fn markers_share_the_counters_slot_and_name_the_operation() {
        for key in ["quota:{u:alice}drafts", "{w:acme}research", "{u:a}:c{}b", "quota:{u:}x"] {
            let charge = Command::cancel(key.into(), "00ff00ff00ff.z");
            assert_eq!(charge.keys, [key.to_string(), format!("{key}#00ff00ff00ff.z")]);
            assert_eq!(hash_tag(&charge.keys[1]), hash_tag(key), "{key}");
            assert_eq!((charge.key(), charge.op(), charge.id()), (key, "cancel", Some("00ff00ff00ff.z")));
        }
        assert_eq!(hash_tag("quota:{u:alice}drafts"), "u:alice");
        assert_eq!(hash_tag("{u:a}:c{}b"), "u:a");
        assert_eq!(hash_tag("quota:{}x"), "quota:{}x", "an empty tag is no tag");
        assert_eq!(Command::view(vec!["a".into(), "b".into()]).id(), None);
    }

    #[test]
    fn ids_are_unique_per_vm_and_operation() {
        let mut a = Ids::new(0x1234_5678_9abc_def0);
        let mut b = Ids::new(0x0000_5678_9abc_def1);
        assert_eq!(a.next_id(), "56789abcdef0.1");
        assert_eq!(b.next_id(), "56789abcdef1.1");
        let ids: std::collections::HashSet<String> = (0..5000).map(|_| a.next_id()).collect();
        assert_eq!(ids.len(), 5000);
        assert!(ids.contains("56789abcdef0.10"), "base 36: the 36th");
    }

    #[test]
    fn a_callers_keys_are_grouped_by_slot() {
        let keys = ["q:{u:ann}a", "q:{w:acme}b", "q:{u:ann}c", "q:{w:acme}d", "q:{u:ann}e"];
        let groups = by_slot(keys.iter().map(|k| k.to_string()).collect());
        assert_eq!(groups, vec![vec!["q:{u:ann}a", "q:{u:ann}c", "q:{u:ann}e"], vec!["q:{w:acme}b", "q:{w:acme}d"]]);
    }

    #[test]
    fn keys_describe_their_scope_and_class() {
        assert_eq!(describe("quota:{u:alice}drafts", "quota:"), Some((ScopeKind::User, "alice", "drafts")));
        assert_eq!(describe("{w:a}:c{}b", ""), Some((ScopeKind::Workspace, "a}:c{", "b")));
        assert_eq!(describe("other:{u:a}b", "quota:"), None);
        assert_eq!(describe("quota:{u:a@b}drafts", "quota:"), Some((ScopeKind::User, "a@b", "drafts")));
        // A stacked cell's counters name their own scope.
        let member = "quota:{w:acme}drafts@3.u\u{1f}u:ann";
        assert_eq!(describe(member, "quota:"), Some((ScopeKind::User, "ann", "drafts")));
        assert_eq!(describe("quota:{w:acme}drafts@3.w", "quota:"), Some((ScopeKind::Workspace, "acme", "drafts")));
        let odd = "quota:{o:a}@b}drafts@2147483738.w\u{1f}w:x}y@1.u";
        assert_eq!(describe(odd, "quota:"), Some((ScopeKind::Workspace, "x}y@1.u", "drafts")));
        assert_eq!(describe("quota:{w:acme}drafts@x.w", "quota:"), None);
        assert_eq!(describe("quota:{w:acme}drafts\u{1f}u:ann", "quota:"), None);
    }

    #[test]
    fn a_view_answers_one_record_per_key() {
        let body = br#"{"EVALSHA":[0,0,0,0,0,0,0,0,0,1,3,100,200,5,1,2,1,0,0,0,0,0,0,0,0,0,0]}"#;
        let records = parse_view(Some(200), body, 3).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!((records[0], records[2]), (None, None));
        assert_eq!(records[1].map(|c| c.used), Some(5));
        assert!(matches!(parse_view(Some(200), body, 2), Err(CallError::Failed(why)) if why.contains("malformed")));
    }

    #[test]
    fn a_capped_stacked_answer_ends_with_the_caps_record() {
        let counter = [1, 3, 100, 200, 5, 0, 0, 0, 0];
        let cap = [1, i64::from(crate::member_cap::MEMBER_CAP_CODE), 0, 9_007_199_254_740_991, 7, 0, 0, 0, 0];
        let body = |records: &[&[i64]]| json_body(&records.concat());
        let capped = parse_stack(Some(200), &body(&[&counter, &counter, &cap]), 1, true).unwrap();
        assert_eq!((capped.counters.len(), capped.cap), (1, Some(7)));
        // No cap set (an absent record, or one that is no cap): none applied.
        let unset = parse_stack(Some(200), &body(&[&counter, &counter, &[0; 9]]), 1, true).unwrap();
        assert_eq!(unset.cap, None);
        assert_eq!(parse_stack(Some(200), &body(&[&counter, &counter, &counter]), 1, true).unwrap().cap, None);
        // A capped call's answer without the cap's record cannot be read, nor the other way round.
        assert!(parse_stack(Some(200), &body(&[&counter, &counter]), 1, true).is_err());
        assert!(parse_stack(Some(200), &body(&[&counter, &counter, &cap]), 1, false).is_err());
        let command = Command::charge_stack(&[], 1, false, 0, Alignment::default(), "i.1");
        assert_eq!(command.member_cap_key(), None);
        let command = command.with_member_cap("k".into(), 0, 5);
        assert_eq!(
            (command.member_cap_key(), &command.args[command.args.len() - 2..]),
            (Some("k"), &["1".to_string(), "5".to_string()][..])
        );
        assert_eq!(Command::cap("k".into(), None).args, ["cap", "none"]);
        assert_eq!(Command::cap("k".into(), Some(u64::MAX)).args, ["cap", "9007199254740991"]);
    }

    fn json_body(numbers: &[i64]) -> Vec<u8> {
        format!("{{\"EVALSHA\":{}}}", serde_json::to_string(numbers).unwrap_or_default()).into_bytes()
    }

    #[test]
    fn answers_are_read_with_their_records() {
        let body = br#"{"EVALSHA":[0,0,0,0,0,0,0,0,0,1,3,100,200,5,1,2,1,0]}"#;
        let a = parse(Some(200), body).unwrap();
        assert_eq!(a.before, None);
        let after = a.after.unwrap();
        assert_eq!((after.window_code, after.window_start, after.window_end), (3, 100, 200));
        assert_eq!((after.used, after.grant_used, after.grant, after.warned, after.flags), (5, 1, 2, 1, 0));
    }

    #[test]
    fn a_sync_raises_the_local_usage_to_the_global_one_and_never_lowers_it() {
        let open = |used, grant_used| Counter {
            window_code: 3,
            window_start: 100,
            window_end: 200,
            used,
            grant_used,
            ..Counter::default()
        };
        // Other Envoys used 10 plan units; this one spent 2 grant units as well.
        assert_eq!(merge(Some(open(4, 2)), &open(10, 0), 150).map(|c| c.used), Some(12));
        assert_eq!(merge(Some(open(15, 0)), &open(10, 0), 150), None);
        assert_eq!(merge(None, &open(10, 0), 150), None);
        // Ended, or another kind of window: left alone.
        assert_eq!(merge(Some(open(4, 0)), &open(10, 0), 200), None);
        assert_eq!(merge(Some(open(4, 0)), &Counter { window_code: 5, ..open(10, 0) }, 150), None);
    }

    #[test]
    fn only_a_call_lost_after_reaching_redis_may_have_run() {
        let ran = |status, body: &[u8]| parse(status, body).err().map(|e| e.may_have_run());
        assert_eq!(ran(None, b""), Some(true), "a timeout");
        assert_eq!(ran(Some(504), b"upstream request timeout"), Some(true));
        assert_eq!(ran(Some(200), b"<html>"), Some(true), "an answer that cannot be read");
        assert_eq!(ran(Some(503), b"Service Unavailable"), Some(false), "webdis without Redis, or no webdis");
        let readonly = br#"{"EVALSHA":[false,"READONLY You can't write against a read only replica."]}"#;
        assert_eq!(ran(Some(200), readonly), Some(false));
        assert_eq!(ran(Some(200), br#"{"EVALSHA":[false,"NOSCRIPT No matching script."]}"#), Some(false));
        assert_eq!(ran(Some(200), br#"{"EVALSHA":[false,"ERR quota: malformed charge arguments"]}"#), Some(false));
        assert_eq!(ran(Some(200), br#"{"EVALSHA":[false,"CLUSTERDOWN The cluster is down"]}"#), Some(false));
        // Envoy's redis_proxy, when the master died with the call: it may have run there.
        assert_eq!(ran(Some(200), br#"{"EVALSHA":[false,"upstream failure"]}"#), Some(true));
        assert_eq!(ran(Some(200), br#"{"EVALSHA":[false,"no upstream host"]}"#), Some(true));
    }

    #[test]
    fn failures_say_what_went_wrong() {
        let noscript = br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#;
        assert_eq!(parse(Some(200), noscript), Err(CallError::NoScript));
        let err = |status, body: &[u8]| match parse(status, body) {
            Err(e @ (CallError::Failed(_) | CallError::Refused(_))) => e.why(),
            other => panic!("expected a failure, got {other:?}"),
        };
        assert!(err(None, b"").contains("no answer"));
        assert!(err(Some(503), b"down").contains("503"));
        assert!(err(Some(200), b"[]").contains("not a JSON object"));
        assert!(err(Some(200), br#"{"EVALSHA":[false,"ERR boom"]}"#).contains("ERR boom"));
        assert!(err(Some(200), br#"{"EVALSHA":[[1,2],[1]]}"#).contains("malformed"));
        assert!(err(Some(200), br#"{"EVALSHA":[1,3,0,0,-1,0,0,0,0,0,0,0,0,0,0,0,0,0]}"#).contains("malformed"));
        assert!(err(Some(200), br#"{"EVALSHA":[1,3,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,"x"]}"#).contains("malformed"));
        assert!(err(Some(200), br#"{"GET":"x"}"#).contains("no EVALSHA"));
    }
}
