//! A failing fill (the fetch fails, or the codec cannot encode what it returned): the error comes
//! back, its locks are released unless they are about to expire, nothing is written.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{cache, exists, value, Source, TestError};

/// Asserts that no lease of `ids` is left and that nothing was written for them.
async fn released_and_unwritten<C: ruecache::Codec<String>>(
    cache: &Cache<u64, String, C>,
    ids: impl IntoIterator<Item = u64>,
) {
    for id in ids {
        let keys = cache.keys(&id).unwrap();
        assert!(
            !exists(cache.connection(), &keys.data).await,
            "lease of {id} released, and nothing written for it"
        );
    }
}
async fn fetch_error_aborts_and_unlocks(t: Target) {
    let ns = t.ns();
    let cache = cache(t.connect().await, &ns);
    let err = cache
        .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1, 2, 3], |_| async {
            Err::<Vec<(u64, String)>, _>(TestError::Source("database down"))
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TestError::Source("database down"),
        "the fetch error is returned unchanged"
    );
    released_and_unwritten(&cache, 1..=3).await;
    // Another caller fills at once, without waiting for the failed caller's locks to expire.
    let other = support::cache(t.connect().await, &ns);
    let source = Source::default();
    let got: HashMap<u64, String> = other
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(source.calls(), vec![vec![1, 2, 3]]);
    assert_eq!(other.stats().lock_waits, 0);
}

both!(fetch_error_aborts_and_unlocks);

/// What [`Refuses`] says when it will not encode a value.
const REFUSAL: &str = "this value has no encoding";

/// MessagePack, except that it refuses to encode one value.
struct Refuses(String);

impl ruecache::Codec<String> for Refuses {
    fn encode(&self, value: &String, out: &mut Vec<u8>) -> Result<(), ruecache::Error> {
        if *value == self.0 {
            return Err(ruecache::Error::Encode(REFUSAL.into()));
        }
        ruecache::Codec::<String>::encode(&ruecache::MsgPack, value, out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, ruecache::Error> {
        ruecache::Codec::<String>::decode(&ruecache::MsgPack, bytes)
    }
}

async fn encode_failure_is_returned_and_releases_the_locks(t: Target) {
    let ns = t.ns();
    let cache = Cache::<u64, String>::builder(t.connect().await, &support::template(&ns))
        .codec(Refuses(value(2)))
        .build()
        .expect("valid config");
    let source = Source::default();
    let err = cache
        .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TestError::Cache(ruecache::Error::Encode(REFUSAL.into()).to_string()),
        "the codec's error is returned as the caller's error"
    );
    assert_eq!(source.calls(), vec![vec![1, 2]], "both ids were fetched");
    // A release may be left to a background task: wait for it.
    cache.connection().settle().await;
    // Not even the value that encoded.
    released_and_unwritten(&cache, [1, 2]).await;
    // The same keys with a codec that works: filled at once, without waiting for any lock.
    let working = support::cache(t.connect().await, &ns);
    let source = Source::default();
    let got: HashMap<u64, String> = working
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, [(1, value(1)), (2, value(2))].into());
    assert_eq!(source.calls(), vec![vec![1, 2]]);
    assert_eq!(working.stats().lock_waits, 0);
    let cached: HashMap<u64, String> = working
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(cached, got, "the second fill was committed");
    assert_eq!(source.calls().len(), 1, "served from the cache");
}

both!(encode_failure_is_returned_and_releases_the_locks);

/// A fetch that fails, after `delay` if one is given.
async fn failing_fetch(delay: Option<Duration>) -> Result<Vec<(u64, String)>, TestError> {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Err(TestError::Source("database down"))
}

async fn no_release_when_the_lock_is_about_to_expire(t: Target) {
    let ns = t.ns();
    let lock_ttl = Duration::from_millis(400);
    let threshold = Duration::from_millis(350);
    let cache = Cache::<u64, String>::builder(t.connect().await, &support::template(&ns))
        .lock_ttl(lock_ttl)
        .unlock_threshold(threshold)
        .build()
        .expect("valid config");
    // The fetch fails after 60 ms: less than the threshold of the lock TTL is left.
    let slow = Duration::from_millis(60);
    let err = cache
        .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1, 2], |_| failing_fetch(Some(slow)))
        .await
        .unwrap_err();
    assert_eq!(err, TestError::Source("database down"));
    cache.connection().settle().await;
    for id in [1, 2] {
        let keys = cache.keys(&id).unwrap();
        let lease = support::lease(cache.connection(), &keys.data)
            .await
            .unwrap_or_else(|| panic!("the lease of {id} was not released"));
        let left = support::lease_deadline(&lease).saturating_sub(support::now_ms());
        assert!(
            left < (lock_ttl - slow).as_millis() as u64,
            "the lease of {id} was taken before the fetch ({left} ms left)"
        );
    }
    // The same cache, a fetch that fails at once: nearly the whole TTL is left, so it releases.
    let err = cache
        .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([3, 4], |_| failing_fetch(None))
        .await
        .unwrap_err();
    assert_eq!(err, TestError::Source("database down"));
    cache.connection().settle().await;
    released_and_unwritten(&cache, [3, 4]).await;
}

both!(no_release_when_the_lock_is_about_to_expire);
