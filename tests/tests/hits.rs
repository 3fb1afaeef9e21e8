//! Reads: hits never fetch, duplicates and empty batches, absent ids, stats.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::{Cache, Connection};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{cache, exists, value, Source, TestError};

async fn all_hits_do_not_call_fetch(t: Target) {
    let cache = cache(t.connect().await, &t.ns());
    let source = Source::default();
    let first: HashMap<u64, String> = cache
        .get_and_fill(1..=5, |ids| source.fetch(ids))
        .await
        .unwrap();
    let second: HashMap<u64, String> = cache
        .get_and_fill(1..=5, |_| async {
            Err::<Vec<(u64, String)>, _>(TestError::Source("must not be called"))
        })
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(second.len(), 5);
    assert_eq!(source.calls(), vec![vec![1, 2, 3, 4, 5]]);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.fetches), (5, 5, 1));
}

async fn only_missing_ids_are_fetched_and_duplicates_once(t: Target) {
    let cache = cache(t.connect().await, &t.ns());
    let source = Source::default();
    let _: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    let got: HashMap<u64, String> = cache
        .get_and_fill([3, 1, 3, 2, 4, 4], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(source.calls(), vec![vec![1, 2], vec![3, 4]]);
    assert_eq!(got, (1..=4).map(|id| (id, value(id))).collect());
}

async fn fetch_returning_nothing_caches_absence(t: Target) {
    let cache = cache(t.connect().await, &t.ns());
    let source = Source::without(&[1, 2, 3]);
    let first: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    let second: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert!(first.is_empty() && second.is_empty());
    assert_eq!(
        source.calls().len(),
        1,
        "absent ids are cached, not fetched again"
    );
    assert!(exists(cache.connection(), cache.data_key(&1).unwrap()).await);
    assert_eq!(cache.stats().hits, 3);
}

async fn stats_count_each_step(t: Target) {
    let cache = cache(t.connect().await, &t.ns());
    let source = Source::without(&[3]);
    let _: Vec<(u64, String)> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    let _: Vec<(u64, String)> = cache
        .get_and_fill([1, 2, 3, 4], |ids| source.fetch(ids))
        .await
        .unwrap();
    cache.invalidate([1, 1, 2]).await.unwrap();
    let s = cache.stats();
    assert_eq!(s.hits, 3);
    assert_eq!(s.misses, 4);
    assert_eq!(s.fetches, 2);
    assert_eq!(s.fetched_ids, 4);
    assert_eq!(s.commits, 4);
    assert_eq!(s.lock_attempts, 4);
    assert_eq!((s.stale_commits, s.lost_locks, s.lock_waits), (0, 0, 0));
    assert_eq!(s.invalidations, 2, "duplicates are invalidated once");
}

both!(
    all_hits_do_not_call_fetch,
    only_missing_ids_are_fetched_and_duplicates_once,
    fetch_returning_nothing_caches_absence,
    stats_count_each_step,
);

/// An empty batch returns at once: proven on servers that are no longer running.
async fn empty_ids_never_touch_redis(cache: Cache<u64, String>, kill: impl FnOnce()) {
    kill();
    let got: HashMap<u64, String> = cache
        .get_and_fill(Vec::new(), |_| async {
            Err::<Vec<(u64, String)>, _>(TestError::Source("no"))
        })
        .await
        .unwrap();
    assert!(got.is_empty());
    cache.invalidate(Vec::<u64>::new()).await.unwrap();
    // The servers really are gone: a non-empty call fails.
    let err = cache
        .get_and_fill::<_, Vec<(u64, String)>, _, _, _, TestError>([1], |_| async {
            Ok(Vec::new())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, TestError::Cache(_)), "{err:?}");
}

#[tokio::test]
async fn empty_ids_never_touch_redis_standalone() {
    let mut server = start_standalone_with(&[]);
    let cache = cache(server.connect().await, "empty:");
    empty_ids_never_touch_redis(cache, || server.kill()).await;
}

#[tokio::test]
async fn empty_ids_never_touch_redis_cluster() {
    let mut cluster = ruecache_tests::start_cluster();
    let conn = Connection::open_cluster(&cluster.urls()).await.unwrap();
    let cache: Cache<u64, String> = Cache::builder(conn, &support::template("empty:"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    empty_ids_never_touch_redis(cache, || {
        cluster.nodes_mut().iter_mut().for_each(|n| n.kill())
    })
    .await;
}

/// Every call carries its future, hit or miss; the fill (locks, fetch, commit) is boxed when
/// there is something to fill, so a call's own future stays small (with the fill inline it was
/// 9,952 bytes, now about 1.8 KB). A guard on the hit path's footprint, not a timing: a future
/// this size is moved into every spawned task and copied at every await that starts it.
#[tokio::test]
async fn a_call_does_not_carry_the_fill_in_its_future() {
    const BOUND: usize = 4 * 1024;
    let server = start_standalone_with(&[]);
    let cache = cache(server.connect().await, "footprint:");
    let source = Source::default();
    let batch =
        cache.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1, 2], |ids| source.fetch(ids));
    let one = cache.get_and_fill_one(1, |id| async move { Ok::<_, TestError>(Some(value(id))) });
    let sizes = (size_of_val(&batch), size_of_val(&one));
    assert!(sizes.0 <= BOUND && sizes.1 <= BOUND, "{sizes:?}");
    // Both are real calls that work.
    assert_eq!(batch.await.unwrap().len(), 2);
    assert_eq!(one.await.unwrap(), Some(value(1)));
}

/// The commands a call costs Redis, counted by `INFO commandstats` on a private server: a batch
/// of 100 cached ids is one `MGET` and nothing else; 100 misses are the read, one plain command
/// per id (the lease step, which also reads the data again) and one commit script call for all.
#[tokio::test]
async fn a_hit_batch_is_one_mget_and_a_miss_one_lock_step_and_one_commit() {
    let server = start_standalone_with(&[]);
    // No liveness key: its refresh (a `SET` every 2/3 s) would land in the counts now and then.
    let conn = server.connect().await.liveness_window(None).unwrap();
    let cache = cache(conn.clone(), "trips:");
    let commands = async || support::take_command_calls(&conn).await;

    let (miss, hit) = fill_then_hit_100(&cache, commands).await;
    // Redis counts the commands a script runs too: the commit's `MGET` of the data keys (its
    // compare) and its `SET` of each value over its lease. No wake-up is published: nobody
    // waited (flagged a lease).
    assert_eq!(
        miss,
        HashMap::from([
            // The first read of the batch, then the commit script's read of the data keys.
            ("mget".to_owned(), 1 + 1),
            // Per id: its lease (`SET ... NX PX ... GET`), then the commit script's `SET` of
            // its value over that lease.
            ("set".to_owned(), 100 + 100),
            // The commit script, one call for the whole batch.
            ("evalsha".to_owned(), 1),
        ]),
        "a batch of 100 misses"
    );
    assert_eq!(
        hit,
        HashMap::from([("mget".to_owned(), 1)]),
        "a batch of 100 hits"
    );
}

/// The same on a cluster, where a batch is split by hash slot: per slot of the batch's keys, one
/// read (`MGET`, or `GET` for a slot with one key) and one commit script call (with its `MGET`);
/// per id, the same lease step and commit `SET` as on one server. Summed over the masters of a
/// private cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_batch_costs_one_read_and_one_commit_per_slot() {
    let cluster = ruecache_tests::start_cluster();
    let urls = cluster.urls();
    let conn = support::cluster_without_liveness(&urls).await;
    let nodes = support::node_connections(&urls).await;
    let cache = cache(conn.clone(), "trips:");
    // The data commands, summed over the masters (the connection's own topology checks left out).
    let commands = async || {
        let mut sum: HashMap<String, u64> = HashMap::new();
        for node in &nodes {
            for (name, calls) in support::take_command_calls(node).await {
                if !(name.starts_with("cluster") || name == "ping" || name == "readonly") {
                    *sum.entry(name).or_default() += calls;
                }
            }
        }
        sum
    };
    let mut per_slot: HashMap<u64, u64> = HashMap::new();
    for id in 1..=100u64 {
        let key = cache.data_key(&id).unwrap();
        *per_slot
            .entry(support::cmd(&nodes[0], "CLUSTER", ("KEYSLOT", key)).await)
            .or_default() += 1;
    }
    let slots = per_slot.len() as u64;
    // The read of one slot's keys: `GET` for one key, `MGET` for more.
    let single = per_slot.values().filter(|&&n| n == 1).count() as u64;
    let (read_gets, read_mgets) = (single, slots - single);

    let (miss, hit) = fill_then_hit_100(&cache, commands).await;
    assert_eq!(
        miss,
        [
            // The first read of each slot with several keys, and each commit call's read.
            ("mget".to_owned(), read_mgets + slots),
            // Per id: its lease, then the commit's `SET` of its value.
            ("set".to_owned(), 100 + 100),
            // The first read of each slot with one key.
            ("get".to_owned(), read_gets),
            // One commit script call per slot.
            ("evalsha".to_owned(), slots),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect(),
        "a batch of 100 misses over {slots} slots"
    );

    let reads = HashMap::from([
        ("get".to_owned(), read_gets),
        ("mget".to_owned(), read_mgets),
    ]);
    assert_eq!(
        hit,
        reads.into_iter().filter(|(_, n)| *n > 0).collect(),
        "a batch of 100 hits over {slots} slots"
    );
}

/// Loads the scripts (a fill of id 0), then fills ids 1 to 100 and reads them again: the
/// commands (`commands`, which also resets the count) each of the two calls cost.
async fn fill_then_hit_100(
    cache: &Cache<u64, String>,
    mut commands: impl AsyncFnMut() -> HashMap<String, u64>,
) -> (HashMap<String, u64>, HashMap<String, u64>) {
    let source = Source::default();
    let _: HashMap<u64, String> = cache
        .get_and_fill([0], |ids| source.fetch(ids))
        .await
        .unwrap(); // scripts loaded
    commands().await;
    let filled: HashMap<u64, String> = cache
        .get_and_fill(1..=100, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(filled.len(), 100);
    let miss = commands().await;
    let hit: HashMap<u64, String> = cache
        .get_and_fill(1..=100, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(hit, filled);
    (miss, commands().await)
}
