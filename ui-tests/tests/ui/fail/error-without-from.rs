use std::collections::HashMap;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

#[derive(Debug)]
struct AppError;

type AppResult<T> = Result<T, AppError>;

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, AppError> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "w:{id}")]
    async fn get_aliased(&self, ids: Vec<u64>) -> AppResult<HashMap<u64, u64>> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }
}

fn main() {}
