//! One HTTP stream: read the request, let the core decide, carry out the
//! decision (forward with headers, or answer locally).

use crate::host::{log, HostClock, HostProperties};
use crate::report::Reporter;
use crate::shared_data::SharedData;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use quota_core::classify::{classify_head, classify_with_body, HeadMatch};
use quota_core::clock::Clock;
use quota_core::config::{ClassId, Config};
use quota_core::copy::CONFIRM_HEADER;
use quota_core::engine::{charge, request_cost};
use quota_core::headers::{is_quota_header, Headers};
use quota_core::identity::{identify, IdentityError};
use quota_core::negotiate::{negotiate, BodyFormat};
use quota_core::reply::{refuse_identity, respond, Action as Decided, LocalReply};
use quota_core::request::RequestHead;
use quota_core::usage::{method_not_allowed, usage_reply};
use serde_json::Value;
use std::rc::Rc;

/// A request as the decision needs it.
pub struct Pending {
    /// Headers without the client's `x-quota-*` copies.
    head: RequestHead,
    /// The client sent the confirmation header (read before it was stripped).
    confirmed: bool,
}

impl Pending {
    fn format(&self) -> BodyFormat {
        negotiate(self.head.header_str("accept"))
    }
}

enum Phase {
    /// Nothing to do for this stream (unclassified, or already decided).
    Pass,
    /// A body rule needs the request body: buffering it.
    AwaitingBody(Pending),
    /// Admitted: these headers go on the upstream's response.
    Admitted(Headers),
    /// Answered locally; the reply already carries its headers.
    Replied,
}

pub struct QuotaStream {
    config: Option<Rc<Config>>,
    reporter: Option<Rc<Reporter>>,
    phase: Phase,
}

impl QuotaStream {
    pub fn new(state: Option<(Rc<Config>, Rc<Reporter>)>) -> Self {
        let (config, reporter) = state.map_or((None, None), |(c, r)| (Some(c), Some(r)));
        QuotaStream {
            config,
            reporter,
            phase: Phase::Pass,
        }
    }

    /// Charges the request to its class and carries out the decision.
    /// Returns whether the request goes on.
    fn decide(&mut self, config: &Config, request: &Pending, class: ClassId) -> bool {
        let caller = match identify(config, &request.head, &HostProperties) {
            Ok(c) => c,
            Err(e) => return self.refuse_identity(config, request, &e),
        };
        let cost = request_cost(config, class);
        let decision = charge(
            config,
            &caller,
            class,
            cost,
            request.confirmed,
            HostClock.now_ms(),
            &SharedData,
        );
        if let Some(r) = &self.reporter {
            r.decision(&caller, &decision);
        }
        match respond(config, &decision, request.format()) {
            Decided::Continue(headers) => {
                self.phase = Phase::Admitted(headers);
                true
            }
            Decided::Reply(reply) => self.reply(&reply),
        }
    }

    fn refuse_identity(&mut self, config: &Config, request: &Pending, err: &IdentityError) -> bool {
        if let Some(r) = &self.reporter {
            r.identity_refused(err, HostClock.now_ms());
        }
        self.reply(&refuse_identity(config, err, request.format()))
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

    fn usage_endpoint(&mut self, config: &Config, request: &Pending) {
        if !matches!(request.head.method(), "GET" | "HEAD") {
            self.reply(&method_not_allowed());
            return;
        }
        match identify(config, &request.head, &HostProperties) {
            Ok(caller) => self.reply(&usage_reply(
                config,
                &caller,
                HostClock.now_ms(),
                &SharedData,
            )),
            Err(e) => self.refuse_identity(config, request, &e),
        };
    }

    /// Finishes a request that waited for its body.
    fn decide_with_body(&mut self, body: Option<Vec<u8>>) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Phase::AwaitingBody(request) = std::mem::replace(&mut self.phase, Phase::Pass) else {
            return Action::Continue;
        };
        // Not JSON, malformed, or nested deeper than serde_json's limit: no body facts.
        let json: Option<Value> = body.and_then(|b| serde_json::from_slice(&b).ok());
        match classify_with_body(&config, &request.head, json.as_ref()) {
            None => Action::Continue,
            Some(class) if self.decide(&config, &request, class) => Action::Continue,
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
        let confirmed = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(CONFIRM_HEADER))
            .is_some_and(|(_, v)| is_yes(v));
        let head = RequestHead::new(
            headers
                .into_iter()
                .filter(|(n, _)| !is_quota_header(n))
                .collect(),
        );
        let request = Pending { head, confirmed };

        if config.usage_endpoint.as_deref() == Some(request.head.path()) {
            self.usage_endpoint(&config, &request);
            return Action::Pause;
        }
        match classify_head(&config, &request.head) {
            HeadMatch::Unclassified => Action::Continue,
            HeadMatch::Class(class) => {
                if self.decide(&config, &request, class) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            HeadMatch::NeedsBody if end_of_stream => {
                self.phase = Phase::AwaitingBody(request);
                self.decide_with_body(None)
            }
            HeadMatch::NeedsBody => {
                self.phase = Phase::AwaitingBody(request);
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

/// A confirmation header says yes unless it says no.
fn is_yes(value: &[u8]) -> bool {
    let v = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
    !v.is_empty() && !matches!(v.as_str(), "no" | "false" | "0")
}
