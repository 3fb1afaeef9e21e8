//! Reading the cache without filling it (`get`, `get_many`) and writing through after a write to
//! the source (`set`, `set_many`).

mod support;

use std::collections::HashMap;

use ruecache::Lookup;
use ruecache_tests::{both, Target};
use support::{cmd, exists, paused_fill, value, Gate, Source};

async fn get_reads_without_filling(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    assert_eq!(cache.get(1).await.unwrap(), Lookup::NotCached);
    assert!(
        !exists(conn, cache.data_key(&1).unwrap()).await,
        "a read leaves no key"
    );
    let source = Source::without(&[2]);
    let _: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(cache.get(1).await.unwrap(), Lookup::Found(value(1)));
    assert_eq!(
        cache.get(2).await.unwrap(),
        Lookup::Absent,
        "cached as absent"
    );
    let many: HashMap<u64, Lookup<String>> = cache.get_many([1, 2, 3, 1]).await.unwrap();
    assert_eq!(
        many,
        HashMap::from([
            (1, Lookup::Found(value(1))),
            (2, Lookup::Absent),
            (3, Lookup::NotCached),
        ])
    );
    assert_eq!(source.calls(), vec![vec![1, 2]], "reads never fetch");
}

async fn set_writes_through(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    cache
        .set_many([
            (1, "one".to_owned()),
            (2, "two".to_owned()),
            (1, "uno".to_owned()),
        ])
        .await
        .unwrap();
    cache.set(3, "three".to_owned()).await.unwrap();
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(
        got,
        HashMap::from([
            (1, "uno".to_owned()),
            (2, "two".to_owned()),
            (3, "three".to_owned())
        ]),
        "the last value of an id given twice"
    );
    assert!(source.calls().is_empty(), "all hits");
    let pttl: i64 = cmd(cache.connection(), "PTTL", cache.data_key(&3).unwrap()).await;
    assert!(
        (240_000..=360_000).contains(&pttl),
        "written with the data TTL and jitter (PTTL {pttl})"
    );
    assert_eq!(cache.stats().sets, 3);
}

/// A fill that read the source before a write, still in its fetch when the new value is set:
/// its commit finds the value where its lease was and writes nothing, so the new value stays.
async fn set_during_a_fill_is_not_overwritten_by_it(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let mut gate = Gate::default();
    let (task, release) = paused_fill(&cache, vec![1], &mut gate).await;
    cache
        .set(1, "written after the read".to_owned())
        .await
        .unwrap();
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, value(1))]),
        "the racing caller gets what it read"
    );
    assert_eq!(
        cache.get(1).await.unwrap(),
        Lookup::Found("written after the read".to_owned()),
        "the older fill did not replace the value set after it read"
    );
    let stats = cache.stats();
    assert_eq!((stats.commits, stats.lost_locks), (0, 1));
}

both!(
    get_reads_without_filling,
    set_writes_through,
    set_during_a_fill_is_not_overwritten_by_it,
);
