//! A process with a near cache that holds one id and reports when it is dropped, for the
//! measurement of how fast an invalidation reaches another process (`tests/near.rs`).
//!
//! Usage: `near_watcher <standalone|cluster> <url>[,<url>...] <key template>`
//!
//! Repeatedly: reads id 1 until its near cache holds it, prints `ready`, and waits; a thread of
//! its own watches the near cache's invalidation counter (every 20 µs, no Redis involved) and
//! prints `dropped <Unix µs>` the moment it moves.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ruecache::{Cache, NearCache};
use ruecache_tests::connect_from_args;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, urls, template] = &args[..] else {
        panic!("usage: near_watcher <standalone|cluster> <urls> <template>");
    };
    let conn = connect_from_args(kind, urls).await;
    let cache: Cache<u64, String> = Cache::builder(conn, template)
        .near_cache(NearCache::new(10))
        .build()
        .expect("valid config");
    let fetch = |ids: Vec<u64>| async move {
        Ok::<_, ruecache::Error>(
            ids.into_iter()
                .map(|id| (id, format!("value of {id}")))
                .collect::<Vec<_>>(),
        )
    };
    // Set while the entry is held and `ready` was printed: the watcher reports its drop.
    let armed = Arc::new(AtomicBool::new(false));
    let watched = cache.clone();
    let watching = Arc::clone(&armed);
    std::thread::spawn(move || {
        let mut seen = watched.stats().near_invalidations;
        loop {
            std::thread::sleep(Duration::from_micros(20));
            let now = watched.stats().near_invalidations;
            if now != seen {
                seen = now;
                if watching.swap(false, SeqCst) {
                    let us = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_micros();
                    say(&format!("dropped {us}"));
                }
            }
        }
    });
    loop {
        if !armed.load(SeqCst) {
            // Fill and read until the entry is held, and stays held for a moment (a late report
            // of our own fill would otherwise count as a drop).
            loop {
                let _: Result<Vec<(u64, String)>, _> = cache.get_and_fill(vec![1], fetch).await;
                let near = cache.near_status().expect("a near cache");
                if near.tracking && near.entries == 1 {
                    let before = cache.stats().near_invalidations;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if cache.stats().near_invalidations == before {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            armed.store(true, SeqCst);
            say("ready");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
