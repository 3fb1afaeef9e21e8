//! Shared pieces of the ruecache examples: a real SQLite widget database and the Redis connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// An embedded SQLite database of widgets that counts the queries it answers.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<rusqlite::Connection>>,
    queries: Arc<AtomicU64>,
    latency: Duration,
}

impl Db {
    /// Creates the database with `count` widgets; every query takes at least `latency`, like a
    /// real database across a network.
    pub fn seeded(count: u64, latency: Duration) -> Result<Self, AppError> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);",
        )?;
        {
            let mut insert =
                conn.prepare("INSERT INTO widgets (id, name, price_cents) VALUES (?1, ?2, ?3)")?;
            for id in 1..=count {
                insert.execute((id, format!("widget {id}"), 100 * id as i64))?;
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            queries: Arc::new(AtomicU64::new(0)),
            latency,
        })
    }

    /// Loads the widgets that exist among `ids`.
    pub async fn load_widgets(&self, ids: &[u64]) -> Result<HashMap<u64, Widget>, AppError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        let conn = self
            .conn
            .lock()
            .expect("the database mutex is never poisoned");
        let placeholders = vec!["?"; ids.len()].join(",");
        let mut stmt = conn.prepare(&format!(
            "SELECT id, name, price_cents FROM widgets WHERE id IN ({placeholders})"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(ids), |row| {
            Ok(Widget {
                id: row.get(0)?,
                name: row.get(1)?,
                price_cents: row.get(2)?,
            })
        })?;
        rows.map(|w| w.map(|w| (w.id, w)).map_err(AppError::from))
            .collect()
    }

    /// Renames a widget.
    pub fn rename(&self, id: u64, name: &str) -> Result<(), AppError> {
        let conn = self
            .conn
            .lock()
            .expect("the database mutex is never poisoned");
        conn.execute("UPDATE widgets SET name = ?1 WHERE id = ?2", (name, id))?;
        Ok(())
    }

    /// How many queries the database has answered.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// Connects to `REDIS_URL` (default `redis://127.0.0.1:6379`), or exits with instructions.
pub async fn connect_redis() -> ruecache::Connection {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match ruecache::Connection::open(&url).await {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("could not connect to Redis at {url}: {e}");
            eprintln!("start one with `redis-server --port 6379 --save ''` (Debian/Ubuntu: `apt-get install redis-server`),");
            eprintln!(
                "or point REDIS_URL at a server you have, e.g. REDIS_URL=redis://127.0.0.1:6380"
            );
            std::process::exit(2);
        }
    }
}

/// Sets up `tracing` output, controlled by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}
