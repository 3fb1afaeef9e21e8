//! Presence: absent ids, `None` values, empty values and raw bytes survive the round trip, and
//! values not in the cache's format are refilled instead of returned.

mod support;

use std::collections::HashMap;

use ruecache::{Cache, Raw};
use ruecache_tests::{both, Target};
use serde::{Deserialize, Serialize};
use support::{cmd, template, TestError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Widget {
    name: String,
    tags: Vec<String>,
}

async fn absent_none_and_empty_round_trip(t: Target) {
    let cache: Cache<u64, Option<Widget>> = Cache::builder(t.connect().await, &template(&t.ns()))
        .build()
        .unwrap();
    let source = |ids: Vec<u64>| async move {
        Ok::<_, TestError>(
            ids.into_iter()
                .filter(|&id| id != 3)
                .map(|id| {
                    let w = match id {
                        1 => Some(Widget {
                            name: "one".into(),
                            tags: vec!["a".into()],
                        }),
                        2 => None,
                        _ => Some(Widget {
                            name: String::new(),
                            tags: vec![],
                        }),
                    };
                    (id, w)
                })
                .collect::<HashMap<_, _>>(),
        )
    };
    let expected: HashMap<u64, Option<Widget>> = HashMap::from([
        (
            1,
            Some(Widget {
                name: "one".into(),
                tags: vec!["a".into()],
            }),
        ),
        (2, None),
        (
            4,
            Some(Widget {
                name: String::new(),
                tags: vec![],
            }),
        ),
    ]);
    let filled: HashMap<u64, Option<Widget>> =
        cache.get_and_fill([1, 2, 3, 4], source).await.unwrap();
    let cached: HashMap<u64, Option<Widget>> = cache
        .get_and_fill([1, 2, 3, 4], |_| async {
            Err::<Vec<_>, _>(TestError::Source("all cached"))
        })
        .await
        .unwrap();
    assert_eq!(filled, expected);
    assert_eq!(cached, expected, "id 3 stays absent, id 2 stays None");
}

async fn raw_bytes_round_trip(t: Target) {
    let cache: Cache<u64, Vec<u8>, Raw> = Cache::builder(t.connect().await, &template(&t.ns()))
        .codec(Raw)
        .build()
        .unwrap();
    let values: HashMap<u64, Vec<u8>> =
        HashMap::from([(1, vec![]), (2, vec![0xC1, b'A']), (3, (0..=255).collect())]);
    let filled: HashMap<u64, Vec<u8>> = cache
        .get_and_fill([1, 2, 3], |_| {
            let v = values.clone();
            async move { Ok::<_, TestError>(v) }
        })
        .await
        .unwrap();
    let cached: HashMap<u64, Vec<u8>> = cache
        .get_and_fill([1, 2, 3], |_| async {
            Err::<Vec<_>, _>(TestError::Source("all cached"))
        })
        .await
        .unwrap();
    assert_eq!(filled, values);
    assert_eq!(cached, values);
}

async fn foreign_values_are_refilled(t: Target) {
    let conn = t.connect().await;
    let cache = support::cache(conn.clone(), &t.ns());
    // Written by hand, by an older format, and in our envelope but not decodable as a String.
    let k1 = cache.data_key(&1).unwrap();
    let k2 = cache.data_key(&2).unwrap();
    let k3 = cache.data_key(&3).unwrap();
    cmd::<()>(&conn, "SET", (&k1, "hand written")).await;
    cmd::<()>(&conn, "SET", (&k2, b"")).await;
    cmd::<()>(&conn, "SET", (&k3, &[0xC1u8, b'P', 0xFF, 0x00][..])).await;
    let source = support::Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(source.calls(), vec![vec![1, 2, 3]]);
    assert_eq!(got, (1..=3).map(|id| (id, support::value(id))).collect());
    let again: HashMap<u64, String> = cache
        .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(source.calls().len(), 1, "the refilled values are now hits");
}

both!(
    absent_none_and_empty_round_trip,
    raw_bytes_round_trip,
    foreign_values_are_refilled
);
