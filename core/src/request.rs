//! The request as the core sees it: headers (pseudo-headers included) and a
//! way to ask the host for properties. The filter fills it with one host call.

/// Request headers with lower-case names, as the host hands them over.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The headers; `:path` is read once, by [`RequestHead::new`]: build a
    /// new head rather than change `:path` here.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The normalised `:path`, computed once: every rule and endpoint
    /// compares against it.
    path: String,
}

impl RequestHead {
    pub fn new(headers: Vec<(String, Vec<u8>)>) -> Self {
        let path = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(":path"))
            .map_or_else(String::new, |(_, v)| crate::path::normalize(v));
        RequestHead { headers, path }
    }

    /// The first value of a header, as bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The first value of a header, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn method(&self) -> &str {
        self.header_str(":method").unwrap_or("")
    }

    /// The body length the request declares: one `content-length` of ASCII
    /// digits that fits a `u64`. `None` for anything else (no header, a
    /// chunked or HTTP/2 body, a value Envoy's codec would have refused).
    pub fn content_length(&self) -> Option<u64> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        let (_, value) = values.next()?;
        if values.next().is_some() || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(value).ok()?.parse().ok()
    }

    /// The path rules and endpoints match: `:path` normalised by
    /// [`crate::path::normalize`] (no query, one spelling per resource).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Host properties (Envoy attributes and metadata), looked up by path.
pub trait Properties {
    fn property(&self, path: &[String]) -> Option<Vec<u8>>;
}

/// A host without properties.
pub struct NoProperties;

impl Properties for NoProperties {
    fn property(&self, _: &[String]) -> Option<Vec<u8>> {
        None
    }
}
