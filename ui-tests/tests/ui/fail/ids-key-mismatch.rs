// The ids and the map's keys must be the same type: the ids here are `u64`, the keys `String`.

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
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<String, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id.to_string(), id)).collect())
    }
}

fn main() {}
