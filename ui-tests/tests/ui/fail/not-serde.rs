use std::collections::HashMap;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

struct NotSerde(u64);

// An alias hides the value type: the error points at the alias.
type NotSerdeMap = HashMap<u64, NotSerde>;

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, NotSerde>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, NotSerde(id))).collect())
    }

    #[ruecache::cached_batch(key = "one:{id}")]
    async fn get_one(&self, id: u64) -> Result<Option<NotSerde>, ruecache::Error> {
        Ok(Some(NotSerde(id)))
    }

    #[ruecache::cached_batch(key = "aliased:{id}")]
    async fn get_aliased(&self, ids: Vec<u64>) -> Result<NotSerdeMap, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, NotSerde(id))).collect())
    }

    // `Raw` stores bytes only.
    #[ruecache::cached_batch(key = "names:{id}", codec = ruecache::Raw)]
    async fn names(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
    }
}

fn main() {}
