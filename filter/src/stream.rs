//! One HTTP stream: read the request, let the core decide, carry out the
//! decision (forward with headers, or answer locally).

use crate::host::{log, HostClock, HostProperties};
use crate::shared_data::SharedData;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use quota_core::classify::{classify_head, classify_with_body, HeadMatch};
use quota_core::clock::Clock;
use quota_core::config::{ClassId, Config};
use quota_core::engine::{charge, request_cost};
use quota_core::headers::{is_quota_header, Headers};
use quota_core::identity::identify;
use quota_core::reply::{refuse_identity, respond, Action as Decided, LocalReply};
use quota_core::request::RequestHead;
use quota_core::usage::{method_not_allowed, usage_reply};
use serde_json::Value;
use std::rc::Rc;

enum Phase {
    /// Nothing to do for this stream (unclassified, or already decided).
    Pass,
    /// A body rule needs the request body: buffering it.
    AwaitingBody(RequestHead),
    /// Admitted: these headers go on the upstream's response.
    Admitted(Headers),
    /// Answered locally; the reply already carries its headers.
    Replied,
}

pub struct QuotaStream {
    config: Option<Rc<Config>>,
    phase: Phase,
}

impl QuotaStream {
    pub fn new(config: Option<Rc<Config>>) -> Self {
        QuotaStream {
            config,
            phase: Phase::Pass,
        }
    }

    /// Charges the request to its class and carries out the decision.
    /// Returns whether the request goes on.
    fn decide(&mut self, config: &Config, head: &RequestHead, class: ClassId) -> bool {
        let caller = match identify(config, head, &HostProperties) {
            Ok(c) => c,
            Err(e) => return self.reply(&refuse_identity(&e)),
        };
        let decision = charge(
            config,
            &caller,
            class,
            request_cost(config, class),
            HostClock.now_ms(),
            &SharedData,
        );
        match respond(config, &decision) {
            Decided::Continue(headers) => {
                self.phase = Phase::Admitted(headers);
                true
            }
            Decided::Reply(reply) => self.reply(&reply),
        }
    }

    /// Sends a local reply; always returns false (the request stops here).
    fn reply(&mut self, reply: &LocalReply) -> bool {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        if let Err(status) = hostcalls::send_http_response(
            u32::from(reply.status),
            headers,
            Some(reply.body.as_bytes()),
        ) {
            log(
                LogLevel::Error,
                &format!("quota: could not send the local reply: {status:?}"),
            );
        }
        self.phase = Phase::Replied;
        false
    }

    fn usage_endpoint(&mut self, config: &Config, head: &RequestHead) {
        let reply = if !matches!(head.method(), "GET" | "HEAD") {
            method_not_allowed()
        } else {
            match identify(config, head, &HostProperties) {
                Ok(caller) => usage_reply(config, &caller, HostClock.now_ms(), &SharedData),
                Err(e) => refuse_identity(&e),
            }
        };
        self.reply(&reply);
    }

    /// Finishes a request that waited for its body.
    fn decide_with_body(&mut self, body: Option<Vec<u8>>) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Phase::AwaitingBody(head) = std::mem::replace(&mut self.phase, Phase::Pass) else {
            return Action::Continue;
        };
        // Not JSON, malformed, or nested deeper than serde_json's limit: no body facts.
        let json: Option<Value> = body.and_then(|b| serde_json::from_slice(&b).ok());
        match classify_with_body(&config, &head, json.as_ref()) {
            None => Action::Continue,
            Some(class) if self.decide(&config, &head, class) => Action::Continue,
            Some(_) => Action::Pause,
        }
    }
}

impl Context for QuotaStream {}

impl HttpContext for QuotaStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(h) => h,
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("quota: could not read request headers: {status:?}"),
                );
                return Action::Continue;
            }
        };
        // Only the filter speaks x-quota-*: a client's copies never reach the upstream.
        for (name, _) in headers.iter().filter(|(n, _)| is_quota_header(n)) {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        let head = RequestHead::new(
            headers
                .into_iter()
                .filter(|(n, _)| !is_quota_header(n))
                .collect(),
        );

        if config.usage_endpoint.as_deref() == Some(head.path()) {
            self.usage_endpoint(&config, &head);
            return Action::Pause;
        }
        match classify_head(&config, &head) {
            HeadMatch::Unclassified => Action::Continue,
            HeadMatch::Class(class) => {
                if self.decide(&config, &head, class) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            HeadMatch::NeedsBody if end_of_stream => {
                self.phase = Phase::AwaitingBody(head);
                self.decide_with_body(None)
            }
            HeadMatch::NeedsBody => {
                self.phase = Phase::AwaitingBody(head);
                // Pausing headers stops Envoy from delivering the body unless the
                // plugin sets allow_on_headers_stop_iteration; without it, the
                // headers go on and the body is held back instead.
                if config.hold_headers_for_body {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.phase, Phase::AwaitingBody(_)) {
            return Action::Continue;
        }
        let max = self.config.as_ref().map_or(0, |c| c.max_body_bytes);
        if body_size > max {
            // Too large to inspect: classify without body facts, never buffer more.
            return self.decide_with_body(None);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten();
        self.decide_with_body(body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !matches!(self.phase, Phase::AwaitingBody(_)) {
            return Action::Continue;
        }
        let max = self.config.as_ref().map_or(0, |c| c.max_body_bytes);
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, max)
            .ok()
            .flatten();
        self.decide_with_body(body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Phase::Admitted(headers) = &self.phase {
            for (name, value) in headers {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
            }
        }
        Action::Continue
    }
}
