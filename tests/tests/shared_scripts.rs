//! Concurrent callers on one connection share their script calls: many misses at once commit
//! through fewer `EVALSHA`s than fills, every value right; and a shared call that Redis refuses
//! because of one caller fails no other caller.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use redis::{ErrorKind, ServerErrorKind};
use ruecache::{Cache, Connection};
use ruecache_tests::{start_secure, start_standalone_with, Secure};
use support::{cmd, exists, value, Source, TestError, MINIMAL_ACL, PASSWORD};
use tokio::sync::Barrier;

/// How many `EVALSHA`s the server ran (or refused) since its stats were last reset.
async fn evalsha_calls(conn: &Connection) -> (u64, u64) {
    let info: String = cmd(conn, "INFO", "commandstats").await;
    let Some(line) = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
    else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("calls"), field("rejected_calls"))
}

/// 256 tasks, released at once by a barrier, each miss a different id on one connection: each id
/// is fetched once and cached, and the 256 commits share script calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_script_calls() {
    const TASKS: u64 = 256;
    let server = start_standalone_with(&[]);
    let conn = server.connect().await;
    let cache = support::cache(conn.clone(), &ruecache_tests::ns());
    cache.preload_scripts().await.unwrap();
    cmd::<()>(&conn, "CONFIG", "RESETSTAT").await;
    let source = Source::default();
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|id| {
            let (cache, source, barrier) = (cache.clone(), source.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([id], |ids| {
                        source.fetch(ids)
                    })
                    .await
            })
        })
        .collect();
    for (id, task) in (0..TASKS).zip(tasks) {
        let got = task.await.unwrap().unwrap();
        assert_eq!(got, [(id, value(id))].into());
    }
    let (calls, _) = evalsha_calls(&conn).await;
    let stats = cache.stats();
    assert_eq!(stats.commits, TASKS, "{stats:?}");
    assert!(
        source.counts().values().all(|&n| n == 1) && source.counts().len() == TASKS as usize,
        "each id fetched once: {:?}",
        source.counts()
    );
    for id in 0..TASKS {
        assert!(exists(&conn, cache.data_key(&id).unwrap()).await, "{id}");
    }
    assert!(
        calls < TASKS,
        "{TASKS} commits took {calls} script calls: none were shared"
    );
}

/// A user with the README's minimal ACL, allowed only the keys of caches named `widgets:`. 64
/// tasks invalidate at once through one connection of that user: 63 a `widgets:` id each, one a
/// `bad:` id. A script call shared with the
/// `bad:` id is refused as a whole (`NOPERM`); each caller in it then sends its own calls again,
/// so only the `bad:` caller fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_script_call_refused_for_one_caller_fails_no_other() {
    const TASKS: u64 = 64;
    let server = start_secure(
        Secure {
            tls: false,
            acl: true,
        },
        &[],
    );
    let admin = server.connect().await;
    cmd::<()>(&admin, "ACL", ("SETUSER", MINIMAL_ACL)).await;
    let conn = server
        .open(&server.url_as("cache", PASSWORD))
        .await
        .unwrap();
    let ok: Cache<u64, String> = Cache::builder(conn.clone(), "widgets:{id}")
        .build()
        .unwrap();
    let bad: Cache<u64, String> = Cache::builder(conn.clone(), "bad:{id}").build().unwrap();
    ok.preload_scripts().await.unwrap();
    // Something to invalidate: an invalidation deletes the data key.
    for id in 1..TASKS {
        cmd::<()>(&admin, "SET", (ok.data_key(&id).unwrap(), "cached")).await;
    }
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|id| {
            let (ok, bad, barrier) = (ok.clone(), bad.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                if id == 0 {
                    bad.invalidate([id]).await
                } else {
                    ok.invalidate([id]).await
                }
            })
        })
        .collect();
    for (id, task) in (0..TASKS).zip(tasks) {
        let result = task.await.unwrap();
        if id == 0 {
            let err = result.expect_err("the bad: key is not allowed");
            assert!(
                matches!(&err, ruecache::Error::Redis(e)
                    if e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)),
                "{err}"
            );
        } else {
            result.unwrap_or_else(|e| {
                panic!("widgets:{id} failed with the bad: caller's error: {e}")
            });
            assert!(
                !exists(&admin, ok.data_key(&id).unwrap()).await,
                "widgets:{id} was invalidated"
            );
        }
    }
    let (_, rejected) = evalsha_calls(&admin).await;
    assert!(rejected >= 1, "the bad: call was refused");
    // The cache stays usable for the allowed ids.
    let source = Source::default();
    let got: HashMap<u64, String> = ok
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .map_err(|e: TestError| e)
        .unwrap();
    assert_eq!(got, [(1, value(1)), (2, value(2))].into());
}
