//! What `#[cached_batch]` expands into. Not a public API: it may change in any release.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

pub use crate::{
    Cache, Codec, Connection, Error, HasConnection, KeyTemplate, MsgPack, Options, Raw, Spec,
};
pub use core::future::Future;

/// Options from the macro's validated arguments; `None` keeps the default.
/// `ttl_ms == Some(0)` means no expiry.
pub const fn options(
    ttl_ms: Option<u64>,
    jitter: Option<f64>,
    lock_ttl_ms: Option<u64>,
    timeout_ms: Option<u64>,
) -> Options {
    let mut options = Options::DEFAULT;
    if let Some(ms) = ttl_ms {
        options.ttl = if ms == 0 {
            None
        } else {
            Some(Duration::from_millis(ms))
        };
    }
    if let Some(jitter) = jitter {
        options.jitter = jitter;
    }
    if let Some(ms) = lock_ttl_ms {
        options.lock_ttl = Duration::from_millis(ms);
        // A version must outlive the lock, or every slow fill would be refused as stale.
        if options.version_ttl.as_millis() < ms as u128 {
            options.version_ttl = Duration::from_millis(ms);
        }
    }
    if let Some(ms) = timeout_ms {
        options.timeout = Duration::from_millis(ms);
    }
    options
}

/// The cache for one annotated method: the service's connection and the method's `static` spec.
pub fn cache<Id: Display, T, C>(
    conn: &Connection,
    spec: &'static Spec,
    codec: C,
) -> Cache<Id, T, C> {
    crate::cache::from_static(conn.clone(), spec, codec)
}

/// The declared return type of a cached method: a `Result` (or an alias of one), by trait
/// rather than by name.
#[diagnostic::on_unimplemented(
    message = "a `#[cached_batch]` method must return a `Result`, not `{Self}`",
    label = "expected `Result<HashMap<Id, T>, E>` or `Result<Option<T>, E>`",
    note = "a batch method returns `Result<HashMap<Id, T>, E>` (or a `BTreeMap` or `Vec<(Id, T)>`), a single-item method `Result<Option<T>, E>`"
)]
pub trait ReturnType: Sized {
    /// What the method returns on success.
    type Ok;
    /// The method's error type.
    type Error;
    /// The result as `Result<Ok, Error>`.
    fn into_result(self) -> Result<Self::Ok, Self::Error>;
    /// The declared type from a `Result<Ok, Error>`.
    fn from_result(result: Result<Self::Ok, Self::Error>) -> Self;
}

impl<T, E> ReturnType for Result<T, E> {
    type Ok = T;
    type Error = E;
    fn into_result(self) -> Self {
        self
    }
    fn from_result(result: Self) -> Self {
        result
    }
}

/// The ids parameter of a batch method: `Vec<Id>` (or an alias of it).
#[diagnostic::on_unimplemented(
    message = "the ids parameter of a batch `#[cached_batch]` method must be a `Vec` of ids, not `{Self}`",
    label = "expected `Vec<Id>`",
    note = "a batch method takes `ids: Vec<Id>` and returns `Result<HashMap<Id, T>, E>`; a single-item method takes `id: Id` and returns `Result<Option<T>, E>`"
)]
pub trait IdList: Sized {
    /// The id type.
    type Id;
    /// The ids to look up.
    fn into_ids(self) -> Vec<Self::Id>;
    /// The missing ids, handed to the method's body.
    fn from_ids(ids: Vec<Self::Id>) -> Self;
}

impl<Id> IdList for Vec<Id> {
    type Id = Id;
    fn into_ids(self) -> Self {
        self
    }
    fn from_ids(ids: Self) -> Self {
        ids
    }
}

/// What a cached method returns on success, given its parameter type `P`, decides how it is
/// cached: a map of ids to values (`HashMap`, `BTreeMap`, `Vec<(Id, T)>`) with `P = Vec<Id>` is
/// the batch form, `Option<T>` with `P = Id` the single-item form. The implementations have
/// distinct `Self` types, so the compiler picks the form, through aliases too.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is neither a map of ids to values nor an `Option` of one value",
    label = "the success type of a `#[cached_batch]` method",
    note = "a batch method returns `Result<HashMap<Id, T>, E>` (or a `BTreeMap` or `Vec<(Id, T)>`) and takes `ids: Vec<Id>`; a single-item method returns `Result<Option<T>, E>` and takes `id: Id`"
)]
pub trait Form<P>: Sized {
    /// The id type.
    type Id;
    /// The cached value type.
    type Value;

    /// Runs the cache for one call: `fetch` is the method's body.
    fn fill<C, E, F, Fut>(
        cache: Cache<Self::Id, Self::Value, C>,
        arg: P,
        fetch: F,
        from_error: fn(Error) -> E,
    ) -> impl Future<Output = Result<Self, E>>
    where
        Self::Id: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<Self::Value>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<Self, E>>;
}

impl<P, K, V, S> Form<P> for HashMap<K, V, S>
where
    P: IdList<Id = K>,
    K: Eq + Hash,
    S: BuildHasher + Default,
{
    type Id = K;
    type Value = V;

    fn fill<C, E, F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
    ) -> impl Future<Output = Result<Self, E>>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<V>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<Self, E>>,
    {
        batch(cache, ids, fetch, from_error)
    }
}

impl<P, K, V> Form<P> for BTreeMap<K, V>
where
    P: IdList<Id = K>,
    K: Ord,
{
    type Id = K;
    type Value = V;

    fn fill<C, E, F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
    ) -> impl Future<Output = Result<Self, E>>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<V>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<Self, E>>,
    {
        batch(cache, ids, fetch, from_error)
    }
}

impl<P, K, V> Form<P> for Vec<(K, V)>
where
    P: IdList<Id = K>,
{
    type Id = K;
    type Value = V;

    fn fill<C, E, F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
    ) -> impl Future<Output = Result<Self, E>>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<V>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<Self, E>>,
    {
        batch(cache, ids, fetch, from_error)
    }
}

impl<Id, T> Form<Id> for Option<T> {
    type Id = Id;
    type Value = T;

    async fn fill<C, E, F, Fut>(
        cache: Cache<Id, T, C>,
        id: Id,
        mut fetch: F,
        from_error: fn(Error) -> E,
    ) -> Result<Self, E>
    where
        Id: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<T>,
        F: FnMut(Id) -> Fut,
        Fut: Future<Output = Result<Self, E>>,
    {
        cache
            .get_and_fill_one(id, |id| {
                let fetched = fetch(id);
                async move { fetched.await.map_err(Failed::Fetch) }
            })
            .await
            .map_err(|failed| failed.into_error(from_error))
    }
}

async fn batch<P, M, T, C, E, F, Fut>(
    cache: Cache<P::Id, T, C>,
    ids: P,
    mut fetch: F,
    from_error: fn(Error) -> E,
) -> Result<M, E>
where
    P: IdList,
    P::Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    M: IntoIterator<Item = (P::Id, T)> + FromIterator<(P::Id, T)>,
    F: FnMut(P) -> Fut,
    Fut: Future<Output = Result<M, E>>,
{
    cache
        .get_and_fill(ids.into_ids(), |missing| {
            let fetched = fetch(P::from_ids(missing));
            async move { fetched.await.map_err(Failed::Fetch) }
        })
        .await
        .map_err(|failed| failed.into_error(from_error))
}

/// The fetch's own error or the cache's, kept apart so that only the cache's needs converting
/// (and the `From` requirement is checked once, at the user's error type).
enum Failed<E> {
    Fetch(E),
    Cache(Error),
}

impl<E> From<Error> for Failed<E> {
    fn from(error: Error) -> Self {
        Self::Cache(error)
    }
}

impl<E> Failed<E> {
    fn into_error(self, from_error: fn(Error) -> E) -> E {
        match self {
            Self::Fetch(error) => error,
            Self::Cache(error) => from_error(error),
        }
    }
}

/// The body of a cached method: `cache` from its `_cache` companion, `arg` its ids parameter,
/// `fetch` its original body, `from_error` is [`error_from`] for its error type.
pub async fn fill<P, R, C, F, Fut>(
    cache: CacheOf<R, P, C>,
    arg: P,
    mut fetch: F,
    from_error: fn(Error) -> R::Error,
) -> R
where
    R: ReturnType,
    R::Ok: Form<P>,
    <R::Ok as Form<P>>::Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<<R::Ok as Form<P>>::Value>,
    F: FnMut(P) -> Fut,
    Fut: Future<Output = R>,
{
    let fetch = |arg: P| {
        let fetched = fetch(arg);
        async move { fetched.await.into_result() }
    };
    R::from_result(<R::Ok as Form<P>>::fill(cache, arg, fetch, from_error).await)
}

/// The cache of a method returning `R` with the ids parameter `P`.
pub type CacheOf<R, P, C> =
    Cache<<<R as ReturnType>::Ok as Form<P>>::Id, <<R as ReturnType>::Ok as Form<P>>::Value, C>;

/// Names the requirement on the method's error type where the user wrote it.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot hold a `ruecache::Error`",
    label = "needs `impl From<ruecache::Error> for {Self}`",
    note = "add a variant such as `Cache(#[from] ruecache::Error)` (thiserror) or implement `From<ruecache::Error>` by hand"
)]
pub trait CacheErrorFrom: From<Error> {}
impl<E: From<Error>> CacheErrorFrom for E {}

/// Converts the cache's error into the method's; named with the user's error type's span, so a
/// missing `From` impl is reported there.
pub fn error_from<E: CacheErrorFrom>(error: Error) -> E {
    E::from(error)
}

/// Stands in for a value of the declared return type in the expansion's never-taken early
/// return, which fixes the type that the body's `?` and `Ok(..)` infer against.
pub fn unreachable<T>() -> T {
    unreachable!("`#[cached_batch]` never takes its type-inference return")
}
