//! `#[cached_batch(refresh_ahead = true)]`: a call that draws a refresh returns the cached value
//! at once, and the method's body runs again in the background, on a clone of the service, for
//! the batch and the single-item forms alike.

mod support;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use ruecache::{Connection, HasConnection, Lookup};
use ruecache_tests::{both, Target};
use support::{cmd, now_ms, value};

/// The service's error: refresh-ahead logs the body's errors, so it implements `Display`.
#[derive(Debug)]
enum AppError {
    Cache(ruecache::Error),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cache(e) => write!(f, "cache: {e}"),
        }
    }
}

impl From<ruecache::Error> for AppError {
    fn from(e: ruecache::Error) -> Self {
        Self::Cache(e)
    }
}

/// A service cheap to clone, as services holding a pool are: the refresh runs on a clone.
#[derive(Clone)]
struct Service {
    redis: Connection,
    /// Bumped to change what the source answers.
    version: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl HasConnection for Service {
    fn cache_connection(&self) -> &Connection {
        &self.redis
    }
}

impl Service {
    fn value(&self, id: u64) -> String {
        format!("{} v{}", value(id), self.version.load(SeqCst))
    }

    #[ruecache::cached_batch(key = "refresh:batch:{{{id}}}", refresh_ahead = true, jitter = 0.0)]
    async fn get_batch(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, AppError> {
        self.calls.fetch_add(1, SeqCst);
        Ok(ids.into_iter().map(|id| (id, self.value(id))).collect())
    }

    #[ruecache::cached_batch(
        key = "refresh:one:{{{id}}}",
        refresh_ahead = true,
        refresh_beta = 2.0
    )]
    async fn get_one(&self, id: u64) -> Result<Option<String>, AppError> {
        self.calls.fetch_add(1, SeqCst);
        Ok(Some(self.value(id)))
    }
}

/// Makes the timed value in `key` a minute from its expiry after a fetch of 50 days: the next
/// read's draw wins (P = 1 - 1e-5).
async fn make_due(conn: &Connection, key: &str) {
    let mut bytes: Vec<u8> = cmd(conn, "GET", key).await;
    assert_eq!(&bytes[..2], b"\xC1T", "a timed value in {key}");
    bytes[2..10].copy_from_slice(&(now_ms() + 60_000).to_be_bytes());
    bytes[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
    cmd::<()>(conn, "SET", (key, bytes, "KEEPTTL")).await;
}

async fn a_due_id_is_refreshed_by_the_body_on_a_clone(t: Target) {
    let s = Service {
        redis: t.connect().await,
        version: Arc::default(),
        calls: Arc::default(),
    };
    let conn = s.redis.clone();
    assert_eq!(s.get_batch_cache().options().refresh_beta(), Some(1.0));
    assert_eq!(s.get_one_cache().options().refresh_beta(), Some(2.0));

    let got = s.get_batch(vec![1, 2]).await.unwrap();
    assert_eq!(got[&1], s.value(1));
    assert_eq!(s.get_one(1).await.unwrap(), Some(s.value(1)));
    assert_eq!(s.calls.load(SeqCst), 2);
    let old = s.value(1);
    s.version.store(1, SeqCst);
    make_due(&conn, &s.get_batch_cache().data_key(&1).unwrap()).await;
    make_due(&conn, &s.get_one_cache().data_key(&1).unwrap()).await;

    let got = s.get_batch(vec![1, 2]).await.unwrap();
    assert_eq!(got[&1], old, "the cached value, at once");
    assert_eq!(s.get_one(1).await.unwrap(), Some(old));
    conn.settle().await;
    assert_eq!(
        s.calls.load(SeqCst),
        4,
        "one refresh per method, in the background"
    );
    assert_eq!(
        s.get_batch_cache().get(1).await.unwrap(),
        Lookup::Found(s.value(1))
    );
    assert_eq!(
        s.get_batch_cache().get(2).await.unwrap(),
        Lookup::Found(format!("{} v0", value(2))),
        "only the id drawn was refreshed"
    );
    assert_eq!(
        s.get_one_cache().get(1).await.unwrap(),
        Lookup::Found(s.value(1))
    );
    // The companion's counters are the method's, shared with the other target's test running
    // beside this one: they count its refreshes too.
    assert!(s.get_batch_cache().stats().refreshes >= 1);
    assert!(s.get_one_cache().stats().refreshes >= 1);
}

both!(a_due_id_is_refreshed_by_the_body_on_a_clone);
