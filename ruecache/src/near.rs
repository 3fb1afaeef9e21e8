//! The near cache: values of hot ids kept in process memory, in front of Redis, and dropped as
//! soon as Redis reports that their keys changed (see
//! [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)).
//!
//! The crate docs ("The near cache") give the argument why it is safe; in short: one
//! connection per Redis node in `CLIENT TRACKING on BCAST` mode ([`track`]) reports every change
//! of a key under the cache's prefix, the [`Store`] refuses a reply that crossed a report of its
//! key, a lost tracking connection drops everything and moves the [`Ticket`]s' epoch, and
//! `invalidate` and `set` drop their keys themselves before and after their write.

pub(crate) mod store;
pub(crate) mod track;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;

use self::store::{Held, Store};
use self::track::Servers;
use crate::cache::{Shared, Spec};
use crate::codec::{open, Cached, Codec};
use crate::fill::lease::now_ms;
use crate::options::Options;
use crate::stats::Stat;

/// The settings of a near cache: hot ids kept in process memory, in front of Redis (see
/// [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use ruecache::NearCache;
///
/// // Up to 10,000 ids, each kept at most 30 s (the default).
/// let near = NearCache::new(10_000).max_age(Duration::from_secs(30));
/// assert_eq!(near, NearCache::new(10_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCache {
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) max_age: Duration,
    pub(crate) prefix: Option<&'static str>,
}

impl NearCache {
    /// How long an entry is kept at most unless set otherwise: 30 s.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);

    /// A near cache of up to `max_entries` ids, each kept at most
    /// [`DEFAULT_MAX_AGE`](Self::DEFAULT_MAX_AGE).
    pub const fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            max_bytes: None,
            max_age: Self::DEFAULT_MAX_AGE,
            prefix: None,
        }
    }

    /// Bounds the near cache by weight too: at most about this many bytes of keys and encoded
    /// values, counting 128 bytes more per entry for the bookkeeping (default: bounded by
    /// entries only). The bound is split evenly between 64 shards by key: a value larger than
    /// a 64th of it is not kept.
    pub const fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// How long an entry is kept at most, whatever Redis reports (1 ms up to
    /// [`Options::MAX_TTL`]).
    pub const fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The text every data key of the cache starts with, for a cache whose keys come from a
    /// function ([`Cache::builder_with_key_fn`](crate::Cache::builder_with_key_fn)): Redis
    /// reports the changes of keys under it. A key that does not start with it is never kept.
    /// Without it such a cache has Redis report every key's changes. A template cache uses the
    /// text before the template's first `{id}`.
    pub const fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = Some(prefix);
        self
    }

    pub(crate) const fn check(&self) -> Result<(), &'static str> {
        if self.max_entries == 0 {
            return Err("`near_cache` needs room for at least one entry, e.g. 10000");
        }
        if let Some(0) = self.max_bytes {
            return Err("the near cache's `max_bytes` must be above zero, e.g. 64 MiB");
        }
        if self.max_age.as_nanos() < 1_000_000
            || self.max_age.as_nanos() > Options::MAX_TTL.as_nanos()
        {
            return Err(
                "the near cache's `max_age` must be between 1 ms and 100 years \
                 (`Options::MAX_TTL`), e.g. 30 s",
            );
        }
        Ok(())
    }
}

/// One cache's near cache in one process: the entries, and whether Redis's reports can be
/// trusted right now.
pub(crate) struct Near {
    settings: NearCache,
    /// Keys that do not start with it are never kept (Redis would not report their changes).
    prefix: Box<str>,
    store: Store,
    /// Every node's tracking connection is up.
    live: AtomicBool,
    /// Moves whenever a tracking connection is lost.
    epoch: AtomicU64,
    /// Held while tracking is turned on or off, so that a loss during the turning on wins.
    turning: std::sync::Mutex<()>,
    started: AtomicBool,
    servers: Arc<Servers>,
    /// The cache's counters.
    spec: Shared<Spec>,
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near")
            .field("settings", &self.settings)
            .field("prefix", &self.prefix)
            .field("live", &self.live.load(SeqCst))
            .finish_non_exhaustive()
    }
}

/// What a read remembers before it is sent (see the module docs, rules 1 and 2).
pub(crate) struct Ticket {
    epoch: u64,
    seq: u64,
    sent: Instant,
}

impl Near {
    pub(crate) fn new(
        settings: NearCache,
        prefix: &str,
        servers: Arc<Servers>,
        spec: Shared<Spec>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            prefix: prefix.into(),
            store: Store::new(settings.max_entries, settings.max_bytes),
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            turning: std::sync::Mutex::new(()),
            started: AtomicBool::new(false),
            servers,
            spec,
        })
    }

    /// Whether the near cache can answer now; starts its tracking on first use (from a
    /// runtime).
    pub(crate) fn serving(self: &Arc<Self>) -> bool {
        if !self.started.load(SeqCst) {
            self.start();
        }
        self.live.load(SeqCst)
    }

    fn start(self: &Arc<Self>) {
        if self.started.swap(true, SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(track::run(
                    Arc::downgrade(self),
                    Arc::clone(&self.servers),
                    self.prefix.clone(),
                ));
            }
            Err(_) => self.started.store(false, SeqCst),
        }
    }

    /// What the near cache holds for `key`: `Some(Some(value))`, `Some(None)` for "absent".
    /// Not counted: see [`count`](Self::count).
    pub(crate) fn get<T>(&self, codec: &impl Codec<T>, key: &[u8]) -> Option<Option<T>> {
        match self.store.get(key, Instant::now()) {
            Some(Held::Absent) => Some(None),
            Some(Held::Value(bytes)) => match codec.decode(&bytes) {
                Ok(value) => Some(Some(value)),
                Err(_) => {
                    self.store.invalidate(key);
                    None
                }
            },
            None => None,
        }
    }

    /// Counts the near hits and misses of one call.
    pub(crate) fn count(&self, hits: usize, misses: usize) {
        self.spec.stats.add(Stat::NearHits, hits);
        self.spec.stats.add(Stat::NearMisses, misses);
    }

    /// What a read remembers before it is sent; `None` if its reply cannot be kept.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        let epoch = self.epoch.load(SeqCst);
        let seq = self.store.seq();
        self.live.load(SeqCst).then(|| Ticket {
            epoch,
            seq,
            sent: Instant::now(),
        })
    }

    /// Keeps what a read of `key` returned, if it is a fresh value or "absent" and nothing
    /// says it may be out of date (see the module docs).
    pub(crate) fn offer(&self, ticket: &Ticket, key: &str, reply: &Value, options: &Options) {
        let Value::BulkString(bytes) = reply else {
            return;
        };
        if !key.starts_with(&*self.prefix) {
            return;
        }
        let max_age = self.settings.max_age;
        let now = Instant::now();
        let (held, ttl_ms) = match open(bytes) {
            Some(Cached::Present(found)) if found.refresh_deadline.is_none() => {
                let ttl_ms = match found.timing {
                    // Kept until its expiry; with refresh-ahead, only until the stretch before
                    // it in which reads (of Redis) may draw a refresh: the draw's odds are
                    // e^(-left / (δ·β)), below 0.04 % at 8·δ·β.
                    Some(timing) => {
                        let draws = options.refresh_beta.map_or(0, |beta| {
                            (f64::from(timing.fill_ms) * beta * 8.0).ceil() as u64
                        });
                        match timing.expiry.checked_sub(now_ms() + draws) {
                            Some(left) if left > 0 => left,
                            _ => return, // stale, or due for a draw
                        }
                    }
                    None => options.data_ttl_ms(key),
                };
                (Held::Value(bytes[found.start..].into()), ttl_ms)
            }
            Some(Cached::Absent) => (Held::Absent, options.absent_ttl_ms(key)),
            _ => return,
        };
        let keep = match ttl_ms {
            0 => max_age,
            ms => max_age.min(Duration::from_millis(ms)),
        };
        self.store.insert(
            key.as_bytes(),
            held,
            now + keep,
            ticket.seq,
            ticket.sent,
            || self.live.load(SeqCst) && self.epoch.load(SeqCst) == ticket.epoch,
        );
    }

    /// Drops `keys` (an invalidation pushed by Redis, or this process's own write).
    pub(crate) fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let dropped = keys
            .into_iter()
            .filter(|key| self.store.invalidate(key))
            .count();
        self.spec.stats.add(Stat::NearInvalidations, dropped);
    }

    /// Drops everything (a `FLUSHALL`, or a lost tracking connection).
    fn clear(&self) {
        let dropped = self.store.clear();
        self.spec.stats.add(Stat::NearInvalidations, dropped);
    }

    /// The epoch now: a round of tracking connections notes it before it opens them.
    fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    /// Tracking is on at every node: entries can be served and kept, unless a connection was
    /// lost since the round noted `epoch` (then `false`).
    fn up(&self, epoch: u64) -> bool {
        let _turning = self.turning.lock().unwrap_or_else(|e| e.into_inner());
        let on = self.epoch.load(SeqCst) == epoch;
        self.live.store(on, SeqCst);
        on
    }

    /// A tracking connection was lost: invalidations may have been missed.
    fn down(&self) {
        {
            let _turning = self.turning.lock().unwrap_or_else(|e| e.into_inner());
            self.live.store(false, SeqCst);
            self.epoch.fetch_add(1, SeqCst);
        }
        self.clear();
    }

    /// What [`Cache::near_status`](crate::Cache::near_status) reports.
    pub(crate) fn status(self: &Arc<Self>) -> NearStatus {
        NearStatus {
            tracking: self.serving(),
            entries: self.store.len(),
        }
    }
}

/// How a cache's near cache stands, from [`Cache::near_status`](crate::Cache::near_status).
///
/// # Examples
///
/// ```no_run
/// # fn run(cache: ruecache::Cache<u64, String>) {
/// if let Some(near) = cache.near_status() {
///     println!("{} ids in memory, tracking {}", near.entries, near.tracking);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearStatus {
    /// Every Redis node's tracking connection is up: the near cache answers and keeps values.
    /// While it is not, calls read Redis.
    pub tracking: bool,
    /// How many ids are held (expired ones included until they are looked up or evicted).
    pub entries: usize,
}
