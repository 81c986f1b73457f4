//! The root context: loads and checks the configuration, then hands each
//! HTTP stream the checked config and the reporter; on its tick, adds the
//! stats counted in the VM to Envoy's and flushes analytics; owns the calls
//! to Redis (see `remote.rs`).

use crate::host::{self, header_map, log, HostClock, SharedData};
use crate::remote::Remote;
use crate::report::{self, Reporter};
use crate::shared::Shared;
use crate::stream::QuotaStream;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MapType};
use quota_core::clock::Clock;
use quota_core::config::Config;
use quota_core::table::{shared_seed, Seed};
use quota_core::usage_limit::UsageLimiter;
use std::cell::RefCell;
use std::rc::Rc;

pub struct QuotaRoot {
    /// This root context's id: Redis calls are made with it effective.
    id: u32,
    state: Option<Shared>,
}

impl QuotaRoot {
    pub fn new(id: u32) -> QuotaRoot {
        QuotaRoot { id, state: None }
    }
}

/// How often the root looks for corrections due for another attempt (a
/// new one is sent at once).
const REDIS_FLUSH_MS: u64 = 50;

/// How often the stats counted in the VM reach Envoy's counters, at most:
/// the delay a reader of Envoy's stats sees (README, Stats).
pub const METRICS_FLUSH_MS: u64 = 100;

/// 64 random bits (WASI's random_get, through std's hasher keys), mixed with
/// the time and the root's id: what names this VM in the ids it sends Redis.
fn vm_seed(root_id: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(HostClock.now_ms());
    h.write_u32(root_id);
    h.finish()
}

impl Context for QuotaRoot {
    fn on_done(&mut self) -> bool {
        // The VM goes: what it counted since the last tick goes to Envoy first.
        report::flush_counts();
        true
    }

    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _trailers: usize) {
        let Some(shared) = &self.state else { return };
        if shared.remote.on_response(token, headers, body) {
            return;
        }
        // An analytics call. One that failed or timed out arrives without headers.
        let status = (headers > 0).then(|| header_map::get(MapType::HttpCallResponseHeaders, ":status")).flatten();
        shared.reporter.callout_done(status.is_some_and(|s| s.starts_with(b"2")));
    }
}

impl RootContext for QuotaRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match host::plugin_configuration(size) {
            Ok(bytes) => bytes,
            Err(e) => {
                log(LogLevel::Error, &format!("quota: cannot read the configuration: {e}"));
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(mut config) => {
                // Every VM of the process places counters with the same secret.
                let fresh = Seed(vm_seed(self.id), vm_seed(self.id.wrapping_add(1)) ^ 0x5eed);
                match shared_seed(&SharedData, fresh) {
                    Ok(seed) => config.counters.seed = seed,
                    Err(e) => {
                        log(LogLevel::Error, &format!("quota: cannot read the counter table's seed: {e:?}"));
                        return false;
                    }
                }
                let summary = format!(
                    "quota: configured {} classes x {} tiers, counters in {}{}",
                    config.classes.len(),
                    config.tiers.len(),
                    match &config.counters.redis {
                        None => "shared data",
                        Some(r) if r.sync_ms.is_some() => "shared data, synced to Redis",
                        Some(r) if r.lease.is_some() => "Redis, spent from leased blocks",
                        Some(_) => "Redis",
                    },
                    if config.any_rule_reads_body() { ", body rules on" } else { "" }
                );
                log(LogLevel::Info, &summary);
                let analytics = config.observability.analytics.as_ref().map(|a| a.flush_ms);
                let redis =
                    config.counters.redis.as_ref().map(|r| r.sync_ms.map_or(REDIS_FLUSH_MS, |s| s.min(REDIS_FLUSH_MS)));
                let metrics = config.observability.metrics.then_some(METRICS_FLUSH_MS);
                if let Some(ms) = analytics.into_iter().chain(redis).chain(metrics).min() {
                    if let Err(e) = host::set_tick(ms) {
                        log(LogLevel::Warn, &format!("quota: cannot set the tick: {e}"));
                    }
                }
                // A reload keeps the counters: they live in shared data (or Redis), not here.
                let now_ms = HostClock.now_ms();
                let usage_reads = Rc::new(RefCell::new(UsageLimiter::new(&config.usage_reads, now_ms)));
                let config = Rc::new(config);
                let reporter = Rc::new(Reporter::new(config.clone(), now_ms));
                let remote = Rc::new(Remote::new(config.clone(), reporter.clone(), self.id, vm_seed(self.id)));
                self.state = Some(Shared { config, reporter, remote, usage_reads });
                true
            }
            Err(e) => {
                // Envoy refuses the filter; this line says why, with the JSON path.
                log(LogLevel::Error, &format!("quota: invalid configuration: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        report::flush_counts();
        if let Some(shared) = &self.state {
            shared.reporter.flush();
            shared.remote.tick();
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(shared) = &self.state {
            shared.remote.rang(queue_id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(QuotaStream::new(self.state.clone(), context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
