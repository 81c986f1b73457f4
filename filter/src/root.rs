//! The root context: loads and checks the configuration, then hands each
//! HTTP stream the checked config.

use crate::host::log;
use crate::stream::QuotaStream;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use quota_core::config::Config;
use std::rc::Rc;

#[derive(Default)]
pub struct QuotaRoot {
    config: Option<Rc<Config>>,
}

impl Context for QuotaRoot {}

impl RootContext for QuotaRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                let summary = format!(
                    "quota: configured {} classes x {} tiers{}",
                    config.classes.len(),
                    config.tiers.len(),
                    if config.any_rule_reads_body() {
                        ", body rules on"
                    } else {
                        ""
                    }
                );
                log(LogLevel::Info, &summary);
                // A reload keeps the counters: they live in shared data, not here.
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                // Envoy refuses the filter; this line says why, with the JSON path.
                log(
                    LogLevel::Error,
                    &format!("quota: invalid configuration: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(QuotaStream::new(self.config.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
