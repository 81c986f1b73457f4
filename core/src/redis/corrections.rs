//! The queue of corrections a worker owes Redis: refunds, reported token
//! usage, cancels of charges whose answer never came, and the approximate
//! mode's syncs. No I/O here: the filter sends what [`Corrections::next_due`]
//! hands it, reports the token ([`Corrections::sent`]) and then the answer
//! ([`Corrections::answered`]); this value decides what is retried, when, and
//! what is given up.
//!
//! Every correction carries an id the script remembers (see
//! [`super::Command::adjust`]), so a retry after a timeout, when the first
//! attempt may have applied, changes nothing the second time: a correction
//! applies exactly once, or is dropped and reported ([`Dropped`]).
//!
//! The schedule: a correction is sent as soon as it is queued; a failed
//! attempt is retried after [`FIRST_RETRY_MS`], doubling up to
//! [`MAX_RETRY_MS`] between attempts, until [`GIVE_UP_AFTER_MS`] after it was
//! queued. A Redis outage (a failover) shorter than that, less one retry
//! step, loses nothing.

use super::{Answer, CallError, Command};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Corrections waiting (to be sent, or for their next attempt), at most.
pub const MAX_QUEUED: usize = 10_000;
/// Corrections in flight, at most.
pub const MAX_IN_FLIGHT: usize = 64;
/// The wait before the first retry; each further retry waits twice as long...
pub const FIRST_RETRY_MS: i64 = 100;
/// ...up to this.
pub const MAX_RETRY_MS: i64 = 5_000;
/// A correction not applied this long after it was queued is dropped.
pub const GIVE_UP_AFTER_MS: i64 = 120_000;
/// The approximate mode's counters with units not synced yet, at most: a
/// new counter's units past this are dropped (and counted) while Redis is away.
pub const MAX_UNSYNCED: usize = 10_000;

// The script remembers an id longer than any attempt with it can reach Redis
// (the longest call timeout the config allows is 10 s).
const _: () = assert!(GIVE_UP_AFTER_MS + MAX_RETRY_MS + 10_000 < super::REMEMBERED_S * 1000);

/// The wait after failed attempt number `attempts` (1 for the first).
pub fn backoff_ms(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_RETRY_MS << doublings).min(MAX_RETRY_MS)
}

/// One correction and what the filter keeps with it (`T`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending<T> {
    pub command: Command,
    pub tag: T,
    /// Send the script itself (EVAL): Redis said it had lost it.
    pub load: bool,
    /// When it was queued, Unix milliseconds.
    pub queued_ms: i64,
    /// Attempts sent so far.
    pub attempts: u32,
}

/// Why a correction was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full: the oldest correction made room for a new one.
    QueueFull,
    /// Every attempt failed for [`GIVE_UP_AFTER_MS`]; the last one said `why`.
    GaveUp { why: String },
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::QueueFull => write!(f, "the queue was full ({MAX_QUEUED} corrections waiting)"),
            DropReason::GaveUp { why } => {
                write!(f, "every attempt failed for {} s, the last with: {why}", GIVE_UP_AFTER_MS / 1000)
            }
        }
    }
}

/// A correction given up: never applied (or applied by an attempt whose
/// answer was lost). The filter counts it and reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped<T> {
    pub pending: Pending<T>,
    pub reason: DropReason,
}

/// What an answer meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered<T> {
    /// Not a call of this queue.
    NotOurs,
    /// Applied (or found already applied).
    Done { pending: Pending<T>, answer: Answer },
    /// Redis had lost the script: sent again at once, with it.
    Reload,
    /// Failed; attempted again in `after_ms`.
    Retry { attempts: u32, after_ms: i64, why: String },
    /// Failed, and out of time.
    Dropped(Dropped<T>),
}

/// The corrections of one worker.
#[derive(Debug)]
pub struct Corrections<T> {
    /// To send now, oldest first.
    ready: VecDeque<Pending<T>>,
    /// Waiting for their next attempt, by (due time, arrival).
    later: BTreeMap<(i64, u64), Pending<T>>,
    in_flight: HashMap<u32, Pending<T>>,
    arrivals: u64,
}

impl<T> Default for Corrections<T> {
    fn default() -> Self {
        Corrections { ready: VecDeque::new(), later: BTreeMap::new(), in_flight: HashMap::new(), arrivals: 0 }
    }
}

impl<T> Corrections<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Corrections waiting (not in flight).
    pub fn queued(&self) -> usize {
        self.ready.len() + self.later.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues a correction to send at once. When the queue is full, the
    /// correction queued longest ago makes room, and comes back to be reported.
    pub fn push(&mut self, command: Command, tag: T, load: bool, now_ms: i64) -> Option<Dropped<T>> {
        let dropped = if self.queued() >= MAX_QUEUED { self.pop_oldest() } else { None };
        self.ready.push_back(Pending { command, tag, load, queued_ms: now_ms, attempts: 0 });
        dropped.map(|pending| Dropped { pending, reason: DropReason::QueueFull })
    }

    fn pop_oldest(&mut self) -> Option<Pending<T>> {
        let later = self.later.iter().min_by_key(|(_, p)| p.queued_ms).map(|(k, p)| (*k, p.queued_ms));
        match (self.ready.front().map(|p| p.queued_ms), later) {
            (Some(r), Some((_, l))) if l < r => later.and_then(|(k, _)| self.later.remove(&k)),
            (Some(_), _) => self.ready.pop_front(),
            (None, Some((k, _))) => self.later.remove(&k),
            (None, None) => None,
        }
    }

    /// The next correction to send at `now_ms`, while fewer than
    /// [`MAX_IN_FLIGHT`] are out: fresh ones first, then retries that are due.
    pub fn next_due(&mut self, now_ms: i64) -> Option<Pending<T>> {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let mut next = match self.ready.pop_front() {
            Some(p) => p,
            None => {
                let (&(due, arrival), _) = self.later.first_key_value()?;
                if due > now_ms {
                    return None;
                }
                self.later.remove(&(due, arrival))?
            }
        };
        next.attempts += 1;
        Some(next)
    }

    /// Whether call `token` is one of this queue's.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.contains_key(&token)
    }

    /// `pending` went out under `token`.
    pub fn sent(&mut self, token: u32, pending: Pending<T>) {
        self.in_flight.insert(token, pending);
    }

    /// `pending` could not even be sent (`why`): a failed attempt.
    pub fn not_sent(&mut self, pending: Pending<T>, why: String, now_ms: i64) -> Answered<T> {
        self.failed(pending, why, now_ms)
    }

    /// The answer to call `token`.
    pub fn answered(&mut self, token: u32, result: Result<Answer, CallError>, now_ms: i64) -> Answered<T> {
        let Some(mut pending) = self.in_flight.remove(&token) else { return Answered::NotOurs };
        match result {
            Ok(answer) => Answered::Done { pending, answer },
            Err(CallError::NoScript) if !pending.load => {
                // Not a failed attempt: Redis answered, without the script.
                pending.load = true;
                pending.attempts -= 1;
                self.ready.push_front(pending);
                Answered::Reload
            }
            Err(CallError::NoScript) => self.failed(pending, "NOSCRIPT after sending the script".into(), now_ms),
            Err(CallError::Failed(why) | CallError::Refused(why)) => self.failed(pending, why, now_ms),
        }
    }

    fn failed(&mut self, pending: Pending<T>, why: String, now_ms: i64) -> Answered<T> {
        let after_ms = backoff_ms(pending.attempts);
        let due = now_ms.saturating_add(after_ms);
        if due.saturating_sub(pending.queued_ms) > GIVE_UP_AFTER_MS {
            return Answered::Dropped(Dropped { pending, reason: DropReason::GaveUp { why } });
        }
        let attempts = pending.attempts;
        self.arrivals += 1;
        self.later.insert((due, self.arrivals), pending);
        Answered::Retry { attempts, after_ms, why }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::{Command, REMEMBERED_S};

    fn refund(id: &str) -> Command {
        Command::adjust("quota:{u:a}drafts".into(), 100, -1, 9, id)
    }

    fn answer() -> Answer {
        Answer { before: None, after: None }
    }

    fn timeout() -> Result<Answer, CallError> {
        Err(CallError::Failed("no answer".into()))
    }

    /// Sends every due correction under consecutive tokens from `token`; returns them.
    fn send_due(q: &mut Corrections<()>, now: i64, token: &mut u32) -> Vec<(u32, Command)> {
        let mut sent = Vec::new();
        while let Some(p) = q.next_due(now) {
            *token += 1;
            sent.push((*token, p.command.clone()));
            q.sent(*token, p);
        }
        sent
    }

    #[test]
    fn a_correction_is_due_at_once_and_done_when_answered() {
        let mut q = Corrections::new();
        assert_eq!(q.push(refund("v.1"), (), false, 0), None);
        let mut token = 0;
        let sent = send_due(&mut q, 0, &mut token);
        assert_eq!(sent, vec![(1, refund("v.1"))]);
        assert!(matches!(q.answered(1, Ok(answer()), 5), Answered::Done { .. }));
        assert_eq!((q.queued(), q.in_flight()), (0, 0));
        assert_eq!(q.answered(1, Ok(answer()), 5), Answered::NotOurs);
    }

    #[test]
    fn retries_back_off_and_resend_the_same_id() {
        let mut q = Corrections::new();
        q.push(refund("v.7"), (), false, 0);
        let mut token = 0;
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let sent = send_due(&mut q, now, &mut token);
            assert_eq!(sent.len(), 1, "one attempt at {now}");
            assert_eq!(sent[0].1.id(), Some("v.7"), "the same id every time");
            let Answered::Retry { after_ms, .. } = q.answered(token, timeout(), now) else { panic!("not retried") };
            // Nothing is due before the wait is over.
            assert!(send_due(&mut q, now + after_ms - 1, &mut token).is_empty());
            waits.push(after_ms);
            now += after_ms;
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn a_failover_of_110_s_loses_nothing_and_a_longer_outage_drops_and_says_why() {
        // Redis answers nothing for `outage_ms`, each attempt failing after `timeout_ms`.
        let run = |outage_ms: i64, timeout_ms: i64| {
            let mut q = Corrections::new();
            q.push(refund("v.1"), (), false, 0);
            let (mut token, mut now) = (0, 0);
            loop {
                if send_due(&mut q, now, &mut token).is_empty() {
                    now += 50; // the tick
                    continue;
                }
                let sent_at = now;
                now += timeout_ms;
                let result = if sent_at < outage_ms { timeout() } else { Ok(answer()) };
                match q.answered(token, result, now) {
                    Answered::Done { .. } => return Ok(now),
                    Answered::Dropped(d) => return Err(d.reason),
                    _ => {}
                }
            }
        };
        // The fastest and the slowest call timeouts the config allows.
        for timeout_ms in [1, 200, 10_000] {
            for outage_s in [1, 30, 60, 90, 110] {
                let done = run(outage_s * 1000, timeout_ms);
                assert!(done.is_ok(), "a {outage_s} s outage, {timeout_ms} ms timeouts: {done:?}");
            }
            let Err(DropReason::GaveUp { why }) = run(GIVE_UP_AFTER_MS, timeout_ms) else { panic!("kept retrying") };
            assert_eq!(why, "no answer");
        }
    }

    #[test]
    fn the_script_remembers_ids_longer_than_anything_is_retried() {
        let lua = crate::redis::SCRIPT;
        assert!(lua.contains(&format!("local REMEMBER = {REMEMBERED_S}\n")), "quota.lua's REMEMBER");
    }

    #[test]
    fn noscript_resends_with_the_script_without_counting_an_attempt() {
        let mut q = Corrections::new();
        q.push(refund("v.1"), (), false, 0);
        let mut token = 0;
        send_due(&mut q, 0, &mut token);
        assert_eq!(q.answered(1, Err(CallError::NoScript), 1), Answered::Reload);
        let p = q.next_due(1).unwrap();
        assert!(p.load);
        assert_eq!(p.attempts, 1);
        q.sent(2, p);
        // A NOSCRIPT after sending the script is a failure, not a loop.
        assert!(matches!(q.answered(2, Err(CallError::NoScript), 2), Answered::Retry { .. }));
    }

    #[test]
    fn in_flight_calls_are_bounded() {
        let mut q = Corrections::new();
        for i in 0..MAX_IN_FLIGHT + 5 {
            q.push(refund(&format!("v.{i}")), (), false, 0);
        }
        let mut token = 0;
        assert_eq!(send_due(&mut q, 0, &mut token).len(), MAX_IN_FLIGHT);
        assert_eq!(q.queued(), 5);
        q.answered(1, Ok(answer()), 1);
        assert_eq!(send_due(&mut q, 1, &mut token).len(), 1, "an answer makes room for one");
    }

    #[test]
    fn a_full_queue_hands_back_the_oldest_correction() {
        let mut q = Corrections::new();
        for i in 0..MAX_QUEUED {
            assert_eq!(q.push(refund(&format!("v.{i}")), i, false, i as i64), None);
        }
        let dropped = q.push(refund("v.new"), MAX_QUEUED, false, MAX_QUEUED as i64).unwrap();
        assert_eq!((dropped.pending.tag, dropped.reason), (0, DropReason::QueueFull));
        assert_eq!(q.queued(), MAX_QUEUED);
        // A retry waiting for its turn is older than anything queued after it.
        let mut q = Corrections::new();
        q.push(refund("v.old"), "old", false, 0);
        let p = q.next_due(0).unwrap();
        q.sent(1, p);
        q.answered(1, timeout(), 10);
        for i in 1..MAX_QUEUED {
            q.push(refund(&format!("v.{i}")), "new", false, 10 + i as i64);
        }
        let dropped = q.push(refund("v.last"), "last", false, 1_000_000).unwrap();
        assert_eq!(dropped.pending.tag, "old");
    }
}
