//! Integers as decimal text, written straight into a `String`: the response
//! headers carry several numbers on every request, and `to_string` or
//! `format!` go through the formatting machinery for each.

/// The decimal digits of `n`, written at the end of `buf`.
fn digits(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    let mut n = n;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
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
