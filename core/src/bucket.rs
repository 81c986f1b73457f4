//! A token bucket in integer arithmetic: at most `burst` tokens, refilled at
//! `per_period` tokens every `period_ms`. The time is passed in (the filter's
//! clock, or a test's), so a test can walk it to the millisecond.

/// How fast a bucket refills, and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added every `period_ms` (at least 1).
    pub per_period: u64,
    pub period_ms: u64,
    /// The most tokens held at once, and what a new bucket starts with (at least 1).
    pub burst: u64,
}

impl Rate {
    pub const fn per_second(per_second: u64, burst: u64) -> Rate {
        Rate { per_period: per_second, period_ms: 1000, burst }
    }

    pub const fn per_minute(per_minute: u64, burst: u64) -> Rate {
        Rate { per_period: per_minute, period_ms: 60_000, burst }
    }

    /// One token, in the bucket's units: the refill of `period_ms` at one
    /// token per period. A level in these units refills by `per_period` each
    /// millisecond, exactly, without fractions.
    fn token(&self) -> u64 {
        self.period_ms.max(1)
    }

    fn capacity(&self) -> u64 {
        self.burst.max(1).saturating_mul(self.token())
    }
}

/// A bucket: its rate, its level (in [`Rate::token`] units) and when it was
/// last refilled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate: Rate,
    level: u64,
    at_ms: i64,
}

impl TokenBucket {
    /// A full bucket (`burst` tokens) at `now_ms`.
    pub fn full(rate: Rate, now_ms: i64) -> TokenBucket {
        TokenBucket { rate, level: rate.capacity(), at_ms: now_ms }
    }

    /// Adds what the time since the last refill earned. A clock that went
    /// back earns nothing and moves nothing back.
    fn refill(&mut self, now_ms: i64) {
        if now_ms <= self.at_ms {
            return;
        }
        let elapsed = u64::try_from(now_ms.saturating_sub(self.at_ms)).unwrap_or(u64::MAX);
        let earned = elapsed.saturating_mul(self.rate.per_period.max(1));
        self.level = self.level.saturating_add(earned).min(self.rate.capacity());
        self.at_ms = now_ms;
    }

    /// `Ok` if a token is there now; else the milliseconds until one is.
    pub fn check(&mut self, now_ms: i64) -> Result<(), u64> {
        self.refill(now_ms);
        let token = self.rate.token();
        if self.level >= token {
            Ok(())
        } else {
            Err((token - self.level).div_ceil(self.rate.per_period.max(1)))
        }
    }

    /// Takes a token if there is one; else the milliseconds until there is.
    pub fn take(&mut self, now_ms: i64) -> Result<(), u64> {
        self.check(now_ms)?;
        self.level -= self.rate.token();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
        let mut b = TokenBucket::full(Rate::per_second(10, 3), T0);
        assert_eq!((b.take(T0), b.take(T0), b.take(T0)), (Ok(()), Ok(()), Ok(())));
        // Ten a second: the next token is 100 ms away.
        assert_eq!(b.take(T0), Err(100));
        assert_eq!(b.take(T0 + 99), Err(1));
        assert_eq!(b.take(T0 + 100), Ok(()));
        assert_eq!(b.take(T0 + 100), Err(100));
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let mut b = TokenBucket::full(Rate::per_minute(60, 5), T0);
        for _ in 0..5 {
            assert_eq!(b.take(T0), Ok(()));
        }
        assert_eq!(b.take(T0), Err(1000));
        let later = T0 + 86_400_000;
        for _ in 0..5 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert_eq!(b.take(later), Err(1000));
    }

    #[test]
    fn a_slow_rate_waits_whole_periods_without_fractions() {
        // One a minute: 60 s to wait, in milliseconds, exactly.
        let mut b = TokenBucket::full(Rate::per_minute(1, 1), T0);
        assert_eq!(b.take(T0), Ok(()));
        assert_eq!(b.take(T0), Err(60_000));
        assert_eq!(b.take(T0 + 59_999), Err(1));
        assert_eq!(b.take(T0 + 60_000), Ok(()));
    }

    #[test]
    fn check_does_not_spend_a_token() {
        let mut b = TokenBucket::full(Rate::per_second(1, 1), T0);
        assert_eq!(b.check(T0), Ok(()));
        assert_eq!(b.check(T0), Ok(()));
        assert_eq!(b.take(T0), Ok(()));
        assert_eq!(b.check(T0), Err(1000));
    }

    #[test]
    fn a_clock_that_goes_back_earns_nothing() {
        let mut b = TokenBucket::full(Rate::per_second(1, 1), T0);
        assert_eq!(b.take(T0), Ok(()));
        assert_eq!(b.take(T0 - 5000), Err(1000));
        assert_eq!(b.take(T0 + 999), Err(1));
        assert_eq!(b.take(T0 + 1000), Ok(()));
    }

    #[test]
    fn extreme_times_and_rates_saturate() {
        let mut b = TokenBucket::full(Rate::per_second(u64::MAX, u64::MAX), i64::MIN);
        assert_eq!(b.take(i64::MAX), Ok(()));
        let mut slow = TokenBucket::full(Rate::per_minute(1, 1), i64::MIN);
        assert_eq!(slow.take(i64::MIN), Ok(()));
        assert_eq!(slow.take(i64::MAX), Ok(()));
    }
}
