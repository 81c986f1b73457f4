//! Header-map calls that never panic. The SDK's helpers panic on any status
//! they do not expect (and on a header value that is not UTF-8), which would
//! kill the VM; these return what happened and let the caller carry on.

use proxy_wasm::types::MapType;
use std::ptr::null_mut;

const OK: u32 = 0;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: MapType, key_data: *const u8, key_size: usize) -> u32;
}

/// A header's value as bytes; `None` if absent or the map cannot be read.
pub fn get(map: MapType, name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host allocates the value with the module's allocator and
    // hands ownership to us.
    let status = unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    if data.is_null() {
        return (status == OK).then(Vec::new);
    }
    // SAFETY: see above.
    let value = unsafe { Vec::from_raw_parts(data, size, size) };
    (status == OK).then_some(value)
}

/// Sets (replaces) a header; returns whether the host accepted it.
pub fn set(map: MapType, name: &str, value: &str) -> bool {
    // SAFETY: borrowed buffers, read during the call only.
    unsafe { proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len()) == OK }
}

/// Removes a header; returns whether the host accepted it.
pub fn remove(map: MapType, name: &str) -> bool {
    // SAFETY: borrowed buffer, read during the call only.
    unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) == OK }
}

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: MapType, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: MapType, data: *const u8, size: usize) -> u32;
}

/// A header map as the host handed it over: one buffer, its entries read
/// in place ([`MapBytes::pairs`]) rather than copied out one by one.
pub struct MapBytes(Vec<u8>);

impl MapBytes {
    /// The entries in order, as (name, value) bytes; `None` if the buffer
    /// is not a map.
    pub fn pairs(&self) -> Option<Vec<(&[u8], &[u8])>> {
        decode(&self.0)
    }
}

/// A header map's buffer; `None` if the host cannot read the map.
pub fn read(map: MapType) -> Option<MapBytes> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host allocates the buffer with the module's allocator and
    // hands ownership to us.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if data.is_null() {
        return (status == OK).then(|| MapBytes(Vec::new()));
    }
    // SAFETY: see above.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    (status == OK).then_some(MapBytes(bytes))
}

/// Replaces a whole header map in one call; returns whether the host accepted it.
pub fn set_pairs<'a>(map: MapType, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> bool {
    let bytes = encode(pairs);
    // SAFETY: a borrowed buffer, read during the call only.
    unsafe { proxy_set_header_map_pairs(map, bytes.as_ptr(), bytes.len()) == OK }
}

/// The ABI's map encoding: the number of entries, each entry's name and
/// value lengths (u32, little-endian), then each name and value followed by NUL.
pub(super) fn encode<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let (count, data) = pairs.clone().fold((0usize, 0usize), |(n, len), (k, v)| (n + 1, len + k.len() + v.len() + 2));
    let mut out = Vec::with_capacity(4 + 8 * count + data);
    out.extend_from_slice(&len32(count).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&len32(k.len()).to_le_bytes());
        out.extend_from_slice(&len32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = word(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = word(4 + 8 * i)?;
        let value_len = word(8 + 8 * i)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries<'a>(list: &[(&'a str, &'a str)]) -> Vec<(&'a [u8], &'a [u8])> {
        list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect()
    }

    #[test]
    fn pairs_survive_encoding_in_order_with_repeats() {
        let list = entries(&[(":status", "200"), ("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x-empty", "")]);
        let bytes = encode(list.iter().copied());
        assert_eq!(decode(&bytes), Some(list));
    }

    #[test]
    fn an_empty_map_is_empty_whichever_way_the_host_says_it() {
        assert_eq!(decode(&[]), Some(Vec::new()));
        assert_eq!(decode(&0u32.to_le_bytes()), Some(Vec::new()));
    }

    #[test]
    fn truncated_or_lying_maps_are_refused_not_read_past_their_end() {
        let list = entries(&[("content-type", "text/event-stream")]);
        let bytes = encode(list.iter().copied());
        for cut in 1..bytes.len() - 1 {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert_eq!(decode(&huge), None);
    }
}
