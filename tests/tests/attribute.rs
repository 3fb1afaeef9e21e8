//! `#[cached_batch]` against real Redis: the body runs only for missing ids, both key spellings
//! store `widgets:{42}`, the `ttl` argument reaches Redis, every other argument (`jitter`,
//! `lock_ttl`, `timeout`, `codec`) reaches the cache's options, the options at the arguments'
//! limits are valid, the generated companion invalidates, two service instances on separate
//! connections share one fill, the body's own error reaches the caller unchanged, and the
//! single-item and batch forms of one template share keys.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruecache::{Cache, Connection, HasConnection, Options, Raw};
use ruecache_tests::{both, Target};
use support::{cmd, exists, value, Gate, GateHandle, TestError};

struct Service {
    redis: Connection,
    calls: Arc<Mutex<Vec<Vec<u64>>>>,
    gate: Option<GateHandle>,
    /// While set, the source fails.
    down: AtomicBool,
}

impl HasConnection for Service {
    fn cache_connection(&self) -> &Connection {
        &self.redis
    }
}

impl Service {
    async fn new(t: Target) -> Self {
        Self {
            redis: t.connect().await,
            calls: Arc::default(),
            gate: None,
            down: AtomicBool::new(false),
        }
    }

    async fn load(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.calls.lock().unwrap().push(ids.clone());
        if self.down.load(Ordering::SeqCst) {
            return Err(TestError::Source("database down"));
        }
        if let Some(gate) = &self.gate {
            gate.pause(&ids).await;
        }
        Ok(ids
            .into_iter()
            .filter(|&id| id != 404)
            .map(|id| (id, value(id)))
            .collect())
    }

    fn calls(&self) -> Vec<Vec<u64>> {
        let mut calls = self.calls.lock().unwrap().clone();
        calls.iter_mut().for_each(|c| c.sort_unstable());
        calls
    }

    #[ruecache::cached_batch(key = "attr:fill:{{{id}}}", ttl = "5m")]
    async fn get_fill(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "widgets:{{{id}}}", ttl = "5m")]
    async fn get_braces(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "widgets:<<<id>>>", ttl = "5m")]
    async fn get_angles(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:ttl:{{{id}}}", ttl = "1h30m")]
    async fn get_long(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:forever:{{{id}}}", ttl = "none")]
    async fn get_forever(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:one:{{{id}}}", ttl = "5m")]
    async fn get_one(&self, id: u64) -> Result<Option<String>, TestError> {
        Ok(self.load(vec![id]).await?.remove(&id))
    }

    // One method per target: a method's counters are in its `static` spec, shared by every
    // instance in the process, and the standalone and cluster runs of a test run in parallel.
    #[ruecache::cached_batch(key = "attr:shared:{{{id}}}", ttl = "5m")]
    async fn get_shared_standalone(
        &self,
        ids: Vec<u64>,
    ) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:shared:{{{id}}}", ttl = "5m")]
    async fn get_shared_cluster(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    /// The target's own shared-fill method.
    async fn get_shared(
        &self,
        t: Target,
        ids: Vec<u64>,
    ) -> Result<HashMap<u64, String>, TestError> {
        match t {
            Target::Standalone => self.get_shared_standalone(ids).await,
            Target::Cluster => self.get_shared_cluster(ids).await,
        }
    }

    /// The cache of the target's own shared-fill method.
    fn get_shared_cache(&self, t: Target) -> Cache<u64, String> {
        match t {
            Target::Standalone => self.get_shared_standalone_cache(),
            Target::Cluster => self.get_shared_cluster_cache(),
        }
    }

    // Gives up waiting for another holder's lock after 300 ms.
    #[ruecache::cached_batch(key = "attr:hurried:{{{id}}}", lock_ttl = "1m", timeout = "300ms")]
    async fn get_hurried(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    // A lock left behind would hold the next caller up for a minute, past its timeout.
    #[ruecache::cached_batch(key = "attr:err:{{{id}}}", lock_ttl = "1m", timeout = "10s")]
    async fn get_or_fail(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    // Every duration argument and `jitter`, each unlike its default.
    #[ruecache::cached_batch(
        key = "attr:tuned:{{{id}}}",
        ttl = "2h",
        jitter = 0.0,
        lock_ttl = "45s",
        timeout = "12s"
    )]
    async fn get_tuned(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:bytes:{{{id}}}", codec = ruecache::Raw)]
    async fn get_bytes(&self, id: u64) -> Result<Option<Vec<u8>>, TestError> {
        Ok(Some(vec![0xff, 0xfe, 0xfd, id as u8]))
    }

    // Only their options are looked at: each argument at its upper limit, then its lower one.
    #[allow(dead_code)]
    #[ruecache::cached_batch(
        key = "attr:longest:{{{id}}}",
        ttl = "36500d",
        jitter = 1.0,
        lock_ttl = "36500d",
        timeout = "365d"
    )]
    async fn get_longest(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[allow(dead_code)]
    #[ruecache::cached_batch(
        key = "attr:shortest:{{{id}}}",
        ttl = "1ms",
        jitter = 0.0,
        lock_ttl = "1ms",
        unlock_threshold = "0ms",
        timeout = "1ms"
    )]
    async fn get_shortest(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[allow(dead_code)]
    #[ruecache::cached_batch(
        key = "attr:every:{{{id}}}",
        absent_ttl = "30s",
        backoff_min = "10ms",
        backoff_max = "2s",
        unlock_threshold = "50ms",
        fallback_to_source = true,
        stale_for = "1h",
        stale_retry = "1s",
        fetch_timeout = "2s",
        fetch_soft_timeout = "200ms",
        name = "every option"
    )]
    async fn get_every(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:pair:{{{id}}}", ttl = "5m")]
    async fn get_pairs(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
    }

    #[ruecache::cached_batch(key = "attr:pair:<<<id>>>", ttl = "5m")]
    async fn get_pair(&self, id: u64) -> Result<Option<String>, TestError> {
        Ok(self.load(vec![id]).await?.remove(&id))
    }
}

async fn body_runs_only_for_missing_ids(t: Target) {
    let s = Service::new(t).await;
    s.get_fill_cache().invalidate([1, 2, 3, 404]).await.unwrap(); // in case REDIS_URL is reused
    let first = s.get_fill(vec![1, 2, 404]).await.unwrap();
    let second = s.get_fill(vec![1, 2, 3, 404]).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(second, (1..=3).map(|id| (id, value(id))).collect());
    assert_eq!(s.calls(), vec![vec![1, 2, 404], vec![3]]);
}

async fn both_key_spellings_store_widgets_42(t: Target) {
    let s = Service::new(t).await;
    s.get_braces_cache().invalidate([42]).await.unwrap();
    s.get_braces(vec![42]).await.unwrap();
    assert!(exists(&s.redis, "widgets:{42}").await);
    assert_eq!(
        s.get_angles(vec![42]).await.unwrap()[&42],
        value(42),
        "same key, a hit"
    );
    assert_eq!(s.calls().len(), 1);
    s.get_angles_cache().invalidate([42]).await.unwrap();
    assert!(!exists(&s.redis, "widgets:{42}").await);
    s.get_angles(vec![42]).await.unwrap();
    assert!(exists(&s.redis, "widgets:{42}").await);
    assert_eq!(s.calls().len(), 2, "the invalidated id was fetched again");
}

async fn pttl_matches_the_ttl_argument(t: Target) {
    let s = Service::new(t).await;
    s.get_long_cache().invalidate([7]).await.unwrap();
    s.get_forever_cache().invalidate([7]).await.unwrap();
    s.get_long(vec![7]).await.unwrap();
    s.get_forever(vec![7]).await.unwrap();
    let long: i64 = cmd(&s.redis, "PTTL", "attr:ttl:{7}").await;
    assert!(
        (4_300_000..=6_480_000).contains(&long),
        "1h30m ± 20 %: {long}"
    );
    let forever: i64 = cmd(&s.redis, "PTTL", "attr:forever:{7}").await;
    assert_eq!(forever, -1);
}

/// Each argument is in the companion cache's options, and nothing else is changed: they are the
/// options the builder makes with the same settings. An argument left out keeps its default.
async fn every_argument_reaches_the_cache_options(t: Target) {
    let s = Service::new(t).await;
    let tuned = s.get_tuned_cache();
    let options = tuned.options();
    assert_eq!(options.ttl(), Some(Duration::from_secs(2 * 60 * 60)));
    assert_eq!(options.jitter(), 0.0);
    assert_eq!(options.lock_ttl(), Duration::from_secs(45));
    assert_eq!(options.timeout(), Duration::from_secs(12));
    let built = Cache::<u64, String>::builder(s.redis.clone(), "attr:tuned:{{{id}}}")
        .ttl(Duration::from_secs(2 * 60 * 60))
        .jitter(0.0)
        .lock_ttl(Duration::from_secs(45))
        .timeout(Duration::from_secs(12))
        .name("get_tuned")
        .build()
        .unwrap();
    assert_eq!(options, built.options());

    let failing = s.get_or_fail_cache();
    assert_eq!(failing.options().lock_ttl(), Duration::from_secs(60));
    assert_eq!(failing.options().timeout(), Duration::from_secs(10));
    assert_eq!(failing.options().ttl(), Options::DEFAULT.ttl());
    assert_eq!(failing.options().jitter(), Options::DEFAULT.jitter());

    // `ttl = "5m"` is the default, and no other argument is given: the defaults, and the
    // method's name.
    assert_eq!(
        *s.get_fill_cache().options(),
        Options::DEFAULT.set_name("get_fill")
    );
    assert_eq!(
        s.get_long_cache().options().ttl(),
        Some(Duration::from_secs(90 * 60))
    );
    assert_eq!(s.get_forever_cache().options().ttl(), None);

    // `codec`: the companion's type says it, and values are stored with it (MessagePack would
    // write each of these bytes as two).
    let bytes: Cache<u64, Vec<u8>, Raw> = s.get_bytes_cache();
    bytes.invalidate([9]).await.unwrap();
    let nine = vec![0xff, 0xfe, 0xfd, 9];
    assert_eq!(s.get_bytes(9).await.unwrap(), Some(nine.clone()));
    let stored: Vec<u8> = cmd(&s.redis, "GET", bytes.data_key(&9).unwrap()).await;
    assert!(stored.ends_with(&nine), "stored as raw bytes: {stored:?}");
    assert_eq!(s.get_bytes(9).await.unwrap(), Some(nine), "and read back");
}

/// The options of arguments at their limits (the longest TTLs and timeout, full jitter; then the
/// shortest, no jitter) are ones the builder accepts, with the two adjustments the attribute
/// makes: a version TTL that outlives a long lock, an unlock threshold under a short one.
async fn options_at_the_limits_are_valid(t: Target) {
    let s = Service::new(t).await;
    let longest = *s.get_longest_cache().options();
    assert_eq!(longest.ttl(), Some(Options::MAX_TTL));
    assert_eq!(longest.lock_ttl(), Options::MAX_TTL);
    assert_eq!(longest.timeout(), Options::MAX_TIMEOUT);
    assert_eq!(longest.jitter(), 1.0);
    let built = Cache::<u64, String>::builder(s.redis.clone(), "attr:longest:{{{id}}}")
        .ttl(Options::MAX_TTL)
        .jitter(1.0)
        .lock_ttl(Options::MAX_TTL)
        .timeout(Options::MAX_TIMEOUT)
        .name("get_longest")
        .build()
        .expect("the longest options are valid");
    assert_eq!(&longest, built.options());

    let shortest = *s.get_shortest_cache().options();
    let ms = Duration::from_millis(1);
    assert_eq!(
        (shortest.ttl(), shortest.lock_ttl(), shortest.timeout()),
        (Some(ms), ms, ms)
    );
    let built = Cache::<u64, String>::builder(s.redis.clone(), "attr:shortest:{{{id}}}")
        .ttl(ms)
        .jitter(0.0)
        .lock_ttl(ms)
        .unlock_threshold(Duration::ZERO)
        .timeout(ms)
        .name("get_shortest")
        .build()
        .expect("the shortest options are valid");
    assert_eq!(&shortest, built.options());

    // Every other argument, through the same setters as the builder's; a cache is named after
    // its method unless `name` says otherwise.
    let every = *s.get_every_cache().options();
    let built = Cache::<u64, String>::builder(s.redis.clone(), "attr:every:{{{id}}}")
        .absent_ttl(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_secs(2))
        .unlock_threshold(Duration::from_millis(50))
        .fallback_to_source(true)
        .stale_for(Duration::from_secs(3600))
        .stale_retry(Duration::from_secs(1))
        .fetch_timeout(Duration::from_secs(2))
        .fetch_soft_timeout(Duration::from_millis(200))
        .name("every option")
        .build()
        .expect("valid options");
    assert_eq!(&every, built.options());
    assert_eq!(s.get_tuned_cache().options().name(), Some("get_tuned"));
}

/// `lock_ttl` and `jitter` as Redis sees them: the lease of a fill held open at its fetch has the
/// lock TTL as its deadline, and with no jitter the value's TTL is the `ttl` itself.
async fn lock_ttl_and_jitter_reach_redis(t: Target) {
    let mut gate = Gate::default();
    let s = Arc::new(Service {
        gate: Some(gate.handle()),
        ..Service::new(t).await
    });
    let keys = s.get_tuned_cache().keys(&7).unwrap();
    s.get_tuned_cache().invalidate([7]).await.unwrap();
    let s2 = s.clone();
    let fill = tokio::spawn(async move { s2.get_tuned(vec![7]).await.unwrap() });
    let (_, release) = gate.paused().await;
    let lease = support::lease(&s.redis, &keys.data).await.expect("leased");
    let lock = support::lease_deadline(&lease).saturating_sub(support::now_ms());
    assert!(
        (30_000..=45_000).contains(&lock),
        "lock_ttl 45s (default 5s): {lock} ms left"
    );
    release.send(()).unwrap();
    assert_eq!(fill.await.unwrap()[&7], value(7));
    let data: i64 = cmd(&s.redis, "PTTL", &keys.data).await;
    assert!(
        (7_080_000..=7_200_000).contains(&data),
        "ttl 2h with no jitter: {data}"
    );
}

async fn single_item_form_and_companion_invalidation(t: Target) {
    let s = Service::new(t).await;
    s.get_one_cache().invalidate([5, 404]).await.unwrap();
    assert_eq!(s.get_one(5).await.unwrap(), Some(value(5)));
    assert_eq!(s.get_one(5).await.unwrap(), Some(value(5)));
    assert_eq!(s.get_one(404).await.unwrap(), None);
    assert_eq!(s.calls().len(), 2);
    s.get_one_cache().invalidate([5]).await.unwrap();
    assert_eq!(s.get_one(5).await.unwrap(), Some(value(5)));
    assert_eq!(
        s.calls(),
        vec![vec![5], vec![404], vec![5]],
        "refetched after invalidation"
    );
}

/// Instance A's fill is held open until instance B (another connection) is seen waiting for it.
/// The wait is counted by the target's own method, so the other target's run, in parallel, cannot
/// release A before B waits.
async fn two_instances_share_one_fill(t: Target) {
    let mut gate = Gate::default();
    let a = Arc::new(Service {
        gate: Some(gate.handle()),
        ..Service::new(t).await
    });
    let b = Arc::new(Service::new(t).await);
    let ids: Vec<u64> = (1000..1010).collect();
    a.get_shared_cache(t).invalidate(ids.clone()).await.unwrap();
    let waits_before = b.get_shared_cache(t).stats().lock_waits;
    let (a2, ids_a) = (a.clone(), ids.clone());
    let task_a = tokio::spawn(async move { a2.get_shared(t, ids_a).await.unwrap() });
    let (_, release) = gate.paused().await;
    let (b2, ids_b) = (b.clone(), ids.clone());
    let task_b = tokio::spawn(async move { b2.get_shared(t, ids_b).await.unwrap() });
    let b_stats = b.get_shared_cache(t);
    support::eventually("B waiting for A's locks", async || {
        b_stats.stats().lock_waits > waits_before
    })
    .await;
    release.send(()).unwrap();
    let (got_a, got_b) = (task_a.await.unwrap(), task_b.await.unwrap());
    assert_eq!(got_a, got_b);
    assert_eq!(got_b.len(), 10);
    assert_eq!(a.calls().len(), 1);
    assert!(b.calls().is_empty(), "B read A's fill instead of fetching");
}

/// The body's `Err` is the caller's `Err`, the same `TestError` value rather than a cache error
/// wrapping it, and its locks are released: the id is fetched again at once.
async fn the_body_error_reaches_the_caller_unchanged(t: Target) {
    let s = Service::new(t).await;
    let cache = s.get_or_fail_cache();
    cache.invalidate([31, 32]).await.unwrap();
    s.down.store(true, Ordering::SeqCst);
    assert_eq!(
        s.get_or_fail(vec![31, 32]).await,
        Err(TestError::Source("database down"))
    );
    for id in [31, 32] {
        let keys = cache.keys(&id).unwrap();
        assert!(
            !exists(&s.redis, keys.data).await,
            "no lease of {id} left behind, and nothing cached for it"
        );
    }
    s.down.store(false, Ordering::SeqCst);
    let found = s.get_or_fail(vec![31, 32]).await.unwrap();
    assert_eq!(found, [31, 32].map(|id| (id, value(id))).into());
    assert_eq!(s.calls(), vec![vec![31, 32], vec![31, 32]]);
}

/// A cache error reaches the caller as its own error type, through `From<ruecache::Error>`: here
/// the timeout of a call that waits for a lease another holder keeps (written by hand, shaped like
/// one of a connection without liveness). The body never runs.
async fn a_cache_error_reaches_the_caller_as_its_error_type(t: Target) {
    let s = Service::new(t).await;
    let cache = s.get_hurried_cache();
    cache.invalidate([41]).await.unwrap();
    let lock = cache.keys(&41).unwrap().data;
    cmd::<()>(&s.redis, "SET", (&lock, support::unchecked_lease(4_000))).await;
    let got = s.get_hurried(vec![41]).await;
    let expected = TestError::from(ruecache::Error::Timeout {
        after: Duration::from_millis(300),
        cache: Some("get_hurried"),
    });
    assert_eq!(got, Err(expected));
    let Err(TestError::Cache(message)) = got else {
        unreachable!()
    };
    assert!(
        message.starts_with("cache `get_hurried`: timed out after 300ms"),
        "the message names the cache: {message}"
    );
    assert!(s.calls().is_empty(), "the body did not run");
    cmd::<()>(&s.redis, "DEL", &lock).await;
    assert_eq!(s.get_hurried(vec![41]).await.unwrap()[&41], value(41));
}

/// `get_pairs` (batch) and `get_pair` (single item) have the same template, in its two spellings:
/// what one fills, the other reads.
async fn single_item_and_batch_forms_share_keys(t: Target) {
    let s = Service::new(t).await;
    s.get_pairs_cache().invalidate([21, 22, 404]).await.unwrap();
    s.get_pairs(vec![21, 22, 404]).await.unwrap();
    assert_eq!(s.calls(), vec![vec![21, 22, 404]]);
    assert_eq!(s.get_pair(21).await.unwrap(), Some(value(21)));
    assert_eq!(s.get_pair(22).await.unwrap(), Some(value(22)));
    assert_eq!(s.get_pair(404).await.unwrap(), None, "cached as absent");
    assert_eq!(s.calls().len(), 1, "the single-item body ran");
    assert_eq!(
        s.get_pair_cache().data_key(&21).unwrap(),
        s.get_pairs_cache().data_key(&21).unwrap()
    );
}

both!(
    body_runs_only_for_missing_ids,
    both_key_spellings_store_widgets_42,
    pttl_matches_the_ttl_argument,
    every_argument_reaches_the_cache_options,
    options_at_the_limits_are_valid,
    lock_ttl_and_jitter_reach_redis,
    single_item_form_and_companion_invalidation,
    two_instances_share_one_fill,
    the_body_error_reaches_the_caller_unchanged,
    a_cache_error_reaches_the_caller_as_its_error_type,
    single_item_and_batch_forms_share_keys,
);
