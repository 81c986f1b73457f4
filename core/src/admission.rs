//! What admission asks of the request itself before the upstream sees it:
//! the cheaper model and route header of `degrade`, the defer header of
//! `queue`, and a usage report from streaming upstreams. Worked out here once,
//! carried out by the filter (and shown by the simulator).

use crate::config::{Config, Cost};
use crate::decide::Served;
use crate::engine::{Decision, Outcome};
use serde_json::{json, Value};

/// The changes to make to an admitted request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// Request headers to set.
    pub headers: Vec<(String, String)>,
    /// Clear Envoy's route cache after setting them (a route may match a degrade header).
    pub clear_route_cache: bool,
    /// The JSON body's `model` becomes this (when the body has a `model`).
    pub model: Option<String>,
    /// Set `stream_options.include_usage: true` (a streaming request in a
    /// token-metered class), whatever the client sent there.
    pub include_usage: bool,
}

impl Rewrites {
    pub fn is_empty(&self) -> bool {
        *self == Rewrites::default()
    }

    /// Applies the body changes; returns whether the body changed.
    pub fn apply_to_body(&self, body: &mut Value) -> bool {
        let Some(fields) = body.as_object_mut() else { return false };
        let mut changed = false;
        if let Some(model) = &self.model {
            if fields.contains_key("model") {
                fields.insert("model".into(), Value::from(model.clone()));
                changed = true;
            }
        }
        if self.include_usage {
            let options = fields.entry("stream_options").or_insert_with(|| json!({}));
            // `null`, `false`, a string...: replaced, or the usage report (and
            // the reconciliation it pays for) would be the client's to skip.
            if !options.is_object() {
                *options = json!({});
            }
            if let Some(o) = options.as_object_mut() {
                o.insert("include_usage".into(), Value::Bool(true));
                changed = true;
            }
        }
        changed
    }
}

/// The rewrites an admitted decision asks for, given the request's JSON body.
pub fn rewrites(config: &Config, d: &Decision, body: Option<&Value>) -> Rewrites {
    let mut out = Rewrites::default();
    let (Outcome::Charged(c), Some(limits)) = (&d.outcome, crate::engine::limit_of(config, d)) else {
        return out;
    };
    if !c.admitted {
        return out;
    }
    match c.served {
        Served::Degraded => {
            if let Some(degrade) = &limits.degrade {
                if let Some(h) = &degrade.header {
                    out.headers.push(h.clone());
                    out.clear_route_cache = true;
                }
                out.model = degrade.model.clone().filter(|_| body.and_then(|b| b.get("model")).is_some());
            }
        }
        Served::Queued => {
            if let Some(q) = &limits.queue {
                out.headers.push(q.header.clone());
            }
        }
        Served::Normally | Served::Overage => {}
    }
    let asks_usage = matches!(
        config.class(d.class).map(|c| &c.cost),
        Some(Cost::Tokens { include_usage: true, .. } | Cost::Priced { include_usage: true, .. })
    );
    out.include_usage = asks_usage && body.and_then(|b| b.get("stream")).is_some_and(streams);
    out
}

/// Whether a `stream` value asks for a stream: `true`, or what lenient
/// upstreams read as true (pydantic's lax mode, behind vLLM and others:
/// `1`, `"true"`, `"yes"`, `"on"`...). Asking for usage on a request that
/// does not stream would make strict upstreams refuse it.
pub(crate) fn streams(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => ["1", "t", "y", "on", "true", "yes"].iter().any(|t| s.trim().eq_ignore_ascii_case(t)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::engine::charge;
    use crate::identity::identify;
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::{config_with, head};

    #[test]
    fn degraded_streaming_requests_get_the_small_model_and_a_usage_report() {
        let mut config = config_with(r#"[{"name": "chat", "cost": {"tokens": {}}}]"#);
        if let Some(crate::config::Cell::Limited(l)) = config.tiers[0].cells.get_mut(0) {
            let l = &mut l[0];
            l.hard = 10_000;
            l.soft = Some(1);
            l.past_soft = crate::config::PastSoft::Degrade;
            l.degrade = Some(crate::config::Degrade {
                model: Some("small".into()),
                header: Some(("x-route".into(), "small".into())),
                limit: None,
            });
        }
        let store = MemoryStore::new();
        let caller = identify(&config, &head(&[("x-user-id", "a")]), &NoProperties).unwrap();
        let mut body = json!({"model": "big", "stream": true, "messages": []});
        let d = charge(&config, &caller, ClassId(0), 300, false, 1_795_348_800_000, &store);
        let r = rewrites(&config, &d, Some(&body));
        assert_eq!(r.headers, vec![("x-route".to_string(), "small".to_string())]);
        assert!(r.clear_route_cache && r.include_usage);
        assert!(r.apply_to_body(&mut body));
        assert_eq!(
            body,
            json!({"model": "small", "stream": true, "messages": [], "stream_options": {"include_usage": true}})
        );
    }

    fn streaming_chat() -> (Config, Decision) {
        let config = config_with(r#"[{"name": "chat", "cost": {"tokens": {}}}]"#);
        let store = MemoryStore::new();
        let caller = identify(&config, &head(&[("x-user-id", "a")]), &NoProperties).unwrap();
        let d = charge(&config, &caller, ClassId(0), 3, false, 1_795_348_800_000, &store);
        assert!(d.admitted());
        (config, d)
    }

    #[test]
    fn usage_reports_are_asked_for_whatever_stream_options_the_client_sent() {
        let (config, d) = streaming_chat();
        for sent in [json!(null), json!(false), json!("off"), json!([]), json!({"include_usage": false}), json!({})] {
            let mut body = json!({"stream": true, "stream_options": sent.clone(), "messages": []});
            let r = rewrites(&config, &d, Some(&body));
            assert!(r.include_usage, "{sent}");
            assert!(r.apply_to_body(&mut body), "{sent}");
            assert_eq!(body["stream_options"], json!({"include_usage": true}), "{sent}");
        }
        // Other options the client set are kept.
        let mut body =
            json!({"stream": true, "stream_options": {"include_obfuscation": false, "include_usage": false}});
        assert!(rewrites(&config, &d, Some(&body)).apply_to_body(&mut body));
        assert_eq!(body["stream_options"], json!({"include_obfuscation": false, "include_usage": true}));
    }

    #[test]
    fn stream_values_lenient_upstreams_read_as_true_get_a_usage_report() {
        let (config, d) = streaming_chat();
        let asks = |stream: Value| rewrites(&config, &d, Some(&json!({"stream": stream}))).include_usage;
        for yes in
            [json!(true), json!(1), json!(1.0), json!("true"), json!("True"), json!("1"), json!("yes"), json!("on")]
        {
            assert!(asks(yes.clone()), "{yes}");
        }
        for no in [json!(false), json!(0), json!("false"), json!("no"), json!(null), json!([true]), json!(2)] {
            assert!(!asks(no.clone()), "{no}");
        }
        assert!(!rewrites(&config, &d, Some(&json!({"messages": []}))).include_usage);
    }

    #[test]
    fn ordinary_requests_are_left_alone() {
        let config = config_with(r#"[{"name": "chat"}]"#);
        let store = MemoryStore::new();
        let caller = identify(&config, &head(&[("x-user-id", "a")]), &NoProperties).unwrap();
        let d = charge(&config, &caller, ClassId(0), 1, false, 1_795_348_800_000, &store);
        assert!(rewrites(&config, &d, Some(&json!({"model": "m", "stream": true}))).is_empty());
    }
}
