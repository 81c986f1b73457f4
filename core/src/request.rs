//! The request as the core sees it: headers (pseudo-headers included) and a
//! way to ask the host for properties. The filter fills it with one host call.

/// Request headers with lower-case names, as the host hands them over.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    pub fn new(headers: Vec<(String, Vec<u8>)>) -> Self {
        RequestHead { headers }
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

    /// The path without its query string.
    pub fn path(&self) -> &str {
        let full = self.header_str(":path").unwrap_or("");
        full.split(['?', '#']).next().unwrap_or("")
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
