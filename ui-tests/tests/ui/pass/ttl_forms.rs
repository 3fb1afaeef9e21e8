// Every duration form, and every optional argument.

use std::collections::HashMap;

pub struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

type Found = Result<HashMap<u64, u64>, ruecache::Error>;

fn found(ids: Vec<u64>) -> Found {
    Ok(ids.into_iter().map(|id| (id, id)).collect())
}

impl Service {
    #[ruecache::cached_batch(key = "default:{id}")]
    async fn default_ttl(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "ms:{id}", ttl = "500ms")]
    async fn millis(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "s:{id}", ttl = "30s")]
    async fn seconds(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "m:{id}", ttl = "5m")]
    async fn minutes(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "h:{id}", ttl = "2h")]
    async fn hours(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "d:{id}", ttl = "7d")]
    async fn days(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "hm:{id}", ttl = "1h30m")]
    async fn combined(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "all:{id}", ttl = "1d2h3m4s5ms")]
    async fn every_unit(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "none:{id}", ttl = "none")]
    async fn never_expires(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(
        key = "tuned:{id}",
        ttl = "10m",
        lock_ttl = "20s",
        timeout = "1m",
        jitter = 0.0,
        codec = ruecache::MsgPack,
    )]
    async fn tuned(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "near:{id}", near = "10000", near_max_age = "30s")]
    async fn near(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(key = "near_number:{id}", near = 10_000)]
    async fn near_number(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }

    #[ruecache::cached_batch(jitter = 1.0, timeout = "250ms", key = "order:{id}", lock_ttl = "1h")]
    async fn any_order(&self, ids: Vec<u64>) -> Found {
        found(ids)
    }
}

fn main() {}
