// The example of the design card, in both key spellings.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WidgetId(u64);

impl std::fmt::Display for WidgetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Widget {
    pub id: WidgetId,
    pub name: String,
}

#[derive(Debug)]
pub enum AppError {
    Cache(ruecache::Error),
}

impl From<ruecache::Error> for AppError {
    fn from(error: ruecache::Error) -> Self {
        Self::Cache(error)
    }
}

pub struct Db;

impl Db {
    async fn load_widgets(&self, ids: &[WidgetId]) -> Result<HashMap<WidgetId, Widget>, AppError> {
        Ok(ids
            .iter()
            .map(|&id| (id, Widget { id, name: format!("widget {id}") }))
            .collect())
    }
}

pub struct WidgetService {
    db: Db,
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for WidgetService {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl WidgetService {
    #[ruecache::cached_batch(key = "widgets:{{{id}}}", ttl = "5m")]
    async fn get_widgets(&self, ids: Vec<WidgetId>) -> Result<HashMap<WidgetId, Widget>, AppError> {
        self.db.load_widgets(&ids).await // runs only for the ids the cache is missing
    }

    #[ruecache::cached_batch(key = "widgets:<<<id>>>", ttl = "5m")]
    async fn get_widgets_tagged(&self, ids: Vec<WidgetId>) -> Result<HashMap<WidgetId, Widget>, AppError> {
        self.db.load_widgets(&ids).await
    }
}

#[allow(dead_code)]
async fn call(service: &WidgetService) -> Result<(), AppError> {
    let widgets: HashMap<WidgetId, Widget> = service.get_widgets(vec![WidgetId(42)]).await?;
    let same: HashMap<WidgetId, Widget> = service.get_widgets_tagged(vec![WidgetId(42)]).await?;
    assert_eq!(widgets.len(), same.len());
    Ok(())
}

fn main() {}
