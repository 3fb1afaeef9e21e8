//! A process that takes the locks of some ids and then hangs in its fetch, for tests that kill
//! a lock holder (`tests/liveness.rs`).
//!
//! Usage: `lock_holder <standalone|cluster> <url>[,<url>...] <key template> <liveness ms> <id>...`
//!
//! Prints `fetching <ids>` once its fetch runs (the locks are held then), and never returns.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use ruecache::Cache;
use ruecache_tests::connect_from_args;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, urls, template, liveness_ms, ids @ ..] = &args[..] else {
        panic!("usage: lock_holder <standalone|cluster> <urls> <template> <liveness ms> <id>...");
    };
    let conn = connect_from_args(kind, urls)
        .await
        .liveness_window(Some(Duration::from_millis(liveness_ms.parse().unwrap())))
        .expect("a liveness window in range");
    let ids: Vec<u64> = ids.iter().map(|id| id.parse().unwrap()).collect();
    let cache: Cache<u64, String> = Cache::builder(conn, template)
        .lock_ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("valid config");
    let _ = cache
        .get_and_fill::<_, HashMap<u64, String>, _, _, _, ruecache::Error>(ids, |ids| async move {
            println!("fetching {ids:?}");
            std::io::stdout().flush().unwrap();
            std::future::pending::<Result<HashMap<u64, String>, ruecache::Error>>().await
        })
        .await;
}
