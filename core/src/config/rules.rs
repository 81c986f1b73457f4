//! A class's match rules: method, path, header and body conditions.

use super::error::{join, ConfigError};
use super::fields::check_header_name;
use super::raw::{RawBodyCond, RawHeaderCond, RawPath, RawRule};
use crate::glob::Glob;
use crate::path::normalize as normalize_path;
use serde_json::Value;

/// All conditions of a rule must hold.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub path: Option<PathMatch>,
    pub headers: Vec<HeaderCond>,
    pub body: Vec<BodyCond>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Glob(Glob),
}

#[derive(Debug, Clone)]
pub struct HeaderCond {
    /// Lower-case header name.
    pub name: String,
    pub test: TextTest,
}

#[derive(Debug, Clone)]
pub enum TextTest {
    Equals(String),
    OneOf(Vec<String>),
    Prefix(String),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub struct BodyCond {
    /// Path segments into the JSON body; numeric segments also index arrays.
    pub field: Vec<String>,
    pub test: ValueTest,
}

#[derive(Debug, Clone)]
pub enum ValueTest {
    Equals(Value),
    OneOf(Vec<Value>),
    Prefix(String),
    Exists(bool),
    Compare { gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64> },
}

pub(super) fn check_rule(path: &str, raw: &RawRule) -> Result<Rule, ConfigError> {
    let methods = raw
        .methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                Err(ConfigError::new(format!("{path}.methods[{i}]"), format!("\"{m}\" is not an HTTP method")))
            } else {
                Ok(m.to_ascii_uppercase())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path_match = raw.path.as_ref().map(|p| check_path_match(&join(path, "path"), p)).transpose()?;
    let headers = raw
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| check_header_cond(&format!("{path}.headers[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    let body = raw
        .body
        .iter()
        .enumerate()
        .map(|(i, b)| check_body_cond(&format!("{path}.body[{i}]"), b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule { methods, path: path_match, headers, body })
}

fn check_path_match(path: &str, raw: &RawPath) -> Result<PathMatch, ConfigError> {
    let chosen: Vec<(&str, &String)> = [("exact", &raw.exact), ("prefix", &raw.prefix), ("glob", &raw.glob)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
    let [(kind, value)] = chosen.as_slice() else {
        return Err(ConfigError::new(path, "must set exactly one of \"exact\", \"prefix\" or \"glob\""));
    };
    let at = join(path, kind);
    if !value.starts_with('/') {
        return Err(ConfigError::new(at, format!("must start with '/', got \"{value}\"")));
    }
    // Requests are matched by their normalised path (`crate::path`), so
    // patterns are normalised the same way; a prefix keeps its trailing '/'
    // so that `/v1/files/` does not start matching `/v1/filesystem`.
    let normalized = normalize_path(value.as_bytes());
    Ok(match *kind {
        "exact" => PathMatch::Exact(normalized),
        "prefix" if value.ends_with('/') && normalized != "/" => PathMatch::Prefix(normalized + "/"),
        "prefix" => PathMatch::Prefix(normalized),
        _ => PathMatch::Glob(Glob::new(&normalized).map_err(|reason| ConfigError::new(at, reason))?),
    })
}

fn check_header_cond(path: &str, raw: &RawHeaderCond) -> Result<HeaderCond, ConfigError> {
    let name = check_header_name(&join(path, "name"), &raw.name)?;
    let mut tests = Vec::new();
    if let Some(v) = &raw.equals {
        tests.push(TextTest::Equals(v.clone()));
    }
    if let Some(v) = &raw.one_of {
        tests.push(TextTest::OneOf(v.clone()));
    }
    if let Some(v) = &raw.prefix {
        tests.push(TextTest::Prefix(v.clone()));
    }
    if let Some(v) = raw.exists {
        tests.push(TextTest::Exists(v));
    }
    match <[TextTest; 1]>::try_from(tests) {
        Ok([test]) => Ok(HeaderCond { name, test }),
        Err(_) => {
            Err(ConfigError::new(path, "must set exactly one of \"equals\", \"one_of\", \"prefix\" or \"exists\""))
        }
    }
}

fn check_body_cond(path: &str, raw: &RawBodyCond) -> Result<BodyCond, ConfigError> {
    let field: Vec<String> = raw.field.split('.').map(str::to_string).collect();
    if raw.field.is_empty() || field.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            join(path, "field"),
            format!("\"{}\" must be a dotted path like \"model\" or \"metadata.feature\"", raw.field),
        ));
    }
    let compare = [raw.gt, raw.gte, raw.lt, raw.lte];
    let mut tests = Vec::new();
    if let Some(v) = &raw.equals {
        tests.push(ValueTest::Equals(v.clone()));
    }
    if let Some(v) = &raw.one_of {
        tests.push(ValueTest::OneOf(v.clone()));
    }
    if let Some(v) = &raw.prefix {
        tests.push(ValueTest::Prefix(v.clone()));
    }
    if let Some(v) = raw.exists {
        tests.push(ValueTest::Exists(v));
    }
    if compare.iter().any(Option::is_some) {
        if compare.iter().flatten().any(|n| !n.is_finite()) {
            return Err(ConfigError::new(path, "comparison bounds must be finite numbers"));
        }
        tests.push(ValueTest::Compare { gt: raw.gt, gte: raw.gte, lt: raw.lt, lte: raw.lte });
    }
    match <[ValueTest; 1]>::try_from(tests) {
        Ok([test]) => Ok(BodyCond { field, test }),
        Err(_) => Err(ConfigError::new(
            path,
            "must set exactly one test: \"equals\", \"one_of\", \"prefix\", \"exists\", or the comparisons \"gt\"/\"gte\"/\"lt\"/\"lte\"",
        )),
    }
}
