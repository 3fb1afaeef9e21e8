//! What `#[cached_batch]` expands into. Not a public API: it may change in any release.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Display};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

pub use crate::{
    Cache, Codec, Connection, Error, HasConnection, IdList, KeyTemplate, MsgPack, NearCache,
    Options, Raw, Spec,
};
pub use core::future::Future;

/// The options the attribute's arguments set (through the same setters as `CacheBuilder`),
/// checked by the same rules as `CacheBuilder::build`. Called in the initializer of the
/// method's `static` spec, so a broken rule stops the build with its message.
pub const fn checked(options: Options) -> Options {
    match options.check() {
        Ok(()) => options,
        Err(message) => panic!("{}", message),
    }
}

/// The marker of a check that holds.
///
/// The id and value types are checked by helper traits `Check<.., M>` with two implementations:
/// `Check<.., Met>` for the types that meet the requirement, and `Check<.., Unmet>` for none (it
/// asks for [`Unsatisfiable`]). The expansion leaves `M` for the compiler to infer. With two
/// candidates the compiler tries both: `M` is `Met` when the type meets the requirement, and
/// otherwise the compiler reports the helper trait itself, once, with its `on_unimplemented`
/// message, rather than each unmet bound of the `Met` implementation with the bound's own message.
#[derive(Debug)]
pub struct Met;

/// The marker of the implementation that never applies (see [`Met`]).
#[derive(Debug)]
pub struct Unmet;

/// Implemented by no type: the bound of the implementations for [`Unmet`].
pub trait Unsatisfiable {}

/// What the cache needs of an id: `Display` to write it into its keys, `Eq + Hash + Clone` to
/// look it up and fill it once, `Send + Sync + 'static` to hand it to the tasks that commit a
/// fill. Checked where the expansion calls [`At::id`], under the ids type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[cached_batch]` id, an id must be `Display + Eq + Hash + Clone + Send + Sync + 'static`",
    label = "written into keys with `Display`, looked up with `Eq + Hash`, handed to other tasks",
    note = "derive `Clone, PartialEq, Eq, Hash` and implement `Display` for your id type; an id is `Send + Sync` and owns its data (not `Rc`, no borrowed fields)",
    note = "a method that takes a `Vec` of ids is a batch and returns a map: `ids: Vec<Id>` with `Result<HashMap<Id, T>, E>`; a single-item method takes `id: Id` and returns `Result<Option<T>, E>`"
)]
pub trait CacheId<M> {}
impl<Id> CacheId<Met> for Id where Id: Display + Eq + Hash + Clone + Send + Sync + 'static {}
impl<Id: Unsatisfiable> CacheId<Unmet> for Id {}

/// What the cache needs of a value: its codec `C` must store it. Checked where the expansion
/// calls [`At::value`], under the value type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached with the codec `{C}`",
    label = "`{C}` does not implement `ruecache::Codec<{Self}>`",
    note = "the default codec, `ruecache::MsgPack`, stores serde types: derive `serde::Serialize` and `serde::Deserialize` for the value type; `codec = ruecache::Raw` stores `Vec<u8>` as it is",
    note = "for another format, implement `ruecache::Codec<{Self}>` for a codec type of your own and name it with `codec = ...`"
)]
pub trait CacheValue<C, M> {}
impl<T, C: Codec<T>> CacheValue<C, Met> for T {}
impl<T: Unsatisfiable, C> CacheValue<C, Unmet> for T {}

/// Both checks' markers: [`Met`] when both are. Two implementations, so that while the id's
/// marker is unknown (its check failed) the result is unknown too, rather than inferred.
pub trait Both<M> {
    /// [`Met`] or [`Unmet`].
    type Out;
}
impl Both<Met> for Met {
    type Out = Met;
}
impl Both<Unmet> for Met {
    type Out = Unmet;
}

/// The outcome of the id's check, as types: `M` is [`Met`] once the compiler has found that
/// `Id` meets [`CacheId`], and stays unknown when it does not.
pub struct IdChecked<Id, M>(PhantomData<fn(Id) -> M>);

impl<Id, M> fmt::Debug for IdChecked<Id, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdChecked")
    }
}

/// The outcome of both checks for a cache of `T` by `Id` with the codec `C`: `W` is [`Met`] when
/// the id and the value meet the cache's requirements, and stays unknown when either does not
/// (see [`Fill`]).
pub struct Checked<Id, T, C, W>(PhantomData<fn(Id, T, C) -> W>);

impl<Id, T, C, W> fmt::Debug for Checked<Id, T, C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checked")
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

    /// Checks that the service can be cloned into background refreshes (`refresh_ahead`).
    pub const fn service<S: OwnedService<M>, M>() -> ServiceChecked<S, M> {
        ServiceChecked(PhantomData)
    }

    /// Checks the id type, at the ids type. Both the companion and the method call it, written
    /// and located the same, so that the compiler shows a failure once.
    pub const fn id<Id: CacheId<M>, M>() -> IdChecked<Id, M> {
        IdChecked(PhantomData)
    }

    /// Checks the value type against the codec, at the value type (the id's check passed in);
    /// the result lets the method fill its cache.
    pub const fn value<Id, T, C, MI, MV>(
        _: IdChecked<Id, MI>,
    ) -> Checked<Id, T, C, <MV as Both<MI>>::Out>
    where
        T: CacheValue<C, MV>,
        MV: Both<MI>,
    {
        Checked(PhantomData)
    }

    /// The cache for one annotated method: the service's connection and the method's `static`
    /// spec.
    pub fn cache<Id, T, C, M: Keys<Id>>(
        conn: &Connection,
        spec: &'static Spec,
        codec: C,
        _: IdChecked<Id, M>,
    ) -> Cache<Id, T, C> {
        M::cache(conn.clone(), spec, codec)
    }
}

/// Makes the cache of an id that passed its check ([`Met`] only).
pub trait Keys<Id> {
    /// The cache, its keys written with the id's `Display`.
    fn cache<T, C>(conn: Connection, spec: &'static Spec, codec: C) -> Cache<Id, T, C>;
}

impl<Id: Display> Keys<Id> for Met {
    fn cache<T, C>(conn: Connection, spec: &'static Spec, codec: C) -> Cache<Id, T, C> {
        crate::cache::from_static(conn, spec, codec)
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
}

// `do_not_recommend` on each form: a wrong return type's error then says what the trait's
// `on_unimplemented` message says, without listing these impls after it.
#[diagnostic::do_not_recommend]
impl<P, K, V, E, S> Form<P> for Result<HashMap<K, V, S>, E>
where
    S: BuildHasher + Default,
{
    type Id = K;
    type Value = V;
    type Error = E;
    type Shape = Batch<P, K>;
}

#[diagnostic::do_not_recommend]
impl<P, K, V, E> Form<P> for Result<BTreeMap<K, V>, E>
where
    K: Ord,
{
    type Id = K;
    type Value = V;
    type Error = E;
    type Shape = Batch<P, K>;
}

#[diagnostic::do_not_recommend]
impl<P, K, V, E> Form<P> for Result<Vec<(K, V)>, E> {
    type Id = K;
    type Value = V;
    type Error = E;
    type Shape = Batch<P, K>;
}

#[diagnostic::do_not_recommend]
impl<Id, T, E> Form<Id> for Result<Option<T>, E> {
    type Id = Id;
    type Value = T;
    type Error = E;
    type Shape = Single;
}

/// The cache's work for a method returning `R` and taking `P` (the form's types `Id`, `T`, `E`
/// and `S` named by the expansion through [`Form`]), with the bounds it needs of the id, the
/// value and the codec `C`. Implemented for [`Met`] only: the expansion calls it as
/// `Fill::<R, P, .., _>::fill`, `Self` being its checks' outcome, so that an id or a value that
/// fails its check is reported once, by the check, where the user wrote it, and not again here
/// (while `Self` is unknown, the compiler cannot tell whether this holds, and it reports nothing
/// more in a function that already has an error).
pub trait Fill<R, P, Id, T, E, S, C>: Sized {
    /// Runs the cache for one call: `fetch` is the method's body.
    fn fill<F, Fut>(
        cache: Cache<Id, T, C>,
        arg: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: S,
        checked: Checked<Id, T, C, Self>,
    ) -> impl Future<Output = R>
    where
        F: FnMut(P) -> Fut,
        Fut: Future<Output = R>;
}

impl<P, K, V, E, H, C> Fill<Result<HashMap<K, V, H>, E>, P, K, V, E, Batch<P, K>, C> for Met
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    H: BuildHasher + Default,
    C: Codec<V>,
{
    fn fill<F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: Batch<P, K>,
        _: Checked<K, V, C, Self>,
    ) -> impl Future<Output = Result<HashMap<K, V, H>, E>>
    where
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V, H>, E>>,
    {
        batch(cache, ids, fetch, from_error, shape)
    }
}

impl<P, K, V, E, C> Fill<Result<BTreeMap<K, V>, E>, P, K, V, E, Batch<P, K>, C> for Met
where
    K: Ord + Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    fn fill<F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: Batch<P, K>,
        _: Checked<K, V, C, Self>,
    ) -> impl Future<Output = Result<BTreeMap<K, V>, E>>
    where
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<BTreeMap<K, V>, E>>,
    {
        batch(cache, ids, fetch, from_error, shape)
    }
}

impl<P, K, V, E, C> Fill<Result<Vec<(K, V)>, E>, P, K, V, E, Batch<P, K>, C> for Met
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    fn fill<F, Fut>(
        cache: Cache<K, V, C>,
        ids: P,
        fetch: F,
        from_error: fn(Error) -> E,
        shape: Batch<P, K>,
        _: Checked<K, V, C, Self>,
    ) -> impl Future<Output = Result<Vec<(K, V)>, E>>
    where
        F: FnMut(P) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        batch(cache, ids, fetch, from_error, shape)
    }
}

impl<Id, T, E, C> Fill<Result<Option<T>, E>, Id, Id, T, E, Single, C> for Met
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
{
    async fn fill<F, Fut>(
        cache: Cache<Id, T, C>,
        id: Id,
        mut fetch: F,
        from_error: fn(Error) -> E,
        _: Single,
        _: Checked<Id, T, C, Self>,
    ) -> Result<Option<T>, E>
    where
        F: FnMut(Id) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
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

/// Refresh-ahead for a method returning `Self` and taking `P` (`refresh_ahead = true`): the
/// method's cache, given a fetch that owns a clone of the service, so that it can refresh ids in
/// the background after the call that drew them returned.
pub trait Refresh<P>: Sized {
    /// The id type.
    type Id;
    /// The cached value type.
    type Value;

    /// `cache`, refreshing with `fetch` (the method's body, on a clone of the service).
    fn refreshing<C, F, Fut>(
        cache: Cache<Self::Id, Self::Value, C>,
        fetch: F,
    ) -> Cache<Self::Id, Self::Value, C>
    where
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Self> + Send + 'static;
}

/// What `refresh_ahead = true` needs of the service: its body runs on a clone, in a task of its
/// own. Checked by [`At::service`], as the id and the value are (see [`Met`]), so that a service
/// that is not `Clone` is reported once, with this message.
#[diagnostic::on_unimplemented(
    message = "`refresh_ahead = true` runs the method's body on a clone of the service, so `{Self}` must be `Clone + Send + Sync + 'static`",
    label = "the body of a refresh runs on a clone of `{Self}`",
    note = "derive `Clone` for the service: one holding a connection pool or `Arc`s is cheap to clone"
)]
pub trait OwnedService<M> {}
impl<S: Clone + Send + Sync + 'static> OwnedService<Met> for S {}
impl<S: Unsatisfiable> OwnedService<Unmet> for S {}

/// The outcome of the service's check: `M` is [`Met`] once the compiler has found that `S`
/// meets [`OwnedService`], and stays unknown when it does not.
pub struct ServiceChecked<S, M>(PhantomData<fn(S) -> M>);

impl<S, M> fmt::Debug for ServiceChecked<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceChecked")
    }
}

/// Clones of a service that passed its check, for the background refreshes. Implemented for
/// [`Met`] only: called as `<_ as Owned<_>>::owned`, `Self` being the check's outcome, so a
/// failed check is not reported a second time here.
pub trait Owned<S>: Sized {
    /// A maker of owned clones of `service`.
    fn owned(service: &S, checked: ServiceChecked<S, Self>) -> Box<dyn Fn() -> S + Send + Sync>;
}

impl<S: Clone + Send + Sync + 'static> Owned<S> for Met {
    fn owned(service: &S, _: ServiceChecked<S, Self>) -> Box<dyn Fn() -> S + Send + Sync> {
        let service = service.clone();
        Box::new(move || service.clone())
    }
}

/// The batch forms' [`Refresh`]: the ids handed over as the method's parameter type.
fn refreshing_batch<P, Id, T, M, E, C, F, Fut>(cache: Cache<Id, T, C>, fetch: F) -> Cache<Id, T, C>
where
    P: IdList<Id>,
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    T: Send + 'static,
    M: IntoIterator<Item = (Id, T)>,
    E: Display,
    F: Fn(P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<M, E>> + Send + 'static,
{
    cache.with_refresh(crate::fill::refresh::starter(move |ids| {
        fetch(P::from_ids(ids))
    }))
}

impl<P, K, V, E, H> Refresh<P> for Result<HashMap<K, V, H>, E>
where
    P: IdList<K>,
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + 'static,
    E: Display,
    H: BuildHasher + Default,
{
    type Id = K;
    type Value = V;

    fn refreshing<C, F, Fut>(cache: Cache<K, V, C>, fetch: F) -> Cache<K, V, C>
    where
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Self> + Send + 'static,
    {
        refreshing_batch(cache, fetch)
    }
}

impl<P, K, V, E> Refresh<P> for Result<BTreeMap<K, V>, E>
where
    P: IdList<K>,
    K: Ord + Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + 'static,
    E: Display,
{
    type Id = K;
    type Value = V;

    fn refreshing<C, F, Fut>(cache: Cache<K, V, C>, fetch: F) -> Cache<K, V, C>
    where
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Self> + Send + 'static,
    {
        refreshing_batch(cache, fetch)
    }
}

impl<P, K, V, E> Refresh<P> for Result<Vec<(K, V)>, E>
where
    P: IdList<K>,
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + 'static,
    E: Display,
{
    type Id = K;
    type Value = V;

    fn refreshing<C, F, Fut>(cache: Cache<K, V, C>, fetch: F) -> Cache<K, V, C>
    where
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Self> + Send + 'static,
    {
        refreshing_batch(cache, fetch)
    }
}

impl<Id, T, E> Refresh<Id> for Result<Option<T>, E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    T: Send + 'static,
    E: Display + Send,
{
    type Id = Id;
    type Value = T;

    fn refreshing<C, F, Fut>(cache: Cache<Id, T, C>, fetch: F) -> Cache<Id, T, C>
    where
        F: Fn(Id) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Self> + Send + 'static,
    {
        // One call of the method per id due, one after the other.
        let fetch = std::sync::Arc::new(fetch);
        cache.with_refresh(crate::fill::refresh::starter(move |ids: Vec<Id>| {
            let fetch = std::sync::Arc::clone(&fetch);
            async move {
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(value) = fetch(id.clone()).await? {
                        out.push((id, value));
                    }
                }
                Ok::<_, E>(out)
            }
        }))
    }
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
