//! A bounded table of counters over a store that cannot forget a key.
//!
//! Envoy's shared data never deletes a key (an empty value keeps the key and
//! its memory), so one key per counter would grow with every caller ever
//! seen. The table keeps the set of keys fixed instead: each counter key maps
//! (by a stable hash) to one of `buckets` bucket keys, and a bucket's value is
//! a compact list of entries, each a counter key and its record. Rewriting a
//! bucket drops the entries that hold nothing any more
//! ([`crate::decide::reclaimable`]), so their room is reused; a new counter
//! that finds every entry of its bucket live is refused with
//! [`StoreError::Full`], never by evicting or resetting a live counter.
//!
//! Reads and writes cost what they did with one key per counter: one store
//! read per `get`, one store write per `set` (the bucket read by `get` is kept
//! for the `set` that follows it). The version handed out is the bucket's, so
//! a write to another counter of the same bucket makes a compare-and-swap
//! retry, as a write to the same counter would.
//!
//! Bucket keys are `#` and the bucket's number: no counter key starts with
//! `#` (class names are `a-z`, `0-9`, `_` and `-`), so keys of the earlier
//! one-key-per-counter layout are never read as buckets.

use crate::counter::MAX_RECORD_BYTES;
use crate::decide::reclaimable;
use crate::lease::{counter_of, LeaseRecord, MAX_LEASE_BYTES};
use crate::store::{Cas, CounterStore, Expect, StoreError};
use std::cell::RefCell;

/// Counters a bucket holds at most.
pub const SLOTS: u32 = 32;
/// What a bucket's entries may take, counting each record at its longest
/// ([`entry_cost`]): 32 counters whose keys are up to 67 bytes long. One
/// counter with a longer key still gets a bucket of its own.
pub const BUCKET_BYTES: usize = SLOTS as usize * 128;
/// The most bytes a bucket's value takes when no single counter's key is
/// longer than a bucket's bytes: the format byte, the bucket count (a varint
/// of at most 4 bytes up to [`crate::config::MAX_MAX_COUNTERS`] / 32), and
/// [`BUCKET_BYTES`] of entries.
pub const MAX_VALUE_BYTES: usize = 1 + 4 + BUCKET_BYTES;
/// Key lengths up to 2^21 - 1 as a varint, and the record's length byte.
const FRAMING: usize = 4;
const LONGEST_KEY: usize = (1 << 21) - 1;
/// The bucket value's format: its first byte.
const FORMAT: u8 = 1;

/// The bytes an entry with a `key_len`-byte key may take, at most.
pub fn entry_cost(key_len: usize) -> usize {
    key_len.saturating_add(FRAMING + MAX_RECORD_BYTES)
}

/// The most bytes the entry of `key_len` bytes holding `record` may take:
/// a lease record (the lease mode's, see `lease.rs`) may grow longer than a
/// counter record.
fn entry_cost_of(key_len: usize, record: &[u8]) -> usize {
    if LeaseRecord::decode(record).is_some() {
        key_len.saturating_add(FRAMING + MAX_LEASE_BYTES)
    } else {
        entry_cost(key_len)
    }
}

/// How the table is laid out: a number of buckets of [`SLOTS`] counters,
/// and the secret that places counters in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    buckets: u32,
    seed: Seed,
}

/// The key of the hash that places counters in buckets. The filter draws
/// one per Envoy process and keeps it in shared data beside the buckets
/// ([`SEED_KEY`]), so every worker and every reload places a counter in the
/// same bucket, while a caller who can choose many ids (an anonymous tier
/// keyed by address) cannot work out which of them share a bucket with
/// someone else's counter and fill it first. Tools and tests use
/// [`Seed::ZERO`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seed(pub u64, pub u64);

impl Seed {
    pub const ZERO: Seed = Seed(0, 0);

    /// The seed as stored under [`SEED_KEY`]: 16 bytes, little-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.0.to_le_bytes());
        out[8..].copy_from_slice(&self.1.to_le_bytes());
        out
    }

    /// A stored seed, or `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Seed> {
        let (a, b) = bytes.split_at_checked(8)?;
        Some(Seed(u64::from_le_bytes(a.try_into().ok()?), u64::from_le_bytes(b.try_into().ok()?)))
    }
}

/// Where the filter keeps the process's [`Seed`]: not a bucket key (no `#`)
/// and not a counter key (no `:`).
pub const SEED_KEY: &str = "@table-seed";

impl Layout {
    /// Room for `max_counters` (rounded up to whole buckets), placed by
    /// [`Seed::ZERO`].
    pub fn new(max_counters: u32) -> Layout {
        Layout::seeded(max_counters, Seed::ZERO)
    }

    /// Room for `max_counters`, placed by `seed`.
    pub fn seeded(max_counters: u32, seed: Seed) -> Layout {
        Layout { buckets: max_counters.div_ceil(SLOTS).max(1), seed }
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Counters the table holds at most.
    pub fn capacity(&self) -> u64 {
        u64::from(self.buckets) * u64::from(SLOTS)
    }

    /// The bucket `key` lives in: the top bits of its keyed hash, scaled to
    /// the bucket count (no modulo bias, every bit of the key counts).
    pub fn bucket_of(&self, key: &[u8]) -> u32 {
        ((u128::from(keyed_hash(self.seed, key)) * u128::from(self.buckets)) >> 64) as u32
    }

    /// The store key of bucket `index`.
    pub fn bucket_key(index: u32) -> String {
        let mut key = String::with_capacity(11);
        key.push('#');
        crate::decimal::push_u64(&mut key, u64::from(index));
        key
    }
}

/// The process's seed from `store`: the one stored under [`SEED_KEY`], or
/// `fresh` (random bits from the caller) stored there if none is yet. Every
/// VM that asks gets the same seed, whichever wrote it first.
pub fn shared_seed<S: CounterStore + ?Sized>(store: &S, fresh: Seed) -> Result<Seed, StoreError> {
    for _ in 0..8 {
        let expect = match store.get(SEED_KEY)? {
            Some((bytes, cas)) => match Seed::decode(&bytes) {
                Some(seed) => return Ok(seed),
                None => Expect::Version(cas),
            },
            None => Expect::Absent,
        };
        match store.set(SEED_KEY, &fresh.encode(), expect) {
            Ok(()) => return Ok(fresh),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable("the table's seed kept changing while it was read".into()))
}

/// SipHash-2-4 keyed by `seed`: a fixed algorithm (std's hashers for maps
/// are not promised to stay one), and a keyed one, so ids cannot be chosen
/// to land in one bucket without the key. std still ships it, deprecated
/// only in favour of hashers that make no stability promise.
#[allow(deprecated)]
fn keyed_hash(seed: Seed, key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::SipHasher::new_with_keys(seed.0, seed.1);
    h.write(key);
    h.finish()
}

/// A bucket value, read: the number of buckets of the table that wrote it,
/// and its entries (counter key, record).
struct Bucket<'a> {
    buckets: u32,
    entries: Vec<(&'a [u8], &'a [u8])>,
}

/// The entries of a bucket value (counter key, record), or none for a value
/// that is not exactly a bucket of this format (another format, damaged):
/// such a bucket reads as empty and the next write to it starts it afresh.
pub fn entries(value: &[u8]) -> Vec<(&[u8], &[u8])> {
    parse(value).map(|b| b.entries).unwrap_or_default()
}

/// The value: the format byte, the writer's bucket count (a varint), then
/// each entry: its key's length (a varint), the key, the record's length (a
/// byte) and the record.
fn parse(value: &[u8]) -> Option<Bucket<'_>> {
    let (&format, rest) = value.split_first()?;
    if format != FORMAT {
        return None;
    }
    let (buckets, mut rest) = varint(rest, 5)?;
    let mut entries = Vec::with_capacity(SLOTS as usize);
    while !rest.is_empty() {
        let (key_len, after) = varint(rest, 3)?;
        let key = after.get(..key_len)?;
        let (&record_len, after) = after.get(key_len..)?.split_first()?;
        let record = after.get(..usize::from(record_len))?;
        rest = after.get(usize::from(record_len)..)?;
        entries.push((key, record));
    }
    Some(Bucket { buckets: u32::try_from(buckets).ok()?, entries })
}

/// A LEB128 number of at most `most` bytes.
fn varint(bytes: &[u8], most: usize) -> Option<(usize, &[u8])> {
    let mut n = 0usize;
    for (i, &b) in bytes.iter().enumerate().take(most) {
        n |= usize::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b < 0x80 {
            return Some((n, bytes.get(i + 1..)?));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn push_entry(out: &mut Vec<u8>, key: &[u8], record: &[u8]) {
    push_varint(out, key.len());
    out.extend_from_slice(key);
    out.push(record.len() as u8);
    out.extend_from_slice(record);
}

/// A bucket as read: its value and version, `None` if it was never written.
struct Read {
    bucket: u32,
    found: Option<(Vec<u8>, Cas)>,
}

/// The counters, as a [`CounterStore`] of counter keys over `store`'s
/// bucket keys. Made for one operation (a charge, a correction, a read):
/// `now` (Unix seconds) decides which entries are dead.
pub struct Table<'a, S: ?Sized> {
    store: &'a S,
    layout: Layout,
    now: i64,
    /// The bucket the last `get` read, for the `set` that follows it.
    last: RefCell<Option<Read>>,
}

impl<'a, S: CounterStore + ?Sized> Table<'a, S> {
    pub fn new(store: &'a S, layout: Layout, now: i64) -> Self {
        Table { store, layout, now, last: RefCell::new(None) }
    }

    fn read(&self, bucket: u32) -> Result<Read, StoreError> {
        Ok(Read { bucket, found: self.store.get(&Layout::bucket_key(bucket))? })
    }

    /// The bucket `bucket` once `key` holds `record`: the entries of other
    /// counters that are still live, in their order, then `key`'s.
    /// [`StoreError::Full`] when `key` is new and there is no room for it.
    /// Written by a table of another size, the bucket may hold counters
    /// whose keys lead elsewhere now: they can never be read here again, and
    /// are dropped too.
    fn rewrite(&self, bucket: u32, old: &Bucket<'_>, key: &[u8], record: &[u8]) -> Result<Vec<u8>, StoreError> {
        let resized = old.buckets != self.layout.buckets;
        let mut out = Vec::with_capacity(8 + old.entries.len() * 40 + entry_cost(key.len()));
        out.push(FORMAT);
        push_varint(&mut out, self.layout.buckets as usize);
        let (mut kept, mut cost, mut present) = (0u32, 0usize, false);
        for &(k, r) in &old.entries {
            if k == key {
                present = true;
                continue;
            }
            let live = counter_of(r).is_some_and(|c| !reclaimable(&c, self.now));
            if live && !(resized && self.layout.bucket_of(k) != bucket) {
                push_entry(&mut out, k, r);
                kept += 1;
                cost = cost.saturating_add(entry_cost_of(k.len(), r));
            }
        }
        let over_bytes = kept > 0 && cost.saturating_add(entry_cost_of(key.len(), record)) > BUCKET_BYTES;
        if !present && (kept >= SLOTS || over_bytes) {
            return Err(StoreError::Full);
        }
        push_entry(&mut out, key, record);
        Ok(out)
    }
}

impl<S: CounterStore + ?Sized> CounterStore for Table<'_, S> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        let read = self.read(self.layout.bucket_of(key.as_bytes()))?;
        let found = read.found.as_ref().and_then(|(value, cas)| {
            let (_, record) = parse(value)?.entries.into_iter().find(|(k, _)| *k == key.as_bytes())?;
            Some((record.to_vec(), *cas))
        });
        *self.last.borrow_mut() = Some(read);
        Ok(found)
    }

    fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
        let most = if LeaseRecord::decode(value).is_some() { MAX_LEASE_BYTES } else { MAX_RECORD_BYTES };
        if value.len() > most {
            let why = format!("the counter table takes records of up to {most} bytes, not {}", value.len());
            return Err(StoreError::Unavailable(why));
        }
        if key.len() > LONGEST_KEY {
            let why = format!("the counter table takes keys of up to {LONGEST_KEY} bytes, not {}", key.len());
            return Err(StoreError::Unavailable(why));
        }
        let bucket = self.layout.bucket_of(key.as_bytes());
        let last = self.last.borrow_mut().take().filter(|r| r.bucket == bucket);
        let read = match last {
            Some(read) => read,
            None => self.read(bucket)?,
        };
        let (old, version) = match &read.found {
            Some((value, cas)) => (parse(value), Some(*cas)),
            None => (None, None),
        };
        let old = old.unwrap_or(Bucket { buckets: self.layout.buckets, entries: Vec::new() });
        let present = old.entries.iter().any(|(k, _)| *k == key.as_bytes());
        let holds = match expect {
            Expect::Absent => !present,
            Expect::Version(want) => present && version == Some(want),
        };
        if !holds {
            return Err(StoreError::CasMismatch);
        }
        let new = self.rewrite(bucket, &old, key.as_bytes(), value)?;
        let expect = version.map_or(Expect::Absent, Expect::Version);
        self.store.set(&Layout::bucket_key(bucket), &new, expect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::Counter;
    use crate::store::{compare_and_swap, GiveUp, MemoryStore};
    use crate::window::Window;
    use std::collections::HashMap;
    use std::sync::Mutex;

    const NOON: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z
    const MINUTE: i64 = 60;

    /// A counter of a one-minute window starting at `start`.
    fn minute(start: i64, used: u64) -> Counter {
        Counter { used, ..Counter::open(Window { start, end: start + MINUTE }, 1, 0) }
    }

    /// Writes `counter` under `key` as the engine does: read, then compare-and-swap.
    fn put(table: &Table<'_, impl CounterStore + ?Sized>, key: &str, counter: Counter) -> Result<(), GiveUp> {
        compare_and_swap(table, key, 4, |_| (Some(counter.encode().to_vec()), ()))
    }

    fn read(table: &Table<'_, impl CounterStore + ?Sized>, key: &str) -> Option<Counter> {
        table.get(key).unwrap().and_then(|(bytes, _)| Counter::decode(&bytes))
    }

    /// Counter keys that all land in bucket 0 of `layout`.
    fn keys_in_bucket_0(layout: Layout, n: usize) -> Vec<String> {
        (0..).map(|i| format!("drafts:u:user-{i}")).filter(|k| layout.bucket_of(k.as_bytes()) == 0).take(n).collect()
    }

    fn bucket_entries(store: &MemoryStore, bucket: u32) -> Vec<String> {
        let (value, _) = store.get(&Layout::bucket_key(bucket)).unwrap().unwrap_or_default();
        entries(&value).iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect()
    }

    #[test]
    fn the_hash_is_siphash_2_4() {
        // The reference vector of the SipHash paper: key 00..0f, message 00..0e.
        let key = Seed(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(keyed_hash(key, &message), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn another_seed_places_counters_elsewhere() {
        let zero = Layout::new(1_000_000);
        let seeded = Layout::seeded(1_000_000, Seed(0x1234_5678_9abc_def0, 42));
        let keys: Vec<String> = (0..1_000).map(|i| format!("summaries:a:10.0.{}.{}", i / 256, i % 256)).collect();
        let moved = keys.iter().filter(|k| zero.bucket_of(k.as_bytes()) != seeded.bucket_of(k.as_bytes())).count();
        assert!(moved > 990, "{moved} of 1000 moved");
        // Ids that share bucket 0 under one seed are spread under another.
        let together = keys_in_bucket_0(zero, 8);
        let apart: std::collections::HashSet<u32> = together.iter().map(|k| seeded.bucket_of(k.as_bytes())).collect();
        assert!(apart.len() >= 7, "{apart:?}");
    }

    #[test]
    fn every_vm_gets_the_seed_the_first_one_stored() {
        let store = MemoryStore::new();
        let first = shared_seed(&store, Seed(1, 2)).unwrap();
        let second = shared_seed(&store, Seed(3, 4)).unwrap();
        assert_eq!((first, second), (Seed(1, 2), Seed(1, 2)));
        // A damaged value is replaced, not read as a seed.
        let (_, cas) = store.get(SEED_KEY).unwrap().unwrap();
        store.set(SEED_KEY, b"junk", Expect::Version(cas)).unwrap();
        assert_eq!(shared_seed(&store, Seed(5, 6)).unwrap(), Seed(5, 6));
        // Another VM stores its seed between this one's read and write: this
        // one's write loses, and it reads the other's.
        struct Racing(MemoryStore, std::cell::Cell<bool>);
        impl CounterStore for Racing {
            fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
                self.0.get(key)
            }
            fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
                if !self.1.replace(true) {
                    self.0.set(key, &Seed(7, 8).encode(), Expect::Absent)?;
                }
                self.0.set(key, value, expect)
            }
        }
        let racing = Racing(MemoryStore::new(), std::cell::Cell::new(false));
        assert_eq!(shared_seed(&racing, Seed(9, 9)).unwrap(), Seed(7, 8));
    }

    #[test]
    fn a_seed_reads_back_as_written() {
        let seed = Seed(u64::MAX, 7);
        assert_eq!(Seed::decode(&seed.encode()), Some(seed));
        assert_eq!(Seed::decode(&[1, 2, 3]), None);
        assert_eq!(Seed::decode(&[0; 17]), None);
    }

    #[test]
    fn buckets_are_stable_across_builds() {
        // A release that moved counters to other buckets would start them afresh.
        let layout = Layout::new(1_000_000);
        assert_eq!((layout.buckets(), layout.capacity()), (31_250, 1_000_000));
        let at: Vec<u32> = ["drafts:u:alice", "drafts:u:bob", "summaries:w:acme"]
            .iter()
            .map(|k| layout.bucket_of(k.as_bytes()))
            .collect();
        assert_eq!(at, vec![14_579, 23_225, 3_570]);
        assert_eq!(Layout::bucket_key(31_249), "#31249");
        assert_eq!((Layout::new(1).buckets(), Layout::new(32).buckets(), Layout::new(33).buckets()), (1, 1, 2));
    }

    #[test]
    fn sequential_ids_spread_evenly() {
        let layout = Layout::new(100_000);
        let mut load = vec![0u32; layout.buckets() as usize];
        for i in 0..100_000 {
            load[layout.bucket_of(format!("drafts:u:user-{i:07}").as_bytes()) as usize] += 1;
        }
        // 32 a bucket on average; a uniform hash puts at most about 60 in one of 3,125.
        let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
        assert!(*min >= 10 && *max <= 60, "loads from {min} to {max}");
    }

    /// Of `probe` new keys, the share whose bucket is already full once
    /// `live` keys are spread over a table of `max_counters`.
    fn refused_share(max_counters: u32, live: usize, probe: usize) -> f64 {
        let layout = Layout::new(max_counters);
        let mut load = vec![0u32; layout.buckets() as usize];
        for i in 0..live {
            let bucket = &mut load[layout.bucket_of(format!("drafts:u:user-{i:07}").as_bytes()) as usize];
            *bucket = (*bucket + 1).min(SLOTS);
        }
        let full = (0..probe)
            .filter(|i| load[layout.bucket_of(format!("summaries:a:10.{i}").as_bytes()) as usize] == SLOTS)
            .count();
        full as f64 / probe as f64
    }

    #[test]
    fn a_table_twice_the_live_counters_practically_never_refuses_one() {
        // What the README promises for sizing `max_counters`.
        let n = 320_000;
        assert!(refused_share(n, 80_000, 100_000) == 0.0);
        assert!(refused_share(n, 160_000, 100_000) < 0.001);
        let three_quarters = refused_share(n, 240_000, 100_000);
        assert!((0.03..0.12).contains(&three_quarters), "{three_quarters}");
    }

    #[test]
    fn counters_round_trip_through_their_bucket() {
        let store = MemoryStore::new();
        let table = Table::new(&store, Layout::new(1_000), NOON);
        assert_eq!(table.get("drafts:u:alice"), Ok(None));
        put(&table, "drafts:u:alice", minute(NOON, 3)).unwrap();
        put(&table, "drafts:u:bob", minute(NOON, 5)).unwrap();
        put(&table, "drafts:u:alice", minute(NOON, 4)).unwrap();
        assert_eq!(read(&table, "drafts:u:alice").map(|c| c.used), Some(4));
        assert_eq!(read(&table, "drafts:u:bob").map(|c| c.used), Some(5));
        assert_eq!(read(&table, "drafts:u:carol"), None);
        assert!(store.len() <= 2);
    }

    #[test]
    fn one_read_and_one_write_per_update() {
        #[derive(Default)]
        struct Counting {
            inner: MemoryStore,
            gets: std::cell::Cell<u32>,
            sets: std::cell::Cell<u32>,
        }
        impl CounterStore for Counting {
            fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
                self.gets.set(self.gets.get() + 1);
                self.inner.get(key)
            }
            fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
                self.sets.set(self.sets.get() + 1);
                self.inner.set(key, value, expect)
            }
        }
        let store = Counting::default();
        let table = Table::new(&store, Layout::new(1_000), NOON);
        put(&table, "drafts:u:alice", minute(NOON, 1)).unwrap();
        put(&table, "drafts:u:alice", minute(NOON, 2)).unwrap();
        assert_eq!((store.gets.get(), store.sets.get()), (2, 2));
    }

    #[test]
    fn a_dead_entry_is_dropped_when_its_bucket_is_rewritten() {
        let store = MemoryStore::new();
        let layout = Layout::new(32);
        put(&Table::new(&store, layout, NOON), "drafts:u:old", minute(NOON, 7)).unwrap();
        // One minute after its window ended, the record still decides where the next window opens.
        let later = Table::new(&store, layout, NOON + 2 * MINUTE - 1);
        put(&later, "drafts:u:new", minute(NOON + MINUTE, 1)).unwrap();
        assert_eq!(bucket_entries(&store, 0), ["drafts:u:old", "drafts:u:new"]);
        // Then it holds nothing any more: the next rewrite drops it.
        let much_later = Table::new(&store, layout, NOON + 2 * MINUTE);
        put(&much_later, "drafts:u:new", minute(NOON + MINUTE, 2)).unwrap();
        assert_eq!(bucket_entries(&store, 0), ["drafts:u:new"]);
        assert_eq!(read(&much_later, "drafts:u:old"), None);
    }

    #[test]
    fn a_counter_holding_grant_units_is_never_dropped() {
        let store = MemoryStore::new();
        let layout = Layout::new(32);
        let granted = crate::decide::add_grant(None, 50);
        put(&Table::new(&store, layout, NOON), "drafts:u:patron", granted).unwrap();
        put(&Table::new(&store, layout, NOON), "drafts:u:spent", Counter { grant: 2, ..minute(NOON, 1) }).unwrap();
        let years_later = Table::new(&store, layout, NOON + 3 * 365 * 86_400);
        put(&years_later, "drafts:u:someone", minute(NOON, 1)).unwrap();
        assert_eq!(read(&years_later, "drafts:u:patron").map(|c| c.grant), Some(50));
        assert_eq!(read(&years_later, "drafts:u:spent").map(|c| c.grant), Some(2));
    }

    #[test]
    fn a_full_bucket_refuses_a_new_counter_and_keeps_every_live_one() {
        let store = MemoryStore::new();
        let layout = Layout::new(32);
        let table = Table::new(&store, layout, NOON);
        for i in 0..SLOTS {
            put(&table, &format!("drafts:u:user-{i}"), minute(NOON, u64::from(i) + 1)).unwrap();
        }
        let before = store.get("#0").unwrap();
        assert_eq!(put(&table, "drafts:u:newcomer", minute(NOON, 1)), Err(GiveUp::Full));
        assert_eq!(store.get("#0").unwrap(), before, "nothing written");
        // Live counters still count up.
        put(&table, "drafts:u:user-0", minute(NOON, 9)).unwrap();
        assert_eq!(read(&table, "drafts:u:user-0").map(|c| c.used), Some(9));
        // Once the window has passed and one more length, the newcomer takes a dead entry's place.
        let later = Table::new(&store, layout, NOON + 2 * MINUTE);
        put(&later, "drafts:u:newcomer", minute(NOON + 2 * MINUTE, 1)).unwrap();
        assert_eq!(bucket_entries(&store, 0), ["drafts:u:newcomer"]);
    }

    #[test]
    fn a_full_bucket_of_typical_counters_takes_1220_bytes() {
        // As the README says: 32 keys like `drafts:u:user-0000001` with day
        // records, in the default table of 31,250 buckets.
        let layout = Layout::new(1_000_000);
        let keys: Vec<String> = (0..)
            .map(|i| format!("drafts:u:user-{i:07}"))
            .filter(|k| layout.bucket_of(k.as_bytes()) == 7)
            .take(SLOTS as usize)
            .collect();
        let start = NOON - NOON.rem_euclid(86_400);
        let day = Counter { used: 9, warned: 1, ..Counter::open(Window { start, end: start + 86_400 }, 3, 0) };
        assert_eq!((keys[0].len(), day.encode().len()), (21, 15));
        let store = MemoryStore::new();
        let table = Table::new(&store, layout, NOON);
        for key in &keys {
            put(&table, key, day).unwrap();
        }
        assert_eq!(store.get("#7").unwrap().map(|(v, _)| v.len()), Some(1_220));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn long_keys_fill_a_bucket_by_bytes() {
        let store = MemoryStore::new();
        let table = Table::new(&store, Layout::new(32), NOON);
        let id = "x".repeat(200);
        let per_bucket = BUCKET_BYTES / entry_cost("drafts:u:00".len() + id.len());
        assert_eq!(per_bucket, 15);
        for i in 0..per_bucket {
            put(&table, &format!("drafts:u:{i:02}{id}"), minute(NOON, 1)).unwrap();
        }
        assert_eq!(put(&table, &format!("drafts:u:zz{id}"), minute(NOON, 1)), Err(GiveUp::Full));
        assert!(store.get("#0").unwrap().unwrap().0.len() <= MAX_VALUE_BYTES);
        // One counter with a key longer than a bucket's bytes still has a place.
        let other = MemoryStore::new();
        let huge = format!("drafts:u:{}", "y".repeat(BUCKET_BYTES));
        put(&Table::new(&other, Layout::new(32), NOON), &huge, minute(NOON, 1)).unwrap();
        assert_eq!(read(&Table::new(&other, Layout::new(32), NOON), &huge).map(|c| c.used), Some(1));
    }

    #[test]
    fn a_write_to_another_counter_of_the_bucket_makes_a_retry_not_a_lost_update() {
        // Between this worker's read and its write, another worker updates a
        // neighbour in the same bucket.
        struct Interleaved<'s> {
            inner: &'s MemoryStore,
            before_set: RefCell<Option<Box<dyn FnOnce() + 's>>>,
            mismatches: std::cell::Cell<u32>,
        }
        impl CounterStore for Interleaved<'_> {
            fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
                self.inner.get(key)
            }
            fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
                if let Some(other) = self.before_set.borrow_mut().take() {
                    other();
                }
                let result = self.inner.set(key, value, expect);
                if result == Err(StoreError::CasMismatch) {
                    self.mismatches.set(self.mismatches.get() + 1);
                }
                result
            }
        }
        let layout = Layout::new(32);
        let store = MemoryStore::new();
        let other_worker = Table::new(&store, layout, NOON);
        put(&other_worker, "drafts:u:a", minute(NOON, 1)).unwrap();
        put(&other_worker, "drafts:u:b", minute(NOON, 1)).unwrap();
        let racing = Interleaved {
            inner: &store,
            before_set: RefCell::new(Some(Box::new(|| {
                let add = |old: Option<&[u8]>| {
                    let c = old.and_then(Counter::decode).unwrap();
                    (Some(Counter { used: c.used + 1, ..c }.encode().to_vec()), ())
                };
                compare_and_swap(&other_worker, "drafts:u:b", 4, add).unwrap();
            }))),
            mismatches: std::cell::Cell::new(0),
        };
        let this_worker = Table::new(&racing, layout, NOON);
        let add = |old: Option<&[u8]>| {
            let c = old.and_then(Counter::decode).unwrap();
            (Some(Counter { used: c.used + 1, ..c }.encode().to_vec()), ())
        };
        compare_and_swap(&this_worker, "drafts:u:a", 4, add).unwrap();
        assert_eq!(racing.mismatches.get(), 1, "the first write lost to the neighbour's and retried");
        let table = Table::new(&store, layout, NOON);
        assert_eq!(
            (read(&table, "drafts:u:a").map(|c| c.used), read(&table, "drafts:u:b").map(|c| c.used)),
            (Some(2), Some(2))
        );
    }

    /// Values and versions by key, and the last version handed out.
    type Versioned = (HashMap<String, (Vec<u8>, Cas)>, Cas);

    /// A store shared by threads, as Envoy's shared data is by workers.
    #[derive(Default)]
    struct Shared {
        entries: Mutex<Versioned>,
    }

    impl CounterStore for Shared {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
            let entries = self.entries.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
            Ok(entries.0.get(key).cloned())
        }

        fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
            let mut entries = self.entries.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
            let (map, next) = &mut *entries;
            match (expect, map.get(key).map(|(_, cas)| *cas)) {
                (Expect::Absent, None) => {}
                (Expect::Version(want), Some(have)) if want == have => {}
                _ => return Err(StoreError::CasMismatch),
            }
            *next += 1;
            map.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }
    }

    #[test]
    fn threads_updating_two_counters_of_one_bucket_lose_no_update() {
        let store = Shared::default();
        let layout = Layout::new(32);
        let keys = keys_in_bucket_0(layout, 2);
        std::thread::scope(|s| {
            for key in &keys {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..500 {
                            let table = Table::new(&store, layout, NOON);
                            let add = |old: Option<&[u8]>| {
                                let c = old.and_then(Counter::decode).unwrap_or_else(|| minute(NOON, 0));
                                (Some(Counter { used: c.used + 1, ..c }.encode().to_vec()), ())
                            };
                            compare_and_swap(&table, key, u32::MAX, add).unwrap();
                        }
                    });
                }
            }
        });
        let table = Table::new(&store, layout, NOON);
        for key in &keys {
            assert_eq!(read(&table, key).map(|c| c.used), Some(1_000), "{key}");
        }
    }

    #[test]
    fn a_set_without_a_read_checks_the_version_itself() {
        let store = MemoryStore::new();
        let table = Table::new(&store, Layout::new(32), NOON);
        let record = minute(NOON, 1).encode();
        table.set("drafts:u:a", &record, Expect::Absent).unwrap();
        assert_eq!(table.set("drafts:u:a", &record, Expect::Absent), Err(StoreError::CasMismatch));
        let (_, cas) = table.get("drafts:u:a").unwrap().unwrap();
        table.set("drafts:u:b", &record, Expect::Absent).unwrap();
        // The neighbour's write moved the bucket's version on.
        assert_eq!(table.set("drafts:u:a", &record, Expect::Version(cas)), Err(StoreError::CasMismatch));
        assert_eq!(table.set("drafts:u:c", &record, Expect::Version(cas)), Err(StoreError::CasMismatch));
    }

    #[test]
    fn foreign_or_damaged_buckets_read_as_empty_and_are_started_afresh() {
        let store = MemoryStore::new();
        let layout = Layout::new(32);
        let mut value = vec![FORMAT];
        push_varint(&mut value, 1);
        push_entry(&mut value, b"drafts:u:a", &minute(NOON, 3).encode());
        for bad in [vec![], vec![9], value[..value.len() - 1].to_vec(), [value.as_slice(), &[0x80]].concat()] {
            let store = MemoryStore::new();
            store.set("#0", &bad, Expect::Absent).unwrap();
            let table = Table::new(&store, layout, NOON);
            assert_eq!(table.get("drafts:u:a"), Ok(None), "{bad:?}");
            put(&table, "drafts:u:b", minute(NOON, 1)).unwrap();
            assert_eq!(bucket_entries(&store, 0), ["drafts:u:b"]);
        }
        store.set("#0", &value, Expect::Absent).unwrap();
        assert_eq!(read(&Table::new(&store, layout, NOON), "drafts:u:a").map(|c| c.used), Some(3));
        // A value that is not a counter record holds nothing: dropped on the next rewrite.
        let table = Table::new(&store, layout, NOON);
        compare_and_swap(&table, "drafts:u:junk", 4, |_| (Some(b"junk".to_vec()), ())).unwrap();
        put(&table, "drafts:u:a", minute(NOON, 4)).unwrap();
        assert_eq!(bucket_entries(&store, 0), ["drafts:u:a"]);
    }

    #[test]
    fn entries_left_by_another_layout_are_dropped() {
        // A one-bucket table put every counter in bucket 0; grown to two
        // buckets, some of them lead to bucket 1 instead and can never be read
        // from bucket 0 again.
        let store = MemoryStore::new();
        let (small, big) = (Layout::new(32), Layout::new(64));
        let moved = (0..).map(|i| format!("drafts:u:user-{i}")).find(|k| big.bucket_of(k.as_bytes()) == 1).unwrap();
        let [stays, neighbour] = <[String; 2]>::try_from(keys_in_bucket_0(big, 2)).unwrap();
        for key in [&moved, &stays, &neighbour] {
            put(&Table::new(&store, small, NOON), key, minute(NOON, 5)).unwrap();
        }
        let table = Table::new(&store, big, NOON);
        assert_eq!(read(&table, &moved), None);
        put(&table, &stays, minute(NOON, 6)).unwrap();
        assert_eq!(bucket_entries(&store, 0), [neighbour.clone(), stays.clone()]);
        assert_eq!(read(&table, &neighbour).map(|c| c.used), Some(5));
    }

    #[test]
    fn oversized_values_are_refused() {
        let store = MemoryStore::new();
        let table = Table::new(&store, Layout::new(32), NOON);
        let long = vec![3u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(table.set("k", &long, Expect::Absent), Err(StoreError::Unavailable(_))));
        let key = "k".repeat(LONGEST_KEY + 1);
        assert!(matches!(table.set(&key, &minute(NOON, 1).encode(), Expect::Absent), Err(StoreError::Unavailable(_))));
        assert!(store.is_empty());
    }
}
