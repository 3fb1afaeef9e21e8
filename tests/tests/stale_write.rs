//! The stale-write guard: every case of the commit script, forced by pausing a fetch and changing
//! the data key (which holds the fill's lease) while it is paused.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{cmd, exists, foreign_lease, lease, leased, paused_fill, value, Gate};

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
    let key = cache.data_key(&1).unwrap();
    assert!(
        !exists(conn, &key).await,
        "the invalidated id is not written"
    );
    assert!(!leased(conn, &key).await, "no lease is left");
    assert!(
        exists(conn, cache.data_key(&2).unwrap()).await,
        "the other id is written"
    );
    assert_eq!(cache.stats().stale_commits, 1);
    assert_eq!(cache.stats().commits, 1);
}

/// A lease lost while a fill is in its fetch (evicted, expired, deleted by hand), then an
/// invalidation: the fill read the source before the invalidation, and must not write.
///
/// This is what a lock that is only a marker (the same bytes for every filler) gets wrong: once
/// the marker is gone, another filler's marker looks like ours. Each lease carries a token drawn
/// once, so the commit compares against exactly the lease it took.
async fn lease_lost_then_invalidation_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    assert!(leased(conn, &key).await, "the fill holds the id's lease");
    cmd::<()>(conn, "DEL", &key).await;
    cache.invalidate([1]).await.unwrap();
    release.send(()).unwrap();

    let got = task.await.unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, value(1))]),
        "the caller gets what it fetched"
    );
    assert!(
        !exists(conn, &key).await,
        "the fill that read the source before the invalidation wrote its value"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.stale_commits, stats.lost_locks, stats.commits),
        (1, 0, 0),
        "refused for a lease gone, not one taken"
    );
}

/// A lease lost mid-fetch, and the id filled by another caller since: the first fill's commit
/// finds a value where its lease was and leaves it alone.
async fn lease_lost_then_refilled_by_another_is_not_overwritten(t: Target) {
    let ns = t.ns();
    let cache = support::cache(t.connect().await, &ns);
    let other = support::cache(t.connect().await, &ns);
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    cmd::<()>(conn, "DEL", &key).await;
    let fresh: HashMap<u64, String> = other
        .get_and_fill([1], |ids| async move {
            Ok::<_, ruecache::Error>(
                ids.into_iter()
                    .map(|id| (id, format!("fresh {id}")))
                    .collect::<HashMap<_, _>>(),
            )
        })
        .await
        .unwrap();
    assert_eq!(fresh, HashMap::from([(1, "fresh 1".to_owned())]));
    let written: Vec<u8> = cmd(conn, "GET", &key).await;
    assert!(
        !written.is_empty() && !leased(conn, &key).await,
        "the other caller committed"
    );
    release.send(()).unwrap();
    task.await.unwrap();
    let now: Vec<u8> = cmd(conn, "GET", &key).await;
    assert_eq!(now, written, "the other caller's value is left as it was");
    let stats = cache.stats();
    assert_eq!(
        (stats.lost_locks, stats.stale_commits, stats.commits),
        (1, 0, 0),
        "refused: the data key holds something else than the lease"
    );
}

async fn commit_with_lease_taken_by_another_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    // Our lease expired and another caller took the id.
    let theirs = foreign_lease("0123456789abcdef", 60_000);
    cmd::<()>(conn, "SET", (&key, &theirs, "PX", 60_000)).await;
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, value(1))]),
        "the caller gets what it fetched"
    );
    assert_eq!(
        lease(conn, &key).await,
        Some(theirs),
        "another caller's lease is left alone"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.lost_locks, stats.stale_commits, stats.commits),
        (1, 0, 0),
        "refused for the lease taken, not as stale"
    );
}

/// A lease past its deadline at the commit, that no one took over: the commit still writes,
/// since nothing changed the id meanwhile (as with a lock that expired with no one taking it).
async fn commit_past_the_deadline_still_writes(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &support::template(&t.ns()))
        .lock_ttl(Duration::from_millis(50))
        .build()
        .unwrap();
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    let deadline = support::lease_deadline(&lease(conn, &key).await.expect("leased"));
    // The lease's deadline passes while the fetch is paused (no other caller asks for the id).
    while support::now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(got, HashMap::from([(1, value(1))]));
    assert!(exists(conn, &key).await, "nothing changed: written");
    assert!(!leased(conn, &key).await, "no lease left");
    let stats = cache.stats();
    assert_eq!(
        (stats.commits, stats.stale_commits, stats.lost_locks),
        (1, 0, 0)
    );
}

/// A lease's key gone during the fetch (evicted, or deleted by hand) with no one taking the id:
/// the commit cannot tell that from an invalidation (both leave the key empty), so it writes
/// nothing, and the next call fills the id.
async fn commit_after_the_lease_was_lost_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    cmd::<()>(conn, "DEL", &key).await; // evicted
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(got, HashMap::from([(1, value(1))]));
    assert!(!exists(conn, &key).await, "lease gone: nothing written");
    let stats = cache.stats();
    assert_eq!(
        (stats.commits, stats.stale_commits, stats.lost_locks),
        (0, 1, 0)
    );
    let source = support::Source::default();
    let again: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(again, HashMap::from([(1, value(1))]));
    assert_eq!(source.calls(), vec![vec![1]], "the next call fills it");
    assert!(exists(conn, &key).await);
}

/// A lease's key expiring during the fetch (it outlived its grace): as lost.
async fn lease_key_expiring_mid_fetch_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    cmd::<()>(conn, "PEXPIRE", (&key, 1)).await;
    support::eventually("the lease's key expires", async || {
        !exists(conn, &key).await
    })
    .await;
    release.send(()).unwrap();
    task.await.unwrap();
    assert!(!exists(conn, &key).await, "a lease gone refuses the write");
    let stats = cache.stats();
    assert_eq!((stats.stale_commits, stats.commits), (1, 0));
}

async fn happy_path_writes_over_the_lease(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    assert!(
        leased(conn, &key).await,
        "the data key holds the lease during the fetch"
    );
    let held = lease(conn, &key).await.unwrap();
    let left = support::lease_deadline(&held).saturating_sub(support::now_ms());
    assert!(
        (1..=5_000).contains(&left),
        "the lease's deadline is the lock TTL from now ({left} ms left)"
    );
    let pttl: i64 = cmd(conn, "PTTL", &key).await;
    assert!(
        (600_000..=605_000).contains(&pttl),
        "its key lives ten minutes past the deadline (PTTL {pttl})"
    );
    release.send(()).unwrap();
    task.await.unwrap();
    assert!(exists(conn, &key).await);
    assert!(!leased(conn, &key).await, "the value replaced the lease");
    let pttl: i64 = cmd(conn, "PTTL", &key).await;
    assert!(
        (240_000..=360_000).contains(&pttl),
        "the value has the data TTL with jitter, not the lease's (PTTL {pttl})"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.commits, stats.stale_commits, stats.lost_locks),
        (1, 0, 0)
    );
}

/// Lease-shaped bytes that hold no token of ours (written by hand) block nothing: they are
/// replaced by a lease of ours and the id is filled.
async fn lease_shaped_garbage_is_replaced_and_filled(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    cmd::<()>(conn, "SET", (&key, b"\xC1Lnot a token \x00\x01".as_slice())).await;
    let source = support::Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, HashMap::from([(1, value(1))]));
    assert!(!leased(conn, &key).await);
    let again: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(source.calls(), vec![vec![1]], "filled once, then a hit");
    assert_eq!(cache.stats().commits, 1);
}

both!(
    invalidation_during_fetch_returns_value_but_writes_nothing,
    lease_lost_then_invalidation_writes_nothing,
    lease_lost_then_refilled_by_another_is_not_overwritten,
    commit_with_lease_taken_by_another_writes_nothing,
    commit_past_the_deadline_still_writes,
    commit_after_the_lease_was_lost_writes_nothing,
    lease_key_expiring_mid_fetch_writes_nothing,
    happy_path_writes_over_the_lease,
    lease_shaped_garbage_is_replaced_and_filled,
);
