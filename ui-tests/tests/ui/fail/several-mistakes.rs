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
    #[ruecache::cached_batch(key = "widgets:{name}", ttl = "0s", retries = 3)]
    fn get(&self, ids: Vec<u64>, extra: bool) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, u64::from(extra))).collect())
    }
}

// The method is left as written and its companion is still there: its callers keep compiling,
// and only the mistakes above are reported.
#[allow(dead_code)]
async fn callers(service: &Service) -> Result<(), ruecache::Error> {
    let _: HashMap<u64, u64> = service.get(vec![1, 2], true)?;
    service.get_cache().invalidate([1]).await?;
    Ok(())
}

fn main() {}
