//! Counters exported through the `metrics` facade (feature `metrics`), labelled with the cache's
//! name, beside the same counts in `Cache::stats`.

mod support;

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use ruecache::Cache;
use ruecache_tests::Target;

/// Every counter the recorder saw, by name and `cache` label. Taken once: a snapshot of the
/// debugging recorder drains its counters.
fn counters(snapshotter: &Snapshotter) -> Vec<(String, String, u64)> {
    let snapshot = snapshotter.snapshot().into_vec();
    snapshot
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let cache = key
                .key()
                .labels()
                .find(|l| l.key() == "cache")?
                .value()
                .to_owned();
            match (key.kind(), value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    Some((key.key().name().to_owned(), cache, n))
                }
                _ => None,
            }
        })
        .collect()
}

/// The counter `name` with the label `cache = cache`.
fn counter(counters: &[(String, String, u64)], name: &str, cache: &str) -> Option<u64> {
    counters
        .iter()
        .find(|(n, c, _)| n == name && c == cache)
        .map(|(_, _, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_exported_per_cache_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");

    let t = Target::Standalone;
    let ns = t.ns();
    let conn = t.connect().await;
    let named = |name: &'static str| -> Cache<u64, String> {
        Cache::builder(conn.clone(), &support::template(&format!("{ns}{name}")))
            .name(name)
            .build()
            .unwrap()
    };
    let (widgets, gadgets) = (named("widgets"), named("gadgets"));
    let source = support::Source::without(&[3]);
    for _ in 0..2 {
        let _: HashMap<u64, String> = widgets
            .get_and_fill([1, 2, 3], |ids| source.fetch(ids))
            .await
            .unwrap();
    }
    let _: HashMap<u64, String> = gadgets
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    widgets.invalidate([1]).await.unwrap();

    let stats = widgets.stats();
    let counters = counters(&snapshotter);
    assert_eq!((stats.hits, stats.misses, stats.fetches), (3, 3, 1));
    for (name, expected) in [
        ("ruecache_hits_total", stats.hits),
        ("ruecache_misses_total", stats.misses),
        ("ruecache_fetches_total", stats.fetches),
        ("ruecache_commits_total", stats.commits),
        ("ruecache_invalidations_total", stats.invalidations),
    ] {
        assert_eq!(
            counter(&counters, name, "widgets"),
            Some(expected),
            "{name} of the widgets cache"
        );
    }
    assert_eq!(
        counter(&counters, "ruecache_misses_total", "gadgets"),
        Some(1),
        "each cache counts under its own name"
    );
    assert_eq!(counter(&counters, "ruecache_hits_total", "gadgets"), None);
}
