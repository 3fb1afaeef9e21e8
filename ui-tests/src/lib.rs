//! Compile tests of `#[cached_batch]`: see `tests/ui.rs`.
//!
//! This library holds one ordinary use of the attribute, so that `cargo clippy -D warnings` also
//! checks the code the macro generates.

use std::collections::HashMap;

/// A value to cache.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Widget {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// The service's error.
#[derive(Debug)]
pub enum AppError {
    /// The cache failed.
    Cache(ruecache::Error),
    /// The database failed.
    Db,
}

impl From<ruecache::Error> for AppError {
    fn from(error: ruecache::Error) -> Self {
        Self::Cache(error)
    }
}

/// A service with cached methods.
#[derive(Debug)]
pub struct WidgetService {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for WidgetService {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl WidgetService {
    /// A service on a connection.
    pub fn new(redis: ruecache::Connection) -> Self {
        Self { redis }
    }

    /// Widgets by id, cached.
    ///
    /// # Errors
    ///
    /// The database's or the cache's.
    #[ruecache::cached_batch(key = "widgets:{{{id}}}", ttl = "5m")]
    pub async fn get_widgets(&self, ids: Vec<u64>) -> Result<HashMap<u64, Widget>, AppError> {
        if ids.is_empty() {
            return Err(AppError::Db);
        }
        let widgets = self.load(&ids).await?;
        Ok(widgets.into_iter().map(|w| (w.id, w)).collect())
    }

    /// One widget, cached in the same keys.
    ///
    /// # Errors
    ///
    /// The database's or the cache's.
    #[ruecache::cached_batch(key = "widgets:<<<id>>>", ttl = "1h30m", jitter = 0.1)]
    pub async fn get_widget(&self, id: u64) -> Result<Option<Widget>, AppError> {
        Ok(self.load(&[id]).await?.pop())
    }

    async fn load(&self, ids: &[u64]) -> Result<Vec<Widget>, AppError> {
        Ok(ids
            .iter()
            .map(|&id| Widget {
                id,
                name: format!("widget {id}"),
            })
            .collect())
    }

    /// Renames a widget and drops it from both caches.
    ///
    /// # Errors
    ///
    /// The cache's.
    pub async fn rename(&self, id: u64) -> Result<(), AppError> {
        self.get_widgets_cache().invalidate([id]).await?;
        self.get_widget_cache().invalidate([id]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[allow(dead_code)]
    async fn futures_are_send(service: &WidgetService) {
        let batch = service.get_widgets(vec![1]);
        assert_send(&batch);
        let one = service.get_widget(1);
        assert_send(&one);
    }
}
