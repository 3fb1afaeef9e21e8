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
//! Each id has one key in Redis, its **data** key (from your template). It holds the id's value,
//! an "absent" marker (the source has no such id), or the **lease** of the caller filling it: a
//! lock kept in the data key itself, made of a marker, a token drawn once per fill, and a
//! deadline (the lock TTL from when it was taken).
//!
//! 1. All data keys are read in one round trip (`GET`/`MGET`, grouped by slot on a cluster).
//!    Values are decoded and returned; a cached "absent" marker means the source has no such id.
//! 2. For the misses, one command per id, all in one round trip, takes the lease and reads the
//!    key at once: `SET key lease NX PX ttl GET`. It answers nil when the lease was taken, the
//!    value when someone filled the id since step 1, or another caller's lease. A lease past its
//!    deadline is taken over (a compare-and-set replaces it); its key lives ten minutes longer
//!    than the deadline, so that a fill that outlasted the lock TTL, and whose lease no one took
//!    over, still commits.
//! 3. The fetch function is called once with the ids this caller leased (and, after step 5,
//!    once more for ids whose other filler gave up).
//! 4. One Lua script, again in one round trip, writes each value (with TTL and deterministic
//!    jitter) **only over the caller's own lease**: a compare-and-set. Ids the fetch left out are
//!    written as absent. Concurrent callers on a connection from [`Connection::open`] share
//!    their script calls.
//! 5. Ids leased by another caller are waited for and go through step 2 again until they are
//!    filled, or the call times out. A waiter on a connection that can subscribe (from
//!    [`Connection::open`] or [`Connection::open_cluster`], or given [`Connection::wake_ups`])
//!    subscribes to the id's channel and then flags the lease; the release of a flagged lease
//!    (its commit, its unlock, its invalidation) publishes a wake-up, so an id nobody waits for
//!    costs no `PUBLISH`. Waiters also poll with backoff (25 ms to 1 s), as the safety net.
//!
//! A miss therefore costs three round trips and three commands (`GET`, `SET`, `EVALSHA`), and a
//! cached id costs one key, the same memory as a hand-written `GET`/`SET` cache. Step 2 needs
//! Redis 7.0 or newer (`SET` with both `NX` and `GET`).
//!
//! [`Cache::invalidate`] deletes the data keys, whatever they hold: a value, or a lease.
//!
//! ## Why a stale value is never written
//!
//! The argument is that of memcache's leases. Take a fill F of one id and a write W to the
//! source, followed by W's invalidation I. F's value is stale only if F read the source before W
//! wrote it; we show that then F's commit finds its lease gone and writes nothing.
//!
//! 1. F's lease L carries a token no other fill ever draws, and only F writes L (its step 2).
//!    Nothing ever writes L back once it is gone: every other write to the data key puts a
//!    value, another token's lease, or nothing.
//! 2. F reads the source (step 3) only after its `SET ... NX` put L in the data key.
//! 3. F commits (step 4) with a script that Redis runs atomically: it writes only if the data
//!    key holds exactly L (flagged by a waiter or not) at that moment.
//! 4. If F read the source before W wrote it, then I, which runs after W, runs after F took L
//!    (2). I deletes the data key. So if F's commit runs after I, the key no longer holds L:
//!    deleted by I, and by (1) never L again, whatever happened in between (another fill's lease
//!    or value, an expiry, an eviction). The commit writes nothing.
//! 5. If F's commit ran before I, I deletes what it wrote: the stale value lived only until the
//!    invalidation, as with any cache that is invalidated after the write.
//!
//! Losing a key can only refuse a write, never let a stale one in: an evicted lease (or one
//! whose key outlived its grace) is a data key without L, exactly like an invalidated one, so
//! the commit refuses. A holder whose lease was taken over (past its deadline, see
//! [`CacheBuilder::lock_ttl`], or taken for dead, see below) finds another lease or value where L
//! was, and refuses too. Deadlines are compared by the waiter's clock: a clock that runs ahead
//! only takes leases over early, which costs a second fetch, never a stale write. The caller that raced the write still *returns* what it fetched, as a database
//! read racing the write would; only the cache is kept clean.
//!
//! One filler per id, fleet-wide: `SET ... NX` puts a lease only in an empty key, and Redis
//! runs it atomically, so of all callers that find an id missing, one takes the lease and the
//! others find it and wait. A lease is taken over at its deadline, and the lease of a process
//! that died sooner: each token starts with its connection's id, whose liveness key the
//! connection keeps alive while it exists; a waiter that finds it gone deletes the dead holder's
//! lease (a compare-and-set again) and takes its own.
//!
//! Keys the cache cannot use (bytes not in its format or that its codec cannot read, a key of
//! another type) are replaced by a lease with a compare-and-set over exactly what was seen, so a
//! value or a lease written meanwhile is never overwritten. (Bytes shaped exactly like a lease, written by
//! hand, are taken for one: they block their id until the deadline they carry, or until
//! [`Cache::invalidate`] deletes them.)
//!
//! The previous protocol kept three keys per id (data, version, lock). During a rolling
//! deploy, values it wrote are read as they are, its lock keys are ignored (both protocols then
//! fill an id, each guarded), and an invalidation also deletes its version key, so that its
//! commits, which refuse a missing version, never write over an invalidation either; its
//! invalidations delete the data key, and with it this protocol's leases.
//!
//! ### Refreshes and stale values
//!
//! A cache that refreshes ahead of expiry ([`CacheBuilder::refresh_ahead`]) or keeps values past
//! their TTL ([`CacheBuilder::stale_for`]) refreshes an id that still holds a value: its lease
//! cannot be taken with `SET ... NX`. It takes a **refresh lease** instead: a compare-and-set
//! puts `0xC1 'R'`, a fresh token and a deadline *before* the value (readers keep using the
//! value behind it), only if the key still starts with what the refresher read. The refresher
//! then fetches, and commits with the same script as a fill, which writes only if the key still
//! starts with its refresh lease. The argument above holds word for word, with L the refresh
//! lease: a token drawn once (1), put in place before the source is read (2), compared at the
//! commit (3); an invalidation deletes the key, the refresh lease and the value behind it
//! together (4), so the commit of a refresh that read the source before a write refuses.
//!
//! And a stale value never outlives an invalidation: it is the value behind a refresh lease or
//! a value past its logical expiry, both in the data key, which the invalidation deletes. A
//! stale value is served only while its key still holds it, so only if no invalidation ran since
//! it was committed: it is the current value of an id whose source did not change, only older
//! than its TTL promised.
//!
//! One refresher per id, fleet-wide: the compare-and-set succeeds for the first of the callers
//! that read the same bytes; the others find the refresh lease and leave it alone until its
//! deadline (the lock TTL, or [`CacheBuilder::stale_retry`] after a failed refresh, which holds
//! off the next attempt). Writing a value through ([`Cache::set`]) replaces the refresh lease,
//! so a refresh in flight then finds a value, not its lease, and refuses.
//!
//! ### The near cache
//!
//! A cache with a near cache ([`CacheBuilder::near_cache`]) also keeps hot ids in process
//! memory. It never writes to Redis, so the argument above is untouched; what it must not do is
//! *serve* a value long after the data key changed. Redis reports every change itself:
//! each process holds one connection per Redis node (the standalone server, or each cluster
//! master) in `CLIENT TRACKING on BCAST PREFIX <the template's text before the id>` mode, and
//! Redis pushes the name of every key under the prefix that changes, whoever changes it (an
//! invalidation, a commit, a lease, a write through, `redis-cli`, an expiry, an eviction; a
//! `FLUSHALL` is one push for everything). Broadcast mode keeps no table of who read what on the
//! server (so `tracking-table-max-keys` plays no part), and lets reads go through any
//! connection. Its cost: every change under the prefix is pushed to every process.
//!
//! 1. **A reply that crossed a report is not kept.** Every report handled (and every local
//!    drop, below) takes a number from one counter; a read notes the counter before it is
//!    sent. Redis pushes the report of a change after executing it; the reply of a read
//!    executed before the change is therefore handled either before the report (the value is
//!    put in memory, then the report drops it) or after it (the report's number is above the
//!    read's: the value is refused). A reply that took longer than a second is refused (reports
//!    are remembered that long). The rule compares only what this process handled and when, so
//!    it holds whichever connection the read used, through `MGET`s shared by callers too.
//! 2. **No report may have been missed.** Nothing is served or kept unless every node's
//!    tracking connection is up. Losing one (it closes, or a ping every 500 ms goes unanswered
//!    for a second) drops everything held, and moves an epoch that every read notes: a reply
//!    from before the loss is refused. Tracking is turned on only if no connection of the round
//!    was lost while the others opened (the turning on and a loss are serialized). On a cluster the masters are listed again every second;
//!    a change of masters is handled as a loss.
//! 3. **Read your writes.** [`Cache::invalidate`] and [`Cache::set`] drop their keys from the
//!    process's near cache, taking a number as a report would, once before their write and
//!    once after Redis answered it: when they return, no call in the process gets the old
//!    value, and no reply in flight can bring it back.
//! 4. **Every entry is bounded**: by the near cache's `max_age`; by the TTL (the data TTL, or
//!    the absent TTL, from when the value was read; Redis also reports the key's expiry; a value
//!    that records its expiry is kept no later than it, and with refresh-ahead only until the
//!    stretch before it in which a read may draw a refresh, so hot ids are still refreshed);
//!    and only fresh values and "absent" are kept, never a stale value or one under a refresh
//!    lease.
//!
//! So a process serves a value after its key changed only while the report is on its way to it
//! (measured across two OS processes on one host: median below zero, that is before the
//! invalidating process got its own reply, and p99 about 0.2 ms; see `docs/testing.md`), or
//! for the time it takes to find a hung connection (1.5 s at most, and `max_age`), and never
//! after its own invalidation returned.
//!
//! A fetch error is returned unchanged and releases the leases. If the caller stops waiting after
//! the fetch returned, the commit still completes in a spawned task; if it stops waiting during
//! the fetch, the leases are released. [`Connection::settle`] waits for such background writes,
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
//! The least a Redis ACL user needs is six commands on its own keys; for the template
//! `widgets:{{{id}}}`:
//!
//! ```text
//! ACL SETUSER cache reset on >cache-password ~widgets:* "~{*}\xffvwidgets:*" ~ruecache:live:* +get +mget +evalsha +script|load +set +del
//! ```
//!
//! The second key pattern covers the previous protocol's version keys (`\xff` is the byte
//! `0xFF`), which an invalidation deletes for processes still running it; the third the
//! liveness keys. `SET` is sent directly, and `SET`, `DEL`, `MGET` and `GET` are called by the
//! Lua scripts, which Redis checks against the caller's rights. A cluster user
//! also needs `+cluster|slots`. The repository's `docs/security.md` explains each rule.
//!
//! At `INFO` and above the engine logs no key, id, value or password.
//!
//! # Values
//!
//! Values go through a [`Codec`]: [`MsgPack`] (serde, the default), [`Raw`] bytes, or `Prost`
//! (feature `prost`). Anything in Redis that is not in the cache's format is treated as a miss and
//! refilled, never returned; a key of another type (a list, a hash...) where the cache keeps a
//! value, a version or a lock is replaced by the cache's own.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    missing_debug_implementations
)]

/// The README's Rust blocks, compiled as doctests so that what a newcomer copies compiles.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod background;
mod batch;
mod cache;
mod coalesce;
mod codec;
mod connection;
mod direct;
mod error;
mod fallback;
mod fill;
mod flight;
mod ids;
mod invalidate;
mod keys;
mod liveness;
mod near;
mod notify;
mod options;
mod scripts;
mod stats;

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use ruecache_macros::cached_batch;

pub use cache::{fetch_one, BoxFetch, Cache, CacheBuilder, HasConnection, IdKeys, Keyed, Spec};
#[cfg(feature = "prost")]
#[cfg_attr(docsrs, doc(cfg(feature = "prost")))]
pub use codec::Prost;
pub use codec::{Codec, MsgPack, Raw};
pub use connection::{Connection, DEFAULT_RESPONSE_TIMEOUT};
pub use direct::Lookup;
pub use error::Error;
pub use ids::IdList;
pub use keys::{KeyTemplate, MAX_KEY_LEN};
pub use liveness::DEFAULT_LIVENESS_WINDOW;
pub use near::{NearCache, NearStatus};
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
