// Values may be any serde type, `Option<T>` included (a cached `None` is a value like any other),
// or bytes through `codec = ruecache::Raw`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub tags: Vec<String>,
    pub nickname: Option<String>,
}

pub struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl Service {
    #[ruecache::cached_batch(key = "profiles:{id}")]
    async fn profiles(&self, ids: Vec<u64>) -> Result<HashMap<u64, Profile>, ruecache::Error> {
        Ok(ids
            .into_iter()
            .map(|id| (id, Profile { name: id.to_string(), tags: vec![], nickname: None }))
            .collect())
    }

    #[ruecache::cached_batch(key = "maybe-profiles:{id}")]
    async fn maybe_profiles(
        &self,
        ids: Vec<u64>,
    ) -> Result<HashMap<u64, Option<Profile>>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, None)).collect())
    }

    #[ruecache::cached_batch(key = "maybe-profile:{id}")]
    async fn maybe_profile(&self, id: u64) -> Result<Option<Option<Profile>>, ruecache::Error> {
        Ok(Some(if id == 0 { None } else { Some(Profile { name: String::new(), tags: vec![], nickname: None }) }))
    }

    #[ruecache::cached_batch(key = "thumbs:{id}", codec = ruecache::Raw)]
    async fn thumbnails(&self, ids: Vec<u64>) -> Result<HashMap<u64, Vec<u8>>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id.to_be_bytes().to_vec())).collect())
    }

    #[ruecache::cached_batch(key = "counts:{id}", codec = ruecache::MsgPack)]
    async fn counts(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id * 2)).collect())
    }
}

fn main() {}
