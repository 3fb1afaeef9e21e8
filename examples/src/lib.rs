//! Shared pieces of the ruecache examples: a real SQLite widget database, the Redis they run
//! against (found or started, see [`ExampleRedis`]) and the cleanup of their keys.

mod db;
mod setup;

use serde::{Deserialize, Serialize};

pub use db::Db;
pub use setup::{clear_prefix, ExampleRedis, DEFAULT_PROBE};

/// A widget row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Widget {
    pub id: u64,
    pub name: String,
    pub price_cents: i64,
}

/// Errors of the example service: the database's, or the cache's.
#[derive(Debug)]
pub enum AppError {
    Db(rusqlite::Error),
    Cache(ruecache::Error),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Db(e) => write!(f, "database: {e}"),
            Self::Cache(e) => write!(f, "cache: {e}"),
        }
    }
}

impl std::error::Error for AppError {}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

impl From<ruecache::Error> for AppError {
    fn from(e: ruecache::Error) -> Self {
        Self::Cache(e)
    }
}

/// Sets up `tracing` output on stderr, controlled by `RUST_LOG` (default `default_filter`, say
/// `warn`).
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
}
