//! Stage one's readers: the raw types read from the document's [`Node`]
//! tree, with serde's own messages ("unknown field `x`, expected one of ...",
//! "missing field `x`", "invalid type: string \"10\", expected u64") and
//! the JSON path of the value at fault.
//!
//! Written by hand instead of `#[derive(Deserialize)]`: a derived reader is
//! serde's whole machinery again for every struct and every field type, and
//! was a fifth of the filter's `.wasm`. Here each struct is one function
//! ([`read_object!`]) over a few shared, plain ones.

use super::error::ConfigError;
use super::tree::{Node, Number};
use serde::de::{Error as _, Unexpected};
use serde_json::Value;
use std::collections::BTreeMap;

/// A raw config type read from the value at `path`.
pub(crate) trait FromNode: Sized {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError>;
}

/// serde's wording of an error as `serde_json` words it (`null`, floats
/// as it prints them), without a position.
type Message = serde_json::Error;

pub(crate) fn invalid_type(path: &str, node: &Node, expected: &str) -> ConfigError {
    ConfigError::new(path, Message::invalid_type(node.unexpected(), &expected).to_string())
}

fn invalid_value(path: &str, found: Unexpected, expected: &str) -> ConfigError {
    ConfigError::new(path, Message::invalid_value(found, &expected).to_string())
}

/// The path of an object's member: as `locate.rs` names paths, `.` the document.
pub(crate) fn member_path(parent: &str, key: &str) -> String {
    match (parent, key) {
        ("." | "", "") => ".".to_string(),
        ("." | "", _) => key.to_string(),
        _ => format!("{parent}.{key}"),
    }
}

/// The members of the object at `path`, or serde's "invalid type" naming
/// what was expected (`struct RawCell`).
pub(crate) fn members<'a>(node: &'a Node, path: &str, expected: &str) -> Result<&'a [(String, Node)], ConfigError> {
    match node {
        Node::Object(members) => Ok(members),
        other => Err(invalid_type(path, other, expected)),
    }
}

/// Reads an object's members into a struct: `keys` maps each key to its
/// field's name (an alias to the field it stands for), `fields` lists the
/// keys as serde lists them in errors, `required` the fields an object must
/// set, and `read` stores one field's value. As serde reads a struct: in
/// document order, the first unknown key, field written twice or bad value
/// is the error; then the first required field missing, in their order.
/// One function for every struct (with `read_object!`'s small `read`), so
/// the `.wasm` holds one copy of the walk.
pub(crate) fn read_fields(
    node: &Node,
    path: &str,
    expected: &str,
    keys: &[(&str, &'static str)],
    fields: &'static [&'static str],
    required: &[&'static str],
    read: &mut dyn FnMut(&str, &Node, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in members(node, path, expected)? {
        let at = member_path(path, key);
        let Some(&(_, name)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(ConfigError::new(at, Message::unknown_field(key, fields).to_string()));
        };
        if seen.contains(&name) {
            return Err(ConfigError::new(at, Message::duplicate_field(name).to_string()));
        }
        seen.push(name);
        read(name, value, &at)?;
    }
    match required.iter().find(|name| !seen.contains(name)) {
        Some(missing) => Err(ConfigError::new(path, Message::missing_field(missing).to_string())),
        None => Ok(()),
    }
}

/// Reads a field's value into its place. Not inlined: each struct's
/// reader is then one call per field, the reading code one copy per type.
#[inline(never)]
pub(crate) fn store<T: FromNode>(field: &mut T, node: &Node, path: &str) -> Result<(), ConfigError> {
    *field = T::from_node(node, path)?;
    Ok(())
}

/// Declares how a raw struct is read from a JSON object (with
/// [`read_fields`]). Each field is read from the key of its name, or the
/// one after `=`; `| "alias"` adds a key for it, listed before it in errors
/// (as serde lists them); `: required` refuses an object without it (the
/// others keep their default: `None`, an empty list). A field renamed with
/// `=` can have no alias and cannot be required (none needs to).
macro_rules! read_object {
    ($ty:ident { $($field:ident $(= $key:literal)? $(| $alias:literal)* $(: $required:ident)?),* $(,)? }) => {
        impl $crate::config::read::FromNode for $ty {
            fn from_node(
                node: &$crate::config::tree::Node,
                path: &str,
            ) -> Result<Self, $crate::config::ConfigError> {
                use $crate::config::read::read_object;
                const KEYS: &[(&str, &str)] = &[$(
                    $(($alias, stringify!($field)),)*
                    (read_object!(@key $field $($key)?), read_object!(@key $field $($key)?))
                ),*];
                const FIELDS: &[&str] = &[$($($alias,)* read_object!(@key $field $($key)?)),*];
                const REQUIRED: &[&str] = &[$($(read_object!(@$required $field),)?)*];
                let mut out = $ty { $($field: Default::default()),* };
                let expected = concat!("struct ", stringify!($ty));
                $crate::config::read::read_fields(node, path, expected, KEYS, FIELDS, REQUIRED, &mut |name, value, at| {
                    match name {
                        $(read_object!(@key $field $($key)?) => {
                            $crate::config::read::store(&mut out.$field, value, at)?
                        })*
                        _ => {}
                    }
                    Ok(())
                })?;
                Ok(out)
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
    (@required $field:ident) => { stringify!($field) };
}
pub(crate) use read_object;

impl FromNode for String {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::String(s) => Ok(s.clone()),
            other => Err(invalid_type(path, other, "a string")),
        }
    }
}

impl FromNode for bool {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::Bool(b) => Ok(*b),
            other => Err(invalid_type(path, other, "a boolean")),
        }
    }
}

/// A whole number from 0 to `max`, named `expected` (`u64`) in errors.
fn unsigned(node: &Node, path: &str, max: u64, expected: &str) -> Result<u64, ConfigError> {
    match node {
        Node::Number(Number::Unsigned(n)) if *n <= max => Ok(*n),
        Node::Number(Number::Unsigned(n)) => Err(invalid_value(path, Unexpected::Unsigned(*n), expected)),
        Node::Number(Number::Signed(n)) => Err(invalid_value(path, Unexpected::Signed(*n), expected)),
        other => Err(invalid_type(path, other, expected)),
    }
}

impl FromNode for u64 {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        unsigned(node, path, u64::MAX, "u64")
    }
}

impl FromNode for u32 {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        let n = unsigned(node, path, u32::MAX.into(), "u32")?;
        u32::try_from(n).map_err(|_| invalid_value(path, Unexpected::Unsigned(n), "u32"))
    }
}

impl FromNode for u16 {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        let n = unsigned(node, path, u16::MAX.into(), "u16")?;
        u16::try_from(n).map_err(|_| invalid_value(path, Unexpected::Unsigned(n), "u16"))
    }
}

impl FromNode for f64 {
    // Whole numbers too, as serde reads them into an `f64`.
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::Number(Number::Unsigned(n)) => Ok(*n as f64),
            Node::Number(Number::Signed(n)) => Ok(*n as f64),
            Node::Number(Number::Float(f)) => Ok(*f),
            other => Err(invalid_type(path, other, "f64")),
        }
    }
}

/// Any JSON value (a body condition's operand), as `serde_json` reads it.
impl FromNode for Value {
    fn from_node(node: &Node, _: &str) -> Result<Self, ConfigError> {
        Ok(node.to_value())
    }
}

/// `null` is absent, as serde reads an `Option`.
impl<T: FromNode> FromNode for Option<T> {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        match node {
            Node::Null => Ok(None),
            other => T::from_node(other, path).map(Some),
        }
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        let Node::Array(items) = node else { return Err(invalid_type(path, node, "a sequence")) };
        items.iter().enumerate().map(|(i, item)| T::from_node(item, &format!("{path}[{i}]"))).collect()
    }
}

/// A map by name; of a key written twice the last value wins, as it did
/// when serde read these maps.
impl<T: FromNode> FromNode for BTreeMap<String, T> {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        let mut map = BTreeMap::new();
        for (key, value) in members(node, path, "a map")? {
            map.insert(key.clone(), T::from_node(value, &member_path(path, key))?);
        }
        Ok(map)
    }
}

/// Reads `text` as one raw type (tests of a part of the config).
#[cfg(test)]
pub(crate) fn from_json<T: FromNode>(text: &str) -> Result<T, ConfigError> {
    let node: Node = serde_json::from_str(text).map_err(|e| ConfigError::new(".", e.to_string()))?;
    T::from_node(&node, ".")
}
