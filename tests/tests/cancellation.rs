//! Nothing lost to cancellation: a caller dropped after its fetch returned still commits; a caller
//! dropped while taking its locks or during its fetch releases them at once instead of blocking
//! others for the lock TTL.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt as _;
use ruecache::{Cache, Connection};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{eventually, exists, value, Gate, TestError};

/// Calls `get_and_fill(ids)` and drops the call in the poll in which its fetch returned, with
/// its commit in flight. With `hold_writes`, the fetch first holds writes inside Redis through
/// that connection (`CLIENT PAUSE WRITE`), so the commit cannot end until they are let go.
async fn drop_when_fetched(
    cache: &Cache<u64, String>,
    ids: Vec<u64>,
    hold_writes: Option<&Connection>,
) {
    let fetched = Arc::new(AtomicBool::new(false));
    let (flag, admin) = (fetched.clone(), hold_writes.cloned());
    let call = cache.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(ids, move |ids| {
        let (flag, admin) = (flag.clone(), admin.clone());
        async move {
            if let Some(admin) = &admin {
                support::cmd::<()>(admin, "CLIENT", ("PAUSE", 10_000, "WRITE")).await;
            }
            flag.store(true, Ordering::SeqCst);
            Ok::<_, TestError>(
                ids.into_iter()
                    .map(|id| (id, value(id)))
                    .collect::<Vec<_>>(),
            )
        }
    });
    let mut call = pin!(call);
    std::future::poll_fn(|cx| {
        let poll = call.as_mut().poll(cx);
        assert!(
            poll.is_pending(),
            "the commit is still in flight when the fetch returns: {poll:?}"
        );
        if fetched.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

async fn dropped_after_fetch_returned_still_commits(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    drop_when_fetched(&cache, vec![1, 2], None).await;
    let conn = cache.connection().clone();
    conn.settle().await; // the commit, finished by a spawned task
    assert!(exists(&conn, cache.data_key(&1).unwrap()).await);
    assert!(exists(&conn, cache.data_key(&2).unwrap()).await);
    assert!(!support::leased(&conn, &cache.data_key(&1).unwrap()).await);
}

async fn dropped_during_fetch_releases_locks(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let fetch = gate
        .handle()
        .then(|_| async { Ok::<_, TestError>(Vec::<(u64, String)>::new()) });
    let c = cache.clone();
    let task = tokio::spawn(async move {
        c.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1, 2], fetch)
            .await
    });
    let (_, _release) = gate.paused().await; // the fetch is running and holds both leases
    let key = cache.data_key(&1).unwrap();
    assert!(support::leased(cache.connection(), &key).await);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let conn = cache.connection().clone();
    conn.settle().await; // the release, run by a spawned task
    assert!(
        !exists(&conn, &key).await,
        "the lease was released and nothing was written"
    );
    assert!(!exists(&conn, cache.data_key(&2).unwrap()).await);
}

both!(dropped_during_fetch_releases_locks);

// On a current-thread runtime, so that the connection's reply to the commit can only be read
// once the call yields: the poll in which the fetch returns cannot also finish the commit.
#[tokio::test(flavor = "current_thread")]
async fn dropped_after_fetch_returned_still_commits_standalone() {
    dropped_after_fetch_returned_still_commits(Target::Standalone).await
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_after_fetch_returned_still_commits_cluster() {
    dropped_after_fetch_returned_still_commits(Target::Cluster).await
}

/// A caller dropped while its locks are being taken (the commands sent, their replies not read
/// yet) releases them too: the commands still run once Redis reads them, and the release right
/// after them, instead of the locks blocking others for the lock TTL. Writes are held inside
/// Redis (`CLIENT PAUSE WRITE`, on every node of a cluster) to drop the caller at that point.
async fn dropped_while_taking_locks_releases_them(conn: Connection, admins: &[Connection]) {
    for admin in admins {
        support::take_command_calls(admin).await; // counted from here
    }
    let cache = support::cache(conn.clone(), "taking:");
    let c = cache.clone();
    let task = tokio::spawn(async move {
        c.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1], |ids| async move {
            Ok::<_, TestError>(
                ids.into_iter()
                    .map(|id| (id, value(id)))
                    .collect::<Vec<_>>(),
            )
        })
        .await
    });
    // The first write of a fill is its lock: once a client waits in Redis, the call is waiting
    // for the lock's reply.
    eventually("the lock command to wait in Redis", async || {
        let mut blocked = 0;
        for admin in admins {
            let info: String = support::cmd(admin, "INFO", "clients").await;
            blocked += info
                .lines()
                .filter_map(|l| l.strip_prefix("blocked_clients:"))
                .map(|n| n.parse::<u64>().unwrap())
                .sum::<u64>();
        }
        blocked == 1
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    for admin in admins {
        support::release_writes(admin).await;
    }
    conn.settle().await; // the release, sent after the held lease command
    let mut sets = 0;
    let mut unlocks = 0;
    for admin in admins {
        let calls = support::take_command_calls(admin).await;
        sets += calls.get("set").copied().unwrap_or(0);
        unlocks += calls.get("evalsha").copied().unwrap_or(0);
    }
    assert_eq!(sets, 1, "the held lease command ran");
    assert!(
        unlocks >= 1,
        "then the release (a NOSCRIPT reply counts once more)"
    );
    assert!(
        !exists(&conn, cache.data_key(&1).unwrap()).await,
        "the lease was released, and nothing was fetched or written"
    );
}

#[tokio::test]
async fn dropped_while_taking_locks_releases_them_standalone() {
    let server = start_standalone_with(&[]);
    let (conn, admin) = support::writes_held(&server.url()).await;
    dropped_while_taking_locks_releases_them(conn, &[admin]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_while_taking_locks_releases_them_cluster() {
    let cluster = ruecache_tests::start_cluster();
    let urls = cluster.urls();
    // Without a liveness key: its first write would be the one held instead of the lock's.
    let conn = support::cluster_without_liveness(&urls).await;
    let admins = support::node_connections(&urls).await;
    for admin in &admins {
        support::cmd::<()>(admin, "CLIENT", ("PAUSE", 10_000, "WRITE")).await;
    }
    dropped_while_taking_locks_releases_them(conn, &admins).await;
}

/// An invalidation whose caller stops waiting right after the first poll (a request handler
/// cancelled between its database write and the end of the invalidation) still happens: the old
/// value cannot outlive the write for the data TTL.
async fn dropped_invalidation_still_happens(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let filled: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| async move {
            Ok::<_, TestError>(
                ids.into_iter()
                    .map(|id| (id, value(id)))
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap();
    assert_eq!(filled.len(), 2);
    let data = cache.data_key(&1).unwrap();
    {
        let mut invalidation = pin!(cache.invalidate([1, 2]));
        let first = std::future::poll_fn(|cx| Poll::Ready(invalidation.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the invalidation waits for Redis");
    }
    cache.connection().settle().await; // the invalidation, run by a task of its own
    assert!(!exists(cache.connection(), &data).await);
    assert!(!exists(cache.connection(), cache.data_key(&2).unwrap()).await);
}

both!(dropped_invalidation_still_happens);

/// [`Connection::settle`] waits for the commit a dropped caller left to a spawned task: the fetch
/// holds writes inside Redis (`CLIENT PAUSE WRITE`) before it returns, so that commit cannot end
/// and `settle` cannot return until the writes are let go; once it has returned, the value is
/// there without waiting any further.
#[tokio::test(flavor = "current_thread")]
async fn settle_waits_for_a_commit_left_running() {
    let server = start_standalone_with(&[]);
    let conn = Connection::open(&server.url()).await.unwrap();
    let admin = Connection::open(&server.url()).await.unwrap();
    let cache = support::cache(conn.clone(), "settle:");
    conn.settle().await; // nothing in the background yet
    drop_when_fetched(&cache, vec![1], Some(&admin)).await;
    let mut settle = pin!(conn.settle());
    for _ in 0..10 {
        // Let the spawned commit run up to its wait for Redis.
        tokio::task::yield_now().await;
        assert!(
            settle.as_mut().now_or_never().is_none(),
            "the commit is held in Redis, so the connection has not settled"
        );
    }
    let key = cache.data_key(&1).unwrap();
    assert!(
        support::leased(&admin, &key).await,
        "reads go on; the commit waits, the lease is still there"
    );
    support::release_writes(&admin).await;
    settle.await;
    assert!(
        exists(&admin, &key).await,
        "the commit ended before settle did"
    );
    assert!(!support::leased(&admin, &key).await);
}
