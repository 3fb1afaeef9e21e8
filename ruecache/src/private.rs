//! What `#[cached_batch]` expands into. Not a public API: it may change in any release.

use std::fmt::Display;
use std::time::Duration;

pub use crate::{
    Cache, Connection, Error, HasConnection, KeyTemplate, MsgPack, Options, Raw, Spec,
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

/// The id type of an ids parameter (`Vec<Id>` or an alias of it), by trait rather than by name.
pub trait IdList: IntoIterator<Item = <Self as IdList>::Id> {
    /// The id type.
    type Id;
}

impl<Id> IdList for Vec<Id> {
    type Id = Id;
}

/// The parts of a batch method's return type `Result<Map, E>` (or an alias of it).
pub trait BatchOutput {
    /// The map's value type.
    type Value;
    /// The error type.
    type Error;
}

impl<M, E, K, V> BatchOutput for Result<M, E>
where
    M: IntoIterator<Item = (K, V)> + FromIterator<(K, V)>,
{
    type Value = V;
    type Error = E;
}

/// The parts of a single-item method's return type `Result<Option<T>, E>`.
pub trait OneOutput {
    /// The value type.
    type Value;
    /// The error type.
    type Error;
}

impl<T, E> OneOutput for Result<Option<T>, E> {
    type Value = T;
    type Error = E;
}

/// Names the requirement on the method's error type where the user wrote it.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot hold a `ruecache::Error`",
    label = "needs `impl From<ruecache::Error> for {Self}`",
    note = "add a variant such as `Cache(#[from] ruecache::Error)` (thiserror) or implement `From<ruecache::Error>` by hand"
)]
pub trait CacheErrorFrom: From<Error> {}
impl<E: From<Error>> CacheErrorFrom for E {}

/// Compile-time check that `E` can hold a `ruecache::Error` (called under the user's error type
/// span so the message points there).
pub const fn require_error_from<E: CacheErrorFrom>() {}
