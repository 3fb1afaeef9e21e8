// The ids parameter keeps the name it is written with, so that attributes that name it, such as
// `#[tracing::instrument(skip(ids))]`, still find it (and docs and IDE hints show it). A
// destructuring pattern is kept too, inside: the body sees its bindings.

#![deny(unused_mut)]

use std::collections::HashMap;

struct Service {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Sku(u64);

impl std::fmt::Display for Sku {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Service {
    #[ruecache::cached_batch(key = "w:{id}")]
    #[tracing::instrument(skip(self, ids), fields(count = ids.len()))]
    async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "one:{id}")]
    #[tracing::instrument(skip(self, sku), fields(sku = %sku))]
    async fn get_one(&self, sku: Sku) -> Result<Option<u64>, ruecache::Error> {
        Ok(Some(sku.0))
    }

    // `mut` stays on the body's binding, where it is used.
    #[ruecache::cached_batch(key = "m:{id}")]
    #[tracing::instrument(skip(self, ids))]
    async fn get_mut(&self, mut ids: Vec<u64>) -> Result<HashMap<u64, u64>, ruecache::Error> {
        ids.sort_unstable();
        Ok(ids.into_iter().map(|id| (id, id)).collect())
    }

    #[ruecache::cached_batch(key = "s:{id}")]
    async fn get_sku(&self, Sku(raw): Sku) -> Result<Option<u64>, ruecache::Error> {
        Ok(Some(raw))
    }
}

/// Callers may name the parameter too, as rust-analyzer's hints do.
fn takes_named(_ids: Vec<u64>) {}

fn main() {
    let _ = Service::get;
    let _ = Service::get_one;
    let _ = Service::get_mut;
    let _ = Service::get_sku;
    takes_named(Vec::new());
}
