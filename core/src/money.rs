//! Amounts of money as integers: micro-units of the config's one currency
//! (one dollar is 1_000_000), so a price, a cost and a balance add up
//! exactly, with no floating error, and stay within [`MAX_UNITS`] like every
//! other number of units the filter stores.
//!
//! Text comes in through [`parse_amount`] (decimal strings, never floats)
//! and goes out through [`format_amount`] and [`format_amount_down`] (for
//! people: `$4.20`), [`decimal_text`] (for machine fields: `4.20`, exact) and
//! [`minor_units`] (integers for the IETF RateLimit fields: `420`).
//!
//! ## Rounding for people
//!
//! A display shows the currency's minor digits (2 for USD, 0 for JPY). An
//! amount between two minor units is rounded one of two ways:
//!
//! - [`format_amount`] rounds to the nearest, half up: prices, limits, the
//!   cost of one request.
//! - [`format_amount_down`] rounds down: what was **used** and what
//!   **remains**. The text then never claims more was spent than was, nor
//!   room that is not there (`used $4.99` and `remaining $0.00x` rather than
//!   `used $5.00` of a `$5.00` limit that still admits a request). The price
//!   of that honesty: `used` and `remaining` may add up to one minor unit
//!   less than the limit.
//!
//! Either way a non-zero amount never reads as zero: when it would, it shows
//! the fewest further digits (up to the micro-unit) at which it, rounded
//! the same way, is not zero: `$0.004`, `$0.000001`.

use crate::units::MAX_UNITS;

/// Micro-units in one unit of a currency (a dollar, a euro, a yen).
pub const MICROS_PER_UNIT: u64 = 1_000_000;

/// The most decimals an amount has: the micro-unit is the smallest amount.
pub const MAX_DECIMALS: u32 = 6;

/// How an amount between two steps of a display is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Toward zero: what remains, what was used.
    Down,
    /// To the nearest; exactly half way goes up.
    HalfUp,
    /// Away from zero.
    Up,
}

/// A currency: its ISO 4217 code, how it is written and its minor digits.
/// Made by [`Currency::from_code`], so `minor_digits` is never more than
/// [`MAX_DECIMALS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: [u8; 3],
    symbol: Option<&'static str>,
    minor_digits: u32,
}

/// The currencies the filter knows how to write: code, symbol (written
/// before the amount; none: the code is written after it) and minor digits
/// (ISO 4217). Symbols are the unambiguous ones (`CA$`, not `$`).
const KNOWN: &[(&str, Option<&str>, u32)] = &[
    ("USD", Some("$"), 2),
    ("EUR", Some("€"), 2),
    ("GBP", Some("£"), 2),
    ("JPY", Some("¥"), 0),
    ("CHF", None, 2),
    ("CAD", Some("CA$"), 2),
    ("AUD", Some("A$"), 2),
    ("NZD", Some("NZ$"), 2),
    ("HKD", Some("HK$"), 2),
    ("SGD", None, 2),
    ("INR", Some("₹"), 2),
    ("CNY", Some("CN¥"), 2),
    ("KRW", Some("₩"), 0),
    ("TWD", Some("NT$"), 2),
    ("BRL", Some("R$"), 2),
    ("MXN", Some("MX$"), 2),
    ("ILS", Some("₪"), 2),
    ("VND", Some("₫"), 0),
    ("SEK", None, 2),
    ("NOK", None, 2),
    ("DKK", None, 2),
    ("PLN", None, 2),
    ("CZK", None, 2),
    ("ZAR", None, 2),
    ("CLP", None, 0),
    ("ISK", None, 0),
    ("BHD", None, 3),
    ("JOD", None, 3),
    ("KWD", None, 3),
    ("OMR", None, 3),
    ("TND", None, 3),
];

/// Minor digits of a valid code the table does not know.
const DEFAULT_MINOR_DIGITS: u32 = 2;

impl Currency {
    /// The currency of an ISO 4217 code: three capital ASCII letters. A
    /// code the built-in table does not know is still accepted, with no
    /// symbol (the code follows the amount: `4.20 XYZ`) and 2 minor digits.
    pub fn from_code(code: &str) -> Result<Currency, String> {
        let bytes: [u8; 3] = match code.as_bytes().try_into() {
            Ok(b) if code.bytes().all(|b| b.is_ascii_uppercase()) => b,
            _ => {
                let hint = if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
                    format!(": write \"{}\"", code.to_ascii_uppercase())
                } else {
                    ", e.g. \"USD\"".to_string()
                };
                return Err(format!("\"{code}\" is not an ISO 4217 currency code (three capital letters){hint}"));
            }
        };
        let (symbol, minor_digits) = KNOWN
            .iter()
            .find(|(known, _, _)| known.as_bytes() == bytes)
            .map_or((None, DEFAULT_MINOR_DIGITS), |(_, symbol, digits)| (*symbol, *digits));
        Ok(Currency { code: bytes, symbol, minor_digits: minor_digits.min(MAX_DECIMALS) })
    }

    /// The ISO 4217 code, e.g. `USD`.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or_default()
    }

    /// The symbol written before an amount (`$`, `€`, `CA$`); `None` when
    /// the code is written after it instead.
    pub fn symbol(&self) -> Option<&'static str> {
        self.symbol
    }

    /// Digits after the decimal point in everyday amounts: 2 for USD, 0
    /// for JPY, 3 for KWD.
    pub fn minor_digits(&self) -> u32 {
        self.minor_digits
    }
}

/// Micro-units in one minor unit of `currency` (10,000 for a cent; a
/// million for a currency without minor units, such as JPY).
pub fn micros_per_minor(currency: &Currency) -> u64 {
    10u64.pow(6u32.saturating_sub(currency.minor_digits()))
}

/// Micro-units of an amount written in decimal: `"5"`, `"5.00"`, `"0.004"`,
/// `"1234.567891"`.
///
/// The grammar is a JSON number's without sign or exponent: digits, then
/// optionally a `.` and 1 to 6 digits. Refused, never guessed at: a sign,
/// an exponent, spaces, thousands separators, `".5"` and `"5."` (as JSON
/// refuses them), more than 6 decimals (even zeros: an amount is never
/// rounded on the way in), and more than [`MAX_UNITS`] micro-units
/// (9007199254.740991). Leading zeros are harmless and accepted.
///
/// The error says what is wrong with the text, quoting it, so it reads
/// well after a config path: `prices.default.input: "1,50" is not an amount: ...`.
pub fn parse_amount(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("is empty: write an amount such as \"2.50\"".to_string());
    }
    // A sign before what reads as a number: say so, and what to write.
    let signed = |sign: char| text.strip_prefix(sign).filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    if let Some(rest) = signed('-') {
        return Err(format!("\"{text}\" is negative: an amount is 0 or more, e.g. \"{rest}\""));
    }
    if let Some(rest) = signed('+') {
        return Err(format!("\"{text}\" has a sign: write \"{rest}\""));
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) || text == "." {
        return Err(format!(
            "\"{text}\" is not an amount: digits with an optional '.' and up to 6 decimals, e.g. \"2.50\" \
             (no sign, exponent, spaces or separators)"
        ));
    }
    if whole.is_empty() {
        return Err(format!("\"{text}\" needs a digit before the '.': write \"0{text}\""));
    }
    let fraction = fraction.unwrap_or_default();
    if text.ends_with('.') {
        return Err(format!("\"{text}\" needs a digit after the '.': write \"{whole}\""));
    }
    if fraction.len() > MAX_DECIMALS as usize {
        return Err(format!("\"{text}\" has {} decimals: at most 6 (a millionth)", fraction.len()));
    }
    let too_large = || format!("\"{text}\" is more than the largest amount, {}", decimal_text_at(MAX_UNITS, 0));
    let mut micros: u64 = 0;
    let padded = fraction.bytes().chain(std::iter::repeat(b'0')).take(MAX_DECIMALS as usize);
    for b in whole.bytes().chain(padded) {
        micros = micros.checked_mul(10).and_then(|m| m.checked_add(u64::from(b - b'0'))).ok_or_else(too_large)?;
    }
    if micros > MAX_UNITS {
        return Err(too_large());
    }
    Ok(micros)
}

/// `10^n` for `n <= MAX_DECIMALS`.
fn pow10(n: u32) -> u64 {
    10u64.pow(n.min(MAX_DECIMALS))
}

/// `micros` in steps of `10^-digits` of a unit, rounded by `mode`.
fn round_at(micros: u64, digits: u32, mode: Rounding) -> u64 {
    let step = pow10(MAX_DECIMALS - digits.min(MAX_DECIMALS));
    let (q, r) = (micros / step, micros % step);
    let up = match mode {
        Rounding::Down => false,
        Rounding::HalfUp => r >= step - r,
        Rounding::Up => r > 0,
    };
    q + u64::from(up)
}

/// The integer count of minor units (cents for USD, yen for JPY) in
/// `micros`, rounded by `mode`: for fields that carry integers, like the
/// IETF RateLimit quota and remaining. Remaining is rounded
/// [`Rounding::Down`], so a client never sees room that is not there.
pub fn minor_units(micros: u64, currency: &Currency, mode: Rounding) -> u64 {
    round_at(micros, currency.minor_digits, mode)
}

/// Writes `steps` (of `10^-digits`) as `units.fraction`.
fn push_fixed(out: &mut String, steps: u64, digits: u32) {
    let scale = pow10(digits);
    crate::decimal::push_u64(out, steps / scale);
    if digits > 0 {
        out.push('.');
        let fraction = steps % scale;
        for p in (0..digits).rev() {
            out.push(char::from(b'0' + ((fraction / pow10(p)) % 10) as u8));
        }
    }
}

/// `micros` exactly, with at least `min_digits` decimals.
fn decimal_text_at(micros: u64, min_digits: u32) -> String {
    let digits =
        (min_digits..=MAX_DECIMALS).find(|&d| micros.is_multiple_of(pow10(MAX_DECIMALS - d))).unwrap_or(MAX_DECIMALS);
    let mut out = String::with_capacity(24);
    push_fixed(&mut out, micros / pow10(MAX_DECIMALS - digits), digits);
    out
}

/// The exact amount as decimal text without symbol or code, for machine
/// fields (`x-quota-used` style headers, JSON): the currency's minor digits,
/// and more when the amount has more (`"4.20"`, `"0.004"`, `"4.200001"`,
/// `"500"` yen). Never rounded, so [`parse_amount`] reads back the same
/// micro-units.
pub fn decimal_text(micros: u64, currency: &Currency) -> String {
    decimal_text_at(micros, currency.minor_digits)
}

/// The amount for people, rounded to the nearest minor unit, half up:
/// `$4.20`, `€0.50`, `¥500`, `4.20 XYZ` (see the module's rounding rules;
/// a non-zero amount never reads as zero: `$0.004`). For prices, limits
/// and the cost of one request; `used` and `remaining` take
/// [`format_amount_down`].
pub fn format_amount(micros: u64, currency: &Currency) -> String {
    format_rounded(micros, currency, Rounding::HalfUp)
}

/// The amount for people, rounded down to the minor unit: for what was
/// used and what remains, so neither claims more than there is. A non-zero
/// amount still never reads as zero (`$0.009` for 9999 micro-dollars).
pub fn format_amount_down(micros: u64, currency: &Currency) -> String {
    format_rounded(micros, currency, Rounding::Down)
}

/// An amount written exactly, as money: the currency's minor digits, and
/// more only where the amount has them ("$0.60025", "$25.000013", "$4.20").
/// For what one request costs, so it never reads as if it fit ("$25.00,
/// more than the $25.00") nor as more than it is.
pub fn format_exact(micros: u64, currency: &Currency) -> String {
    let mut out = String::with_capacity(32);
    if let Some(symbol) = currency.symbol {
        out.push_str(symbol);
    }
    out.push_str(&decimal_text(micros, currency));
    if currency.symbol.is_none() {
        out.push(' ');
        out.push_str(currency.code());
    }
    out
}

/// The amount for people, rounded by `mode` to the currency's minor digits,
/// or, when that would read as zero for a non-zero amount, to the fewest
/// more digits at which it does not. No thousands separators (they depend
/// on the reader's locale).
pub fn format_rounded(micros: u64, currency: &Currency, mode: Rounding) -> String {
    let digits = (currency.minor_digits..=MAX_DECIMALS)
        .find(|&d| micros == 0 || round_at(micros, d, mode) != 0)
        .unwrap_or(MAX_DECIMALS);
    let mut out = String::with_capacity(32);
    if let Some(symbol) = currency.symbol {
        out.push_str(symbol);
    }
    push_fixed(&mut out, round_at(micros, digits, mode), digits);
    if currency.symbol.is_none() {
        out.push(' ');
        out.push_str(currency.code());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn amounts_parse_to_exact_micro_units() {
        for (text, micros) in [
            ("0", 0),
            ("5", 5_000_000),
            ("5.00", 5_000_000),
            ("0.004", 4_000),
            ("0.000001", 1),
            ("0.01", 10_000),
            ("0.005", 5_000),
            ("1234.567891", 1_234_567_891),
            ("2.50", 2_500_000),
            ("0.075", 75_000),
            ("007.5", 7_500_000),
            ("5.000000", 5_000_000),
            ("9007199254.740991", MAX_UNITS),
            ("9007199254", 9_007_199_254_000_000),
        ] {
            assert_eq!(parse_amount(text), Ok(micros), "{text}");
        }
    }

    #[test]
    fn malformed_amounts_are_refused_with_a_reason() {
        let not_an_amount = |t: &str| {
            format!(
                "\"{t}\" is not an amount: digits with an optional '.' and up to 6 decimals, e.g. \"2.50\" \
                 (no sign, exponent, spaces or separators)"
            )
        };
        for text in [
            "1e3", "1E-2", " 5", "5 ", "1,000.00", "1 000", "1_000", "1.2.3", "abc", "５", "0x10", ".", "$5", "-",
            "--5", "+.5",
        ] {
            assert_eq!(parse_amount(text), Err(not_an_amount(text)), "{text}");
        }
        assert_eq!(parse_amount(""), Err("is empty: write an amount such as \"2.50\"".to_string()));
        assert_eq!(parse_amount("-1.5"), Err("\"-1.5\" is negative: an amount is 0 or more, e.g. \"1.5\"".into()));
        assert_eq!(parse_amount("+2"), Err("\"+2\" has a sign: write \"2\"".into()));
        assert_eq!(parse_amount(".5"), Err("\".5\" needs a digit before the '.': write \"0.5\"".into()));
        assert_eq!(parse_amount("5."), Err("\"5.\" needs a digit after the '.': write \"5\"".into()));
    }

    #[test]
    fn more_than_six_decimals_is_an_error_not_a_rounding() {
        assert_eq!(parse_amount("0.0000001"), Err("\"0.0000001\" has 7 decimals: at most 6 (a millionth)".into()));
        assert_eq!(parse_amount("1.5000000"), Err("\"1.5000000\" has 7 decimals: at most 6 (a millionth)".into()));
        assert_eq!(parse_amount("2.123456789"), Err("\"2.123456789\" has 9 decimals: at most 6 (a millionth)".into()));
    }

    #[test]
    fn amounts_past_the_unit_bound_are_refused() {
        let too_large = |t: &str| Err(format!("\"{t}\" is more than the largest amount, 9007199254.740991"));
        for text in ["9007199254.740992", "9007199255", "18446744073709.551615", "99999999999999999999999999"] {
            assert_eq!(parse_amount(text), too_large(text), "{text}");
        }
    }

    #[test]
    fn currencies_come_from_iso_codes() {
        let usd = currency("USD");
        assert_eq!((usd.code(), usd.symbol(), usd.minor_digits()), ("USD", Some("$"), 2));
        let jpy = currency("JPY");
        assert_eq!((jpy.code(), jpy.symbol(), jpy.minor_digits()), ("JPY", Some("¥"), 0));
        let chf = currency("CHF");
        assert_eq!((chf.code(), chf.symbol(), chf.minor_digits()), ("CHF", None, 2));
        let kwd = currency("KWD");
        assert_eq!((kwd.symbol(), kwd.minor_digits()), (None, 3));
        let unknown = currency("XYZ");
        assert_eq!((unknown.code(), unknown.symbol(), unknown.minor_digits()), ("XYZ", None, 2));
        for (code, symbol) in [("EUR", "€"), ("GBP", "£"), ("CAD", "CA$"), ("AUD", "A$"), ("INR", "₹")] {
            assert_eq!(currency(code).symbol(), Some(symbol));
        }
        for (code, symbol) in [("CNY", "CN¥"), ("BRL", "R$")] {
            assert_eq!(currency(code).symbol(), Some(symbol));
        }
        // Every entry of the table is itself a valid code, listed once, with at most 6 digits.
        for (i, (code, _, digits)) in KNOWN.iter().enumerate() {
            assert_eq!(currency(code).minor_digits(), *digits);
            assert!(*digits <= MAX_DECIMALS);
            assert!(KNOWN.iter().skip(i + 1).all(|(other, _, _)| other != code), "{code} twice");
        }
    }

    #[test]
    fn currency_codes_are_three_capital_letters() {
        assert_eq!(
            Currency::from_code("usd"),
            Err("\"usd\" is not an ISO 4217 currency code (three capital letters): write \"USD\"".into())
        );
        for code in ["", "US", "USDT", "U$D", "€", "12A", "ÉUR"] {
            let e = Currency::from_code(code).unwrap_err();
            assert!(e.starts_with(&format!("\"{code}\" is not an ISO 4217 currency code")), "{code}: {e}");
        }
        assert!(Currency::from_code("Usd").unwrap_err().ends_with(": write \"USD\""));
        assert!(Currency::from_code("US1").unwrap_err().ends_with(", e.g. \"USD\""));
        assert!(Currency::from_code("dollar").unwrap_err().ends_with(", e.g. \"USD\""));
    }

    #[test]
    fn amounts_are_written_with_the_currency() {
        let usd = currency("USD");
        for (micros, text) in [
            (4_200_000, "$4.20"),
            (0, "$0.00"),
            (1, "$0.000001"),
            (4_000, "$0.004"),
            (9_999, "$0.01"),
            (10_000, "$0.01"),
            (5_000, "$0.01"),
            (4_999, "$0.005"),
            (14_999, "$0.01"),
            (15_000, "$0.02"),
            (1_234_567_891, "$1234.57"),
            (MAX_UNITS, "$9007199254.74"),
            (u64::MAX, "$18446744073709.55"),
        ] {
            assert_eq!(format_amount(micros, &usd), text, "{micros}");
        }
        assert_eq!(format_amount(500_000, &currency("EUR")), "€0.50");
        assert_eq!(format_amount(4_200_000, &currency("XYZ")), "4.20 XYZ");
        assert_eq!(format_amount(4_000, &currency("CHF")), "0.004 CHF");
        assert_eq!(format_amount(1_234_500, &currency("KWD")), "1.235 KWD");
        assert_eq!(format_amount(3_000_000, &currency("CAD")), "CA$3.00");
        let jpy = currency("JPY");
        for (micros, text) in [
            (500_000_000, "¥500"),
            (500_499_999, "¥500"),
            (500_500_000, "¥501"),
            (0, "¥0"),
            (400_000, "¥0.4"),
            (500_000, "¥1"),
            (1, "¥0.000001"),
            (MAX_UNITS, "¥9007199255"),
        ] {
            assert_eq!(format_amount(micros, &jpy), text, "{micros}");
        }
    }

    #[test]
    fn used_and_remaining_round_down_and_never_read_as_zero() {
        let usd = currency("USD");
        for (micros, text) in [
            (0, "$0.00"),
            (1, "$0.000001"),
            (9, "$0.000009"),
            (10, "$0.00001"),
            (5_000, "$0.005"),
            (9_999, "$0.009"),
            (10_000, "$0.01"),
            (19_999, "$0.01"),
            (4_995_000, "$4.99"),
            (4_999_999, "$4.99"),
            (MAX_UNITS, "$9007199254.74"),
        ] {
            assert_eq!(format_amount_down(micros, &usd), text, "{micros}");
        }
        let jpy = currency("JPY");
        assert_eq!(format_amount_down(500_999_999, &jpy), "¥500");
        assert_eq!(format_amount_down(999_999, &jpy), "¥0.9");
        assert_eq!(format_amount_down(MAX_UNITS, &jpy), "¥9007199254");
        assert_eq!(format_rounded(1, &usd, Rounding::Up), "$0.01");
        assert_eq!(format_rounded(10_001, &usd, Rounding::Up), "$0.02");
        assert_eq!(format_rounded(0, &usd, Rounding::Up), "$0.00");
    }

    /// The amount a display shows, in micro-units (read without the bound:
    /// rounding up may pass it), and its decimals.
    fn shown(text: &str, c: &Currency) -> (u128, u32) {
        let number = match c.symbol() {
            Some(symbol) => text.strip_prefix(symbol).unwrap(),
            None => text.strip_suffix(&format!(" {}", c.code())).unwrap(),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let decimals = fraction.len() as u32;
        let fraction: u128 = if fraction.is_empty() { 0 } else { fraction.parse().unwrap() };
        let micros = whole.parse::<u128>().unwrap() * 1_000_000 + fraction * 10u128.pow(MAX_DECIMALS - decimals);
        (micros, decimals)
    }

    /// Every rounding rule, checked against its definition for each amount.
    fn check_display(micros: u64, c: &Currency) {
        let m = c.minor_digits();
        for (mode, text) in [
            (Rounding::HalfUp, format_amount(micros, c)),
            (Rounding::Down, format_amount_down(micros, c)),
            (Rounding::Up, format_rounded(micros, c, Rounding::Up)),
        ] {
            let (value, digits) = shown(&text, c);
            let micros = u128::from(micros);
            let step = u128::from(pow10(MAX_DECIMALS - digits));
            match mode {
                Rounding::Down => assert!(value <= micros && micros - value < step, "{micros} {text}"),
                Rounding::Up => assert!(value >= micros && value - micros < step, "{micros} {text}"),
                // Nearest: within half a step, and exactly half way shows the upper one.
                Rounding::HalfUp => assert!(
                    (value <= micros && 2 * (micros - value) < step)
                        || (value > micros && 2 * (value - micros) <= step),
                    "{micros} {text}"
                ),
            }
            assert_eq!(value == 0, micros == 0, "{micros} {text}");
            // More digits than the currency's only when those would show zero,
            // and then no more than needed.
            assert!(digits >= m, "{micros} {text}");
            if digits > m {
                // One digit fewer, the amount rounded this way would read as zero.
                let coarser = 10 * step;
                let zero = match mode {
                    Rounding::Down => micros < coarser,
                    Rounding::HalfUp => 2 * micros < coarser,
                    Rounding::Up => false,
                };
                assert!(zero, "{micros} {text}");
            }
        }
        assert_eq!(parse_amount(&decimal_text(micros, c)), Ok(micros), "{micros}");
        let minor = pow10(MAX_DECIMALS - m);
        assert_eq!(minor_units(micros, c, Rounding::Down), micros / minor);
        assert_eq!(minor_units(micros, c, Rounding::Up), micros.div_ceil(minor));
        let nearest = (2 * u128::from(micros) + u128::from(minor)) / (2 * u128::from(minor));
        assert_eq!(u128::from(minor_units(micros, c, Rounding::HalfUp)), nearest);
    }

    #[test]
    fn every_rounding_rule_holds_around_the_boundaries() {
        let mut amounts: Vec<u64> = (0..=30_000).collect();
        for p in 0..=15 {
            let power = 10u64.pow(p);
            for base in [power, 5 * power, MAX_UNITS / power] {
                amounts.extend(base.saturating_sub(3)..=base.saturating_add(3).min(MAX_UNITS));
            }
        }
        amounts.extend((0..2_000).map(|k| 500_000_000 + k * 499));
        amounts.extend(MAX_UNITS - 2_000..=MAX_UNITS);
        for code in ["USD", "JPY", "KWD", "XYZ"] {
            let c = currency(code);
            for &micros in &amounts {
                check_display(micros, &c);
            }
        }
    }

    #[test]
    fn minor_units_carry_integers_for_ratelimit_fields() {
        let usd = currency("USD");
        assert_eq!(minor_units(4_200_000, &usd, Rounding::Down), 420);
        assert_eq!(minor_units(4_995_000, &usd, Rounding::Down), 499);
        assert_eq!(minor_units(4_995_000, &usd, Rounding::HalfUp), 500);
        assert_eq!(minor_units(4_994_999, &usd, Rounding::HalfUp), 499);
        assert_eq!(minor_units(4_990_001, &usd, Rounding::Up), 500);
        assert_eq!(minor_units(1, &usd, Rounding::Down), 0);
        assert_eq!(minor_units(1, &usd, Rounding::Up), 1);
        assert_eq!(minor_units(0, &usd, Rounding::Up), 0);
        assert_eq!(minor_units(MAX_UNITS, &usd, Rounding::HalfUp), 900_719_925_474);
        let jpy = currency("JPY");
        assert_eq!(minor_units(500_500_000, &jpy, Rounding::Down), 500);
        assert_eq!(minor_units(500_500_000, &jpy, Rounding::HalfUp), 501);
        assert_eq!(minor_units(1_234_500, &currency("KWD"), Rounding::Down), 1_234);
    }

    #[test]
    fn decimal_text_is_exact_with_at_least_the_minor_digits() {
        let usd = currency("USD");
        for (micros, text) in [
            (4_200_000, "4.20"),
            (0, "0.00"),
            (1, "0.000001"),
            (4_000, "0.004"),
            (10_000, "0.01"),
            (4_200_001, "4.200001"),
            (4_250_000, "4.25"),
            (4_255_000, "4.255"),
            (MAX_UNITS, "9007199254.740991"),
        ] {
            assert_eq!(decimal_text(micros, &usd), text, "{micros}");
        }
        let jpy = currency("JPY");
        assert_eq!(decimal_text(500_000_000, &jpy), "500");
        assert_eq!(decimal_text(500_500_000, &jpy), "500.5");
        assert_eq!(decimal_text(0, &jpy), "0");
        assert_eq!(decimal_text(4_200_000, &currency("XYZ")), "4.20");
        assert_eq!(decimal_text(1_000_000, &currency("KWD")), "1.000");
    }
}
