//! What a response tells about the caller's quota, or why it tells
//! nothing: the filter did not classify the request, or the browser hid the
//! quota headers of a response from another origin.
//!
//! A page reads only some headers of a cross-origin response: the
//! CORS-safelisted ones (`content-type`, `cache-control`, ...) and those the
//! API lists in `Access-Control-Expose-Headers`. Without that list the
//! quota headers read as absent, exactly as on a route the filter does not
//! count; [`Reading`] tells the two apart from what the browser does let
//! the page see: the response's type (`Response.type` is `"cors"`) and, when
//! the API exposes it too, the expose list itself.

use crate::state::QuotaState;
use quota_core::headers::{CLASS, RATELIMIT, RATELIMIT_POLICY};
use quota_core::wire::{read_headers, Refusal, READ_HEADERS};

/// The response header that lists what a cross-origin page may read.
pub const EXPOSE_HEADER: &str = "access-control-expose-headers";

/// Every header an API in front of a page on another origin should list in
/// `Access-Control-Expose-Headers`: the ones this client reads, and the
/// list itself, so that the client can tell a request the filter did not
/// classify from one whose headers the browser hid.
pub fn expose_headers() -> Vec<&'static str> {
    READ_HEADERS.iter().copied().chain([EXPOSE_HEADER]).collect()
}

/// How the page got the response, as the browser tells it (`Response.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The page's own origin, or no browser at all (Node, a server): every
    /// header is there.
    Same,
    /// Another origin, under CORS (`"cors"`): only the CORS-safelisted
    /// headers and those the API exposes.
    Cross,
    /// Another origin fetched with `mode: "no-cors"` (`"opaque"`,
    /// `"opaqueredirect"`): no header and no body at all.
    Opaque,
}

impl Origin {
    /// From a fetch `Response.type`; anything else ("basic", "default",
    /// none) is read as the page's own origin.
    pub fn from_response_type(kind: Option<&str>) -> Origin {
        match kind {
            Some("cors") => Origin::Cross,
            Some("opaque" | "opaqueredirect") => Origin::Opaque,
            _ => Origin::Same,
        }
    }
}

/// What one response tells about the caller's quota.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// The quota headers (or a refusal's body) were there.
    Quota(Box<QuotaState>),
    /// Nothing of the contract, and nothing hidden: the filter did not
    /// classify the request (a route it does not count), or answered before
    /// classifying it (an identity refusal: see the status).
    NotClassified,
    /// A response from another origin whose quota headers the browser hid:
    /// a deployment problem, not the user's.
    HiddenByCors(Hidden),
}

/// Why a cross-origin response showed none of the quota headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// [`Origin::Cross`] or [`Origin::Opaque`].
    pub origin: Origin,
    /// The API's origin ("https://api.example.com"), when the response says.
    pub api: Option<String>,
    /// The API's `Access-Control-Expose-Headers`, when the page could read
    /// it (names in lower case); `None` when it was hidden too.
    pub exposed: Option<Vec<String>>,
}

impl Hidden {
    /// The headers to add to the API's `Access-Control-Expose-Headers`:
    /// those of [`expose_headers`] its list lacks (all of them when the
    /// page could not read the list).
    pub fn missing(&self) -> Vec<&'static str> {
        let listed = |name: &str| self.exposed.as_ref().is_some_and(|list| list.iter().any(|l| l == name));
        expose_headers().into_iter().filter(|name| !listed(name)).collect()
    }

    /// The explanation for the developer (a log line, a console warning):
    /// what the browser did and what the API must send.
    pub fn message(&self) -> String {
        let from = match &self.api {
            Some(api) => format!("The response came from {api}, another origin than this page's"),
            None => "The response came from another origin than this page's".to_string(),
        };
        if self.origin == Origin::Opaque {
            return format!(
                "{from}, fetched with mode \"no-cors\": the browser lets the page read nothing of such a \
                 response, neither its headers nor its body. Fetch the API with mode \"cors\" (fetch's default), \
                 and let the API's CORS policy allow this page's origin."
            );
        }
        let list = self.missing().join(", ");
        match &self.exposed {
            None => format!(
                "{from}, and the browser hid its quota headers: a page reads only the response headers \
                 that the API lists in Access-Control-Expose-Headers. List these there (in Envoy, the \
                 expose_headers of the CORS policy): {list}. With access-control-expose-headers itself \
                 in the list, this client also tells a request the quota filter did not classify from \
                 hidden headers."
            ),
            Some(_) => format!(
                "{from}, and the browser hid its quota headers: the API's Access-Control-Expose-Headers \
                 does not list them. Add these there (in Envoy, the expose_headers of the CORS policy): {list}."
            ),
        }
    }
}

impl Reading {
    /// Reads a response: its headers as the page sees them (after the
    /// browser's filtering), a refusal's body, and how the page got it.
    /// `api` is the origin of the response's URL, for the message.
    pub fn of_response<'a, I>(
        headers: I,
        refusal: Option<Refusal>,
        origin: Origin,
        api: Option<String>,
        observed_ms: i64,
    ) -> Reading
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        if let Some(state) = QuotaState::from_response(read_headers(headers.clone()), refusal, observed_ms) {
            return Reading::Quota(Box::new(state));
        }
        let exposed =
            headers.into_iter().find(|(name, _)| name.eq_ignore_ascii_case(EXPOSE_HEADER)).map(|(_, value)| {
                value.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect()
            });
        match origin {
            Origin::Same => Reading::NotClassified,
            Origin::Cross if exposed.as_deref().is_some_and(shows_classified) => Reading::NotClassified,
            Origin::Cross | Origin::Opaque => Reading::HiddenByCors(Hidden { origin, api, exposed }),
        }
    }

    /// "quota", "not_classified" or "hidden_by_cors".
    pub fn kind(&self) -> &'static str {
        match self {
            Reading::Quota(_) => "quota",
            Reading::NotClassified => "not_classified",
            Reading::HiddenByCors(_) => "hidden_by_cors",
        }
    }

    /// The state, when the response had one.
    pub fn quota(&self) -> Option<&QuotaState> {
        match self {
            Reading::Quota(state) => Some(state.as_ref()),
            _ => None,
        }
    }

    /// For the developer, when there is no state: why.
    pub fn message(&self) -> Option<String> {
        match self {
            Reading::Quota(_) => None,
            Reading::NotClassified => Some(
                "The response carries no quota headers: the quota filter did not classify this request \
                 (no quota applies to it), or answered it before classifying it (see the status)."
                    .to_string(),
            ),
            Reading::HiddenByCors(hidden) => Some(hidden.message()),
        }
    }

    /// The headers the API must add to `Access-Control-Expose-Headers`
    /// (empty unless hidden).
    pub fn missing_headers(&self) -> Vec<&'static str> {
        match self {
            Reading::HiddenByCors(hidden) => hidden.missing(),
            _ => Vec::new(),
        }
    }
}

/// Whether an expose list would have shown a classified response's
/// headers: every one carries `x-quota-class`, or (with the `x-quota-*`
/// family turned off) both RateLimit fields. `*` exposes everything (for
/// requests without credentials; with them the browser reads it as a name,
/// and hides the list itself unless it names itself).
fn shows_classified(exposed: &[String]) -> bool {
    let has = |name: &str| exposed.iter().any(|e| e == name);
    has("*") || has(CLASS) || (has(RATELIMIT) && has(RATELIMIT_POLICY))
}

/// The origin (`scheme://host[:port]`) of an absolute URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().filter(|h| !h.is_empty())?;
    Some(format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quota_core::wire::{read_refusal, WireState};

    const T0: i64 = 1_795_348_800_000;
    const API: &str = "https://api.example.com";

    /// The headers of an admitted draft, as the filter sends them.
    const DRAFT: [(&str, &str); 12] = [
        ("content-type", "application/json"),
        ("x-quota-class", "drafts"),
        ("x-quota-tier", "free"),
        ("x-quota-used", "1"),
        ("x-quota-limit", "5"),
        ("x-quota-soft-limit", "3"),
        ("x-quota-remaining", "4"),
        ("x-quota-reset-after", "43200"),
        ("x-quota-state", "ok"),
        ("x-quota-cost", "1"),
        ("ratelimit-policy", "\"drafts\";q=5;w=86400"),
        ("ratelimit", "\"drafts\";r=4;t=43200"),
    ];

    /// The CORS-safelisted response headers (Fetch): a page on another
    /// origin always reads these.
    const SAFELISTED: [&str; 7] =
        ["cache-control", "content-language", "content-length", "content-type", "expires", "last-modified", "pragma"];

    /// What a page on another origin sees of `headers` when the API sends
    /// `Access-Control-Expose-Headers: expose` (None: no such header), as
    /// a browser filters a CORS response.
    fn seen(headers: &[(&str, &str)], expose: Option<&str>) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        if let Some(list) = expose {
            all.push((EXPOSE_HEADER.to_string(), list.to_string()));
        }
        let names: Vec<String> =
            expose.map(|l| l.split(',').map(|n| n.trim().to_ascii_lowercase()).collect()).unwrap_or_default();
        let wildcard = names.iter().any(|n| n == "*");
        all.into_iter()
            .filter(|(n, _)| wildcard || SAFELISTED.contains(&n.as_str()) || names.contains(&n.to_ascii_lowercase()))
            .collect()
    }

    fn read(headers: &[(String, String)], origin: Origin, body: Option<&str>) -> Reading {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        Reading::of_response(pairs, body.and_then(read_refusal), origin, Some(API.to_string()), T0)
    }

    fn every_header() -> String {
        expose_headers().join(", ")
    }

    #[test]
    fn a_cross_origin_response_with_its_headers_exposed_reads_as_quota() {
        let reading = read(&seen(&DRAFT, Some(&every_header())), Origin::Cross, None);
        assert_eq!(reading.kind(), "quota");
        let s = reading.quota().unwrap();
        assert_eq!((s.class.as_str(), s.used, s.limit, s.remaining), ("drafts", Some(1), Some(5), Some(4)));
        assert_eq!(s.window_seconds, Some(86_400));
        assert_eq!((reading.message(), reading.missing_headers()), (None, vec![]));
        // The same as the page's own origin reads every header.
        let all: Vec<(String, String)> = DRAFT.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(read(&all, Origin::Same, None), reading);
    }

    #[test]
    fn quota_headers_hidden_by_cors_are_not_read_as_an_unclassified_request() {
        // The API allows the origin but exposes nothing: the page sees only
        // content-type, as on a route the filter does not count.
        let headers = seen(&DRAFT, None);
        assert_eq!(headers, [("content-type".to_string(), "application/json".to_string())]);
        let reading = read(&headers, Origin::Cross, None);
        let Reading::HiddenByCors(hidden) = &reading else { panic!("hidden: {reading:?}") };
        assert_eq!((hidden.origin, hidden.exposed.as_ref()), (Origin::Cross, None));
        assert_eq!(reading.missing_headers(), expose_headers());
        let message = reading.message().unwrap();
        assert!(message.starts_with("The response came from https://api.example.com, another origin"), "{message}");
        assert!(message.contains("Access-Control-Expose-Headers"), "{message}");
        assert!(message.contains(&every_header()), "{message}");
        // The same headers from the page's own origin: nothing was hidden.
        assert_eq!(read(&headers, Origin::Same, None), Reading::NotClassified);
    }

    #[test]
    fn an_exposed_expose_list_tells_an_unclassified_request_apart() {
        // A route the filter does not count, behind the recommended list:
        // the page reads the list itself, which names x-quota-class.
        let unclassified = [("content-type", "application/json"), ("x-request-id", "abc")];
        let reading = read(&seen(&unclassified, Some(&every_header())), Origin::Cross, None);
        assert_eq!(reading, Reading::NotClassified);
        assert!(reading.message().unwrap().contains("did not classify"));
        // `*` (requests without credentials) exposes everything, the list included.
        assert_eq!(read(&seen(&unclassified, Some("*")), Origin::Cross, None), Reading::NotClassified);
        // With the x-quota-* family off, the RateLimit fields are the sign.
        let ietf = read(
            &seen(&unclassified, Some("ratelimit, ratelimit-policy, access-control-expose-headers")),
            Origin::Cross,
            None,
        );
        assert_eq!(ietf, Reading::NotClassified);
    }

    #[test]
    fn an_expose_list_without_the_quota_headers_names_the_ones_to_add() {
        let list = "access-control-expose-headers, x-request-id, Retry-After";
        let reading = read(&seen(&DRAFT, Some(list)), Origin::Cross, None);
        let Reading::HiddenByCors(hidden) = &reading else { panic!("hidden: {reading:?}") };
        assert_eq!(
            hidden.exposed.as_deref(),
            Some(&["access-control-expose-headers".to_string(), "x-request-id".into(), "retry-after".into()][..])
        );
        let missing = reading.missing_headers();
        assert_eq!(missing.len(), READ_HEADERS.len() - 1);
        assert!(missing.contains(&"x-quota-class") && missing.contains(&"ratelimit"));
        assert!(!missing.contains(&"retry-after") && !missing.contains(&EXPOSE_HEADER));
        let message = reading.message().unwrap();
        assert!(message.contains("does not list them. Add these there"), "{message}");
        assert!(message.ends_with(&format!("{}.", missing.join(", "))), "{message}");
    }

    #[test]
    fn a_list_that_names_only_itself_is_not_taken_for_exposed_quota_headers() {
        // The list is readable, but exposes nothing of the contract: a
        // classified response would have looked the same.
        let reading = read(&seen(&DRAFT, Some(EXPOSE_HEADER)), Origin::Cross, None);
        assert_eq!(reading.kind(), "hidden_by_cors");
        assert_eq!(reading.missing_headers(), READ_HEADERS);
    }

    #[test]
    fn a_refusal_reads_from_its_body_even_with_the_headers_hidden() {
        let body = r#"{"error":{"message":"You've used your 5 drafts for today.","type":"quota_exceeded",
            "quota":{"class":"drafts","tier":"free","state":"blocked","used":5,"limit":5,"remaining":0,"reset_after":3600}}}"#;
        let headers = [("content-type", "application/json"), ("x-quota-class", "drafts"), ("x-quota-state", "blocked")];
        let reading = read(&seen(&headers, None), Origin::Cross, Some(body));
        let s = reading.quota().unwrap();
        assert_eq!((s.state.clone(), s.used, s.limit), (WireState::Blocked, Some(5), Some(5)));
        assert_eq!(s.message.as_deref(), Some("You've used your 5 drafts for today."));
    }

    #[test]
    fn an_opaque_response_says_the_page_can_read_nothing_of_it() {
        let reading = read(&[], Origin::Opaque, None);
        assert_eq!(reading.kind(), "hidden_by_cors");
        let message = reading.message().unwrap();
        assert!(message.contains("mode \"no-cors\"") && message.contains("mode \"cors\""), "{message}");
    }

    #[test]
    fn the_response_type_says_where_the_response_came_from() {
        assert_eq!(Origin::from_response_type(Some("cors")), Origin::Cross);
        assert_eq!(Origin::from_response_type(Some("opaque")), Origin::Opaque);
        assert_eq!(Origin::from_response_type(Some("opaqueredirect")), Origin::Opaque);
        for same in [Some("basic"), Some("default"), Some("error"), None] {
            assert_eq!(Origin::from_response_type(same), Origin::Same, "{same:?}");
        }
    }

    #[test]
    fn the_origin_of_a_url_is_its_scheme_host_and_port() {
        assert_eq!(origin_of("https://API.example.com/v1/quota?x=1").as_deref(), Some("https://api.example.com"));
        assert_eq!(origin_of("http://127.0.0.1:10000").as_deref(), Some("http://127.0.0.1:10000"));
        assert_eq!(origin_of("http://h:1?q").as_deref(), Some("http://h:1"));
        for bad in ["", "/v1/quota", "https://", "https:///path"] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_expose_list_is_every_header_the_client_reads_and_itself() {
        let list = expose_headers();
        assert_eq!(&list[..READ_HEADERS.len()], READ_HEADERS);
        assert_eq!(list.last(), Some(&EXPOSE_HEADER));
        for name in ["x-quota-class", "x-quota-warning", "ratelimit", "ratelimit-policy", "retry-after"] {
            assert!(list.contains(&name), "{name}");
        }
    }

    /// envoy/examples/cors.yaml, the config the README shows and
    /// envoy/tests/test_cors.py runs, exposes what the client reads.
    #[test]
    fn the_envoy_cors_example_exposes_every_header_the_client_reads() {
        let example = include_str!("../../envoy/examples/cors.yaml");
        let lines: Vec<&str> = example.lines().filter_map(|l| l.trim().strip_prefix("expose_headers:")).collect();
        let [value] = &lines[..] else { panic!("one expose_headers line in the example: {lines:?}") };
        let listed: Vec<String> = value.trim().split(',').map(|n| n.trim().to_ascii_lowercase()).collect();
        assert_eq!(listed, expose_headers(), "envoy/examples/cors.yaml's expose_headers");
    }
}
