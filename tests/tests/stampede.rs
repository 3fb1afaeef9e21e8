//! Stampede protection: many callers on separate connections, one fetch per id; a lock that never
//! expires makes callers time out instead of hanging.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{cmd, template, value, Source, TestError};
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

/// A lease written by hand without expiry (no filler of ours writes one), shaped like the lease
/// of a connection without liveness (so no holder to check): it blocks its id until its deadline,
/// and the call times out meanwhile instead of hanging; then it is taken over and the id fills.
async fn lease_without_expiry_times_out_then_heals(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .lock_ttl(Duration::from_millis(600))
        .timeout(Duration::from_millis(300))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let (locked, free) = (1, 2);
    let key = cache.keys(&locked).unwrap().data;
    let hand_written = support::unchecked_lease(600);
    cmd::<()>(cache.connection(), "SET", (&key, &hand_written)).await;
    let source = Source::default();
    // Bounded from outside too: a regression to hanging fails the test instead of stalling it.
    let call = cache.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([locked, free], |ids| {
        source.fetch(ids)
    });
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ended by its own timeout")
        .unwrap_err();
    assert!(
        matches!(&err, TestError::Cache(msg) if msg.contains("timed out")),
        "{err:?}"
    );
    assert_eq!(
        source.calls(),
        vec![vec![free]],
        "the unlocked id was still filled"
    );
    assert!(cache.stats().lock_waits > 0);
    let left = support::lease(cache.connection(), &key)
        .await
        .expect("still leased");
    assert_eq!(
        left[2..],
        hand_written[2..],
        "the hand-written lease is left alone before its deadline (only flagged by the waiter)"
    );

    let deadline = support::lease_deadline(&hand_written);
    while support::now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let healed: HashMap<u64, String> = cache
        .get_and_fill([locked], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(healed, HashMap::from([(locked, value(locked))]));
    assert_eq!(source.calls(), vec![vec![free], vec![locked]]);
}

both!(
    concurrent_callers_fetch_each_id_exactly_once,
    lease_without_expiry_times_out_then_heals
);
