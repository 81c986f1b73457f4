//! Integers as decimal text, written straight into a `String`: the response
//! headers carry several numbers on every request, and `to_string` or
//! `format!` go through the formatting machinery for each.

/// Two digits at a time: "00" to "99". Text, so the digits are pushed as
/// `str`s cut from it, with nothing to check.
const PAIRS: &str = "0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    // The pairs below the leading one or two digits, least significant
    // first (a u64 has at most 20 digits: at most 9 pairs and a lead).
    let mut low = [0u8; 9];
    let mut count = 0;
    let mut n = n;
    while n >= 100 {
        if let Some(slot) = low.get_mut(count) {
            *slot = (n % 100) as u8;
        }
        n /= 100;
        count += 1;
    }
    let lead = n as usize * 2;
    out.push_str(PAIRS.get(if n >= 10 { lead } else { lead + 1 }..lead + 2).unwrap_or_default());
    for &pair in low.get(..count).unwrap_or_default().iter().rev() {
        let at = usize::from(pair) * 2;
        out.push_str(PAIRS.get(at..at + 2).unwrap_or_default());
    }
}

/// Appends `n` in decimal, with a '-' when negative.
pub fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// `n` in decimal.
pub fn u64_text(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_u64(&mut out, n);
    out
}

/// `n` in decimal, with a '-' when negative.
pub fn i64_text(n: i64) -> String {
    if n < 0 {
        let mut out = String::with_capacity(21);
        push_i64(&mut out, n);
        out
    } else {
        u64_text(n.unsigned_abs())
    }
}

/// Fills `slot` with the last `slot.len()` decimal digits of `n`,
/// zero-padded (dates).
pub fn write_padded(slot: &mut [u8], n: u32) {
    let mut n = n;
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_display_writes() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), 999_999_999_999_999, u64::MAX - 1, u64::MAX] {
            assert_eq!(u64_text(n), n.to_string());
        }
        for n in [0, 1, -1, 10, -10, 86_400, -86_400, i64::MAX, i64::MIN, i64::MIN + 1] {
            assert_eq!(i64_text(n), n.to_string());
        }
        for n in 0..20_000u64 {
            assert_eq!(u64_text(n), n.to_string());
        }
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            for n in [p - 1, p, p + 1, next - 1] {
                assert_eq!(u64_text(n), n.to_string());
            }
            p = next;
        }
        let mut n = 1u64;
        while let Some(next) = n.checked_mul(3) {
            assert_eq!(u64_text(n - 1), (n - 1).to_string());
            n = next;
        }
    }

    #[test]
    fn pads_to_the_width() {
        let mut out = *b"........";
        write_padded(&mut out[0..2], 7);
        write_padded(&mut out[2..6], 2026);
        write_padded(&mut out[6..7], 12);
        assert_eq!(&out, b"0720262.");
    }
}
