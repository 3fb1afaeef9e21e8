//! TTLs: set with deterministic jitter, exact without it, none with `no_expiry`, and values
//! really expire.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::{Cache, Error};
use ruecache_tests::{both, Target};
use support::{cmd, template, Source};

async fn fill(cache: &Cache<u64, String>, ids: std::ops::RangeInclusive<u64>, source: &Source) {
    let _: HashMap<u64, String> = cache
        .get_and_fill(ids, |ids| source.fetch(ids))
        .await
        .unwrap();
}

async fn ttl_is_set_with_jitter(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .ttl(Duration::from_secs(100))
        .build()
        .unwrap();
    fill(&cache, 1..=50, &Source::default()).await;
    let mut ttls = Vec::new();
    for id in 1..=50 {
        let pttl: i64 = cmd(&conn, "PTTL", cache.data_key(&id).unwrap()).await;
        assert!(
            (79_000..=120_000).contains(&pttl),
            "id {id}: PTTL {pttl} outside 100 s ± 20 %"
        );
        ttls.push(pttl / 1000);
    }
    ttls.sort_unstable();
    ttls.dedup();
    assert!(ttls.len() > 10, "jitter spreads TTLs: {ttls:?}");
}

async fn ttl_without_jitter_is_exact(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .ttl(Duration::from_secs(100))
        .jitter(0.0)
        .build()
        .unwrap();
    fill(&cache, 1..=5, &Source::default()).await;
    for id in 1..=5 {
        let pttl: i64 = cmd(&conn, "PTTL", cache.data_key(&id).unwrap()).await;
        assert!((95_000..=100_000).contains(&pttl), "PTTL {pttl}");
    }
}

async fn no_expiry_leaves_pttl_minus_one(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .no_expiry()
        .build()
        .unwrap();
    fill(&cache, 1..=3, &Source::default()).await;
    for id in 1..=3 {
        let pttl: i64 = cmd(&conn, "PTTL", cache.data_key(&id).unwrap()).await;
        assert_eq!(pttl, -1);
    }
}

async fn values_expire_and_are_refetched(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .ttl(Duration::from_millis(100))
        .jitter(0.0)
        .build()
        .unwrap();
    let source = Source::default();
    fill(&cache, 1..=2, &source).await;
    let key = cache.data_key(&1).unwrap();
    // Wait for Redis to expire the key (observed, not assumed).
    while cmd::<i64>(&conn, "EXISTS", &key).await == 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fill(&cache, 1..=2, &source).await;
    assert_eq!(source.calls(), vec![vec![1, 2], vec![1, 2]]);
}

both!(
    ttl_is_set_with_jitter,
    ttl_without_jitter_is_exact,
    no_expiry_leaves_pttl_minus_one,
    values_expire_and_are_refetched,
);

#[tokio::test]
async fn builder_rejects_nonsense() {
    let conn = Target::Standalone.connect().await;
    let b = || Cache::<u64, String>::builder(conn.clone(), "w:{id}");
    let cases = [
        b().ttl(Duration::ZERO).build(),
        b().jitter(1.5).build(),
        b().jitter(-0.1).build(),
        b().lock_ttl(Duration::ZERO).build(),
        b().timeout(Duration::ZERO).build(),
        b().backoff(Duration::from_secs(2), Duration::from_secs(1))
            .build(),
        b().version_ttl(Duration::from_secs(1)).build(),
    ];
    for case in cases {
        let err = case.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
    let err = Cache::<u64, String>::builder(conn.clone(), "w:{name}")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
    assert!(err.to_string().contains("{id}"), "{err}");
}
