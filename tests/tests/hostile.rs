//! Hostile input: ids made of braces, colons, NULs and odd unicode; huge batches; huge values;
//! garbage written by hand into an id's keys; ids that cannot be rendered at all.

mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use ruecache::{Cache, Connection, Raw, MAX_KEY_LEN};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{cmd, exists, value, Source, TestError};

/// The test's error type, keeping the cache's error typed so tests can match its variant.
#[derive(Debug)]
enum Failure {
    Cache(ruecache::Error),
}

impl From<ruecache::Error> for Failure {
    fn from(e: ruecache::Error) -> Self {
        Self::Cache(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys: no collisions, one slot per id.

/// Key templates of every shape: no hash tag, the id as the hash tag (both spellings), a fixed
/// hash tag, the id alone, and several id slots.
const TEMPLATES: &[&str] = &[
    "w:{id}",
    "w:{{{id}}}",
    "w:<<<id>>>",
    "{id}",
    "{{fixed}}:{id}",
    "a{id}b{id}c",
    "<<<id>>>:{id}",
];

/// The Redis Cluster hash slot of a key, written from the cluster specification (not the
/// engine's): CRC16-XMODEM of the hash tag (the bytes between the first `{` and the next `}`, if
/// non-empty), or of the whole key, modulo 16384.
fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[test]
fn key_slot_matches_the_specification_vectors() {
    // CRC16-XMODEM check value, and slots from the Redis Cluster specification / CLUSTER KEYSLOT.
    assert_eq!(key_slot(b"123456789"), 0x31C3);
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    // An empty `{}` is no hash tag: the whole key is hashed.
    assert_eq!(key_slot(b"foo{}{bar}"), 8363);
    assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
}

/// Fragments an attacker would use: brace soup, separators, NUL, characters whose UTF-8 holds
/// bytes 0xC3 0xBF (`ÿ`, U+00FF) or 0xEF 0xBF 0xBF (U+FFFF), the template's own syntax, the
/// derived keys' kind letters.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{}".to_owned()),
        Just("}{".to_owned()),
        Just(":".to_owned()),
        Just("\0".to_owned()),
        Just("\u{FF}".to_owned()),
        Just("\u{FFFF}".to_owned()),
        Just("\u{10FFFF}".to_owned()),
        Just("<<<id>>>".to_owned()),
        Just("{id}".to_owned()),
        Just("v".to_owned()),
        Just("l".to_owned()),
        any::<char>().prop_map(String::from),
        "[a-z0-9]{1,3}",
    ]
}

fn hostile_id() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(fragment(), 0..10).prop_map(|v| v.concat()),
        2 => any::<String>(),
        1 => prop::collection::vec(fragment(), 500..2_000).prop_map(|v| v.concat()),
    ]
}

/// Two distinct ids, often near each other (one a prefix or a small edit of the other), which is
/// where collisions hide.
fn id_pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (hostile_id(), hostile_id()),
        (hostile_id(), fragment()).prop_map(|(a, f)| (a.clone(), a + &f)),
        (hostile_id(), fragment()).prop_map(|(a, f)| (a.clone(), f + &a)),
        (hostile_id(), fragment(), any::<prop::sample::Index>()).prop_map(|(a, f, at)| {
            let cut = a
                .char_indices()
                .map(|(i, _)| i)
                .chain([a.len()])
                .nth(at.index(a.chars().count() + 1))
                .unwrap_or(0);
            (a.clone(), format!("{}{f}{}", &a[..cut], &a[cut..]))
        }),
    ]
    .prop_filter("distinct ids", |(a, b)| a != b)
}

/// Checks one pair of ids under one template: their data keys (each id's only key) are
/// distinct, and each id's wake-up channel is in its data key's slot (a script releasing the
/// id's lease publishes on it with `SPUBLISH`).
fn check_pair(cache: &Cache<String, String>, a: &str, b: &str) -> Result<(), TestCaseError> {
    let (ka, kb) = match (cache.keys(&a.to_owned()), cache.keys(&b.to_owned())) {
        (Ok(ka), Ok(kb)) => (ka, kb),
        // Over the key length limit: refused with a clear error, checked elsewhere.
        (Err(ruecache::Error::KeyTooLong { .. }), _)
        | (_, Err(ruecache::Error::KeyTooLong { .. })) => return Ok(()),
        (Err(e), _) | (_, Err(e)) => return Err(TestCaseError::fail(format!("keys(): {e}"))),
    };
    prop_assert_ne!(&ka.data, &kb.data, "the data keys collide");
    for k in [&ka, &kb] {
        let slot = key_slot(k.data.as_bytes());
        prop_assert_eq!(key_slot(&k.channel), slot, "channel slot of {:?}", k.data);
    }
    Ok(())
}

fn caches(conn: &Connection) -> Vec<Cache<String, String>> {
    TEMPLATES
        .iter()
        .map(|t| {
            Cache::builder(conn.clone(), t)
                .build()
                .expect("valid template")
        })
        .collect()
}

/// Property: for arbitrary distinct ids and every template shape, no two of the six keys of the
/// two ids are equal, and version and lock keys share the data key's cluster slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_ids_never_share_keys_and_keys_share_a_slot() {
    // Building a cache takes a connection; key derivation itself never touches Redis.
    let conn = Target::Standalone.connect().await;
    let caches = caches(&conn);
    let tried = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 3_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&id_pair(), |(a, b)| {
        tried.fetch_add(1, Ordering::Relaxed);
        for cache in &caches {
            check_pair(cache, &a, &b)?;
        }
        Ok(())
    });
    eprintln!(
        "hostile: {} id pairs tried against {} templates ({} key pairs compared)",
        tried.load(Ordering::Relaxed),
        TEMPLATES.len(),
        tried.load(Ordering::Relaxed) * TEMPLATES.len() * 15
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The test's slot function agrees with the cluster itself (`CLUSTER KEYSLOT`) on the data keys
/// and wake-up channels of hostile ids: the property above checks the real thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_agree_with_cluster_keyslot() {
    let conn = Target::Cluster.connect().await;
    let caches = caches(&conn);
    let mut runner = TestRunner::deterministic();
    let strategy = hostile_id();
    let mut checked = 0;
    for n in 0..150 {
        let id = strategy.new_tree(&mut runner).unwrap().current();
        let cache = &caches[n % caches.len()];
        let Ok(keys) = cache.keys(&id) else { continue };
        for key in [keys.data.as_bytes(), &keys.channel] {
            let slot: u16 = cmd(&conn, "CLUSTER", ("KEYSLOT", key)).await;
            assert_eq!(
                slot,
                key_slot(key),
                "slot of {:?}",
                String::from_utf8_lossy(key)
            );
            checked += 1;
        }
    }
    eprintln!("hostile: {checked} keys' slots checked against CLUSTER KEYSLOT");
}

/// Asserts two maps are equal, printing only the differing ids (shortened), not whole maps.
fn same_map(got: &HashMap<String, String>, expected: &HashMap<String, String>, what: &str) {
    let short = |s: &str| format!("{:?}", s.chars().take(40).collect::<String>());
    let missing: Vec<String> = expected
        .keys()
        .filter(|id| got.get(*id) != expected.get(*id))
        .map(|id| short(id))
        .collect();
    let extra: Vec<String> = got
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .map(|id| short(id))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing or wrong {missing:?}, unexpected {extra:?}"
    );
}

/// Hostile ids work end to end: they round-trip, are cached, and invalidate separately.
async fn hostile_ids_round_trip(t: Target) {
    let conn = t.connect().await;
    let mut runner = TestRunner::deterministic();
    let strategy = hostile_id();
    let mut ids: Vec<String> = (0..200)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .chain(["".into(), "{".into(), "}".into(), "{}".into(), "\0".into()])
        .collect();
    ids.sort();
    ids.dedup();
    for template in TEMPLATES {
        // A namespace per template: two templates may map different ids to one key.
        let ns = t.ns();
        let cache: Cache<String, String> = Cache::builder(conn.clone(), &format!("{ns}{template}"))
            .build()
            .unwrap();
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| cache.keys(id).is_ok())
            .cloned()
            .collect();
        let fetches = Cell::new(0);
        let fetch = |missing: Vec<String>| {
            fetches.set(fetches.get() + 1);
            async move {
                Ok::<_, Failure>(
                    missing
                        .into_iter()
                        .map(|id| (id.clone(), format!("value of {id}")))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let expected: HashMap<String, String> = ids
            .iter()
            .map(|id| (id.clone(), format!("value of {id}")))
            .collect();
        let got: HashMap<String, String> = cache.get_and_fill(ids.clone(), fetch).await.unwrap();
        same_map(&got, &expected, template);
        let again: HashMap<String, String> = cache.get_and_fill(ids.clone(), fetch).await.unwrap();
        same_map(&again, &expected, template);
        assert_eq!(fetches.get(), 1, "the second read is all hits ({template})");
        // Invalidating one id leaves every other id cached.
        cache.invalidate([ids[0].clone()]).await.unwrap();
        let missing = std::sync::Mutex::new(Vec::new());
        let _: HashMap<String, String> = cache
            .get_and_fill(ids.clone(), |m: Vec<String>| {
                missing.lock().unwrap().extend(m.clone());
                fetch(m)
            })
            .await
            .unwrap();
        assert_eq!(
            missing.into_inner().unwrap(),
            vec![ids[0].clone()],
            "{template}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Size: huge batches, huge values, long ids.

/// A batch of 100,000 ids completes and returns exactly the ids the source has.
async fn batch_of_100_000_ids(t: Target) {
    const N: u64 = 100_000;
    let cache = support::cache(t.connect().await, &t.ns());
    let absent: Vec<u64> = (0..N).filter(|id| id % 7 == 0).collect();
    let source = Source::without(&absent);
    let ids: Vec<u64> = (0..N).collect();
    let got: HashMap<u64, String> = cache
        .get_and_fill(ids.clone(), |ids| source.fetch(ids))
        .await
        .unwrap();
    let expected: HashMap<u64, String> = (0..N)
        .filter(|id| id % 7 != 0)
        .map(|id| (id, value(id)))
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "exactly the ids the source has");
    assert_eq!(source.calls().len(), 1, "one fetch for the whole batch");
    let again: HashMap<u64, String> = cache
        .get_and_fill(ids, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert!(again == expected);
    assert_eq!(source.calls().len(), 1, "the second batch is all hits");
    let stats = cache.stats();
    eprintln!(
        "hostile: 100,000-id batch twice: {} hits, {} misses, {} commits",
        stats.hits, stats.misses, stats.commits
    );
    assert_eq!(stats.commits, N);
}

/// A 100,000-id batch is sent in bounded requests (`INFO commandstats` of a private server): its
/// reads take at least 100,000 / 512 `MGET`s and its commits at least 100,000 / 128 script calls
/// (the engine's limits per request), not one request for all, nor one per id.
#[ruecache_tests::tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_100_000_ids_is_sent_in_chunks() {
    const N: u64 = 100_000;
    let server = start_standalone_with(&[]);
    let conn = Connection::open(&server.url()).await.unwrap();
    let cache = support::cache(conn.clone(), "chunks:");
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill(0..N, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got.len() as u64, N);
    let calls = support::take_command_calls(&conn).await;
    let count = |command: &str| calls.get(command).copied().unwrap_or(0);
    let (reads, commits) = (count("mget"), count("evalsha"));
    eprintln!("hostile: 100,000-id batch in {reads} MGET and {commits} EVALSHA requests");
    assert!(reads >= N.div_ceil(512), "reads: {reads}");
    assert!(commits >= N.div_ceil(128), "commits: {commits}");
    assert!(
        reads < N / 50 && commits < N / 50,
        "not one request per id: {reads} MGET, {commits} EVALSHA"
    );
}

/// Deterministic bytes that compress badly.
fn big_value(id: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Values of 8 MB round-trip through a batch and a single read, and are then hits.
async fn values_of_8_mb_round_trip(t: Target) {
    const LEN: usize = 8 * 1024 * 1024;
    let cache: Cache<u64, Vec<u8>, Raw> =
        Cache::builder(t.connect().await, &support::template(&t.ns()))
            .codec(Raw)
            .build()
            .unwrap();
    let fetches = Cell::new(0);
    let fetch = |ids: Vec<u64>| {
        fetches.set(fetches.get() + 1);
        async move {
            Ok::<_, Failure>(
                ids.into_iter()
                    .map(|id| (id, big_value(id, LEN)))
                    .collect::<Vec<_>>(),
            )
        }
    };
    for _ in 0..2 {
        let got: HashMap<u64, Vec<u8>> = cache.get_and_fill([1, 2], fetch).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[&1] == big_value(1, LEN) && got[&2] == big_value(2, LEN));
        let one = cache
            .get_and_fill_one(
                3,
                |id| async move { Ok::<_, Failure>(Some(big_value(id, LEN))) },
            )
            .await
            .unwrap();
        assert!(one == Some(big_value(3, LEN)));
    }
    assert_eq!(fetches.get(), 1, "the second round is served from Redis");
    let stored: i64 = cmd(cache.connection(), "STRLEN", cache.data_key(&1).unwrap()).await;
    assert_eq!(
        stored,
        LEN as i64 + 2,
        "the value plus the two-byte envelope"
    );
}

/// An id whose data key is exactly the length limit works end to end; a 1 MB id is refused with
/// [`ruecache::Error::KeyTooLong`] by every entry point, before anything is fetched.
async fn very_long_ids(t: Target) {
    let ns = t.ns();
    let cache: Cache<String, String> =
        Cache::builder(t.connect().await, &format!("{ns}{{{{{{id}}}}}}"))
            .build()
            .unwrap();
    let overhead = ns.len() + 2;
    let longest = "x".repeat(MAX_KEY_LEN - overhead);
    assert_eq!(cache.data_key(&longest).unwrap().len(), MAX_KEY_LEN);
    let fetch = |ids: Vec<String>| async move {
        Ok::<_, Failure>(
            ids.into_iter()
                .map(|id| (id, "long".to_owned()))
                .collect::<Vec<_>>(),
        )
    };
    let got: HashMap<String, String> = cache
        .get_and_fill([longest.clone(), "short".into()], fetch)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(exists(cache.connection(), cache.data_key(&longest).unwrap()).await);
    cache.invalidate([longest.clone()]).await.unwrap();
    assert!(!exists(cache.connection(), cache.data_key(&longest).unwrap()).await);

    let huge = "y".repeat(1024 * 1024);
    let too_long = |e: &ruecache::Error| {
        matches!(e, ruecache::Error::KeyTooLong { len, max }
            if *len == huge.len() + overhead && *max == MAX_KEY_LEN)
    };
    let fetched = Cell::new(false);
    let batch = cache
        .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([huge.clone(), "short".into()], |ids| {
            fetched.set(true);
            fetch(ids)
        })
        .await;
    assert!(
        matches!(&batch, Err(Failure::Cache(e)) if too_long(e)),
        "{batch:?}"
    );
    let single = cache
        .get_and_fill_one(huge.clone(), |_| async {
            Ok::<_, Failure>(Some(String::new()))
        })
        .await;
    assert!(
        matches!(&single, Err(Failure::Cache(e)) if too_long(e)),
        "{single:?}"
    );
    assert!(
        !fetched.get(),
        "nothing is fetched for a call that cannot be keyed"
    );
    let invalidate = cache.invalidate([huge.clone()]).await;
    assert!(
        matches!(&invalidate, Err(e) if too_long(e)),
        "{invalidate:?}"
    );
    assert!(matches!(&cache.keys(&huge), Err(e) if too_long(e)));
    eprintln!(
        "hostile: {}-byte key accepted; 1 MB id refused: {}",
        MAX_KEY_LEN,
        invalidate.unwrap_err()
    );
}

/// An id whose `Display` fails gives [`ruecache::Error::InvalidId`] from every entry point, and
/// a batch containing one is refused before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Id(u64);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 13 {
            return Err(fmt::Error);
        }
        write!(f, "{}", self.0)
    }
}

async fn id_whose_display_fails_is_invalid_id(t: Target) {
    let cache: Cache<Id, String> = Cache::builder(t.connect().await, &support::template(&t.ns()))
        .build()
        .unwrap();
    let fetched = Cell::new(false);
    let fetch = |ids: Vec<Id>| {
        fetched.set(true);
        async move {
            Ok::<_, Failure>(
                ids.into_iter()
                    .map(|id| (id.clone(), id.0.to_string()))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let batch = cache
        .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([Id(1), Id(13), Id(2)], fetch)
        .await;
    assert!(
        matches!(batch, Err(Failure::Cache(ruecache::Error::InvalidId))),
        "{batch:?}"
    );
    let single = cache
        .get_and_fill_one(Id(13), |_| async { Ok::<_, Failure>(Some(String::new())) })
        .await;
    assert!(
        matches!(single, Err(Failure::Cache(ruecache::Error::InvalidId))),
        "{single:?}"
    );
    assert!(!fetched.get(), "nothing is fetched");
    assert!(matches!(
        cache.invalidate([Id(13)]).await,
        Err(ruecache::Error::InvalidId)
    ));
    assert!(matches!(
        cache.keys(&Id(13)),
        Err(ruecache::Error::InvalidId)
    ));
    assert!(matches!(
        cache.data_key(&Id(13)),
        Err(ruecache::Error::InvalidId)
    ));
    // The cache is unharmed: good ids still work.
    let good: HashMap<Id, String> = cache.get_and_fill([Id(1), Id(2)], fetch).await.unwrap();
    assert_eq!(good.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Garbage in an id's keys.

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
    hostile_ids_round_trip,
    batch_of_100_000_ids,
    values_of_8_mb_round_trip,
    very_long_ids,
    id_whose_display_fails_is_invalid_id,
    envelope_shaped_garbage_in_data_keys_is_refilled,
    garbage_in_the_previous_version_key_is_harmless,
    foreign_lease_with_expiry_is_waited_out,
    list_in_data_key_heals_by_itself,
    list_in_the_previous_version_key_is_deleted_by_invalidate,
);
