//! Header maps as Envoy keeps them (ordered, lower-case names, repeats allowed)
//! and their ABI serialization: `u32 count`, then `u32 name_len, u32 value_len`
//! per pair, then each `name\0value\0`, all little-endian.

use std::fmt;

/// An ordered header multimap with lower-case names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(k, v)| format!("{k}: {v}"))).finish()
    }
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Headers {
        let mut headers = Headers::new();
        for (k, v) in pairs {
            headers.add(k.as_ref(), v.as_ref());
        }
        headers
    }

    /// The first value of `name` (any case), as Envoy's `get_header_map_value` returns.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a value (Envoy's `addCopy`); pseudo-headers stay in front.
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            let at = self.pairs.iter().position(|(k, _)| !k.starts_with(':')).unwrap_or(self.pairs.len());
            self.pairs.insert(at, (name, value.to_string()));
        } else {
            self.pairs.push((name, value.to_string()));
        }
    }

    /// Removes every value of `name`, then adds `value` (Envoy's `setCopy`).
    pub fn replace(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.add(name, value);
    }

    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Serializes for the guest.
    pub fn encode(&self) -> Vec<u8> {
        encode_pairs(self.pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Headers::from_pairs(iter)
    }
}

/// Serializes byte pairs in the ABI's map format.
pub fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let count = pairs.clone().count();
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// A name and a value as raw bytes.
pub type BytePair = (Vec<u8>, Vec<u8>);

/// Parses the ABI's map format. An empty input is an empty map.
pub fn decode_pairs(bytes: &[u8]) -> Result<Vec<BytePair>, &'static str> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, &'static str> {
        let raw = bytes.get(at..at + 4).ok_or("map data ends inside the size table")?;
        let mut le = [0u8; 4];
        le.copy_from_slice(raw);
        Ok(u32::from_le_bytes(le) as usize)
    };
    let count = word(0)?;
    let table_end = count.checked_mul(8).and_then(|n| n.checked_add(4)).ok_or("map count overflows")?;
    if table_end > bytes.len() {
        return Err("map count larger than the data");
    }
    let mut at = table_end;
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = word(4 + i * 8)?;
        let value_len = word(8 + i * 8)?;
        let key = bytes.get(at..at + key_len).ok_or("map key runs past the data")?.to_vec();
        at += key_len + 1;
        let value = bytes.get(at..at + value_len).ok_or("map value runs past the data")?.to_vec();
        at += value_len + 1;
        if at > bytes.len() {
            return Err("map entry misses its NUL terminator");
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Parses the ABI's map format into lossy UTF-8 headers (names lower-cased).
pub fn decode_headers(bytes: &[u8]) -> Result<Headers, &'static str> {
    let mut headers = Headers::new();
    for (k, v) in decode_pairs(bytes)? {
        headers.add(&String::from_utf8_lossy(&k), &String::from_utf8_lossy(&v));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_through_the_abi_format() {
        let headers = Headers::from_pairs([(":status", "200"), ("X-A", "1"), ("x-a", "2")]);
        let bytes = headers.encode();
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        let back = decode_headers(&bytes).unwrap();
        assert_eq!(back, headers);
        assert_eq!(back.get_all("x-a"), vec!["1", "2"]);
    }

    #[test]
    fn empty_map_encodes_as_a_zero_count() {
        assert_eq!(Headers::new().encode(), vec![0, 0, 0, 0]);
        assert!(decode_pairs(&[]).unwrap().is_empty());
    }

    #[test]
    fn truncated_data_is_an_error_not_a_panic() {
        let bytes = Headers::from_pairs([("a", "b")]).encode();
        for cut in 1..bytes.len() {
            assert!(decode_pairs(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn replace_drops_every_old_value_and_pseudo_headers_stay_first() {
        let mut headers = Headers::from_pairs([("a", "1"), ("a", "2"), ("b", "3")]);
        headers.replace("A", "9");
        headers.add(":path", "/");
        assert_eq!(headers.iter().collect::<Vec<_>>(), vec![(":path", "/"), ("b", "3"), ("a", "9")]);
    }
}
