//! The root context: loads and checks the configuration, then hands each
//! HTTP stream the checked config and the reporter; flushes analytics on its tick.

use crate::header_map;
use crate::host::log;
use crate::report::Reporter;
use crate::stream::QuotaStream;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};
use quota_core::config::Config;
use std::rc::Rc;
use std::time::Duration;

#[derive(Default)]
pub struct QuotaRoot {
    state: Option<(Rc<Config>, Rc<Reporter>)>,
}

impl Context for QuotaRoot {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, _body: usize, _trailers: usize) {
        // A call that failed or timed out arrives without headers.
        let status = (headers > 0).then(|| header_map::get(MapType::HttpCallResponseHeaders, ":status")).flatten();
        let ok = status.is_some_and(|s| s.starts_with(b"2"));
        if let Some((_, reporter)) = &self.state {
            reporter.callout_done(ok);
        }
    }
}

impl RootContext for QuotaRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size).ok().flatten().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                let summary = format!(
                    "quota: configured {} classes x {} tiers{}",
                    config.classes.len(),
                    config.tiers.len(),
                    if config.any_rule_reads_body() { ", body rules on" } else { "" }
                );
                log(LogLevel::Info, &summary);
                if let Some(analytics) = &config.observability.analytics {
                    let _ = hostcalls::set_tick_period(Duration::from_millis(analytics.flush_ms));
                }
                // A reload keeps the counters: they live in shared data, not here.
                let config = Rc::new(config);
                let reporter = Rc::new(Reporter::new(config.clone()));
                self.state = Some((config, reporter));
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
        if let Some((_, reporter)) = &self.state {
            reporter.flush();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(QuotaStream::new(self.state.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
