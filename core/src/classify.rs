//! Which operation class a request belongs to: ordered rules, first match wins.

use crate::config::{BodyCond, ClassId, Config, HeaderCond, PathMatch, Rule, TextTest, ValueTest};
use crate::request::RequestHead;
use serde_json::Value;

/// What the headers alone say about a request's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadMatch {
    /// Decided without the body.
    Class(ClassId),
    /// The first rule whose header conditions hold also tests the body:
    /// buffer it and call [`classify_with_body`].
    NeedsBody,
    /// No class and no default: the request passes untouched.
    Unclassified,
}

/// Classifies on method, path and headers; asks for the body only when a
/// body rule is the first candidate.
pub fn classify_head(config: &Config, req: &RequestHead) -> HeadMatch {
    let line = RequestLine::of(req);
    for (i, class) in config.classes.iter().enumerate() {
        for rule in &class.rules {
            if head_matches(rule, req, &line) {
                let needs_body = !rule.body.is_empty() || config.class_needs_body(ClassId(i));
                return if needs_body { HeadMatch::NeedsBody } else { HeadMatch::Class(ClassId(i)) };
            }
        }
    }
    config.default_class.map_or(HeadMatch::Unclassified, HeadMatch::Class)
}

/// Classifies with the parsed JSON body (`None` when there is no body or it
/// is not JSON, too large, or malformed: body conditions then fail, except
/// `exists: false`).
pub fn classify_with_body(config: &Config, req: &RequestHead, body: Option<&Value>) -> Option<ClassId> {
    let line = RequestLine::of(req);
    config
        .classes
        .iter()
        .position(|class| {
            class
                .rules
                .iter()
                .any(|rule| head_matches(rule, req, &line) && rule.body.iter().all(|c| body_matches(c, body)))
        })
        .map(ClassId)
        .or(config.default_class)
}

/// The method and path, looked up once per request rather than per rule.
struct RequestLine<'a> {
    method: &'a str,
    path: &'a str,
}

impl<'a> RequestLine<'a> {
    fn of(req: &'a RequestHead) -> Self {
        RequestLine { method: req.method(), path: req.path() }
    }
}

fn head_matches(rule: &Rule, req: &RequestHead, line: &RequestLine) -> bool {
    (rule.methods.is_empty() || rule.methods.iter().any(|m| m == line.method))
        && rule.path.as_ref().is_none_or(|p| path_matches(p, line.path))
        && rule.headers.iter().all(|h| header_matches(h, req))
}

fn path_matches(pattern: &PathMatch, path: &str) -> bool {
    match pattern {
        PathMatch::Exact(p) => path == p,
        // A normalised path has no trailing '/': `/v1/files/` arrives as
        // `/v1/files`, which a `/v1/files/` prefix matched before normalising.
        PathMatch::Prefix(p) => {
            path.starts_with(p.as_str()) || p.strip_suffix('/').is_some_and(|dir| !dir.is_empty() && dir == path)
        }
        PathMatch::Glob(g) => g.matches(path),
    }
}

fn header_matches(cond: &HeaderCond, req: &RequestHead) -> bool {
    let value = req.header(&cond.name);
    match &cond.test {
        TextTest::Exists(want) => value.is_some() == *want,
        test => {
            let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
                return false;
            };
            match test {
                TextTest::Equals(v) => text == v,
                TextTest::OneOf(vs) => vs.iter().any(|v| v == text),
                TextTest::Prefix(p) => text.starts_with(p.as_str()),
                TextTest::Exists(_) => true,
            }
        }
    }
}

/// The value at a dotted path; numeric segments index arrays.
pub fn lookup<'a>(body: &'a Value, field: &[String]) -> Option<&'a Value> {
    field.iter().try_fold(body, |at, segment| match at {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn body_matches(cond: &BodyCond, body: Option<&Value>) -> bool {
    let value = body.and_then(|b| lookup(b, &cond.field));
    match (&cond.test, value) {
        (ValueTest::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (ValueTest::Equals(want), Some(v)) => json_eq(v, want),
        (ValueTest::OneOf(wants), Some(v)) => wants.iter().any(|w| json_eq(v, w)),
        (ValueTest::Prefix(p), Some(v)) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        (ValueTest::Compare { gt, gte, lt, lte }, Some(v)) => v.as_f64().is_some_and(|n| {
            gt.is_none_or(|b| n > b)
                && gte.is_none_or(|b| n >= b)
                && lt.is_none_or(|b| n < b)
                && lte.is_none_or(|b| n <= b)
        }),
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config_with, demo_config, head};
    use serde_json::json;

    fn post(path: &str) -> RequestHead {
        head(&[(":method", "POST"), (":path", path)])
    }

    fn name(config: &Config, id: Option<ClassId>) -> Option<&str> {
        id.map(|i| config.classes[i.0].name.as_str())
    }

    #[test]
    fn classifies_by_path_without_reading_the_body() {
        let config = demo_config();
        assert_eq!(classify_head(&config, &post("/v1/research/start")), HeadMatch::Class(ClassId(0)));
        assert_eq!(classify_head(&config, &post("/v1/batches?limit=3")), HeadMatch::Class(ClassId(3)));
        assert_eq!(classify_head(&config, &post("/v1/projects/p1/drafts")), HeadMatch::Class(ClassId(2)));
        assert_eq!(classify_head(&config, &post("/v1/projects/p1/x/drafts")), HeadMatch::Unclassified);
        assert_eq!(
            classify_head(&config, &head(&[(":method", "GET"), (":path", "/v1/batches")])),
            HeadMatch::Unclassified
        );
    }

    #[test]
    fn odd_spellings_of_a_path_classify_as_the_path() {
        let config = demo_config();
        let attacks = [
            "/v1/chat/%63ompletions",
            "//v1/chat/completions",
            "/v1/chat/./completions",
            "/v1/chat/completions/",
            "/%2e%2e/v1/chat/completions",
            "/v1/chat/completions%2F",
            "/v1/chat/completions/.",
            "/v1/x/../chat/completions?stream=true",
            "\\v1\\chat%5Ccompletions",
        ];
        for path in attacks {
            let req = post(path);
            assert_eq!(classify_head(&config, &req), HeadMatch::NeedsBody, "{path}");
            for (model, class) in
                [("o3-deep-research", "deep_research"), ("gpt-4o-mini", "summaries"), ("gpt-4o", "drafts")]
            {
                let body = json!({ "model": model });
                assert_eq!(name(&config, classify_with_body(&config, &req, Some(&body))), Some(class), "{path}");
            }
            assert_eq!(name(&config, classify_with_body(&config, &req, None)), Some("drafts"), "{path}");
        }
        assert_eq!(classify_head(&config, &post("/v1/projects/p1/./drafts/")), HeadMatch::Class(ClassId(2)));
        assert_eq!(classify_head(&config, &post("/v1//batches")), HeadMatch::Class(ClassId(3)));
        // Escapes of reserved characters are not decoded: this is another path.
        assert_eq!(classify_head(&config, &post("/v1/chat%3Fcompletions")), HeadMatch::Unclassified);
    }

    #[test]
    fn patterns_are_normalised_like_paths() {
        let config = config_with(
            r#"[{"name": "exact", "match": [{"path": {"exact": "/v1//models/"}}]},
                {"name": "files", "match": [{"path": {"prefix": "/v1/files/"}}]},
                {"name": "runs", "match": [{"path": {"glob": "/v1/threads/*/runs/"}}]}]"#,
        );
        let class = |path: &str| match classify_head(&config, &post(path)) {
            HeadMatch::Class(id) => name(&config, Some(id)).map(str::to_string),
            _ => None,
        };
        assert_eq!(class("/v1/models").as_deref(), Some("exact"));
        assert_eq!(class("/v1/models/").as_deref(), Some("exact"));
        assert_eq!(class("/v1/files/abc").as_deref(), Some("files"));
        // The prefix's own directory, however it is spelled.
        assert_eq!(class("/v1/files/").as_deref(), Some("files"));
        assert_eq!(class("/v1/files").as_deref(), Some("files"));
        assert_eq!(class("/v1/filesystem"), None);
        assert_eq!(class("/v1/threads/t1/runs/").as_deref(), Some("runs"));
        assert_eq!(class("/v1/threads/t1/runs").as_deref(), Some("runs"));
    }

    #[test]
    fn classifies_by_body_model_when_a_body_rule_comes_first() {
        let config = demo_config();
        let req = post("/v1/chat/completions");
        assert_eq!(classify_head(&config, &req), HeadMatch::NeedsBody);
        let by_model = |model: &str| classify_with_body(&config, &req, Some(&json!({ "model": model })));
        assert_eq!(name(&config, by_model("o3-deep-research")), Some("deep_research"));
        assert_eq!(name(&config, by_model("gpt-4o-mini")), Some("summaries"));
        assert_eq!(name(&config, by_model("gpt-4o")), Some("drafts"));
        // No body, or a body that is not JSON: body rules fail, the path rule still holds.
        assert_eq!(name(&config, classify_with_body(&config, &req, None)), Some("drafts"));
    }

    #[test]
    fn body_conditions_compare_numbers_and_walk_paths() {
        let config = config_with(
            r#"[{"name": "big", "match": [{"body": [{"field": "max_tokens", "gt": 1000}]}]},
                {"name": "tools", "match": [{"body": [{"field": "tools.0.type", "equals": "web_search"}]}]},
                {"name": "streamed", "match": [{"body": [{"field": "stream", "equals": true}]}]},
                {"name": "plain", "match": [{"body": [{"field": "stream", "exists": false}]}]}]"#,
        );
        let req = post("/anything");
        let class = |body: Value| name(&config, classify_with_body(&config, &req, Some(&body))).map(str::to_string);
        assert_eq!(class(json!({"max_tokens": 4096})).as_deref(), Some("big"));
        assert_eq!(class(json!({"max_tokens": 1000.0, "stream": true})).as_deref(), Some("streamed"));
        assert_eq!(class(json!({"tools": [{"type": "web_search"}], "stream": false})).as_deref(), Some("tools"));
        assert_eq!(class(json!({"max_tokens": "lots"})).as_deref(), Some("plain"));
        assert_eq!(class(json!({"stream": "yes"})), None);
    }

    #[test]
    fn header_conditions_and_default_class() {
        let config = config_with(
            r#"[{"name": "beta", "match": [{"headers": [{"name": "X-Feature", "one_of": ["beta", "canary"]}]}]},
                {"name": "rest"}]"#,
        );
        let mut config = config;
        assert_eq!(classify_head(&config, &head(&[("x-feature", "canary")])), HeadMatch::Class(ClassId(0)));
        assert_eq!(classify_head(&config, &head(&[("x-feature", "ga")])), HeadMatch::Unclassified);
        config.default_class = Some(ClassId(1));
        assert_eq!(classify_head(&config, &head(&[])), HeadMatch::Class(ClassId(1)));
    }
}
