// Signatures beyond the plain `&self`: method lifetimes, a method `where` clause, a receiver
// written out as `self: &Self`, and `#[tracing::instrument]` above the attribute (it expands
// first, so its span wraps the body, which becomes the fetch: it records only the calls that
// fetch).

use std::collections::HashMap;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl Service {
    #[ruecache::cached_batch(key = "l:{id}")]
    async fn with_lifetime<'a>(&'a self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        let _service: &'a Self = self;
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "w:{id}")]
    async fn with_where<'a>(&'a self, id: u64) -> Result<Option<u64>, ruecache::Error>
    where
        Self: Sync + 'a,
    {
        Ok(Some(id))
    }

    #[ruecache::cached_batch(key = "s:{id}")]
    async fn written_out(self: &Self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        let _service: &Self = self;
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "sl:{id}")]
    async fn written_out_with_lifetime<'a>(self: &'a Self, id: u64) -> Result<Option<u64>, ruecache::Error> {
        Ok(Some(id))
    }

    #[tracing::instrument(skip(self, ids), fields(missing = ids.len()))]
    #[ruecache::cached_batch(key = "i:{id}")]
    async fn instrumented_above<'a>(&'a self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error>
    where
        Self: Sync,
    {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

async fn callers(service: &Service) -> Result<(), ruecache::Error> {
    service.with_lifetime(vec![1]).await?;
    service.with_where(1).await?;
    service.written_out(vec![1]).await?;
    service.written_out_with_lifetime(1).await?;
    service.instrumented_above(vec![1]).await?;
    service.instrumented_above_cache().invalidate([1]).await?;
    service.with_where_cache().invalidate([1]).await?;
    service.written_out_cache().invalidate([1]).await?;
    Ok(())
}

fn main() {
    let _ = callers;
}
