//! Degraded mode: with `fallback_to_source` on, calls are served from the source while Redis is
//! down (sharing fetches in the process), errors that are not about reaching Redis still
//! surface, and caching resumes once Redis is back.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::{Cache, Connection};
use ruecache_tests::{start_standalone_with, tokio};
use support::{cmd, eventually, value, Gate, Source, TestError};

type Map = HashMap<u64, String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_from_the_source_while_redis_is_down_then_cached_again() {
    let mut server = start_standalone_with(&[]);
    let ns = ruecache_tests::ns();
    let cache = support::fallback_cache(server.connection_manager().await, &ns);
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
        let (cache, fetch) = (cache.clone(), fetches.gated(&gate.handle()));
        tasks.push(tokio::spawn(async move {
            cache.get_and_fill::<_, Map, _, _, _, _>([5], fetch).await
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
    support::cached_again_once_redis_answers(&cache, 6, cache.connection()).await;
}

/// A Redis that hangs instead of refusing (a frozen process, a network partition) costs the one
/// call that finds it unreachable its timeout; until Redis answers again, calls on the
/// connection go straight to the source without waiting on Redis. Shown with two caches on one
/// connection that has no response timeout: the first (timeout 300 ms) finds the outage; the
/// second's timeout is a day, so a call of it that waited on the frozen Redis would not return
/// while Redis stays frozen (the test's guard, 30 s, only keeps such a regression from hanging
/// the run): its calls returning at all, before Redis is thawed, shows they never waited on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_one_timeout_per_outage_not_one_per_call() {
    let server = start_standalone_with(&[]);
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let conn: Connection = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
        .into();
    let ns = ruecache_tests::ns();
    let finder: Cache<u64, String> = Cache::builder(conn.clone(), &support::template(&ns))
        .timeout(Duration::from_millis(300))
        .fallback_to_source(true)
        .build()
        .unwrap();
    let patient: Cache<u64, String> = Cache::builder(conn.clone(), &support::template(&ns))
        .timeout(Duration::from_secs(24 * 3600))
        .fallback_to_source(true)
        .build()
        .unwrap();
    let source = Source::default();
    let warm: Map = patient
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(warm, [(1, value(1))].into());

    let pid = libc::pid_t::try_from(server.pid().expect("running")).unwrap();
    // SAFETY: signals our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let first: Map = finder
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .expect("served from the source");
    assert_eq!(first, [(1, value(1)), (2, value(2))].into());
    let guard = Duration::from_secs(30);
    for ids in [vec![3, 4], vec![1, 5]] {
        let got: Map = tokio::time::timeout(
            guard,
            patient.get_and_fill(ids.clone(), |ids| source.fetch(ids)),
        )
        .await
        .expect("served without waiting on the frozen Redis")
        .unwrap();
        assert_eq!(got.len(), 2, "{ids:?}");
    }
    let one = tokio::time::timeout(
        guard,
        patient.get_and_fill_one(6, |id| async move { Ok::<_, TestError>(Some(value(id))) }),
    )
    .await
    .expect("served without waiting on the frozen Redis")
    .unwrap();
    assert_eq!(one, Some(value(6)));
    assert_eq!(patient.stats().served_from_source, 5);

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    support::cached_again_once_redis_answers(&patient, 7, patient.connection()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_other_than_unreachable_redis_still_surface() {
    let server = start_standalone_with(&[]);
    let cache = support::fallback_cache(server.connect().await, &ruecache_tests::ns());
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

/// A call that times out waiting for another caller's slow fill is not an outage: Redis still
/// answers, so the call gets its timeout error, nothing is served from the source, and the
/// connection keeps using Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fill_elsewhere_is_not_an_outage() {
    let server = start_standalone_with(&[]);
    let ns = ruecache_tests::ns();
    let holder = support::fallback_cache(server.connect().await, &ns);
    let mut gate = Gate::default();
    let (held, release) = support::paused_fill(&holder, vec![1], &mut gate).await;

    let waiter: Cache<u64, String> =
        Cache::builder(server.connect().await, &support::template(&ns))
            .timeout(Duration::from_millis(300))
            .fallback_to_source(true)
            .build()
            .unwrap();
    let source = Source::default();
    let err = waiter
        .get_and_fill::<_, Map, _, _, _, _>([1], |ids| source.fetch(ids))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TestError::Cache(msg) if msg.contains("timed out")),
        "{err:?}"
    );
    assert!(source.calls().is_empty(), "not served from the source");

    // Still through Redis: another id is fetched once and cached.
    let got: Map = waiter
        .get_and_fill([2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, [(2, value(2))].into());
    assert!(support::exists(waiter.connection(), waiter.data_key(&2).unwrap()).await);
    assert_eq!(waiter.stats().served_from_source, 0);

    release.send(()).unwrap();
    assert_eq!(held.await.unwrap(), [(1, value(1))].into());
}
