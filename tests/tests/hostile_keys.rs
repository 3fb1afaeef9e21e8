//! Hostile ids: made of braces, colons, NULs and odd unicode, they never share a key with another
//! id, their keys share one cluster slot, and they round-trip.

mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use ruecache::{Cache, Connection};
use ruecache_tests::{both, Target};
use support::{cmd, Failure};

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

/// Property: for arbitrary distinct ids and every template shape, the data keys of the two ids
/// (each id's only key) are distinct, and each id's wake-up channel shares its data key's
/// cluster slot.
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
        "hostile: {} id pairs tried against {} templates ({} data key pairs compared)",
        tried.load(Ordering::Relaxed),
        TEMPLATES.len(),
        tried.load(Ordering::Relaxed) * TEMPLATES.len()
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

both!(hostile_ids_round_trip,);
