// The compiler's suggestion for a quoted path that does not resolve is a bare path: the attribute
// says how to quote it.

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
    #[ruecache::cached_batch(key = "w:{id}", crate = ruecache)]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

fn main() {}
