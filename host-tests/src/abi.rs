//! The proxy-wasm ABI 0.2.1 hostcalls (module `env`), as Envoy implements them:
//! same statuses for the same situations, so the Rust SDK behaves (and panics)
//! here exactly where it would in Envoy.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::callout::Callout;
use crate::headers::{decode_headers, Headers};
use crate::host::CalloutTokens;
use crate::logs::{LogRecord, LogSource};
use crate::memory::{copy_out, copy_out_always, finish, read, read_string, write_u32, write_u64, Fail};
use crate::properties::{int_value, parse_path, PropertyPath};
use crate::shared_queue::QueueOwner;
use crate::state::{LocalReply, VmState};
use crate::status::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};

type C<'a> = Caller<'a, VmState>;
type R = wasmtime::Result<i32>;

/// Adds every hostcall to `linker`, returning their names.
pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<Vec<&'static str>> {
    let mut names = Vec::new();
    // Each hostcall is wrapped to note its name in the VM's call log (when
    // one is being kept: `Vm::record_hostcalls`), then runs as written.
    macro_rules! hostcall {
        ($name:literal, $f:ident) => {
            hostcall!($name, $f,);
        };
        ($name:literal, $f:ident, $($arg:ident: $ty:ty),*) => {
            linker.func_wrap("env", $name, |mut c: C<'_>, $($arg: $ty),*| -> R {
                if let Some(log) = &mut c.data_mut().hostcall_log {
                    log.push($name);
                }
                $f(c, $($arg),*)
            })?;
            names.push($name);
        };
    }
    hostcall!("proxy_log", proxy_log, level: i32, ptr: i32, len: i32);
    hostcall!("proxy_get_log_level", proxy_get_log_level, ptr: i32);
    hostcall!("proxy_get_current_time_nanoseconds", proxy_get_current_time_nanoseconds, ptr: i32);
    hostcall!("proxy_set_tick_period_milliseconds", proxy_set_tick_period_milliseconds, period: i32);
    hostcall!("proxy_get_buffer_bytes", proxy_get_buffer_bytes, kind: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32);
    hostcall!("proxy_set_buffer_bytes", proxy_set_buffer_bytes, kind: i32, start: i32, size: i32, ptr: i32, len: i32);
    hostcall!("proxy_get_header_map_pairs", proxy_get_header_map_pairs, kind: i32, ptr_ptr: i32, size_ptr: i32);
    hostcall!("proxy_set_header_map_pairs", proxy_set_header_map_pairs, kind: i32, ptr: i32, len: i32);
    hostcall!("proxy_get_header_map_value", proxy_get_header_map_value, kind: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32);
    hostcall!("proxy_replace_header_map_value", proxy_replace_header_map_value, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32);
    hostcall!("proxy_add_header_map_value", proxy_add_header_map_value, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32);
    hostcall!("proxy_remove_header_map_value", proxy_remove_header_map_value, kind: i32, kp: i32, kl: i32);
    hostcall!("proxy_get_property", proxy_get_property, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32);
    hostcall!("proxy_set_property", proxy_set_property, pp: i32, pl: i32, vp: i32, vl: i32);
    hostcall!("proxy_get_shared_data", proxy_get_shared_data, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32);
    hostcall!("proxy_set_shared_data", proxy_set_shared_data, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32);
    hostcall!("proxy_register_shared_queue", proxy_register_shared_queue, np: i32, nl: i32, token_ptr: i32);
    hostcall!("proxy_resolve_shared_queue", proxy_resolve_shared_queue, vp: i32, vl: i32, np: i32, nl: i32, token_ptr: i32);
    hostcall!("proxy_enqueue_shared_queue", proxy_enqueue_shared_queue, token: i32, vp: i32, vl: i32);
    hostcall!("proxy_dequeue_shared_queue", proxy_dequeue_shared_queue, token: i32, ptr_ptr: i32, size_ptr: i32);
    hostcall!("proxy_continue_stream", proxy_continue_stream, kind: i32);
    hostcall!("proxy_close_stream", proxy_close_stream, kind: i32);
    hostcall!("proxy_send_local_response", proxy_send_local_response, status: i32, dp: i32, dl: i32, bp: i32, bl: i32, hp: i32, hl: i32, grpc_status: i32);
    hostcall!("proxy_http_call", proxy_http_call, up: i32, ul: i32, hp: i32, hl: i32, bp: i32, bl: i32, tp: i32, tl: i32, timeout_ms: i32, token_ptr: i32);
    hostcall!("proxy_set_effective_context", proxy_set_effective_context, id: i32);
    hostcall!("proxy_done", proxy_done);
    hostcall!("proxy_define_metric", proxy_define_metric, kind: i32, np: i32, nl: i32, id_ptr: i32);
    hostcall!("proxy_increment_metric", proxy_increment_metric, id: i32, offset: i64);
    hostcall!("proxy_record_metric", proxy_record_metric, id: i32, value: i64);
    hostcall!("proxy_get_metric", proxy_get_metric, id: i32, ptr: i32);
    hostcall!("proxy_get_status", proxy_get_status, code_ptr: i32, ptr_ptr: i32, size_ptr: i32);
    hostcall!("proxy_call_foreign_function", proxy_call_foreign_function, np: i32, nl: i32, ap: i32, al: i32, rp: i32, rs: i32);
    Ok(names)
}

fn proxy_log(mut c: C<'_>, level: i32, ptr: i32, len: i32) -> R {
    finish((|| {
        let level = LogLevel::from_u32(level as u32).ok_or(Status::BadArgument)?;
        let message = read_string(&mut c, ptr, len)?;
        let state = c.data();
        if level >= state.host.log_level() {
            state.host.logs.push(LogRecord {
                vm: state.vm,
                context_id: state.context_id(),
                level,
                message,
                source: LogSource::Proxy,
            });
        }
        Ok(())
    })())
}

fn proxy_get_log_level(mut c: C<'_>, ptr: i32) -> R {
    let level = c.data().host.log_level() as u32;
    finish(write_u32(&mut c, ptr, level).map_err(Fail::from))
}

fn proxy_get_current_time_nanoseconds(mut c: C<'_>, ptr: i32) -> R {
    let now = c.data().host.clock.now_nanos();
    finish(write_u64(&mut c, ptr, now).map_err(Fail::from))
}

fn proxy_set_tick_period_milliseconds(mut c: C<'_>, period: i32) -> R {
    let state = c.data_mut();
    state.tick_period_ms = period as u32;
    let now = state.host.clock.now_nanos();
    state.next_tick_nanos = now.saturating_add(u64::from(period as u32) * 1_000_000);
    Ok(Status::Ok.code())
}

fn proxy_get_buffer_bytes(mut c: C<'_>, kind: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32) -> R {
    finish((|| {
        let kind = BufferType::from_u32(kind as u32).ok_or(Status::BadArgument)?;
        let state = c.data();
        let bytes: Vec<u8> = match kind {
            BufferType::HttpRequestBody => state
                .stream()
                .filter(|s| s.request_body.attached)
                .map(|s| s.request_body.bytes.clone())
                .unwrap_or_default(),
            BufferType::HttpResponseBody => state
                .stream()
                .filter(|s| s.response_body.attached)
                .map(|s| s.response_body.bytes.clone())
                .unwrap_or_default(),
            BufferType::HttpCallResponseBody => {
                state.callout_answer.as_ref().map(|a| a.body.clone()).ok_or(Status::NotFound)?
            }
            BufferType::VmConfiguration => state.vm_config.clone(),
            BufferType::PluginConfiguration => state.plugin_config.clone().ok_or(Status::NotFound)?,
            _ => return Err(Status::NotFound.into()),
        };
        let start = start as u32 as usize;
        let max = max as u32 as usize;
        if start.checked_add(max).is_none() {
            return Err(Status::BadArgument.into());
        }
        let end = start.saturating_add(max).min(bytes.len());
        match bytes.get(start..end) {
            Some(slice) if !slice.is_empty() => copy_out(&mut c, slice, ptr_ptr, size_ptr),
            _ => Ok(()),
        }
    })())
}

fn proxy_set_buffer_bytes(mut c: C<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32) -> R {
    finish((|| {
        let kind = BufferType::from_u32(kind as u32).ok_or(Status::BadArgument)?;
        let data = read(&mut c, ptr, len)?;
        let stream = c.data_mut().stream_mut();
        let body = match (kind, stream) {
            (BufferType::HttpRequestBody, Some(s)) if s.request_body.attached => {
                s.body_writes += 1;
                &mut s.request_body.bytes
            }
            (BufferType::HttpResponseBody, Some(s)) if s.response_body.attached => {
                s.body_writes += 1;
                &mut s.response_body.bytes
            }
            (BufferType::HttpRequestBody | BufferType::HttpResponseBody, _) => return Err(Status::NotFound.into()),
            _ => return Err(Status::BadArgument.into()),
        };
        // Envoy's Buffer::copyFrom: at 0, drain `size` bytes then prepend; at or past
        // the end, append; anything else is refused.
        let start = start as u32 as usize;
        let size = size as u32 as usize;
        if start == 0 {
            let drained = size.min(body.len());
            body.splice(..drained, data);
        } else if start >= body.len() {
            body.extend_from_slice(&data);
        } else {
            return Err(Status::BadArgument.into());
        }
        Ok(())
    })())
}

/// A header map for reading: `None` when the map is not available now.
fn readable_map(state: &VmState, kind: MapType) -> Option<Headers> {
    match kind {
        MapType::HttpCallResponseHeaders => state.callout_answer.as_ref().map(|a| a.headers.clone()),
        MapType::HttpCallResponseTrailers => state.callout_answer.as_ref().map(|a| a.trailers.clone()),
        _ => state.stream().and_then(|s| s.readable(kind)).cloned(),
    }
}

fn map_kind(kind: i32) -> Result<MapType, Status> {
    MapType::from_u32(kind as u32).ok_or(Status::BadArgument)
}

fn proxy_get_header_map_pairs(mut c: C<'_>, kind: i32, ptr_ptr: i32, size_ptr: i32) -> R {
    finish((|| {
        let kind = map_kind(kind)?;
        let bytes = readable_map(c.data(), kind).unwrap_or_default().encode();
        copy_out_always(&mut c, &bytes, ptr_ptr, size_ptr)
    })())
}

fn with_writable_map(c: &mut C<'_>, kind: MapType, change: impl FnOnce(&mut Headers)) -> Result<(), Fail> {
    let map = c.data_mut().stream_mut().and_then(|s| s.writable(kind)).ok_or(Status::BadArgument)?;
    change(map);
    Ok(())
}

fn proxy_set_header_map_pairs(mut c: C<'_>, kind: i32, ptr: i32, len: i32) -> R {
    finish((|| {
        let kind = map_kind(kind)?;
        let raw = read(&mut c, ptr, len)?;
        let headers = decode_headers(&raw).map_err(|_| Status::BadArgument)?;
        with_writable_map(&mut c, kind, |map| *map = headers)
    })())
}

fn proxy_get_header_map_value(mut c: C<'_>, kind: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32) -> R {
    finish((|| {
        let kind = map_kind(kind)?;
        let key = read_string(&mut c, kp, kl)?;
        let state = c.data();
        let in_log_phase = state.stream().is_some_and(|s| s.log_phase);
        let map = match readable_map(state, kind) {
            Some(map) => map,
            None if in_log_phase => return Err(Status::NotFound.into()),
            None => return Err(Status::BadArgument.into()),
        };
        let value = map.get(&key).ok_or(Status::NotFound)?.as_bytes().to_vec();
        copy_out(&mut c, &value, ptr_ptr, size_ptr)
    })())
}

fn proxy_replace_header_map_value(mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> R {
    finish((|| {
        let kind = map_kind(kind)?;
        let key = read_string(&mut c, kp, kl)?;
        let value = read_string(&mut c, vp, vl)?;
        with_writable_map(&mut c, kind, |map| map.replace(&key, &value))
    })())
}

fn proxy_add_header_map_value(mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> R {
    finish((|| {
        let kind = map_kind(kind)?;
        let key = read_string(&mut c, kp, kl)?;
        let value = read_string(&mut c, vp, vl)?;
        with_writable_map(&mut c, kind, |map| map.add(&key, &value))
    })())
}

fn proxy_remove_header_map_value(mut c: C<'_>, kind: i32, kp: i32, kl: i32) -> R {
    finish((|| {
        let kind = map_kind(kind)?;
        let key = read_string(&mut c, kp, kl)?;
        with_writable_map(&mut c, kind, |map| map.remove(&key))
    })())
}

/// Looks a property up: the stream's own (set by the test or the guest), then the
/// VM's, then the host's, then the few Envoy derives from the stream.
fn lookup_property(state: &VmState, path: &PropertyPath) -> Option<Vec<u8>> {
    let stream = state.stream();
    if let Some(v) = stream.and_then(|s| s.properties.get(path)) {
        return Some(v.clone());
    }
    if let Some(v) = state.properties.get(path) {
        return Some(v.clone());
    }
    if let Some(v) = state.host.property(path) {
        return Some(v);
    }
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let request = stream.map(|s| &s.request_headers.headers);
    let header = |name: &str| request.and_then(|h| h.get(name)).map(|v| v.as_bytes().to_vec());
    match segments.as_slice() {
        ["plugin_name"] => Some(state.plugin_name.as_bytes().to_vec()),
        ["plugin_root_id"] => Some(state.root_id.as_bytes().to_vec()),
        ["plugin_vm_id"] => Some(state.vm_id.as_bytes().to_vec()),
        ["request", "path"] => header(":path"),
        ["request", "url_path"] => header(":path").map(|p| {
            let end = p.iter().position(|b| *b == b'?').unwrap_or(p.len());
            p.get(..end).map(<[u8]>::to_vec).unwrap_or_default()
        }),
        ["request", "method"] => header(":method"),
        ["request", "host"] => header(":authority"),
        ["request", "scheme"] => header(":scheme"),
        ["request", "id"] => header("x-request-id"),
        ["request", "headers", name] => header(name),
        ["response", "code"] => stream
            .and_then(|s| s.response_headers.headers.get(":status"))
            .and_then(|v| v.parse::<i64>().ok())
            .map(int_value),
        _ => None,
    }
}

fn proxy_get_property(mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32) -> R {
    finish((|| {
        let path = parse_path(&read(&mut c, pp, pl)?);
        let value = lookup_property(c.data(), &path).ok_or(Status::NotFound)?;
        copy_out(&mut c, &value, ptr_ptr, size_ptr)
    })())
}

fn proxy_set_property(mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32) -> R {
    finish((|| {
        let path = parse_path(&read(&mut c, pp, pl)?);
        let value = read(&mut c, vp, vl)?;
        let state = c.data_mut();
        match state.stream_mut() {
            Some(stream) => {
                stream.properties.set(path.clone(), value.clone());
                stream.properties_set.push((path, value));
            }
            None => state.properties.set(path, value),
        }
        Ok(())
    })())
}

fn proxy_get_shared_data(mut c: C<'_>, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32) -> R {
    finish((|| {
        let key = read_string(&mut c, kp, kl)?;
        let state = c.data();
        let (value, cas) = state.host.shared_data.guest_get(&state.vm_id, &key)?;
        copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
        write_u32(&mut c, cas_ptr, cas)?;
        Ok(())
    })())
}

fn proxy_set_shared_data(mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) -> R {
    finish((|| {
        let key = read_string(&mut c, kp, kl)?;
        let value = read(&mut c, vp, vl)?;
        let host = c.data().host.clone();
        let vm_id = c.data().vm_id.clone();
        match host.shared_data.guest_set(&vm_id, &key, &value, cas as u32) {
            Status::Ok => Ok(()),
            status => Err(status.into()),
        }
    })())
}

fn proxy_register_shared_queue(mut c: C<'_>, np: i32, nl: i32, token_ptr: i32) -> R {
    finish((|| {
        let name = read_string(&mut c, np, nl)?;
        let state = c.data();
        let owner = QueueOwner { vm: state.vm, context_id: state.context_id() };
        let token = state.host.queues.register(&state.vm_id, &name, owner);
        write_u32(&mut c, token_ptr, token)?;
        Ok(())
    })())
}

fn proxy_resolve_shared_queue(mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, token_ptr: i32) -> R {
    finish((|| {
        let vm_id = read_string(&mut c, vp, vl)?;
        let name = read_string(&mut c, np, nl)?;
        let token = c.data().host.queues.resolve(&vm_id, &name).ok_or(Status::NotFound)?;
        write_u32(&mut c, token_ptr, token)?;
        Ok(())
    })())
}

fn proxy_enqueue_shared_queue(mut c: C<'_>, token: i32, vp: i32, vl: i32) -> R {
    finish((|| {
        let value = read(&mut c, vp, vl)?;
        let host = c.data().host.clone();
        if let Some(owner) = host.queues.enqueue(token as u32, &value)? {
            host.notify_queue(owner, token as u32);
        }
        Ok(())
    })())
}

fn proxy_dequeue_shared_queue(mut c: C<'_>, token: i32, ptr_ptr: i32, size_ptr: i32) -> R {
    finish((|| {
        let value = c.data().host.queues.dequeue(token as u32)?;
        copy_out(&mut c, &value, ptr_ptr, size_ptr)
    })())
}

fn proxy_continue_stream(mut c: C<'_>, kind: i32) -> R {
    let kind = StreamType::from_u32(kind as u32);
    let Some(stream) = c.data_mut().stream_mut() else {
        return Ok(Status::Ok.code());
    };
    let status = match kind {
        Some(StreamType::Request) => {
            stream.continue_request = true;
            Status::Ok
        }
        Some(StreamType::Response) => {
            stream.continue_response = true;
            Status::Ok
        }
        _ => Status::BadArgument,
    };
    Ok(status.code())
}

fn proxy_close_stream(mut c: C<'_>, kind: i32) -> R {
    let kind = StreamType::from_u32(kind as u32);
    let Some(stream) = c.data_mut().stream_mut() else {
        return Ok(Status::Ok.code());
    };
    match kind {
        Some(StreamType::Request) => stream.close_request = true,
        Some(StreamType::Response) => stream.close_response = true,
        Some(_) => {}
        None => return Ok(Status::BadArgument.code()),
    }
    Ok(Status::Ok.code())
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut c: C<'_>,
    status: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    grpc_status: i32,
) -> R {
    finish((|| {
        let details = read_string(&mut c, dp, dl)?;
        let body = read(&mut c, bp, bl)?;
        let raw = read(&mut c, hp, hl)?;
        let headers = decode_headers(&raw).map_err(|_| Status::BadArgument)?;
        if let Some(stream) = c.data_mut().stream_mut() {
            stream.local_reply = Some(LocalReply {
                status: u16::try_from(status).unwrap_or(u16::MAX),
                headers,
                body,
                grpc_status: (0..=16).contains(&grpc_status).then_some(grpc_status),
                details,
            });
        }
        Ok(())
    })())
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut c: C<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    tp: i32,
    tl: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> R {
    finish((|| {
        let cluster = read_string(&mut c, up, ul)?;
        let headers = decode_headers(&read(&mut c, hp, hl)?).map_err(|_| Status::BadArgument)?;
        let body = read(&mut c, bp, bl)?;
        let trailers = decode_headers(&read(&mut c, tp, tl)?).map_err(|_| Status::BadArgument)?;
        if timeout_ms < 0 || !c.data().host.cluster_known(&cluster) {
            return Err(Status::BadArgument.into());
        }
        if !(headers.contains(":path") && headers.contains(":method") && headers.contains(":authority")) {
            return Err(Status::BadArgument.into());
        }
        let reuse = c.data().host.callout_tokens() == CalloutTokens::ReuseFreed;
        let state = c.data_mut();
        let token = if reuse {
            // A host whose counter wrapped: the lowest token no call of its own holds.
            (1..=u32::MAX).find(|t| !state.pending_callouts.contains_key(t)).unwrap_or(1)
        } else {
            state.next_callout_token = state.next_callout_token.wrapping_add(1).max(1);
            state.next_callout_token
        };
        let callout = Callout {
            token,
            vm: state.vm,
            context_id: state.context_id(),
            for_stream: state.acting_stream,
            cluster,
            headers,
            body,
            trailers,
            timeout: Duration::from_millis(u64::from(timeout_ms as u32)),
        };
        state.callouts.push(callout.clone());
        state.pending_callouts.insert(token, callout);
        write_u32(&mut c, token_ptr, token)?;
        Ok(())
    })())
}

fn proxy_set_effective_context(mut c: C<'_>, id: i32) -> R {
    let id = id as u32;
    let state = c.data_mut();
    if id == state.root_context_id || state.streams.contains_key(&id) {
        state.effective_context = Some(id);
        if id != state.root_context_id {
            state.acting_stream = Some(id);
        }
        Ok(Status::Ok.code())
    } else {
        Ok(Status::BadArgument.code())
    }
}

fn proxy_done(mut c: C<'_>) -> R {
    c.data_mut().done_called = true;
    Ok(Status::Ok.code())
}

fn proxy_define_metric(mut c: C<'_>, kind: i32, np: i32, nl: i32, id_ptr: i32) -> R {
    finish((|| {
        let kind = MetricType::from_u32(kind as u32).ok_or(Status::BadArgument)?;
        let name = read_string(&mut c, np, nl)?;
        let state = c.data_mut();
        let existing = state.metric_ids.iter().find(|(id, n)| **n == name && *id & 3 == kind.tag()).map(|(id, _)| *id);
        let id = match existing {
            Some(id) => id,
            None => {
                // Like Envoy: the low two bits carry the type.
                state.next_metric_id += 1;
                let id = (state.next_metric_id << 2) | kind.tag();
                state.metric_ids.insert(id, name.clone());
                id
            }
        };
        state.host.metrics.define(kind, &name);
        write_u32(&mut c, id_ptr, id)?;
        Ok(())
    })())
}

fn metric_name(c: &C<'_>, id: i32) -> Result<String, Status> {
    c.data().metric_ids.get(&(id as u32)).cloned().ok_or(Status::NotFound)
}

fn proxy_increment_metric(c: C<'_>, id: i32, offset: i64) -> R {
    let status = match metric_name(&c, id) {
        Ok(name) => c.data().host.metrics.increment(&name, offset),
        Err(status) => status,
    };
    Ok(status.code())
}

fn proxy_record_metric(c: C<'_>, id: i32, value: i64) -> R {
    let status = match metric_name(&c, id) {
        Ok(name) => c.data().host.metrics.record(&name, value as u64),
        Err(status) => status,
    };
    Ok(status.code())
}

fn proxy_get_metric(mut c: C<'_>, id: i32, ptr: i32) -> R {
    finish((|| {
        let name = metric_name(&c, id)?;
        let value = c.data().host.metrics.get(&name)?;
        write_u64(&mut c, ptr, value)?;
        Ok(())
    })())
}

fn proxy_get_status(mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32) -> R {
    finish((|| {
        let (code, message) = c.data().status.clone();
        write_u32(&mut c, code_ptr, code)?;
        copy_out(&mut c, &message, ptr_ptr, size_ptr)
    })())
}

fn proxy_call_foreign_function(mut c: C<'_>, np: i32, nl: i32, _ap: i32, _al: i32, _rp: i32, _rs: i32) -> R {
    finish((|| {
        let name = read_string(&mut c, np, nl)?;
        c.data_mut().foreign_calls.push(name);
        Err(Status::NotFound.into())
    })())
}
