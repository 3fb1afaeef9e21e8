//! A rolling deploy: processes on the previous protocol (three keys per id: data, version, lock)
//! share Redis with processes on this one (one key per id, the lease in the data key). What the
//! previous protocol wrote is read or refilled, never returned wrongly, and neither protocol can
//! write a stale value over an invalidation made by the other.

mod support;

use std::collections::HashMap;

use redis::Value;
use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{cmd, exists, leased, value};

/// The previous protocol's version and lock keys of a data key with a hash tag `{tag}`.
fn previous_keys(data_key: &str) -> (Vec<u8>, Vec<u8>) {
    let open = data_key.find('{').unwrap();
    let close = data_key[open..].find('}').unwrap() + open;
    let tag = &data_key[open..=close];
    let derived = |kind: u8| [tag.as_bytes(), &[0xFF, kind], data_key.as_bytes()].concat();
    (derived(b'v'), derived(b'l'))
}

/// A fill of the previous protocol, stopped in its fetch: its lock taken and its version read,
/// as `SET lock token NX PX` and `SET version fresh NX PX GET` left them.
async fn previous_fill_in_its_fetch(cache: &Cache<u64, String>, id: u64) -> (String, Vec<u8>) {
    let conn = cache.connection();
    let key = cache.data_key(&id).unwrap();
    let (version, lock) = previous_keys(&key);
    let token = b"0123456789abcdef0123456789abcdef";
    cmd::<()>(conn, "SET", (&lock, token, "NX", "PX", 5_000)).await;
    cmd::<()>(
        conn,
        "SET",
        (&version, b"previous-version", "NX", "PX", 600_000),
    )
    .await;
    (key, b"previous-version".to_vec())
}

/// The previous protocol's commit of `value` for `key`, as that fill sends it.
async fn previous_commit(cache: &Cache<u64, String>, key: &str, read_version: &[u8]) -> i64 {
    let (version, lock) = previous_keys(key);
    let mut sealed = vec![0xC1, b'P'];
    ruecache::Codec::encode(&ruecache::MsgPack, &"stale value".to_owned(), &mut sealed).unwrap();
    let script = redis::Script::new(include_str!("support/previous_commit.lua"));
    let reply: Value = script
        .key(key)
        .key(version)
        .key(lock)
        .arg(b"0123456789abcdef0123456789abcdef")
        .arg(read_version)
        .arg(sealed)
        .arg(60_000)
        .arg(b"channel")
        .arg(if cache.connection().is_cluster() {
            "1"
        } else {
            "0"
        })
        .invoke_async(&mut cache.connection().clone())
        .await
        .unwrap();
    match reply {
        Value::Array(replies) => match replies[..] {
            [Value::Int(n)] => n,
            _ => panic!("previous commit returned {replies:?}"),
        },
        other => panic!("previous commit returned {other:?}"),
    }
}

/// A value the previous protocol committed is in the same envelope: read as a hit.
async fn values_of_the_previous_protocol_are_hits(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let (key, read_version) = previous_fill_in_its_fetch(&cache, 1).await;
    assert_eq!(previous_commit(&cache, &key, &read_version).await, 1);
    let source = support::Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(
        got,
        HashMap::from([(1, "stale value".to_owned()), (2, value(2))])
    );
    assert_eq!(
        source.calls(),
        vec![vec![2]],
        "only the id not cached is fetched"
    );
    assert!(exists(conn, &key).await);
}

/// The previous protocol's fill in its fetch, an invalidation by this one, then that fill's
/// commit: refused (its version key is gone), so the value it read before the invalidation is
/// not written.
async fn previous_fill_across_an_invalidation_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let (key, read_version) = previous_fill_in_its_fetch(&cache, 1).await;
    cache.invalidate([1]).await.unwrap();
    let (version, _) = previous_keys(&key);
    assert!(
        !exists(conn, &version).await,
        "the invalidation deletes the version key"
    );
    assert_eq!(
        previous_commit(&cache, &key, &read_version).await,
        -2,
        "the previous protocol refuses a commit whose version key is gone"
    );
    assert!(
        !exists(conn, &key).await,
        "nothing written over the invalidation"
    );
}

/// This protocol's fill in its fetch, an invalidation of the previous protocol (`DEL data`,
/// a fresh version): the lease is deleted with the data key, so the commit is refused.
async fn fill_across_a_previous_invalidation_writes_nothing(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let mut gate = support::Gate::default();
    let (task, release) = support::paused_fill(&cache, vec![1], &mut gate).await;
    let (version, _) = previous_keys(&key);
    cmd::<()>(conn, "SET", (&version, b"fresh", "PX", 600_000)).await;
    cmd::<()>(conn, "DEL", &key).await;
    release.send(()).unwrap();
    task.await.unwrap();
    assert!(
        !exists(conn, &key).await,
        "nothing written over the invalidation"
    );
    assert_eq!(cache.stats().stale_commits, 1);
}

/// A lock key the previous protocol left (its process crashed mid-fill) does not stop this
/// protocol, which keeps its lease in the data key.
async fn previous_locks_do_not_block(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let key = cache.data_key(&1).unwrap();
    let (_, lock) = previous_keys(&key);
    cmd::<()>(conn, "SET", (&lock, b"0123456789abcdef0123456789abcdef")).await;
    let source = support::Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, HashMap::from([(1, value(1))]));
    assert!(exists(conn, &key).await && !leased(conn, &key).await);
    assert_eq!(cache.stats().lock_waits, 0, "not waited for");
}

both!(
    values_of_the_previous_protocol_are_hits,
    previous_fill_across_an_invalidation_writes_nothing,
    fill_across_a_previous_invalidation_writes_nothing,
    previous_locks_do_not_block,
);
