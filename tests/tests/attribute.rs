//! `#[cached_batch]` against real Redis: the body runs only for missing ids, both key spellings
//! store `widgets:{42}`, the `ttl` argument reaches Redis, the generated companion invalidates, and
//! two service instances on separate connections share one fill.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruecache::{Connection, HasConnection};
use ruecache_tests::{both, Target};
use support::{cmd, exists, value, Gate, GateHandle, TestError};

struct Service {
    redis: Connection,
    calls: Arc<Mutex<Vec<Vec<u64>>>>,
    gate: Option<GateHandle>,
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
        }
    }

    async fn load(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.calls.lock().unwrap().push(ids.clone());
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

    #[ruecache::cached_batch(key = "attr:shared:{{{id}}}", ttl = "5m")]
    async fn get_shared(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.load(ids).await
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
async fn two_instances_share_one_fill(t: Target) {
    let mut gate = Gate::default();
    let a = Arc::new(Service {
        gate: Some(gate.handle()),
        ..Service::new(t).await
    });
    let b = Arc::new(Service::new(t).await);
    let ids: Vec<u64> = (1000..1010).collect();
    a.get_shared_cache().invalidate(ids.clone()).await.unwrap();
    let waits_before = b.get_shared_cache().stats().lock_waits;
    let (a2, ids_a) = (a.clone(), ids.clone());
    let task_a = tokio::spawn(async move { a2.get_shared(ids_a).await.unwrap() });
    let (_, release) = gate.paused().await;
    let (b2, ids_b) = (b.clone(), ids.clone());
    let task_b = tokio::spawn(async move { b2.get_shared(ids_b).await.unwrap() });
    while b.get_shared_cache().stats().lock_waits == waits_before {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    release.send(()).unwrap();
    let (got_a, got_b) = (task_a.await.unwrap(), task_b.await.unwrap());
    assert_eq!(got_a, got_b);
    assert_eq!(got_b.len(), 10);
    assert_eq!(a.calls().len(), 1);
    assert!(b.calls().is_empty(), "B read A's fill instead of fetching");
}

both!(
    body_runs_only_for_missing_ids,
    both_key_spellings_store_widgets_42,
    pttl_matches_the_ttl_argument,
    single_item_form_and_companion_invalidation,
    two_instances_share_one_fill,
);
