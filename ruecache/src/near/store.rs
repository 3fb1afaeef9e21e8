//! The near cache's storage: a bounded map from data keys to encoded values, in shards, that
//! refuses a value whose key was invalidated after the value was read (see the parent module's
//! safety argument).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

/// Shards, each behind its own lock: concurrent hits rarely wait for each other.
const SHARDS: usize = 64;

/// How long an invalidation is remembered: a read that took longer than this to answer is not
/// kept (it cannot be told apart from one that crossed a forgotten invalidation).
pub(crate) const MEMORY: Duration = Duration::from_secs(1);

/// The most invalidations a shard remembers; past it, the shard refuses every read sent before
/// the newest invalidation instead (see [`Shard::remember`]).
const MAX_TOMBSTONES: usize = 4096;

/// What the near cache holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// The codec's bytes of the value.
    Value(Arc<[u8]>),
    /// The source does not have the id.
    Absent,
}

/// The map. Every change that drops an entry takes a number from one counter, [`Store::seq`];
/// a read remembers the counter's value before it is sent, and its reply is kept only if no
/// invalidation of its key has taken a later number since.
pub(crate) struct Store {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// The most entries in one shard.
    per_shard: usize,
    /// The most bytes (keys, values and [`ENTRY_COST`]) in one shard.
    bytes_per_shard: usize,
    seq: AtomicU64,
}

/// What an entry costs besides its key and value bytes, for the weight bound: the map's slot,
/// the entry, two reference counts and the clock's slot, rounded up.
const ENTRY_COST: usize = 128;

fn weight(key: &[u8], held: &Held) -> usize {
    let value = match held {
        Held::Value(bytes) => bytes.len(),
        Held::Absent => 0,
    };
    key.len() + value + ENTRY_COST
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Arc<[u8]>, Entry, RandomState>,
    /// Keys in the order they were put in, for eviction (CLOCK: a key used since it was last
    /// looked at gets a second round). May hold keys no longer in `entries`, and a key twice.
    clock: VecDeque<Arc<[u8]>>,
    /// Keys invalidated lately: the number the invalidation took, and when.
    tombstones: HashMap<Arc<[u8]>, (u64, Instant), RandomState>,
    /// Reads sent before this number are refused whatever their key (after a flush, or when
    /// the tombstones overflowed).
    floor: u64,
    /// The weight of the entries held.
    bytes: usize,
}

struct Entry {
    held: Held,
    expires: Instant,
    used: bool,
}

impl Store {
    /// A store of up to `max_entries` entries, and `max_bytes` of keys and values (plus
    /// [`ENTRY_COST`] each) if given.
    pub(crate) fn new(max_entries: usize, max_bytes: Option<usize>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            bytes_per_shard: max_bytes.map_or(usize::MAX, |bytes| bytes.div_ceil(SHARDS)),
            seq: AtomicU64::new(0),
        }
    }

    fn index(&self, key: &[u8]) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        self.shards[self.index(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The number a read remembers before it is sent.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(SeqCst)
    }

    /// What is held for `key`, if it has not expired by `now`.
    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Held> {
        let mut shard = self.shard(key);
        let entry = shard.entries.get_mut(key)?;
        if entry.expires <= now {
            shard.remove(key);
            return None;
        }
        entry.used = true;
        Some(entry.held.clone())
    }

    /// Keeps `held` for `key` until `expires`, unless the key was invalidated after `since` (the
    /// number its read remembered at `sent`), or `admit` says no; `admit` runs under the shard's
    /// lock, so a flush that starts after it says yes removes the entry. `true` if kept.
    pub(crate) fn insert(
        &self,
        key: &[u8],
        held: Held,
        expires: Instant,
        since: u64,
        sent: Instant,
        admit: impl FnOnce() -> bool,
    ) -> bool {
        let mut shard = self.shard(key);
        let crossed = shard
            .tombstones
            .get(key)
            .is_some_and(|&(seq, _)| seq > since);
        if shard.floor > since || crossed || sent.elapsed() > MEMORY || !admit() {
            return false;
        }
        let weight = weight(key, &held);
        if weight > self.bytes_per_shard {
            return false;
        }
        shard.remove(key);
        shard.evict(self.per_shard, self.bytes_per_shard - weight);
        shard.bytes += weight;
        let key: Arc<[u8]> = key.into();
        shard.clock.push_back(Arc::clone(&key));
        shard.entries.insert(
            key,
            Entry {
                held,
                expires,
                used: false,
            },
        );
        true
    }

    /// Drops `key` and refuses the replies of reads sent before now; `true` if an entry was
    /// dropped.
    pub(crate) fn invalidate(&self, key: &[u8]) -> bool {
        let seq = self.seq.fetch_add(1, SeqCst) + 1;
        let mut shard = self.shard(key);
        shard.remember(key, seq);
        shard.remove(key)
    }

    /// Drops everything and refuses the replies of every read sent before now; how many
    /// entries were dropped.
    pub(crate) fn clear(&self) -> usize {
        let seq = self.seq.fetch_add(1, SeqCst) + 1;
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            dropped += shard.entries.len();
            shard.entries.clear();
            shard.clock.clear();
            shard.tombstones.clear();
            shard.floor = seq;
            shard.bytes = 0;
        }
        dropped
    }

    /// How many entries are held (expired ones included until they are looked up or evicted).
    pub(crate) fn len(&self) -> usize {
        let shards = self.shards.iter();
        shards
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }
}

impl Shard {
    /// Drops `key`'s entry, if there is one; `true` if there was.
    fn remove(&mut self, key: &[u8]) -> bool {
        match self.entries.remove_entry(key) {
            Some((key, entry)) => {
                self.bytes -= weight(&key, &entry.held);
                true
            }
            None => false,
        }
    }

    /// Records an invalidation. Tombstones older than [`MEMORY`] are no longer needed (a read
    /// older than that is refused anyway); if there are still too many, the shard refuses every
    /// read sent before this one instead, which is as safe and needs no memory per key.
    fn remember(&mut self, key: &[u8], seq: u64) {
        if self.tombstones.len() >= MAX_TOMBSTONES {
            let now = Instant::now();
            self.tombstones
                .retain(|_, (_, at)| now.duration_since(*at) <= MEMORY);
            if self.tombstones.len() >= MAX_TOMBSTONES {
                self.tombstones.clear();
                self.floor = seq;
                return;
            }
        }
        self.tombstones.insert(key.into(), (seq, Instant::now()));
    }

    /// Makes room for one more entry, and until at most `bytes` are held: the first keys in the
    /// clock not used since they were last looked at go.
    fn evict(&mut self, capacity: usize, bytes: usize) {
        // Each pass over the clock clears the `used` marks it meets, so two passes always
        // find an entry to drop.
        let mut steps = 2 * self.clock.len();
        while (self.entries.len() >= capacity || self.bytes > bytes) && steps > 0 {
            steps -= 1;
            let Some(key) = self.clock.pop_front() else {
                break;
            };
            match self.entries.get_mut(&key) {
                None => {}
                Some(entry) if entry.used => {
                    entry.used = false;
                    self.clock.push_back(key);
                }
                Some(_) => {
                    self.remove(&key);
                }
            }
        }
        if self.clock.len() > 2 * capacity + 16 {
            // Keys invalidated or put in twice: keep each present key once.
            let mut seen = HashSet::with_capacity(self.entries.len());
            let entries = &self.entries;
            self.clock
                .retain(|key| entries.contains_key(key) && seen.insert(Arc::clone(key)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(byte: u8) -> Held {
        Held::Value(Arc::from(&[byte][..]))
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_reply_that_crossed_an_invalidation_of_its_key_is_refused() {
        let store = Store::new(100, None);
        // The read is sent...
        let (since, sent) = (store.seq(), Instant::now());
        // ...the key changes in Redis and its invalidation arrives before the reply...
        store.invalidate(b"k");
        // ...and the reply (possibly the old value) is not kept.
        assert!(!store.insert(b"k", value(1), later(), since, sent, || true));
        assert_eq!(store.get(b"k", Instant::now()), None);
        // Another key's reply from the same read is kept.
        assert!(store.insert(b"j", value(2), later(), since, sent, || true));
        // A read sent after the invalidation is kept.
        let (since, sent) = (store.seq(), Instant::now());
        assert!(store.insert(b"k", value(3), later(), since, sent, || true));
        assert_eq!(store.get(b"k", Instant::now()), Some(value(3)));
    }

    #[test]
    fn an_invalidation_after_the_reply_drops_the_entry() {
        let store = Store::new(100, None);
        let (since, sent) = (store.seq(), Instant::now());
        assert!(store.insert(b"k", value(1), later(), since, sent, || true));
        assert!(store.invalidate(b"k"));
        assert_eq!(store.get(b"k", Instant::now()), None);
        assert!(!store.invalidate(b"k"), "nothing left to drop");
    }

    #[test]
    fn a_clear_refuses_every_read_sent_before_it() {
        let store = Store::new(100, None);
        let (since, sent) = (store.seq(), Instant::now());
        assert!(store.insert(b"a", value(1), later(), since, sent, || true));
        assert_eq!(store.clear(), 1);
        assert!(!store.insert(b"b", value(2), later(), since, sent, || true));
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn overflowing_tombstones_refuse_older_reads_of_any_key() {
        let store = Store::new(100, None);
        let since = store.seq();
        // Enough invalidations of other keys in the shard of `k` to overflow its tombstones.
        let shard = store.index(b"k");
        let mut invalidated = 0;
        for i in 0u64.. {
            if invalidated > MAX_TOMBSTONES {
                break;
            }
            let key = i.to_be_bytes();
            if store.index(&key) == shard {
                store.invalidate(&key);
                invalidated += 1;
            }
        }
        // The read of a key never invalidated is refused too: the shard forgot which keys were.
        let sent = Instant::now();
        assert!(!store.insert(b"k", value(1), later(), since, sent, || true));
        // A read sent after them is kept.
        assert!(store.insert(b"k", value(1), later(), store.seq(), sent, || true));
    }

    #[test]
    fn admission_and_expiry_are_honoured() {
        let store = Store::new(100, None);
        let (since, sent) = (store.seq(), Instant::now());
        assert!(!store.insert(b"k", value(1), later(), since, sent, || false));
        let past = Instant::now();
        assert!(store.insert(b"k", value(1), past, since, sent, || true));
        assert_eq!(store.get(b"k", Instant::now()), None, "expired");
        let old = Instant::now() - MEMORY - Duration::from_millis(1);
        assert!(
            !store.insert(b"k", value(1), later(), since, old, || true),
            "a read older than the invalidation memory"
        );
    }

    #[test]
    fn eviction_keeps_the_store_bounded_and_spares_used_entries() {
        let store = Store::new(SHARDS * 4, None);
        let (since, sent) = (store.seq(), Instant::now());
        let hot = b"hot".to_vec();
        assert!(store.insert(&hot, value(0), later(), since, sent, || true));
        for i in 0..10_000u64 {
            // The hot key is used between inserts; the others never are.
            assert!(
                store.get(&hot, Instant::now()).is_some(),
                "after {i} inserts"
            );
            store.insert(&i.to_be_bytes(), value(1), later(), since, sent, || true);
        }
        assert!(store.len() <= SHARDS * 4);
    }

    #[test]
    fn the_weight_bound_holds() {
        let store = Store::new(1_000_000, Some(SHARDS * 1024));
        let (since, sent) = (store.seq(), Instant::now());
        let big = Held::Value(Arc::from(vec![0u8; 300]));
        for i in 0..10_000u64 {
            store.insert(&i.to_be_bytes(), big.clone(), later(), since, sent, || true);
        }
        let held: usize = store.len() * (8 + 300 + ENTRY_COST);
        assert!(held <= SHARDS * 1024, "{held} bytes held");
        assert!(store.len() >= SHARDS, "each shard keeps what fits");
        let huge = Held::Value(Arc::from(vec![0u8; 4096]));
        assert!(
            !store.insert(b"huge", huge, later(), since, sent, || true),
            "a value larger than a shard's share is not kept"
        );
    }
}
