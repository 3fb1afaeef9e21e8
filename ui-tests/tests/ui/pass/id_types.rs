// Ids may be integers, strings or newtypes: anything `Display + Eq + Hash + Clone + Send + Sync`.

use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

impl Service {
    #[ruecache::cached_batch(key = "by-number:{id}")]
    async fn by_number(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
    }

    #[ruecache::cached_batch(key = "by-name:{id}")]
    async fn by_name(&self, names: Vec<String>) -> Result<HashMap<String, u32>, ruecache::Error> {
        Ok(names.into_iter().map(|name| (name.clone(), name.len() as u32)).collect())
    }

    #[ruecache::cached_batch(key = "by-sku:<<<id>>>")]
    async fn by_sku(&self, mut skus: Vec<Sku>) -> Result<HashMap<Sku, bool>, ruecache::Error> {
        skus.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(skus.into_iter().map(|sku| (sku, true)).collect())
    }

    #[ruecache::cached_batch(key = "by-sku-one:{id}")]
    async fn one_by_sku(&self, sku: Sku) -> Result<Option<bool>, ruecache::Error> {
        Ok(Some(!sku.0.is_empty()))
    }
}

#[allow(dead_code)]
async fn call(service: &Service) -> Result<(), ruecache::Error> {
    let _: HashMap<u64, String> = service.by_number(vec![1, 2]).await?;
    let _: HashMap<String, u32> = service.by_name(vec!["a".to_owned()]).await?;
    let _: HashMap<Sku, bool> = service.by_sku(vec![Sku("x".to_owned())]).await?;
    let _: Option<bool> = service.one_by_sku(Sku("x".to_owned())).await?;
    Ok(())
}

fn main() {}
