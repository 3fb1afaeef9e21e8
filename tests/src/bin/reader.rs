//! A process that reads hot ids steadily, for the refresh-ahead test across processes
//! (`tests/freshness.rs`).
//!
//! Usage: `reader <standalone|cluster> <url>[,<url>...] <key template> <ids> <milliseconds> <refresh-ahead: 0|1>`
//!
//! Caches ids `1..=<ids>` with a 1 s TTL (no jitter) and a fetch that takes 100 ms, refreshing
//! them ahead of their expiry or not; reads all of them every 10 ms for the given time, then
//! prints one line: `reads <n> misses <n> refreshes <n> p99_us <n> max_us <n>` (counted from its
//! first read on; the test fills the ids before it starts the readers).

use std::collections::HashMap;
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::connect_from_args;
use tokio::time::Instant;

/// The source: 100 ms per fetch.
async fn fetch(ids: Vec<u64>) -> Result<Vec<(u64, String)>, ruecache::Error> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(ids
        .into_iter()
        .map(|id| (id, format!("value of {id}")))
        .collect())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, urls, template, ids, millis, refresh] = &args[..] else {
        panic!("usage: reader <standalone|cluster> <urls> <template> <ids> <ms> <0|1>");
    };
    let ids: Vec<u64> = (1..=ids.parse().expect("a number of ids")).collect();
    let run = Duration::from_millis(millis.parse().expect("milliseconds"));
    let conn = connect_from_args(kind, urls).await;
    let mut builder = Cache::builder(conn, template)
        .ttl(Duration::from_secs(1))
        .jitter(0.0);
    if refresh == "1" {
        builder = builder.refresh_ahead(fetch);
    }
    let cache: Cache<u64, String> = builder.build().expect("valid config");
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < run {
        let t0 = Instant::now();
        let got: HashMap<u64, String> = cache
            .get_and_fill(ids.clone(), fetch)
            .await
            .expect("a read");
        latencies.push(t0.elapsed());
        assert_eq!(got.len(), ids.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache.connection().settle().await;
    latencies.sort_unstable();
    let stats = cache.stats();
    println!(
        "reads {} misses {} refreshes {} p99_us {} max_us {}",
        latencies.len(),
        stats.misses,
        stats.refreshes,
        latencies[latencies.len() * 99 / 100].as_micros(),
        latencies[latencies.len() - 1].as_micros()
    );
}
