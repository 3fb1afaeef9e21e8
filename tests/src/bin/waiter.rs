//! A process that waits for ids another process holds, for the cross-process wake-up test
//! (`tests/wakeup.rs`).
//!
//! Usage: `waiter <standalone|cluster> <url>[,<url>...] <key template>`
//!
//! For each id read from stdin (one per line) it asks the cache for it and prints `waiting <id>`
//! once it is waiting for another process's lease (it subscribed, then flagged the lease, so the
//! release publishes to it), then `done <id> <µs since the Unix epoch> <ids it fetched itself> <wake-ups>`
//! when the call returns. Its backoff (10 min) is longer than its timeout (30 s): without a
//! wake-up it would look again only just before the deadline, counting none.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ruecache::Cache;
use ruecache_tests::connect_from_args;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, urls, template] = &args[..] else {
        panic!("usage: waiter <standalone|cluster> <urls> <template>");
    };
    let conn = connect_from_args(kind, urls).await;
    let cache: Cache<u64, String> = Cache::builder(conn, template)
        .backoff(Duration::from_secs(600), Duration::from_secs(600))
        .build()
        .expect("valid config");
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let id: u64 = line.expect("stdin").trim().parse().expect("an id per line");
        let before = cache.stats();
        let key = cache.data_key(&id).expect("a key");
        let call = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let fetched = std::sync::Arc::new(std::sync::Mutex::new(0usize));
                let count = fetched.clone();
                let got: HashMap<u64, String> = cache
                    .get_and_fill(vec![id], |ids| {
                        *count.lock().unwrap() += ids.len();
                        async move {
                            Ok::<_, ruecache::Error>(
                                ids.into_iter()
                                    .map(|i| (i, format!("value of {i}")))
                                    .collect::<Vec<_>>(),
                            )
                        }
                    })
                    .await
                    .expect("the waiter gets the value");
                let done = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                assert_eq!(got.len(), 1);
                let fetched = *fetched.lock().unwrap();
                (done, fetched)
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !ruecache_tests::lease_flagged(cache.connection(), &key).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "id {id}: never waited for a lease"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        writeln!(out, "waiting {id}").unwrap();
        out.flush().unwrap();
        let (done, fetched) = call.await.expect("the call does not panic");
        let wakeups = cache.stats().wakeups - before.wakeups;
        writeln!(out, "done {id} {} {fetched} {wakeups}", done.as_micros()).unwrap();
        out.flush().unwrap();
    }
}
