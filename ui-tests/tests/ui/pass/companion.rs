// Each method gets one companion, `<method>_cache`, with the method's visibility: the
// `ruecache::Cache` behind it, for invalidation and stats, sharing the method's spec.

use std::collections::HashMap;

pub struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

mod inner {
    use super::*;

    impl Service {
        #[ruecache::cached_batch(key = "names:{id}")]
        pub async fn names(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> {
            Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
        }

        #[ruecache::cached_batch(key = "name:{id}")]
        pub(crate) async fn name(&self, id: u64) -> Result<Option<String>, ruecache::Error> {
            Ok(Some(id.to_string()))
        }
    }
}

#[allow(dead_code)]
async fn write_then_invalidate(service: &Service) -> Result<(), ruecache::Error> {
    // db.rename(7, "seven").await?;
    service.names_cache().invalidate([7]).await?;
    service.names_cache().invalidate(vec![7, 8]).await?;
    service.name_cache().invalidate(Some(7)).await?;

    let cache: ruecache::Cache<u64, String> = service.names_cache();
    let stats: ruecache::Stats = cache.stats();
    let _ = stats;
    let _: String = cache.data_key(&7)?;
    let _: &ruecache::Options = cache.options();
    Ok(())
}

fn main() {}
