//! An expensive single-item job guarded so only one of many concurrent callers does it (the Go
//! README's image-resize example): the result is cached forever, keyed by the image URL.
//!
//! Run it with `cargo run -p ruecache-examples --bin resize` against `REDIS_URL`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ruecache_examples::{connect_redis, init_tracing, AppError};

struct Resizer {
    redis: ruecache::Connection,
    jobs: AtomicU64,
}

impl ruecache::HasConnection for Resizer {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl Resizer {
    /// Resizes an image once, whoever asks and however many ask at the same moment.
    #[ruecache::cached_batch(
        key = "ruecache-example:resized:<<<id>>>:url",
        ttl = "none",
        lock_ttl = "30s"
    )]
    async fn resized_url(&self, original_url: String) -> Result<Option<String>, AppError> {
        self.jobs.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await; // the expensive part
        Ok(Some(format!("{original_url}?size=512x512")))
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    init_tracing();
    let resizer = Arc::new(Resizer {
        redis: connect_redis().await,
        jobs: AtomicU64::new(0),
    });
    let url = "https://images.example/cat.png".to_owned();
    resizer
        .resized_url_cache()
        .invalidate([url.clone()])
        .await?; // start cold

    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (resizer, url) = (resizer.clone(), url.clone());
            tokio::spawn(async move { resizer.resized_url(url).await })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.expect("caller task")?.is_some());
    }
    let jobs = resizer.jobs.load(Ordering::Relaxed);
    assert_eq!(jobs, 1, "50 concurrent callers share one resize job");
    println!(
        "50 concurrent callers, {jobs} resize job; result: {:?}",
        resizer.resized_url(url).await?
    );
    Ok(())
}
