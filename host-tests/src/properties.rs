//! Properties (`proxy_get_property` / `proxy_set_property`). Envoy passes a path
//! as its segments joined by NUL bytes (`request\0path`) and answers from stream
//! info, metadata and filter state. Here a test sets the values it needs, per host
//! or per request; a few request attributes are derived from the stream.

use std::collections::HashMap;

/// A property path, e.g. `["metadata", "filter_metadata", "jwt", "plan"]`.
pub type PropertyPath = Vec<String>;

/// Splits a path as the guest sends it.
pub fn parse_path(raw: &[u8]) -> PropertyPath {
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Joins a path as a guest sends it.
pub fn encode_path<S: AsRef<str>>(path: &[S]) -> Vec<u8> {
    path.iter().map(|s| s.as_ref().as_bytes()).collect::<Vec<_>>().join(&0u8)
}

pub(crate) fn to_path<S: AsRef<str>>(path: &[S]) -> PropertyPath {
    path.iter().map(|s| s.as_ref().to_string()).collect()
}

/// Values as Envoy serializes them: strings raw, integers as 8 bytes little-endian.
pub fn int_value(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PropertyMap {
    values: HashMap<PropertyPath, Vec<u8>>,
}

impl PropertyMap {
    pub(crate) fn get(&self, path: &[String]) -> Option<&Vec<u8>> {
        self.values.get(path)
    }

    pub(crate) fn set(&mut self, path: PropertyPath, value: Vec<u8>) {
        self.values.insert(path, value);
    }

    pub(crate) fn remove(&mut self, path: &[String]) {
        self.values.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_nul_joining() {
        let raw = encode_path(&["request", "path"]);
        assert_eq!(raw, b"request\0path");
        assert_eq!(parse_path(&raw), vec!["request", "path"]);
        assert!(parse_path(b"").is_empty());
    }
}
