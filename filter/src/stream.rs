//! One HTTP stream: hands each event Envoy delivers to the core's
//! [`Exchange`] and carries out the [`Step`] it returns (edit the request,
//! go on, pause, read the body, reply, call Redis). No quota policy lives
//! here: what a step means is decided in `quota_core::exchange`.

use crate::host::{self, header_map, log, response_flags, upstream_connected, HostClock, HostProperties, SharedData};
use crate::remote;
use crate::report::bump;
use crate::shared::Shared;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};
use quota_core::clock::Clock;
use quota_core::config::Config;
use quota_core::decimal;
use quota_core::exchange::response::{Ended, LOGGED_BODY};
use quota_core::exchange::{Edits, Exchange, Host, Level, Next, Note, ResponseHead, ResponseStep, Step, BUSY_REMOVED};
use quota_core::headers::Headers;
use quota_core::identity::{identify, Caller, IdentityError};
use quota_core::redis::Command;
use quota_core::request::RequestHead;
use quota_core::store::CounterStore;
use quota_core::usage_limit::UsageRead;

pub struct QuotaStream {
    /// This stream's context id: effective again after a call to Redis.
    id: u32,
    state: Option<Shared>,
    exchange: Exchange,
    /// The calls to Redis still out: host token, the exchange's call number.
    calls: Vec<(u32, usize)>,
}

/// The worker around a stream, as the exchange sees it.
struct Worker<'a>(&'a Shared);

impl Host for Worker<'_> {
    fn now_ms(&self) -> i64 {
        HostClock.now_ms()
    }

    fn identify(&self, config: &Config, head: &RequestHead) -> Result<Caller, IdentityError> {
        identify(config, head, &HostProperties)
    }

    fn shared_data(&self) -> &dyn CounterStore {
        &SharedData
    }

    fn usage_read(&mut self, caller: &Caller, now_ms: i64) -> UsageRead {
        self.0.usage_reads.borrow_mut().read(caller, now_ms)
    }

    fn charge_id(&mut self) -> String {
        self.0.remote.next_id()
    }

    fn script_cached(&self) -> bool {
        !self.0.remote.needs_script()
    }

    fn note(&mut self, note: Note<'_>) {
        let (reporter, remote) = (&self.0.reporter, &self.0.remote);
        match note {
            Note::Decided { caller, decision } => reporter.decision(caller, decision),
            Note::IdentityRefused(err) => reporter.identity_refused(err, HostClock.now_ms()),
            Note::UpstreamBusy { caller, decision, status } => {
                reporter.upstream_busy(caller, decision, status, HostClock.now_ms())
            }
            Note::BodyRefused { caller, why } => reporter.body_refused(caller, why, HostClock.now_ms()),
            Note::UsageLimited => reporter.usage_limited(),
            Note::StoreError(why) => {
                log(LogLevel::Warn, &format!("quota: the Redis store did not answer: {why}"));
                bump(remote.metrics.errors, 1);
            }
            Note::Script { cached: true } => remote.script_present(),
            Note::Script { cached: false } => remote.script_missing(),
            Note::Mismatch { key, script, core } => {
                let line =
                    format!("quota: the Redis script and the core disagree on {key}: script {script:?}, core {core:?}");
                log(LogLevel::Error, &line);
                bump(remote.metrics.mismatches, 1);
            }
            Note::Sync { target, delta } => remote.note(target, delta),
            Note::Adjust { key, window_start, delta, most } => remote.push_adjust(key, window_start, delta, most),
            Note::Cancel { key, id } => remote.push(Command::cancel(key, &id)),
            Note::Renew(target) => remote.renew(target),
            Note::Leased(target) => remote.leased(target),
            Note::Log { level, line } => log(
                match level {
                    Level::Info => LogLevel::Info,
                    Level::Warn => LogLevel::Warn,
                    Level::Error => LogLevel::Error,
                },
                &line,
            ),
        }
    }
}

impl QuotaStream {
    pub fn new(state: Option<Shared>, id: u32) -> Self {
        QuotaStream { id, state, exchange: Exchange::new(), calls: Vec::new() }
    }

    /// Hands an event to the exchange, with the configuration and the worker.
    fn event(&mut self, f: impl FnOnce(&mut Exchange, &Config, &mut Worker<'_>) -> Step) -> Action {
        let Some(shared) = &self.state else { return Action::Continue };
        let step = f(&mut self.exchange, &shared.config, &mut Worker(shared));
        perform(self.id, shared, &mut self.exchange, &mut self.calls, step)
    }
}

/// Carries out `step`; returns what Envoy should do with the request now.
fn perform(id: u32, shared: &Shared, exchange: &mut Exchange, calls: &mut Vec<(u32, usize)>, step: Step) -> Action {
    let config = &shared.config;
    apply(&step.edits);
    match step.next {
        Next::Continue => Action::Continue,
        Next::Pause => Action::Pause,
        Next::ReadBody(size) => {
            let step = match host::request_body(size) {
                Ok(body) => exchange.body_read(config, &mut Worker(shared), body),
                Err(_) => exchange.body_unreadable(config, &mut Worker(shared)),
            };
            perform(id, shared, exchange, calls, step)
        }
        Next::Reply(reply) => {
            let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            if let Err(e) = host::send_reply(reply.status, &headers, reply.body.as_bytes()) {
                log(LogLevel::Error, &format!("quota: could not send the local reply: {e}"));
            }
            Action::Pause
        }
        Next::Call(out) => {
            let Some(store) = &config.counters.redis else { return Action::Continue };
            let mut action = Action::Pause;
            for call in out {
                match shared.remote.call_for(id, store, &call.command, call.load) {
                    Ok(token) => calls.push((token, call.n)),
                    Err(why) => {
                        let step = exchange.not_sent(config, &mut Worker(shared), call.n, why);
                        action = perform(id, shared, exchange, calls, step);
                    }
                }
            }
            action
        }
    }
}

/// Edits the request as the exchange asks.
fn apply(edits: &Edits) {
    let map = MapType::HttpRequestHeaders;
    for name in &edits.remove {
        header_map::remove(map, name);
    }
    for (name, value) in &edits.set {
        header_map::set(map, name, value);
    }
    if edits.clear_route_cache {
        if let Err(e) = host::clear_route_cache() {
            log(LogLevel::Warn, &format!("quota: could not clear the route cache: {e}"));
        }
    }
    if let Some(body) = &edits.body {
        match host::set_request_body(body.replaces, &body.bytes) {
            Ok(()) if body.set_content_length => {
                let length = decimal::u64_text(u64::try_from(body.bytes.len()).unwrap_or(u64::MAX));
                header_map::set(map, "content-length", &length);
            }
            Ok(()) => {}
            Err(e) => log(LogLevel::Warn, &format!("quota: could not rewrite the request body: {e}")),
        }
    }
}

impl Context for QuotaStream {
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.state {
            self.exchange.abandon(&mut Worker(shared));
        }
        true
    }

    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(at) = self.calls.iter().position(|(t, _)| *t == token) else { return };
        let (_, n) = self.calls.swap_remove(at);
        let (status, body) = remote::response(num_headers, body_size);
        let action = self.event(|x, config, worker| x.answered(config, worker, n, status, &body));
        if matches!(action, Action::Continue) {
            if let Err(e) = host::resume_request() {
                log(LogLevel::Error, &format!("quota: could not resume the request: {e}"));
            }
        }
    }
}

impl HttpContext for QuotaStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.state.is_none() {
            return Action::Continue;
        }
        let map = header_map::read(MapType::HttpRequestHeaders);
        let Some(pairs) = map.as_ref().and_then(|m| m.pairs()) else {
            log(LogLevel::Error, "quota: could not read request headers");
            return Action::Continue;
        };
        // Envoy only lets valid (ASCII) header names through: the lossy
        // reading is for a host that does not.
        let name = |n: &[u8]| match std::str::from_utf8(n) {
            Ok(name) => name.to_owned(),
            Err(_) => String::from_utf8_lossy(n).into_owned(),
        };
        let headers = pairs.into_iter().map(|(n, v)| (name(n), v.to_vec())).collect();
        self.event(|x, config, worker| x.request_head(config, worker, headers, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.event(|x, config, worker| x.request_body(config, worker, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.event(|x, config, _| x.request_trailers(config))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = &self.state else { return Action::Continue };
        if self.exchange.response_headers().is_none() {
            return Action::Continue;
        }
        let map = MapType::HttpResponseHeaders;
        // One read of the whole map: each host call costs more in Envoy than
        // the few headers it carries.
        let read = header_map::read(map);
        let upstream = read.as_ref().and_then(|m| m.pairs());
        let header = |name: &str| match &upstream {
            Some(pairs) => pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.to_vec()),
            None => header_map::get(map, name),
        };
        let status = header(":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        let step = if self.exchange.reads_response_head(&shared.config, status) || self.exchange.records_response() {
            // The content type says how a metered body is read; nothing else needs it.
            let content_type = if self.exchange.reads_response_body() { header("content-type") } else { None };
            let retry_after = header("retry-after");
            let head = ResponseHead {
                status,
                content_type: content_type.as_deref(),
                retry_after: retry_after.as_deref(),
                flags: response_flags(),
            };
            self.exchange.response(&shared.config, &mut Worker(shared), head)
        } else {
            ResponseStep::Continue
        };
        match step {
            ResponseStep::Continue => {
                if let Some(headers) = self.exchange.response_headers() {
                    put_response_headers(upstream.as_deref(), headers, &[]);
                }
            }
            ResponseStep::Busy(answer) => {
                put_response_headers(upstream.as_deref(), &answer.headers, &BUSY_REMOVED);
                if end_of_stream {
                    // No body will pass to carry the answer: send it as the reply.
                    let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    if let Err(e) = host::send_reply(answer.status, &headers, answer.body.as_bytes()) {
                        log(LogLevel::Warn, &format!("quota: could not send the busy answer: {e}"));
                    }
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = &self.state else { return Action::Continue };
        if self.exchange.replaces_response_body() {
            // The upstream's busy body is dropped chunk by chunk as it passes,
            // never held; its start goes to the log.
            let start = match body_size {
                0 => None,
                n => host::response_body(n.min(LOGGED_BODY)).ok().flatten(),
            };
            let bytes = self.exchange.replace_response_chunk(&mut Worker(shared), start.as_deref().unwrap_or_default());
            if let Err(e) = host::set_response_body(body_size, &bytes) {
                log(LogLevel::Warn, &format!("quota: could not replace the busy answer's body: {e}"));
            }
            return Action::Continue;
        }
        if !self.exchange.reads_response_body() {
            return Action::Continue;
        }
        // Read the chunk as it passes; the response is never held back.
        let chunk = match body_size {
            0 => None,
            _ => host::response_body(body_size).ok().flatten(),
        };
        let chunk = chunk.as_deref().unwrap_or_default();
        self.exchange.response_body(&shared.config, &mut Worker(shared), chunk, end_of_stream);
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(shared) = &self.state else { return };
        self.exchange.ended(&shared.config, &mut Worker(shared), || Ended {
            response_flags: response_flags(),
            upstream_connected: upstream_connected(),
        });
        if let Some(record) = self.exchange.ledger(|| HostClock.now_ms()) {
            crate::ledger::write(shared, &record);
        }
    }
}

/// Puts `headers` on the response, replacing the upstream's copies of them
/// and taking `removed` off; `upstream` is the map as read (one write of the
/// whole map). If the map could not be read, the headers are set (and
/// removed) one by one instead.
fn put_response_headers(upstream: Option<&[(&[u8], &[u8])]>, headers: &Headers, removed: &[&str]) {
    let map = MapType::HttpResponseHeaders;
    if headers.is_empty() && removed.is_empty() {
        return;
    }
    let Some(upstream) = upstream else {
        for name in removed {
            header_map::remove(map, name);
        }
        for (name, value) in headers {
            header_map::set(map, name, value);
        }
        return;
    };
    let ours = |name: &[u8]| {
        headers.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            || removed.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    // Merged once: the encoding walks the list more than once.
    let mut merged: Vec<(&[u8], &[u8])> = Vec::with_capacity(upstream.len() + headers.len());
    merged.extend(upstream.iter().filter(|(n, _)| !ours(n)));
    merged.extend(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    if !header_map::set_pairs(map, merged.iter().copied()) {
        log(LogLevel::Warn, "quota: could not put the quota headers on the response");
    }
}
