// Cached methods' futures are `Send` (when the body's is), so they work in multi-threaded
// runtimes and web handlers; `tokio::spawn` takes them.

use std::collections::HashMap;
use std::sync::Arc;

pub struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn batch(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> {
        tokio::task::yield_now().await;
        Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
    }

    #[ruecache::cached_batch(key = "w:{id}")]
    async fn one(&self, id: u64) -> Result<Option<String>, ruecache::Error> {
        tokio::task::yield_now().await;
        Ok(Some(id.to_string()))
    }
}

fn assert_send<T: Send + 'static>(_: T) {}

#[allow(dead_code)]
fn spawnable(service: Arc<Service>) {
    let a = Arc::clone(&service);
    assert_send(async move { a.batch(vec![1]).await });
    assert_send(async move { service.one(1).await });
}

fn main() {}
