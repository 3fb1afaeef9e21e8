//! Concurrent single-id reads on one connection share `MGET`s (on a connection from
//! `Connection::open`): every caller still gets its own id's value, absent ids stay absent, and
//! callers that stop waiting — queued, or holding a batch to read — never stall the others; and
//! Redis counts far fewer reads than callers.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use ruecache_tests::{both, Target};
use support::{value, Source, TestError};

const IDS: u64 = 300;

async fn concurrent_reads_get_their_own_values(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let source = Source::without(&[7, 70, 170]);
    // Half the ids cached beforehand, so the concurrent reads mix hits and misses.
    let warm: Vec<u64> = (0..IDS).step_by(2).collect();
    let _: std::collections::HashMap<u64, String> = cache
        .get_and_fill(warm, |ids| source.fetch(ids))
        .await
        .unwrap();

    for round in 0..2 {
        let tasks: Vec<_> = (0..IDS)
            .map(|id| {
                let cache = cache.clone();
                let source = source.clone();
                tokio::spawn(async move {
                    let got = cache
                        .get_and_fill_one(id, |id| {
                            let source = source.clone();
                            async move {
                                let mut found = source.fetch(vec![id]).await?;
                                Ok::<_, TestError>(found.remove(&id))
                            }
                        })
                        .await
                        .unwrap();
                    (id, got)
                })
            })
            .collect();
        for task in tasks {
            let (id, got) = task.await.unwrap();
            let expected = (![7, 70, 170].contains(&id)).then(|| value(id));
            assert_eq!(got, expected, "id {id}, round {round}");
        }
    }
    // Every id was fetched once at most: the second round was all hits.
    assert!(
        source.counts().values().all(|&n| n == 1),
        "{:?}",
        source.counts()
    );
}

/// Polls a future `n` times with a no-op waker, then drops it.
fn poll_then_drop<F: Future>(fut: F, n: usize) {
    let mut fut = Box::pin(fut);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..n {
        if Pin::as_mut(&mut fut).poll(&mut cx).is_ready() {
            return;
        }
    }
}

async fn dropped_readers_do_not_stall_the_others(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let source = Source::default();
    let all: Vec<u64> = (0..IDS).collect();
    let _: Vec<(u64, String)> = cache
        .get_and_fill(all, |ids| source.fetch(ids))
        .await
        .unwrap();

    for round in 0..20 {
        let tasks: Vec<_> = (0..IDS)
            .map(|id| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let read = cache.get_and_fill_one(id, |_| async { Ok::<_, TestError>(None) });
                    if id % 3 == round % 3 {
                        // Queue up (or take a turn) and stop waiting at some point.
                        poll_then_drop(read, 1 + (id as usize % 4));
                        None
                    } else {
                        Some((id, read.await.unwrap()))
                    }
                })
            })
            .collect();
        let finished = tokio::time::timeout(Duration::from_secs(10), async {
            for task in tasks {
                if let Some((id, got)) = task.await.unwrap() {
                    assert_eq!(got, Some(value(id)), "id {id}");
                }
            }
        })
        .await;
        assert!(finished.is_ok(), "round {round}: reads stalled");
    }
}

both!(
    concurrent_reads_get_their_own_values,
    dropped_readers_do_not_stall_the_others
);

/// How many times the server ran `command` since its stats were last reset (`INFO
/// commandstats`).
async fn calls_of(conn: &ruecache::Connection, command: &str) -> u64 {
    let info: String = support::cmd(conn, "INFO", "commandstats").await;
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// 300 single-id hits released at once by a barrier, on one connection: Redis's own count of
/// commands (a private server) shows that their reads shared `MGET`s, far fewer than one read
/// per caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_share_mgets() {
    let server = ruecache_tests::start_standalone_with(&[]);
    let conn = server.connect().await;
    let cache = support::cache(conn.clone(), &ruecache_tests::ns());
    let source = Source::default();
    let _: Vec<(u64, String)> = cache
        .get_and_fill((0..IDS).collect::<Vec<_>>(), |ids| source.fetch(ids))
        .await
        .unwrap();
    support::cmd::<()>(&conn, "CONFIG", "RESETSTAT").await;
    let misses = cache.stats().misses;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(IDS as usize));
    let tasks: Vec<_> = (0..IDS)
        .map(|id| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_and_fill_one(id, |_| async { Ok::<_, TestError>(None::<String>) })
                    .await
            })
        })
        .collect();
    for (id, task) in (0..IDS).zip(tasks) {
        assert_eq!(task.await.unwrap().unwrap(), Some(value(id)));
    }
    assert_eq!(cache.stats().misses, misses, "every read was a hit");
    let (gets, mgets) = (calls_of(&conn, "get").await, calls_of(&conn, "mget").await);
    assert!(
        gets + mgets <= IDS / 4,
        "{IDS} concurrent hits took {gets} GETs and {mgets} MGETs: their reads were not shared"
    );
    eprintln!("{IDS} concurrent hits: {gets} GETs, {mgets} MGETs");
}
