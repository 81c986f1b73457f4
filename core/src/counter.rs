//! One counter: the units a scope has used of a class in one window.
//!
//! Stored as one compact record per (scope, class), rewritten in place, never
//! appended to, so memory is bounded whatever the traffic. The record is a
//! version byte, the two flag bytes and LEB128 varints (the window as its
//! start and length): 15–16 bytes for a calendar window of this century and
//! usage below 16,384, at most [`MAX_RECORD_BYTES`]. In Envoy's shared data
//! the records live in the buckets of the counter table (`table.rs`), each
//! beside its counter key.

use crate::units::bounded;
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

/// Version 2 was a fixed 48-byte record; its records read as no usage.
const VERSION: u8 = 3;
/// The longest record: version, flags, a `u32` and five `u64` varints.
pub const MAX_RECORD_BYTES: usize = 3 + 5 + 5 * 10;

impl Counter {
    /// A fresh, unused counter for `window`, keeping `grant` units.
    pub fn open(window: Window, window_code: u32, grant: u64) -> Counter {
        Counter { window_code, window_start: window.start, window_end: window.end, grant, ..Counter::default() }
    }

    /// Units paid from the plan itself (not from grants).
    pub fn plan_used(&self) -> u64 {
        self.used.saturating_sub(self.grant_used)
    }

    /// The counter with every count at most [`crate::units::MAX_UNITS`], as the Redis
    /// script reads its records: a record written before counts were bounded
    /// (or by hand) is read at the bound instead of overflowing a sum.
    pub fn bounded(self) -> Counter {
        Counter { used: bounded(self.used), grant_used: bounded(self.grant_used), grant: bounded(self.grant), ..self }
    }

    pub fn window(&self) -> Window {
        Window { start: self.window_start, end: self.window_end }
    }

    pub fn encode(&self) -> Record {
        let mut out = Record { bytes: [0; MAX_RECORD_BYTES], len: 0 };
        out.push(VERSION);
        out.push(self.warned);
        out.push(self.flags);
        out.varint(u64::from(self.window_code));
        out.varint(zigzag(self.window_start));
        // The length, not the end: small whatever the epoch. Wrapping, so
        // any pair of ends (even a reversed one) comes back as it was.
        out.varint(self.window_end.wrapping_sub(self.window_start) as u64);
        out.varint(self.used);
        out.varint(self.grant_used);
        out.varint(self.grant);
        out
    }

    /// Decodes a record; `None` for anything that is not exactly one (another
    /// version, truncated, trailing bytes, a varint that overflows or is not
    /// in its shortest form), which callers treat as no usage yet.
    pub fn decode(bytes: &[u8]) -> Option<Counter> {
        let (counter, rest) = Counter::decode_prefix(bytes)?;
        rest.is_empty().then_some(counter)
    }

    /// Decodes the record `bytes` start with, and what follows it (a lease
    /// record carries one, see `lease.rs`).
    pub(crate) fn decode_prefix(bytes: &[u8]) -> Option<(Counter, &[u8])> {
        let mut r = Reader { rest: bytes };
        if r.byte()? != VERSION {
            return None;
        }
        let warned = r.byte()?;
        let flags = r.byte()?;
        let window_code = u32::try_from(r.varint()?).ok()?;
        let window_start = unzigzag(r.varint()?);
        let window_end = window_start.wrapping_add(r.varint()? as i64);
        let counter = Counter {
            window_code,
            window_start,
            window_end,
            used: r.varint()?,
            grant_used: r.varint()?,
            grant: r.varint()?,
            warned,
            flags,
        };
        Some((counter, r.rest))
    }
}

/// An encoded counter: the bytes to store (it dereferences to them).
#[derive(Debug, Clone, Copy)]
pub struct Record {
    bytes: [u8; MAX_RECORD_BYTES],
    len: usize,
}

impl Record {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// LEB128: seven bits a byte, least significant first.
    #[inline]
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.push(n as u8 | 0x80);
            n >>= 7;
        }
        self.push(n as u8);
    }
}

impl std::ops::Deref for Record {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(byte)
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            if byte < 0x80 {
                let past_64_bits = shift == 63 && byte > 1;
                // Shortest form only, so each counter has one encoding.
                let padded = byte == 0 && shift > 0;
                return (!past_64_bits && !padded).then_some(n | u64::from(byte) << shift);
            }
            if shift == 63 {
                return None; // an eleventh byte
            }
            n |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
    }
}

/// Signed to unsigned with small magnitudes staying small: 0, -1, 1, -2 → 0, 1, 2, 3.
pub(crate) fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

pub(crate) fn unzigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
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

    fn day_of_2027(used: u64) -> Counter {
        let start = 1_798_761_600; // 2027-01-01T00:00:00Z
        Counter {
            window_code: 3,
            window_start: start,
            window_end: start + 86_400,
            used,
            grant_used: 0,
            grant: 0,
            warned: 1,
            flags: 0,
        }
    }

    #[test]
    fn typical_records_fit_a_short_string() {
        // libc++ keeps strings of up to 22 bytes inline.
        assert_eq!(day_of_2027(9).encode().len(), 15);
        assert_eq!(day_of_2027(16_383).encode().len(), 16);
        let month = Counter { window_end: 1_798_761_600 + 31 * 86_400, ..day_of_2027(1_000_000) };
        assert!(month.encode().len() <= 22);
    }

    #[test]
    fn extreme_values_round_trip() {
        let times = [i64::MIN, i64::MIN + 1, -1, 0, 1, 1_798_761_600, i64::MAX - 1, i64::MAX];
        let counts = [0, 1, 127, 128, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
        for &window_start in &times {
            for &window_end in &times {
                for &n in &counts {
                    for window_code in [0, 1, u32::MAX] {
                        let c = Counter {
                            window_code,
                            window_start,
                            window_end,
                            used: n,
                            grant_used: n / 2,
                            grant: u64::MAX - n,
                            warned: u8::MAX,
                            flags: u8::MAX,
                        };
                        let record = c.encode();
                        assert!(record.len() <= MAX_RECORD_BYTES);
                        assert_eq!(Counter::decode(&record), Some(c), "{c:?}");
                    }
                }
            }
        }
        let largest = Counter {
            window_code: u32::MAX,
            window_start: i64::MIN,
            window_end: i64::MAX,
            used: u64::MAX,
            grant_used: u64::MAX,
            grant: u64::MAX,
            warned: 0,
            flags: 0,
        };
        assert_eq!(largest.encode().len(), MAX_RECORD_BYTES);
    }

    #[test]
    fn foreign_bytes_are_not_a_record() {
        assert_eq!(Counter::decode(b""), None);
        assert_eq!(Counter::decode(b"hello"), None);
        let mut bytes = Counter::default().encode().to_vec();
        bytes[0] = 9;
        assert_eq!(Counter::decode(&bytes), None);
        // A version 2 record (the fixed 48 bytes) reads as no usage.
        let mut v2 = [0u8; 48];
        v2[0] = 2;
        assert_eq!(Counter::decode(&v2), None);
    }

    #[test]
    fn truncated_or_extended_records_are_refused() {
        for c in [Counter::default(), day_of_2027(300), Counter { used: u64::MAX, ..day_of_2027(0) }] {
            let record = c.encode().to_vec();
            for len in 0..record.len() {
                assert_eq!(Counter::decode(&record[..len]), None, "{c:?} cut to {len}");
            }
            for extra in [0u8, 1, 0x80] {
                let mut longer = record.clone();
                longer.push(extra);
                assert_eq!(Counter::decode(&longer), None, "{c:?} with {extra}");
            }
        }
    }

    /// A record with `varint` as the last count (`grant`).
    fn with_grant(varint: &[u8]) -> Vec<u8> {
        let mut bytes = Counter::default().encode().to_vec();
        bytes.pop();
        bytes.extend_from_slice(varint);
        bytes
    }

    #[test]
    fn malformed_varints_are_refused() {
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Counter::decode(&with_grant(&max)).map(|c| c.grant), Some(u64::MAX));
        // Past 64 bits.
        let mut over = max;
        over[9] = 0x02;
        assert_eq!(Counter::decode(&with_grant(&over)), None);
        // An eleventh byte.
        let mut eleven = max.to_vec();
        eleven[9] = 0x81;
        eleven.push(0x00);
        assert_eq!(Counter::decode(&with_grant(&eleven)), None);
        // Not the shortest form: 0 as two bytes.
        assert_eq!(Counter::decode(&with_grant(&[0x80, 0x00])), None);
        assert_eq!(Counter::decode(&with_grant(&[0x00])).map(|c| c.grant), Some(0));
        // A window code past u32.
        let mut bytes = Counter::default().encode().to_vec();
        bytes.splice(3..4, [0xff, 0xff, 0xff, 0xff, 0x10]);
        assert_eq!(Counter::decode(&bytes), None);
        bytes[7] = 0x0f;
        assert_eq!(Counter::decode(&bytes).map(|c| c.window_code), Some(u32::MAX));
    }

    #[test]
    fn any_bytes_decode_without_panicking_and_records_are_canonical() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut decoded = 0;
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                *first = VERSION;
            }
            if let Some(c) = Counter::decode(&bytes) {
                assert_eq!(&*c.encode(), bytes.as_slice());
                decoded += 1;
            }
        }
        assert!(decoded > 100, "{decoded}");
    }
}
