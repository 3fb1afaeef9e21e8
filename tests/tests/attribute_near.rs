//! `#[cached_batch(near = "100", near_max_age = "1m")]`: the arguments reach the companion's
//! options, the method's calls are answered from process memory once its ids were read from
//! Redis, and after the companion's `invalidate` returns the next call gets the source's new
//! value. On a connection that does not know its servers, the method reads Redis only and says
//! so once.

mod support;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruecache::{Cache, Connection, HasConnection, NearCache};
use ruecache_tests::{both, Target};
use support::{eventually, value, TestError};

struct Service {
    redis: Connection,
    /// Bumped to change what the source answers, as a write to a database row would.
    version: AtomicUsize,
    /// The ids of each run of the body.
    calls: Mutex<Vec<Vec<u64>>>,
}

impl HasConnection for Service {
    fn cache_connection(&self) -> &Connection {
        &self.redis
    }
}

impl Service {
    fn new(redis: Connection) -> Self {
        Self {
            redis,
            version: AtomicUsize::new(0),
            calls: Mutex::default(),
        }
    }

    fn value(&self, id: u64) -> String {
        format!("{} v{}", value(id), self.version.load(SeqCst))
    }

    fn load(&self, mut ids: Vec<u64>) -> HashMap<u64, String> {
        ids.sort_unstable();
        self.calls.lock().unwrap().push(ids.clone());
        ids.into_iter().map(|id| (id, self.value(id))).collect()
    }

    fn calls(&self) -> Vec<Vec<u64>> {
        self.calls.lock().unwrap().clone()
    }

    // One method per target: a method's counters are in its `static` spec, shared by every
    // instance in the process, and the standalone and cluster runs of a test run in parallel.
    #[ruecache::cached_batch(key = "attr:near:{{{id}}}", near = "100", near_max_age = "1m")]
    async fn get_near_standalone(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        Ok(self.load(ids))
    }

    #[ruecache::cached_batch(key = "attr:near:{{{id}}}", near = "100", near_max_age = "1m")]
    async fn get_near_cluster(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        Ok(self.load(ids))
    }

    // For the connection that does not know its servers (its counters are its own too).
    #[ruecache::cached_batch(key = "attr:near_blind:{{{id}}}", near = 100)]
    async fn get_near_blind(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        Ok(self.load(ids))
    }

    /// The target's own method.
    async fn get(&self, t: Target, ids: Vec<u64>) -> HashMap<u64, String> {
        match t {
            Target::Standalone => self.get_near_standalone(ids).await,
            Target::Cluster => self.get_near_cluster(ids).await,
        }
        .expect("a call")
    }

    /// The cache of the target's own method.
    fn cache(&self, t: Target) -> Cache<u64, String> {
        match t {
            Target::Standalone => self.get_near_standalone_cache(),
            Target::Cluster => self.get_near_cluster_cache(),
        }
    }
}

async fn calls_are_answered_from_memory_and_read_their_own_writes(t: Target) {
    let s = Service::new(t.connect().await);
    let cache = s.cache(t);
    assert_eq!(
        cache.options().near_cache(),
        Some(NearCache::new(100).max_age(Duration::from_secs(60)))
    );
    cache.invalidate([1, 2, 3]).await.unwrap(); // in case REDIS_URL is reused
    let ids = vec![1, 2, 3];
    let first = s.get(t, ids.clone()).await;
    assert_eq!(first, ids.iter().map(|&id| (id, s.value(id))).collect());

    // The tracking connections come up on the first call, and a read that crossed the report
    // of the fill's own write is not kept: call until the ids are answered from memory.
    eventually("tracking on", async || {
        cache.near_status().expect("a near cache").tracking
    })
    .await;
    let mut held = false;
    for _ in 0..100 {
        let before = cache.stats().near_hits;
        assert_eq!(s.get(t, ids.clone()).await, first);
        if cache.stats().near_hits - before == 3 {
            held = true;
            break;
        }
    }
    assert!(held, "the near cache never held {ids:?}");

    let before = cache.stats();
    assert_eq!(s.get(t, ids.clone()).await, first);
    let after = cache.stats();
    assert_eq!(
        after.near_hits - before.near_hits,
        3,
        "every id from memory"
    );
    assert_eq!(after.hits, before.hits, "no read of Redis");
    assert_eq!(after.misses, before.misses);
    assert_eq!(cache.near_status().unwrap().entries, 3);
    assert_eq!(s.calls(), [vec![1, 2, 3]], "one run of the body in all");

    // A write to the source, then the companion's invalidation: the next call gets the new
    // value at once, with no wait for Redis's report.
    s.version.store(1, SeqCst);
    cache.invalidate([2]).await.unwrap();
    let got = s.get(t, ids.clone()).await;
    assert_eq!(got[&2], s.value(2), "the new value");
    assert_eq!(got[&1], first[&1], "the other ids are still cached");
    assert_eq!(got[&3], first[&3]);
    assert_eq!(s.calls(), [vec![1, 2, 3], vec![2]]);
}

both!(calls_are_answered_from_memory_and_read_their_own_writes);

/// Collects what the `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection made with `From` and no `wake_ups` does not know its servers, so it cannot open
/// tracking connections: the method reads Redis, and a warning says so once.
#[ruecache_tests::tokio::test(crate = "::ruecache_tests::tokio")]
async fn without_its_servers_the_method_reads_redis_only() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    // This thread only: the test runs on a current-thread runtime.
    let _default = tracing::subscriber::set_default(subscriber);

    let s = Service::new(Target::Standalone.connection_manager().await);
    let cache = s.get_near_blind_cache();
    assert_eq!(cache.options().near_cache(), Some(NearCache::new(100)));
    assert_eq!(cache.near_status(), None);
    cache.invalidate([1, 2]).await.unwrap(); // in case REDIS_URL is reused
    for _ in 0..3 {
        let got = s.get_near_blind(vec![1, 2]).await.unwrap();
        assert_eq!(got, [1, 2].map(|id| (id, s.value(id))).into());
    }
    let stats = cache.stats();
    assert_eq!((stats.near_hits, stats.near_misses), (0, 0));
    assert!(stats.hits >= 4, "read from Redis: {stats:?}");
    assert_eq!(s.calls(), [vec![1, 2]]);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("`near` needs a connection opened with `Connection::open`")
            .count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("get_near_blind"), "{logs}");
}
