//! Process-wide key/value store with compare-and-swap, with exactly the semantics
//! of proxy-wasm-cpp-host's `SharedData` (`src/shared_data.cc`), which Envoy uses:
//!
//! - one map per `vm_id`, all guarded by one mutex;
//! - `get` of a missing key is `NotFound`;
//! - `set(key, value, cas)`: if the key exists and `cas != 0 && cas != current`,
//!   `CasMismatch`; otherwise the value is written with a fresh cas. A **missing**
//!   key is always written, whatever `cas` says;
//! - cas values come from one counter starting at 1 that skips 0 when it wraps.
//!
//! In Envoy this is process state shared by all worker threads. Here a
//! [`Host`](crate::Host) owns one, so each test has its own "process" and tests run
//! in parallel. Failures can be injected for the guest's calls (the test's own
//! reads and writes are never affected) to drive a filter's retry and give-up
//! paths, and a hook can run "another worker" between a guest's read and write.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use crate::status::Status;
use crate::sync::lock;

/// One write a guest attempts, as shown to a [`SharedData::before_next_set`] hook.
#[derive(Clone, Debug)]
pub struct SetAttempt {
    pub vm_id: String,
    pub key: String,
    pub value: Vec<u8>,
    pub cas: u32,
}

/// Counters of what guests did to the store; handy to prove a CAS loop retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedDataStats {
    pub gets: u64,
    pub sets: u64,
    pub writes: u64,
    pub cas_mismatches: u64,
    pub injected_failures: u64,
}

type SetHook = Box<dyn FnOnce(&SetAttempt) + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

struct Fault {
    op: Op,
    key: Option<String>,
    status: Status,
    remaining: u32,
}

struct Inner {
    maps: HashMap<String, HashMap<String, (Vec<u8>, u32)>>,
    next_cas: u32,
    faults: VecDeque<Fault>,
    stats: SharedDataStats,
}

impl Inner {
    fn next_cas(&mut self) -> u32 {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        cas
    }

    fn take_fault(&mut self, op: Op, key: &str) -> Option<Status> {
        let index = self
            .faults
            .iter()
            .position(|f| f.op == op && f.remaining > 0 && f.key.as_deref().is_none_or(|k| k == key))?;
        let fault = self.faults.get_mut(index)?;
        fault.remaining -= 1;
        let status = fault.status;
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        self.stats.injected_failures += 1;
        Some(status)
    }

    fn write(&mut self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Result<u32, Status> {
        if let Some((_, current)) = self.maps.get(vm_id).and_then(|m| m.get(key)) {
            if cas != 0 && cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        let fresh = self.next_cas();
        self.maps.entry(vm_id.to_string()).or_default().insert(key.to_string(), (value.to_vec(), fresh));
        Ok(fresh)
    }
}

/// The store. Share it between VMs through the [`Host`](crate::Host) that owns it.
pub struct SharedData {
    inner: Mutex<Inner>,
    set_hooks: Mutex<VecDeque<SetHook>>,
}

impl Default for SharedData {
    fn default() -> Self {
        SharedData::new()
    }
}

impl fmt::Debug for SharedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("SharedData")
            .field("vm_ids", &inner.maps.keys().collect::<Vec<_>>())
            .field("next_cas", &inner.next_cas)
            .field("stats", &inner.stats)
            .finish()
    }
}

impl SharedData {
    pub fn new() -> SharedData {
        SharedData {
            inner: Mutex::new(Inner {
                maps: HashMap::new(),
                next_cas: 1,
                faults: VecDeque::new(),
                stats: SharedDataStats::default(),
            }),
            set_hooks: Mutex::new(VecDeque::new()),
        }
    }

    /// Sets the value the cas counter hands out next (0 is taken as 1), to test
    /// wraparound.
    pub fn set_next_cas(&self, next: u32) {
        lock(&self.inner).next_cas = next.max(1);
    }

    /// The value and cas of `key` in `vm_id`'s map, for assertions.
    pub fn get(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        lock(&self.inner).maps.get(vm_id).and_then(|m| m.get(key)).cloned()
    }

    /// Writes as a guest would (same cas rules), without faults or hooks. Returns the
    /// new cas.
    pub fn set(&self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Result<u32, Status> {
        lock(&self.inner).write(vm_id, key, value, cas)
    }

    /// Every key and value of `vm_id`'s map, sorted by key.
    pub fn entries(&self, vm_id: &str) -> BTreeMap<String, Vec<u8>> {
        lock(&self.inner)
            .maps
            .get(vm_id)
            .map(|m| m.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> SharedDataStats {
        lock(&self.inner).stats
    }

    /// The next `times` guest `set` calls (on `key`, or on any key when `None`)
    /// return `status` without writing. `CasMismatch` drives a filter's retry loop;
    /// the Rust SDK panics on any other status, which kills the VM as in Envoy.
    pub fn fail_next_sets(&self, key: Option<&str>, times: u32, status: Status) {
        self.push_fault(Op::Set, key, times, status);
    }

    /// The next `times` guest `get` calls return `status` (`NotFound` makes the key
    /// look missing; the Rust SDK panics on anything else but `Ok`).
    pub fn fail_next_gets(&self, key: Option<&str>, times: u32, status: Status) {
        self.push_fault(Op::Get, key, times, status);
    }

    /// Drops any injected failures that have not fired yet.
    pub fn clear_faults(&self) {
        lock(&self.inner).faults.clear();
    }

    /// Runs `hook` once, at the start of the next guest `set`, before the store is
    /// locked: the place where another worker's whole request can slip in between
    /// this guest's read and its write. The hook may drive other VMs or call
    /// [`SharedData::set`]; it must not drive the VM that is calling `set`.
    pub fn before_next_set(&self, hook: impl FnOnce(&SetAttempt) + Send + 'static) {
        lock(&self.set_hooks).push_back(Box::new(hook));
    }

    fn push_fault(&self, op: Op, key: Option<&str>, times: u32, status: Status) {
        if times == 0 {
            return;
        }
        lock(&self.inner).faults.push_back(Fault { op, key: key.map(str::to_string), status, remaining: times });
    }

    /// `proxy_get_shared_data` on behalf of a guest.
    pub(crate) fn guest_get(&self, vm_id: &str, key: &str) -> Result<(Vec<u8>, u32), Status> {
        let mut inner = lock(&self.inner);
        inner.stats.gets += 1;
        if let Some(status) = inner.take_fault(Op::Get, key) {
            return Err(status);
        }
        inner.maps.get(vm_id).and_then(|m| m.get(key)).cloned().ok_or(Status::NotFound)
    }

    /// `proxy_set_shared_data` on behalf of a guest.
    pub(crate) fn guest_set(&self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Status {
        let hook = lock(&self.set_hooks).pop_front();
        if let Some(hook) = hook {
            hook(&SetAttempt { vm_id: vm_id.to_string(), key: key.to_string(), value: value.to_vec(), cas });
        }
        let mut inner = lock(&self.inner);
        inner.stats.sets += 1;
        if let Some(status) = inner.take_fault(Op::Set, key) {
            if status == Status::CasMismatch {
                inner.stats.cas_mismatches += 1;
            }
            return status;
        }
        match inner.write(vm_id, key, value, cas) {
            Ok(_) => {
                inner.stats.writes += 1;
                Status::Ok
            }
            Err(status) => {
                if status == Status::CasMismatch {
                    inner.stats.cas_mismatches += 1;
                }
                status
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn get_of_a_missing_key_is_not_found() {
        let data = SharedData::new();
        assert_eq!(data.guest_get("", "k"), Err(Status::NotFound));
        assert_eq!(data.guest_get("other-vm", "k"), Err(Status::NotFound));
    }

    #[test]
    fn writing_a_missing_key_ignores_the_cas() {
        let data = SharedData::new();
        assert_eq!(data.guest_set("", "k", b"v", 12345), Status::Ok);
        assert_eq!(data.guest_get("", "k"), Ok((b"v".to_vec(), 1)));
    }

    #[test]
    fn cas_counter_starts_at_one_and_is_shared_by_all_keys_and_vm_ids() {
        let data = SharedData::new();
        assert_eq!(data.guest_set("", "a", b"1", 0), Status::Ok);
        assert_eq!(data.guest_set("", "b", b"1", 0), Status::Ok);
        assert_eq!(data.guest_set("other", "a", b"1", 0), Status::Ok);
        assert_eq!(data.guest_get("", "a").unwrap().1, 1);
        assert_eq!(data.guest_get("", "b").unwrap().1, 2);
        assert_eq!(data.guest_get("other", "a").unwrap().1, 3);
    }

    #[test]
    fn stale_cas_is_a_mismatch_and_leaves_the_value() {
        let data = SharedData::new();
        data.guest_set("", "k", b"first", 0);
        let (_, cas) = data.guest_get("", "k").unwrap();
        assert_eq!(data.guest_set("", "k", b"second", cas), Status::Ok);
        assert_eq!(data.guest_set("", "k", b"third", cas), Status::CasMismatch);
        assert_eq!(data.guest_get("", "k").unwrap().0, b"second");
        assert_eq!(data.stats().cas_mismatches, 1);
    }

    #[test]
    fn cas_zero_overwrites_unconditionally() {
        let data = SharedData::new();
        data.guest_set("", "k", b"first", 0);
        assert_eq!(data.guest_set("", "k", b"second", 0), Status::Ok);
        assert_eq!(data.guest_get("", "k"), Ok((b"second".to_vec(), 2)));
    }

    #[test]
    fn vm_ids_have_separate_maps() {
        let data = SharedData::new();
        data.guest_set("a", "k", b"1", 0);
        assert_eq!(data.guest_get("b", "k"), Err(Status::NotFound));
    }

    #[test]
    fn cas_counter_skips_zero_on_wraparound() {
        let data = SharedData::new();
        data.set_next_cas(u32::MAX);
        data.guest_set("", "a", b"1", 0);
        data.guest_set("", "b", b"1", 0);
        assert_eq!(data.guest_get("", "a").unwrap().1, u32::MAX);
        assert_eq!(data.guest_get("", "b").unwrap().1, 1);
    }

    #[test]
    fn two_first_writes_of_a_missing_key_both_succeed() {
        let data = SharedData::new();
        assert_eq!(data.guest_get("", "k"), Err(Status::NotFound));
        assert_eq!(data.guest_get("", "k"), Err(Status::NotFound));
        assert_eq!(data.guest_set("", "k", b"from worker 1", 0), Status::Ok);
        assert_eq!(data.guest_set("", "k", b"from worker 2", 0), Status::Ok);
        assert_eq!(data.get("", "k").unwrap().0, b"from worker 2");
    }

    #[test]
    fn injected_set_failures_fire_the_given_number_of_times_on_the_given_key() {
        let data = SharedData::new();
        data.fail_next_sets(Some("k"), 2, Status::CasMismatch);
        assert_eq!(data.guest_set("", "other", b"1", 0), Status::Ok);
        assert_eq!(data.guest_set("", "k", b"1", 0), Status::CasMismatch);
        assert_eq!(data.guest_set("", "k", b"1", 0), Status::CasMismatch);
        assert_eq!(data.guest_set("", "k", b"1", 0), Status::Ok);
        let stats = data.stats();
        assert_eq!((stats.sets, stats.writes, stats.injected_failures), (4, 2, 2));
    }

    #[test]
    fn injected_get_failures_do_not_touch_the_tests_own_reads() {
        let data = SharedData::new();
        data.set("", "k", b"v", 0).unwrap();
        data.fail_next_gets(None, 1, Status::NotFound);
        assert_eq!(data.get("", "k").unwrap().0, b"v");
        assert_eq!(data.guest_get("", "k"), Err(Status::NotFound));
        assert_eq!(data.guest_get("", "k").unwrap().0, b"v");
    }

    #[test]
    fn a_write_slipped_in_before_a_set_makes_that_set_a_mismatch() {
        let data = Arc::new(SharedData::new());
        data.guest_set("", "k", b"1", 0);
        let (_, cas) = data.guest_get("", "k").unwrap();
        let other = Arc::clone(&data);
        data.before_next_set(move |attempt| {
            assert_eq!(attempt.key, "k");
            other.set("", "k", b"from another worker", 0).unwrap();
        });
        assert_eq!(data.guest_set("", "k", b"2", cas), Status::CasMismatch);
        assert_eq!(data.get("", "k").unwrap().0, b"from another worker");
    }

    #[test]
    fn concurrent_cas_increments_lose_no_update() {
        let data = Arc::new(SharedData::new());
        // Seeded: two first writes of a missing key both succeed (Envoy's rule), so an
        // unseeded counter can lose its first increment.
        data.set("", "n", b"0", 0).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let data = Arc::clone(&data);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (value, cas) = data.guest_get("", "n").unwrap();
                            let value: u64 = String::from_utf8(value).unwrap().parse().unwrap();
                            let next = (value + 1).to_string();
                            if data.guest_set("", "n", next.as_bytes(), cas) == Status::Ok {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(data.get("", "n").unwrap().0, b"2000");
    }
}
