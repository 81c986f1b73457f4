//! The test's "Envoy process": one clock, one shared-data store, one set of queues,
//! stats and logs, shared by every VM (worker) created from it. Each test makes its
//! own `Host`, so tests never see each other's state and can run in parallel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::callout::{Callout, CalloutReply};
use crate::clock::{parse_rfc3339, Clock, TimeParseError};
use crate::error::HostError;
use crate::logs::{LogBook, LogRecord};
use crate::metrics::{MetricSnapshot, MetricStore};
use crate::module::ModuleSource;
use crate::properties::{to_path, PropertyMap};
use crate::shared_data::SharedData;
use crate::shared_queue::{QueueOwner, SharedQueues};
use crate::status::{LogLevel, MetricType};
use crate::sync::lock;
use crate::vm::{Vm, VmBuilder, VmInner};

/// Where a fresh host's clock starts: a Monday in the middle of a month.
pub const DEFAULT_START: &str = "2024-01-15T12:00:00Z";

type Responder = Arc<dyn Fn(&Callout) -> CalloutReply + Send + Sync>;

/// What happens to the guest's HTTP callouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutPolicy {
    /// Answer each callout as soon as the guest call that made it returns, with
    /// the cluster's responder (default: 200 and an empty body).
    AnswerImmediately,
    /// Leave callouts pending until the test answers them with
    /// [`Vm::respond_to_callout`].
    Hold,
}

/// Which token the host gives a new callout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutTokens {
    /// 1, 2, 3... (a u32 that wraps, as Envoy's counter does, after 2^32 calls).
    Sequential,
    /// The lowest token none of the VM's pending calls holds: what a host
    /// whose counter wrapped hands out, at once. A token whose call was
    /// cancelled or answered is given again to the next call.
    ReuseFreed,
}

pub(crate) struct Settings {
    pub log_level: LogLevel,
    pub callouts: CalloutPolicy,
    pub tokens: CalloutTokens,
    pub known_clusters: Option<HashSet<String>>,
    pub fail_open: bool,
    pub local_reply_runs_encoder: bool,
}

/// State shared by the VMs of one host (reached from hostcalls).
pub(crate) struct HostShared {
    pub clock: Clock,
    pub shared_data: SharedData,
    pub queues: SharedQueues,
    pub metrics: MetricStore,
    pub logs: LogBook,
    pub source: ModuleSource,
    properties: Mutex<PropertyMap>,
    settings: Mutex<Settings>,
    responders: Mutex<HashMap<String, Responder>>,
    vms: Mutex<Vec<(u32, Weak<Mutex<VmInner>>)>>,
    queue_events: Mutex<VecDeque<(QueueOwner, u32)>>,
    next_vm: AtomicU32,
    pumping: AtomicBool,
}

impl HostShared {
    fn new(source: ModuleSource) -> HostShared {
        let start = parse_rfc3339(DEFAULT_START).unwrap_or(0);
        HostShared {
            clock: Clock::new(start),
            shared_data: SharedData::new(),
            queues: SharedQueues::default(),
            metrics: MetricStore::default(),
            logs: LogBook::default(),
            source,
            properties: Mutex::new(PropertyMap::default()),
            settings: Mutex::new(Settings {
                log_level: LogLevel::Trace,
                callouts: CalloutPolicy::AnswerImmediately,
                tokens: CalloutTokens::Sequential,
                known_clusters: None,
                fail_open: false,
                local_reply_runs_encoder: true,
            }),
            responders: Mutex::new(HashMap::new()),
            vms: Mutex::new(Vec::new()),
            queue_events: Mutex::new(VecDeque::new()),
            next_vm: AtomicU32::new(0),
            pumping: AtomicBool::new(false),
        }
    }

    /// A host for linking checks only.
    pub(crate) fn detached() -> HostShared {
        HostShared::new(ModuleSource::Bytes { label: "detached".into(), bytes: Arc::new(Vec::new()) })
    }

    pub(crate) fn log_level(&self) -> LogLevel {
        lock(&self.settings).log_level
    }

    pub(crate) fn callout_policy(&self) -> CalloutPolicy {
        lock(&self.settings).callouts
    }

    pub(crate) fn callout_tokens(&self) -> CalloutTokens {
        lock(&self.settings).tokens
    }

    pub(crate) fn fail_open(&self) -> bool {
        lock(&self.settings).fail_open
    }

    pub(crate) fn local_reply_runs_encoder(&self) -> bool {
        lock(&self.settings).local_reply_runs_encoder
    }

    pub(crate) fn cluster_known(&self, name: &str) -> bool {
        lock(&self.settings).known_clusters.as_ref().is_none_or(|known| known.contains(name))
    }

    pub(crate) fn property(&self, path: &[String]) -> Option<Vec<u8>> {
        lock(&self.properties).get(path).cloned()
    }

    pub(crate) fn responder(&self, cluster: &str) -> Option<Responder> {
        lock(&self.responders).get(cluster).cloned()
    }

    pub(crate) fn notify_queue(&self, owner: QueueOwner, token: u32) {
        lock(&self.queue_events).push_back((owner, token));
    }

    fn vm_by_index(&self, index: u32) -> Option<Arc<Mutex<VmInner>>> {
        lock(&self.vms).iter().find(|(i, _)| *i == index).and_then(|(_, weak)| weak.upgrade())
    }

    fn live_vms(&self) -> Vec<Arc<Mutex<VmInner>>> {
        lock(&self.vms).iter().filter_map(|(_, w)| w.upgrade()).collect()
    }

    pub(crate) fn register_vm(&self, index: u32, vm: &Arc<Mutex<VmInner>>) {
        let mut vms = lock(&self.vms);
        vms.retain(|(_, w)| w.strong_count() > 0);
        vms.push((index, Arc::downgrade(vm)));
    }

    pub(crate) fn next_vm_index(&self) -> u32 {
        self.next_vm.fetch_add(1, Ordering::SeqCst)
    }

    /// Delivers `proxy_on_queue_ready` notifications to VMs not busy right now.
    pub(crate) fn pump(&self) {
        if self.pumping.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut deferred = Vec::new();
        for _ in 0..1000 {
            let Some((owner, token)) = lock(&self.queue_events).pop_front() else {
                break;
            };
            let Some(vm) = self.vm_by_index(owner.vm) else {
                continue;
            };
            let Ok(mut inner) = vm.try_lock() else {
                deferred.push((owner, token));
                continue;
            };
            let _ = inner.queue_ready(owner.context_id, token);
        }
        lock(&self.queue_events).extend(deferred);
        self.pumping.store(false, Ordering::SeqCst);
    }
}

/// A test's proxy: create one per test.
///
/// ```no_run
/// use host_tests::Host;
/// use std::time::Duration;
///
/// let host = Host::new();
/// host.set_time_rfc3339("2024-02-28T23:59:59Z");
/// let vm = host.vm(r#"{"tiers": {}}"#).unwrap();
/// let r = vm.request().method("POST").path("/v1/chat/completions")
///     .header("x-user-id", "alice").json_body(r#"{"model":"gpt-4o"}"#).send();
/// r.assert_allowed();
/// host.advance(Duration::from_secs(3600));
/// ```
#[derive(Clone)]
pub struct Host {
    pub(crate) shared: Arc<HostShared>,
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

impl Host {
    /// A host that runs the quota filter (see [`crate::quota_filter_path`]).
    pub fn new() -> Host {
        Host::with_module(ModuleSource::quota_filter())
    }

    /// A host that runs the `.wasm` at `path`.
    pub fn with_wasm_file(path: impl Into<std::path::PathBuf>) -> Host {
        Host::with_module(ModuleSource::File(path.into()))
    }

    /// A host that runs a module given as bytes (e.g. from `wat::parse_str`).
    pub fn with_wasm_bytes(label: &str, bytes: Vec<u8>) -> Host {
        Host::with_module(ModuleSource::Bytes { label: label.to_string(), bytes: Arc::new(bytes) })
    }

    pub fn with_module(source: ModuleSource) -> Host {
        Host { shared: Arc::new(HostShared::new(source)) }
    }

    /// Starts a VM with `plugin_config` (vm_id "", root_id "") and configures it.
    /// A `false` from `proxy_on_configure` is [`HostError::ConfigRejected`].
    pub fn vm(&self, plugin_config: impl AsRef<[u8]>) -> Result<Vm, HostError> {
        self.vm_builder().plugin_config(plugin_config).start()
    }

    /// For a VM with a particular vm_id, root_id or VM configuration.
    pub fn vm_builder(&self) -> VmBuilder {
        VmBuilder::new(self.clone())
    }

    // ----- time -----

    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    pub fn now_nanos(&self) -> u64 {
        self.shared.clock.now_nanos()
    }

    pub fn now_rfc3339(&self) -> String {
        self.shared.clock.now_rfc3339()
    }

    /// Sets the clock, e.g. `"2024-02-28T23:59:59Z"`. No ticks fire for the jump.
    /// Panics on a malformed literal, naming it; see [`Host::try_set_time_rfc3339`].
    #[allow(clippy::panic)]
    pub fn set_time_rfc3339(&self, time: &str) {
        if let Err(e) = self.try_set_time_rfc3339(time) {
            panic!("{e}");
        }
    }

    pub fn try_set_time_rfc3339(&self, time: &str) -> Result<(), TimeParseError> {
        self.shared.clock.set_nanos(parse_rfc3339(time)?);
        Ok(())
    }

    pub fn set_time_nanos(&self, unix_nanos: u64) {
        self.shared.clock.set_nanos(unix_nanos);
    }

    /// Moves time forward. Each VM with a tick period gets `proxy_on_tick` once per
    /// period elapsed, with the clock set to that tick's instant, as a timer would
    /// fire while the time passes (at most 10 000 ticks per call).
    pub fn advance(&self, by: Duration) {
        let target = self.now_nanos().saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
        let vms = self.shared.live_vms();
        for _ in 0..10_000 {
            let mut next: Option<(u64, &Arc<Mutex<VmInner>>)> = None;
            for vm in &vms {
                let Ok(inner) = vm.try_lock() else { continue };
                if let Some(at) = inner.next_tick_at() {
                    if at <= target && next.is_none_or(|(t, _)| at < t) {
                        next = Some((at, vm));
                    }
                }
            }
            let Some((at, vm)) = next else { break };
            self.shared.clock.set_nanos(at.max(self.now_nanos()));
            if let Ok(mut inner) = vm.try_lock() {
                let _ = inner.fire_tick();
            }
            self.shared.pump();
        }
        self.shared.clock.set_nanos(target.max(self.now_nanos()));
    }

    // ----- the process-wide stores -----

    pub fn shared_data(&self) -> &SharedData {
        &self.shared.shared_data
    }

    pub fn queues(&self) -> &SharedQueues {
        &self.shared.queues
    }

    /// Sets a property every VM and stream can read (`proxy_get_property`).
    pub fn set_property<S: AsRef<str>>(&self, path: &[S], value: impl Into<Vec<u8>>) {
        lock(&self.shared.properties).set(to_path(path), value.into());
    }

    pub fn remove_property<S: AsRef<str>>(&self, path: &[S]) {
        lock(&self.shared.properties).remove(&to_path(path));
    }

    // ----- observing -----

    /// Every log line of every VM, in order.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.shared.logs.all()
    }

    pub fn logs_containing(&self, needle: &str) -> Vec<LogRecord> {
        self.logs().into_iter().filter(|r| r.message.contains(needle)).collect()
    }

    pub fn metric(&self, name: &str) -> Option<MetricSnapshot> {
        self.shared.metrics.snapshot(name)
    }

    /// A counter's value, 0 when never defined or a different kind.
    pub fn counter(&self, name: &str) -> u64 {
        self.metric(name).filter(|m| m.kind == MetricType::Counter).map_or(0, |m| u64::try_from(m.value).unwrap_or(0))
    }

    pub fn gauge(&self, name: &str) -> Option<i64> {
        self.metric(name).filter(|m| m.kind == MetricType::Gauge).map(|m| m.value)
    }

    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        self.shared.metrics.all()
    }

    // ----- behaviour knobs -----

    /// The level `proxy_get_log_level` reports; lines below it are dropped.
    /// Default: trace (keep everything).
    pub fn set_log_level(&self, level: LogLevel) {
        lock(&self.shared.settings).log_level = level;
    }

    pub fn set_callout_policy(&self, policy: CalloutPolicy) {
        lock(&self.shared.settings).callouts = policy;
    }

    /// Which tokens new callouts get (default: sequential).
    pub fn set_callout_tokens(&self, tokens: CalloutTokens) {
        lock(&self.shared.settings).tokens = tokens;
    }

    /// Answers callouts to `cluster` with `responder` (when answering immediately).
    pub fn on_callout(&self, cluster: &str, responder: impl Fn(&Callout) -> CalloutReply + Send + Sync + 'static) {
        lock(&self.shared.responders).insert(cluster.to_string(), Arc::new(responder));
    }

    /// Only these clusters exist: a callout to any other is `BadArgument`, as in
    /// Envoy. By default every cluster exists.
    pub fn set_known_clusters<S: AsRef<str>>(&self, clusters: &[S]) {
        lock(&self.shared.settings).known_clusters = Some(clusters.iter().map(|c| c.as_ref().to_string()).collect());
    }

    /// Envoy's `fail_open`: requests reaching a dead VM pass through untouched
    /// instead of getting a 503. Default false.
    pub fn set_fail_open(&self, fail_open: bool) {
        lock(&self.shared.settings).fail_open = fail_open;
    }

    /// Whether a local reply sent while decoding runs through the filter's own
    /// response callbacks, as Envoy does. Default true.
    pub fn set_local_reply_runs_encoder(&self, runs: bool) {
        lock(&self.shared.settings).local_reply_runs_encoder = runs;
    }

    /// Delivers pending `proxy_on_queue_ready` notifications now.
    pub fn run_pending(&self) {
        self.shared.pump();
    }
}
