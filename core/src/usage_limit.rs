//! How often the filter agrees to answer the usage endpoint.
//!
//! Reading one's usage is free: it charges no class, so a UI can poll a meter
//! without spending what it shows. Free is not unbounded: each read is work
//! (a shared-data read per class, or a Redis call per counter), so each worker
//! answers a caller at most `usage_reads.burst` reads at once and then
//! `usage_reads.per_minute` a minute, and answers all callers together at most
//! `usage_reads.per_worker_per_second` a second. A read past either bound is
//! answered `429` with `Retry-After` ([`limited_reply`]) and counted in
//! `quota.usage_limited`; nothing is read.
//!
//! Memory is bounded whatever the number of callers: callers' budgets live in
//! a fixed table of [`SLOTS`] buckets indexed by a hash of the caller. A
//! caller that lands on another's slot starts from a full budget (the other's
//! is forgotten), so a crowd of callers can never starve one of them; the
//! per-worker bound is what holds then.

use crate::bucket::{Rate, TokenBucket};
use crate::config::UsageReads;
use crate::identity::Caller;
use crate::reply::LocalReply;
use serde_json::json;
use std::hash::{Hash, Hasher};

/// Callers' buckets per worker.
pub const SLOTS: usize = 1024;

/// Whether to answer a usage read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageRead {
    Answer,
    /// Too many reads: answer 429, try again in `retry_after_s` seconds.
    Limited {
        retry_after_s: u64,
        by: LimitedBy,
    },
}

/// Which bound a limited read met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The caller's own budget.
    Caller,
    /// The worker's budget for every caller together.
    Worker,
}

#[derive(Debug, Clone)]
struct Slot {
    caller: u64,
    bucket: TokenBucket,
}

/// One worker's usage-read budgets.
#[derive(Debug, Clone)]
pub struct UsageLimiter {
    per_caller: Rate,
    slots: Vec<Option<Slot>>,
    worker: TokenBucket,
}

impl UsageLimiter {
    pub fn new(limits: &UsageReads, now_ms: i64) -> UsageLimiter {
        let per_worker = u64::from(limits.per_worker_per_second);
        UsageLimiter {
            per_caller: Rate::per_minute(u64::from(limits.per_minute), u64::from(limits.burst)),
            slots: vec![None; SLOTS],
            worker: TokenBucket::full(Rate::per_second(per_worker, per_worker), now_ms),
        }
    }

    /// Spends one read of `caller`'s budget and the worker's, or says how long
    /// to wait. A limited read spends nothing.
    pub fn read(&mut self, caller: &Caller, now_ms: i64) -> UsageRead {
        let key = caller_key(caller);
        let rate = self.per_caller;
        let slot = &mut self.slots[slot_of(key)];
        if slot.as_ref().is_none_or(|s| s.caller != key) {
            *slot = Some(Slot { caller: key, bucket: TokenBucket::full(rate, now_ms) });
        }
        let Some(mine) = slot.as_mut() else { return UsageRead::Answer };
        if let Err(wait_ms) = mine.bucket.check(now_ms) {
            return UsageRead::Limited { retry_after_s: seconds(wait_ms), by: LimitedBy::Caller };
        }
        if let Err(wait_ms) = self.worker.take(now_ms) {
            return UsageRead::Limited { retry_after_s: seconds(wait_ms), by: LimitedBy::Worker };
        }
        let _ = mine.bucket.take(now_ms);
        UsageRead::Answer
    }
}

/// A caller's identity as its budget knows it: anonymous callers by their
/// anonymous key, kept apart from a user of the same name.
fn caller_key(caller: &Caller) -> u64 {
    // SipHash with fixed keys: the same caller lands on the same slot every time.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    caller.anonymous.hash(&mut h);
    caller.id.hash(&mut h);
    h.finish()
}

fn slot_of(key: u64) -> usize {
    usize::try_from(key % SLOTS as u64).unwrap_or(0)
}

/// Whole seconds to wait, at least 1 (`Retry-After` counts seconds).
fn seconds(wait_ms: u64) -> u64 {
    wait_ms.div_ceil(1000).max(1)
}

/// The answer to a read past its budget: 429, `Retry-After`, an
/// OpenAI-style error body, never cached.
pub fn limited_reply(retry_after_s: u64) -> LocalReply {
    let seconds = if retry_after_s == 1 { "1 second".to_string() } else { format!("{retry_after_s} seconds") };
    let message = format!("Too many usage reads. Try again in {seconds}.");
    LocalReply {
        status: 429,
        headers: vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
            ("retry-after", retry_after_s.to_string()),
        ],
        body: json!({ "error": { "message": message, "type": "rate_limit_error", "param": null, "code": "usage_rate_limited" } })
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TierId;
    use crate::window::Alignment;

    const T0: i64 = 1_800_000_000_000;

    fn caller(id: &str) -> Caller {
        Caller {
            id: id.into(),
            anonymous: false,
            workspace: None,
            organisation: None,
            tier: TierId(0),
            alignment: Alignment::default(),
        }
    }

    fn limits(per_minute: u32, burst: u32, per_worker_per_second: u32) -> UsageReads {
        UsageReads { per_minute, burst, per_worker_per_second }
    }

    #[test]
    fn a_caller_gets_a_burst_then_its_rate_and_is_told_when_to_come_back() {
        let mut l = UsageLimiter::new(&limits(60, 3, 1000), T0);
        let ann = caller("ann");
        for _ in 0..3 {
            assert_eq!(l.read(&ann, T0), UsageRead::Answer);
        }
        assert_eq!(l.read(&ann, T0), UsageRead::Limited { retry_after_s: 1, by: LimitedBy::Caller });
        assert_eq!(l.read(&ann, T0 + 999), UsageRead::Limited { retry_after_s: 1, by: LimitedBy::Caller });
        assert_eq!(l.read(&ann, T0 + 1000), UsageRead::Answer);
        // Others are not held up by ann.
        assert_eq!(l.read(&caller("bo"), T0 + 1000), UsageRead::Answer);
    }

    #[test]
    fn a_slow_budget_says_how_many_seconds_to_wait() {
        let mut l = UsageLimiter::new(&limits(2, 1, 1000), T0);
        let ann = caller("ann");
        assert_eq!(l.read(&ann, T0), UsageRead::Answer);
        assert_eq!(l.read(&ann, T0), UsageRead::Limited { retry_after_s: 30, by: LimitedBy::Caller });
        assert_eq!(l.read(&ann, T0 + 29_001), UsageRead::Limited { retry_after_s: 1, by: LimitedBy::Caller });
        assert_eq!(l.read(&ann, T0 + 30_000), UsageRead::Answer);
    }

    #[test]
    fn the_worker_bounds_every_caller_together_and_a_limited_read_spends_nothing() {
        let mut l = UsageLimiter::new(&limits(60, 10, 5), T0);
        let answered = (0..100).filter(|i| l.read(&caller(&format!("u{i}")), T0) == UsageRead::Answer).count();
        assert_eq!(answered, 5);
        assert_eq!(l.read(&caller("late"), T0), UsageRead::Limited { retry_after_s: 1, by: LimitedBy::Worker });
        // The worker's refusal cost "late" nothing of its own budget.
        let late = caller("late");
        for ms in [200, 400, 600, 800, 1000] {
            assert_eq!(l.read(&late, T0 + ms), UsageRead::Answer, "at {ms} ms");
        }
    }

    #[test]
    fn anonymous_callers_are_kept_apart_from_users_of_the_same_name() {
        let mut l = UsageLimiter::new(&limits(60, 1, 1000), T0);
        let user = caller("10.0.0.1");
        let anonymous = Caller { anonymous: true, ..caller("10.0.0.1") };
        assert_eq!(l.read(&user, T0), UsageRead::Answer);
        assert_eq!(l.read(&anonymous, T0), UsageRead::Answer);
        assert!(matches!(l.read(&user, T0), UsageRead::Limited { .. }));
    }

    #[test]
    fn memory_stays_the_same_whatever_the_number_of_callers() {
        let mut l = UsageLimiter::new(&limits(60, 1, u32::MAX), T0);
        for i in 0..50_000 {
            let _ = l.read(&caller(&format!("caller-{i}")), T0);
        }
        assert_eq!(l.slots.len(), SLOTS);
    }

    #[test]
    fn the_refusal_says_when_to_come_back() {
        let reply = limited_reply(30);
        assert_eq!(reply.status, 429);
        assert!(reply.headers.contains(&("retry-after", "30".to_string())));
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "usage_rate_limited");
        assert_eq!(body["error"]["message"], "Too many usage reads. Try again in 30 seconds.");
        assert!(limited_reply(1).body.contains("Try again in 1 second."));
    }
}
