//! The one error type of the engine.

use std::time::Duration;

/// Something the cache could not do.
///
/// A fetch function's own error is never wrapped in this type: `get_and_fill` returns it to the
/// caller unchanged, and converts these errors into the caller's error type with `From`.
///
/// # Examples
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// enum AppError {
///     #[error("database: {0}")]
///     Db(String),
///     #[error(transparent)]
///     Cache(#[from] ruecache::Error),
/// }
///
/// fn retryable(e: &AppError) -> bool {
///     matches!(e, AppError::Cache(ruecache::Error::Redis(_) | ruecache::Error::Timeout { .. }))
/// }
/// # assert!(!retryable(&AppError::Db("down".into())));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// A wait on Redis or on other callers' fills did not end within the configured
    /// [timeout](crate::CacheBuilder::timeout), usually because another caller held the lock for
    /// some ids the whole time (a very slow fetch), or Redis did not answer. The call's own
    /// fetch is not under the timeout.
    #[error(
        "{}timed out after {after:?} waiting for redis or for other callers to fill the cache; \
         raise the timeout with `CacheBuilder::timeout` if fetches take this long, \
         or check that redis is reachable",
        named(*.cache)
    )]
    Timeout {
        /// The configured timeout.
        after: Duration,
        /// The cache's [name](crate::CacheBuilder::name), if it has one.
        cache: Option<&'static str>,
    },

    /// The fetch did not answer within the cache's
    /// [fetch timeout](crate::CacheBuilder::fetch_timeout), and there was no stale value to
    /// serve instead. The fetch was dropped and its leases released.
    #[error(
        "{}the fetch did not answer within {after:?}; raise `CacheBuilder::fetch_timeout`, or \
         keep stale values to serve meanwhile with `CacheBuilder::stale_for`",
        named(*.cache)
    )]
    FetchTimeout {
        /// The configured fetch timeout.
        after: Duration,
        /// The cache's [name](crate::CacheBuilder::name), if it has one.
        cache: Option<&'static str>,
    },

    /// The cache configuration is invalid; the message names the setting and what it accepts.
    #[error("invalid cache configuration: {0}")]
    Config(String),

    /// The key template could not be parsed.
    #[error("invalid key template `{template}`: {reason}")]
    Template {
        /// The template as given.
        template: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An id's `Display` implementation returned an error, so no key can be built for it.
    #[error("the id's `Display` implementation returned an error; no cache key can be built")]
    InvalidId,

    /// A built key is longer than the cache accepts.
    #[error(
        "cache key of {len} bytes exceeds the limit of {max} bytes; shorten the template or the id"
    )]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The cache's [codec](crate::Codec) could not convert a value, in either direction.
    ///
    /// Returned when a fetched value cannot be encoded: the call fails and the fill's locks are
    /// released. Codecs return it from [`decode`](crate::Codec::decode) too, for cached bytes
    /// they cannot read, but that never reaches a caller: the id is treated as a miss and
    /// refilled.
    #[error(
        "the cache's codec could not encode or decode a value: {0}; make fetched values \
         encodable by the codec or choose another with `CacheBuilder::codec` (cached bytes that \
         do not decode are refilled, not reported)"
    )]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// Redis replied with something the cache's scripts never return.
    #[error("unexpected reply from redis: {0}")]
    UnexpectedReply(String),

    /// The source (the fetch function) failed. Only produced when the fetch function's error type
    /// is `ruecache::Error` itself; use [`Error::source_error`] to build it.
    #[error("fetching from the source failed: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps any error from a data source, for fetch functions whose error type is
    /// `ruecache::Error`.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ruecache::Error::source_error(std::io::Error::other("db down"));
    /// assert!(err.to_string().contains("db down"));
    /// ```
    pub fn source_error(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Source(err.into())
    }

    /// Whether Redis could not be reached (rather than refused what was asked): a timeout, a
    /// connection that failed or dropped, or a cluster that cannot serve the slot right now.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let timeout = ruecache::Error::Timeout { after: Duration::from_secs(1), cache: None };
    /// assert!(timeout.is_unreachable());
    /// assert!(!ruecache::Error::InvalidId.is_unreachable());
    /// ```
    pub fn is_unreachable(&self) -> bool {
        use redis::{ErrorKind, ServerErrorKind};
        match self {
            Self::Timeout { .. } => true,
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || matches!(
                        e.kind(),
                        ErrorKind::ClusterConnectionNotFound
                            | ErrorKind::Server(
                                ServerErrorKind::ClusterDown
                                    | ServerErrorKind::TryAgain
                                    | ServerErrorKind::MasterDown
                                    | ServerErrorKind::BusyLoading
                            )
                    )
            }
            _ => false,
        }
    }
}

/// The start of the message of an error of a named cache: "cache `widgets`: ".
fn named(cache: Option<&'static str>) -> String {
    cache.map_or_else(String::new, |name| format!("cache `{name}`: "))
}
