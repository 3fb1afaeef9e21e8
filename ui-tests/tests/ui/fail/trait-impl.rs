// The attribute works in inherent `impl` blocks only: a trait impl cannot add the `_cache`
// companion. From a trait impl, call a cached inherent method instead.

use std::collections::HashMap;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

trait Widgets {
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error>;
}

impl Widgets for Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

fn main() {}
