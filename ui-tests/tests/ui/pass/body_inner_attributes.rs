// An inner attribute at the top of the body applies to the whole method, as it would without
// the attribute: here it allows an unused ids parameter and an unused local under a crate-wide
// `deny`.

#![deny(unused_variables)]

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
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        #![allow(unused_variables)]
        //! The body's own doc comment is an inner attribute too.
        let unused = 1;
        Ok(HashMap::new())
    }

    #[ruecache::cached_batch(key = "one:{id}")]
    async fn get_one(&self, id: u64) -> Result<Option<u64>, ruecache::Error> {
        #![allow(unused_variables)]
        Ok(None)
    }
}

fn main() {
    let _ = Service::get;
    let _ = Service::get_one;
}
