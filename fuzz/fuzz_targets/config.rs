//! Arbitrary bytes as the filter's configuration: `Config::from_json` answers
//! Ok or Err, never panics; a config that loads then serves a few requests.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use quota_core::config::Config;
use quota_core_fuzz::{arbitrary_request, drive, FuzzStore, StoreMode};

fuzz_target!(|data: &[u8]| {
    match Config::from_json(data) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            // The requests come from the config's own bytes: the same input
            // always sends the same requests.
            let mut u = Unstructured::new(data);
            let store = FuzzStore::new(StoreMode::Reliable, None);
            for _ in 0..3 {
                let Ok((head, body, plan, _)) = arbitrary_request(&config, &mut u) else { break };
                drive(&config, &head, body, &plan, &store);
            }
        }
    }
});
