//! A JSON web service (axum) over SQLite, cached with one attribute.
//!
//! ```text
//! GET  /widgets?ids=1,2,3   {"widgets": [...], "missing": [...]}, in the order asked
//! GET  /widgets/{id}        the widget, or 404
//! PUT  /widgets/{id}        body {"name": "...", "price_cents": 250}: writes the database,
//!                           then invalidates the cached widget; the widget, or 404
//! GET  /stats               the database's read count and the cache's counters
//! ```
//!
//! Run it with `cargo run -p ruecache-examples --bin service`, then for example
//! `curl 'http://127.0.0.1:3000/widgets?ids=1,2,3'`. Settings, all from the environment:
//!
//! - `BIND`: the address to listen on (default `127.0.0.1:3000`; port `0` picks a free one), or
//!   `PORT` alone for `127.0.0.1:<PORT>`. It prints `listening on http://<address>` on stdout
//!   once it accepts requests.
//! - `REDIS_URL`: the Redis to use. Unset, it uses the one answering at `redis://127.0.0.1:6379`
//!   (another address to probe can be given in `RUECACHE_EXAMPLE_PROBE`), or else starts a
//!   private `redis-server` on a free loopback port and stops it when it ends (and says how to
//!   install Redis if it cannot).
//! - `RUST_LOG`: the `tracing` filter (default `info`), output on stderr.
//!
//! Ctrl-C or SIGTERM shuts it down gracefully: it stops accepting connections, lets the
//! requests in flight finish, waits for the cache's background writes (`Connection::settle`),
//! and, being an example, deletes the keys it wrote (all under `ruecache-example:service:`, all
//! with a TTL) before it exits with status 0. A real service keeps its cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ruecache_examples::{clear_prefix, init_tracing, AppError, Db, ExampleRedis, Widget};
use serde::{Deserialize, Serialize};
use tracing::{error, info};

/// The prefix of every key this service writes (the template below starts with it).
const KEYS: &str = "ruecache-example:service:";
/// The most ids one `GET /widgets` may ask for.
const MAX_IDS: usize = 1000;

/// Cheap to clone (a pool and a connection): `refresh_ahead` runs the method's body on a clone.
#[derive(Clone)]
struct WidgetService {
    db: Db,
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for WidgetService {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl WidgetService {
    /// Hot widgets are refreshed in the background before they expire; while the database is
    /// down or slower than 200 ms, widgets up to an hour past their TTL are served as they were.
    /// The 10,000 hottest are answered from process memory, each dropped as soon as Redis reports
    /// a change of its key (by any instance of the service).
    #[ruecache::cached_batch(
        key = "ruecache-example:service:widgets:<<<id>>>",
        ttl = "5m",
        refresh_ahead = true,
        stale_for = "1h",
        fetch_soft_timeout = "200ms",
        near = "10000"
    )]
    async fn get_widgets(&self, ids: Vec<u64>) -> Result<HashMap<u64, Widget>, AppError> {
        info!(?ids, "reading widgets from the database"); // only the ids the cache is missing
        self.db.load_widgets(&ids).await
    }

    /// Writes the widget, then invalidates it: a fill racing the write cannot store the old row.
    /// `false` if there is no such widget.
    async fn update_widget(&self, widget: Widget) -> Result<bool, AppError> {
        let id = widget.id;
        let written = self.db.update(widget).await;
        self.get_widgets_cache().invalidate([id]).await?;
        written
    }
}

type AppState = State<Arc<WidgetService>>;

#[derive(Deserialize)]
struct IdsQuery {
    ids: String,
}

#[derive(Serialize)]
struct WidgetList {
    widgets: Vec<Widget>,
    missing: Vec<u64>,
}

#[derive(Deserialize)]
struct WidgetUpdate {
    name: String,
    price_cents: i64,
}

#[derive(Serialize)]
struct StatsBody {
    /// Reads the database has answered.
    db_queries: u64,
    /// The counters of `get_widgets`' cache.
    cache: CacheStats,
}

/// The counters of [`ruecache::Stats`] a client of this service cares about.
#[derive(Serialize)]
struct CacheStats {
    hits: u64,
    misses: u64,
    fetches: u64,
    fetched_ids: u64,
    commits: u64,
    stale_commits: u64,
    invalidations: u64,
    refreshes: u64,
    stale_served: u64,
    /// Ids answered from process memory (not counted in `hits`).
    near_hits: u64,
}

async fn list_widgets(
    State(service): AppState,
    Query(query): Query<IdsQuery>,
) -> Result<Json<WidgetList>, ApiError> {
    let ids = parse_ids(&query.ids)?;
    let mut found = service.get_widgets(ids.clone()).await?;
    let (mut widgets, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        match found.remove(&id) {
            Some(widget) => widgets.push(widget),
            None if !widgets.iter().any(|w| w.id == id) => missing.push(id),
            None => {} // asked twice
        }
    }
    info!(
        found = widgets.len(),
        missing = missing.len(),
        "GET /widgets"
    );
    Ok(Json(WidgetList { widgets, missing }))
}

async fn get_widget(
    State(service): AppState,
    Path(id): Path<u64>,
) -> Result<Json<Widget>, ApiError> {
    let widget = service.get_widgets(vec![id]).await?.remove(&id);
    info!(id, found = widget.is_some(), "GET /widgets/{{id}}");
    widget.map(Json).ok_or(ApiError::NotFound(id))
}

async fn put_widget(
    State(service): AppState,
    Path(id): Path<u64>,
    Json(update): Json<WidgetUpdate>,
) -> Result<Json<Widget>, ApiError> {
    let widget = Widget {
        id,
        name: update.name,
        price_cents: update.price_cents,
    };
    let found = service.update_widget(widget.clone()).await?;
    info!(id, found, "PUT /widgets/{{id}}");
    if found {
        Ok(Json(widget))
    } else {
        Err(ApiError::NotFound(id))
    }
}

async fn stats(State(service): AppState) -> Json<StatsBody> {
    let stats = service.get_widgets_cache().stats();
    Json(StatsBody {
        db_queries: service.db.queries(),
        cache: CacheStats {
            hits: stats.hits,
            misses: stats.misses,
            fetches: stats.fetches,
            fetched_ids: stats.fetched_ids,
            commits: stats.commits,
            stale_commits: stats.stale_commits,
            invalidations: stats.invalidations,
            refreshes: stats.refreshes,
            stale_served: stats.stale_served,
            near_hits: stats.near_hits,
        },
    })
}

fn parse_ids(ids: &str) -> Result<Vec<u64>, ApiError> {
    let ids = ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse()
                .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a widget id")))
        })
        .collect::<Result<Vec<u64>, _>>()?;
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!(
            "{} ids asked, at most {MAX_IDS} allowed",
            ids.len()
        )));
    }
    Ok(ids)
}

/// What a request can fail with, as an HTTP status and a JSON body `{"error": "..."}`.
enum ApiError {
    BadRequest(String),
    NotFound(u64),
    Internal(AppError),
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        Self::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Self::NotFound(id) => (StatusCode::NOT_FOUND, format!("no widget {id}")),
            Self::Internal(e) => {
                error!(error = %e, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

fn app(service: Arc<WidgetService>) -> Router {
    Router::new()
        .route("/widgets", get(list_widgets))
        .route("/widgets/{id}", get(get_widget).put(put_widget))
        .route("/stats", get(stats))
        .with_state(service)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("cannot listen for Ctrl-C");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C: shutting down"),
        () = terminate => info!("SIGTERM: shutting down"),
    }
}

fn bind_address() -> String {
    let env = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    env("BIND")
        .or_else(|| env("PORT").map(|port| format!("127.0.0.1:{port}")))
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing("info");
    let redis = ExampleRedis::find().await;
    let conn = redis.connect().await?;
    let service = Arc::new(WidgetService {
        db: Db::seeded(1000, Duration::from_millis(20)).await?,
        redis: conn.clone(),
    });
    let bind = bind_address();
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e} (set BIND or PORT)"))?;
    println!("listening on http://{}", listener.local_addr()?);

    axum::serve(listener, app(service))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    info!("the last request has ended");
    conn.settle().await;
    info!("settled: no cache write is left in the background");
    let removed = clear_prefix(&conn, KEYS).await?;
    info!(removed, "deleted the keys the example wrote under {KEYS}");
    redis.stop();
    Ok(())
}
