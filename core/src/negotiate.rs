//! Which body a refusal gets, from the request's `Accept` header.

/// The formats the filter writes its own answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: an OpenAI-compatible error envelope (the default).
    OpenAi,
    /// `application/problem+json` (RFC 9457).
    Problem,
    /// `text/html`: a small page for browsers.
    Html,
}

impl BodyFormat {
    pub fn content_type(&self) -> &'static str {
        match self {
            BodyFormat::OpenAi => "application/json",
            BodyFormat::Problem => "application/problem+json",
            BodyFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// Picks the format the client prefers (highest `q`); ties and anything
/// unrecognised fall back to the OpenAI envelope, which SDKs understand.
pub fn negotiate(accept: Option<&str>) -> BodyFormat {
    let Some(accept) = accept else {
        return BodyFormat::OpenAi;
    };
    let offers = [
        (BodyFormat::OpenAi, "application", "json"),
        (BodyFormat::Problem, "application", "problem+json"),
        (BodyFormat::Html, "text", "html"),
    ];
    let mut best = (BodyFormat::OpenAi, 0.0f32, 0u8);
    for (format, kind, sub) in offers {
        // The most specific range that matches decides this offer's q.
        let mut found: Option<(u8, f32)> = None;
        for range in accept.split(',').take(32) {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let (rk, rs) = media.split_once('/').unwrap_or((media, ""));
            // Media types are case-insensitive; compared in place, no lower-cased copy.
            let specificity = match (rk, rs) {
                (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 3,
                (k, "*") if k.eq_ignore_ascii_case(kind) => 2,
                ("*", "*") => 1,
                _ => continue,
            };
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            if found.is_none_or(|(s, _)| specificity > s) {
                found = Some((specificity, q));
            }
        }
        if let Some((specificity, q)) = found {
            // Prefer higher q, then an explicitly named type over a wildcard.
            if q > best.1 || (q == best.1 && q > 0.0 && specificity > best.2) {
                best = (format, q, specificity);
            }
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_openai_envelope() {
        assert_eq!(negotiate(None), BodyFormat::OpenAi);
        assert_eq!(negotiate(Some("*/*")), BodyFormat::OpenAi);
        assert_eq!(negotiate(Some("application/json")), BodyFormat::OpenAi);
        assert_eq!(negotiate(Some("image/png")), BodyFormat::OpenAi);
        assert_eq!(negotiate(Some("")), BodyFormat::OpenAi);
    }

    #[test]
    fn honours_problem_json_and_browsers() {
        assert_eq!(negotiate(Some("application/problem+json")), BodyFormat::Problem);
        assert_eq!(negotiate(Some("application/problem+json, application/json;q=0.5")), BodyFormat::Problem);
        assert_eq!(
            negotiate(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")),
            BodyFormat::Html
        );
        assert_eq!(negotiate(Some("text/*")), BodyFormat::Html);
        assert_eq!(negotiate(Some("text/html;q=0.4, application/json")), BodyFormat::OpenAi);
    }

    #[test]
    fn media_types_are_case_insensitive() {
        assert_eq!(negotiate(Some("Text/HTML")), BodyFormat::Html);
        assert_eq!(negotiate(Some("TEXT/*")), BodyFormat::Html);
        assert_eq!(negotiate(Some("Application/Problem+JSON")), BodyFormat::Problem);
        assert_eq!(negotiate(Some("text/html;q=0.5, APPLICATION/JSON")), BodyFormat::OpenAi);
    }
}
