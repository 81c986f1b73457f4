//! Calls to the Redis store (through its HTTP front) and the corrections
//! queue, with calls that no stream's end can leave behind.
//!
//! Every call is made with the root context effective. Envoy's C++ host
//! makes every `proxy_http_call` on the root context anyway; hosts that
//! follow the effective context do the same here. So a call is never
//! cancelled when a stream ends: it always comes back (answered, failed or
//! timed out), and the SDK, which maps each call to the context that was
//! running when it was made, always forgets it. Its map never keeps a
//! token the host may hand out again, which would make it panic
//! ("duplicate token_id") and kill the VM.
//!
//! A stream's own calls (its charge, usage read or grant) come back to the
//! stream; when the stream is gone the SDK drops the answer, so a stream
//! that ends while its charge is out cancels that charge by its id (see
//! `QuotaStream::abandon`). Corrections (refunds, reported usage, cancels,
//! the approximate mode's syncs) are sent from root callbacks only, so their
//! answers come to the root, which retries them ([`Corrections`]): at once
//! when a stream queues one (it rings the [`doorbell`](crate::host::doorbell)),
//! then on the tick.

use crate::host::{self, doorbell, header_map, log, set_effective_context, HostClock, SharedData};
use crate::report::{bump, define, Reporter};
use proxy_wasm::types::{LogLevel, MapType};
use quota_core::clock::Clock;
use quota_core::config::{Config, RedisStore};
use quota_core::counter::Counter;
use quota_core::events;
use quota_core::exchange::LeaseTarget;
use quota_core::lease::{self, LeaseRecord};
use quota_core::redis::corrections::{Answered, Corrections, Dropped, MAX_UNSYNCED};
use quota_core::redis::sync::SyncTarget;
use quota_core::redis::{self, Answer, CallError, Command, Ids};
use quota_core::store::{compare_and_swap, CounterStore};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// Sends `command` to the store's front; the answer comes to the calling
/// context (the SDK's choice). Use [`Remote::call_for`] from a stream.
pub fn call(store: &RedisStore, command: &Command, load: bool) -> Result<u32, String> {
    let body = command.body(&store.script_sha1, load);
    let timeout = Duration::from_millis(store.timeout_ms);
    host::dispatch_call(&store.cluster, redis::request_headers(store), body.as_bytes(), timeout)
        .map_err(|e| format!("could not call cluster {}: {e}", store.cluster))
}

/// The status and body of a call that just came back (`None`: no answer).
pub fn response(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    // A call that failed or timed out arrives without headers.
    let status = (num_headers > 0)
        .then(|| header_map::get(MapType::HttpCallResponseHeaders, ":status"))
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
    let body = host::call_response_body(body_size).ok().flatten().unwrap_or_default();
    (status, body)
}

/// Reads the answer of a correction that just came back (a release's too).
pub fn answer(num_headers: usize, body_size: usize) -> Result<Answer, CallError> {
    let (status, body) = response(num_headers, body_size);
    redis::parse_correction(status, &body)
}

/// The store's own metrics: `quota.store.*`.
pub struct StoreMetrics {
    /// A call gave no usable answer (the fail policy applied, or a correction is retried).
    pub errors: Option<u32>,
    /// The script's record differed from the core's decision (see `redis.rs`).
    pub mismatches: Option<u32>,
    /// A correction given up after its attempts, pushed out of a full queue,
    /// or a sync delta with no room to wait.
    pub corrections_dropped: Option<u32>,
}

impl StoreMetrics {
    fn new(on: bool) -> StoreMetrics {
        let metric = |name: &str| if on { define(name) } else { None };
        StoreMetrics {
            errors: metric("quota.store.errors"),
            mismatches: metric("quota.store.mismatches"),
            corrections_dropped: metric(events::CORRECTIONS_DROPPED),
        }
    }
}

/// What a queued call is.
#[derive(Debug)]
enum Tag {
    /// A refund, a usage correction or a cancel.
    Correction,
    /// The approximate mode's sync of one counter.
    Sync(SyncTarget),
}

/// The calls to Redis of one worker, owned by the root context.
pub struct Remote {
    config: Rc<Config>,
    reporter: Rc<Reporter>,
    root_id: u32,
    pub metrics: StoreMetrics,
    ids: RefCell<Ids>,
    corrections: RefCell<Corrections<Tag>>,
    /// Approximate mode: units admitted here and not sent yet, by Redis key.
    unsynced: RefCell<HashMap<String, (SyncTarget, i64)>>,
    /// Approximate mode: the Redis keys whose sync is queued or out.
    syncing: RefCell<HashSet<String>>,
    /// Sync deltas dropped for want of room since the last report: counters, units.
    sync_drops: Cell<(u64, i64)>,
    last_sync_ms: Cell<i64>,
    /// Lease mode: counters whose next block was asked for, to send.
    renewals: RefCell<Vec<LeaseTarget>>,
    /// Lease mode: renewals out, by host token: the counter, when it left.
    renewing: RefCell<HashMap<u32, (LeaseTarget, i64)>>,
    /// Lease mode: counters this VM holds a share of, by key, to give back
    /// what stays unspent past a block's lifetime, each with when to look
    /// at it next (Unix ms: when its block may have run out of lifetime).
    held: RefCell<HashMap<String, (LeaseTarget, i64)>>,
    last_release_ms: Cell<i64>,
    /// Redis lost the script (NOSCRIPT): send it with the next call.
    reload: Cell<bool>,
    /// The queue streams ring to have the root send their corrections now.
    doorbell: Option<u32>,
    rung: Cell<bool>,
    warned_effective: Cell<bool>,
    /// Drops reported line by line this second (its start, Unix ms) and
    /// those past [`DROP_LINES_PER_S`], reported in a count.
    drop_lines: Cell<(i64, u32, u64)>,
}

/// Lease mode: renewals waiting to be sent, at most (one per counter).
const MAX_RENEWALS_QUEUED: usize = 10_000;

/// Lease mode: shares a VM keeps track of, to give their idle units back;
/// past this many, a share's units come back when its window ends.
const MAX_HELD: usize = 100_000;

/// Corrections reported one line each per second, at most; the rest of
/// that second's drops are counted in one line (a Redis outage can drop
/// one per request).
const DROP_LINES_PER_S: u32 = 10;

impl Remote {
    /// The calls of the VM whose root context is `root_id`; `seed` names the
    /// VM in every id it sends.
    pub fn new(config: Rc<Config>, reporter: Rc<Reporter>, root_id: u32, seed: u64) -> Remote {
        let metrics = StoreMetrics::new(config.observability.metrics && config.counters.redis.is_some());
        let ids = Ids::new(seed);
        let doorbell = if config.counters.redis.is_some() {
            let name = format!("quota.corrections.{}", ids.prefix());
            let queue = doorbell::register(&name);
            if queue.is_none() {
                log(LogLevel::Warn, "quota: could not register the corrections queue; corrections wait for the tick");
            }
            queue
        } else {
            None
        };
        Remote {
            config,
            reporter,
            root_id,
            metrics,
            ids: RefCell::new(ids),
            corrections: RefCell::new(Corrections::new()),
            unsynced: RefCell::new(HashMap::new()),
            syncing: RefCell::new(HashSet::new()),
            sync_drops: Cell::new((0, 0)),
            last_sync_ms: Cell::new(0),
            renewals: RefCell::new(Vec::new()),
            renewing: RefCell::new(HashMap::new()),
            held: RefCell::new(HashMap::new()),
            last_release_ms: Cell::new(0),
            reload: Cell::new(false),
            doorbell,
            rung: Cell::new(false),
            warned_effective: Cell::new(false),
            drop_lines: Cell::new((0, 0, 0)),
        }
    }

    /// A new id for a charge or a correction.
    pub fn next_id(&self) -> String {
        self.ids.borrow_mut().next_id()
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

    /// Sends a stream's call with the root context effective, so the
    /// stream's end never cancels it; the answer still comes to `stream`
    /// while it lives. `stream` is effective again afterwards.
    pub fn call_for(&self, stream: u32, store: &RedisStore, command: &Command, load: bool) -> Result<u32, String> {
        let as_root = set_effective_context(self.root_id);
        if !as_root && !self.warned_effective.replace(true) {
            log(
                LogLevel::Warn,
                "quota: the host would not make the root context effective; a stream's end may cancel its calls",
            );
        }
        let sent = call(store, command, load);
        if as_root && !set_effective_context(stream) {
            log(LogLevel::Error, "quota: could not make the stream effective again after a call to Redis");
        }
        sent
    }

    /// Queues a correction and rings for the root to send it now.
    pub fn push(&self, command: Command) {
        self.queue(command, Tag::Correction);
        self.ring();
    }

    /// Queues a refund or usage correction of `delta` units (see
    /// [`Command::adjust`]) under a new id.
    pub fn push_adjust(&self, key: String, window_start: i64, delta: i64, most: u64) {
        let id = self.next_id();
        self.push(Command::adjust(key, window_start, delta, most, &id));
    }

    fn queue(&self, command: Command, tag: Tag) {
        let now = HostClock.now_ms();
        let dropped = self.corrections.borrow_mut().push(command, tag, self.reload.get(), now);
        if let Some(d) = dropped {
            self.dropped(&d, now);
        }
    }

    fn ring(&self) {
        if let Some(queue) = self.doorbell.filter(|_| !self.rung.get()) {
            self.rung.set(doorbell::ring(queue));
        }
    }

    /// The root's tick: a bell the host never answered is rung again next
    /// time; what is due goes out.
    pub fn tick(&self) {
        self.rung.set(false);
        let now = HostClock.now_ms();
        self.report_unshown_drops(now);
        if let Some((_, lease)) = self.config.counters.lease() {
            // Idle shares are looked for a few times per block lifetime, not every tick.
            let every = i64::try_from(lease.ms / 4).unwrap_or(i64::MAX).clamp(1, 1000);
            if now >= self.last_release_ms.get().saturating_add(every) {
                self.last_release_ms.set(now);
                self.release_idle(now);
            }
        }
        self.flush();
    }

    /// The root answers the bell: sends what is due.
    pub fn rang(&self, queue: u32) -> bool {
        if self.doorbell != Some(queue) {
            return false;
        }
        doorbell::drain(queue);
        self.rung.set(false);
        self.flush();
        true
    }

    /// Lease mode: a request asked for the next block of `target`'s
    /// counter; the root sends the call now.
    pub fn renew(&self, target: LeaseTarget) {
        self.leased(target.clone());
        let mut renewals = self.renewals.borrow_mut();
        if renewals.len() < MAX_RENEWALS_QUEUED && !renewals.iter().any(|t| t.key == target.key) {
            renewals.push(target);
        }
        drop(renewals);
        self.ring();
    }

    /// Lease mode: this Envoy holds a share of `target`'s counter; the
    /// tick gives back what stays unspent past a block's lifetime.
    pub fn leased(&self, target: LeaseTarget) {
        let Some((_, lease)) = self.config.counters.lease() else { return };
        let next = HostClock.now_ms().saturating_add(i64::try_from(lease.ms).unwrap_or(i64::MAX));
        let mut held = self.held.borrow_mut();
        if held.len() < MAX_HELD || held.contains_key(&target.key) {
            held.insert(target.key.clone(), (target, next));
        }
    }

    /// Lease mode: sends the renewals asked for (each reports this Envoy's
    /// spending and tops its share up to one block). Not retried: a
    /// renewal that fails leaves the share as it was, and the next request
    /// that finds it low asks again.
    fn send_renewals(&self, store: &RedisStore, now_ms: i64) {
        let due: Vec<LeaseTarget> = self.renewals.borrow_mut().drain(..).collect();
        for target in due {
            let Some(limits) = target.limits(&self.config) else { continue };
            let share = self.share(&target.key, now_ms);
            let Some(command) =
                lease::command(&self.config, &target.key, limits, share.as_ref(), 0, 0, now_ms, target.alignment, None)
            else {
                continue;
            };
            match call(store, &command, self.reload.get()) {
                Ok(token) => {
                    self.renewing.borrow_mut().insert(token, (target, now_ms));
                }
                Err(why) => {
                    bump(self.metrics.errors, 1);
                    log(LogLevel::Warn, &format!("quota: could not renew the lease of {}: {why}", target.key));
                }
            }
        }
    }

    /// This Envoy's share of the counter at `key`, as shared data holds it.
    fn share(&self, key: &str, now_ms: i64) -> Option<LeaseRecord> {
        let counters = self.config.counters.table(&SharedData, now_ms);
        counters.get(key).ok().flatten().and_then(|(bytes, _)| LeaseRecord::decode(&bytes))
    }

    /// Lease mode: gives back the units held unspent past their block's
    /// lifetime (an idle caller on this Envoy), each release queued as a
    /// correction (retried, applied once); forgets the shares whose window
    /// ended or that hold nothing.
    fn release_idle(&self, now_ms: i64) {
        // Only shares whose block may have outlived its lifetime are read.
        let due: Vec<LeaseTarget> =
            self.held.borrow().values().filter(|(_, next)| *next <= now_ms).map(|(t, _)| t.clone()).collect();
        for target in due {
            let counters = self.config.counters.table(&SharedData, now_ms);
            let released = match lease::release(&self.config, &target.key, &counters, now_ms) {
                Ok(released) => released,
                Err(e) => {
                    log(LogLevel::Warn, &format!("quota: could not release the lease of {}: {e}", target.key));
                    continue;
                }
            };
            if let (Some((give, share)), Some(limits)) = (released, target.limits(&self.config)) {
                let id = self.next_id();
                let command = lease::command(
                    &self.config,
                    &target.key,
                    limits,
                    Some(&share),
                    0,
                    give,
                    now_ms,
                    target.alignment,
                    Some(&id),
                );
                if let Some(command) = command {
                    self.queue(command, Tag::Correction);
                }
            }
            let share = self.share(&target.key, now_ms);
            let idle = share.is_none_or(|s| {
                s.left() == 0 && (now_ms >= s.expires_ms || now_ms >= s.counter.window_end.saturating_mul(1000))
            });
            let mut held = self.held.borrow_mut();
            match share {
                _ if idle => {
                    held.remove(&target.key);
                }
                // Renewed meanwhile: look again when its new lifetime is over.
                Some(s) => {
                    if let Some(entry) = held.get_mut(&target.key) {
                        entry.1 = s.expires_ms.max(now_ms.saturating_add(1));
                    }
                }
                None => {}
            }
        }
    }

    /// Lease mode: Redis answered renewal `token` (false: not one).
    fn renewed(&self, token: u32, num_headers: usize, body_size: usize) -> bool {
        let Some((target, sent_ms)) = self.renewing.borrow_mut().remove(&token) else { return false };
        let (status, body) = response(num_headers, body_size);
        let answer = match redis::parse_lease(status, &body) {
            Ok(answer) => answer,
            Err(CallError::NoScript) => {
                self.reload.set(true);
                return true;
            }
            Err(e) => {
                bump(self.metrics.errors, 1);
                log(LogLevel::Warn, &format!("quota: the lease renewal of {} failed: {}", target.key, e.why()));
                return true;
            }
        };
        self.reload.set(false);
        let Some(limits) = target.limits(&self.config) else { return true };
        let now_ms = HostClock.now_ms();
        let counters = self.config.counters.table(&SharedData, now_ms);
        if let Err(e) =
            lease::merge(&self.config, &target.key, limits, target.alignment, &answer, sent_ms, &counters, now_ms)
        {
            log(LogLevel::Warn, &format!("quota: could not keep the units Redis granted for {}: {e}", target.key));
        }
        true
    }

    /// Approximate mode: `delta` units admitted (or given back) here, for the
    /// next sync. A delta of 0 (a refused request) still syncs the counter, so
    /// a caller refused here learns what the other Envoys did. While Redis is
    /// away, at most [`MAX_UNSYNCED`] counters wait; a new one past that is
    /// dropped and counted.
    pub fn note(&self, target: &SyncTarget, delta: i64) {
        let mut unsynced = self.unsynced.borrow_mut();
        if let Some(entry) = unsynced.get_mut(&target.redis_key) {
            entry.1 = entry.1.saturating_add(delta);
            return;
        }
        if unsynced.len() >= MAX_UNSYNCED {
            bump(self.metrics.corrections_dropped, 1);
            let (counters, units) = self.sync_drops.get();
            self.sync_drops.set((counters + 1, units.saturating_add(delta)));
            return;
        }
        unsynced.insert(target.redis_key.clone(), (target.clone(), delta));
    }

    /// Approximate mode: queues each counter's unsynced units, once per
    /// `sync_ms`, as one `add` with its own id; a counter whose last sync is
    /// still out (or waiting to be retried) keeps its units for the next.
    fn sync(&self, every_ms: u64, now_ms: i64) {
        if now_ms.saturating_sub(self.last_sync_ms.get()) < i64::try_from(every_ms).unwrap_or(i64::MAX) {
            return;
        }
        self.last_sync_ms.set(now_ms);
        self.report_sync_drops(now_ms);
        let pending: Vec<(SyncTarget, i64)> = self.unsynced.borrow_mut().drain().map(|(_, v)| v).collect();
        for (target, delta) in pending {
            if self.syncing.borrow().contains(&target.redis_key) {
                self.unsynced.borrow_mut().insert(target.redis_key.clone(), (target, delta));
                continue;
            }
            // Only one-limit cells sync (stacked cells need exact counters).
            let Some([limits]) = self.config.cell(target.tier, target.class).map(|c| c.limits()) else {
                continue;
            };
            let id = self.next_id();
            let now = now_ms.div_euclid(1000);
            let command = Command::add(target.redis_key.clone(), limits, delta, now, target.alignment, &id);
            self.syncing.borrow_mut().insert(target.redis_key.clone());
            self.queue(command, Tag::Sync(target));
        }
    }

    fn report_sync_drops(&self, now_ms: i64) {
        let (counters, units) = self.sync_drops.replace((0, 0));
        if counters > 0 {
            let record = events::syncs_dropped_record(counters, units, now_ms);
            log(LogLevel::Error, &format!("quota: sync deltas dropped: {record}"));
            self.reporter.store_event(record);
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

    /// Sends the corrections that are due (while under the in-flight
    /// bound), and the approximate mode's deltas when they are due. Called
    /// from root callbacks only: the tick, the doorbell, an answer.
    pub fn flush(&self) {
        let Some(store) = &self.config.counters.redis else { return };
        let now = HostClock.now_ms();
        if let Some(every_ms) = store.sync_ms {
            self.sync(every_ms, now);
        }
        if store.lease.is_some() {
            self.send_renewals(store, now);
        }
        loop {
            let Some(next) = self.corrections.borrow_mut().next_due(now) else { return };
            match call(store, &next.command, next.load || self.reload.get()) {
                Ok(token) => self.corrections.borrow_mut().sent(token, next),
                Err(why) => {
                    let outcome = self.corrections.borrow_mut().not_sent(next, why, now);
                    self.after(outcome, now);
                    // The cluster itself is missing: try again later.
                    return;
                }
            }
        }
    }

    /// Handles the answer to a call this queue made; false if `token` is not one.
    pub fn on_response(&self, token: u32, num_headers: usize, body_size: usize) -> bool {
        if self.renewed(token, num_headers, body_size) {
            return true;
        }
        if !self.corrections.borrow().owns(token) {
            return false;
        }
        let now = HostClock.now_ms();
        let outcome = self.corrections.borrow_mut().answered(token, answer(num_headers, body_size), now);
        self.after(outcome, now);
        self.flush();
        true
    }

    fn after(&self, outcome: Answered<Tag>, now_ms: i64) {
        match outcome {
            Answered::NotOurs => {}
            Answered::Done { pending, answer } => {
                self.reload.set(false);
                if let Tag::Sync(target) = &pending.tag {
                    self.syncing.borrow_mut().remove(&target.redis_key);
                    self.synced(target, answer.after);
                }
            }
            Answered::Reload => self.reload.set(true),
            Answered::Retry { attempts, after_ms, why } => {
                bump(self.metrics.errors, 1);
                log(
                    LogLevel::Warn,
                    &format!("quota: correction failed (attempt {attempts}), will retry in {after_ms} ms: {why}"),
                );
            }
            Answered::Dropped(d) => {
                bump(self.metrics.errors, 1);
                self.dropped(&d, now_ms);
            }
        }
    }

    /// A correction given up: counted, logged, and reported as an event
    /// that says what it would have done.
    fn dropped(&self, d: &Dropped<Tag>, now_ms: i64) {
        if let Tag::Sync(target) = &d.pending.tag {
            self.syncing.borrow_mut().remove(&target.redis_key);
        }
        bump(self.metrics.corrections_dropped, 1);
        self.report_unshown_drops(now_ms);
        let (second, shown, unshown) = self.drop_lines.get();
        if shown >= DROP_LINES_PER_S {
            self.drop_lines.set((second, shown, unshown + 1));
            return;
        }
        self.drop_lines.set((second, shown + 1, unshown));
        let record = events::correction_dropped_record(&self.config, &d.pending.command, &d.reason.to_string(), now_ms);
        log(LogLevel::Error, &format!("quota: correction dropped: {record}"));
        self.reporter.store_event(record);
    }

    /// Once the second of the last drops is over: one line for those not
    /// reported one by one, and a fresh allowance.
    fn report_unshown_drops(&self, now_ms: i64) {
        let (second, _, unshown) = self.drop_lines.get();
        if now_ms < second.saturating_add(1000) {
            return;
        }
        self.drop_lines.set((now_ms, 0, 0));
        if unshown > 0 {
            let record = events::corrections_dropped_record(unshown, second, now_ms);
            log(LogLevel::Error, &format!("quota: corrections dropped: {record}"));
            self.reporter.store_event(record);
        }
    }
}
