//! The fluent way to run one request through a VM and look at what came out:
//!
//! ```no_run
//! # use host_tests::Host;
//! let host = Host::new();
//! let vm = host.vm(r#"{}"#).unwrap();
//! let r = vm.request()
//!     .method("POST").path("/v1/chat/completions")
//!     .header("x-user-id", "alice")
//!     .json_body(r#"{"model":"gpt-4o"}"#)
//!     .respond_json(200, r#"{"usage":{"total_tokens":12}}"#)
//!     .send();
//! r.assert_allowed();
//! assert_eq!(r.response_header("x-quota-remaining"), Some("9"));
//! ```

use std::fmt::Write as _;

use crate::callout::Callout;
use crate::error::HostError;
use crate::headers::Headers;
use crate::logs::{render, LogRecord};
use crate::properties::{to_path, PropertyPath};
use crate::state::LocalReply;
use crate::status::Action;
use crate::stream::{Message, Phase, StreamRecord};
use crate::vm::Vm;

/// What the upstream answers when a request reaches it.
#[derive(Clone, Debug)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: Headers,
    pub chunks: Vec<Vec<u8>>,
    pub trailers: Option<Headers>,
}

impl Default for UpstreamResponse {
    /// 200 with a small JSON body.
    fn default() -> Self {
        UpstreamResponse::json(200, r#"{"ok":true}"#)
    }
}

impl UpstreamResponse {
    pub fn new<K: AsRef<str>, V: AsRef<str>, B: Into<Vec<u8>>>(
        status: u16,
        headers: impl IntoIterator<Item = (K, V)>,
        chunks: impl IntoIterator<Item = B>,
    ) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: Headers::from_pairs(headers),
            chunks: chunks.into_iter().map(Into::into).collect(),
            trailers: None,
        }
    }

    pub fn json(status: u16, body: &str) -> UpstreamResponse {
        UpstreamResponse::new(
            status,
            [("content-type", "application/json".to_string()), ("content-length", body.len().to_string())],
            [body.as_bytes().to_vec()],
        )
    }

    /// A `text/event-stream` response, one chunk per event: `data: <event>\n\n`.
    pub fn sse<S: AsRef<str>>(events: impl IntoIterator<Item = S>) -> UpstreamResponse {
        UpstreamResponse::new(
            200,
            [("content-type", "text/event-stream")],
            events.into_iter().map(|e| format!("data: {}\n\n", e.as_ref()).into_bytes()),
        )
    }

    pub fn with_trailers<K: AsRef<str>, V: AsRef<str>>(mut self, trailers: impl IntoIterator<Item = (K, V)>) -> Self {
        self.trailers = Some(Headers::from_pairs(trailers));
        self
    }
}

/// A request to send through a VM; see [`Vm::request`].
#[must_use = "call .send() to run the request"]
pub struct RequestBuilder {
    vm: Vm,
    headers: Headers,
    chunks: Vec<Vec<u8>>,
    trailers: Option<Headers>,
    response: UpstreamResponse,
    properties: Vec<(PropertyPath, Vec<u8>)>,
}

impl RequestBuilder {
    pub(crate) fn new(vm: Vm) -> RequestBuilder {
        RequestBuilder {
            vm,
            headers: Headers::from_pairs([
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "api.example.com"),
                (":path", "/"),
            ]),
            chunks: Vec::new(),
            trailers: None,
            response: UpstreamResponse::default(),
            properties: Vec::new(),
        }
    }

    pub fn method(self, method: &str) -> Self {
        self.header(":method", method)
    }

    pub fn path(self, path: &str) -> Self {
        self.header(":path", path)
    }

    pub fn authority(self, authority: &str) -> Self {
        self.header(":authority", authority)
    }

    /// Adds a header; a pseudo-header (`:path`...) replaces the default.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.starts_with(':') {
            self.headers.replace(name, value);
        } else {
            self.headers.add(name, value);
        }
        self
    }

    pub fn headers<K: AsRef<str>, V: AsRef<str>>(mut self, headers: impl IntoIterator<Item = (K, V)>) -> Self {
        for (k, v) in headers {
            self = self.header(k.as_ref(), v.as_ref());
        }
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.remove(name);
        self
    }

    /// The body, in one chunk.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.chunks = vec![body.into()];
        self
    }

    /// The body, in several chunks (each its own `proxy_on_request_body`).
    pub fn body_chunks<B: Into<Vec<u8>>>(mut self, chunks: impl IntoIterator<Item = B>) -> Self {
        self.chunks = chunks.into_iter().map(Into::into).collect();
        self
    }

    /// A JSON body with `content-type` and `content-length`.
    pub fn json_body(mut self, json: &str) -> Self {
        self.headers.replace("content-type", "application/json");
        self.headers.replace("content-length", &json.len().to_string());
        self.body(json.as_bytes().to_vec())
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.get_or_insert_with(Headers::new).add(name, value);
        self
    }

    /// A property only this request sees.
    pub fn property<S: AsRef<str>>(mut self, path: &[S], value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((to_path(path), value.into()));
        self
    }

    /// What the upstream answers if the request reaches it (default: 200 JSON).
    pub fn respond<K: AsRef<str>, V: AsRef<str>, B: Into<Vec<u8>>>(
        mut self,
        status: u16,
        headers: impl IntoIterator<Item = (K, V)>,
        chunks: impl IntoIterator<Item = B>,
    ) -> Self {
        self.response = UpstreamResponse::new(status, headers, chunks);
        self
    }

    pub fn respond_json(mut self, status: u16, body: &str) -> Self {
        self.response = UpstreamResponse::json(status, body);
        self
    }

    pub fn respond_sse<S: AsRef<str>>(mut self, events: impl IntoIterator<Item = S>) -> Self {
        self.response = UpstreamResponse::sse(events);
        self
    }

    pub fn respond_with(mut self, response: UpstreamResponse) -> Self {
        self.response = response;
        self
    }

    /// Runs the whole stream: request phases, the upstream response if the request
    /// reached the upstream, then done/log/delete. Never panics: a trap is in
    /// [`Exchange::trap`].
    pub fn send(self) -> Exchange {
        let RequestBuilder { vm, headers, chunks, trailers, response, properties } = self;
        let log_start = vm.host.shared.logs.len();
        let mut stream = match vm.stream() {
            Ok(stream) => stream,
            Err(error) => return Exchange::failed(vm, error),
        };
        for (path, value) in properties {
            stream.set_property(&path, value);
        }
        let last = chunks.len();
        let has_trailers = trailers.is_some();
        let _ = stream.send_request_headers(headers, last == 0 && !has_trailers);
        for (i, chunk) in chunks.iter().enumerate() {
            let _ = stream.send_request_body(chunk, i + 1 == last && !has_trailers);
        }
        if let Some(trailers) = trailers {
            let _ = stream.send_request_trailers(trailers);
        }
        if stream.request_complete() {
            let mut headers = response.headers.clone();
            headers.replace(":status", &response.status.to_string());
            let last = response.chunks.len();
            let has_trailers = response.trailers.is_some();
            let _ = stream.send_response_headers(headers, last == 0 && !has_trailers);
            for (i, chunk) in response.chunks.iter().enumerate() {
                let _ = stream.send_response_body(chunk, i + 1 == last && !has_trailers);
            }
            if let Some(trailers) = response.trailers.clone() {
                let _ = stream.send_response_trailers(trailers);
            }
        }
        let record = stream.finish();
        let all_logs = vm.host.shared.logs.since(log_start);
        let logs = all_logs.iter().filter(|r| r.vm == vm.index() && r.context_id == record.id).cloned().collect();
        let callouts = vm.callouts_of(record.id);
        Exchange { vm, record, logs, all_logs, callouts }
    }
}

/// The outcome of one request; see [`RequestBuilder::send`].
pub struct Exchange {
    vm: Vm,
    record: StreamRecord,
    logs: Vec<LogRecord>,
    all_logs: Vec<LogRecord>,
    callouts: Vec<Callout>,
}

impl Exchange {
    fn failed(vm: Vm, error: HostError) -> Exchange {
        Exchange {
            vm,
            record: StreamRecord { error: Some(error), ..StreamRecord::default() },
            logs: Vec::new(),
            all_logs: Vec::new(),
            callouts: Vec::new(),
        }
    }

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    pub fn record(&self) -> &StreamRecord {
        &self.record
    }

    // ----- the client's view -----

    /// The status the client got (`None` if the stream stalled or was reset first).
    pub fn status(&self) -> Option<u16> {
        self.record.client.header(":status").and_then(|s| s.parse().ok())
    }

    pub fn response(&self) -> &Message {
        &self.record.client
    }

    /// A response header as the client saw it.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.record.client.header(name)
    }

    pub fn response_headers(&self) -> Headers {
        self.record.client.headers.clone().unwrap_or_default()
    }

    pub fn response_body(&self) -> &[u8] {
        &self.record.client.body
    }

    pub fn response_text(&self) -> String {
        self.record.client.body_text()
    }

    pub fn response_json(&self) -> serde_json::Value {
        self.record.client.body_json()
    }

    // ----- the upstream's view -----

    /// The request as the upstream saw it, if its headers got there.
    pub fn upstream(&self) -> Option<&Message> {
        self.record.upstream.headers.is_some().then_some(&self.record.upstream)
    }

    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.record.upstream.header(name)
    }

    pub fn upstream_body(&self) -> &[u8] {
        &self.record.upstream.body
    }

    pub fn upstream_json(&self) -> serde_json::Value {
        self.record.upstream.body_json()
    }

    // ----- what the filter did -----

    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.record.local_reply.as_ref()
    }

    /// The trap that killed the VM during this request, if any.
    pub fn trap(&self) -> Option<&HostError> {
        self.record.error.as_ref().filter(|e| e.is_trap())
    }

    /// A trap, or the VM being dead already.
    pub fn error(&self) -> Option<&HostError> {
        self.record.error.as_ref()
    }

    /// This stream's log lines.
    pub fn logs(&self) -> &[LogRecord] {
        &self.logs
    }

    /// Every line logged while the request ran (all contexts of all VMs).
    pub fn all_logs(&self) -> &[LogRecord] {
        &self.all_logs
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.logs.iter().any(|r| r.message.contains(needle))
    }

    /// Callouts made by this stream's context.
    pub fn callouts(&self) -> &[Callout] {
        &self.callouts
    }

    pub fn actions(&self) -> &[(Phase, Action)] {
        &self.record.actions
    }

    /// Some callback returned `Pause`.
    pub fn paused(&self) -> bool {
        self.record.actions.iter().any(|(_, a)| *a == Action::Pause)
    }

    /// The guest resumed the stream with `proxy_continue_stream`.
    pub fn resumed(&self) -> bool {
        self.record.request_resumes + self.record.response_resumes > 0
    }

    pub fn stalled(&self) -> bool {
        self.record.stalled
    }

    /// Envoy answered `413 Payload Too Large` itself: the filter held more of
    /// the request body than the VM's `request_buffer_limit`.
    pub fn payload_too_large(&self) -> bool {
        self.record.payload_too_large
    }

    // ----- assertions (they panic with the whole story) -----

    /// A readable account of the exchange, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let r = &self.record;
        let _ = writeln!(out, "stream {} on vm {}", r.id, self.vm.index());
        let _ = writeln!(out, "  actions: {:?}", r.actions);
        match &r.upstream.headers {
            Some(h) => {
                let _ = writeln!(
                    out,
                    "  upstream got: {:?} body {:?}{}",
                    h,
                    r.upstream.body_text(),
                    if r.upstream.complete { "" } else { " (incomplete)" }
                );
            }
            None => out.push_str("  upstream got nothing\n"),
        }
        if let Some(reply) = &r.local_reply {
            let _ = writeln!(out, "  local reply: {} {:?} body {:?}", reply.status, reply.headers, reply.body_text());
        }
        if r.payload_too_large {
            out.push_str("  Envoy's own 413: the filter held more request body than the buffer limit\n");
        }
        let _ = writeln!(
            out,
            "  client got: {:?} body {:?}{}{}{}",
            r.client.headers,
            r.client.body_text(),
            if r.client.complete { "" } else { " (incomplete)" },
            if r.reset { " (reset)" } else { "" },
            if r.stalled { " (stalled: the filter never resumed)" } else { "" },
        );
        if let Some(error) = &r.error {
            let _ = writeln!(out, "  error: {error}");
        }
        let _ = write!(out, "  log:\n{}", render(&self.all_logs));
        out
    }

    #[allow(clippy::panic)]
    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.describe());
    }

    pub fn assert_no_trap(&self) -> &Self {
        if let Some(error) = &self.record.error {
            self.fail(&format!("expected no trap, got: {error}"));
        }
        self
    }

    /// The request reached the upstream whole, no local reply, the client got the
    /// whole response, no trap.
    pub fn assert_allowed(&self) -> &Self {
        self.assert_no_trap();
        if let Some(reply) = &self.record.local_reply {
            self.fail(&format!("expected the request to be allowed, but the filter replied {}", reply.status));
        }
        if !self.record.upstream.complete {
            self.fail("expected the request to reach the upstream whole");
        }
        if !self.record.client.complete || self.record.stalled || self.record.reset {
            self.fail("expected the client to get the whole response");
        }
        self
    }

    /// The filter answered locally with `status`; returns that reply.
    pub fn assert_local_reply(&self, status: u16) -> &LocalReply {
        self.assert_no_trap();
        match &self.record.local_reply {
            Some(reply) if reply.status == status => reply,
            Some(reply) => self.fail(&format!("expected a local reply {status}, got {}", reply.status)),
            None => self.fail(&format!("expected a local reply {status}, got none")),
        }
    }

    /// A local reply with `status` and the request never complete at the upstream.
    pub fn assert_blocked(&self, status: u16) -> &LocalReply {
        let reply = self.assert_local_reply(status);
        if self.record.upstream.complete {
            self.fail("expected the request to be blocked, but the upstream got it");
        }
        reply
    }

    pub fn assert_status(&self, status: u16) -> &Self {
        if self.status() != Some(status) {
            self.fail(&format!("expected status {status}, got {:?}", self.status()));
        }
        self
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
