//! The one bound on every number of units the filter stores or reports:
//! limits, costs, counters, grants, corrections.
//!
//! A client chooses some of these numbers (`max_tokens`, a records array),
//! so without a bound one request could charge `u64::MAX` units. The bound
//! is the largest integer an IEEE double holds exactly: the Redis script
//! computes in Lua doubles, JSON readers in browsers parse numbers as
//! doubles, and a counter at the bound must read back as the same integer.

/// The most units any limit, cost, counter or grant may hold: 2^53 - 1.
pub const MAX_UNITS: u64 = (1 << 53) - 1;

/// `n`, at most [`MAX_UNITS`].
pub fn bounded(n: u64) -> u64 {
    n.min(MAX_UNITS)
}

/// `a + b`, saturating at [`MAX_UNITS`].
pub fn add(a: u64, b: u64) -> u64 {
    bounded(a.saturating_add(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_exact_in_a_double() {
        assert_eq!(MAX_UNITS as f64 as u64, MAX_UNITS);
        // The next integer is where doubles start to skip some.
        assert_eq!((MAX_UNITS + 2) as f64 as u64, MAX_UNITS + 1);
    }

    #[test]
    fn sums_saturate_at_the_bound() {
        assert_eq!(add(MAX_UNITS - 1, 1), MAX_UNITS);
        assert_eq!(add(MAX_UNITS, MAX_UNITS), MAX_UNITS);
        assert_eq!(add(u64::MAX, u64::MAX), MAX_UNITS);
        assert_eq!(add(2, 3), 5);
        assert_eq!(bounded(u64::MAX), MAX_UNITS);
    }
}
