//! One counter: the units a scope has used of a class in one window.
//!
//! Stored as a fixed 48-byte record, so memory per (scope, class) is bounded
//! whatever the traffic: the key is rewritten in place, never appended to.

use crate::window::Window;

/// The usage of one (scope, class) in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    /// [`crate::window::WindowSpec::code`] of the window the record was opened with.
    pub window_code: u32,
    pub window_start: i64,
    pub window_end: i64,
    /// Units admitted in this window, however they were funded.
    pub used: u64,
    /// Of `used`, the units paid from grants (prepaid packs, approvals).
    pub grant_used: u64,
    /// Grant units left. Unlike usage, they carry over from window to window.
    pub grant: u64,
    /// Warning levels already reported in this window (bit i = level i).
    pub warned: u8,
    /// Other once-per-window facts, see the `FLAG_*` constants.
    pub flags: u8,
}

/// The caller was flagged as ahead of pace in this window.
pub const FLAG_PACE: u8 = 1;

const VERSION: u8 = 2;
/// Size of an encoded record.
pub const RECORD_BYTES: usize = 48;

impl Counter {
    /// A fresh, unused counter for `window`, keeping `grant` units.
    pub fn open(window: Window, window_code: u32, grant: u64) -> Counter {
        Counter { window_code, window_start: window.start, window_end: window.end, grant, ..Counter::default() }
    }

    /// Units paid from the plan itself (not from grants).
    pub fn plan_used(&self) -> u64 {
        self.used.saturating_sub(self.grant_used)
    }

    pub fn window(&self) -> Window {
        Window { start: self.window_start, end: self.window_end }
    }

    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut out = [0u8; RECORD_BYTES];
        out[0] = VERSION;
        out[1] = self.warned;
        out[2] = self.flags;
        // out[3] reserved.
        out[4..8].copy_from_slice(&self.window_code.to_le_bytes());
        out[8..16].copy_from_slice(&self.window_start.to_le_bytes());
        out[16..24].copy_from_slice(&self.window_end.to_le_bytes());
        out[24..32].copy_from_slice(&self.used.to_le_bytes());
        out[32..40].copy_from_slice(&self.grant_used.to_le_bytes());
        out[40..48].copy_from_slice(&self.grant.to_le_bytes());
        out
    }

    /// Decodes a record; `None` for anything that is not one (wrong size or
    /// version), which callers treat as no usage yet.
    pub fn decode(bytes: &[u8]) -> Option<Counter> {
        let bytes: &[u8; RECORD_BYTES] = bytes.try_into().ok()?;
        if bytes[0] != VERSION {
            return None;
        }
        let u32_at = |i: usize| bytes.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let u64_at = |i: usize| bytes.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let i64_at = |i: usize| bytes.get(i..i + 8).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes);
        Some(Counter {
            warned: bytes[1],
            flags: bytes[2],
            window_code: u32_at(4)?,
            window_start: i64_at(8)?,
            window_end: i64_at(16)?,
            used: u64_at(24)?,
            grant_used: u64_at(32)?,
            grant: u64_at(40)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let c = Counter {
            window_code: 3,
            window_start: -5,
            window_end: 86_400,
            used: 42,
            grant_used: 7,
            grant: 3,
            warned: 0b101,
            flags: FLAG_PACE,
        };
        assert_eq!(Counter::decode(&c.encode()), Some(c));
    }

    #[test]
    fn foreign_bytes_are_not_a_record() {
        assert_eq!(Counter::decode(b"hello"), None);
        let mut bytes = Counter::default().encode();
        bytes[0] = 9;
        assert_eq!(Counter::decode(&bytes), None);
    }
}
