//! Counters of what the cache did.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
///
/// Counts are per id unless the name says otherwise, and only grow: subtract an earlier snapshot
/// to measure an interval. Clones of a cache share its counters; the caches of two
/// `#[cached_batch]` methods do not.
///
/// # Examples
///
/// ```no_run
/// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
/// let before = cache.stats();
/// cache.invalidate([1, 2]).await?;
/// let after = cache.stats();
/// assert_eq!(after.invalidations - before.invalidations, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Ids answered by a call's first read from Redis (a cached value, or a cached "absent").
    pub hits: u64,
    /// Ids not answered by a call's first read: `hits + misses` is the number of distinct ids
    /// asked for while Redis answers. A miss is not always fetched by this caller: another may
    /// fill it first.
    pub misses: u64,
    /// Calls of the fetch function to fill the cache (not those made while Redis is unreachable:
    /// see [`served_from_source`](Self::served_from_source)).
    pub fetches: u64,
    /// Ids passed to the fetch function to fill the cache.
    pub fetched_ids: u64,
    /// Ids written to Redis after a fetch (values, and "absent" markers for ids the source did
    /// not return).
    pub commits: u64,
    /// Fetched ids not written because their lease was gone at the commit: they were
    /// invalidated during the fetch (the stale-write guard at work), or the lease expired (a
    /// fetch longer than the [lock TTL](crate::CacheBuilder::lock_ttl)) or was evicted, either of
    /// which may hide an invalidation.
    pub stale_commits: u64,
    /// Fetched ids not written because this caller's lease had expired and another caller had
    /// taken the id over (or filled it) since: a fetch that took longer than the
    /// [lock TTL](crate::CacheBuilder::lock_ttl), or a holder taken for dead.
    pub lost_locks: u64,
    /// Lock attempts (ids) sent to Redis.
    pub lock_attempts: u64,
    /// Times an id was waited for because another caller held its lock (once per id and
    /// attempt).
    pub lock_waits: u64,
    /// Times a caller waiting for other callers' locks was woken by a release (a commit or
    /// unlock publishing on the lock's channel) before its backoff ran out.
    pub wakeups: u64,
    /// Times an id was waited for because another caller on the same connection was already
    /// filling it (in-process single-flight).
    pub flight_waits: u64,
    /// Locks taken over from a holder that died (its liveness key expired) instead of waiting
    /// for the lock TTL.
    pub takeovers: u64,
    /// Ids served straight from the source because Redis was unreachable (see
    /// [`CacheBuilder::fallback_to_source`](crate::CacheBuilder::fallback_to_source)).
    pub served_from_source: u64,
    /// Ids invalidated (distinct ids per call of [`Cache::invalidate`](crate::Cache::invalidate)).
    pub invalidations: u64,
    /// Ids written through by [`Cache::set`](crate::Cache::set) and
    /// [`Cache::set_many`](crate::Cache::set_many) (distinct ids per call).
    pub sets: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fetches: AtomicU64,
    pub(crate) fetched_ids: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) stale_commits: AtomicU64,
    pub(crate) lost_locks: AtomicU64,
    pub(crate) lock_attempts: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) wakeups: AtomicU64,
    pub(crate) flight_waits: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    pub(crate) served_from_source: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) sets: AtomicU64,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Self {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            fetched_ids: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            stale_commits: AtomicU64::new(0),
            lost_locks: AtomicU64::new(0),
            lock_attempts: AtomicU64::new(0),
            lock_waits: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            flight_waits: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            served_from_source: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            sets: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            fetches: self.fetches.load(Relaxed),
            fetched_ids: self.fetched_ids.load(Relaxed),
            commits: self.commits.load(Relaxed),
            stale_commits: self.stale_commits.load(Relaxed),
            lost_locks: self.lost_locks.load(Relaxed),
            lock_attempts: self.lock_attempts.load(Relaxed),
            lock_waits: self.lock_waits.load(Relaxed),
            wakeups: self.wakeups.load(Relaxed),
            flight_waits: self.flight_waits.load(Relaxed),
            takeovers: self.takeovers.load(Relaxed),
            served_from_source: self.served_from_source.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            sets: self.sets.load(Relaxed),
        }
    }
}
