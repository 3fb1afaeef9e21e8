use std::collections::HashMap;
use std::fmt;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

// `Display` and `Clone`, but neither `Eq` nor `Hash`.
#[derive(Clone)]
struct Key(u64);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get(&self, ids: Vec<Key>) -> Result<HashMap<Key, u64>, ruecache::Error> {
        let _ = ids;
        Ok(HashMap::new())
    }

    #[ruecache::cached_batch(key = "one:{id}")]
    async fn get_one(&self, id: Key) -> Result<Option<u64>, ruecache::Error> {
        Ok(Some(id.0))
    }
}

fn main() {}
