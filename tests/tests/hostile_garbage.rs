//! Hostile keys: garbage and keys of other types written by hand where the cache keeps an id's
//! data, a lease written by hand, the previous protocol's keys, and a lease step that fails.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::{Cache, Connection};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{big_value, cmd, exists, value, Source, TestError};

fn short_timeout_cache(conn: Connection, ns: &str) -> Cache<u64, String> {
    // A short timeout, so that a garbage key that made the cache wait forever would show up as
    // an error instead of a slow pass.
    Cache::builder(conn, &support::template(ns))
        .timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .build()
        .unwrap()
}

/// Bytes in the data key that look like the cache's envelope but are not (magic byte alone,
/// unknown kind, "absent" with trailing bytes) or are random binary: refilled from the source,
/// by the batch and the single-id path alike, never returned and never a panic.
async fn envelope_shaped_garbage_in_data_keys_is_refilled(t: Target) {
    let conn = t.connect().await;
    let cache = short_timeout_cache(conn.clone(), &t.ns());
    let garbage: [&[u8]; 5] = [
        &[0xC1],
        &[0xC1, b'X', 1, 2, 3],
        &[0xC1, b'A', 0],
        &[0xC1, 0xC1, b'P'],
        &big_value(9, 4096),
    ];
    for round in 0..2 {
        for (i, bytes) in garbage.iter().enumerate() {
            cmd::<()>(&conn, "SET", (cache.data_key(&(i as u64)).unwrap(), *bytes)).await;
        }
        let source = Source::default();
        let got: HashMap<u64, String> = if round == 0 {
            cache
                .get_and_fill(0..5, |ids| source.fetch(ids))
                .await
                .unwrap()
        } else {
            let mut got = HashMap::new();
            for id in 0..5 {
                let v = cache
                    .get_and_fill_one(id, |id| {
                        let source = source.clone();
                        async move {
                            Ok::<_, support::TestError>(source.fetch(vec![id]).await?.remove(&id))
                        }
                    })
                    .await
                    .unwrap();
                got.insert(id, v.expect("the source has every id"));
            }
            got
        };
        assert_eq!(got, (0..5).map(|id| (id, value(id))).collect());
        assert_eq!(
            source.counts().len(),
            5,
            "every garbage value was refetched"
        );
        let again: HashMap<u64, String> = cache
            .get_and_fill(0..5, |ids| source.fetch(ids))
            .await
            .unwrap();
        assert_eq!(again, got);
        assert_eq!(
            source.counts().values().sum::<usize>(),
            5,
            "and is now a hit"
        );
    }
}

/// The version key of the previous protocol (three keys per id) for a data key with a hash tag.
fn previous_version_key(data_key: &str) -> Vec<u8> {
    let open = data_key.find('{').unwrap();
    let close = data_key[open..].find('}').unwrap() + open;
    [
        &data_key.as_bytes()[open..=close],
        b"\xFFv",
        data_key.as_bytes(),
    ]
    .concat()
}

/// Garbage in the previous protocol's version key, with an expiry: fills never read it, and an
/// invalidation deletes it (for processes still on that protocol).
async fn garbage_in_the_previous_version_key_is_harmless(t: Target) {
    let conn = t.connect().await;
    let cache = short_timeout_cache(conn.clone(), &t.ns());
    let keys = cache.keys(&1).unwrap();
    let version = previous_version_key(&keys.data);
    let garbage: &[u8] = b"\xFF\x00garbage\xC1";
    cmd::<()>(&conn, "SET", (&version, garbage, "PX", 60_000)).await;
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got[&1], value(1));
    assert!(exists(&conn, &keys.data).await, "written");
    let again: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(source.calls().len(), 1);
    cache.invalidate([1]).await.unwrap();
    assert!(
        !exists(&conn, &version).await,
        "the invalidation deleted it"
    );
    assert!(!exists(&conn, &keys.data).await);
}

/// A lease someone else wrote by hand (shaped like one of a connection without liveness, so
/// there is no holder to check), with an expiry: the caller waits it out, then fills.
async fn foreign_lease_with_expiry_is_waited_out(t: Target) {
    let conn = t.connect().await;
    let cache = short_timeout_cache(conn.clone(), &t.ns());
    let keys = cache.keys(&1).unwrap();
    cmd::<()>(
        &conn,
        "SET",
        (&keys.data, support::unchecked_lease(300), "PX", 300),
    )
    .await;
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, [(1, value(1)), (2, value(2))].into());
    assert_eq!(source.counts()[&1], 1);
    assert!(
        cache.stats().lock_waits >= 1,
        "it did wait for the foreign lease"
    );
    assert!(!support::leased(&conn, &keys.data).await);
}

/// What a wrong-typed key does, asserted: the batch and single-id calls succeed (never an error,
/// a panic or a hang), the foreign key is replaced by the cache's own, and the id is then cached.
async fn check_wrong_type(cache: &Cache<u64, String>, broken_key: &[u8], label: &str) {
    let conn = cache.connection();
    let source = Source::default();
    let batch: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap_or_else(|e| panic!("{label}: batch: {e:?}"));
    assert_eq!(batch, [(1, value(1)), (2, value(2))].into(), "{label}");
    let kind: String = cmd(conn, "TYPE", broken_key).await;
    assert_ne!(kind, "list", "{label}: the foreign key was replaced");
    let single = cache
        .get_and_fill_one(1, |id| async move { Ok::<_, TestError>(Some(value(id))) })
        .await
        .unwrap_or_else(|e| panic!("{label}: single: {e:?}"));
    assert_eq!(single, Some(value(1)), "{label}");
    let calls = source.calls().len();
    let cached: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(cached, batch, "{label}");
    assert_eq!(source.calls().len(), calls, "{label}: and cached");
    assert!(
        !support::leased(conn, &cache.keys(&1).unwrap().data).await,
        "{label}: no lease left behind"
    );
}

/// The same, through the single-id path first (its own `GET`).
async fn check_wrong_type_single_first(cache: &Cache<u64, String>, label: &str) {
    let single = cache
        .get_and_fill_one(1, |id| async move { Ok::<_, TestError>(Some(value(id))) })
        .await
        .unwrap_or_else(|e| panic!("{label}: single: {e:?}"));
    assert_eq!(single, Some(value(1)), "{label}");
    let hit = cache
        .get_and_fill_one(1, |_| async move {
            Err::<Option<String>, _>(TestError::Source("must not be fetched"))
        })
        .await
        .unwrap();
    assert_eq!(hit, Some(value(1)), "{label}: and cached");
}

async fn list_in_data_key_heals_by_itself(t: Target) {
    let conn = t.connect().await;
    let cache = short_timeout_cache(conn.clone(), &t.ns());
    let data = cache.keys(&1).unwrap().data;
    cmd::<()>(&conn, "RPUSH", (&data, "a", "b")).await;
    check_wrong_type(&cache, data.as_bytes(), "list in the data key").await;
    let cache = short_timeout_cache(conn.clone(), &t.ns());
    let data = cache.keys(&1).unwrap().data;
    cmd::<()>(&conn, "RPUSH", (&data, "a", "b")).await;
    check_wrong_type_single_first(&cache, "list in the data key").await;
}

/// A list where the previous protocol kept its version key: fills never touch it, and an
/// invalidation deletes it like any key.
async fn list_in_the_previous_version_key_is_deleted_by_invalidate(t: Target) {
    let conn = t.connect().await;
    let cache = short_timeout_cache(conn.clone(), &t.ns());
    let version = previous_version_key(&cache.keys(&1).unwrap().data);
    cmd::<()>(&conn, "RPUSH", (&version, "a", "b")).await;
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, [(1, value(1)), (2, value(2))].into());
    cache.invalidate([1]).await.unwrap();
    let kind: String = cmd(&conn, "TYPE", &version).await;
    assert_eq!(kind, "none");
}

/// A batch whose lease step fails (here it times out: Redis holds every write) must not leave the
/// leases behind that its commands take once Redis runs them: they would block every other
/// caller for the lock TTL. (A private server: `CLIENT PAUSE` holds all of a server's clients.)
#[ruecache_tests::tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_releases_the_locks_it_took() {
    let server = start_standalone_with(&[]);
    let (conn, admin) = support::writes_held(&server.url()).await;
    let cache: Cache<u64, String> = Cache::builder(conn.clone(), "failed:{id}")
        .lock_ttl(Duration::from_secs(30))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let source = Source::default();
    let failed = cache
        .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([1, 2, 3], |ids| source.fetch(ids))
        .await;
    assert!(
        matches!(failed, Err(TestError::Cache(ref e)) if e.contains("timed out")),
        "{failed:?}"
    );
    support::take_command_calls(&admin).await;
    support::release_writes(&admin).await;
    // The release runs in the background, sent after the held lease step on the same
    // connection, so Redis runs it after the leases were taken.
    conn.settle().await;
    let calls = support::take_command_calls(&admin).await;
    assert_eq!(
        calls.get("set").copied().unwrap_or(0),
        3,
        "the held lease commands did run: {calls:?}"
    );
    for id in [1, 2, 3] {
        let key = cache.data_key(&id).unwrap();
        assert!(
            !support::leased(&conn, &key).await,
            "the lease of id {id} is still held after the call failed (lock TTL 30 s)"
        );
    }
    assert!(source.calls().is_empty(), "nothing was fetched");
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}

both!(
    envelope_shaped_garbage_in_data_keys_is_refilled,
    garbage_in_the_previous_version_key_is_harmless,
    foreign_lease_with_expiry_is_waited_out,
    list_in_data_key_heals_by_itself,
    list_in_the_previous_version_key_is_deleted_by_invalidate,
);
