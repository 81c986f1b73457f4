//! A trace: timed requests, one JSON object per line.
//!
//! `{"time": "2026-11-22T09:00:00Z", "path": "/v1/chat/completions",
//!   "method": "POST", "body": {"model": "gpt-4o"}, "headers": {"accept": "text/html"}}`
//!
//! `time` (RFC 3339, UTC) and `path` are required; `method` defaults to
//! POST; a `body` that is a JSON string is sent as that raw text (to try a
//! body that is not JSON). Blank lines and lines starting with `#` are skipped.
//!
//! A line may also say what the upstream answered, for a request the
//! filter forwards: `"response": {"status": 200, "body": {"usage":
//! {"prompt_tokens": 2000, "completion_tokens": 7500}}}`. `status` defaults
//! to 200, `content_type` to `application/json` (`text/event-stream` for a
//! stream, its events in a string `body`); a `body` that is a JSON string
//! is sent as that raw text. The filter then settles the charge as it would
//! (a token or priced class to the reported usage, a refunded status back
//! to nothing). Without `response`, a forwarded request's charge stands.

use quota_core::calendar::parse_rfc3339_utc;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Line number in the trace file (1-based).
    pub line: usize,
    pub time: String,
    pub now_ms: i64,
    pub method: String,
    pub path: String,
    /// The request body as sent.
    pub body: Option<Vec<u8>>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    /// What the upstream answered, when the trace says.
    pub response: Option<Response>,
}

/// The upstream's answer to a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    /// The body as sent (empty when the line gives none).
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    time: String,
    path: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    response: Option<ResponseLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseLine {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    body: Option<Value>,
}

/// A `body` as bytes: a JSON string as its raw text, anything else as JSON.
fn body_bytes(body: Option<Value>) -> Option<Vec<u8>> {
    match body {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => Some(raw.into_bytes()),
        Some(json) => Some(json.to_string().into_bytes()),
    }
}

/// Parses a trace; `source` names it in errors ("trace.jsonl:3: ...").
pub fn parse(text: &str, source: &str) -> Result<Vec<Request>, String> {
    let mut out: Vec<Request> = Vec::new();
    for (i, text) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = |reason: String| format!("{source}:{n}: {reason}");
        let line: Line = serde_json::from_str(trimmed).map_err(|e| {
            let reason = e.to_string();
            // Every line is its own document: "at line 1 column 9" says little.
            let reason = reason.rsplit_once(" at line ").map_or(reason.as_str(), |(r, _)| r).to_string();
            if e.is_syntax() || e.is_eof() {
                at(format!("not a JSON object: {reason} (column {})", e.column()))
            } else {
                at(reason)
            }
        })?;
        let seconds = parse_rfc3339_utc(&line.time).ok_or_else(|| {
            at(format!("time \"{}\" is not an RFC 3339 UTC time like \"2026-11-22T09:00:00Z\"", line.time))
        })?;
        if let Some(previous) = out.last() {
            if seconds * 1000 < previous.now_ms {
                return Err(at(format!(
                    "time {} is before line {}'s ({}): a trace runs forward",
                    line.time, previous.line, previous.time
                )));
            }
        }
        if !line.path.starts_with('/') {
            return Err(at(format!("path \"{}\" must start with '/'", line.path)));
        }
        let method = line.method.unwrap_or_else(|| "POST".to_string());
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(at(format!("method \"{method}\" is not an HTTP method")));
        }
        let mut headers = Vec::new();
        for (name, value) in line.headers.unwrap_or_default() {
            let Value::String(value) = value else {
                return Err(at(format!("header \"{name}\" must be a string")));
            };
            headers.push((name.to_ascii_lowercase(), value));
        }
        let body = body_bytes(line.body);
        let response = match line.response {
            None => None,
            Some(r) => {
                let status = r.status.unwrap_or(200);
                if !(100..=599).contains(&status) {
                    return Err(at(format!("response status {status} is not an HTTP status (100 to 599)")));
                }
                let content_type = r.content_type.unwrap_or_else(|| "application/json".to_string());
                Some(Response { status, content_type, body: body_bytes(r.body).unwrap_or_default() })
            }
        };
        out.push(Request {
            line: n,
            time: line.time,
            now_ms: seconds * 1000,
            method: method.to_ascii_uppercase(),
            path: line.path,
            body,
            headers,
            response,
        });
    }
    if out.is_empty() {
        return Err(format!("{source}: no requests in the trace"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_with_defaults() {
        let trace = "# a comment\n\n{\"time\": \"2026-11-22T09:00:00Z\", \"path\": \"/v1/x\", \"body\": {\"model\": \"m\"}}\n\
                     {\"time\": \"2026-11-22T09:00:00Z\", \"path\": \"/v1/quota\", \"method\": \"get\", \"headers\": {\"Accept\": \"text/html\"}, \"body\": \"not json\"}\n";
        let requests = parse(trace, "t").unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].line, requests[0].method.as_str()), (3, "POST"));
        assert_eq!(requests[0].body.as_deref(), Some(&b"{\"model\":\"m\"}"[..]));
        assert_eq!(requests[0].now_ms, 1_795_338_000_000);
        assert_eq!(requests[1].method, "GET");
        assert_eq!(requests[1].headers, vec![("accept".into(), "text/html".into())]);
        assert_eq!(requests[1].body.as_deref(), Some(&b"not json"[..]));
        assert_eq!(requests[0].response, None);
    }

    #[test]
    fn a_line_may_say_what_the_upstream_answered() {
        let trace = r#"{"time": "2026-11-22T09:00:00Z", "path": "/v1/x", "response": {"body": {"usage": {"prompt_tokens": 3}}}}
{"time": "2026-11-22T09:00:00Z", "path": "/v1/x", "response": {"status": 503}}
{"time": "2026-11-22T09:00:00Z", "path": "/v1/x", "response": {"content_type": "text/event-stream", "body": "data: [DONE]\n\n"}}"#;
        let r: Vec<Response> = parse(trace, "t").unwrap().into_iter().filter_map(|r| r.response).collect();
        let json = |status: u16, body: &str| Response {
            status,
            content_type: "application/json".into(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(r[0], json(200, r#"{"usage":{"prompt_tokens":3}}"#));
        assert_eq!(r[1], json(503, ""));
        assert_eq!((r[2].content_type.as_str(), &r[2].body[..]), ("text/event-stream", &b"data: [DONE]\n\n"[..]));
        let err = parse(r#"{"time": "2026-11-22T09:00:00Z", "path": "/", "response": {"status": 42}}"#, "t.jsonl");
        assert_eq!(err.unwrap_err(), "t.jsonl:1: response status 42 is not an HTTP status (100 to 599)");
        let err = parse(r#"{"time": "2026-11-22T09:00:00Z", "path": "/", "response": {"usage": 1}}"#, "t.jsonl");
        assert!(err.unwrap_err().starts_with("t.jsonl:1: unknown field `usage`"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = |t: &str| parse(t, "t.jsonl").unwrap_err();
        assert_eq!(
            err("{\"time\": \"2026-11-22T09:00:00Z\", \"path\": \"/\"}\noops"),
            "t.jsonl:2: not a JSON object: expected value (column 1)"
        );
        assert_eq!(
            err("{\"time\": \"9am\", \"path\": \"/\"}"),
            "t.jsonl:1: time \"9am\" is not an RFC 3339 UTC time like \"2026-11-22T09:00:00Z\""
        );
        assert!(err("{\"time\": \"2026-11-22T09:00:00Z\", \"path\": \"/\", \"bdy\": 1}")
            .starts_with("t.jsonl:1: unknown field `bdy`"));
        assert_eq!(
            err("{\"time\": \"2026-11-22T09:00:00Z\", \"path\": \"/\"}\n{\"time\": \"2026-11-22T08:00:00Z\", \"path\": \"/\"}"),
            "t.jsonl:2: time 2026-11-22T08:00:00Z is before line 1's (2026-11-22T09:00:00Z): a trace runs forward"
        );
        assert_eq!(err("\n# nothing\n"), "t.jsonl: no requests in the trace");
    }
}
