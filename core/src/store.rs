//! The counter store boundary and the compare-and-swap loop around it.
//!
//! The store is deliberately narrow: read a value with its version, write a
//! value if the version still matches. Envoy's shared data implements it in
//! the filter, and the counters live there in the bounded table of
//! `table.rs` (itself a store over it); tests use [`MemoryStore`]. A remote store (Redis behind an
//! HTTP callout) answers asynchronously, so it plugs in one level up, around
//! the same pure `decide` function, rather than through this trait.

use std::cell::RefCell;
use std::collections::HashMap;

/// A value's version: the compare-and-swap token.
pub type Cas = u32;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read; read again and retry.
    CasMismatch,
    /// The store could not answer (the string says what the host said).
    Unavailable(String),
    /// A new key has no room: every place it could go holds a live value
    /// (see `table.rs`). Trying again at once would not help.
    Full,
}

/// What a write should require of the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist yet.
    Absent,
    /// The key must still hold the value read with this version.
    Version(Cas),
}

pub trait CounterStore {
    /// The value and its version, or `None` if the key was never written.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError>;
    /// Writes `value` if `expect` still holds, else [`StoreError::CasMismatch`].
    fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError>;
}

/// How a compare-and-swap loop ended without writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// Every attempt lost a race.
    Contended {
        attempts: u32,
    },
    Unavailable(String),
    /// The counter is new and the table has no room for it.
    Full,
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Contended { attempts } => write!(f, "the counter stayed contended for {attempts} attempts"),
            GiveUp::Unavailable(why) => write!(f, "the counter store did not answer: {why}"),
            GiveUp::Full => f.write_str("the counter table is full: no room for a new counter"),
        }
    }
}

/// Reads `key`, lets `update` decide on the old value, and writes the result
/// with compare-and-swap, retrying up to `attempts` times when another worker
/// wrote first. `update` returns the value to write (or `None` to write
/// nothing) and the outcome to hand back.
pub fn compare_and_swap<S, T, F>(store: &S, key: &str, attempts: u32, mut update: F) -> Result<T, GiveUp>
where
    S: CounterStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
{
    for _ in 0..attempts {
        let current = store.get(key).map_err(|e| match e {
            StoreError::Unavailable(why) => GiveUp::Unavailable(why),
            StoreError::CasMismatch => GiveUp::Unavailable("get answered CasMismatch".to_string()),
            StoreError::Full => GiveUp::Full,
        })?;
        let (old, expect) = match &current {
            Some((bytes, cas)) => (Some(bytes.as_slice()), Expect::Version(*cas)),
            None => (None, Expect::Absent),
        };
        let (new, outcome) = update(old);
        let Some(new) = new else { return Ok(outcome) };
        match store.set(key, &new, expect) {
            Ok(()) => return Ok(outcome),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(why)) => return Err(GiveUp::Unavailable(why)),
            Err(StoreError::Full) => return Err(GiveUp::Full),
        }
    }
    Err(GiveUp::Contended { attempts })
}

/// An in-memory store with the same semantics as the filter's, for tests,
/// tools and benchmarks.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, Cas)>>,
    next_cas: RefCell<Cas>,
    /// Test hook: how many upcoming writes lose a race.
    pub fail_next_sets: RefCell<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl CounterStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], expect: Expect) -> Result<(), StoreError> {
        {
            let mut fail = self.fail_next_sets.borrow_mut();
            if *fail > 0 {
                *fail -= 1;
                return Err(StoreError::CasMismatch);
            }
        }
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, cas)| *cas);
        match (expect, current) {
            (Expect::Absent, None) => {}
            (Expect::Version(want), Some(have)) if want == have => {}
            _ => return Err(StoreError::CasMismatch),
        }
        let mut next = self.next_cas.borrow_mut();
        *next = next.wrapping_add(1).max(1);
        entries.insert(key.to_string(), (value.to_vec(), *next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_one(old: Option<&[u8]>) -> (Option<Vec<u8>>, u8) {
        let n = old.and_then(|b| b.first().copied()).unwrap_or(0) + 1;
        (Some(vec![n]), n)
    }

    #[test]
    fn first_write_creates_and_later_writes_update() {
        let store = MemoryStore::new();
        assert_eq!(compare_and_swap(&store, "k", 4, add_one), Ok(1));
        assert_eq!(compare_and_swap(&store, "k", 4, add_one), Ok(2));
    }

    #[test]
    fn retries_after_losing_a_race() {
        let store = MemoryStore::new();
        *store.fail_next_sets.borrow_mut() = 3;
        assert_eq!(compare_and_swap(&store, "k", 4, add_one), Ok(1));
    }

    #[test]
    fn gives_up_after_the_configured_attempts() {
        let store = MemoryStore::new();
        *store.fail_next_sets.borrow_mut() = 4;
        assert_eq!(compare_and_swap(&store, "k", 4, add_one), Err(GiveUp::Contended { attempts: 4 }));
        assert!(store.is_empty());
    }

    #[test]
    fn a_stale_version_never_overwrites() {
        let store = MemoryStore::new();
        store.set("k", b"a", Expect::Absent).unwrap();
        let (_, cas) = store.get("k").unwrap().unwrap();
        store.set("k", b"b", Expect::Version(cas)).unwrap();
        assert_eq!(store.set("k", b"c", Expect::Version(cas)), Err(StoreError::CasMismatch));
        assert_eq!(store.set("k", b"d", Expect::Absent), Err(StoreError::CasMismatch));
    }

    #[test]
    fn writing_nothing_ends_the_loop() {
        let store = MemoryStore::new();
        assert_eq!(compare_and_swap(&store, "k", 4, |_| (None, "blocked")), Ok("blocked"));
        assert!(store.is_empty());
    }
}
