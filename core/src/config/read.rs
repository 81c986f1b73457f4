//! Stage one's readers: the raw types read from the document's [`Node`]
//! tree, with serde's own messages ("unknown field `x`, expected one of ...",
//! "missing field `x`", "invalid type: string \"10\", expected u64") and
//! the JSON path of the value at fault.
//!
//! Written by hand instead of `#[derive(Deserialize)]`: a derived reader is
//! serde's machinery again for every struct and every field type, about
//! 200 KB of the filter's 1.1 MB `.wasm`. Here a struct is a table of its
//! fields' names ([`read_object!`]) and one shared walk ([`read_fields`]).

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

/// A struct's field, as [`read_fields`] fills it: any raw type.
pub(crate) trait Field {
    fn read(&mut self, node: &Node, path: &str) -> Result<(), ConfigError>;
}

impl<T: FromNode> Field for T {
    fn read(&mut self, node: &Node, path: &str) -> Result<(), ConfigError> {
        *self = T::from_node(node, path)?;
        Ok(())
    }
}

/// What [`read_fields`] knows of a struct: its fields' JSON names (in the
/// order of its `fields`), aliases (key, name), the keys as serde lists them
/// in errors, and the names an object must set.
pub(crate) struct Shape {
    pub expected: &'static str,
    pub names: &'static [&'static str],
    pub aliases: &'static [(&'static str, &'static str)],
    pub keys: &'static [&'static str],
    pub required: &'static [&'static str],
}

/// A struct read from a JSON object (declared with [`read_object!`]).
pub(crate) trait Object {
    const SHAPE: Shape;
}

/// Reads an object's members into a struct's `fields`, as serde reads a
/// struct: in document order, the first unknown key, field written twice
/// or bad value is the error; then the first required field missing, in
/// their order. One function for every struct, handed the struct's fields
/// as `dyn Field`: the `.wasm` holds one copy of the walk, and one reader
/// per field type.
pub(crate) fn read_fields(
    node: &Node,
    path: &str,
    shape: &Shape,
    fields: &mut [&mut dyn Field],
) -> Result<(), ConfigError> {
    let mut seen = vec![false; fields.len()];
    for (key, value) in members(node, path, shape.expected)? {
        let at = member_path(path, key);
        let name = shape.aliases.iter().find(|(alias, _)| alias == key).map_or(key.as_str(), |(_, name)| name);
        let found =
            shape.names.iter().zip(fields.iter_mut()).zip(seen.iter_mut()).find(|((known, _), _)| **known == name);
        let Some(((name, field), seen)) = found else {
            return Err(ConfigError::new(at, Message::unknown_field(key, shape.keys).to_string()));
        };
        if *seen {
            return Err(ConfigError::new(at, Message::duplicate_field(name).to_string()));
        }
        *seen = true;
        field.read(value, &at)?;
    }
    let set = |name: &&str| shape.names.iter().zip(&seen).any(|(known, set)| known == name && *set);
    match shape.required.iter().find(|name| !set(name)) {
        Some(missing) => Err(ConfigError::new(path, Message::missing_field(missing).to_string())),
        None => Ok(()),
    }
}

/// Declares how a raw struct is read from a JSON object (with
/// [`read_fields`]). Each field is read from the key of its name, or the
/// one after `=`; `| "alias"` adds a key for it, listed before it in errors
/// (as serde lists them); `: required` refuses an object without it (the
/// others keep their default: `None`, an empty list). A field renamed with
/// `=` can have no alias and cannot be required (none needs to).
macro_rules! read_object {
    ($ty:ident { $($field:ident $(= $key:literal)? $(| $alias:literal)* $(: $required:ident)?),* $(,)? }) => {
        impl $crate::config::read::Object for $ty {
            const SHAPE: $crate::config::read::Shape = $crate::config::read::Shape {
                expected: concat!("struct ", stringify!($ty)),
                names: &[$($crate::config::read::read_object!(@key $field $($key)?)),*],
                aliases: &[$($(($alias, stringify!($field)),)*)*],
                keys: &[$($($alias,)* $crate::config::read::read_object!(@key $field $($key)?)),*],
                required: &[$($($crate::config::read::read_object!(@$required $field),)?)*],
            };
        }

        impl $crate::config::read::FromNode for $ty {
            fn from_node(
                node: &$crate::config::tree::Node,
                path: &str,
            ) -> Result<Self, $crate::config::ConfigError> {
                use $crate::config::read::{Field, Object};
                let mut out = $ty { $($field: Default::default()),* };
                $crate::config::read::read_fields(node, path, &Self::SHAPE, &mut [$(&mut out.$field as &mut dyn Field),*])?;
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

/// The error of a name written twice in a map by name (two tiers called
/// `free`): refused like a field written twice, since one of the two would
/// silently do nothing.
pub(crate) fn duplicate_name(path: &str, key: &str) -> ConfigError {
    ConfigError::new(member_path(path, key), format!("duplicate name `{key}`: written twice in this object"))
}

/// A map by name; a name written twice is refused ([`duplicate_name`]).
impl<T: FromNode> FromNode for BTreeMap<String, T> {
    fn from_node(node: &Node, path: &str) -> Result<Self, ConfigError> {
        let mut map = BTreeMap::new();
        for (key, value) in members(node, path, "a map")? {
            let value = T::from_node(value, &member_path(path, key))?;
            if map.insert(key.clone(), value).is_some() {
                return Err(duplicate_name(path, key));
            }
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
