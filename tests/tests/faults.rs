//! Faults: a Redis server killed or frozen mid-run, and a fetch that panics. Every call returns a
//! typed error (or its own panic) and never hangs; the cache recovers once the fault is gone. A
//! Redis that is only slow (a second) is waited for.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use ruecache::{Cache, Connection};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{value, Failure, Gate, Source, TestError};

/// The timeout the caches under test are built with.
const TIMEOUT: Duration = Duration::from_secs(2);
/// A guard against hangs, far above [`TIMEOUT`]; not a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(10);
/// How far past [`TIMEOUT`] a call may end: the timeout bounds each wait on Redis, and the
/// call's own work and a loaded machine's scheduling come on top.
const TIMEOUT_SLACK: Duration = Duration::from_millis(1500);

fn cache(conn: Connection, ns: &str) -> Cache<u64, String> {
    Cache::builder(conn, &support::template(ns))
        .timeout(TIMEOUT)
        .build()
        .expect("valid config")
}

async fn fetch(ids: Vec<u64>) -> Result<HashMap<u64, String>, Failure> {
    Ok(ids.into_iter().map(|id| (id, value(id))).collect())
}

/// Awaits `call`, failing the test if it hangs or ends later than the cache's timeout allows;
/// returns its result.
async fn guarded<T>(what: &str, call: impl Future<Output = T>) -> T {
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(HANG_GUARD, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG_GUARD:?} (cache timeout {TIMEOUT:?})"));
    let took = started.elapsed();
    assert!(
        took <= TIMEOUT + TIMEOUT_SLACK,
        "{what} took {took:?}, past the cache timeout {TIMEOUT:?}"
    );
    result
}

/// Asserts that a call failed with a connection-level `ruecache::Error` (`Redis` or `Timeout`)
/// and returns the variant's name.
fn connection_error<T: std::fmt::Debug>(what: &str, result: Result<T, Failure>) -> &'static str {
    match result {
        Err(Failure::Cache(ruecache::Error::Redis(_))) => "Redis",
        Err(Failure::Cache(ruecache::Error::Timeout { .. })) => "Timeout",
        other => panic!("{what}: expected a Redis or Timeout error, got {other:?}"),
    }
}

/// Every entry point against an unreachable server: a typed error, within the timeout.
async fn every_call_fails_typed(label: &str, cache: &Cache<u64, String>) -> Vec<String> {
    let mut seen = Vec::new();
    let batch = guarded(
        label,
        cache.get_and_fill::<_, HashMap<_, _>, _, _, _, _>([1, 2, 3], fetch),
    )
    .await;
    seen.push(format!("{label} batch: {}", connection_error(label, batch)));
    let single = guarded(
        label,
        cache.get_and_fill_one(1, |id| async move { Ok::<_, Failure>(Some(value(id))) }),
    )
    .await;
    seen.push(format!(
        "{label} single: {}",
        connection_error(label, single)
    ));
    let invalidate = guarded(label, cache.invalidate([1])).await;
    seen.push(format!(
        "{label} invalidate: {}",
        connection_error(label, invalidate.map_err(Failure::Cache))
    ));
    seen
}

/// The server is killed while a fetch is in progress, calls fail with typed errors while it is
/// down, and after a restart a cache on a `ConnectionManager` works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_gives_typed_errors_then_recovers() {
    let mut server = start_standalone_with(&[]);
    let ns = ruecache_tests::ns();
    let plain = cache(server.connect().await, &ns);
    let managed = cache(server.connection_manager().await, &ns);
    let warm: HashMap<u64, String> = managed.get_and_fill([1, 2], fetch).await.unwrap();
    assert_eq!(warm.len(), 2);

    // Killed mid-fetch: the commit cannot reach Redis.
    let mut gate = Gate::default();
    let task = {
        let (plain, fetch) = (plain.clone(), gate.handle().then(fetch));
        tokio::spawn(async move {
            plain
                .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([10, 11], fetch)
                .await
        })
    };
    let (_, release) = gate.paused().await;
    server.kill();
    release.send(()).unwrap();
    let mid_fetch = guarded("the fill killed mid-fetch", task)
        .await
        .expect("no panic");
    let mut faults = vec![format!(
        "killed mid-fetch: {}",
        connection_error("killed mid-fetch", mid_fetch)
    )];

    // Down: every entry point of both connection kinds fails, typed, without hanging.
    faults.extend(every_call_fails_typed("multiplexed", &plain).await);
    faults.extend(every_call_fails_typed("manager", &managed).await);

    // Back (empty: no persistence): the ConnectionManager reconnects by itself.
    server.restart();
    let mut attempts = 0;
    let recovered: HashMap<u64, String> = loop {
        attempts += 1;
        match guarded(
            "a call after the restart",
            managed.get_and_fill([1, 2], fetch),
        )
        .await
        {
            Ok(got) => break got,
            Err(e) if attempts < 50 => {
                connection_error("while reconnecting", Err::<(), _>(e));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after {attempts} attempts: {e:?}"),
        }
    };
    assert_eq!(recovered, [(1, value(1)), (2, value(2))].into());
    eprintln!(
        "faults: {} faults injected while down: {faults:?}; recovered after the restart on \
         attempt {attempts}",
        faults.len()
    );
}

/// A frozen server (SIGSTOP: connections stay open, nothing answers) makes calls fail with a
/// typed error within the cache's timeout; once it resumes, the same cache works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_times_out_typed_then_recovers() {
    let server = start_standalone_with(&[]);
    let ns = ruecache_tests::ns();
    let plain = cache(server.connect().await, &ns);
    let managed = cache(server.connection_manager().await, &ns);
    let _: HashMap<u64, String> = plain.get_and_fill([1], fetch).await.unwrap();
    let pid = libc::pid_t::try_from(server.pid().expect("running")).unwrap();
    // SAFETY: signals our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut faults = every_call_fails_typed("multiplexed", &plain).await;
    faults.extend(every_call_fails_typed("manager", &managed).await);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    for cache in [&plain, &managed] {
        let got: HashMap<u64, String> =
            guarded("after the freeze", cache.get_and_fill([1, 2], fetch))
                .await
                .unwrap();
        assert_eq!(got, [(1, value(1)), (2, value(2))].into());
    }
    eprintln!(
        "faults: {} calls against a frozen server: {faults:?}",
        faults.len()
    );
}

/// A fetch that panics: the panic reaches its own caller only, its locks are released, a
/// concurrent caller for other ids is unaffected, and the next call for the same ids succeeds at
/// once: the cache's timeout (10 s) is shorter than the lock TTL (30 s), so a lock left behind
/// would make it fail.
async fn panicking_fetch_hits_only_its_caller_and_releases_its_locks(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &support::template(&t.ns()))
        .lock_ttl(Duration::from_secs(30))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Another caller, for other ids, paused inside its fetch.
    let mut gate = Gate::default();
    let (other, release) = support::paused_fill(&cache, vec![3, 4], &mut gate).await;

    // The panicking fetches, batch and single, while the other caller is mid-fetch.
    let boom = |ids: Vec<u64>| async move {
        if !ids.is_empty() {
            panic!("the source exploded for {ids:?}");
        }
        Ok::<Vec<(u64, String)>, TestError>(Vec::new())
    };
    let batch = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([1, 2], boom)
                .await
        })
    };
    let single = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_and_fill_one(5, |id| async move {
                    boom(vec![id]).await.map(|_| None::<String>)
                })
                .await
        })
    };
    for (what, result) in [
        ("batch", batch.await.map(|_| ())),
        ("single", single.await.map(|_| ())),
    ] {
        let err = result.expect_err("the panic reaches its caller");
        assert!(err.is_panic(), "{what}: {err:?}");
    }
    // The unlock after a panic runs in a spawned task.
    cache.connection().settle().await;
    for id in [1, 2, 5] {
        let key = cache.data_key(&id).unwrap();
        assert!(
            !support::leased(cache.connection(), &key).await,
            "the lease of id {id} is released"
        );
    }

    release.send(()).unwrap();
    let others = other.await.expect("the other caller does not panic");
    assert_eq!(others, [(3, value(3)), (4, value(4))].into());

    let source = Source::default();
    let again: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 5], |ids| source.fetch(ids))
        .await
        .expect("no lock left to wait for");
    assert_eq!(again, [(1, value(1)), (2, value(2)), (5, value(5))].into());
    assert_eq!(source.calls(), vec![vec![1, 2, 5]]);
}

both!(panicking_fetch_hits_only_its_caller_and_releases_its_locks);

/// A reply slower than redis-rs's default response timeout (500 ms) is waited for, not failed:
/// the connections the cache opens wait up to `ruecache::DEFAULT_RESPONSE_TIMEOUT` (5 s). Redis
/// holds every client for a second (`CLIENT PAUSE 1000 ALL`, on every node of a cluster) while
/// a call reads, locks, fetches and commits.
async fn replies_slower_than_half_a_second_are_waited_for(conn: Connection, admins: &[Connection]) {
    let cache = cache(conn, &ruecache_tests::ns());
    let source = Source::default();
    // Before the pauses: every request of the call is held until a pause that began after this
    // ends, a second after it at least.
    let started = tokio::time::Instant::now();
    for admin in admins {
        support::cmd::<()>(admin, "CLIENT", ("PAUSE", 1000, "ALL")).await;
    }
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .expect("the held replies are waited for");
    assert_eq!(got, [(1, value(1)), (2, value(2))].into());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the fixture: Redis held the call's requests for about a second"
    );
    assert_eq!(source.calls(), vec![vec![1, 2]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_slower_than_half_a_second_are_waited_for_standalone() {
    let server = start_standalone_with(&[]);
    let admin = server.connect().await;
    replies_slower_than_half_a_second_are_waited_for(server.connect().await, &[admin]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_slower_than_half_a_second_are_waited_for_cluster() {
    let cluster = ruecache_tests::start_cluster();
    let urls = cluster.urls();
    let admins = support::node_connections(&urls).await;
    let conn = Connection::open_cluster(&urls).await.unwrap();
    replies_slower_than_half_a_second_are_waited_for(conn, &admins).await;
}

/// A master of a cluster is killed (no replicas, so its slots are gone): ids of the other
/// masters, cached or not, keep working; calls for its ids (alone, or in a batch with others: a
/// batch has one result) fail with a typed error within the timeout, never hang nor panic; and a
/// connection opened afterwards fills the surviving ids.
/// The cluster is told to serve the slots it still has (`cluster-require-full-coverage no`, as
/// a deployment that wants this must be). Runs on a cluster of its own, so no other test loses
/// a node.
///
/// Once calls have gone to the lost node, redis-rs's cluster connection may hold all of its
/// requests for a long while as it keeps trying to reconnect (redis-rs issue 2092), surviving
/// ids' included: what the old connection does then is reported (a typed error, or served
/// again), not asserted, and the test's name claims no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_cluster_master_fails_its_ids_cleanly_and_the_others_work() {
    let mut cluster = ruecache_tests::start_cluster();
    let urls = cluster.urls();
    for url in &urls {
        let mut node = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg(("SET", "cluster-require-full-coverage", "no"))
            .query_async(&mut node)
            .await
            .unwrap();
    }
    let ns = ruecache_tests::ns();
    let cache = cache(
        Connection::open_cluster(&urls)
            .await
            .expect("cluster connection"),
        &ns,
    );
    // 0..60 are cached before the kill, 60..120 are not.
    let ids: Vec<u64> = (0..60).collect();
    let warm: HashMap<u64, String> = cache.get_and_fill(ids.clone(), fetch).await.unwrap();
    assert_eq!(warm.len(), ids.len());
    // The ids whose keys live on the first master: it answers for them, not with MOVED.
    let mut first = redis::Client::open(urls[0].as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut victims = Vec::new();
    for id in 0..120 {
        let owned: redis::RedisResult<i64> = redis::cmd("EXISTS")
            .arg(cache.data_key(&id).unwrap())
            .query_async(&mut first)
            .await;
        if owned.is_ok() {
            victims.push(id);
        }
    }
    let (cached, cold): (Vec<u64>, Vec<u64>) = (0..120)
        .filter(|id| !victims.contains(id))
        .partition(|&id| id < 60);
    assert!(
        !victims.is_empty() && !cached.is_empty() && !cold.is_empty(),
        "{victims:?}"
    );

    cluster.nodes_mut()[0].kill();
    let mut outcomes = Vec::new();

    // The other masters' ids: hits, and fills (leases, commits) on live nodes.
    let hits: HashMap<u64, String> = guarded(
        "a batch of cached surviving ids",
        cache.get_and_fill(cached.clone(), fetch),
    )
    .await
    .expect("the surviving masters serve their cached ids");
    assert_eq!(hits.len(), cached.len());
    let (first_cold, later_cold) = cold.split_at(cold.len() / 2);
    let source = Source::default();
    let filled: HashMap<u64, String> = guarded(
        "a batch of cold surviving ids",
        cache.get_and_fill(first_cold.to_vec(), |ids| source.fetch(ids)),
    )
    .await
    .expect("the surviving masters fill their ids");
    assert_eq!(filled.len(), first_cold.len());
    assert!(source.counts().values().all(|&n| n == 1));
    outcomes.push(format!(
        "surviving ids: {} cached read, {} cold filled",
        hits.len(),
        filled.len()
    ));

    // The lost master's ids: typed errors.
    let all = guarded(
        "a batch over all masters",
        cache.get_and_fill::<_, HashMap<_, _>, _, _, _, _>(ids.clone(), fetch),
    )
    .await;
    outcomes.push(format!(
        "batch of all ids: {}",
        connection_error("batch of all ids", all)
    ));
    let victim = victims[0];
    let single = guarded(
        "a read of a lost id",
        cache.get_and_fill_one(
            victim,
            |id| async move { Ok::<_, Failure>(Some(value(id))) },
        ),
    )
    .await;
    outcomes.push(format!(
        "single lost id: {}",
        connection_error("single lost id", single)
    ));
    let invalidate = guarded("invalidating a lost id", cache.invalidate([victim])).await;
    outcomes.push(format!(
        "invalidate lost id: {}",
        connection_error("invalidate lost id", invalidate.map_err(Failure::Cache))
    ));

    // After those, this connection: reported (see above).
    let again = guarded(
        "cached surviving ids after the lost ones",
        cache.get_and_fill::<_, HashMap<_, _>, _, _, _, _>(cached.clone(), fetch),
    )
    .await;
    outcomes.push(match again {
        Ok(got) => {
            assert_eq!(got.len(), cached.len());
            "this connection, afterwards: Ok".to_owned()
        }
        Err(e) => format!(
            "this connection, afterwards: {} (redis-rs recovering)",
            connection_error("cached surviving ids afterwards", Err::<(), _>(e))
        ),
    });
    // A new connection to the surviving nodes fills their other cold ids.
    let fresh = cache_with_source_check(&urls[1..], &ns, later_cold).await;
    outcomes.push(format!("a new connection: {fresh} cold ids filled"));
    eprintln!(
        "faults: killed 1 of 3 cluster masters ({} of 120 ids lost): {outcomes:?}",
        victims.len()
    );
}

/// Fills `ids` (all on live masters) through a connection opened after the kill, to the
/// surviving nodes only, and checks each was fetched once; returns how many.
async fn cache_with_source_check(live: &[String], ns: &str, ids: &[u64]) -> usize {
    let conn = guarded(
        "connecting to the surviving masters",
        Connection::open_cluster(live),
    )
    .await
    .expect("a connection to the surviving masters");
    let cache = cache(conn, ns);
    let source = Source::default();
    let got: HashMap<u64, String> = guarded(
        "a batch of cold surviving ids",
        cache.get_and_fill(ids.to_vec(), |ids| source.fetch(ids)),
    )
    .await
    .unwrap_or_else(|e| panic!("the surviving masters fill their ids: {e:?}"));
    assert_eq!(got.len(), ids.len());
    assert!(source.counts().values().all(|&n| n == 1));
    got.len()
}
