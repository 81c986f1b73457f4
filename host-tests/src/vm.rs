//! One VM: an instance of the filter module with its own store, like one Envoy
//! worker thread's copy of the plugin. Drives the root context's lifecycle (start,
//! configure, ticks, queues, callout answers); streams live in `stream.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use crate::callout::{Callout, CalloutReply};
use crate::error::HostError;
use crate::exchange::RequestBuilder;
use crate::host::{CalloutPolicy, Host};
use crate::logs::{LogRecord, LogSource};
use crate::module::{prepare, CALL_DEADLINE_TICKS};
use crate::state::{CalloutAnswer, VmState};
use crate::status::{LogLevel, Status};
use crate::stream::Stream;
use crate::sync::lock;
use crate::wasi::flush_lines;

type F<P, R> = Option<TypedFunc<P, R>>;

/// The guest's exported callbacks (absent ones are skipped, as cpp-host does).
#[derive(Clone)]
pub(crate) struct Exports {
    pub on_context_create: F<(i32, i32), ()>,
    pub on_vm_start: F<(i32, i32), i32>,
    pub on_configure: F<(i32, i32), i32>,
    pub on_tick: F<i32, ()>,
    pub on_queue_ready: F<(i32, i32), ()>,
    pub on_request_headers: F<(i32, i32, i32), i32>,
    pub on_request_body: F<(i32, i32, i32), i32>,
    pub on_request_trailers: F<(i32, i32), i32>,
    pub on_response_headers: F<(i32, i32, i32), i32>,
    pub on_response_body: F<(i32, i32, i32), i32>,
    pub on_response_trailers: F<(i32, i32), i32>,
    pub on_done: F<i32, i32>,
    pub on_log: F<i32, ()>,
    pub on_delete: F<i32, ()>,
    pub on_http_call_response: F<(i32, i32, i32, i32, i32), ()>,
}

fn export<P: WasmParams, R: WasmResults>(
    store: &mut Store<VmState>,
    instance: &Instance,
    name: &str,
) -> Result<F<P, R>, HostError> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(func) => func
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| HostError::Instantiate { message: format!("export {name} has an unexpected signature: {e}") }),
    }
}

impl Exports {
    fn find(store: &mut Store<VmState>, instance: &Instance) -> Result<Exports, HostError> {
        Ok(Exports {
            on_context_create: export(store, instance, "proxy_on_context_create")?,
            on_vm_start: export(store, instance, "proxy_on_vm_start")?,
            on_configure: export(store, instance, "proxy_on_configure")?,
            on_tick: export(store, instance, "proxy_on_tick")?,
            on_queue_ready: export(store, instance, "proxy_on_queue_ready")?,
            on_request_headers: export(store, instance, "proxy_on_request_headers")?,
            on_request_body: export(store, instance, "proxy_on_request_body")?,
            on_request_trailers: export(store, instance, "proxy_on_request_trailers")?,
            on_response_headers: export(store, instance, "proxy_on_response_headers")?,
            on_response_body: export(store, instance, "proxy_on_response_body")?,
            on_response_trailers: export(store, instance, "proxy_on_response_trailers")?,
            on_done: export(store, instance, "proxy_on_done")?,
            on_log: export(store, instance, "proxy_on_log")?,
            on_delete: export(store, instance, "proxy_on_delete")?,
            on_http_call_response: export(store, instance, "proxy_on_http_call_response")?,
        })
    }
}

pub(crate) struct VmInner {
    pub store: Store<VmState>,
    pub exports: Exports,
    pub dead: Option<String>,
    next_context_id: u32,
    /// With `HOST_TESTS_FUEL=1`: instructions run per export called, and calls.
    instructions_by_export: std::collections::BTreeMap<String, (u64, u64)>,
}

impl VmInner {
    pub(crate) fn state(&self) -> &VmState {
        self.store.data()
    }

    pub(crate) fn state_mut(&mut self) -> &mut VmState {
        self.store.data_mut()
    }

    pub(crate) fn host_log(&self, level: LogLevel, context_id: u32, message: String) {
        let state = self.state();
        state.host.logs.push(LogRecord { vm: state.vm, context_id, level, message, source: LogSource::Host });
    }

    /// Calls into the guest. A trap kills the VM (as in Envoy) and comes back as
    /// [`HostError::Trap`] with the log lines written during the call.
    pub(crate) fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        what: &str,
        context: u32,
        func: F<P, R>,
        params: P,
    ) -> Result<Option<R>, HostError> {
        if let Some(reason) = &self.dead {
            return Err(HostError::VmDead { reason: reason.clone() });
        }
        let Some(func) = func else { return Ok(None) };
        let log_start = self.state().host.logs.len();
        {
            let state = self.state_mut();
            state.current_context = context;
            state.effective_context = None;
            state.acting_stream = state.streams.contains_key(&context).then_some(context);
        }
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        let fuel_before = self.store.get_fuel().ok();
        let result = func.call(&mut self.store, params);
        if let (Some(before), Ok(after)) = (fuel_before, self.store.get_fuel()) {
            let entry = self.instructions_by_export.entry(what.to_string()).or_default();
            entry.0 += before.saturating_sub(after);
            entry.1 += 1;
        }
        let state = self.state_mut();
        if result.is_err() {
            flush_lines(state, true);
        }
        state.current_context = 0;
        state.effective_context = None;
        state.acting_stream = None;
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                let message = format!("{error:#}");
                let call = format!("{what}(context {context})");
                self.dead = Some(format!("trapped in {call}: {message}"));
                self.host_log(LogLevel::Critical, context, format!("VM failed: trapped in {call}: {message}"));
                let vm = self.state().vm;
                let logs = self.state().host.logs.since(log_start).into_iter().filter(|r| r.vm == vm).collect();
                Err(HostError::Trap { call, message, logs })
            }
        }
    }

    pub(crate) fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    pub(crate) fn root_context_id(&self) -> u32 {
        self.state().root_context_id
    }

    /// Answers pending callouts when the host answers immediately.
    pub(crate) fn answer_callouts(&mut self) -> Result<(), HostError> {
        let host = self.state().host.clone();
        if host.callout_policy() != CalloutPolicy::AnswerImmediately {
            return Ok(());
        }
        for _ in 0..100 {
            let Some((_, callout)) = self.state_mut().pending_callouts.pop_first() else {
                break;
            };
            let reply = match host.responder(&callout.cluster) {
                Some(responder) => responder(&callout),
                None => CalloutReply::ok(Vec::new()),
            };
            self.deliver_callout(&callout, &reply)?;
        }
        Ok(())
    }

    /// `proxy_on_http_call_response` for `callout`, unless its context is gone
    /// (Envoy cancels a context's callouts when the context is destroyed).
    pub(crate) fn deliver_callout(&mut self, callout: &Callout, reply: &CalloutReply) -> Result<(), HostError> {
        let ctx = callout.context_id;
        if ctx != self.root_context_id() && !self.state().streams.contains_key(&ctx) {
            return Ok(());
        }
        let answer = CalloutAnswer::from_reply(reply);
        let (headers, body, trailers) =
            answer.as_ref().map_or((0, 0, 0), |a| (a.headers.len(), a.body.len(), a.trailers.len()));
        {
            let state = self.state_mut();
            match &answer {
                Some(_) => state.set_status(Status::Ok, ""),
                None => state.set_status(Status::BrokenConnection, "reset"),
            }
            state.callout_answer = answer;
        }
        let f = self.exports.on_http_call_response.clone();
        let result = self.call(
            "proxy_on_http_call_response",
            ctx,
            f,
            (ctx as i32, callout.token as i32, headers as i32, body as i32, trailers as i32),
        );
        let state = self.state_mut();
        state.take_answer();
        state.set_status(Status::Ok, "");
        result.map(|_| ())
    }

    pub(crate) fn next_tick_at(&self) -> Option<u64> {
        let state = self.state();
        (self.dead.is_none() && state.tick_period_ms > 0).then_some(state.next_tick_nanos)
    }

    pub(crate) fn fire_tick(&mut self) -> Result<(), HostError> {
        let period = u64::from(self.state().tick_period_ms) * 1_000_000;
        let next = self.state().next_tick_nanos.saturating_add(period.max(1));
        self.state_mut().next_tick_nanos = next;
        let root = self.root_context_id();
        let f = self.exports.on_tick.clone();
        self.call("proxy_on_tick", root, f, root as i32)?;
        self.answer_callouts()
    }

    pub(crate) fn queue_ready(&mut self, context: u32, token: u32) -> Result<(), HostError> {
        let f = self.exports.on_queue_ready.clone();
        self.call("proxy_on_queue_ready", context, f, (context as i32, token as i32))?;
        self.answer_callouts()
    }

    fn configure(&mut self, config: &[u8]) -> Result<(), HostError> {
        let root = self.root_context_id();
        let log_start = self.state().host.logs.len();
        self.state_mut().plugin_config = Some(config.to_vec());
        let f = self.exports.on_configure.clone();
        let result = self.call("proxy_on_configure", root, f, (root as i32, config.len() as i32));
        self.state_mut().plugin_config = None;
        match result? {
            Some(0) => {
                let vm = self.state().vm;
                let logs = self.state().host.logs.since(log_start).into_iter().filter(|r| r.vm == vm).collect();
                Err(HostError::ConfigRejected { logs })
            }
            _ => self.answer_callouts(),
        }
    }
}

/// How to start a VM: its vm_id (which shared-data map it uses), root_id, plugin
/// name, VM configuration and plugin configuration.
pub struct VmBuilder {
    host: Host,
    vm_id: String,
    root_id: String,
    plugin_name: String,
    vm_config: Vec<u8>,
    plugin_config: Vec<u8>,
    allow_headers_stop_iteration: bool,
    request_buffer_limit: Option<usize>,
}

impl VmBuilder {
    pub(crate) fn new(host: Host) -> VmBuilder {
        VmBuilder {
            host,
            vm_id: String::new(),
            root_id: String::new(),
            plugin_name: "quota".to_string(),
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            allow_headers_stop_iteration: false,
            request_buffer_limit: None,
        }
    }

    /// Envoy's `allow_on_headers_stop_iteration` (Envoy >= 1.35, default false).
    /// Without it, `Pause` from a headers callback stops the body and trailers from
    /// reaching the filter until it resumes the stream; with it, they still arrive
    /// while the headers wait.
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.allow_headers_stop_iteration = allow;
        self
    }

    /// Envoy's buffer limit for one stream (the route's or virtual host's
    /// `request_body_buffer_limit`, else the listener's
    /// `per_connection_buffer_limit_bytes`). A request body the filter holds
    /// (`Pause` from a body callback) past this many bytes gets Envoy's own
    /// `413 Payload Too Large`, as Envoy 1.40 does: the chunk is added to what is
    /// held before the filter sees it, and the filter never sees the chunk that
    /// crossed the limit. Unset (the default): no limit.
    pub fn request_buffer_limit(mut self, bytes: usize) -> Self {
        self.request_buffer_limit = Some(bytes);
        self
    }

    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }

    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }

    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = name.to_string();
        self
    }

    pub fn vm_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.vm_config = config.as_ref().to_vec();
        self
    }

    pub fn plugin_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.plugin_config = config.as_ref().to_vec();
        self
    }

    /// Instantiates, runs `_initialize` (or `_start`), creates the root context,
    /// then `proxy_on_vm_start` and `proxy_on_configure`.
    pub fn start(self) -> Result<Vm, HostError> {
        let shared = self.host.shared.clone();
        let prepared = prepare(&shared.source)?;
        let index = shared.next_vm_index();
        let mut state = VmState::new(shared.clone(), index);
        state.vm_id = self.vm_id;
        state.root_id = self.root_id;
        state.plugin_name = self.plugin_name;
        state.vm_config = self.vm_config.clone();
        state.allow_headers_stop_iteration = self.allow_headers_stop_iteration;
        state.request_buffer_limit = self.request_buffer_limit;
        let mut store = Store::new(crate::module::engine(), state);
        store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        if crate::module::fuel_counted() {
            store.set_fuel(u64::MAX).map_err(|e| HostError::Instantiate { message: format!("{e:?}") })?;
        }
        let instance =
            prepared.pre.instantiate(&mut store).map_err(|e| HostError::Instantiate { message: format!("{e:?}") })?;
        check_abi(&mut store, &instance)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| HostError::Instantiate { message: "the module exports no memory".into() })?;
        let alloc = ["proxy_on_memory_allocate", "malloc"]
            .iter()
            .find_map(|name| instance.get_typed_func::<i32, i32>(&mut store, name).ok())
            .ok_or_else(|| HostError::Instantiate {
                message: "the module exports neither proxy_on_memory_allocate nor malloc".into(),
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);
        for name in &prepared.stubbed {
            shared.logs.push(LogRecord {
                vm: index,
                context_id: 0,
                level: LogLevel::Debug,
                message: format!("import {name} is not implemented by the test host; linked to a stub"),
                source: LogSource::Host,
            });
        }
        let exports = Exports::find(&mut store, &instance)?;
        let mut inner =
            VmInner { store, exports, dead: None, next_context_id: 1, instructions_by_export: Default::default() };

        let init = instance.get_typed_func::<(), ()>(&mut inner.store, "_initialize").ok();
        if init.is_some() {
            inner.call("_initialize", 0, init, ())?;
        } else {
            let start = instance.get_typed_func::<(), ()>(&mut inner.store, "_start").ok();
            match inner.call("_start", 0, start, ()) {
                Err(HostError::Trap { message, .. }) if message.contains("proc_exit(0)") => {
                    inner.dead = None;
                }
                other => {
                    other?;
                }
            }
        }

        let root = inner.new_context_id();
        inner.state_mut().root_context_id = root;
        let f = inner.exports.on_context_create.clone();
        inner.call("proxy_on_context_create", root, f, (root as i32, 0))?;
        let log_start = shared.logs.len();
        let f = inner.exports.on_vm_start.clone();
        let started = inner.call("proxy_on_vm_start", root, f, (root as i32, self.vm_config.len() as i32))?;
        if started == Some(0) {
            let logs = shared.logs.since(log_start);
            return Err(HostError::VmStartRejected { logs });
        }
        inner.answer_callouts()?;
        inner.configure(&self.plugin_config)?;

        let inner = Arc::new(Mutex::new(inner));
        shared.register_vm(index, &inner);
        shared.pump();
        Ok(Vm { inner, host: self.host, index })
    }
}

fn check_abi(store: &mut Store<VmState>, instance: &Instance) -> Result<(), HostError> {
    let has = |store: &mut Store<VmState>, name: &str| instance.get_func(&mut *store, name).is_some();
    if has(store, "proxy_abi_version_0_2_1") || has(store, "proxy_abi_version_0_2_0") {
        return Ok(());
    }
    let message = if has(store, "proxy_abi_version_0_1_0") {
        "the module targets proxy-wasm ABI 0.1.0; this host speaks 0.2.x".to_string()
    } else {
        "the module exports no proxy_abi_version_* function: not a proxy-wasm filter".to_string()
    };
    Err(HostError::Instantiate { message })
}

/// A running VM. Cheap to clone; `Send + Sync`, so tests can drive VMs from
/// several threads like Envoy workers.
#[derive(Clone)]
pub struct Vm {
    pub(crate) inner: Arc<Mutex<VmInner>>,
    pub(crate) host: Host,
    index: u32,
}

impl Vm {
    /// The VM's index in its host (0 for the first), as in [`LogRecord::vm`].
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Starts building a request through this VM's filter.
    pub fn request(&self) -> RequestBuilder {
        RequestBuilder::new(self.clone())
    }

    /// Opens a stream to drive phase by phase (see [`Stream`]).
    pub fn stream(&self) -> Result<Stream, HostError> {
        Stream::open(self.clone())
    }

    pub(crate) fn with_inner<T>(&self, f: impl FnOnce(&mut VmInner) -> T) -> T {
        let result = f(&mut lock(&self.inner));
        self.host.shared.pump();
        result
    }

    /// The wasm instructions this VM has run so far (wasmtime's fuel), or
    /// `None` unless the process runs with `HOST_TESTS_FUEL=1`.
    pub fn instructions(&self) -> Option<u64> {
        let inner = lock(&self.inner);
        inner.store.get_fuel().ok().filter(|_| crate::module::fuel_counted()).map(|left| u64::MAX - left)
    }

    /// The size of the module's linear memory, in bytes (it only grows).
    pub fn memory_bytes(&self) -> usize {
        let inner = lock(&self.inner);
        inner.state().memory.map_or(0, |m| m.data_size(&inner.store))
    }

    /// With `HOST_TESTS_FUEL=1`: per export the VM was called by, the
    /// instructions it ran there and the number of calls (empty otherwise).
    pub fn instructions_by_export(&self) -> Vec<(String, u64, u64)> {
        let inner = lock(&self.inner);
        inner.instructions_by_export.iter().map(|(name, (n, calls))| (name.clone(), *n, *calls)).collect()
    }

    pub fn root_context_id(&self) -> u32 {
        self.with_inner(|vm| vm.root_context_id())
    }

    /// Calls `proxy_on_configure` again with a new plugin configuration.
    pub fn configure(&self, plugin_config: impl AsRef<[u8]>) -> Result<(), HostError> {
        self.with_inner(|vm| vm.configure(plugin_config.as_ref()))
    }

    /// Fires `proxy_on_tick` now (whatever the period).
    pub fn tick(&self) -> Result<(), HostError> {
        self.with_inner(|vm| {
            let root = vm.root_context_id();
            let f = vm.exports.on_tick.clone();
            vm.call("proxy_on_tick", root, f, root as i32)?;
            vm.answer_callouts()
        })
    }

    /// The period the guest asked for with `proxy_set_tick_period_milliseconds`.
    pub fn tick_period(&self) -> Option<Duration> {
        self.with_inner(|vm| {
            let ms = vm.state().tick_period_ms;
            (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
        })
    }

    /// Every callout this VM made, in order.
    pub fn callouts(&self) -> Vec<Callout> {
        self.with_inner(|vm| vm.state().callouts.clone())
    }

    /// The callouts made by or for stream `id` (owned by it, or made while
    /// the guest served it).
    pub fn callouts_of(&self, id: u32) -> Vec<Callout> {
        self.with_inner(|vm| {
            vm.state().callouts.iter().filter(|c| c.context_id == id || c.for_stream == Some(id)).cloned().collect()
        })
    }

    /// Callouts not answered yet (with [`CalloutPolicy::Hold`]).
    pub fn pending_callouts(&self) -> Vec<Callout> {
        self.with_inner(|vm| vm.state().pending_callouts.values().cloned().collect())
    }

    /// Answers a pending callout (`proxy_on_http_call_response`). If the guest
    /// resumes a paused stream from there, [`Stream::poll`] carries it on.
    pub fn respond_to_callout(&self, token: u32, reply: CalloutReply) -> Result<(), HostError> {
        self.with_inner(|vm| {
            let callout = vm
                .state_mut()
                .pending_callouts
                .remove(&token)
                .ok_or_else(|| HostError::Usage(format!("no pending callout with token {token}")))?;
            vm.deliver_callout(&callout, &reply)?;
            vm.answer_callouts()
        })
    }

    /// This VM's log lines.
    pub fn logs(&self) -> Vec<LogRecord> {
        let index = self.index;
        self.host.logs().into_iter().filter(|r| r.vm == index).collect()
    }

    /// Why the VM died, if it did (a trap).
    pub fn dead_reason(&self) -> Option<String> {
        self.with_inner(|vm| vm.dead.clone())
    }

    pub fn is_dead(&self) -> bool {
        self.dead_reason().is_some()
    }

    /// Stub imports the guest called (`module::name`, one entry per call).
    pub fn unimplemented_calls(&self) -> Vec<String> {
        self.with_inner(|vm| vm.state().unimplemented.clone())
    }

    /// Names passed to `proxy_call_foreign_function` (always `NotFound` here).
    pub fn foreign_calls(&self) -> Vec<String> {
        self.with_inner(|vm| vm.state().foreign_calls.clone())
    }

    /// Starts (again) a log of the hostcalls the guest makes, by name, in
    /// order: what a request costs in crossings into the host.
    pub fn record_hostcalls(&self) {
        self.with_inner(|vm| vm.state_mut().hostcall_log = Some(Vec::new()));
    }

    /// The hostcalls logged since `record_hostcalls`, and stops the log.
    pub fn take_hostcalls(&self) -> Vec<&'static str> {
        self.with_inner(|vm| vm.state_mut().hostcall_log.take().unwrap_or_default())
    }

    /// Whether the guest called `proxy_done`.
    pub fn done_called(&self) -> bool {
        self.with_inner(|vm| vm.state().done_called)
    }

    /// A property the guest set outside any stream (root context).
    pub fn root_property<S: AsRef<str>>(&self, path: &[S]) -> Option<Vec<u8>> {
        let path = crate::properties::to_path(path);
        self.with_inner(|vm| vm.state().properties.get(&path).cloned())
    }
}
