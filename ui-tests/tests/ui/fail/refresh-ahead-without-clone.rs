// `refresh_ahead = true` runs the body on a clone of the service: a service that is not `Clone`
// is reported at the argument.
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
    #[ruecache::cached_batch(key = "w:{id}", refresh_ahead = true)]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
    }

    #[ruecache::cached_batch(key = "w:{id}", refresh_beta = 2.0)]
    async fn get_tuned(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
    }
}

fn main() {}
