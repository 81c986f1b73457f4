//! Integers as decimal text, written straight into a `String`: the response
//! headers carry several numbers on every request, and `to_string` or
//! `format!` go through the formatting machinery for each.

/// Two digits at a time: "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n`, written at the end of `buf`.
fn digits(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    let mut n = n;
    while n >= 100 && start >= 2 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        start -= 2;
        if let (Some(slot), Some(digits)) = (buf.get_mut(start..start + 2), PAIRS.get(pair..pair + 2)) {
            slot.copy_from_slice(digits);
        }
    }
    // One or two digits left (a u64 has at most 20).
    let pair = n as usize * 2;
    let (from, to) = if n >= 10 { (pair, pair + 2) } else { (pair + 1, pair + 2) };
    if let Some(digits) = PAIRS.get(from..to) {
        start -= digits.len();
        if let Some(slot) = buf.get_mut(start..start + digits.len()) {
            slot.copy_from_slice(digits);
        }
    }
    std::str::from_utf8(buf.get(start..).unwrap_or_default()).unwrap_or_default()
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    out.push_str(digits(n, &mut [0; 20]));
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
    digits(n, &mut [0; 20]).to_string()
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
