// `crate = "..."` names `ruecache` through a re-export, for crates that wrap it.

mod deps {
    pub use ruecache;
}

mod service {
    use std::collections::HashMap;

    use crate::deps::ruecache as cache;

    pub struct Service {
        pub redis: cache::Connection,
    }

    impl cache::HasConnection for Service {
        fn cache_connection(&self) -> &cache::Connection {
            &self.redis
        }
    }

    impl Service {
        #[cache::cached_batch(key = "w:{id}", crate = "crate::deps::ruecache")]
        pub async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, cache::Error> {
            Ok(ids.into_iter().map(|id| (id, id)).collect())
        }

        #[cache::cached_batch(key = "w1:{id}", crate = "crate::deps::ruecache", codec = cache::Raw)]
        pub async fn get_one(&self, id: u64) -> Result<Option<Vec<u8>>, cache::Error> {
            Ok(Some(id.to_be_bytes().to_vec()))
        }
    }
}

fn main() {}
