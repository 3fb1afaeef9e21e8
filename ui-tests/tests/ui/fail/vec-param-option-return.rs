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
    async fn get(&self, ids: Vec<u64>) -> Result<Option<u64>, ruecache::Error> {
        Ok(ids.first().copied())
    }
}

fn main() {}
