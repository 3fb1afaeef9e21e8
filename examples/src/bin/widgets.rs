//! The main example: a widget service over SQLite, cached with one attribute.
//!
//! Run it with `cargo run -p ruecache-examples --bin widgets`. It uses the Redis at `REDIS_URL`
//! if that is set; otherwise the one answering at `redis://127.0.0.1:6379` (another address to
//! probe can be given in `RUECACHE_EXAMPLE_PROBE`); otherwise it starts a private
//! `redis-server` on a free loopback port and stops it at the end (and says how to install
//! Redis if it cannot). It writes only keys under `ruecache-example:widgets:`, all with a TTL,
//! and deletes them when it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ruecache_examples::{clear_prefix, init_tracing, AppError, Db, ExampleRedis, Widget};

/// The prefix of every key this example writes (the templates below start with it).
const KEYS: &str = "ruecache-example:widgets:";

struct WidgetService {
    db: Db,
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for WidgetService {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl WidgetService {
    #[ruecache::cached_batch(key = "ruecache-example:widgets:{{{id}}}", ttl = "5m")]
    async fn get_widgets(&self, ids: Vec<u64>) -> Result<HashMap<u64, Widget>, AppError> {
        self.db.load_widgets(&ids).await // runs only for the ids the cache is missing
    }

    /// The single-item form, on the same keys: what `get_widgets` cached, it reads, and the
    /// other way round.
    #[ruecache::cached_batch(key = "ruecache-example:widgets:<<<id>>>", ttl = "5m")]
    async fn get_widget(&self, id: u64) -> Result<Option<Widget>, AppError> {
        Ok(self.db.load_widgets(&[id]).await?.remove(&id))
    }

    async fn rename_widget(&self, id: u64, name: &str) -> Result<(), AppError> {
        // Write the source first, then invalidate: a fill racing the write cannot store the old row.
        let written = self.db.rename(id, name).await;
        self.get_widgets_cache().invalidate([id]).await?;
        written
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    init_tracing("warn");
    let redis = ExampleRedis::find().await;
    let conn = redis.connect().await?;
    clear_prefix(&conn, KEYS).await?; // start cold
    let service = Arc::new(WidgetService {
        db: Db::seeded(1000, Duration::from_millis(20)).await?,
        redis: conn.clone(),
    });
    let tour = tour(service).await;
    // Graceful shutdown: writes that cancelled requests left to background tasks finish first.
    conn.settle().await;
    let removed = clear_prefix(&conn, KEYS).await?;
    println!("removed the {removed} keys it wrote under {KEYS}");
    redis.stop();
    tour
}

async fn tour(service: Arc<WidgetService>) -> Result<(), AppError> {
    let ids = vec![1, 2, 3, 999_999];
    let first = service.get_widgets(ids.clone()).await?;
    assert_eq!(
        service.db.queries(),
        1,
        "the first call queries the database once"
    );
    println!(
        "1. first call: {} widgets found, {} database query (id 999999 does not exist and is cached as absent)",
        first.len(),
        service.db.queries()
    );

    let second = service.get_widgets(ids).await?;
    assert_eq!(first, second);
    assert_eq!(service.db.queries(), 1, "the second call is all hits");
    println!(
        "2. second call: {} widgets, still {} query: all hits",
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
        "3. after rename + invalidate: widget 2 is {:?}, {} queries",
        third[&2].name,
        service.db.queries()
    );

    let before = service.db.queries();
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
    println!("4. 100 concurrent requests for cold widget 500: {queries} query");

    let before = service.db.queries();
    let one = service.get_widget(1).await?.expect("widget 1 exists");
    let missing = service.get_widget(999_999).await?;
    assert_eq!(one, first[&1]);
    assert!(missing.is_none());
    assert_eq!(
        service.db.queries(),
        before,
        "both were cached by get_widgets"
    );
    println!(
        "5. single-item form: widget 1 is {:?}, widget 999999 is absent, {} new queries",
        one.name,
        service.db.queries() - before
    );
    println!("stats: {:?}", service.get_widgets_cache().stats());
    Ok(())
}
