//! An expensive single-item job that only one of many servers does (the Go README's image-resize
//! example): the resized image's URL is cached for a day, keyed by a digest of the original URL.
//!
//! Two servers, each with its own Redis connection (as two processes would have), get requests
//! for the same cold image at the same moment. On each server one caller goes to Redis and the
//! others wait for it (in-process single-flight); the two servers' callers then race for the
//! image's lock (`SET NX`): one server resizes, the other waits on its lock and reads its result.
//!
//! Run it with `cargo run -p ruecache-examples --bin resize`. It finds or starts a Redis as the
//! `widgets` example does (`REDIS_URL`, else `redis://127.0.0.1:6379` or the address in
//! `RUECACHE_EXAMPLE_PROBE`, else a private `redis-server` it stops at the end), writes only keys
//! under `ruecache-example:resized:`, all with a TTL, and deletes them when it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ruecache::Cache;
use ruecache_examples::{clear_prefix, init_tracing, AppError, ExampleRedis};

/// The prefix of every key this example writes (see [`resized_key`]).
const KEYS: &str = "ruecache-example:resized:";

/// One application server. Its connection is its own, so Redis sees it as a separate process: its
/// in-process single-flight and its lock tokens are not shared with the other server.
struct ImageServer {
    name: &'static str,
    resized: Cache<String, String>,
    jobs: AtomicU64,
}

impl ImageServer {
    async fn start(name: &'static str, redis: &ExampleRedis) -> Result<Self, AppError> {
        let resized = Cache::builder_with_key_fn(redis.connect().await?, resized_key)
            .ttl(Duration::from_secs(24 * 60 * 60))
            .lock_ttl(Duration::from_secs(30)) // longer than a resize takes
            .build()?;
        Ok(Self {
            name,
            resized,
            jobs: AtomicU64::new(0),
        })
    }

    /// Resizes an image once, whichever server asks and however many ask at the same moment.
    async fn resized_url(&self, original_url: String) -> Result<Option<String>, AppError> {
        self.resized
            .get_and_fill_one(original_url, |url| async move {
                self.jobs.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await; // the expensive part
                Ok(Some(format!("{url}?size=512x512")))
            })
            .await
    }
}

/// The key of an image's resized URL: a digest of the original URL in the hash tag, so that any
/// URL is safe there (a `}` in the URL itself would end the tag early).
fn resized_key(original_url: &String) -> String {
    let digest = sha1_smol::Sha1::from(original_url).digest();
    format!("{KEYS}{{{digest}}}:url")
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    init_tracing("warn");
    let redis = ExampleRedis::find().await;
    let servers = [
        Arc::new(ImageServer::start("a", &redis).await?),
        Arc::new(ImageServer::start("b", &redis).await?),
    ];
    let admin = redis.connect().await?;
    clear_prefix(&admin, KEYS).await?; // start cold
    let tour = tour(&servers).await;
    // Graceful shutdown: writes that cancelled requests left to background tasks finish first.
    for server in &servers {
        server.resized.connection().settle().await;
    }
    let removed = clear_prefix(&admin, KEYS).await?;
    println!("removed the {removed} keys it wrote under {KEYS}");
    redis.stop();
    tour
}

async fn tour(servers: &[Arc<ImageServer>; 2]) -> Result<(), AppError> {
    let url = "https://images.example/cat.png".to_owned();
    // 50 requests at once, taking turns between the servers.
    let callers: Vec<_> = (0..50)
        .map(|i| {
            let (server, url) = (servers[i % servers.len()].clone(), url.clone());
            tokio::spawn(async move { server.resized_url(url).await })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.expect("caller task")?.is_some());
    }

    let jobs: u64 = servers.iter().map(|s| s.jobs.load(Ordering::Relaxed)).sum();
    assert_eq!(jobs, 1, "50 callers on 2 servers share one resize job");
    println!("50 concurrent callers on 2 servers, {jobs} resize job in total");
    for server in servers {
        let stats = server.resized.stats();
        println!(
            "server {}: resize jobs: {}; callers that waited for a caller of the same server: {}; \
             times it found the lock held by another server: {}, woken by its release: {}",
            server.name,
            server.jobs.load(Ordering::Relaxed),
            stats.flight_waits,
            stats.lock_waits,
            stats.wakeups,
        );
    }
    println!("result: {:?}", servers[1].resized_url(url.clone()).await?);
    println!("stored at {}", servers[1].resized.data_key(&url)?);
    Ok(())
}
