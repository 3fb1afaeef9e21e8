// A one-line body compiles without a warning: the attribute moves the body into the fetch, and
// its braces must not be reported as unnecessary there (`unused_braces`).
#![deny(warnings)]

use std::collections::HashMap;

pub struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    pub async fn batch(&self, _ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> { Ok(HashMap::new()) }

    #[ruecache::cached_batch(key = "w:{id}")]
    pub async fn one(&self, _id: u64) -> Result<Option<String>, ruecache::Error> { Ok(None) }
}

fn main() {}
