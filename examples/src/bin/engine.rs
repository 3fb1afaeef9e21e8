//! The widget service on the plain engine API (`Cache::builder` + `get_and_fill`).
//!
//! Run it with `cargo run -p ruecache-examples --bin engine`. It finds or starts a Redis as the
//! `widgets` example does (`REDIS_URL`, else `redis://127.0.0.1:6379` or the address in
//! `RUECACHE_EXAMPLE_PROBE`, else a private `redis-server` it stops at the end), writes only keys
//! under `ruecache-example:engine:`, all with a TTL, and deletes them when it ends.

use std::collections::HashMap;
use std::time::Duration;

use ruecache::Cache;
use ruecache_examples::{clear_prefix, init_tracing, AppError, Db, ExampleRedis, Widget};

/// The prefix of every key this example writes.
const KEYS: &str = "ruecache-example:engine:";

struct WidgetService {
    db: Db,
    cache: Cache<u64, Widget>,
}

impl WidgetService {
    async fn get_widgets(&self, ids: Vec<u64>) -> Result<HashMap<u64, Widget>, AppError> {
        self.cache
            .get_and_fill(ids, |missing| async move {
                self.db.load_widgets(&missing).await
            })
            .await
    }

    async fn rename_widget(&self, id: u64, name: &str) -> Result<(), AppError> {
        // Write the source first, then invalidate: a fill racing the write cannot store the old row.
        let written = self.db.rename(id, name).await;
        self.cache.invalidate([id]).await?;
        written
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    init_tracing("warn");
    let redis = ExampleRedis::find().await;
    let conn = redis.connect().await?;
    clear_prefix(&conn, KEYS).await?; // start cold
    let service = WidgetService {
        db: Db::seeded(1000, Duration::from_millis(20)).await?,
        cache: Cache::builder(conn.clone(), "ruecache-example:engine:widgets:{{{id}}}")
            .ttl(Duration::from_secs(60))
            .build()?,
    };
    let tour = tour(service).await;
    // Graceful shutdown: writes that cancelled requests left to background tasks finish first.
    conn.settle().await;
    let removed = clear_prefix(&conn, KEYS).await?;
    println!("removed the {removed} keys it wrote under {KEYS}");
    redis.stop();
    tour
}

async fn tour(service: WidgetService) -> Result<(), AppError> {
    let first = service.get_widgets(vec![1, 2, 3, 999_999]).await?;
    assert_eq!(
        service.db.queries(),
        1,
        "the first call queries the database once"
    );
    println!(
        "first call:  {} widgets, {} queries (id 999999 does not exist)",
        first.len(),
        service.db.queries()
    );
    let second = service.get_widgets(vec![1, 2, 3, 999_999]).await?;
    assert_eq!(first, second);
    assert_eq!(service.db.queries(), 1, "the second call is all hits");
    println!(
        "second call: {} widgets, {} queries (all hits, absent id included)",
        second.len(),
        service.db.queries()
    );
    service.rename_widget(2, "renamed widget").await?;
    let third = service.get_widgets(vec![2]).await?;
    assert_eq!(third[&2].name, "renamed widget");
    assert_eq!(
        service.db.queries(),
        2,
        "the invalidated widget is read again"
    );
    println!(
        "after rename: {:?}, {} queries",
        third[&2].name,
        service.db.queries()
    );

    // 100 concurrent requests for one cold id: one query, everyone gets the row.
    let before = service.db.queries();
    let service = std::sync::Arc::new(service);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.get_widgets(vec![500]).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("request task")?.len(), 1);
    }
    let queries = service.db.queries() - before;
    assert_eq!(
        queries, 1,
        "100 concurrent requests for one cold id share one query"
    );
    println!("100 concurrent requests for cold id 500: {queries} query");
    println!("stats: {:?}", service.cache.stats());
    Ok(())
}
