//! A Redis-backed, self-filling batch cache that stays correct when many processes share one
//! Redis or a Redis Cluster.
//!
//! Put it in front of any `ids -> map` lookup: the cache reads what Redis has, calls your fetch
//! function **once** for the ids it is missing, writes those back, and returns the whole map.
//!
//! ```no_run
//! use std::collections::HashMap;
//!
//! use ruecache::{Cache, Connection};
//!
//! # async fn load_names(ids: &[u64]) -> Result<HashMap<u64, String>, ruecache::Error> { todo!() }
//! # async fn run() -> Result<(), ruecache::Error> {
//! let conn = Connection::open("redis://127.0.0.1:6379").await?;
//! let names: Cache<u64, String> = Cache::builder(conn, "names:{{{id}}}").build()?;
//!
//! let found: HashMap<u64, String> = names
//!     .get_and_fill(vec![1, 2, 3], |missing| async move { load_names(&missing).await })
//!     .await?;
//! names.invalidate([2]).await?; // after writing id 2 to the database
//! # Ok(()) }
//! ```
//!
//! # The protocol
//!
//! Each id has three keys in one cluster slot: the **data** key (from your template), a
//! **version** key and a **lock** key (derived, see [`Cache::keys`]).
//!
//! 1. All data keys are read in one round trip (`GET`/`MGET`, grouped by slot on a cluster).
//!    Hits are decoded and returned; a cached "absent" marker means the source has no such id.
//! 2. For the misses, plain commands, all in one round trip, take the lock with
//!    `SET lock token NX PX lock_ttl GET`, read (or create) the version and re-check the data.
//! 3. The fetch function is called once with the ids this caller locked (and, after step 5,
//!    once more for ids whose other filler gave up).
//! 4. One Lua script, again in one round trip, releases our lock and writes each value (with TTL
//!    and deterministic jitter) **only if its version is unchanged**. Ids the fetch left out are
//!    written as absent. Concurrent callers on a connection from [`Connection::open`] share
//!    their script calls.
//! 5. Ids locked by another caller are waited for and go through step 2 again until they are
//!    filled, or the call times out. The commit and unlock scripts publish on the id's channel
//!    when they release its lock, and a waiter on a connection from [`Connection::open`] or
//!    [`Connection::open_cluster`] (or given [`Connection::wake_ups`]) is woken by that at
//!    once; otherwise (and as a safety net) it polls with backoff (25 ms to 1 s).
//!
//! Step 2 needs Redis 7.0 or newer (`SET` with both `NX` and `GET`).
//!
//! [`Cache::invalidate`] deletes the data and replaces the version with a fresh random one, so a
//! fill that read the old version can never write: stale data is returned at most to the caller
//! whose read raced the write (as a database read would be), never stored. Because a commit also
//! refuses when the version key is *missing*, losing a version key to eviction or expiry can only
//! refuse a write, never let a stale one in.
//!
//! A fetch error is returned unchanged and releases the locks. If the caller stops waiting after
//! the fetch returned, the commit still completes in a spawned task; if it stops waiting during
//! the fetch, the locks are released. [`Connection::settle`] waits for such background writes,
//! before a graceful shutdown.
//!
//! # The attribute
//!
//! [`cached_batch`] (feature `macros`, on by default) turns a service method into a cached one
//! with one line; the method's body becomes the fetch. See its documentation for every argument.
//!
//! The cached methods find their Redis connection through their service: it implements
//! [`HasConnection`], one method returning a `&Connection` it already holds.
//!
//! ```
//! struct WidgetService {
//!     redis: ruecache::Connection,
//!     // db: ..., and whatever else the service has
//! }
//!
//! impl ruecache::HasConnection for WidgetService {
//!     fn cache_connection(&self) -> &ruecache::Connection {
//!         &self.redis
//!     }
//! }
//! ```
//!
//! A trait rather than an argument naming a field (`conn = "self.redis"`) because the compiler
//! then checks it: the connection can live anywhere (a field, a nested struct, an `Arc` shared
//! with the rest of the app), one impl serves every cached method of the type, and forgetting it
//! is a compile error that shows the impl to add. Nothing is added to the struct: each call
//! clones the connection handle (which shares its socket, it does not reconnect), and each
//! method's cache settings live in a `static`.
//!
//! # Connections
//!
//! [`Connection`] wraps the redis-rs connections you already have: `MultiplexedConnection`,
//! `ConnectionManager` (reconnects) and `cluster_async::ClusterConnection`. All of them pipeline
//! concurrent callers' commands over one socket. Set their response timeout deliberately (redis-rs
//! defaults to 500 ms); [`Connection::open`] and [`Connection::open_cluster`] use
//! [`DEFAULT_RESPONSE_TIMEOUT`].
//!
//! # TLS and Redis users
//!
//! With the `tls` feature (off by default: rustls with the `ring` provider), `rediss://` URLs
//! work, and the server's certificate is verified against the system's trust store (or
//! `SSL_CERT_FILE`). A user and password go in the URL: `rediss://user:password@host:6380`.
//! For a private certificate authority, build the redis-rs client with it and convert the
//! connection:
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # async fn run() -> redis::RedisResult<()> {
//! let ca = std::fs::read("ca.crt")?;
//! let client = redis::Client::build_with_tls(
//!     "rediss://cache:cache-password@redis.internal:6380",
//!     redis::TlsCertificates { client_tls: None, root_cert: Some(ca) },
//! )?;
//! let config = redis::AsyncConnectionConfig::new()
//!     .set_response_timeout(Some(ruecache::DEFAULT_RESPONSE_TIMEOUT));
//! let conn: ruecache::Connection = client
//!     .get_multiplexed_async_connection_with_config(&config)
//!     .await?
//!     .into();
//! # Ok(()) }
//! ```
//!
//! The least a Redis ACL user needs is seven commands on its own keys; for the template
//! `widgets:{{{id}}}`:
//!
//! ```text
//! ACL SETUSER cache reset on >cache-password ~widgets:* "~{*}\xff[vl]widgets:*" ~ruecache:live:* +get +mget +evalsha +script|load +set +del +pexpire
//! ```
//!
//! The second key pattern covers the version and lock keys (`\xff` is the byte `0xFF`, see
//! [`Cache::keys`]), the third the liveness keys; `SET`, `DEL` and `PEXPIRE` are sent directly
//! and called by the Lua scripts, which Redis checks against the caller's rights. A cluster user
//! also needs `+cluster|slots`. The README's "Security" section explains each rule.
//!
//! At `INFO` and above the engine logs no key, id, value or password.
//!
//! # Values
//!
//! Values go through a [`Codec`]: [`MsgPack`] (serde, the default), [`Raw`] bytes, or `Prost`
//! (feature `prost`). Anything in Redis that is not in the cache's format is treated as a miss and
//! refilled, never returned; a key of another type (a list, a hash...) where the cache keeps a
//! value, a version or a lock is replaced by the cache's own.
#![warn(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    missing_debug_implementations
)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod background;
mod batch;
mod cache;
mod coalesce;
mod codec;
mod connection;
mod error;
mod fallback;
mod fill;
mod flight;
mod keys;
mod liveness;
mod notify;
mod options;
mod scripts;
mod stats;

#[cfg(feature = "macros")]
pub use ruecache_macros::cached_batch;

pub use cache::{fetch_one, BoxFetch, Cache, CacheBuilder, HasConnection, IdKeys, Keyed, Spec};
#[cfg(feature = "prost")]
pub use codec::Prost;
pub use codec::{Codec, MsgPack, Raw};
pub use connection::{Connection, DEFAULT_RESPONSE_TIMEOUT};
pub use error::Error;
pub use keys::{KeyTemplate, MAX_KEY_LEN};
pub use liveness::DEFAULT_LIVENESS_WINDOW;
pub use options::Options;
pub use stats::Stats;

/// The redis-rs crate this one is built on, so that its types (`redis::Client`,
/// `redis::aio::ConnectionManager`, `redis::RedisError`...) can be named without depending on a
/// matching version of it.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), ruecache::Error> {
/// use ruecache::redis;
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let manager = redis::aio::ConnectionManager::new(client.clone()).await?;
/// let conn = ruecache::Connection::from(manager).wake_ups(&client);
/// # drop(conn);
/// # Ok(()) }
/// ```
pub use redis;
