//! A bound on what callers without an identity can make the filter write.
//!
//! Every refusal writes an event (a log line, and a record for the analytics
//! cluster). A caller the filter could not identify (no user id, credentials
//! it will not read, a tier the matrix does not have) costs nothing to send,
//! so each worker writes at most `observability.unidentified_events_per_second`
//! such events a second (a token bucket: that many at once, then that many a
//! second). The rest are counted, not written, and the next event written is
//! preceded by one line saying how many were left out. Stats count every
//! refusal either way: they are counters, not output.

use crate::bucket::{Rate, TokenBucket};

/// Whether to write an event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; first, when `suppressed_before` > 0, the line
    /// ([`suppressed_line`]) saying how many were left out since the last one.
    Write { suppressed_before: u64 },
    /// Leave it out (counted).
    Suppress,
}

/// One worker's budget for events of unidentified callers.
#[derive(Debug, Clone)]
pub struct EventBudget {
    /// `None`: no such event is ever written (a rate of 0).
    bucket: Option<TokenBucket>,
    suppressed: u64,
}

impl EventBudget {
    /// At most `per_second` events a second (bursts of as many); 0: none.
    pub fn new(per_second: u32, now_ms: i64) -> EventBudget {
        let bucket = (per_second > 0)
            .then(|| TokenBucket::full(Rate::per_second(u64::from(per_second), u64::from(per_second)), now_ms));
        EventBudget { bucket, suppressed: 0 }
    }

    pub fn admit(&mut self, now_ms: i64) -> Admit {
        match self.bucket.as_mut().map(|b| b.take(now_ms)) {
            Some(Ok(())) => Admit::Write { suppressed_before: std::mem::take(&mut self.suppressed) },
            _ => {
                self.suppressed = self.suppressed.saturating_add(1);
                Admit::Suppress
            }
        }
    }

    /// Events left out since the last one written.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// The line written before the next event once some were left out.
pub fn suppressed_line(count: u64, per_second: u32) -> String {
    let events = if count == 1 { "event" } else { "events" };
    format!(
        "quota: suppressed {count} {events} of callers without an identity \
         (over observability.unidentified_events_per_second: {per_second}); see quota.events_suppressed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn writes_its_rate_then_counts_the_rest_and_sums_them_up_when_writing_resumes() {
        let mut budget = EventBudget::new(3, T0);
        for _ in 0..3 {
            assert_eq!(budget.admit(T0), Admit::Write { suppressed_before: 0 });
        }
        for _ in 0..1234 {
            assert_eq!(budget.admit(T0 + 10), Admit::Suppress);
        }
        assert_eq!(budget.suppressed(), 1234);
        // A third of a second later one token is back: the summary, then the event.
        assert_eq!(budget.admit(T0 + 333), Admit::Suppress);
        assert_eq!(budget.admit(T0 + 334), Admit::Write { suppressed_before: 1235 });
        assert_eq!(budget.suppressed(), 0);
        assert_eq!(budget.admit(T0 + 334), Admit::Suppress);
    }

    #[test]
    fn over_any_stretch_at_most_the_rate_and_one_burst_are_written() {
        let mut budget = EventBudget::new(10, T0);
        // One attempt a millisecond for a minute.
        let written = (0..60_000).filter(|ms| matches!(budget.admit(T0 + ms), Admit::Write { .. })).count();
        assert_eq!(written, 10 + 10 * 59 + 9);
    }

    #[test]
    fn a_rate_of_zero_writes_nothing() {
        let mut budget = EventBudget::new(0, T0);
        for ms in 0..5000 {
            assert_eq!(budget.admit(T0 + ms), Admit::Suppress);
        }
        assert_eq!(budget.suppressed(), 5000);
    }

    #[test]
    fn the_summary_names_the_count_the_setting_and_the_stat() {
        assert_eq!(
            suppressed_line(1234, 10),
            "quota: suppressed 1234 events of callers without an identity \
             (over observability.unidentified_events_per_second: 10); see quota.events_suppressed"
        );
        assert!(suppressed_line(1, 10).contains("suppressed 1 event of"));
    }
}
