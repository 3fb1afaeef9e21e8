use std::collections::HashMap;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key(u64);

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get(&self, ids: Vec<Key>) -> Result<HashMap<Key, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, 0)).collect())
    }
}

fn main() {}
