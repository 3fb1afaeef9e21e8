// The attribute's options follow the builder's rules, checked while the program compiles (each
// message is `CacheBuilder::build`'s): a `lock_ttl` not longer than the unlock threshold (10 ms
// unless set) is refused instead of adjusted behind the user's back, so are backoff bounds out of
// order; and the new arguments' values are checked on their tokens.

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
    #[ruecache::cached_batch(key = "w:{id}", lock_ttl = "5ms")]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "w:{id}", backoff_min = "2s", backoff_max = "1s")]
    async fn get_backoff(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "w:{id}", fallback_to_source = "yes", name = "")]
    async fn get_bad(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

fn main() {}
