//! What one VM's hostcalls read and write: the wasmtime `Store` data. Holds the
//! contexts' header maps and buffers with Envoy's rules for when each one can be
//! read or changed, and the effects the guest asked for that the host applies
//! after the call returns (local replies, continuing a stream), as Envoy defers them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmtime::{Memory, TypedFunc};

use crate::callout::{Callout, CalloutReply};
use crate::headers::Headers;
use crate::host::HostShared;
use crate::properties::{PropertyMap, PropertyPath};
use crate::status::{MapType, Status};

/// A local reply the guest sent with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// The headers the filter added (Envoy adds `:status`, `content-length` and,
    /// for a non-empty body without one, `content-type: text/plain`).
    pub headers: Headers,
    pub body: Vec<u8>,
    /// `None` when the guest passed -1 (no gRPC status).
    pub grpc_status: Option<i32>,
    /// The "response code details" string, if any.
    pub details: String,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One header map of a stream: its content, and whether the filter can reach it
/// right now. Envoy detaches a map once the filter lets it go (`Continue`): reading
/// it later is `BadArgument`, which the Rust SDK turns into a panic.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamMap {
    pub headers: Headers,
    pub present: bool,
    pub attached: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct StreamBody {
    pub bytes: Vec<u8>,
    pub attached: bool,
    /// The filter returned `Pause` from the last body callback: Envoy keeps
    /// buffering, so the next chunk is appended and the filter sees it all.
    pub buffering: bool,
}

/// The host side of one HTTP stream context.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamState {
    pub request_headers: StreamMap,
    pub request_trailers: StreamMap,
    pub response_headers: StreamMap,
    pub response_trailers: StreamMap,
    pub request_body: StreamBody,
    pub response_body: StreamBody,
    /// `proxy_on_log` runs in Envoy's access-log phase: the final maps are readable.
    pub log_phase: bool,
    pub local_reply: Option<LocalReply>,
    pub continue_request: bool,
    pub continue_response: bool,
    pub close_request: bool,
    pub close_response: bool,
    pub properties: PropertyMap,
    pub properties_set: Vec<(PropertyPath, Vec<u8>)>,
    pub body_writes: u32,
}

impl StreamState {
    fn map(&self, kind: MapType) -> Option<&StreamMap> {
        match kind {
            MapType::RequestHeaders => Some(&self.request_headers),
            MapType::RequestTrailers => Some(&self.request_trailers),
            MapType::ResponseHeaders => Some(&self.response_headers),
            MapType::ResponseTrailers => Some(&self.response_trailers),
            _ => None,
        }
    }

    /// The map as the filter may read it now (`getConstMap`).
    pub(crate) fn readable(&self, kind: MapType) -> Option<&Headers> {
        let map = self.map(kind)?;
        let visible = if self.log_phase { map.present && kind != MapType::RequestTrailers } else { map.attached };
        visible.then_some(&map.headers)
    }

    /// The map as the filter may change it now (`getMap`).
    pub(crate) fn writable(&mut self, kind: MapType) -> Option<&mut Headers> {
        if self.log_phase {
            return None;
        }
        let map = match kind {
            MapType::RequestHeaders => &mut self.request_headers,
            MapType::RequestTrailers => &mut self.request_trailers,
            MapType::ResponseHeaders => &mut self.response_headers,
            MapType::ResponseTrailers => &mut self.response_trailers,
            _ => return None,
        };
        map.attached.then_some(&mut map.headers)
    }
}

/// The answer to a callout, visible while `proxy_on_http_call_response` runs.
#[derive(Clone, Debug)]
pub(crate) struct CalloutAnswer {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// Store data of one VM.
pub(crate) struct VmState {
    pub host: Arc<HostShared>,
    pub vm: u32,
    pub vm_id: String,
    pub plugin_name: String,
    pub root_id: String,
    pub root_context_id: u32,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunc<i32, i32>>,
    /// The context the host called into, and the one the guest switched to.
    pub current_context: u32,
    pub effective_context: Option<u32>,
    /// The stream the guest is serving in this callback (see `Callout::for_stream`).
    pub acting_stream: Option<u32>,
    pub vm_config: Vec<u8>,
    /// Only readable while `proxy_on_configure` runs, as in Envoy.
    pub plugin_config: Option<Vec<u8>>,
    pub streams: HashMap<u32, StreamState>,
    pub callout_answer: Option<CalloutAnswer>,
    /// What `proxy_get_status` reports.
    pub status: (u32, Vec<u8>),
    pub tick_period_ms: u32,
    pub next_tick_nanos: u64,
    pub metric_ids: HashMap<u32, String>,
    pub next_metric_id: u32,
    pub callouts: Vec<Callout>,
    pub pending_callouts: BTreeMap<u32, Callout>,
    pub next_callout_token: u32,
    pub unimplemented: Vec<String>,
    pub foreign_calls: Vec<String>,
    /// The hostcalls the guest made, in order, while a log is kept
    /// (`Vm::record_hostcalls`); `None`: not kept.
    pub hostcall_log: Option<Vec<&'static str>>,
    pub properties: PropertyMap,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub done_called: bool,
    pub random: u64,
    /// Envoy's `allow_on_headers_stop_iteration` plugin option.
    pub allow_headers_stop_iteration: bool,
    /// Envoy's buffer limit for a request body a filter holds (`None`: no limit).
    pub request_buffer_limit: Option<usize>,
}

impl VmState {
    pub(crate) fn new(host: Arc<HostShared>, vm: u32) -> VmState {
        VmState {
            host,
            vm,
            vm_id: String::new(),
            plugin_name: String::new(),
            root_id: String::new(),
            root_context_id: 0,
            memory: None,
            alloc: None,
            current_context: 0,
            effective_context: None,
            acting_stream: None,
            vm_config: Vec::new(),
            plugin_config: None,
            streams: HashMap::new(),
            callout_answer: None,
            status: (0, Vec::new()),
            tick_period_ms: 0,
            next_tick_nanos: 0,
            metric_ids: HashMap::new(),
            next_metric_id: 0,
            callouts: Vec::new(),
            pending_callouts: BTreeMap::new(),
            next_callout_token: 0,
            unimplemented: Vec::new(),
            foreign_calls: Vec::new(),
            hostcall_log: None,
            properties: PropertyMap::default(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            done_called: false,
            allow_headers_stop_iteration: false,
            request_buffer_limit: None,
            random: 0x9E37_79B9_7F4A_7C15 ^ u64::from(vm),
        }
    }

    /// The context hostcalls act on (`contextOrEffectiveContext`).
    pub(crate) fn context_id(&self) -> u32 {
        self.effective_context.unwrap_or(self.current_context)
    }

    pub(crate) fn stream(&self) -> Option<&StreamState> {
        self.streams.get(&self.context_id())
    }

    pub(crate) fn stream_mut(&mut self) -> Option<&mut StreamState> {
        let id = self.context_id();
        self.streams.get_mut(&id)
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per VM, so tests are reproducible.
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn set_status(&mut self, status: Status, message: &str) {
        self.status = (status as u32, message.as_bytes().to_vec());
    }

    pub(crate) fn take_answer(&mut self) -> Option<CalloutAnswer> {
        self.callout_answer.take()
    }
}

impl CalloutAnswer {
    pub(crate) fn from_reply(reply: &CalloutReply) -> Option<CalloutAnswer> {
        match reply {
            CalloutReply::Response { status, headers, body, trailers } => {
                let mut headers = headers.clone();
                if !headers.contains(":status") {
                    headers.add(":status", &status.to_string());
                }
                Some(CalloutAnswer { headers, body: body.clone(), trailers: trailers.clone() })
            }
            CalloutReply::Failure => None,
        }
    }
}
