//! Stampede protection: many callers on separate connections, one fetch per id; a lock that never
//! expires makes callers time out instead of hanging.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{cmd, eventually, exists, template, value, Source, TestError};
use tokio::sync::{watch, Barrier};

/// 64 tasks on 4 connections (4 "processes") ask for the same 100 cold ids at the same moment.
/// Fetches are held open until some caller has been seen waiting on another's lock, so the race
/// is forced, not hoped for.
async fn concurrent_callers_fetch_each_id_exactly_once(t: Target) {
    let ns = t.ns();
    let mut caches = Vec::new();
    for _ in 0..4 {
        let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&ns))
            .backoff(Duration::from_millis(5), Duration::from_millis(50))
            .build()
            .unwrap();
        caches.push(cache);
    }
    let source = Source::default();
    let barrier = Arc::new(Barrier::new(64));
    let (open_tx, open_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for task in 0..64usize {
        let cache = caches[task % 4].clone();
        let source = source.clone();
        let barrier = barrier.clone();
        let open = open_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids: Vec<u64> = (1..=100).collect();
            ids.rotate_left(task); // every task asks in a different order
            barrier.wait().await;
            cache
                .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(ids, |ids| {
                    let source = source.clone();
                    let mut open = open.clone();
                    async move {
                        open.wait_for(|&o| o).await.unwrap();
                        source.fetch(ids).await
                    }
                })
                .await
                .unwrap()
        }));
    }
    // The fetches are held until some caller waits on another's lock; bounded, so that a run in
    // which no caller ever waits fails here with a message instead of hanging.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waits: u64 = caches.iter().map(|c| c.stats().lock_waits).sum();
        // A task can only finish now by failing: its error is reported below.
        if waits > 0 || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no caller waited on another's lock within 60 s: {:?}",
            caches.iter().map(|c| c.stats()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    open_tx.send(true).unwrap();
    let expected: HashMap<u64, String> = (1..=100).map(|id| (id, value(id))).collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
    let counts = source.counts();
    assert_eq!(counts.len(), 100);
    assert!(
        counts.values().all(|&n| n == 1),
        "every id fetched exactly once: {counts:?}"
    );
}

/// A lease without expiry (no filler of ours writes one: it was written by hand, shaped like the
/// lease of a connection without liveness, so there is no holder to check) makes the call time
/// out instead of hanging, and is given the lock TTL, so the id heals: once that lease expires
/// the id fills. (Bytes that are not shaped like a lease are not a lock at all: they are
/// replaced and filled at once, see `stale_write.rs` and `hostile.rs`.)
async fn lease_without_expiry_times_out_then_heals(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .lock_ttl(Duration::from_millis(600))
        .timeout(Duration::from_millis(300))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    // Shaped like the lease of a connection without liveness: no holder to check.
    let hand_written = [[&b"\xC1L"[..], &[b'x'; 16], b"0123456789abcdef"].concat()];
    for (n, lock_value) in (0..).zip(hand_written) {
        let (locked, free) = (10 * n + 1, 10 * n + 2);
        let lock = cache.keys(&locked).unwrap().data;
        cmd::<()>(cache.connection(), "SET", (&lock, &lock_value)).await;
        let source = Source::default();
        // Bounded from outside too: a regression to hanging fails the test instead of stalling
        // it.
        let call = cache
            .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([locked, free], |ids| {
                source.fetch(ids)
            });
        let err = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call ended by its own timeout")
            .unwrap_err();
        assert!(
            matches!(&err, TestError::Cache(msg) if msg.contains("timed out")),
            "{lock_value:?}: {err:?}"
        );
        assert_eq!(
            source.calls(),
            vec![vec![free]],
            "the unlocked id was still filled"
        );
        assert!(cache.stats().lock_waits > 0);

        let pttl: i64 = cmd(cache.connection(), "PTTL", &lock).await;
        assert!(
            (1..=600).contains(&pttl),
            "the lease {lock_value:?} without expiry was given the lock TTL: PTTL {pttl}"
        );
        eventually("the foreign lease expires", async || {
            !exists(cache.connection(), &lock).await
        })
        .await;
        let healed: HashMap<u64, String> = cache
            .get_and_fill([locked], |ids| source.fetch(ids))
            .await
            .unwrap();
        assert_eq!(healed, HashMap::from([(locked, value(locked))]));
        assert_eq!(source.calls(), vec![vec![free], vec![locked]]);
    }
}

both!(
    concurrent_callers_fetch_each_id_exactly_once,
    lease_without_expiry_times_out_then_heals
);
