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
    /// invalidated during the fetch (the stale-write guard at work), or the lease's key was
    /// evicted (or outlived its ten minutes of grace past the
    /// [lock TTL](crate::CacheBuilder::lock_ttl)), which may hide an invalidation.
    pub stale_commits: u64,
    /// Fetched ids not written because another caller took this caller's lease over (after its
    /// deadline: a fetch that took longer than the
    /// [lock TTL](crate::CacheBuilder::lock_ttl); or taking this caller for dead) or wrote a
    /// value through since ([`Cache::set`](crate::Cache::set)).
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
    /// Ids refreshed in the background with the
    /// [refresh fetch](crate::CacheBuilder::refresh_ahead): ahead of their expiry after a read
    /// drew them, or after a refill of a stale value passed its
    /// [soft timeout](crate::CacheBuilder::fetch_soft_timeout). Only the refreshes this process
    /// took the id's refresh lease for: one per id fleet-wide at a time.
    pub refreshes: u64,
    /// Ids answered with a value past its TTL (see
    /// [`CacheBuilder::stale_for`](crate::CacheBuilder::stale_for)): its refill failed or timed
    /// out, or another caller was refilling it, or had failed to lately.
    pub stale_served: u64,
    /// Ids answered from the [near cache](crate::CacheBuilder::near_cache), in process memory,
    /// without a round trip to Redis (not counted in [`hits`](Self::hits)).
    pub near_hits: u64,
    /// Ids looked up in the near cache and not found there (then read from Redis as usual).
    pub near_misses: u64,
    /// Near-cache entries dropped because their key changed in Redis (an invalidation, a commit,
    /// a write through, an expiry or an eviction, seen by any process), or by this process's own
    /// [`invalidate`](crate::Cache::invalidate) or [`set`](crate::Cache::set).
    pub near_invalidations: u64,
    /// The cache's name (see [`CacheBuilder::name`](crate::CacheBuilder::name)), if it has one:
    /// tells apart the snapshots of several caches in logs.
    pub cache: Option<&'static str>,
}

/// A `debug` span of a cache's work, with the field `cache`, the cache's name, when it has one
/// (`cache_span!(options.name, "fill", misses = n)`).
macro_rules! cache_span {
    ($name:expr, $span:literal, $($fields:tt)*) => {
        match $name {
            Some(cache) => tracing::debug_span!($span, cache, $($fields)*),
            None => tracing::debug_span!($span, $($fields)*),
        }
    };
}
pub(crate) use cache_span;

/// One of a cache's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    Hits,
    Misses,
    Fetches,
    FetchedIds,
    Commits,
    StaleCommits,
    LostLocks,
    LockAttempts,
    LockWaits,
    Wakeups,
    FlightWaits,
    Takeovers,
    ServedFromSource,
    Invalidations,
    Sets,
    Refreshes,
    StaleServed,
    NearHits,
    NearMisses,
    NearInvalidations,
}

impl Stat {
    const COUNT: usize = 20;

    /// The counter's name: its [`Stats`] field, and the middle of its metric's name
    /// (`ruecache_<name>_total`).
    #[cfg(feature = "metrics")]
    fn name(self) -> &'static str {
        match self {
            Self::Hits => "hits",
            Self::Misses => "misses",
            Self::Fetches => "fetches",
            Self::FetchedIds => "fetched_ids",
            Self::Commits => "commits",
            Self::StaleCommits => "stale_commits",
            Self::LostLocks => "lost_locks",
            Self::LockAttempts => "lock_attempts",
            Self::LockWaits => "lock_waits",
            Self::Wakeups => "wakeups",
            Self::FlightWaits => "flight_waits",
            Self::Takeovers => "takeovers",
            Self::ServedFromSource => "served_from_source",
            Self::Invalidations => "invalidations",
            Self::Sets => "sets",
            Self::Refreshes => "refreshes",
            Self::StaleServed => "stale_served",
            Self::NearHits => "near_hits",
            Self::NearMisses => "near_misses",
            Self::NearInvalidations => "near_invalidations",
        }
    }
}

/// A cache's counters, and (feature `metrics`) their handles in the `metrics` facade, labelled
/// with the cache's name.
#[derive(Debug)]
pub(crate) struct Counters {
    values: [AtomicU64; Stat::COUNT],
    /// The cache's name (see [`CacheBuilder::name`](crate::CacheBuilder::name)): the `cache`
    /// label of its metrics.
    name: Option<&'static str>,
    #[cfg(feature = "metrics")]
    handles: [std::sync::OnceLock<metrics::Counter>; Stat::COUNT],
}

impl Counters {
    pub(crate) const fn new(name: Option<&'static str>) -> Self {
        Self {
            values: [const { AtomicU64::new(0) }; Stat::COUNT],
            name,
            #[cfg(feature = "metrics")]
            handles: [const { std::sync::OnceLock::new() }; Stat::COUNT],
        }
    }

    pub(crate) fn add(&self, stat: Stat, n: usize) {
        if n == 0 {
            return;
        }
        self.values[stat as usize].fetch_add(n as u64, Relaxed);
        #[cfg(feature = "metrics")]
        self.handles[stat as usize]
            .get_or_init(|| {
                let cache = self.name.unwrap_or("");
                metrics::counter!(format!("ruecache_{}_total", stat.name()), "cache" => cache)
            })
            .increment(n as u64);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |stat: Stat| self.values[stat as usize].load(Relaxed);
        Stats {
            hits: get(Stat::Hits),
            misses: get(Stat::Misses),
            fetches: get(Stat::Fetches),
            fetched_ids: get(Stat::FetchedIds),
            commits: get(Stat::Commits),
            stale_commits: get(Stat::StaleCommits),
            lost_locks: get(Stat::LostLocks),
            lock_attempts: get(Stat::LockAttempts),
            lock_waits: get(Stat::LockWaits),
            wakeups: get(Stat::Wakeups),
            flight_waits: get(Stat::FlightWaits),
            takeovers: get(Stat::Takeovers),
            served_from_source: get(Stat::ServedFromSource),
            invalidations: get(Stat::Invalidations),
            sets: get(Stat::Sets),
            refreshes: get(Stat::Refreshes),
            stale_served: get(Stat::StaleServed),
            near_hits: get(Stat::NearHits),
            near_misses: get(Stat::NearMisses),
            near_invalidations: get(Stat::NearInvalidations),
            cache: self.name,
        }
    }
}
