//! Degraded mode: with `fallback_to_source` on, calls are served from the source while Redis is
//! down (sharing fetches in the process), errors that are not about reaching Redis still
//! surface, and caching resumes once Redis is back.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::{Cache, Connection};
use ruecache_tests::{start_standalone_with, tokio};
use support::{cmd, eventually, exists, value, Gate, Source, TestError};

type Map = HashMap<u64, String>;

fn cache(conn: Connection, ns: &str) -> Cache<u64, String> {
    Cache::builder(conn, &support::template(ns))
        .timeout(Duration::from_secs(2))
        .fallback_to_source(true)
        .build()
        .expect("valid config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_from_the_source_while_redis_is_down_then_cached_again() {
    let mut server = start_standalone_with(&[]);
    let ns = ruecache_tests::ns();
    let cache = cache(server.connection_manager().await, &ns);
    let source = Source::without(&[3]);
    let before: Map = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(before, [(1, value(1)), (2, value(2))].into());
    assert_eq!(cache.stats().served_from_source, 0);

    server.kill();
    let during: Map = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .expect("served from the source, not failed");
    assert_eq!(during, [(1, value(1)), (2, value(2))].into());
    assert_eq!(source.calls().last(), Some(&vec![1, 2, 3]));
    let one = cache
        .get_and_fill_one(4, |id| async move { Ok::<_, TestError>(Some(value(id))) })
        .await
        .unwrap();
    assert_eq!(one, Some(value(4)));
    assert_eq!(cache.stats().served_from_source, 4);

    // Ten callers of one id during the outage: one fetch, its value handed to the others.
    let mut gate = Gate::default();
    let fetches = Source::default();
    let waits = cache.stats().flight_waits;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, handle, fetches) = (cache.clone(), gate.handle(), fetches.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>([5], |ids| {
                    let (handle, fetches) = (handle.clone(), fetches.clone());
                    async move {
                        handle.pause(&ids).await;
                        fetches.fetch(ids).await
                    }
                })
                .await
        }));
    }
    let (_, release) = gate.paused().await;
    let stats = cache.clone();
    eventually("nine callers following the one fetching", async || {
        stats.stats().flight_waits == waits + 9
    })
    .await;
    release.send(()).unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), [(5, value(5))].into());
    }
    assert_eq!(fetches.calls(), vec![vec![5]], "one fetch for ten callers");

    server.restart();
    let after: Map = cache
        .get_and_fill([6], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(after, [(6, value(6))].into());
    assert!(
        exists(cache.connection(), cache.data_key(&6).unwrap()).await,
        "cached again once Redis is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_other_than_unreachable_redis_still_surface() {
    let server = start_standalone_with(&[]);
    let cache = cache(server.connect().await, &ruecache_tests::ns());
    // Redis answers, but refuses every write: an error about Redis, not about reaching it.
    cmd::<()>(
        cache.connection(),
        "CONFIG",
        ("SET", "maxmemory", 1, "maxmemory-policy", "noeviction"),
    )
    .await;
    let source = Source::default();
    let err = cache
        .get_and_fill::<_, Map, _, _, _, _>([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TestError::Cache(msg) if msg.contains("OOM")),
        "{err:?}"
    );
    assert!(source.calls().is_empty(), "not served from the source");
    assert_eq!(cache.stats().served_from_source, 0);
}
