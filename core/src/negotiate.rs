//! Which body a refusal gets: from the request's `Accept` header
//! (problem details or a page for browsers, when asked for), else the
//! JSON error envelope of the API the client speaks: Anthropic's for an
//! Anthropic-style request (its path, its `anthropic-version` header, or
//! the class's `error_format`), OpenAI's otherwise.

/// The formats the filter writes its own answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: an OpenAI-compatible error envelope (the default).
    OpenAi,
    /// `application/json`: Anthropic's error envelope
    /// (`{"type": "error", "error": {"type": ..., "message": ...}}`).
    Anthropic,
    /// `application/problem+json` (RFC 9457).
    Problem,
    /// `text/html`: a small page for browsers.
    Html,
}

impl BodyFormat {
    pub fn content_type(&self) -> &'static str {
        match self {
            BodyFormat::OpenAi | BodyFormat::Anthropic => "application/json",
            BodyFormat::Problem => "application/problem+json",
            BodyFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// Which JSON error envelope a class answers in (a class's `error_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorFormat {
    /// By the request: Anthropic's for an Anthropic-style path or an
    /// `anthropic-version` header, else OpenAI's (the default).
    #[default]
    Auto,
    OpenAi,
    Anthropic,
}

impl ErrorFormat {
    /// Reads a class's `error_format` value.
    pub fn parse(text: &str) -> Option<ErrorFormat> {
        match text {
            "auto" => Some(ErrorFormat::Auto),
            "openai" => Some(ErrorFormat::OpenAi),
            "anthropic" => Some(ErrorFormat::Anthropic),
            _ => None,
        }
    }
}

/// The request header every Anthropic SDK sends.
pub const ANTHROPIC_VERSION: &str = "anthropic-version";

/// Whether a request speaks Anthropic's API: its path (query aside) is a
/// Messages or Text Completions path (`/v1/messages`, its sub-paths such as
/// `/v1/messages/count_tokens` and `/v1/messages/batches`, `/v1/complete`),
/// under any prefix a gateway adds (`/anthropic/v1/messages`), or it
/// carries the `anthropic-version` header.
pub fn speaks_anthropic(path: &str, anthropic_version: bool) -> bool {
    if anthropic_version {
        return true;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.ends_with("/v1/complete") || path.ends_with("/v1/messages") {
        return true;
    }
    // (A plain scan: `str::contains` sets up a substring searcher first,
    // which costs more than the scan of a path.)
    path.as_bytes().windows(b"/v1/messages/".len()).any(|w| w == b"/v1/messages/")
}

/// The format of an answer to a request: what `Accept` asks for (problem
/// details, a page), else the JSON envelope of the API the request speaks
/// (`format` from the class when it is known, else by the request).
pub fn negotiate_for(accept: Option<&str>, format: ErrorFormat, anthropic: impl FnOnce() -> bool) -> BodyFormat {
    match negotiate(accept) {
        BodyFormat::OpenAi => match format {
            ErrorFormat::OpenAi => BodyFormat::OpenAi,
            ErrorFormat::Anthropic => BodyFormat::Anthropic,
            ErrorFormat::Auto if anthropic() => BodyFormat::Anthropic,
            ErrorFormat::Auto => BodyFormat::OpenAi,
        },
        other => other,
    }
}

/// Picks the format the client prefers (highest `q`); ties and anything
/// unrecognised fall back to the OpenAI envelope, which SDKs understand
/// ([`negotiate_for`] picks between the JSON envelopes).
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
    fn anthropic_paths_and_the_version_header_speak_anthropic() {
        for path in [
            "/v1/messages",
            "/v1/messages/",
            "/v1/messages?beta=true",
            "/v1/messages/count_tokens",
            "/v1/messages/batches/msgbatch_1/results",
            "/anthropic/v1/messages",
            "/v1/complete",
        ] {
            assert!(speaks_anthropic(path, false), "{path}");
        }
        for path in
            ["/v1/chat/completions", "/v1/completions", "/v1/messagesx", "/v2/messages", "/", "", "/v1/complete/x"]
        {
            assert!(!speaks_anthropic(path, false), "{path}");
        }
        assert!(speaks_anthropic("/v1/chat/completions", true));
    }

    #[test]
    fn accept_keeps_winning_over_the_dialect() {
        let yes = || true;
        assert_eq!(negotiate_for(None, ErrorFormat::Auto, yes), BodyFormat::Anthropic);
        assert_eq!(negotiate_for(Some("application/json"), ErrorFormat::Auto, yes), BodyFormat::Anthropic);
        assert_eq!(negotiate_for(Some("*/*"), ErrorFormat::Auto, || false), BodyFormat::OpenAi);
        assert_eq!(negotiate_for(Some("application/problem+json"), ErrorFormat::Anthropic, yes), BodyFormat::Problem);
        assert_eq!(negotiate_for(Some("text/html"), ErrorFormat::Anthropic, yes), BodyFormat::Html);
        // The class's format wins over the request's dialect, both ways.
        assert_eq!(negotiate_for(None, ErrorFormat::OpenAi, yes), BodyFormat::OpenAi);
        assert_eq!(negotiate_for(None, ErrorFormat::Anthropic, || false), BodyFormat::Anthropic);
        assert_eq!(BodyFormat::Anthropic.content_type(), "application/json");
    }

    #[test]
    fn error_formats_parse() {
        assert_eq!(ErrorFormat::parse("auto"), Some(ErrorFormat::Auto));
        assert_eq!(ErrorFormat::parse("openai"), Some(ErrorFormat::OpenAi));
        assert_eq!(ErrorFormat::parse("anthropic"), Some(ErrorFormat::Anthropic));
        assert_eq!(ErrorFormat::parse("Anthropic"), None);
    }

    #[test]
    fn media_types_are_case_insensitive() {
        assert_eq!(negotiate(Some("Text/HTML")), BodyFormat::Html);
        assert_eq!(negotiate(Some("TEXT/*")), BodyFormat::Html);
        assert_eq!(negotiate(Some("Application/Problem+JSON")), BodyFormat::Problem);
        assert_eq!(negotiate(Some("text/html;q=0.5, APPLICATION/JSON")), BodyFormat::OpenAi);
    }
}
