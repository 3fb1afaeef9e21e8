//! The `#[cached_batch]` attribute of [`ruecache`](https://docs.rs/ruecache).
//!
//! This crate is an implementation detail: depend on `ruecache`, which re-exports the attribute
//! as `ruecache::cached_batch` (with its default `macros` feature) and provides everything the
//! expansion calls. Its version is pinned by `ruecache`, so the two always match.

mod args;
mod duration;
mod errors;
mod expand;
mod item;
mod template;
mod validate;

use proc_macro::TokenStream;

/// Caches an `async fn` method's `ids -> map` lookup in Redis: the body runs only for the ids
/// the cache is missing, and the method returns the whole map.
///
/// ```no_run
/// use std::collections::HashMap;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Widget { name: String }
///
/// #[derive(Debug)]
/// enum AppError { Cache(ruecache::Error), Db }
///
/// impl From<ruecache::Error> for AppError {
///     fn from(error: ruecache::Error) -> Self { Self::Cache(error) }
/// }
///
/// struct WidgetService { redis: ruecache::Connection }
///
/// impl ruecache::HasConnection for WidgetService {
///     fn cache_connection(&self) -> &ruecache::Connection { &self.redis }
/// }
///
/// impl WidgetService {
///     #[ruecache::cached_batch(key = "widgets:{{{id}}}", ttl = "5m")]
///     async fn get_widgets(&self, ids: Vec<u64>) -> Result<HashMap<u64, Widget>, AppError> {
///         // Runs only for the ids the cache is missing: `ids` holds just those.
///         Ok(ids.into_iter().map(|id| (id, Widget { name: format!("widget {id}") })).collect())
///     }
///
///     #[ruecache::cached_batch(key = "widgets:{{{id}}}", ttl = "5m")]
///     async fn get_widget(&self, id: u64) -> Result<Option<Widget>, AppError> {
///         Ok(Some(Widget { name: format!("widget {id}") }))
///     }
///
///     async fn rename(&self, id: u64) -> Result<(), AppError> {
///         // db.rename(id, ...).await?;
///         self.get_widgets_cache().invalidate([id]).await?;
///         Ok(())
///     }
/// }
/// ```
///
/// # The method
///
/// `async fn name(&self, ids: Ids) -> Ret` in an inherent `impl` block of a type that implements
/// `ruecache::HasConnection` (which says which Redis connection its cached methods use). The
/// method keeps its name, signature (the ids parameter's name included, so attributes such as
/// `#[tracing::instrument(skip(self, ids))]` can name it), visibility and attributes. Its body
/// becomes the fetch: it sees its ids parameter (whatever it is called, `mut` or a destructuring
/// pattern as written) holding only the ids Redis does not have, and returns what the source has
/// for them. Ids it leaves out are cached as absent. The attribute does not read the body: it is
/// moved into the fetch as written, so the compiler checks it and reports any mistake in it on
/// the body itself (the companion is still generated), and inner attributes at its top, such as
/// `#![allow(..)]`, apply to the whole method as usual.
///
/// **Batch or single item: the types decide.** The form is chosen by the compiler from the
/// declared types, never from their names, so aliases (`type AppResult<T> = Result<T, AppError>`,
/// `type Ids = Vec<WidgetId>`) work anywhere:
///
/// | returns | takes | form |
/// | --- | --- | --- |
/// | `Result<HashMap<Id, T>, E>` (any hasher), `Result<BTreeMap<Id, T>, E>` or `Result<Vec<(Id, T)>, E>` | `Vec<Id>` | batch: `Cache::get_and_fill` |
/// | `Result<Option<T>, E>` | `Id` | single item: `Cache::get_and_fill_one`; `Ok(None)` means the source has no such id (cached too) |
///
/// Other map types (`IndexMap`, `hashbrown::HashMap`) are not supported: use `ruecache::Cache`
/// directly for those. An `Option` *inside* a map (`HashMap<Id, Option<T>>`) is a value like any
/// other.
///
/// Requirements, each checked by the compiler with one error that names the type at fault and
/// says what to add (it points at `E` when `E` lacks the `From`, at the ids parameter's type when
/// the ids are not a `Vec` of the map's keys or the id misses one of the traits below, at `T`
/// when the codec cannot store it, or at the alias that hides `T`, and at the declared return
/// type when it has another shape): `Id` is
/// `Display + Eq + Hash + Clone + Send + Sync + 'static` (the key is the template rendered with
/// the id's `Display`); `T` works with the codec (`Serialize + DeserializeOwned` for the
/// default `MsgPack`); `E: From<ruecache::Error>` (Redis failures and timeouts become your
/// error; the body's own errors are returned unchanged).
///
/// The method takes `&self` (or `self: &Self`) and exactly one more parameter: anything else
/// would not be part of the cache key. It cannot have type or const parameters, `impl Trait` in
/// the ids type included (lifetimes and `where` clauses are fine). Methods of generic `impl`
/// blocks work; the instantiations share one spec (template, options, counters).
///
/// **Attribute order.** Attributes are expanded from the top down. An attribute written *below*
/// `#[cached_batch]` is kept on the generated method, so it wraps the whole cached call:
/// `#[tracing::instrument]` there records every call, hits included. An attribute macro written
/// *above* it expands first and rewrites the body, which then becomes the fetch:
/// `#[tracing::instrument]` there records only the calls that fetch, and the ids it sees are the
/// missing ones. Put it below to trace calls, above to trace fetches.
///
/// Inherent `impl` blocks only: a trait impl cannot hold the companion, so there the compiler
/// reports "method `name_cache` is not a member of trait" on the attribute (the attribute
/// cannot see which `impl` block it is in). To cache a trait method, put the attribute on an
/// inherent method and have the trait impl call it: `self.get_widgets(ids).await`.
///
/// # The companion
///
/// Each cached method `name` comes with one more method, `name_cache(&self)`, with the same
/// visibility, returning the `ruecache::Cache<Id, T, Codec>` behind it. It is the only name the
/// attribute adds:
///
/// - `self.name_cache().invalidate(ids).await?` after writing to the source, so that readers
///   stop getting the old values (a fill racing the write can then no longer store them);
/// - `self.name_cache().stats()` for its hit, miss and fetch counters. They count per method,
///   not per instance of the service: every instance shares the method's cache (its spec is a
///   `static`), as it shares the method's Redis keys;
/// - `data_key`, `keys`, `preload_scripts` and the rest of the `Cache` API.
///
/// The cache's spec (template, options, counters) is a `static` inside the companion, so the
/// template is parsed at compile time and never repeated.
///
/// # Arguments
///
/// | argument | value | default |
/// | --- | --- | --- |
/// | `key` | the key template (required): `{id}` is the id, `{{` and `}}` literal braces, `<<<id>>>` the id in a Redis Cluster hash tag; `"widgets:{{{id}}}"` and `"widgets:<<<id>>>"` both store `widgets:{42}` for id 42 | |
/// | `ttl` | how long values stay cached: a duration, or `"none"` for no expiry: `ttl = "1h30m"` | `"5m"` |
/// | `jitter` | spreads each id's TTL by up to ± this fraction, a float from `0.0` to `1.0`: `jitter = 0.05` | `0.2` |
/// | `lock_ttl` | how long a filler's lock lasts: the longest a crashed filler blocks others; `lock_ttl = "30s"` | `"5s"` |
/// | `timeout` | bounds each wait on Redis and on other fillers, counted from the start of the call (the body itself is not cut short); `timeout = "1m"` | `"30s"` |
/// | `absent_ttl` | how long ids the source does not have stay cached as absent: `absent_ttl = "30s"` | the `ttl` |
/// | `backoff_min`, `backoff_max` | how waiters poll a lease another caller holds (when no wake-up comes): first after the minimum, doubling up to the maximum; `backoff_min = "10ms"` | `"25ms"`, `"1s"` |
/// | `unlock_threshold` | a failed fill releases its leases unless less than this much of the lock TTL is left; `"0ms"` always releases | `"10ms"` |
/// | `fallback_to_source` | serve calls straight from the source while Redis is unreachable: `fallback_to_source = true` | `false` |
/// | `stale_for` | keep values this long past their TTL, served when their refill fails (the source errs or passes `fetch_soft_timeout`); the keys' TTL in Redis is `ttl` + `stale_for`: `stale_for = "1h"` | not kept |
/// | `stale_retry` | after a failed refill, serve the stale value this long before the next attempt: `stale_retry = "1s"` | `"5s"` |
/// | `fetch_timeout` | the body's hard timeout: past it the call fails with `ruecache::Error::FetchTimeout` (or gets a stale value): `fetch_timeout = "2s"` | none |
/// | `fetch_soft_timeout` | past it, the refill of a stale value serves the stale value; shorter than `fetch_timeout`: `fetch_soft_timeout = "200ms"` | none |
/// | `refresh_ahead` | refresh ids in the background before they expire (XFetch, one refresher per id fleet-wide): the body then runs on a clone of the service, which must be `Clone + Send + Sync + 'static`, and its error type must implement `Display` (refresh errors are logged); `refresh_ahead = true` | `false` |
/// | `refresh_beta` | the β of the refresh-ahead draw: above `1.0` refreshes earlier, below later; `refresh_beta = 2.0` | `1.0` |
/// | `near` | keep up to this many ids in process memory, in front of Redis, each dropped as soon as Redis reports its key changed (`CacheBuilder::near_cache`; one near cache per method and connection); a whole number of at least 1, `near = "10000"` (or `near = 10000`). Needs a connection opened by `Connection::open` or `Connection::open_cluster` (or given a client with `Connection::wake_ups`): on another, the method's calls read Redis only, with a warning logged once per connection | off |
/// | `near_max_age` | the longest an id stays in process memory, whatever Redis reports; needs `near`: `near_max_age = "10s"` | `"30s"` |
/// | `name` | the cache's name, in its `tracing` spans and its metrics: `name = "widgets"` | the method's name |
/// | `codec` | a codec type (not a string) implementing `ruecache::Codec<T> + Default`: `codec = ruecache::Raw` | `ruecache::MsgPack` |
/// | `crate` | the path of `ruecache` as a string, for crates that re-export it: `crate = "my_crate::ruecache"` | `"::ruecache"` |
///
/// Durations are numbers with units `ms`, `s`, `m`, `h` and `d`, combined from largest to
/// smallest: `"500ms"`, `"30s"`, `"1h30m"`, `"7d"` (no fractions: `"1h30m"`, not `"1.5h"`;
/// spaces are fine: `"1h 30m"`). The arguments set the same options as the `CacheBuilder`
/// methods of the same names (`near` and `near_max_age` those of `CacheBuilder::near_cache`:
/// `NearCache::new(near).max_age(near_max_age)`), through the same setters, and are checked by
/// the same rules
/// (`CacheBuilder::build`'s messages, such as a `lock_ttl` not longer than the
/// `unlock_threshold`). Every argument is checked when the code compiles, and every mistake is reported at once, at
/// the argument at fault; the method is then left as written, and its companion still generated
/// where the method's types allow, so that callers of both still compile.
///
/// A method with every argument tuned: thumbnails are slow to make (a long `lock_ttl`, so that a
/// filler is not taken over while it works, and a `timeout` that allows for it), stored as raw
/// bytes (`codec`), kept for a day spread by ± 5 % (`ttl`, `jitter`), and the attribute is
/// reached through a crate that re-exports `ruecache` (`crate`, a quoted path):
///
/// ```no_run
/// mod deps {
///     pub use ruecache; // in a real crate, `pub use` from a dependency of the wrapper
/// }
///
/// struct Thumbnails { redis: ruecache::Connection }
///
/// impl ruecache::HasConnection for Thumbnails {
///     fn cache_connection(&self) -> &ruecache::Connection { &self.redis }
/// }
///
/// impl Thumbnails {
///     #[deps::ruecache::cached_batch(
///         key = "thumbs:<<<id>>>",
///         ttl = "1d",
///         jitter = 0.05,
///         lock_ttl = "2m",
///         timeout = "3m",
///         codec = deps::ruecache::Raw,
///         crate = "crate::deps::ruecache",
///     )]
///     async fn thumbnail(&self, id: u64) -> Result<Option<Vec<u8>>, deps::ruecache::Error> {
///         // resize(id).await
///         Ok(Some(vec![0; 64]))
///     }
/// }
/// # fn main() {}
/// ```
#[proc_macro_attribute]
pub fn cached_batch(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
