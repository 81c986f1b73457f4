//! Calls to the Redis store (through its HTTP front) and the corrections
//! queue. A request's charge is called from its own stream, which waits for
//! the answer; corrections (refunds, reported token usage) and nothing else
//! go through the root context's queue instead, because a stream's callouts
//! end with the stream and a correction must outlive the response it corrects.

use crate::header_map;
use crate::host::{log, HostClock};
use crate::report::{bump, define};
use crate::shared_data::SharedData;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use quota_core::clock::Clock;
use quota_core::config::{ClassId, Config, RedisStore, TierId};
use quota_core::counter::Counter;
use quota_core::redis::{self, Answer, CallError, Command};
use quota_core::store::compare_and_swap;
use quota_core::window::Alignment;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Corrections waiting for Redis, at most.
const MAX_QUEUE: usize = 10_000;
/// Corrections in flight, at most.
const MAX_IN_FLIGHT: usize = 64;
/// Attempts per correction before it is dropped (and counted): one per
/// tick, so a Redis outage of several seconds loses nothing.
const ATTEMPTS: u32 = 50;

/// Sends `command` to the store's front; the answer comes to the calling context.
pub fn call(store: &RedisStore, command: &Command, load: bool) -> Result<u32, String> {
    let body = command.body(&store.script_sha1, load);
    let timeout = Duration::from_millis(store.timeout_ms);
    hostcalls::dispatch_http_call(&store.cluster, redis::request_headers(store), Some(body.as_bytes()), vec![], timeout)
        .map_err(|status| format!("could not call cluster {}: {status:?}", store.cluster))
}

/// Reads the answer of a call that just came back.
pub fn answer(num_headers: usize, body_size: usize) -> Result<Answer, CallError> {
    // A call that failed or timed out arrives without headers.
    let status = (num_headers > 0)
        .then(|| header_map::get(MapType::HttpCallResponseHeaders, ":status"))
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    redis::parse(status, &body)
}

/// The store's own metrics: `quota.store.*`.
pub struct StoreMetrics {
    /// A call gave no usable answer (the fail policy applied, or a correction is retried).
    pub errors: Option<u32>,
    /// The script's record differed from the core's decision (see `redis.rs`).
    pub mismatches: Option<u32>,
    /// A correction given up after its attempts, or pushed out of a full queue.
    pub corrections_dropped: Option<u32>,
}

impl StoreMetrics {
    fn new(on: bool) -> StoreMetrics {
        let metric = |name: &str| if on { define(name) } else { None };
        StoreMetrics {
            errors: metric("quota.store.errors"),
            mismatches: metric("quota.store.mismatches"),
            corrections_dropped: metric("quota.store.corrections_dropped"),
        }
    }
}

struct Queued {
    command: Command,
    attempts: u32,
    load: bool,
}

/// Where the approximate mode sends a local counter's deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTarget {
    /// The counter in this Envoy's shared data.
    pub local_key: String,
    /// The same counter in Redis.
    pub redis_key: String,
    pub tier: TierId,
    pub class: ClassId,
    pub alignment: Alignment,
}

/// A call this queue has out.
enum InFlight {
    Correction(Queued),
    Sync { target: SyncTarget, delta: i64 },
}

/// The corrections queue, owned by the root context and flushed on its tick.
pub struct Remote {
    config: Rc<Config>,
    pub metrics: StoreMetrics,
    queue: RefCell<VecDeque<Queued>>,
    in_flight: RefCell<HashMap<u32, InFlight>>,
    /// Approximate mode: units admitted here and not yet sent, by Redis key.
    unsynced: RefCell<HashMap<String, (SyncTarget, i64)>>,
    last_sync_ms: Cell<i64>,
    /// Redis lost the script (NOSCRIPT): send it with the next call.
    reload: Cell<bool>,
}

impl Remote {
    pub fn new(config: Rc<Config>) -> Remote {
        let metrics = StoreMetrics::new(config.observability.metrics && config.counters.redis.is_some());
        Remote {
            config,
            metrics,
            queue: RefCell::new(VecDeque::new()),
            in_flight: RefCell::new(HashMap::new()),
            unsynced: RefCell::new(HashMap::new()),
            last_sync_ms: Cell::new(0),
            reload: Cell::new(false),
        }
    }

    /// Whether calls should carry the script itself (Redis lost it).
    pub fn needs_script(&self) -> bool {
        self.reload.get()
    }

    pub fn script_missing(&self) {
        self.reload.set(true);
    }

    pub fn script_present(&self) {
        self.reload.set(false);
    }

    /// Approximate mode: `delta` units admitted (or given back) here, for the
    /// next sync. A delta of 0 (a refused request) still syncs the counter, so
    /// a caller refused here learns what the other Envoys did.
    pub fn note(&self, target: &SyncTarget, delta: i64) {
        let mut unsynced = self.unsynced.borrow_mut();
        let entry = unsynced.entry(target.redis_key.clone()).or_insert_with(|| (target.clone(), 0));
        entry.1 = entry.1.saturating_add(delta);
    }

    /// Approximate mode: sends every counter's unsynced units, once per `sync_ms`.
    fn sync(&self, store: &RedisStore, every_ms: u64) {
        let now_ms = HostClock.now_ms();
        if now_ms.saturating_sub(self.last_sync_ms.get()) < i64::try_from(every_ms).unwrap_or(i64::MAX) {
            return;
        }
        self.last_sync_ms.set(now_ms);
        let pending: Vec<(SyncTarget, i64)> = self.unsynced.borrow_mut().drain().map(|(_, v)| v).collect();
        for (target, delta) in pending {
            let Some(quota_core::config::Cell::Limited(limits)) = self.config.cell(target.tier, target.class) else {
                continue;
            };
            let command =
                Command::add(target.redis_key.clone(), limits, delta, now_ms.div_euclid(1000), target.alignment);
            match call(store, &command, self.reload.get()) {
                Ok(token) => {
                    self.in_flight.borrow_mut().insert(token, InFlight::Sync { target, delta });
                }
                Err(why) => {
                    bump(self.metrics.errors, 1);
                    log(LogLevel::Warn, &format!("quota: could not sync {}: {why}", target.redis_key));
                    self.note(&target, delta);
                }
            }
        }
    }

    /// Approximate mode: Redis took a sync; raise the local counter to what it knows.
    fn synced(&self, target: &SyncTarget, global: Option<Counter>) {
        let Some(global) = global else { return };
        let now_ms = HostClock.now_ms();
        let now = now_ms.div_euclid(1000);
        let counters = self.config.counters.table(&SharedData, now_ms);
        let merged = compare_and_swap(&counters, &target.local_key, self.config.counters.cas_attempts, |old| {
            (redis::merge(old.and_then(Counter::decode), &global, now).map(|c| c.encode().to_vec()), ())
        });
        if let Err(e) = merged {
            log(LogLevel::Warn, &format!("quota: could not merge {} from Redis: {e:?}", target.local_key));
        }
    }

    /// Queues a correction for the next tick.
    pub fn push(&self, command: Command) {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= MAX_QUEUE {
            if let Some(dropped) = queue.pop_front() {
                log(LogLevel::Warn, &format!("quota: correction queue full, dropped {:?}", dropped.command));
                bump(self.metrics.corrections_dropped, 1);
            }
        }
        queue.push_back(Queued { command, attempts: 0, load: self.reload.get() });
    }

    /// Sends queued corrections while under the in-flight bound, and the
    /// approximate mode's deltas when they are due. Called on the root's tick.
    pub fn flush(&self) {
        let Some(store) = &self.config.counters.redis else { return };
        if let Some(every_ms) = store.sync_ms {
            self.sync(store, every_ms);
        }
        loop {
            if self.in_flight.borrow().len() >= MAX_IN_FLIGHT {
                return;
            }
            let Some(mut next) = self.queue.borrow_mut().pop_front() else { return };
            next.attempts += 1;
            match call(store, &next.command, next.load) {
                Ok(token) => {
                    self.in_flight.borrow_mut().insert(token, InFlight::Correction(next));
                }
                Err(why) => {
                    bump(self.metrics.errors, 1);
                    self.retry(next, &why);
                    // The cluster itself is missing: try again on the next tick.
                    return;
                }
            }
        }
    }

    /// Handles the answer to a call this queue made; false if `token` is not one.
    pub fn on_response(&self, token: u32, num_headers: usize, body_size: usize) -> bool {
        let Some(sent) = self.in_flight.borrow_mut().remove(&token) else { return false };
        let answer = answer(num_headers, body_size);
        match (sent, answer) {
            (InFlight::Sync { target, .. }, Ok(a)) => {
                self.reload.set(false);
                self.synced(&target, a.after);
            }
            (InFlight::Sync { target, delta }, Err(e)) => {
                // Not lost: the units go out with the next sync.
                if e == CallError::NoScript {
                    self.reload.set(true);
                } else {
                    bump(self.metrics.errors, 1);
                }
                self.note(&target, delta);
            }
            (InFlight::Correction(_), Ok(_)) => self.reload.set(false),
            (InFlight::Correction(mut sent), Err(CallError::NoScript)) => {
                self.reload.set(true);
                sent.load = true;
                // Not a failed attempt: Redis answered, without the script.
                sent.attempts -= 1;
                self.queue.borrow_mut().push_front(sent);
            }
            (InFlight::Correction(sent), Err(CallError::Failed(why))) => {
                bump(self.metrics.errors, 1);
                self.retry(sent, &why);
            }
        }
        true
    }

    fn retry(&self, failed: Queued, why: &str) {
        if failed.attempts >= ATTEMPTS {
            log(LogLevel::Error, &format!("quota: gave up correcting {:?}: {why}", failed.command));
            bump(self.metrics.corrections_dropped, 1);
        } else {
            log(LogLevel::Warn, &format!("quota: correction failed (attempt {}), will retry: {why}", failed.attempts));
            self.queue.borrow_mut().push_back(failed);
        }
    }
}
