//! A failing fetch: its error comes back unchanged, its locks are released, nothing is written.

mod support;

use std::collections::HashMap;

use ruecache_tests::{both, Target};
use support::{cache, exists, Source, TestError};

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
    for id in 1..=3 {
        let keys = cache.keys(&id).unwrap();
        assert!(
            !exists(cache.connection(), &keys.lock).await,
            "lock of {id} released"
        );
        assert!(
            !exists(cache.connection(), &keys.data).await,
            "nothing written for {id}"
        );
    }
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
