//! A valid config (the demo, the seeds example, or one with every feature
//! on) with a few fuzz-chosen mutations, so validation is tested past the
//! JSON syntax; a mutated config that still loads then serves requests, so
//! nothing downstream trusts more than validation checks.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use quota_core::config::Config;
use quota_core_fuzz::{arbitrary_request, drive, mutate, FuzzStore, Pool, BASE_CONFIGS};
use serde_json::Value;
use std::sync::OnceLock;

fn bases() -> &'static [(Value, Pool)] {
    static BASES: OnceLock<Vec<(Value, Pool)>> = OnceLock::new();
    BASES.get_or_init(|| {
        BASE_CONFIGS
            .iter()
            .map(|b| {
                let doc: Value = serde_json::from_slice(b).expect("base configs are JSON");
                let pool = Pool::of(&doc);
                (doc, pool)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(which) = u.choose_index(BASE_CONFIGS.len()) else { return };
    let (base, pool) = &bases()[which];
    let mut doc = base.clone();
    // Out of data part-way still leaves a mutated document worth loading.
    let _ = mutate(&mut doc, pool, &mut u);
    let text = doc.to_string();
    match Config::from_json(text.as_bytes()) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            let mut store = None;
            for _ in 0..3 {
                let Ok((head, body, plan, mode)) = arbitrary_request(&config, &mut u) else { break };
                let store = store.get_or_insert_with(|| FuzzStore::new(mode, None));
                drive(&config, &head, body, &plan, store);
                if u.is_empty() {
                    break;
                }
            }
        }
    }
});
