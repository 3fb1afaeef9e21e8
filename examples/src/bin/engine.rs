//! The widget service on the plain engine API (`Cache::builder` + `get_and_fill`).
//!
//! Run it with `cargo run -p ruecache-examples --bin engine` against `REDIS_URL`
//! (default `redis://127.0.0.1:6379`).

use std::collections::HashMap;
use std::time::Duration;

use ruecache::Cache;
use ruecache_examples::{connect_redis, init_tracing, AppError, Db, Widget};

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
        let written = self.db.rename(id, name);
        self.cache.invalidate([id]).await?;
        written
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    init_tracing();
    let redis = connect_redis().await;
    let service = WidgetService {
        db: Db::seeded(1000, Duration::from_millis(20))?,
        cache: Cache::builder(redis, "ruecache-example:engine:widgets:{{{id}}}")
            .ttl(Duration::from_secs(60))
            .build()?,
    };
    service.cache.invalidate(1..=1000).await?; // start cold

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
