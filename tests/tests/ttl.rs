//! TTLs: set with deterministic jitter, exact without it, none with `no_expiry`, values
//! really expire, and ids the source does not have take the absent TTL.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::{Cache, Error, Options};
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
    support::eventually("the data key expires", async || {
        cmd::<i64>(&conn, "EXISTS", &key).await == 0
    })
    .await;
    fill(&cache, 1..=2, &source).await;
    assert_eq!(source.calls(), vec![vec![1, 2], vec![1, 2]]);
}

/// Ids the source does not have are cached as absent for `absent_ttl` (with the same jitter),
/// values for the data TTL.
async fn absent_ids_take_the_absent_ttl(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .ttl(Duration::from_secs(3600))
        .absent_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let source = Source::without(&[2]);
    fill(&cache, 1..=2, &source).await;
    let value: i64 = cmd(&conn, "PTTL", cache.data_key(&1).unwrap()).await;
    assert!(
        (2_880_000..=4_320_000).contains(&value),
        "a value: the data TTL ±20 %, PTTL {value}"
    );
    let absent: i64 = cmd(&conn, "PTTL", cache.data_key(&2).unwrap()).await;
    assert!(
        (23_000..=36_000).contains(&absent),
        "absent: the absent TTL ±20 %, PTTL {absent}"
    );
    fill(&cache, 1..=2, &source).await;
    assert_eq!(source.calls(), vec![vec![1, 2]], "both cached");
}

/// The largest TTLs the builder accepts are taken by Redis as they are: a fill with each of
/// them at its maximum (and the data TTL doubled by full jitter for some ids) commits, and the
/// keys carry those TTLs.
async fn largest_accepted_ttls_are_taken_by_redis(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .ttl(Options::MAX_TTL)
        .jitter(1.0)
        .lock_ttl(Options::MAX_TTL)
        .absent_ttl(Options::MAX_TTL)
        .build()
        .unwrap();
    let source = Source::without(&[20]);
    fill(&cache, 1..=20, &source).await;
    let max_ms = i64::try_from(Options::MAX_TTL.as_millis()).unwrap();
    let mut longest = 0;
    for id in 1..=20 {
        let keys = cache.keys(&id).unwrap();
        let data: i64 = cmd(&conn, "PTTL", &keys.data).await;
        assert!((1..=2 * max_ms).contains(&data), "id {id}: PTTL {data}");
        longest = longest.max(data);
    }
    assert!(
        longest > max_ms,
        "jitter stretched some TTL past the maximum: {longest}"
    );
    assert_eq!(cache.stats().commits, 20);
    fill(&cache, 1..=20, &source).await;
    assert_eq!(source.calls().len(), 1, "the second call hits");
}

both!(
    largest_accepted_ttls_are_taken_by_redis,
    ttl_is_set_with_jitter,
    ttl_without_jitter_is_exact,
    no_expiry_leaves_pttl_minus_one,
    values_expire_and_are_refetched,
    absent_ids_take_the_absent_ttl,
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
        b().absent_ttl(Duration::ZERO).build(),
        // Durations Redis or the clock cannot take: they would fail every miss, or panic
        // computing a deadline, if they got past `build`.
        b().timeout(Duration::MAX).build(),
        b().timeout(Options::MAX_TIMEOUT + Duration::from_millis(1))
            .build(),
        b().ttl(Duration::MAX).build(),
        b().ttl(Options::MAX_TTL + Duration::from_millis(1)).build(),
        b().lock_ttl(Options::MAX_TTL + Duration::from_millis(1))
            .build(),
        b().absent_ttl(Duration::MAX).build(),
        b().backoff(Duration::from_millis(25), Duration::MAX)
            .build(),
        // An unlock threshold not shorter than the lock TTL would never release a lock.
        b().unlock_threshold(Duration::from_secs(5)).build(),
        b().lock_ttl(Duration::from_millis(100))
            .unlock_threshold(Duration::from_secs(1))
            .build(),
        // A zero minimum backoff would poll Redis in a busy loop.
        b().backoff(Duration::ZERO, Duration::from_secs(1)).build(),
    ];
    for case in cases {
        let err = case.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
    // The limits themselves are accepted, and a rejection says how to fix it.
    b().ttl(Options::MAX_TTL)
        .lock_ttl(Options::MAX_TTL)
        .absent_ttl(Options::MAX_TTL)
        .timeout(Options::MAX_TIMEOUT)
        .backoff(Options::MAX_TIMEOUT, Options::MAX_TIMEOUT)
        .build()
        .expect("the documented maxima are accepted");
    let err = b().ttl(Duration::MAX).build().unwrap_err();
    assert!(err.to_string().contains("no_expiry()"), "{err}");
    let err = b().timeout(Duration::MAX).build().unwrap_err();
    assert!(err.to_string().contains("MAX_TIMEOUT"), "{err}");
    let err = Cache::<u64, String>::builder(conn.clone(), "w:{name}")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
    assert!(err.to_string().contains("{id}"), "{err}");
}
