//! An embedded SQLite database of widgets. SQLite calls block, so every one of them runs on
//! tokio's blocking thread pool (`spawn_blocking`), never on the async workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{AppError, Widget};

/// An embedded SQLite database of widgets that counts the queries it answers.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<rusqlite::Connection>>,
    queries: Arc<AtomicU64>,
    latency: Duration,
}

impl Db {
    /// Creates the database with `count` widgets (`widget 1` at 100 cents, `widget 2` at 200...);
    /// every read takes at least `latency`, like a real database across a network.
    pub async fn seeded(count: u64, latency: Duration) -> Result<Self, AppError> {
        let conn = tokio::task::spawn_blocking(move || -> rusqlite::Result<_> {
            let mut conn = rusqlite::Connection::open_in_memory()?;
            conn.execute_batch(
                "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);",
            )?;
            let tx = conn.transaction()?;
            {
                let mut insert =
                    tx.prepare("INSERT INTO widgets (id, name, price_cents) VALUES (?1, ?2, ?3)")?;
                for id in 1..=count {
                    insert.execute((id, format!("widget {id}"), 100 * id as i64))?;
                }
            }
            tx.commit()?;
            Ok(conn)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
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
        let ids = ids.to_vec();
        self.blocking(move |conn| {
            let placeholders = vec!["?"; ids.len()].join(",");
            let mut stmt = conn.prepare(&format!(
                "SELECT id, name, price_cents FROM widgets WHERE id IN ({placeholders})"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(&ids), |row| {
                Ok(Widget {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    price_cents: row.get(2)?,
                })
            })?;
            rows.map(|w| w.map(|w| (w.id, w))).collect()
        })
        .await
    }

    /// Renames a widget.
    pub async fn rename(&self, id: u64, name: &str) -> Result<(), AppError> {
        let name = name.to_owned();
        self.blocking(move |conn| {
            conn.execute("UPDATE widgets SET name = ?1 WHERE id = ?2", (name, id))
                .map(drop)
        })
        .await
    }

    /// Writes a widget's name and price; `false` if there is no widget with its id.
    pub async fn update(&self, widget: Widget) -> Result<bool, AppError> {
        self.blocking(move |conn| {
            conn.execute(
                "UPDATE widgets SET name = ?1, price_cents = ?2 WHERE id = ?3",
                (widget.name, widget.price_cents, widget.id),
            )
            .map(|rows| rows == 1)
        })
        .await
    }

    /// How many reads the database has answered.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Runs `f` on the connection on tokio's blocking thread pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().expect("the database mutex is never poisoned");
            f(&conn)
        })
        .await
        // A panic in `f` is the caller's panic. (The other join error, a task the runtime
        // dropped unstarted at shutdown, cannot reach a caller: it is dropped with it.)
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(AppError::from)
    }
}
