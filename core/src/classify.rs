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
    match config.default_class {
        None => HeadMatch::Unclassified,
        // Priced (or rewritten) from the body like any other class, or a
        // default class metered by tokens would cost its fallback.
        Some(default) if config.class_needs_body(default) => HeadMatch::NeedsBody,
        Some(default) => HeadMatch::Class(default),
    }
}

/// Classifies with the parsed JSON body (`None` when there is no body or it
/// is not JSON, too large, or malformed: body conditions then fail, except
/// `exists: false`). When the body could not be read, whether this applies
/// is `unreadable::classify_body`'s call.
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

/// The classes a request's method, path and headers allow, whatever its body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadCandidates {
    /// In match order: each class with a rule whose method, path and header
    /// conditions hold, up to the first such rule that tests no body (that
    /// class always matches: none after it can); else the default class too.
    pub classes: Vec<ClassId>,
    /// Whether the body chooses among them, or between them and no class at
    /// all; `false`: the one class in `classes` (if any) whatever the body says.
    pub body_decides: bool,
}

/// The classes a request with this head could be classified as.
pub fn head_candidates(config: &Config, req: &RequestHead) -> HeadCandidates {
    let line = RequestLine::of(req);
    let mut classes = Vec::new();
    for (i, class) in config.classes.iter().enumerate() {
        let mut matching = class.rules.iter().filter(|r| head_matches(r, req, &line)).peekable();
        if matching.peek().is_none() {
            continue;
        }
        classes.push(ClassId(i));
        if matching.any(|r| r.body.is_empty()) {
            return HeadCandidates { body_decides: classes.len() > 1, classes };
        }
    }
    let body_decides = !classes.is_empty();
    if let Some(default) = config.default_class.filter(|d| !classes.contains(d)) {
        classes.push(default);
    }
    HeadCandidates { classes, body_decides }
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

/// JSON equality where `1` and `1.0` are the same number, at any depth: a
/// control plane may write the config's numbers otherwise than they were
/// written (Istio's Struct makes every number a double, `1.0` becomes `1`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| json_eq(x, y)))
        }
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
    fn a_default_class_priced_from_the_body_asks_for_it() {
        let mut config = config_with(
            r#"[{"name": "beta", "match": [{"path": {"prefix": "/beta"}}]},
                {"name": "rest", "cost": {"tokens": {}}}]"#,
        );
        config.default_class = Some(ClassId(1));
        let req = post("/v1/chat/completions");
        assert_eq!(classify_head(&config, &req), HeadMatch::NeedsBody);
        assert_eq!(classify_with_body(&config, &req, Some(&json!({"prompt": "x"}))), Some(ClassId(1)));
        let candidates = head_candidates(&config, &req);
        assert_eq!((candidates.classes, candidates.body_decides), (vec![ClassId(1)], false));
    }

    #[test]
    fn head_candidates_are_the_classes_a_body_could_pick() {
        let config = demo_config();
        let names =
            |c: &HeadCandidates| c.classes.iter().map(|id| config.classes[id.0].name.clone()).collect::<Vec<_>>();
        let chat = head_candidates(&config, &post("/v1/chat/completions"));
        assert_eq!(names(&chat), ["deep_research", "summaries", "drafts"]);
        assert!(chat.body_decides);
        let research = head_candidates(&config, &post("/v1/research/start"));
        assert_eq!((names(&research), research.body_decides), (vec!["deep_research".to_string()], false));
        let none = head_candidates(&config, &head(&[(":method", "GET"), (":path", "/v1/chat/completions")]));
        assert_eq!((none.classes.len(), none.body_decides), (0, false));
    }

    #[test]
    fn head_candidates_end_with_the_default_class_when_only_body_rules_match() {
        let mut config = config_with(
            r#"[{"name": "deep", "match": [{"body": [{"field": "model", "equals": "o3"}]}]},
                {"name": "rest"}]"#,
        );
        let only_body = head_candidates(&config, &post("/x"));
        assert_eq!((only_body.classes, only_body.body_decides), (vec![ClassId(0)], true));
        config.default_class = Some(ClassId(1));
        let with_default = head_candidates(&config, &post("/x"));
        assert_eq!((with_default.classes, with_default.body_decides), (vec![ClassId(0), ClassId(1)], true));
    }

    #[test]
    fn nested_numbers_match_however_the_config_writes_them() {
        // `{"priority": 2.0}` as written by hand, and as Istio's Struct hands it over.
        for written in ["2.0", "2"] {
            let classes = format!(
                r#"[{{"name": "urgent", "match": [{{"body": [{{"field": "metadata", "equals": {{"priority": {written}, "tags": [1.0, 3]}}}}]}}]}},
                    {{"name": "rest"}}]"#
            );
            let config = config_with(&classes);
            for sent in [r#"{"priority": 2, "tags": [1, 3.0]}"#, r#"{"tags": [1.0, 3], "priority": 2.0}"#] {
                let body = format!(r#"{{"metadata": {sent}}}"#);
                let body = crate::body::read_body(Some(body.as_bytes()), false);
                assert_eq!(
                    name(&config, classify_with_body(&config, &post("/x"), body.json())),
                    Some("urgent"),
                    "{written} vs {sent}"
                );
            }
            for other in
                [r#"{"priority": 2.5, "tags": [1, 3]}"#, r#"{"priority": 2, "tags": [1]}"#, r#"{"priority": 2}"#]
            {
                let body = format!(r#"{{"metadata": {other}}}"#);
                let body = crate::body::read_body(Some(body.as_bytes()), false);
                assert_eq!(
                    name(&config, classify_with_body(&config, &post("/x"), body.json())),
                    None,
                    "{written} vs {other}"
                );
            }
        }
    }

    #[test]
    fn duplicate_keys_classify_by_the_last_value_as_upstreams_read_it() {
        let config = demo_config();
        let req = post("/v1/chat/completions");
        let body = crate::body::read_body(Some(br#"{"model": "gpt-4o-mini", "model": "o3-deep-research"}"#), false);
        assert_eq!(name(&config, classify_with_body(&config, &req, body.json())), Some("deep_research"));
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
