//! The stale-write guard: every case of the commit script, forced by pausing a fetch and changing
//! the keys while it is paused.

mod support;

use std::collections::HashMap;

use ruecache_tests::{both, Target};
use support::{cmd, exists, paused_fill, value, Gate};

async fn invalidation_during_fetch_returns_value_but_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1, 2], &mut gate).await;
    cache.invalidate([1]).await.unwrap();
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, value(1)), (2, value(2))]),
        "the caller still gets what it fetched, the invalidated id included"
    );
    let conn = cache.connection();
    assert!(
        !exists(conn, cache.data_key(&1).unwrap()).await,
        "the invalidated id is not written"
    );
    assert!(
        exists(conn, cache.data_key(&2).unwrap()).await,
        "the other id is written"
    );
    assert!(
        !exists(conn, cache.keys(&1).unwrap().lock).await,
        "the lock is released anyway"
    );
    assert_eq!(cache.stats().stale_commits, 1);
    assert_eq!(cache.stats().commits, 1);
}

/// A version key lost while a fill is in its fetch (evicted, expired, deleted by hand), then an
/// invalidation: the fill read the version from before, and must not write.
///
/// This is what a version scheme based on `INCR` gets wrong. There the first invalidation makes
/// the version `1` and the fill reads `1`; with the key gone, the next invalidation's `INCR`
/// creates it again at `1`, the same number the fill read, so the fill's commit finds its version
/// unchanged and writes the value from before the invalidation, to stay until its TTL. A fresh
/// random version per invalidation never repeats one a fill may have read.
async fn lost_version_then_invalidation_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let keys = cache.keys(&1).unwrap();
    cache.invalidate([1]).await.unwrap();
    let before: Vec<u8> = cmd(conn, "GET", &keys.version).await;
    assert!(!before.is_empty(), "the invalidation set a version");

    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    let read: Vec<u8> = cmd(conn, "GET", &keys.version).await;
    assert_eq!(read, before, "the fill read the version and kept it");
    cmd::<()>(conn, "DEL", &keys.version).await;
    cache.invalidate([1]).await.unwrap();
    let after: Vec<u8> = cmd(conn, "GET", &keys.version).await;
    assert!(!after.is_empty(), "the invalidation set a version again");
    assert_ne!(
        after, before,
        "the version re-created after its loss equals the one the paused fill read"
    );
    release.send(()).unwrap();

    let got = task.await.unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, value(1))]),
        "the caller gets what it fetched"
    );
    assert!(
        !exists(conn, &keys.data).await,
        "the fill that read the version from before the invalidation wrote its value"
    );
    assert!(
        !exists(conn, &keys.lock).await,
        "the lock is released anyway"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.stale_commits, stats.lost_versions, stats.commits),
        (1, 0, 0),
        "refused for a changed version, not a missing one"
    );
}

async fn commit_with_lock_held_by_another_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    let keys = cache.keys(&1).unwrap();
    // Our lock expired and another caller took it.
    cmd::<()>(
        cache.connection(),
        "SET",
        (&keys.lock, "another-callers-token", "PX", 60_000),
    )
    .await;
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, value(1))]),
        "the caller gets what it fetched"
    );
    assert!(!exists(cache.connection(), &keys.data).await);
    let lock: String = cmd(cache.connection(), "GET", &keys.lock).await;
    assert_eq!(
        lock, "another-callers-token",
        "another caller's lock is left alone"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.lost_locks, stats.stale_commits, stats.commits),
        (1, 0, 0),
        "refused for the lock, not as stale"
    );
}

async fn commit_without_lock_still_writes(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    let keys = cache.keys(&1).unwrap();
    cmd::<()>(cache.connection(), "DEL", &keys.lock).await; // our lock expired, nobody took it
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(got, HashMap::from([(1, value(1))]));
    assert!(
        exists(cache.connection(), &keys.data).await,
        "version unchanged: written"
    );
    assert!(
        !exists(cache.connection(), &keys.lock).await,
        "no lock left"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.commits, stats.stale_commits, stats.lost_locks),
        (1, 0, 0)
    );
}

async fn version_expiring_mid_fetch_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    let keys = cache.keys(&1).unwrap();
    cmd::<()>(cache.connection(), "PEXPIRE", (&keys.version, 1)).await;
    support::eventually("the version key expires", async || {
        !exists(cache.connection(), &keys.version).await
    })
    .await;
    release.send(()).unwrap();
    task.await.unwrap();
    assert!(
        !exists(cache.connection(), &keys.data).await,
        "a missing version refuses the write"
    );
    let stats = cache.stats();
    assert_eq!((stats.stale_commits, stats.lost_versions), (1, 1));
}

async fn happy_path_writes_and_releases_the_lock(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    let keys = cache.keys(&1).unwrap();
    assert!(
        exists(cache.connection(), &keys.lock).await,
        "the lock is held during the fetch"
    );
    let pttl: i64 = cmd(cache.connection(), "PTTL", &keys.lock).await;
    assert!(
        (1..=5_000).contains(&pttl),
        "the lock expires (PTTL {pttl})"
    );
    release.send(()).unwrap();
    task.await.unwrap();
    assert!(exists(cache.connection(), &keys.data).await);
    assert!(!exists(cache.connection(), &keys.lock).await);
    let version_pttl: i64 = cmd(cache.connection(), "PTTL", &keys.version).await;
    assert!(
        version_pttl > 500_000,
        "the version key has the 10 min TTL ({version_pttl})"
    );
}

async fn garbage_version_self_heals_on_invalidate(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let keys = cache.keys(&1).unwrap();
    cmd::<()>(
        cache.connection(),
        "SET",
        (&keys.version, "not a number \u{0}\u{1}"),
    )
    .await;
    cache.invalidate([1]).await.unwrap();
    let version: Vec<u8> = cmd(cache.connection(), "GET", &keys.version).await;
    assert_ne!(version, b"not a number \x00\x01".to_vec());
    let source = support::Source::default();
    let _: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert!(exists(cache.connection(), &keys.data).await);
    assert_eq!(cache.stats().commits, 1);
}

both!(
    invalidation_during_fetch_returns_value_but_writes_nothing,
    lost_version_then_invalidation_writes_nothing,
    commit_with_lock_held_by_another_writes_nothing,
    commit_without_lock_still_writes,
    version_expiring_mid_fetch_writes_nothing,
    happy_path_writes_and_releases_the_lock,
    garbage_version_self_heals_on_invalidate,
);
