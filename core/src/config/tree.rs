//! The config document as a tree, parsed once by `serde_json` before the
//! readers of `read.rs` walk it. Unlike `serde_json::Value`, an object keeps
//! every member it was written with, a key written twice included, so a
//! struct's field set twice is refused rather than silently the last one.
//! One hand-written visitor: the raw types have no `Deserialize` of their own
//! (each derived one was its own copy of serde's machinery in the `.wasm`).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::Value;
use std::fmt;

/// A JSON value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    /// Members in document order, a key written twice kept twice.
    Object(Vec<(String, Node)>),
}

/// A JSON number as `serde_json` reads it: a whole number that fits `u64`,
/// a negative one that fits `i64`, or else a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Node {
    /// The value as serde names it in "invalid type" errors (`string "x"`,
    /// `integer `7``, `map`...), so the readers' messages are serde's.
    pub fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Node::Null => Unexpected::Unit,
            Node::Bool(b) => Unexpected::Bool(*b),
            Node::Number(Number::Unsigned(n)) => Unexpected::Unsigned(*n),
            Node::Number(Number::Signed(n)) => Unexpected::Signed(*n),
            Node::Number(Number::Float(f)) => Unexpected::Float(*f),
            Node::String(s) => Unexpected::Str(s),
            Node::Array(_) => Unexpected::Seq,
            Node::Object(_) => Unexpected::Map,
        }
    }

    /// The value as `serde_json` would have read it: of a key written twice,
    /// the last value (in the first one's place).
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(Number::Unsigned(n)) => Value::from(*n),
            Node::Number(Number::Signed(n)) => Value::from(*n),
            Node::Number(Number::Float(f)) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::String(s) => Value::String(s.clone()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => {
                let mut map = serde_json::Map::new();
                for (key, value) in members {
                    map.insert(key.clone(), value.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(Number::Unsigned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(u64::try_from(v).map_or(Number::Signed(v), Number::Unsigned)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(Number::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_key_written_twice_is_kept_twice() {
        let Node::Object(members) = parse(r#"{"a": 1, "a": 2}"#) else { panic!("not an object") };
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn numbers_are_read_as_serde_json_reads_them() {
        assert_eq!(parse("7"), Node::Number(Number::Unsigned(7)));
        assert_eq!(parse("-7"), Node::Number(Number::Signed(-7)));
        assert_eq!(parse("1.5"), Node::Number(Number::Float(1.5)));
        assert_eq!(parse("18446744073709551616"), Node::Number(Number::Float(18446744073709551616.0)));
    }

    #[test]
    fn as_a_value_the_last_of_a_key_written_twice_wins_in_the_first_place() {
        let node = parse(r#"{"a": 1, "b": [null, true, "s", -2.5], "a": 2}"#);
        assert_eq!(node.to_value(), serde_json::json!({"a": 2, "b": [null, true, "s", -2.5]}));
        let keys: Vec<String> = node.to_value().as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
