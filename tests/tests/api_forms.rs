//! The other ways in: single items, per-item fetches, self-identifying items, key functions,
//! protobuf values, and every connection kind.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ruecache::{fetch_one, Cache, Keyed, Prost};
use ruecache_tests::{both, Target};
use serde::{Deserialize, Serialize};
use support::{cmd, template, value, Source, TestError};

async fn get_and_fill_one_shares_keys_with_batches(t: Target) {
    let cache = support::cache(t.connect().await, &t.ns());
    let source = Source::without(&[9]);
    let _: HashMap<u64, String> = cache
        .get_and_fill([1, 9], |ids| source.fetch(ids))
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);
    let one = |id: u64| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, TestError>(Some(value(id))) }
    };
    assert_eq!(
        cache.get_and_fill_one(1, one).await.unwrap(),
        Some(value(1))
    );
    assert_eq!(
        cache.get_and_fill_one(9, one).await.unwrap(),
        None,
        "cached absence"
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "both came from the batch's keys"
    );
    assert_eq!(
        cache.get_and_fill_one(2, one).await.unwrap(),
        Some(value(2))
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

async fn fetch_one_calls_the_item_fetch_per_missing_id(t: Target) {
    let cache: Cache<String, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let resize = move |url: String| {
        c.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, TestError>((url != "missing").then(|| format!("{url}@512px"))) }
    };
    let ids = ["a.png", "b.png", "missing"].map(String::from);
    let got: HashMap<String, String> = cache
        .get_and_fill(ids.clone(), fetch_one(resize.clone()))
        .await
        .unwrap();
    let again: HashMap<String, String> = cache.get_and_fill(ids, fetch_one(resize)).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got["a.png"], "a.png@512px");
    assert_eq!(again, got);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Widget {
    id: u64,
    name: String,
}

impl Keyed<u64> for Widget {
    fn cache_id(&self) -> u64 {
        self.id
    }
}

async fn self_identifying_items(t: Target) {
    let cache: Cache<u64, Widget> = Cache::builder(t.connect().await, &template(&t.ns()))
        .build()
        .unwrap();
    let fetch = |ids: Vec<u64>| async move {
        Ok::<_, TestError>(
            ids.into_iter()
                .filter(|id| id % 2 == 1)
                .map(|id| Widget {
                    id,
                    name: value(id),
                })
                .collect(),
        )
    };
    let mut got = cache.get_and_fill_items([1, 2, 3], fetch).await.unwrap();
    got.sort_by_key(|w| w.id);
    assert_eq!(got.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1, 3]);
    let mut again = cache
        .get_and_fill_items([1, 2, 3], |_| async {
            Err::<Vec<Widget>, _>(TestError::Source("cached"))
        })
        .await
        .unwrap();
    again.sort_by_key(|w| w.id);
    assert_eq!(again, got);
}

async fn key_function_maps_ids(t: Target) {
    let ns = t.ns();
    let prefix = ns.clone();
    let cache: Cache<String, String> =
        Cache::builder_with_key_fn(t.connect().await, move |id: &String| {
            format!("{prefix}users:{{{}}}", id.to_lowercase())
        })
        .build()
        .unwrap();
    let source = |ids: Vec<String>| async move {
        Ok::<_, TestError>(
            ids.into_iter()
                .map(|id| (id.clone(), id.to_uppercase()))
                .collect::<Vec<_>>(),
        )
    };
    let _: HashMap<String, String> = cache
        .get_and_fill(["Ann".to_owned()], source)
        .await
        .unwrap();
    let stored: Option<Vec<u8>> =
        cmd(cache.connection(), "GET", format!("{ns}users:{{ann}}")).await;
    assert!(stored.is_some(), "the key function's key is used");
}

#[derive(Clone, PartialEq, prost::Message)]
struct Thumb {
    #[prost(string, tag = "1")]
    url: String,
    #[prost(uint32, tag = "2")]
    width: u32,
}

async fn protobuf_values(t: Target) {
    let cache: Cache<u64, Thumb, Prost> = Cache::builder(t.connect().await, &template(&t.ns()))
        .codec(Prost)
        .build()
        .unwrap();
    let thumb = |id: u64| Thumb {
        url: format!("https://cdn/{id}"),
        width: 512,
    };
    let fetch = |ids: Vec<u64>| async move {
        Ok::<_, TestError>(
            ids.into_iter()
                .map(|id| (id, thumb(id)))
                .collect::<Vec<_>>(),
        )
    };
    let _: HashMap<u64, Thumb> = cache.get_and_fill([1, 2], fetch).await.unwrap();
    let cached: HashMap<u64, Thumb> = cache
        .get_and_fill([1, 2], |_| async {
            Err::<Vec<(u64, Thumb)>, _>(TestError::Source("cached"))
        })
        .await
        .unwrap();
    assert_eq!(cached[&2], thumb(2));
}

both!(
    get_and_fill_one_shares_keys_with_batches,
    fetch_one_calls_the_item_fetch_per_missing_id,
    self_identifying_items,
    key_function_maps_ids,
    protobuf_values,
);

/// The reconnecting `ConnectionManager` works like the multiplexed connection.
#[tokio::test]
async fn connection_manager_fills_and_hits() {
    let t = Target::Standalone;
    let cache = support::cache(t.connection_manager().await, &t.ns());
    let source = Source::default();
    let first: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    let second: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(source.calls().len(), 1);
}
