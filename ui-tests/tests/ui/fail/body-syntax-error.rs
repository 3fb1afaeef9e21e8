// A syntax error in the body is the compiler's to report, on the body: the attribute still
// writes the method's signature and its companion, so callers of both compile.

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
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        let typing = ;
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

#[allow(dead_code)]
async fn caller(service: &Service) -> Result<(), ruecache::Error> {
    let widgets: HashMap<u64, u64> = service.get(vec![1, 2]).await?;
    let cache: ruecache::Cache<u64, u64> = service.get_cache();
    cache.invalidate(widgets.into_keys()).await?;
    Ok(())
}

fn main() {}
