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
        // Locks this short are released early whatever time they have left.
        if options.unlock_threshold.as_millis() >= ms as u128 {
            options.unlock_threshold = Duration::from_millis(ms / 2);
        }
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

/// What the cache needs of an id to write it into its keys. Named in the companion, under the
/// ids type, so that an id that cannot be written, or a `Vec` given to a single-item method, is
/// reported there with both shapes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[cached_batch]` id, it does not implement `Display`",
    label = "the key template writes the id with `Display`",
    note = "a method that takes a `Vec` of ids is a batch and returns a map: `ids: Vec<Id>` with `Result<HashMap<Id, T>, E>`; a single-item method takes `id: Id` and returns `Result<Option<T>, E>`"
)]
pub trait CacheId: Display {}
impl<Id: Display + ?Sized> CacheId for Id {}

/// The ids parameter of a batch method: `Vec<Id>` (or an alias of it), `Id` being the map's key
/// type. The id is a parameter of the trait, not an associated type, so that ids of another type
/// than the keys are reported with this message too.
#[diagnostic::on_unimplemented(
    message = "the ids parameter of a batch `#[cached_batch]` method must be a `Vec` of the map's key type `{Id}`, not `{Self}`",
    label = "expected `Vec<{Id}>`",
    note = "the ids and the keys of the returned map are the same type: a batch method takes `ids: Vec<Id>` and returns `Result<HashMap<Id, T>, E>`; a single-item method takes `id: Id` and returns `Result<Option<T>, E>`"
)]
pub trait IdList<Id>: Sized {
    /// The ids to look up.
    fn into_ids(self) -> Vec<Id>;
    /// The missing ids, handed to the method's body.
    fn from_ids(ids: Vec<Id>) -> Self;
}

impl<Id> IdList<Id> for Vec<Id> {
    fn into_ids(self) -> Self {
        self
    }
    fn from_ids(ids: Self) -> Self {
        ids
    }
}

/// How a method's parameter gives its ids: `Batch` for a list of ids (`P: IdList<Id>`), `Single`
/// for one id. The form names which one it needs (`Form::Shape`); the expansion makes it with
/// [`At::shape`], called at the ids type, so that a parameter of the wrong shape is reported
/// there with `IdList`'s message rather than at the return type.
pub trait Shape: Sized {
    /// The shape's conversions.
    const SHAPE: Self;
}

/// The batch shape: the parameter's conversions to and from the ids.
#[allow(missing_debug_implementations)]
pub struct Batch<P, Id> {
    into_ids: fn(P) -> Vec<Id>,
    from_ids: fn(Vec<Id>) -> P,
}

impl<P: IdList<Id>, Id> Shape for Batch<P, Id> {
    const SHAPE: Self = Self {
        into_ids: P::into_ids,
        from_ids: P::from_ids,
    };
}

/// The single-item shape: the parameter is the id.
#[derive(Debug)]
pub struct Single;

impl Shape for Single {
    const SHAPE: Self = Self;
}

/// Functions the expansion calls as `<At>::name(..)`: the path's first and last tokens carry the
/// spans of the first and last tokens of a type the user wrote, so that the compiler reports a
/// requirement of the call under that whole type (a proc macro cannot make a span over several
/// tokens on stable Rust; the compiler makes the path's from its ends).
#[derive(Debug)]
pub struct At;

impl At {
    /// The ids parameter's shape, checked at the ids type.
    pub const fn shape<S: Shape>() -> S {
        S::SHAPE
    }

    /// The cache for one annotated method: the service's connection and the method's `static`
    /// spec. Called at the ids type, where the id's requirements are reported.
    pub fn cache<Id: CacheId, T, C>(
        conn: &Connection,
        spec: &'static Spec,
        codec: C,
    ) -> Cache<Id, T, C> {
        crate::cache::from_static(conn.clone(), spec, codec)
    }
}

/// The declared return type of a cached method, given its parameter type `P`, decides how it
/// is cached: `Result<map, E>` (`HashMap`, `BTreeMap` or `Vec<(Id, T)>`) with `P = Vec<Id>` is
/// the batch form, `Result<Option<T>, E>` with `P = Id` the single-item form. The
/// implementations have distinct `Self` types, so the compiler picks the form, through aliases
/// too, and the macro never reads type names.
#[diagnostic::on_unimplemented(
    message = "a `#[cached_batch]` method returns `Result<HashMap<Id, T>, E>` or `Result<Option<T>, E>`, not `{Self}`",
    label = "expected `Result<HashMap<Id, T>, E>` or `Result<Option<T>, E>`",
    note = "a batch method returns `Result<HashMap<Id, T>, E>` (or a `BTreeMap<Id, T>` or `Vec<(Id, T)>`) and takes `ids: Vec<Id>`; a single-item method returns `Result<Option<T>, E>` and takes `id: Id`"
)]
pub trait Form<P>: Sized {
    /// The id type.
    type Id;
    /// The cached value type.
    type Value;
    /// The method's error type.
    type Error;
    /// How the parameter gives the ids: [`Batch`] or [`Single`]. Not bounded here: the bound
    /// is checked where the expansion makes it, at the ids type.
    type Shape;

    /// Runs the cache for one call: `fetch` is the method's body.
    fn fill<C, F, Fut>(
        cache: Cache<Self::Id, Self::Value, C>,
        arg: P,
        fetch: F,
        from_error: fn(Error) -> Self::Error,
        shape: Self::Shape,
    ) -> impl Future<Output = Self>
    where
        Self::Id: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<Self::Value>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Self>;
}

impl<P, K, V, E, S> Form<P> for Result<HashMap<K, V, S>, E>
where
    K: Eq + Hash,
    S: BuildHasher + Default,
{
    type Id = K;
    type Value = V;
    type Error = E;
    type Shape = Batch<P, K>;

    fn fill<C, F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: Batch<P, K>,
    ) -> impl Future<Output = Self>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<V>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Self>,
    {
        batch(cache, ids, fetch, from_error, shape)
    }
}

impl<P, K, V, E> Form<P> for Result<BTreeMap<K, V>, E>
where
    K: Ord,
{
    type Id = K;
    type Value = V;
    type Error = E;
    type Shape = Batch<P, K>;

    fn fill<C, F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: Batch<P, K>,
    ) -> impl Future<Output = Self>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<V>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Self>,
    {
        batch(cache, ids, fetch, from_error, shape)
    }
}

impl<P, K, V, E> Form<P> for Result<Vec<(K, V)>, E> {
    type Id = K;
    type Value = V;
    type Error = E;
    type Shape = Batch<P, K>;

    fn fill<C, F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: Batch<P, K>,
    ) -> impl Future<Output = Self>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<V>,
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Self>,
    {
        batch(cache, ids, fetch, from_error, shape)
    }
}

impl<Id, T, E> Form<Id> for Result<Option<T>, E> {
    type Id = Id;
    type Value = T;
    type Error = E;
    type Shape = Single;

    async fn fill<C, F, Fut>(
        cache: Cache<Id, T, C>,
        id: Id,
        mut fetch: F,
        from_error: fn(Error) -> E,
        _: Single,
    ) -> Self
    where
        Id: Eq + Hash + Clone + Send + Sync + 'static,
        C: Codec<T>,
        F: FnMut(Id) -> Fut,
        Fut: Future<Output = Self>,
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

async fn batch<P, Id, M, T, C, E, F, Fut>(
    cache: Cache<Id, T, C>,
    ids: P,
    mut fetch: F,
    from_error: fn(Error) -> E,
    shape: Batch<P, Id>,
) -> Result<M, E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    M: IntoIterator<Item = (Id, T)> + FromIterator<(Id, T)>,
    F: FnMut(P) -> Fut,
    Fut: Future<Output = Result<M, E>>,
{
    cache
        .get_and_fill((shape.into_ids)(ids), |missing| {
            let fetched = fetch((shape.from_ids)(missing));
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
