//! TTLs: set with deterministic jitter, exact without it, none with `no_expiry`, values
//! really expire, and the version key's TTL is set and refreshed when a fill reads it.

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

/// A fill that finds the version key reads it and extends its TTL to the version TTL, and a
/// fill that finds none creates it with that TTL.
async fn version_ttl_is_set_and_refreshed_on_read(t: Target) {
    let conn = t.connect().await;
    let cache = Cache::builder(conn.clone(), &template(&t.ns()))
        .version_ttl(Duration::from_secs(100))
        .build()
        .unwrap();
    let source = Source::default();
    fill(&cache, 1..=1, &source).await;
    let keys = cache.keys(&1).unwrap();
    let created: i64 = cmd(&conn, "PTTL", &keys.version).await;
    assert!((90_000..=100_000).contains(&created), "PTTL {created}");
    let version: Vec<u8> = cmd(&conn, "GET", &keys.version).await;

    // The version is about to expire and the data is gone: the next call misses and reads it.
    cmd::<()>(&conn, "PEXPIRE", (&keys.version, 5_000)).await;
    cmd::<()>(&conn, "DEL", &keys.data).await;
    fill(&cache, 1..=1, &source).await;
    let refreshed: i64 = cmd(&conn, "PTTL", &keys.version).await;
    assert!(
        (90_000..=100_000).contains(&refreshed),
        "read, not refreshed: PTTL {refreshed}"
    );
    let read: Vec<u8> = cmd(&conn, "GET", &keys.version).await;
    assert_eq!(read, version, "reading the version must not replace it");
    assert_eq!(source.calls(), vec![vec![1], vec![1]]);
    assert_eq!(
        cache.stats().commits,
        2,
        "both fills wrote with that version"
    );
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
        .version_ttl(Options::MAX_TTL)
        .build()
        .unwrap();
    let source = Source::default();
    fill(&cache, 1..=20, &source).await;
    let max_ms = i64::try_from(Options::MAX_TTL.as_millis()).unwrap();
    let mut longest = 0;
    for id in 1..=20 {
        let keys = cache.keys(&id).unwrap();
        let data: i64 = cmd(&conn, "PTTL", &keys.data).await;
        assert!((1..=2 * max_ms).contains(&data), "id {id}: PTTL {data}");
        longest = longest.max(data);
        let version: i64 = cmd(&conn, "PTTL", &keys.version).await;
        assert!(version > max_ms - 60_000, "id {id}: version PTTL {version}");
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
    version_ttl_is_set_and_refreshed_on_read,
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
        // Durations Redis or the clock cannot take: they would fail every miss, or panic
        // computing a deadline, if they got past `build`.
        b().timeout(Duration::MAX).build(),
        b().timeout(Options::MAX_TIMEOUT + Duration::from_millis(1))
            .build(),
        b().ttl(Duration::MAX).build(),
        b().ttl(Options::MAX_TTL + Duration::from_millis(1)).build(),
        b().lock_ttl(Options::MAX_TTL + Duration::from_millis(1))
            .version_ttl(Duration::MAX)
            .build(),
        b().version_ttl(Duration::MAX).build(),
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
        .version_ttl(Options::MAX_TTL)
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
