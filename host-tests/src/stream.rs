//! One HTTP stream through the filter, driven phase by phase with Envoy's rules:
//!
//! - `Pause` from a headers callback stops everything after it (cpp-host turns
//!   `StopIteration` into `StopAllIterationAndWatermark`): the body and trailers
//!   wait in the host and reach the filter only once it continues the stream —
//!   unless the VM was started with `allow_on_headers_stop_iteration`, where they
//!   still reach the filter and the headers wait until it continues;
//! - `Pause` from a body callback buffers: the next chunk is appended and the filter
//!   sees the whole buffer; `Continue` sends the buffer on; with a
//!   `request_buffer_limit`, a held request body that grows past it gets Envoy's
//!   own 413 (the chunk is appended before the filter sees it, as Envoy 1.40's
//!   wasm context does, so the filter never sees the chunk that crossed it);
//! - once the filter lets headers go (`Continue` or `proxy_continue_stream`), the
//!   map is detached: reading it is `BadArgument`, changing it too;
//! - a local reply is applied after the call that sent it; sent while decoding, it
//!   runs through the filter's own response callbacks (as Envoy encodes local
//!   replies through the filter chain); sent while encoding, it replaces the
//!   response if no header went to the client yet, else the stream is reset;
//! - a trap fails the stream (503, or a reset once the client got headers) and
//!   kills the VM: no further callback runs in it;
//! - at the end, `proxy_on_done`, `proxy_on_log` (with the final maps readable) and
//!   `proxy_on_delete`; callouts still in flight are cancelled.

use crate::error::HostError;
use crate::headers::Headers;
use crate::logs::LogRecord;
use crate::properties::{to_path, PropertyPath};
use crate::state::{LocalReply, StreamMap, StreamState};
use crate::status::{Action, LogLevel};
use crate::sync::lock;
use crate::vm::{Vm, VmInner};

/// Where a callback sits in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

/// What came out of the filter on one side: toward the upstream for the request,
/// toward the client for the response.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// `None` until the filter let the headers through.
    pub headers: Option<Headers>,
    pub body: Vec<u8>,
    /// The body as it was released, one entry per release (e.g. SSE events).
    pub chunks: Vec<Vec<u8>>,
    pub trailers: Option<Headers>,
    /// The end of stream went through.
    pub complete: bool,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|h| h.get(name))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Everything observable about one stream.
#[derive(Clone, Debug, Default)]
pub struct StreamRecord {
    pub id: u32,
    /// What each callback returned, in order.
    pub actions: Vec<(Phase, Action)>,
    /// `proxy_continue_stream` calls that resumed the request / the response.
    pub request_resumes: u32,
    pub response_resumes: u32,
    /// The request as the upstream saw it.
    pub upstream: Message,
    /// The request reached the upstream, then was cut (local reply or reset).
    pub upstream_reset: bool,
    /// The response as the client saw it.
    pub client: Message,
    pub local_reply: Option<LocalReply>,
    /// The stream was reset (`proxy_close_stream`, or a late local reply / trap).
    pub reset: bool,
    /// A trap, or `VmDead` when the stream reached a dead VM.
    pub error: Option<HostError>,
    /// The stream ended while the filter still held it paused.
    pub stalled: bool,
    /// Properties the guest set on this stream.
    pub properties_set: Vec<(PropertyPath, Vec<u8>)>,
    /// `proxy_set_buffer_bytes` calls on the bodies.
    pub body_writes: u32,
    /// Tokens of callouts still in flight when the stream ended (Envoy cancels them).
    pub cancelled_callouts: Vec<u32>,
    /// Envoy answered `413 Payload Too Large` itself: the filter held more of
    /// the request body than the VM's `request_buffer_limit`.
    pub payload_too_large: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

#[derive(Default)]
struct Flow {
    started: bool,
    end_seen: bool,
    headers_held: bool,
    held_body: Option<Vec<u8>>,
    held_end: bool,
    held_trailers: Option<Headers>,
    waiting: bool,
}

#[derive(Default)]
struct Core {
    id: u32,
    request: Flow,
    response: Flow,
    rec: StreamRecord,
    request_abandoned: bool,
    local_reply_path: bool,
    encoding_local_reply: bool,
    passthrough: bool,
    finished: bool,
}

impl Core {
    fn flow(&mut self, dir: Dir) -> &mut Flow {
        match dir {
            Dir::Request => &mut self.request,
            Dir::Response => &mut self.response,
        }
    }

    fn out(&mut self, dir: Dir) -> &mut Message {
        match dir {
            Dir::Request => &mut self.rec.upstream,
            Dir::Response => &mut self.rec.client,
        }
    }

    fn stopped(&self) -> bool {
        self.finished || self.rec.reset || matches!(self.rec.error, Some(HostError::Trap { .. }))
    }
}

fn headers_of(st: &mut StreamState, dir: Dir) -> &mut StreamMap {
    match dir {
        Dir::Request => &mut st.request_headers,
        Dir::Response => &mut st.response_headers,
    }
}

fn trailers_of(st: &mut StreamState, dir: Dir) -> &mut StreamMap {
    match dir {
        Dir::Request => &mut st.request_trailers,
        Dir::Response => &mut st.response_trailers,
    }
}

fn body_of(st: &mut StreamState, dir: Dir) -> &mut crate::state::StreamBody {
    match dir {
        Dir::Request => &mut st.request_body,
        Dir::Response => &mut st.response_body,
    }
}

fn phase(dir: Dir, part: u8) -> Phase {
    match (dir, part) {
        (Dir::Request, 0) => Phase::RequestHeaders,
        (Dir::Request, 1) => Phase::RequestBody,
        (Dir::Request, _) => Phase::RequestTrailers,
        (Dir::Response, 0) => Phase::ResponseHeaders,
        (Dir::Response, 1) => Phase::ResponseBody,
        (Dir::Response, _) => Phase::ResponseTrailers,
    }
}

/// The response Envoy builds for a local reply (`Utility::prepareLocalReply`).
pub(crate) fn local_reply_headers(reply: &LocalReply) -> Headers {
    let mut headers = Headers::new();
    headers.add(":status", &reply.status.to_string());
    for (k, v) in reply.headers.iter() {
        headers.add(k, v);
    }
    if reply.body.is_empty() {
        headers.remove("content-length");
        headers.remove("content-type");
    } else {
        headers.replace("content-length", &reply.body.len().to_string());
        if !headers.contains("content-type") {
            headers.add("content-type", "text/plain");
        }
    }
    headers
}

/// A stream driven step by step. Most tests use [`crate::RequestBuilder`] instead;
/// this is for flows a single `send()` cannot express (interleaving streams,
/// answering a held callout while a request is paused).
pub struct Stream {
    vm: Vm,
    core: Core,
    log_start: usize,
}

impl Stream {
    pub(crate) fn open(vm: Vm) -> Result<Stream, HostError> {
        let log_start = vm.host.shared.logs.len();
        let mut core = Core::default();
        let result = {
            let mut inner = lock(&vm.inner);
            let id = inner.new_context_id();
            core.id = id;
            core.rec.id = id;
            let root = inner.root_context_id();
            inner.state_mut().streams.insert(id, StreamState::default());
            let f = inner.exports.on_context_create.clone();
            inner.call("proxy_on_context_create", id, f, (id as i32, root as i32))
        };
        vm.host.shared.pump();
        match result {
            Ok(_) => {}
            Err(error @ HostError::VmDead { .. }) => {
                core.passthrough = vm.host.shared.fail_open();
                core.rec.error = Some(error);
                if !core.passthrough {
                    fail_direct(&mut core);
                }
            }
            Err(error) => {
                core.rec.error = Some(error);
                fail_direct(&mut core);
            }
        }
        Ok(Stream { vm, core, log_start })
    }

    pub fn id(&self) -> u32 {
        self.core.id
    }

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    pub fn record(&self) -> &StreamRecord {
        &self.core.rec
    }

    /// Log lines written since the stream opened (all VMs of the host).
    pub fn logs(&self) -> Vec<LogRecord> {
        self.vm.host.shared.logs.since(self.log_start)
    }

    /// Sets a property only this stream sees (`proxy_get_property`).
    pub fn set_property<S: AsRef<str>>(&mut self, path: &[S], value: impl Into<Vec<u8>>) {
        let id = self.core.id;
        let path = to_path(path);
        let value = value.into();
        self.vm.with_inner(|vm| {
            if let Some(st) = vm.state_mut().streams.get_mut(&id) {
                st.properties.set(path, value);
            }
        });
    }

    /// The request went all the way to the upstream.
    pub fn request_complete(&self) -> bool {
        self.core.rec.upstream.complete && !self.core.local_reply_path
    }

    /// A local reply took over the response.
    pub fn replied_locally(&self) -> bool {
        self.core.local_reply_path || self.core.rec.local_reply.is_some()
    }

    pub fn send_request_headers(&mut self, headers: Headers, end_of_stream: bool) -> Result<(), HostError> {
        self.step(|vm, core| deliver_headers(vm, core, Dir::Request, headers, end_of_stream))
    }

    pub fn send_request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Result<(), HostError> {
        let chunk = chunk.to_vec();
        self.step(|vm, core| deliver_body(vm, core, Dir::Request, chunk, end_of_stream))
    }

    pub fn send_request_trailers(&mut self, trailers: Headers) -> Result<(), HostError> {
        self.step(|vm, core| deliver_trailers(vm, core, Dir::Request, trailers))
    }

    /// Upstream response headers. Ignored once a local reply took over.
    pub fn send_response_headers(&mut self, headers: Headers, end_of_stream: bool) -> Result<(), HostError> {
        if self.core.local_reply_path {
            return Ok(());
        }
        self.step(|vm, core| deliver_headers(vm, core, Dir::Response, headers, end_of_stream))
    }

    pub fn send_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Result<(), HostError> {
        if self.core.local_reply_path {
            return Ok(());
        }
        let chunk = chunk.to_vec();
        self.step(|vm, core| deliver_body(vm, core, Dir::Response, chunk, end_of_stream))
    }

    pub fn send_response_trailers(&mut self, trailers: Headers) -> Result<(), HostError> {
        if self.core.local_reply_path {
            return Ok(());
        }
        self.step(|vm, core| deliver_trailers(vm, core, Dir::Response, trailers))
    }

    /// Applies what happened outside this stream's own calls (a callout answered
    /// with [`Vm::respond_to_callout`], a tick) : resumes, local replies, resets.
    pub fn poll(&mut self) -> Result<(), HostError> {
        self.step(settle)
    }

    /// Ends the stream: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn finish(mut self) -> StreamRecord {
        let _ = self.step(finish);
        self.core.rec
    }

    fn step(&mut self, f: impl FnOnce(&mut VmInner, &mut Core) -> Result<(), HostError>) -> Result<(), HostError> {
        if self.core.finished {
            return Err(HostError::Usage("the stream is already finished".into()));
        }
        let result = {
            let mut inner = lock(&self.vm.inner);
            f(&mut inner, &mut self.core)
        };
        self.vm.host.shared.pump();
        match result {
            Err(error @ HostError::Usage(_)) => Err(error),
            _ => Ok(()),
        }
    }
}

fn fail_direct(core: &mut Core) {
    core.request_abandoned = true;
    core.local_reply_path = true;
    if core.rec.client.headers.is_none() {
        core.rec.client =
            Message { headers: Some(Headers::from_pairs([(":status", "503")])), complete: true, ..Message::default() };
    } else {
        core.rec.reset = true;
    }
}

/// Records a trap: the stream fails, the VM is already marked dead.
fn fail(core: &mut Core, error: HostError) {
    core.rec.error = Some(error);
    fail_direct(core);
}

fn stream_state<'a>(vm: &'a mut VmInner, core: &Core) -> Option<&'a mut StreamState> {
    vm.state_mut().streams.get_mut(&core.id)
}

fn passthrough(core: &mut Core, dir: Dir, part: u8, headers: Option<Headers>, body: Vec<u8>, end: bool) {
    let out = core.out(dir);
    match part {
        0 => out.headers = headers,
        1 => {
            if !body.is_empty() {
                out.chunks.push(body.clone());
            }
            out.body.extend_from_slice(&body);
        }
        _ => out.trailers = headers,
    }
    if end {
        out.complete = true;
    }
}

fn skip(core: &Core, dir: Dir) -> bool {
    core.stopped() || (dir == Dir::Request && core.request_abandoned)
}

fn deliver_headers(vm: &mut VmInner, core: &mut Core, dir: Dir, headers: Headers, end: bool) -> Result<(), HostError> {
    if core.passthrough {
        passthrough(core, dir, 0, Some(headers), Vec::new(), end);
        return Ok(());
    }
    if skip(core, dir) {
        return Ok(());
    }
    let flow = core.flow(dir);
    if flow.started {
        return Err(HostError::Usage(format!("{dir:?} headers sent twice")));
    }
    flow.started = true;
    flow.end_seen = end;
    let count = headers.len();
    if let Some(st) = stream_state(vm, core) {
        *headers_of(st, dir) = StreamMap { headers, present: true, attached: true };
    }
    let (name, f) = match dir {
        Dir::Request => ("proxy_on_request_headers", vm.exports.on_request_headers.clone()),
        Dir::Response => ("proxy_on_response_headers", vm.exports.on_response_headers.clone()),
    };
    let id = core.id;
    let action = match vm.call(name, id, f, (id as i32, count as i32, i32::from(end))) {
        Ok(result) => result.map_or(Action::Continue, Action::from_i32),
        Err(error) => {
            fail(core, error);
            return Ok(());
        }
    };
    core.rec.actions.push((phase(dir, 0), action));
    if take_local_reply(vm, core)? {
        return Ok(());
    }
    if action == Action::Continue {
        release(vm, core, dir)?;
    } else {
        core.flow(dir).headers_held = true;
    }
    settle(vm, core)
}

fn deliver_body(vm: &mut VmInner, core: &mut Core, dir: Dir, chunk: Vec<u8>, end: bool) -> Result<(), HostError> {
    if core.passthrough {
        passthrough(core, dir, 1, None, chunk, end);
        return Ok(());
    }
    if skip(core, dir) {
        return Ok(());
    }
    let flow = core.flow(dir);
    if !flow.started {
        return Err(HostError::Usage(format!("{dir:?} body sent before its headers")));
    }
    let allow = vm.state().allow_headers_stop_iteration;
    let flow = core.flow(dir);
    if flow.headers_held && !allow {
        flow.held_body.get_or_insert_with(Vec::new).extend_from_slice(&chunk);
        flow.held_end |= end;
        flow.end_seen |= end;
        return Ok(());
    }
    flow.end_seen |= end;
    let limit = if dir == Dir::Request { vm.state().request_buffer_limit } else { None };
    let (size, was_buffering) = match stream_state(vm, core) {
        Some(st) => {
            let body = body_of(st, dir);
            let was_buffering = body.buffering;
            if body.buffering {
                body.bytes.extend_from_slice(&chunk);
            } else {
                body.bytes = chunk;
            }
            body.attached = true;
            (body.bytes.len(), was_buffering)
        }
        None => (0, false),
    };
    // Envoy added the chunk to what the filter holds: past the limit, Envoy
    // answers before the filter is called.
    if was_buffering && limit.is_some_and(|l| size > l) {
        payload_too_large(vm, core);
        return Ok(());
    }
    let (name, f) = match dir {
        Dir::Request => ("proxy_on_request_body", vm.exports.on_request_body.clone()),
        Dir::Response => ("proxy_on_response_body", vm.exports.on_response_body.clone()),
    };
    let id = core.id;
    let action = match vm.call(name, id, f, (id as i32, size as i32, i32::from(end))) {
        Ok(result) => result.map_or(Action::Continue, Action::from_i32),
        Err(error) => {
            fail(core, error);
            return Ok(());
        }
    };
    core.rec.actions.push((phase(dir, 1), action));
    if take_local_reply(vm, core)? {
        return Ok(());
    }
    if action == Action::Continue {
        // Headers still waiting (allowed StopIteration) go on with the body.
        release(vm, core, dir)?;
    } else {
        // The first chunk held: Envoy buffers it now, and checks its limit.
        if !was_buffering && limit.is_some_and(|l| size > l) {
            payload_too_large(vm, core);
            return Ok(());
        }
        if let Some(st) = stream_state(vm, core) {
            body_of(st, dir).buffering = true;
        }
        core.flow(dir).waiting = true;
    }
    settle(vm, core)
}

/// Envoy's own `413 Payload Too Large` (`requestDataTooLarge`): a filter held
/// more request body than the stream's buffer limit. The request is dropped
/// (reset if it had reached the upstream) and the client gets Envoy's plain reply.
fn payload_too_large(vm: &mut VmInner, core: &mut Core) {
    if let Some(st) = stream_state(vm, core) {
        st.request_body = Default::default();
    }
    core.rec.payload_too_large = true;
    core.request_abandoned = true;
    core.local_reply_path = true;
    if core.rec.upstream.headers.is_some() && !core.rec.upstream.complete {
        core.rec.upstream_reset = true;
    }
    if core.rec.client.headers.is_some() {
        core.rec.reset = true;
        return;
    }
    let reply = LocalReply {
        status: 413,
        headers: Headers::new(),
        body: b"Payload Too Large".to_vec(),
        grpc_status: None,
        details: "request_payload_too_large".into(),
    };
    core.rec.client = Message {
        headers: Some(local_reply_headers(&reply)),
        chunks: vec![reply.body.clone()],
        body: reply.body,
        trailers: None,
        complete: true,
    };
}

fn deliver_trailers(vm: &mut VmInner, core: &mut Core, dir: Dir, trailers: Headers) -> Result<(), HostError> {
    if core.passthrough {
        passthrough(core, dir, 2, Some(trailers), Vec::new(), true);
        return Ok(());
    }
    if skip(core, dir) {
        return Ok(());
    }
    let flow = core.flow(dir);
    if !flow.started {
        return Err(HostError::Usage(format!("{dir:?} trailers sent before its headers")));
    }
    flow.end_seen = true;
    let allow = vm.state().allow_headers_stop_iteration;
    let flow = core.flow(dir);
    if flow.headers_held && !allow {
        flow.held_trailers = Some(trailers);
        return Ok(());
    }
    let count = trailers.len();
    if let Some(st) = stream_state(vm, core) {
        *trailers_of(st, dir) = StreamMap { headers: trailers, present: true, attached: true };
    }
    let (name, f) = match dir {
        Dir::Request => ("proxy_on_request_trailers", vm.exports.on_request_trailers.clone()),
        Dir::Response => ("proxy_on_response_trailers", vm.exports.on_response_trailers.clone()),
    };
    let id = core.id;
    let action = match vm.call(name, id, f, (id as i32, count as i32)) {
        Ok(result) => result.map_or(Action::Continue, Action::from_i32),
        Err(error) => {
            fail(core, error);
            return Ok(());
        }
    };
    core.rec.actions.push((phase(dir, 2), action));
    if take_local_reply(vm, core)? {
        return Ok(());
    }
    if action == Action::Continue {
        release(vm, core, dir)?;
    } else {
        core.flow(dir).waiting = true;
    }
    settle(vm, core)
}

fn flush_body(vm: &mut VmInner, core: &mut Core, dir: Dir) {
    let bytes = match stream_state(vm, core) {
        Some(st) => {
            let body = body_of(st, dir);
            body.attached = false;
            body.buffering = false;
            std::mem::take(&mut body.bytes)
        }
        None => Vec::new(),
    };
    let out = core.out(dir);
    if !bytes.is_empty() {
        out.body.extend_from_slice(&bytes);
        out.chunks.push(bytes);
    }
}

fn update_complete(vm: &mut VmInner, core: &mut Core, dir: Dir) {
    let buffering = stream_state(vm, core).is_some_and(|st| body_of(st, dir).buffering);
    let flow = core.flow(dir);
    let done = flow.end_seen
        && !flow.headers_held
        && !flow.waiting
        && flow.held_body.is_none()
        && flow.held_trailers.is_none()
        && !buffering;
    let out = core.out(dir);
    if done && out.headers.is_some() {
        out.complete = true;
    }
}

/// The filter lets go of everything it holds in `dir`.
fn release(vm: &mut VmInner, core: &mut Core, dir: Dir) -> Result<(), HostError> {
    let (headers, trailers) = match stream_state(vm, core) {
        Some(st) => {
            let h = headers_of(st, dir);
            let headers = h.attached.then(|| h.headers.clone());
            h.attached = false;
            let t = trailers_of(st, dir);
            let trailers = t.attached.then(|| t.headers.clone());
            t.attached = false;
            (headers, trailers)
        }
        None => (None, None),
    };
    if let Some(headers) = headers {
        if core.out(dir).headers.is_none() {
            core.out(dir).headers = Some(headers);
        }
    }
    flush_body(vm, core, dir);
    if let Some(trailers) = trailers {
        core.out(dir).trailers = Some(trailers);
    }
    let flow = core.flow(dir);
    flow.waiting = false;
    if flow.headers_held {
        flow.headers_held = false;
        let held_body = flow.held_body.take();
        let held_trailers = flow.held_trailers.take();
        let held_end = flow.held_end;
        if let Some(body) = held_body {
            deliver_body(vm, core, dir, body, held_end && held_trailers.is_none())?;
        }
        if let Some(trailers) = held_trailers {
            deliver_trailers(vm, core, dir, trailers)?;
        }
    }
    update_complete(vm, core, dir);
    Ok(())
}

/// Answers callouts and applies the guest's deferred requests until nothing changes.
fn settle(vm: &mut VmInner, core: &mut Core) -> Result<(), HostError> {
    for _ in 0..100 {
        if core.stopped() {
            return Ok(());
        }
        if let Err(error) = vm.answer_callouts() {
            fail(core, error);
            return Ok(());
        }
        if take_local_reply(vm, core)? {
            return Ok(());
        }
        let Some(st) = stream_state(vm, core) else { return Ok(()) };
        let (resume_request, resume_response) = (st.continue_request, st.continue_response);
        let (close_request, close_response) = (st.close_request, st.close_response);
        st.continue_request = false;
        st.continue_response = false;
        if close_request || close_response {
            core.rec.reset = true;
            if core.rec.upstream.headers.is_some() && !core.rec.upstream.complete {
                core.rec.upstream_reset = true;
            }
            return Ok(());
        }
        if !(resume_request || resume_response) {
            return Ok(());
        }
        if resume_request {
            core.rec.request_resumes += 1;
            if !core.request_abandoned {
                release(vm, core, Dir::Request)?;
            }
        }
        if resume_response {
            core.rec.response_resumes += 1;
            release(vm, core, Dir::Response)?;
        }
    }
    Ok(())
}

/// Applies a local reply the last call sent, if any. True when one was applied.
fn take_local_reply(vm: &mut VmInner, core: &mut Core) -> Result<bool, HostError> {
    let Some(reply) = stream_state(vm, core).and_then(|st| st.local_reply.take()) else {
        return Ok(false);
    };
    if core.encoding_local_reply {
        vm.host_log(
            LogLevel::Warn,
            core.id,
            "local reply sent while encoding a local reply: ignored, as Envoy does".into(),
        );
        return Ok(false);
    }
    core.rec.local_reply = Some(reply.clone());
    let headers = local_reply_headers(&reply);
    if core.rec.client.headers.is_some() {
        // Headers already went to the client: Envoy can only reset the stream.
        core.rec.reset = true;
        return Ok(true);
    }
    let decoding = !core.response.started;
    core.request_abandoned = true;
    if core.rec.upstream.headers.is_some() && !core.rec.upstream.complete {
        core.rec.upstream_reset = true;
    }
    let through_filter = decoding && vm.state().host.local_reply_runs_encoder();
    core.local_reply_path = true;
    if through_filter {
        core.response = Flow::default();
        if let Some(st) = stream_state(vm, core) {
            st.response_headers = StreamMap::default();
            st.response_body = Default::default();
            st.response_trailers = StreamMap::default();
        }
        core.encoding_local_reply = true;
        let end = reply.body.is_empty();
        deliver_headers(vm, core, Dir::Response, headers, end)?;
        if !end {
            deliver_body(vm, core, Dir::Response, reply.body.clone(), true)?;
        }
        core.encoding_local_reply = false;
    } else {
        core.rec.client = Message {
            headers: Some(headers),
            body: reply.body.clone(),
            chunks: if reply.body.is_empty() { Vec::new() } else { vec![reply.body.clone()] },
            trailers: None,
            complete: true,
        };
    }
    Ok(true)
}

fn finish(vm: &mut VmInner, core: &mut Core) -> Result<(), HostError> {
    core.finished = true;
    let request_pending = !core.request_abandoned && core.request.started && !core.rec.upstream.complete;
    let response_pending = core.response.started && !core.rec.client.complete;
    core.rec.stalled = !core.rec.reset && (request_pending || response_pending);
    let id = core.id;
    let vm_usable = vm.dead.is_none() && !core.passthrough;
    if vm_usable {
        if let Some(st) = stream_state(vm, core) {
            st.log_phase = true;
            st.request_body.attached = false;
            st.response_body.attached = false;
        }
        let calls = [("proxy_on_done", 0u8), ("proxy_on_log", 1u8), ("proxy_on_delete", 2u8)];
        for (name, which) in calls {
            let result = match which {
                0 => {
                    let f = vm.exports.on_done.clone();
                    vm.call(name, id, f, id as i32).map(|_| ())
                }
                1 => {
                    let f = vm.exports.on_log.clone();
                    vm.call(name, id, f, id as i32).map(|_| ())
                }
                _ => {
                    let f = vm.exports.on_delete.clone();
                    vm.call(name, id, f, id as i32).map(|_| ())
                }
            };
            if let Err(error) = result {
                core.rec.error = Some(error);
                break;
            }
        }
    }
    let cancelled: Vec<u32> =
        vm.state().pending_callouts.values().filter(|c| c.context_id == id).map(|c| c.token).collect();
    for token in &cancelled {
        vm.state_mut().pending_callouts.remove(token);
    }
    core.rec.cancelled_callouts = cancelled;
    if let Some(st) = vm.state_mut().streams.remove(&id) {
        core.rec.properties_set = st.properties_set;
        core.rec.body_writes = st.body_writes;
    }
    Ok(())
}
