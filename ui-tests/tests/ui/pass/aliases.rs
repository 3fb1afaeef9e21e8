// The form is decided by types, not by names, so aliases work for the return type, the map and
// the ids parameter; so do other maps than `HashMap`.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

pub type AppResult<T> = Result<T, AppError>;
pub type WidgetMap = HashMap<u64, String>;
pub type Ids = Vec<u64>;
pub type Outcome = std::result::Result<WidgetMap, AppError>;
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;
pub type Maybe<T> = Option<T>;

#[derive(Debug)]
pub struct AppError;

impl From<ruecache::Error> for AppError {
    fn from(_: ruecache::Error) -> Self {
        AppError
    }
}

pub struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

fn names<M: FromIterator<(u64, String)>>(ids: Vec<u64>) -> M {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

impl Service {
    #[ruecache::cached_batch(key = "a:{id}")]
    async fn result_alias(&self, ids: Vec<u64>) -> AppResult<HashMap<u64, String>> {
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "b:{id}")]
    async fn map_alias(&self, ids: Vec<u64>) -> AppResult<WidgetMap> {
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "c:{id}")]
    async fn ids_alias(&self, ids: Ids) -> AppResult<WidgetMap> {
        let ids: Ids = ids;
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "d:{id}")]
    async fn whole_alias(&self, ids: Ids) -> Outcome {
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "e:{id}")]
    async fn other_hasher(&self, ids: Vec<u64>) -> AppResult<FastMap<u64, String>> {
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "f:{id}")]
    async fn btree(&self, ids: Vec<u64>) -> AppResult<BTreeMap<u64, String>> {
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "g:{id}")]
    async fn pairs(&self, ids: Vec<u64>) -> AppResult<Vec<(u64, String)>> {
        Ok(names(ids))
    }

    #[ruecache::cached_batch(key = "h:{id}")]
    async fn single_alias(&self, id: u64) -> AppResult<Maybe<String>> {
        Ok(Some(id.to_string()))
    }
}

#[allow(dead_code)]
async fn call(service: &Service) -> AppResult<()> {
    let _: WidgetMap = service.ids_alias(vec![1]).await?;
    let _: BTreeMap<u64, String> = service.btree(vec![1]).await?;
    let _: Vec<(u64, String)> = service.pairs(vec![1]).await?;
    let _: Option<String> = service.single_alias(1).await?;
    Ok(())
}

fn main() {}
