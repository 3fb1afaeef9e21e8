//! The typed cache handle and its builder.

use std::fmt::{self, Display};
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Codec, MsgPack};
use crate::direct::Lookup;
use crate::fill::refresh::{starter, Starter};
use crate::keys::{check_len, KeyTemplate};
use crate::near::{Near, NearCache};
use crate::options::Options;
use crate::stats::{Counters, Stats};
use crate::{Connection, Error};

/// What a cache needs besides its connection: key template, options and counters. `const`-built
/// so that it can live in a `static` (the attribute macro puts one per method there).
///
/// Not a public API: only `#[cached_batch]` names it (through `__private`), and it may change in
/// any release. Build caches with [`Cache::builder`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Spec {
    pub(crate) template: Option<KeyTemplate>,
    pub(crate) options: Options,
    pub(crate) stats: Counters,
}

impl Spec {
    /// A spec from a template and options that are known to be valid: nothing checks them here
    /// (the attribute macro validates its arguments when it expands).
    pub const fn new(template: KeyTemplate, options: Options) -> Self {
        Self {
            template: Some(template),
            options,
            stats: Counters::new(options.name),
        }
    }
}

/// A `&'static T` or an `Arc<T>`: caches built at run time own their spec, caches from the macro
/// borrow a `static` one.
#[derive(Debug)]
pub(crate) enum Shared<T: 'static> {
    Static(&'static T),
    Owned(Arc<T>),
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Static(t) => Self::Static(t),
            Self::Owned(t) => Self::Owned(Arc::clone(t)),
        }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Self::Static(t) => t,
            Self::Owned(t) => t,
        }
    }
}

type CustomKeyFn<Id> = Arc<dyn Fn(&Id) -> String + Send + Sync>;

pub(crate) enum KeyFn<Id> {
    /// Renders the spec's template; a function pointer because only the builder knows
    /// `Id: Display`.
    Template(fn(&KeyTemplate, &Id, &mut dyn fmt::Write) -> Result<(), Error>),
    Custom(CustomKeyFn<Id>),
}

impl<Id> Clone for KeyFn<Id> {
    fn clone(&self) -> Self {
        match self {
            Self::Template(f) => Self::Template(*f),
            Self::Custom(f) => Self::Custom(Arc::clone(f)),
        }
    }
}

fn render<Id: Display>(
    template: &KeyTemplate,
    id: &Id,
    out: &mut dyn fmt::Write,
) -> Result<(), Error> {
    template.write(id, out)
}

/// A Redis-backed, self-filling cache of `T` values by `Id`.
///
/// Build one with [`Cache::builder`]. Cloning is cheap and clones share counters.
///
/// # Examples
///
/// ```no_run
/// use std::collections::HashMap;
///
/// use ruecache::{Cache, Connection};
///
/// # async fn run() -> Result<(), ruecache::Error> {
/// let conn = Connection::open("redis://127.0.0.1:6379").await?;
/// let cache: Cache<u64, String> = Cache::builder(conn, "names:{{{id}}}").build()?;
///
/// let names: HashMap<u64, String> = cache
///     .get_and_fill(vec![1, 2, 3], |missing| async move {
///         // Runs only for the ids Redis does not have.
///         Ok::<_, ruecache::Error>(missing.into_iter().map(|id| (id, format!("user {id}"))).collect::<HashMap<_, _>>())
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Cache<Id, T, C = MsgPack> {
    pub(crate) conn: Connection,
    pub(crate) spec: Shared<Spec>,
    pub(crate) key_fn: KeyFn<Id>,
    /// Shared with background refreshes.
    pub(crate) codec: Arc<C>,
    /// Starts background refreshes (see [`CacheBuilder::refresh_ahead`]).
    pub(crate) refresh: Option<Starter<Id, T>>,
    /// Hot ids in process memory (see [`CacheBuilder::near_cache`]).
    pub(crate) near: Option<Arc<Near>>,
    pub(crate) _value: PhantomData<fn() -> T>,
}

impl<Id, T, C> Clone for Cache<Id, T, C> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            spec: self.spec.clone(),
            key_fn: self.key_fn.clone(),
            codec: Arc::clone(&self.codec),
            refresh: self.refresh.clone(),
            near: self.near.clone(),
            _value: PhantomData,
        }
    }
}

impl<Id, T, C: std::fmt::Debug> std::fmt::Debug for Cache<Id, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("conn", &self.conn)
            .field("template", &self.spec.template)
            .field("options", &self.spec.options)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<Id, T> Cache<Id, T, MsgPack>
where
    Id: Display,
{
    /// Starts building a cache whose data keys come from a template such as
    /// `"widgets:{{{id}}}"` (see [`KeyTemplate`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ruecache::Error> {
    /// # let conn = ruecache::Connection::open("redis://127.0.0.1:6379").await?;
    /// use std::time::Duration;
    /// let cache: ruecache::Cache<u64, Vec<u8>, ruecache::Raw> =
    ///     ruecache::Cache::builder(conn, "thumbs:<<<id>>>")
    ///         .ttl(Duration::from_secs(60))
    ///         .codec(ruecache::Raw)
    ///         .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(conn: impl Into<Connection>, template: &str) -> CacheBuilder<Id, T, MsgPack> {
        CacheBuilder {
            conn: conn.into(),
            template: Some(KeyTemplate::parse(template)),
            key_fn: KeyFn::Template(render::<Id>),
            options: Options::DEFAULT,
            codec: MsgPack,
            refresh: None,
            _value: PhantomData,
        }
    }
}

impl<Id, T> Cache<Id, T, MsgPack> {
    /// Starts building a cache whose data keys come from a function (the Go `DataKey` option).
    ///
    /// Put the id in a hash tag (`{...}`) if ids of one batch should share cluster slots.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ruecache::Error> {
    /// # let conn = ruecache::Connection::open("redis://127.0.0.1:6379").await?;
    /// let cache: ruecache::Cache<String, u32> =
    ///     ruecache::Cache::builder_with_key_fn(conn, |id: &String| format!("scores:{{{}}}", id.to_lowercase()))
    ///         .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder_with_key_fn(
        conn: impl Into<Connection>,
        key_fn: impl Fn(&Id) -> String + Send + Sync + 'static,
    ) -> CacheBuilder<Id, T, MsgPack> {
        CacheBuilder {
            conn: conn.into(),
            template: None,
            key_fn: KeyFn::Custom(Arc::new(key_fn)),
            options: Options::DEFAULT,
            codec: MsgPack,
            refresh: None,
            _value: PhantomData,
        }
    }
}

impl<Id, T, C> Cache<Id, T, C> {
    /// A snapshot of this cache's counters (shared by its clones). Counters only grow; subtract
    /// two snapshots to measure an interval.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(cache: ruecache::Cache<u64, String>) {
    /// let stats = cache.stats();
    /// let asked = stats.hits + stats.misses;
    /// if asked > 0 {
    ///     println!("hit ratio {:.2}", stats.hits as f64 / asked as f64);
    /// }
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.spec.stats.snapshot()
    }

    /// How this cache's [near cache](CacheBuilder::near_cache) stands, `None` if it has none.
    /// The first call (or the first read) starts its tracking connections.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(cache: ruecache::Cache<u64, String>) {
    /// if let Some(near) = cache.near_status() {
    ///     println!("{} ids in memory", near.entries);
    /// }
    /// # }
    /// ```
    pub fn near_status(&self) -> Option<crate::NearStatus> {
        self.near.as_ref().map(Near::status)
    }

    /// This cache, refreshing ahead of expiry with `start` (the attribute's `refresh_ahead`).
    pub(crate) fn with_refresh(mut self, start: Starter<Id, T>) -> Self {
        self.refresh = Some(start);
        self
    }

    /// The β of the refresh-ahead draw, if this cache can refresh ahead of expiry.
    pub(crate) fn refresh_beta(&self) -> Option<f64> {
        self.refresh.as_ref().and(self.spec.options.refresh_beta)
    }

    /// This cache's settings.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(cache: ruecache::Cache<u64, String>) {
    /// println!("values live {:?}", cache.options().ttl());
    /// # }
    /// ```
    pub fn options(&self) -> &Options {
        &self.spec.options
    }

    /// The connection this cache uses.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(cache: ruecache::Cache<u64, String>) {
    /// // Another cache on the same socket.
    /// let other: ruecache::Cache<u64, u32> =
    ///     ruecache::Cache::builder(cache.connection().clone(), "ages:{id}").build().unwrap();
    /// # }
    /// ```
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The data key of one id, as stored in Redis.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] or [`Error::KeyTooLong`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// // A cache built with the template "names:{{{id}}}".
    /// assert_eq!(cache.data_key(&7)?, "names:{7}");
    /// # Ok(()) }
    /// ```
    pub fn data_key(&self, id: &Id) -> Result<String, Error> {
        match &self.key_fn {
            KeyFn::Template(_) => {
                let mut key = String::new();
                self.write_data_key(id, &mut key)?;
                Ok(key)
            }
            KeyFn::Custom(f) => {
                let key = f(id);
                check_len(key.len())?;
                Ok(key)
            }
        }
    }

    /// Appends the data key of `id` to `out`; the hit path renders it straight into the `GET`.
    pub(crate) fn write_data_key(&self, id: &Id, out: &mut dyn fmt::Write) -> Result<(), Error> {
        match &self.key_fn {
            KeyFn::Template(render) => {
                let template = self
                    .spec
                    .template
                    .as_ref()
                    .expect("template caches have one");
                render(template, id, out)
            }
            KeyFn::Custom(f) => {
                let key = f(id);
                check_len(key.len())?;
                out.write_str(&key).map_err(|_| Error::InvalidId)
            }
        }
    }

    /// The Redis names of one id (for debugging with `redis-cli`): its data key, which holds
    /// its value, its "absent" marker or the lease of the caller filling it, and the channel
    /// a release of its lease publishes on.
    ///
    /// # Errors
    ///
    /// As [`data_key`](Self::data_key).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// // A cache built with the template "names:{{{id}}}".
    /// let keys = cache.keys(&7)?;
    /// assert_eq!(keys.data, "names:{7}");
    /// // `{tag}`, the byte 0xFF, then `n`: shared by the ids of one hash tag.
    /// assert_eq!(keys.channel, b"{7}\xffn");
    /// # Ok(()) }
    /// ```
    pub fn keys(&self, id: &Id) -> Result<IdKeys, Error> {
        let data = self.data_key(id)?;
        Ok(IdKeys {
            channel: crate::keys::channel(&data),
            data,
        })
    }

    /// Loads the cache's Lua scripts on every node, so the first miss does not pay a
    /// `NOSCRIPT` round trip. Optional: a script that is not loaded is loaded when first needed.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] if a node cannot be reached or refuses `SCRIPT LOAD` (a Redis user
    /// without `+script|load`, which the cache needs anyway).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// // At startup, before serving traffic.
    /// cache.preload_scripts().await?;
    /// # Ok(()) }
    /// ```
    pub async fn preload_scripts(&self) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        for script in crate::scripts::all() {
            script.load(&mut conn).await?;
        }
        Ok(())
    }
}

impl<Id, T, C> Cache<Id, T, C>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
{
    /// Returns the cached values of `ids`, calling `fetch` for the ids Redis does not have.
    ///
    /// `fetch` receives the ids this caller locked and returns the values the source has; ids it
    /// leaves out are cached as absent and left out of the result. It is called at most once per
    /// round, and again only for ids whose previous filler gave up. Duplicate ids are read once;
    /// an empty `ids` returns an empty result without touching Redis. Ids another caller is
    /// filling are waited for, up to the [timeout](CacheBuilder::timeout).
    ///
    /// The result can be any collection of `(Id, T)` pairs (`HashMap`, `BTreeMap`, `Vec`).
    ///
    /// # Errors
    ///
    /// The fetch's own error, unchanged (the locks it held are released first); otherwise a
    /// [`ruecache::Error`](Error) converted with `From`: Redis failures, [`Error::Timeout`],
    /// [`Error::InvalidId`] or [`Error::KeyTooLong`] for an id that makes no key, and
    /// [`Error::Encode`] for a fetched value the codec cannot encode. The cache is left
    /// consistent either way.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::collections::HashMap;
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// let names: HashMap<u64, String> = cache
    ///     .get_and_fill([7, 8, 8], |ids| async move {
    ///         Ok::<_, ruecache::Error>(ids.into_iter().map(|id| (id, id.to_string())).collect::<Vec<_>>())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_and_fill<I, M, F, Fut, R, E>(&self, ids: I, fetch: F) -> Result<M, E>
    where
        I: IntoIterator<Item = Id>,
        M: FromIterator<(Id, T)>,
        F: FnMut(Vec<Id>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: IntoIterator<Item = (Id, T)>,
        E: From<Error>,
    {
        let mut ids = ids.into_iter();
        let Some(first) = ids.next() else {
            return Ok(M::from_iter(None));
        };
        let Some(second) = ids.next() else {
            let found = crate::fallback::get_and_fill_one(self, first, fetch).await?;
            return Ok(M::from_iter(found));
        };
        let mut all = Vec::with_capacity(ids.size_hint().0 + 2);
        all.extend([first, second]);
        all.extend(ids);
        let mut out = Vec::new();
        crate::fallback::get_and_fill(self, all, fetch, &mut out).await?;
        Ok(out.into_iter().collect())
    }

    /// Returns the cached value of one id, calling `fetch` with it if Redis does not have it
    /// (the Go `GetAndFillOne`). `Ok(None)` means the source does not have the id.
    ///
    /// Shares keys with [`get_and_fill`](Self::get_and_fill) of the same cache.
    ///
    /// # Errors
    ///
    /// As [`get_and_fill`](Self::get_and_fill).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// let name = cache
    ///     .get_and_fill_one(7, |id| async move { Ok::<_, ruecache::Error>(Some(format!("user {id}"))) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_and_fill_one<F, Fut, E>(&self, id: Id, mut fetch: F) -> Result<Option<T>, E>
    where
        F: FnMut(Id) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: From<Error>,
    {
        let fetch = |ids: Vec<Id>| {
            let id = ids
                .into_iter()
                .next()
                .expect("a single-id fill fetches one id");
            let fut = fetch(id.clone());
            async move { Ok::<_, E>(fut.await?.map(|value| (id, value))) }
        };
        let found = crate::fallback::get_and_fill_one(self, id, fetch).await?;
        Ok(found.map(|(_, value)| value))
    }

    /// Like [`get_and_fill`](Self::get_and_fill) for a source that returns self-identifying items
    /// (the Go `WidgetSliceCoder`): `fetch` returns items, [`Keyed::cache_id`] says whose they are.
    ///
    /// # Errors
    ///
    /// As [`get_and_fill`](Self::get_and_fill).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Widget { id: u64, name: String }
    ///
    /// impl ruecache::Keyed<u64> for Widget {
    ///     fn cache_id(&self) -> u64 { self.id }
    /// }
    ///
    /// # async fn run(cache: ruecache::Cache<u64, Widget>) -> Result<(), ruecache::Error> {
    /// let widgets: Vec<Widget> = cache
    ///     .get_and_fill_items(vec![1, 2], |ids| async move {
    ///         Ok::<_, ruecache::Error>(ids.into_iter().map(|id| Widget { id, name: "w".into() }).collect())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_and_fill_items<I, F, Fut, E>(&self, ids: I, mut fetch: F) -> Result<Vec<T>, E>
    where
        I: IntoIterator<Item = Id>,
        T: Keyed<Id>,
        F: FnMut(Vec<Id>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, E>>,
        E: From<Error>,
    {
        let mut out = Vec::new();
        let fetch = |ids: Vec<Id>| {
            let fut = fetch(ids);
            async move {
                let items = fut.await?;
                Ok::<_, E>(items.into_iter().map(|item| (item.cache_id(), item)))
            }
        };
        crate::fallback::get_and_fill(self, ids.into_iter().collect(), fetch, &mut out).await?;
        Ok(out.into_iter().map(|(_, item)| item).collect())
    }

    /// Deletes the data keys of `ids`: their cached values, and the leases of fills running now,
    /// so that none of those fills can write what it fetched. Call it after every write to the
    /// source.
    ///
    /// Once polled, the invalidation runs to its end in a task of its own: if the caller stops
    /// waiting (a cancelled request), it still happens.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] if Redis cannot be reached: the cache may then still hold the old values
    /// until their TTL, so retry or surface the error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// // db.update_name(7, "new").await?;
    /// cache.invalidate([7]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate<I: IntoIterator<Item = Id>>(&self, ids: I) -> Result<(), Error> {
        crate::invalidate::invalidate(self, ids).await
    }

    /// Reads one id without filling it: its value, "absent" (the source did not have it), or
    /// not cached.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] if Redis cannot be reached; as
    /// [`data_key`](Self::data_key) for an id whose key cannot be built.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// use ruecache::Lookup;
    ///
    /// match cache.get(7).await? {
    ///     Lookup::Found(name) => println!("cached: {name}"),
    ///     Lookup::Stale(name) => println!("cached past its TTL: {name}"),
    ///     Lookup::Absent => println!("cached as absent from the source"),
    ///     Lookup::NotCached => println!("not cached"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, id: Id) -> Result<Lookup<T>, Error>
    where
        Id: Eq + Hash,
        C: Codec<T>,
    {
        let mut found = crate::direct::lookup(self, vec![id]).await?;
        Ok(found.pop().map_or(Lookup::NotCached, |(_, lookup)| lookup))
    }

    /// Reads many ids without filling any, in one round trip (per slot group on a cluster): a
    /// [`Lookup`] for each distinct id.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// use std::collections::HashMap;
    ///
    /// let cached: HashMap<u64, ruecache::Lookup<String>> = cache.get_many([1, 2, 3]).await?;
    /// let not_cached = cached.values().filter(|l| !l.is_cached()).count();
    /// # Ok(()) }
    /// ```
    pub async fn get_many<I, M>(&self, ids: I) -> Result<M, Error>
    where
        I: IntoIterator<Item = Id>,
        M: FromIterator<(Id, Lookup<T>)>,
        Id: Eq + Hash,
        C: Codec<T>,
    {
        let found = crate::direct::lookup(self, ids.into_iter().collect()).await?;
        Ok(found.into_iter().collect())
    }

    /// Writes a value through, after writing it to the source: the next read is a hit, and a
    /// fill that read the source before your write (and is still running) can never replace it
    /// (its commit finds your value where its lease was, and writes nothing).
    ///
    /// Use it instead of [`invalidate`](Self::invalidate) when you have the new value at hand.
    /// Once polled, the write runs to its end in a task of its own.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the codec cannot encode the value (nothing is written);
    /// [`Error::Redis`] or [`Error::Timeout`] if Redis cannot be reached: the cache may then
    /// still hold the old value until its TTL, so retry, invalidate, or surface the error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// // db.update_name(7, "gear").await?;
    /// cache.set(7, "gear".to_owned()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, id: Id, value: T) -> Result<(), Error>
    where
        C: Codec<T>,
    {
        crate::direct::set_many(self, vec![(id, value)]).await
    }

    /// [`set`](Self::set) for many ids, in one script call per slot group (the last value of an
    /// id given twice is written).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); an encode error writes nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
    /// cache.set_many([(1, "gear".to_owned()), (2, "cog".to_owned())]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_many<I>(&self, entries: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (Id, T)>,
        C: Codec<T>,
    {
        crate::direct::set_many(self, entries.into_iter().collect()).await
    }
}

/// Gives `#[cached_batch]` methods their Redis connection: implement it once for your service.
///
/// # Examples
///
/// ```
/// struct WidgetService {
///     redis: ruecache::Connection,
/// }
///
/// impl ruecache::HasConnection for WidgetService {
///     fn cache_connection(&self) -> &ruecache::Connection {
///         &self.redis
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say which Redis connection its cached methods use",
    label = "`#[cached_batch]` needs `{Self}: ruecache::HasConnection`",
    note = "add `impl ruecache::HasConnection for {Self} {{ fn cache_connection(&self) -> &ruecache::Connection {{ &self.redis }} }}` (with your connection field)"
)]
pub trait HasConnection {
    /// The connection the cache uses.
    fn cache_connection(&self) -> &Connection;
}

/// The Redis names of one id, from [`Cache::keys`]: both in one cluster slot.
///
/// # Examples
///
/// ```no_run
/// # fn run(cache: ruecache::Cache<u64, String>) -> Result<(), ruecache::Error> {
/// let keys: ruecache::IdKeys = cache.keys(&7)?;
/// // For `redis-cli`: the channel is binary, print it escaped.
/// println!("data {}", keys.data);
/// println!("channel {}", keys.channel.escape_ascii());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdKeys {
    /// The data key, rendered from the template: the id's only key.
    pub data: String,
    /// The channel on which the release of a lease waited for publishes a wake-up (binary: it
    /// contains a byte no data key can contain).
    pub channel: Vec<u8>,
}

/// The future of a batch fetch made by [`fetch_one`]: name it to keep such a fetch in a struct
/// or return it from a function.
///
/// # Examples
///
/// ```
/// use ruecache::BoxFetch;
///
/// fn thumbnails() -> impl FnMut(Vec<String>) -> BoxFetch<String, String, ruecache::Error> {
///     ruecache::fetch_one(|name: String| async move { Ok(Some(format!("{name}?w=128"))) })
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut fetch = thumbnails();
/// let fetched = fetch(vec!["a.png".to_owned()]).await?;
/// assert_eq!(fetched, vec![("a.png".to_owned(), "a.png?w=128".to_owned())]);
/// # Ok::<_, ruecache::Error>(()) }).unwrap();
/// ```
pub type BoxFetch<Id, T, E> =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<(Id, T)>, E>> + Send>>;

/// Turns a single-item fetch into a batch fetch that calls it for each id concurrently (the Go
/// `FetchOne`). `Ok(None)` means the source does not have the id.
///
/// # Examples
///
/// ```no_run
/// # async fn run(cache: ruecache::Cache<String, String>) -> Result<(), ruecache::Error> {
/// let urls: std::collections::HashMap<String, String> = cache
///     .get_and_fill(
///         vec!["a.png".to_owned(), "b.png".to_owned()],
///         ruecache::fetch_one(|name: String| async move {
///             Ok::<_, ruecache::Error>(Some(format!("https://cdn.example/{name}")))
///         }),
///     )
///     .await?;
/// # Ok(()) }
/// ```
pub fn fetch_one<Id, T, E, F, Fut>(fetch: F) -> impl FnMut(Vec<Id>) -> BoxFetch<Id, T, E>
where
    Id: Clone + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    F: Fn(Id) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
{
    move |ids: Vec<Id>| {
        let fetch = fetch.clone();
        Box::pin(async move {
            let results = futures_util::future::try_join_all(ids.into_iter().map(|id| {
                let fut = fetch(id.clone());
                async move { Ok::<_, E>(fut.await?.map(|v| (id, v))) }
            }))
            .await?;
            Ok(results.into_iter().flatten().collect())
        })
    }
}

/// An item that knows its own id, for [`Cache::get_and_fill_items`].
///
/// # Examples
///
/// ```
/// struct Widget {
///     id: u64,
///     name: String,
/// }
///
/// impl ruecache::Keyed<u64> for Widget {
///     fn cache_id(&self) -> u64 {
///         self.id
///     }
/// }
///
/// let widget = Widget { id: 7, name: "gear".into() };
/// assert_eq!(ruecache::Keyed::cache_id(&widget), 7);
/// ```
pub trait Keyed<Id> {
    /// The id this item is cached under.
    fn cache_id(&self) -> Id;
}

/// Configures a [`Cache`]; from [`Cache::builder`] or [`Cache::builder_with_key_fn`].
///
/// Every setting has a default (see [`Options`]); [`build`](Self::build) checks them all
/// together and names the first one out of range.
///
/// # Examples
///
/// ```no_run
/// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
/// use std::time::Duration;
///
/// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{{{id}}}")
///     .ttl(Duration::from_secs(600))
///     .lock_ttl(Duration::from_secs(10))
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct CacheBuilder<Id, T, C = MsgPack> {
    conn: Connection,
    template: Option<Result<KeyTemplate, Error>>,
    key_fn: KeyFn<Id>,
    options: Options,
    codec: C,
    refresh: Option<Starter<Id, T>>,
    _value: PhantomData<fn() -> T>,
}

impl<Id, T, C: std::fmt::Debug> std::fmt::Debug for CacheBuilder<Id, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("conn", &self.conn)
            .field("template", &self.template)
            .field("options", &self.options)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<Id, T, C> CacheBuilder<Id, T, C> {
    /// How long values stay cached (default 5 min), before jitter (see [`jitter`](Self::jitter)).
    ///
    /// [`build`](Self::build) accepts 1 ms up to [`Options::MAX_TTL`] (100 years); for values
    /// that should never expire use [`no_expiry`](Self::no_expiry).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .ttl(Duration::from_secs(60))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options = self.options.set_ttl(Some(ttl));
        self
    }

    /// Names the cache (default: none): its `tracing` spans carry it in their `cache` field, and
    /// its metrics (feature `metrics`: `ruecache_<counter>_total`, e.g. `ruecache_hits_total`)
    /// in their `cache` label, so that the caches of one service can be told apart.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .name("users")
    ///     .build()?;
    /// assert_eq!(cache.options().name(), Some("users"));
    /// # Ok(()) }
    /// ```
    pub fn name(mut self, name: &'static str) -> Self {
        self.options = self.options.set_name(name);
        self
    }

    /// How long an id the source does not have stays cached as absent (default: the data
    /// [TTL](Self::ttl)), with the same jitter. Shorter than the data TTL, it lets ids that are
    /// created in the source show up sooner without an invalidation.
    ///
    /// [`build`](Self::build) accepts 1 ms up to [`Options::MAX_TTL`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .ttl(Duration::from_secs(3600))
    ///     .absent_ttl(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn absent_ttl(mut self, ttl: Duration) -> Self {
        self.options = self.options.set_absent_ttl(ttl);
        self
    }

    /// Values never expire (they stay until invalidated or evicted); the Go `NoTTL`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "countries:{id}")
    ///     .no_expiry()
    ///     .build()?;
    /// assert_eq!(cache.options().ttl(), None);
    /// # Ok(()) }
    /// ```
    pub fn no_expiry(mut self) -> Self {
        self.options = self.options.set_ttl(None);
        self
    }

    /// Spreads each id's TTL deterministically by up to ± this fraction (default 0.2), so ids
    /// filled together do not all expire together. `0.0` turns it off.
    ///
    /// [`build`](Self::build) accepts `0.0..=1.0`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// // TTLs between 45 and 75 s.
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .ttl(std::time::Duration::from_secs(60))
    ///     .jitter(0.25)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.options = self.options.set_jitter(fraction);
        self
    }

    /// How long a filler's lease (its lock on an id) lasts (default 5 s): the longest a crashed
    /// filler can block others. Make it longer than your slowest fetch: once a fill's lease is
    /// past its deadline, a caller that asks for the id takes the lease over and fetches it
    /// again, and the first fill's commit is then refused
    /// ([`Stats::lost_locks`](crate::Stats::lost_locks)). If no one took the lease over, the
    /// first fill still commits (unless the id was invalidated meanwhile), up to ten minutes
    /// past the deadline.
    ///
    /// [`build`](Self::build) accepts 1 ms up to [`Options::MAX_TTL`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// // A report that takes up to a minute to compute.
    /// let cache = ruecache::Cache::<u64, Vec<u8>>::builder(conn, "reports:{id}")
    ///     .lock_ttl(Duration::from_secs(90))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.options = self.options.set_lock_ttl(ttl);
        self
    }

    /// How long a call may wait on Redis and on other fillers (default 30 s). It does not bound
    /// your fetch.
    ///
    /// From the start of a call, every wait on Redis and on other fillers (callers, in this
    /// process or another, filling ids this call needs) must end within this long, or the call
    /// fails with [`Error::Timeout`]. Your fetch is not under it: it runs as long as it takes,
    /// though its time counts against the waits after it (for ids others still hold). The commit
    /// that writes what was fetched gets a timeout of its own, this long from the end of the
    /// fetch; so does the release of the locks after a fetch error, which happens before the
    /// error is returned. To bound the fetch, wrap it in [`tokio::time::timeout`].
    ///
    /// [`build`](Self::build) accepts more than zero up to [`Options::MAX_TIMEOUT`] (365 days).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn load_names(ids: Vec<u64>) -> Result<Vec<(u64, String)>, ruecache::Error> { Ok(Vec::new()) }
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "names:{id}")
    ///     .timeout(Duration::from_secs(2))
    ///     .build()?;
    /// let names: HashMap<u64, String> = cache
    ///     .get_and_fill(vec![1, 2], |ids| async move {
    ///         // The cache's timeout does not cover the fetch: bound it here.
    ///         tokio::time::timeout(Duration::from_secs(1), load_names(ids))
    ///             .await
    ///             .map_err(ruecache::Error::source_error)?
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.set_timeout(timeout);
        self
    }

    /// How waiting callers poll a lock held by another caller: first after `min`, doubling up to
    /// `max` (default 25 ms to 1 s). Callers woken by the lock's release do not wait that long.
    ///
    /// [`build`](Self::build) accepts `0 < min <= max`, with `max` up to
    /// [`Options::MAX_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .backoff(Duration::from_millis(10), Duration::from_millis(200))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.options = self.options.set_backoff(min, max);
        self
    }

    /// When a fill fails, its locks are released with a round trip unless less than this much of
    /// the lock TTL is left, in which case they are left to expire (default 10 ms).
    ///
    /// [`build`](Self::build) accepts anything shorter than the [lock TTL](Self::lock_ttl).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .unlock_threshold(Duration::from_millis(50))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn unlock_threshold(mut self, threshold: Duration) -> Self {
        self.options = self.options.set_unlock_threshold(threshold);
        self
    }

    /// Serves calls straight from the source while Redis is unreachable, instead of failing
    /// (default off).
    ///
    /// When a call fails because Redis cannot be reached (connection refused or dropped, a
    /// response timeout, the cluster down, or the call's own [timeout](Self::timeout)), the
    /// ids it was asked for are fetched from the source and returned, and nothing is cached.
    /// Concurrent callers on one connection still share fetches of the same id. Each id served
    /// so is counted in [`Stats::served_from_source`](crate::Stats::served_from_source); the
    /// start and end of an outage are logged once each (`warn` and `info`). Errors that are not
    /// about reaching Redis (a permission or type error, an invalid id) are returned as usual.
    ///
    /// The call that finds Redis unreachable waits for it to fail, up to the connection's
    /// response timeout or the cache's timeout (lower those to fail over faster). From then
    /// until every node that call needed answers a background probe again (four times a second),
    /// calls on that connection and its clones go straight to the source.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .fallback_to_source(true)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn fallback_to_source(mut self, enabled: bool) -> Self {
        self.options = self.options.set_fallback_to_source(enabled);
        self
    }

    /// Refreshes values ahead of their expiry, in the background, with `fetch`: a read of a
    /// value close to its expiry returns it at once and refreshes it, so that callers do not
    /// wait for a fetch when a hot id expires.
    ///
    /// Which read refreshes is drawn by XFetch (Vattani, Chierichetti and Lowenstein, VLDB 2015):
    /// refresh when `now - δ·β·ln(u) ≥ expiry`, with `u` uniform in (0, 1], δ how long the fetch
    /// of the value took (recorded with it), and β 1.0 by default (see
    /// [`refresh_beta`](Self::refresh_beta)). The earlier the slower the fetch, and almost
    /// surely before the expiry for an id read often. One caller in the whole fleet refreshes an
    /// id at a time: it takes the id's refresh lease, and its commit is refused if the id is
    /// invalidated meanwhile, as a fill's is. A refresh that fails is retried after
    /// [`stale_retry`](Self::stale_retry).
    ///
    /// `fetch` is called from a task of its own, so it owns what it uses (clone a pool or an
    /// `Arc` into it); it is the same kind of fetch as the one given to
    /// [`Cache::get_and_fill`], and its errors are logged. Values then record their expiry and
    /// fetch time: 12 bytes more per value. Values written without them (by a cache without
    /// refresh-ahead or [`stale_for`](Self::stale_for), such as a process not yet upgraded to
    /// this setting) are not drawn: they expire as before, and their refill records them. Needs
    /// a [`ttl`](Self::ttl).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::sync::Arc;
    ///
    /// # struct Db;
    /// # impl Db { async fn names(&self, ids: &[u64]) -> Result<Vec<(u64, String)>, std::io::Error> { Ok(Vec::new()) } }
    /// let db = Arc::new(Db);
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .refresh_ahead(move |ids: Vec<u64>| {
    ///         let db = Arc::clone(&db);
    ///         async move { db.names(&ids).await }
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn refresh_ahead<F, Fut, R, E>(mut self, fetch: F) -> Self
    where
        Id: Eq + Hash + Clone + Send + Sync + 'static,
        T: Send + 'static,
        F: Fn(Vec<Id>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: IntoIterator<Item = (Id, T)>,
        E: Display,
    {
        if self.options.refresh_beta.is_none() {
            self.options = self.options.set_refresh_beta(1.0);
        }
        self.refresh = Some(starter(fetch));
        self
    }

    /// The β of the [refresh-ahead](Self::refresh_ahead) draw (default 1.0, the optimum of
    /// XFetch): above 1.0 refreshes earlier (more refreshes, fewer expiries), below later.
    /// [`build`](Self::build) accepts above 0.0 up to 100.0.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .refresh_ahead(|ids: Vec<u64>| async move {
    ///         Ok::<_, ruecache::Error>(ids.into_iter().map(|id| (id, id.to_string())).collect::<Vec<_>>())
    ///     })
    ///     .refresh_beta(2.0)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn refresh_beta(mut self, beta: f64) -> Self {
        self.options = self.options.set_refresh_beta(beta);
        self
    }

    /// Keeps values in Redis for `stale_for` past their TTL, to be served when their refill
    /// fails (default: not kept).
    ///
    /// A value past its TTL is refilled by the next call that reads it, like a miss. If the
    /// fetch fails or passes a [timeout](Self::fetch_soft_timeout), or Redis refuses the refill,
    /// the call gets the stale value instead of the error (counted in
    /// [`Stats::stale_served`](crate::Stats::stale_served), logged as a warning, and told apart by
    /// [`Cache::get`]'s [`Lookup::Stale`]). Other callers meanwhile get the stale value at once,
    /// and nobody calls the source for the id again for [`stale_retry`](Self::stale_retry).
    /// An [`invalidate`](Cache::invalidate) deletes the value for good: a stale value never
    /// comes back after it.
    ///
    /// The keys' TTL in Redis is the data TTL *plus* `stale_for`: a 5 min TTL with
    /// `stale_for` of 1 h shows a TTL of 65 min. Values record their expiry: 12 bytes more per
    /// value. Needs a [`ttl`](Self::ttl); [`build`](Self::build) accepts 1 ms up to
    /// [`Options::MAX_TTL`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .ttl(Duration::from_secs(60))
    ///     .stale_for(Duration::from_secs(3600))
    ///     .fetch_soft_timeout(Duration::from_millis(200))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.options = self.options.set_stale_for(stale_for);
        self
    }

    /// How long a failed refill of a stale value, or a failed refresh ahead of expiry, holds
    /// off the next attempt for its ids (default 5 s): the stale value is served meanwhile,
    /// without calling the source. [`build`](Self::build) accepts 1 ms up to
    /// [`Options::MAX_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .stale_for(Duration::from_secs(3600))
    ///     .stale_retry(Duration::from_secs(1))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn stale_retry(mut self, retry: Duration) -> Self {
        self.options = self.options.set_stale_retry(retry);
        self
    }

    /// The fetch's hard timeout (default none): a fetch that has not answered after it is
    /// dropped, its leases released, and the call fails with [`Error::FetchTimeout`], unless it
    /// refills a [stale value](Self::stale_for), which is then served. [`build`](Self::build)
    /// accepts 1 ms up to [`Options::MAX_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .fetch_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.set_fetch_timeout(timeout);
        self
    }

    /// The fetch's soft timeout (default none), for the refill of a [stale value](Self::stale_for):
    /// past it the stale value is served and the call's fetch dropped (it borrows the call). A
    /// cache that [refreshes ahead](Self::refresh_ahead) has a fetch of its own: the refill goes
    /// on with it in the background, under the same refresh lease, and commits; otherwise the
    /// next refill is held off for [`stale_retry`](Self::stale_retry). A fill without a stale
    /// value waits for its fetch up to the [hard timeout](Self::fetch_timeout). Must be shorter
    /// than the hard timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .stale_for(Duration::from_secs(3600))
    ///     .fetch_soft_timeout(Duration::from_millis(200))
    ///     .fetch_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn fetch_soft_timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.set_fetch_soft_timeout(timeout);
        self
    }

    /// Keeps hot ids in process memory, in front of Redis (default off): a hit on them costs no
    /// round trip. Entries are dropped as soon as Redis reports their keys changed, by any
    /// process or by hand, through server-assisted client-side caching (`CLIENT TRACKING` in
    /// broadcast mode, one connection per Redis node and near cache): see [`NearCache`] for its
    /// settings, and the crate docs ("The near cache") for why it is safe.
    ///
    /// - Values are kept encoded (decoded on each hit, so `T` needs no `Clone`); ids cached as
    ///   absent are kept too. Bounded by entries, and by bytes with [`NearCache::max_bytes`];
    ///   past the bound, the entries not used lately go first.
    /// - Only fresh values are kept: never a stale one, nor one under refresh, and a value that
    ///   records its expiry no longer than that (with [`refresh_ahead`](Self::refresh_ahead),
    ///   only until reads of Redis may draw its refresh).
    /// - After [`Cache::invalidate`] or [`Cache::set`] returns, no call in this process gets
    ///   the old value. Other processes drop theirs when Redis's report reaches them (on one
    ///   host, p99 about 0.2 ms idle and 3 ms under load: see the crate docs).
    /// - While a tracking connection is down, nothing is served from memory, and everything
    ///   held is dropped (reports may have been missed).
    /// - Ids the near cache does not answer go through the usual protocol. Counted in
    ///   [`Stats::near_hits`](crate::Stats::near_hits), `near_misses` and
    ///   `near_invalidations`. [`Cache::get`] and [`Cache::get_many`] read Redis.
    ///
    /// Needs a connection that knows its servers ([`Connection::open`],
    /// [`Connection::open_cluster`], or [`Connection::wake_ups`]); the Redis user needs
    /// `CLIENT TRACKING` (`+client|tracking`). [`build`](Self::build) accepts 1 entry or more,
    /// and a `max_age` of 1 ms up to [`Options::MAX_TTL`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .near_cache(ruecache::NearCache::new(10_000).max_age(Duration::from_secs(10)))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn near_cache(mut self, near: NearCache) -> Self {
        self.options = self.options.set_near(near);
        self
    }

    /// Uses another codec for values (default [`MsgPack`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
    /// let cache = ruecache::Cache::<String, Vec<u8>>::builder(conn, "thumbs:{id}")
    ///     .codec(ruecache::Raw)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn codec<C2: Codec<T>>(self, codec: C2) -> CacheBuilder<Id, T, C2> {
        CacheBuilder {
            conn: self.conn,
            template: self.template,
            key_fn: self.key_fn,
            options: self.options,
            codec,
            refresh: self.refresh,
            _value: PhantomData,
        }
    }

    /// Checks the configuration and builds the cache.
    ///
    /// # Errors
    ///
    /// [`Error::Template`] for a bad key template (see [`KeyTemplate::parse`]). [`Error::Config`],
    /// whose message names the setting, what it accepts and how to fix it, for:
    ///
    /// - a [`ttl`](Self::ttl) under 1 ms or over [`Options::MAX_TTL`];
    /// - a [`jitter`](Self::jitter) outside `0.0..=1.0`;
    /// - an [`absent_ttl`](Self::absent_ttl) under 1 ms or over [`Options::MAX_TTL`];
    /// - a [`lock_ttl`](Self::lock_ttl) under 1 ms or over [`Options::MAX_TTL`];
    /// - a [`timeout`](Self::timeout) of zero or over [`Options::MAX_TIMEOUT`];
    /// - a [`backoff`](Self::backoff) whose minimum is zero or above its maximum, or whose
    ///   maximum is over [`Options::MAX_TIMEOUT`];
    /// - an [`unlock_threshold`](Self::unlock_threshold) not shorter than the lock TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) {
    /// let err = ruecache::Cache::<u64, String>::builder(conn, "users:{name}")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, ruecache::Error::Template { .. }));
    /// # }
    /// ```
    pub fn build(self) -> Result<Cache<Id, T, C>, Error> {
        self.options.validate()?;
        let template = self.template.transpose()?;
        let spec = Shared::Owned(Arc::new(Spec {
            template,
            options: self.options,
            stats: Counters::new(self.options.name),
        }));
        let near = match self.options.near {
            None => None,
            Some(settings) => {
                let Some(servers) = self.conn.servers() else {
                    return Err(self.options.config_error(
                        "`near_cache` needs a connection that knows its servers, to open its \
                         tracking connections: open it with `Connection::open` or \
                         `Connection::open_cluster`, or give it a client with \
                         `Connection::wake_ups`",
                    ));
                };
                let prefix = match (&spec.template, settings.prefix) {
                    (_, Some(prefix)) => prefix,
                    (Some(template), None) => template.prefix(),
                    (None, None) => "",
                };
                Some(Near::new(
                    settings,
                    prefix,
                    Arc::clone(servers),
                    spec.clone(),
                ))
            }
        };
        Ok(Cache {
            conn: self.conn,
            spec,
            key_fn: self.key_fn,
            codec: Arc::new(self.codec),
            refresh: self.refresh,
            near,
            _value: PhantomData,
        })
    }
}

/// Builds the cache for a `static` spec (used by the attribute macro).
pub(crate) fn from_static<Id: Display, T, C>(
    conn: Connection,
    spec: &'static Spec,
    codec: C,
) -> Cache<Id, T, C> {
    let near = spec.options.near.and_then(|settings| {
        conn.near_for(spec as *const Spec as usize, || {
            let Some(servers) = conn.servers() else {
                tracing::warn!(
                    cache = spec.options.name,
                    "`near` needs a connection opened with `Connection::open` or \
                     `Connection::open_cluster` (or given a client with `Connection::wake_ups`); \
                     this method's calls read Redis only"
                );
                return None;
            };
            let prefix = spec.template.as_ref().map_or("", KeyTemplate::prefix);
            Some(Near::new(
                settings,
                prefix,
                Arc::clone(servers),
                Shared::Static(spec),
            ))
        })
    });
    Cache {
        conn,
        spec: Shared::Static(spec),
        key_fn: KeyFn::Template(render::<Id>),
        codec: Arc::new(codec),
        refresh: None,
        near,
        _value: PhantomData,
    }
}
