//! In-process single-flight: callers sharing a connection never lock or fetch the same id twice,
//! also when their batches only overlap; a follower never returns data older than an
//! invalidation that completed before it asked, and takes over when the leader fails or is
//! dropped.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{eventually, value, Gate, Source, TestError};
use tokio::sync::watch;

type Map = HashMap<u64, String>;

type Fetch = Pin<Box<dyn Future<Output = Result<Map, TestError>> + Send>>;

/// A fetch held in `gate` before it answers from `source`.
fn gated(gate: &Gate, source: &Source) -> impl FnMut(Vec<u64>) -> Fetch {
    source.gated(&gate.handle())
}

fn expected(ids: impl IntoIterator<Item = u64>) -> Map {
    ids.into_iter().map(|id| (id, value(id))).collect()
}

/// Caller A asks {1, 2, 3}; while A's fetch runs, caller B asks {2, 3, 4}: B locks and fetches
/// only 4, waits for A's 2 and 3, and both get their whole batch.
async fn overlapping_batch_fetches_only_the_rest(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let source = Source::default();
    let mut gate = Gate::default();
    let a = tokio::spawn({
        let (cache, fetch) = (cache.clone(), gated(&gate, &source));
        async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>([1, 2, 3], fetch)
                .await
        }
    });
    let (ids_a, release_a) = gate.paused().await;
    assert_eq!(ids_a, vec![1, 2, 3]);
    let b = tokio::spawn({
        let (cache, fetch) = (cache.clone(), gated(&gate, &source));
        async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>([2, 3, 4], fetch)
                .await
        }
    });
    let (ids_b, release_b) = gate.paused().await;
    assert_eq!(ids_b, vec![4], "B fetches only what nobody is filling");
    assert_eq!(cache.stats().flight_waits, 2, "B follows A for 2 and 3");
    release_b.send(()).unwrap();
    release_a.send(()).unwrap();
    assert_eq!(a.await.unwrap().unwrap(), expected([1, 2, 3]));
    assert_eq!(b.await.unwrap().unwrap(), expected([2, 3, 4]));
    let mut calls = source.calls();
    calls.sort();
    assert_eq!(calls, vec![vec![1, 2, 3], vec![4]]);
    assert_eq!(cache.stats().lock_attempts, 4, "each id locked once");
}

/// A single-id call for an id a batch is filling waits for that batch instead of fetching.
async fn single_id_call_shares_a_batch_in_flight(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let source = Source::default();
    let mut gate = Gate::default();
    let batch = tokio::spawn({
        let (cache, fetch) = (cache.clone(), gated(&gate, &source));
        async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>(1..=10, fetch)
                .await
        }
    });
    let (_, release) = gate.paused().await;
    let one = tokio::spawn({
        let (cache, source) = (cache.clone(), source.clone());
        async move {
            cache
                .get_and_fill_one(5, |id| {
                    let source = source.clone();
                    async move { Ok::<_, TestError>(source.fetch(vec![id]).await?.remove(&id)) }
                })
                .await
        }
    });
    let stats = cache.clone();
    eventually("the single-id call following the batch", async || {
        stats.stats().flight_waits == 1
    })
    .await;
    release.send(()).unwrap();
    assert_eq!(batch.await.unwrap().unwrap(), expected(1..=10));
    assert_eq!(one.await.unwrap().unwrap(), Some(value(5)));
    assert_eq!(source.calls(), vec![(1..=10).collect::<Vec<_>>()]);
}

/// 1,000 tasks on one connection ask, at once, for overlapping windows of 300 cold ids. Every
/// fetch is held until every task has either locked its ids or joined another task's fill, so
/// all overlaps are in flight together: each id is then locked once and fetched once. (Windows
/// are shorter on the cluster, where each id of a window is a request of its own: 25,000 of
/// them at once can outlast the connection's response timeout on a loaded 2-core machine.)
async fn thousand_overlapping_callers_lock_and_fetch_each_id_once(t: Target) {
    let window_len: u64 = if t.is_cluster() { 10 } else { 25 };
    thousand_overlapping_callers(support::cache(t.connect().await, &t.ns()), window_len).await;
}

/// The same on a private server whose own count of commands (`INFO commandstats`) shows one lease
/// per id: 300 ids cost 600 `SET`s, each id's lease and value, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_overlapping_callers_send_one_lock_per_id_to_redis() {
    let server = ruecache_tests::start_standalone_with(&[]);
    // No liveness key: its refresh would add `SET`s of its own.
    let conn = server.connect().await.liveness_window(None).unwrap();
    let admin = server.connect().await;
    support::take_command_calls(&admin).await;
    thousand_overlapping_callers(support::cache(conn, "counted:"), 25).await;
    let calls = support::take_command_calls(&admin).await;
    assert_eq!(
        calls.get("set"),
        Some(&(2 * IDS)),
        "a lease and a value per id: {calls:?}"
    );
}

const TASKS: u64 = 1000;
const IDS: u64 = 300;

async fn thousand_overlapping_callers(cache: Cache<u64, String>, window_len: u64) {
    let source = Source::without(&[7, 77]);
    let (open_tx, open_rx) = watch::channel(false);
    let window = move |task: u64| (0..window_len).map(move |i| (task * 7 + i) % IDS);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (cache, source, open) = (cache.clone(), source.clone(), open_rx.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>(window(task), |ids| {
                    let (source, mut open) = (source.clone(), open.clone());
                    async move {
                        open.wait_for(|&o| o).await.unwrap();
                        source.fetch(ids).await
                    }
                })
                .await
        }));
    }
    // Every requested id is either passed to a (held) fetch or followed: then all are claimed.
    let requested = TASKS * window_len;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = cache.stats();
        // A task can only finish now by failing: its error is reported below.
        if s.fetched_ids + s.flight_waits == requested || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all tasks claimed their ids: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    open_tx.send(true).unwrap();
    for (task, handle) in tasks.into_iter().enumerate() {
        let want: Map = expected(window(task as u64).filter(|id| ![7, 77].contains(id)));
        assert_eq!(handle.await.unwrap().unwrap(), want, "task {task}");
    }
    let counts = source.counts();
    assert_eq!(counts.len() as u64, IDS);
    assert!(
        counts.values().all(|&n| n == 1),
        "every id fetched exactly once: {counts:?}"
    );
    let stats = cache.stats();
    assert_eq!(stats.lock_attempts, IDS, "every id locked once: {stats:?}");
    assert_eq!(stats.lock_waits, 0, "no caller waited on a Redis lock");
    eprintln!(
        "{TASKS} tasks, {requested} ids asked, {} fetches of {} ids, {} followed, {} lock attempts",
        stats.fetches, stats.fetched_ids, stats.flight_waits, stats.lock_attempts
    );
}

/// A fetch starts, the row changes and is invalidated, and only then does B ask: B joins the
/// running fill, but must not return what that fill fetched before the invalidation.
async fn follower_never_returns_data_older_than_a_completed_invalidation(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let row = Arc::new(Mutex::new("v1".to_owned()));
    let mut gate = Gate::default();
    let handle = gate.handle();
    let fetch = {
        let row = row.clone();
        move |ids: Vec<u64>| {
            let (row, handle) = (row.clone(), handle.clone());
            async move {
                let read = row.lock().unwrap().clone(); // the database read
                handle.pause(&ids).await;
                Ok::<_, TestError>(
                    ids.into_iter()
                        .map(|id| (id, read.clone()))
                        .collect::<Map>(),
                )
            }
        }
    };
    let a = tokio::spawn({
        let (cache, fetch) = (cache.clone(), fetch.clone());
        async move { cache.get_and_fill::<_, Map, _, _, _, _>([1], fetch).await }
    });
    let (_, release_a) = gate.paused().await; // A has read v1
    *row.lock().unwrap() = "v2".to_owned();
    cache.invalidate([1]).await.unwrap(); // completed before B asks
    let b = tokio::spawn({
        let (cache, fetch) = (cache.clone(), fetch.clone());
        async move { cache.get_and_fill::<_, Map, _, _, _, _>([1], fetch).await }
    });
    let stats = cache.clone();
    eventually("B following A", async || stats.stats().flight_waits == 1).await;
    release_a.send(()).unwrap();
    assert_eq!(
        a.await.unwrap().unwrap()[&1],
        "v1",
        "A returns what it read"
    );
    let (_, release_b) = gate.paused().await; // A's commit was refused: B fills itself
    release_b.send(()).unwrap();
    assert_eq!(b.await.unwrap().unwrap()[&1], "v2");
    assert_eq!(cache.stats().stale_commits, 1);
    let cached = cache
        .get_and_fill::<_, Map, _, _, _, _>([1], |_| async {
            Err::<Map, _>(TestError::Source("must be cached"))
        })
        .await
        .unwrap();
    assert_eq!(cached[&1], "v2");
}

/// The leader's fetch fails: its caller gets the error, the follower fills the id itself.
async fn follower_fills_itself_when_the_leader_fails(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let a = tokio::spawn({
        let (cache, fetch) = (
            cache.clone(),
            gate.handle().then_fail::<Map>("database down"),
        );
        async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>([1, 2], fetch)
                .await
        }
    });
    let (_, release_a) = gate.paused().await;
    let source = Source::default();
    let b = tokio::spawn({
        let (cache, source) = (cache.clone(), source.clone());
        async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>([2, 3], |ids| source.fetch(ids))
                .await
        }
    });
    let stats = cache.clone();
    eventually("B following A for 2", async || {
        stats.stats().flight_waits == 1
    })
    .await;
    release_a.send(()).unwrap();
    assert_eq!(
        a.await.unwrap().unwrap_err(),
        TestError::Source("database down")
    );
    assert_eq!(b.await.unwrap().unwrap(), expected([2, 3]));
    assert_eq!(source.calls(), vec![vec![3], vec![2]]);
}

/// The leader is dropped mid-fetch: the follower wakes and fills the id at once, without
/// waiting for the (long) lock TTL.
async fn follower_takes_over_from_a_dropped_leader(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &support::template(&t.ns()))
        .lock_ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let source = Source::default();
    let mut gate = Gate::default();
    let a = tokio::spawn({
        let (cache, fetch) = (cache.clone(), gated(&gate, &source));
        async move { cache.get_and_fill::<_, Map, _, _, _, _>([1], fetch).await }
    });
    let (_, _held) = gate.paused().await;
    let b = tokio::spawn({
        let (cache, source) = (cache.clone(), source.clone());
        async move {
            cache
                .get_and_fill_one(1, |id| {
                    let source = source.clone();
                    async move { Ok::<_, TestError>(source.fetch(vec![id]).await?.remove(&id)) }
                })
                .await
        }
    });
    let stats = cache.clone();
    eventually("B following A", async || stats.stats().flight_waits == 1).await;
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());
    assert_eq!(b.await.unwrap().unwrap(), Some(value(1)));
    assert_eq!(source.calls(), vec![vec![1]], "B fetched 1 itself");
}

both!(
    overlapping_batch_fetches_only_the_rest,
    single_id_call_shares_a_batch_in_flight,
    thousand_overlapping_callers_lock_and_fetch_each_id_once,
    follower_never_returns_data_older_than_a_completed_invalidation,
    follower_fills_itself_when_the_leader_fails,
    follower_takes_over_from_a_dropped_leader
);
