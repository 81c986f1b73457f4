//! Time enters the core only through a [`Clock`]: the filter reads the
//! host's clock, tests and tools use a [`ManualClock`] they can advance.

use std::cell::Cell;

pub trait Clock {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: Cell<i64>,
}

impl ManualClock {
    pub fn at(now_ms: i64) -> Self {
        ManualClock { now_ms: Cell::new(now_ms) }
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.set(now_ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }
}
