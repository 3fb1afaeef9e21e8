// Methods of generic impls: the spec's `static` mentions no generic parameter, the types do.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub trait Source: Send + Sync {
    type Id: Display + Eq + Hash + Clone + Send + Sync + 'static;
    type Item: Serialize + DeserializeOwned + Send;
    type Error: From<ruecache::Error> + Send;

    fn load(&self, ids: &[Self::Id]) -> impl std::future::Future<Output = Result<HashMap<Self::Id, Self::Item>, Self::Error>> + Send;
}

pub struct Service<S> {
    source: S,
    redis: ruecache::Connection,
}

impl<S> ruecache::HasConnection for Service<S> {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl<S: Source> Service<S> {
    #[ruecache::cached_batch(key = "items:{id}")]
    pub async fn items(&self, ids: Vec<S::Id>) -> Result<HashMap<S::Id, S::Item>, S::Error> {
        self.source.load(&ids).await
    }

    #[ruecache::cached_batch(key = "item:{id}")]
    pub async fn item(&self, id: S::Id) -> Result<Option<S::Item>, S::Error> {
        let mut found = self.source.load(std::slice::from_ref(&id)).await?;
        Ok(found.remove(&id))
    }
}

impl<S> Service<S>
where
    S: Source<Id = u64>,
{
    #[ruecache::cached_batch(key = "names:{id}")]
    pub async fn names(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, S::Error> {
        Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
    }
}

fn main() {}
