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
    async fn get(&self, ids: impl IntoIterator<Item = u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    // Nested in the ids type too.
    #[ruecache::cached_batch(key = "n:{id}")]
    async fn get_nested(&self, ids: Vec<impl std::fmt::Display>) -> Result<HashMap<String, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id.to_string(), 0)).collect())
    }
}

fn main() {}
