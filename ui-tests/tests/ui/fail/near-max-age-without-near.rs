// `near_max_age` tunes the near cache, which only `near` turns on: alone, it is refused at its
// name.

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
    #[ruecache::cached_batch(key = "w:{id}", near_max_age = "30s")]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

fn main() {}
