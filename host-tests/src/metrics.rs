//! Metrics the guest defines (`proxy_define_metric`) and updates. As in Envoy, a
//! metric is identified by its name in the host's stats scope, so every VM (worker)
//! that defines the same name updates the same stat; ids are per VM.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::status::{MetricType, Status};
use crate::sync::lock;

/// The state of one metric, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricSnapshot {
    pub name: String,
    pub kind: MetricType,
    /// Counter or gauge value (a gauge may go below zero).
    pub value: i64,
    /// Every value recorded into a histogram.
    pub samples: Vec<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct MetricStore {
    metrics: Mutex<BTreeMap<String, MetricSnapshot>>,
}

impl MetricStore {
    pub(crate) fn define(&self, kind: MetricType, name: &str) {
        lock(&self.metrics).entry(name.to_string()).or_insert_with(|| MetricSnapshot {
            name: name.to_string(),
            kind,
            value: 0,
            samples: Vec::new(),
        });
    }

    /// Envoy: counters only go up (`offset <= 0` is `BadArgument`); gauges add or
    /// subtract; histograms cannot be incremented.
    pub(crate) fn increment(&self, name: &str, offset: i64) -> Status {
        let mut metrics = lock(&self.metrics);
        let Some(metric) = metrics.get_mut(name) else {
            return Status::NotFound;
        };
        match metric.kind {
            MetricType::Counter if offset > 0 => {
                metric.value = metric.value.saturating_add(offset);
                Status::Ok
            }
            MetricType::Gauge => {
                metric.value = metric.value.saturating_add(offset);
                Status::Ok
            }
            _ => Status::BadArgument,
        }
    }

    /// Envoy: a counter adds the value, a gauge is set to it, a histogram records it.
    pub(crate) fn record(&self, name: &str, value: u64) -> Status {
        let mut metrics = lock(&self.metrics);
        let Some(metric) = metrics.get_mut(name) else {
            return Status::NotFound;
        };
        let as_i64 = i64::try_from(value).unwrap_or(i64::MAX);
        match metric.kind {
            MetricType::Counter => metric.value = metric.value.saturating_add(as_i64),
            MetricType::Gauge => metric.value = as_i64,
            MetricType::Histogram => metric.samples.push(value),
        }
        Status::Ok
    }

    pub(crate) fn get(&self, name: &str) -> Result<u64, Status> {
        let metrics = lock(&self.metrics);
        let metric = metrics.get(name).ok_or(Status::NotFound)?;
        match metric.kind {
            MetricType::Histogram => Err(Status::BadArgument),
            _ => Ok(u64::try_from(metric.value).unwrap_or(0)),
        }
    }

    pub(crate) fn snapshot(&self, name: &str) -> Option<MetricSnapshot> {
        lock(&self.metrics).get(name).cloned()
    }

    pub(crate) fn all(&self) -> Vec<MetricSnapshot> {
        lock(&self.metrics).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_only_go_up_and_gauges_go_both_ways() {
        let store = MetricStore::default();
        store.define(MetricType::Counter, "c");
        store.define(MetricType::Gauge, "g");
        assert_eq!(store.increment("c", 2), Status::Ok);
        assert_eq!(store.increment("c", -1), Status::BadArgument);
        assert_eq!(store.increment("g", -3), Status::Ok);
        assert_eq!(store.record("g", 7), Status::Ok);
        assert_eq!(store.get("c"), Ok(2));
        assert_eq!(store.get("g"), Ok(7));
        assert_eq!(store.increment("missing", 1), Status::NotFound);
    }

    #[test]
    fn defining_a_name_twice_keeps_its_value() {
        let store = MetricStore::default();
        store.define(MetricType::Counter, "c");
        store.increment("c", 5);
        store.define(MetricType::Counter, "c");
        assert_eq!(store.get("c"), Ok(5));
    }

    #[test]
    fn histograms_keep_samples() {
        let store = MetricStore::default();
        store.define(MetricType::Histogram, "h");
        store.record("h", 3);
        store.record("h", 9);
        assert_eq!(store.get("h"), Err(Status::BadArgument));
        assert_eq!(store.snapshot("h").map(|m| m.samples), Some(vec![3, 9]));
    }
}
