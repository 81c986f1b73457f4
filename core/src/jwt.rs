//! Reading a claim from a JWT's payload. The signature is not checked: the
//! trust model is that Envoy's `jwt_authn` filter verified the token first.

use serde_json::Value;

/// Tokens longer than this are ignored rather than decoded.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The claim at `path` in the payload of the (optionally `Bearer `) token.
/// Strings are returned as they are; numbers and booleans as text.
pub fn claim(token: &[u8], path: &[String]) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let token = std::str::from_utf8(token).ok()?.trim();
    let token = match token.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token.get(7..)?.trim_start(),
        _ => token,
    };
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    let bytes = base64url_decode(payload)?;
    let json: Value = serde_json::from_slice(&bytes).ok()?;
    let mut at = &json;
    for segment in path {
        at = at.get(segment.as_str())?;
    }
    match at {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The token in a credential header's value, read exactly as strictly as it
/// must be for this filter to see the token Envoy's `jwt_authn` verified:
/// `Bearer <token>` (the scheme in any case, one space, nothing else) or,
/// when `bare` (a custom header), `<token>` alone, where the token is three
/// base64url segments joined by dots, the last (the signature) possibly
/// empty. `None` for anything else: `jwt_authn` finds a `Bearer ` prefix
/// anywhere in a value, so text before it, a second token or a comma-joined
/// value could carry an unverified token that this filter would read.
pub fn bearer_token(value: &[u8], bare: bool) -> Option<&str> {
    let token = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value.get(7..)?,
        _ if bare => value,
        _ => return None,
    };
    let mut segments = token.split(|&b| b == b'.');
    let well_formed = matches!(
        (segments.next(), segments.next(), segments.next(), segments.next()),
        (Some(header), Some(payload), Some(signature), None)
            if !header.is_empty() && !payload.is_empty()
                && [header, payload, signature].iter().all(|s| s.iter().all(|&b| is_base64url(b)))
    );
    // Every byte is ASCII once the token is well formed.
    well_formed.then(|| std::str::from_utf8(token).ok()).flatten()
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes base64url, with or without padding. `None` on any bad byte.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot encode a byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    // {"alg":"none"} . {"sub":"alice","plan":"pro","org":{"id":42}} . (no signature)
    const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsInBsYW4iOiJwcm8iLCJvcmciOnsiaWQiOjQyfX0.";

    #[test]
    fn reads_claims_from_a_bearer_token() {
        let header = format!("Bearer {TOKEN}");
        assert_eq!(claim(header.as_bytes(), &path("sub")).as_deref(), Some("alice"));
        assert_eq!(claim(TOKEN.as_bytes(), &path("plan")).as_deref(), Some("pro"));
        assert_eq!(claim(TOKEN.as_bytes(), &path("org.id")).as_deref(), Some("42"));
        assert_eq!(claim(TOKEN.as_bytes(), &path("org")), None);
        assert_eq!(claim(TOKEN.as_bytes(), &path("missing")), None);
    }

    #[test]
    fn malformed_tokens_have_no_claims() {
        for bad in ["", "Bearer", "a.b.c", "not-a-jwt", "x.!!!.y", "eyJ9.e30", "Bearer ....."] {
            assert_eq!(claim(bad.as_bytes(), &path("sub")), None, "{bad}");
        }
        assert_eq!(claim(&[0xff, 0xfe, b'.', b'x'], &path("sub")), None);
        let huge = format!("a.{}.c", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(claim(huge.as_bytes(), &path("sub")), None);
    }

    #[test]
    fn reads_exactly_one_bearer_token() {
        let header = format!("Bearer {TOKEN}");
        assert_eq!(bearer_token(header.as_bytes(), false), Some(TOKEN));
        assert_eq!(bearer_token(format!("bEARER {TOKEN}").as_bytes(), false), Some(TOKEN));
        assert_eq!(bearer_token(b"Bearer a.b.c", false), Some("a.b.c"));
        assert_eq!(bearer_token(b"Bearer a-_9.B.", false), Some("a-_9.B."));
        assert_eq!(bearer_token(TOKEN.as_bytes(), true), Some(TOKEN));
        assert_eq!(bearer_token(header.as_bytes(), true), Some(TOKEN));
    }

    #[test]
    fn anything_but_one_bearer_token_is_refused() {
        let attack = format!("{TOKEN} Bearer x.y.z");
        let two = format!("Bearer {TOKEN}, Bearer x.y.z");
        let two_spaced = format!("Bearer {TOKEN} x.y.z");
        let padded = format!(" Bearer {TOKEN}");
        let trailing = format!("Bearer {TOKEN} ");
        let double_space = format!("Bearer  {TOKEN}");
        let tab = format!("Bearer\t{TOKEN}");
        let newline = format!("Bearer {TOKEN}\n");
        for bad in [
            attack.as_str(),
            two.as_str(),
            two_spaced.as_str(),
            padded.as_str(),
            trailing.as_str(),
            double_space.as_str(),
            tab.as_str(),
            newline.as_str(),
            TOKEN,
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer sk-not-a-jwt",
            "Bearer a.b",
            "Bearer a.b.c.d",
            "Bearer .b.c",
            "Bearer a..c",
            "Bearer a.b=.c",
            "Bearer a.b.c=",
            "Bearer a+b.c.d",
        ] {
            assert_eq!(bearer_token(bad.as_bytes(), false), None, "{bad:?}");
        }
        for bad in [attack.as_str(), two.as_str(), padded.as_str(), "", "a.b", "x a.b.c"] {
            assert_eq!(bearer_token(bad.as_bytes(), true), None, "bare {bad:?}");
        }
        assert_eq!(bearer_token(b"Bearer a.\xff.c", false), None);
    }

    #[test]
    fn decodes_base64url_with_and_without_padding() {
        assert_eq!(base64url_decode("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64url_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64url_decode("_-8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(base64url_decode("a"), None);
    }
}
