//! Per-cache settings, their defaults and their validation.

use std::time::Duration;

use crate::keys::unit_hash;
use crate::near::NearCache;
use crate::Error;

/// Per-cache settings. Set them through [`CacheBuilder`](crate::CacheBuilder); the defaults are
/// those of the Go original.
///
/// [`CacheBuilder::build`](crate::CacheBuilder::build) rejects settings that make no sense with
/// [`Error::Config`]: a zero duration, jitter outside `0.0..=1.0`, a backoff whose minimum is zero or above its maximum, an unlock threshold not shorter
/// than the lock TTL, a TTL above [`MAX_TTL`](Self::MAX_TTL) or a timeout or backoff above
/// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT).
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
/// let options: &ruecache::Options = cache.options();
/// assert_eq!(options.ttl(), Some(Duration::from_secs(60)));
/// assert_eq!(options.lock_ttl(), ruecache::Options::DEFAULT.lock_ttl());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub(crate) ttl: Option<Duration>,
    /// `None`: the data TTL.
    pub(crate) absent_ttl: Option<Duration>,
    pub(crate) jitter: f64,
    pub(crate) lock_ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) unlock_threshold: Duration,
    pub(crate) fallback_to_source: bool,
    pub(crate) name: Option<&'static str>,
    /// The β of the refresh-ahead draw; `None`: no refresh ahead of expiry.
    pub(crate) refresh_beta: Option<f64>,
    /// How long a value is kept past its TTL, to be served if its refill fails.
    pub(crate) stale_for: Option<Duration>,
    /// How long a failed refresh or refill holds off the next attempt for its ids.
    pub(crate) stale_retry: Duration,
    /// The fetch's hard timeout.
    pub(crate) fetch_timeout: Option<Duration>,
    /// The fetch's soft timeout: past it, a stale value is served.
    pub(crate) fetch_soft_timeout: Option<Duration>,
    /// The in-process tier in front of Redis, if any.
    pub(crate) near: Option<NearCache>,
}

impl Default for Options {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Options {
    /// The longest data or lock TTL a cache accepts: 100 years (of 365 days).
    ///
    /// Redis stores an expiry as the current time plus the TTL in milliseconds and refuses a
    /// TTL that would overflow that sum; below this bound (doubled by the largest jitter) the
    /// sum is far from overflowing, and every TTL is sent exactly. For values that should never
    /// expire use [`CacheBuilder::no_expiry`](crate::CacheBuilder::no_expiry) instead.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection) {
    /// use std::time::Duration;
    ///
    /// let err = ruecache::Cache::<u64, String>::builder(conn, "users:{id}")
    ///     .ttl(ruecache::Options::MAX_TTL + Duration::from_secs(1))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, ruecache::Error::Config(_)));
    /// # }
    /// ```
    pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

    /// The longest timeout (of the waits of one call) and the longest wait backoff a cache
    /// accepts: 365 days.
    ///
    /// A call's deadline is the time it starts plus the timeout; this bound keeps that sum
    /// representable on every platform, so a call can never panic computing it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert_eq!(ruecache::Options::MAX_TIMEOUT, Duration::from_secs(365 * 24 * 60 * 60));
    /// assert!(ruecache::Options::DEFAULT.timeout() <= ruecache::Options::MAX_TIMEOUT);
    /// ```
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// Data TTL 5 min with ±20 % per-id jitter, lock TTL 5 s, timeout 30 s,
    /// wait backoff 25 ms to 1 s, unlock threshold 10 ms, no fallback to the source when Redis
    /// is unreachable; no refresh ahead of expiry, no stale values (a failed refill is retried
    /// after 5 s once they are on), no fetch timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = ruecache::Options::DEFAULT;
    /// assert_eq!(options.ttl(), Some(Duration::from_secs(300)));
    /// assert_eq!(options.lock_ttl(), Duration::from_secs(5));
    /// assert_eq!(options, ruecache::Options::default());
    /// ```
    pub const DEFAULT: Self = Self {
        ttl: Some(Duration::from_secs(300)),
        absent_ttl: None,
        jitter: 0.2,
        lock_ttl: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        backoff_min: Duration::from_millis(25),
        backoff_max: Duration::from_secs(1),
        unlock_threshold: Duration::from_millis(10),
        fallback_to_source: false,
        name: None,
        refresh_beta: None,
        stale_for: None,
        stale_retry: Duration::from_secs(5),
        fetch_timeout: None,
        fetch_soft_timeout: None,
        near: None,
    };

    /// The data TTL before jitter, `None` for no expiry.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert_eq!(ruecache::Options::DEFAULT.ttl(), Some(Duration::from_secs(300)));
    /// ```
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The cache's name, if it was given one: the `cache` field of its `tracing` spans, and the
    /// `cache` label of its metrics (feature `metrics`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.name(), None);
    /// ```
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// How long an id the source does not have stays cached as absent, before jitter; `None`
    /// when it is the data TTL (the default).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.absent_ttl(), None);
    /// ```
    pub fn absent_ttl(&self) -> Option<Duration> {
        self.absent_ttl
    }

    /// The jitter fraction: each id's TTL is spread by up to ± this fraction.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.jitter(), 0.2);
    /// ```
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The timeout of one call's waits on Redis and on other fillers, counted from the start
    /// of the call; the fetch itself is not cut short.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert_eq!(ruecache::Options::DEFAULT.timeout(), Duration::from_secs(30));
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The lock TTL: the longest a crashed filler can block others.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert_eq!(ruecache::Options::DEFAULT.lock_ttl(), Duration::from_secs(5));
    /// ```
    pub fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    /// Whether calls are served straight from the source while Redis is unreachable.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ruecache::Options::DEFAULT.fallback_to_source());
    /// ```
    pub fn fallback_to_source(&self) -> bool {
        self.fallback_to_source
    }

    /// The β of the refresh-ahead draw, `None` when values are not refreshed ahead of their
    /// expiry (see [`CacheBuilder::refresh_ahead`](crate::CacheBuilder::refresh_ahead)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.refresh_beta(), None);
    /// ```
    pub fn refresh_beta(&self) -> Option<f64> {
        self.refresh_beta
    }

    /// How long values are kept past their TTL to be served when their refill fails, `None`
    /// when they are not (see [`CacheBuilder::stale_for`](crate::CacheBuilder::stale_for)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.stale_for(), None);
    /// ```
    pub fn stale_for(&self) -> Option<Duration> {
        self.stale_for
    }

    /// How long a failed refresh or refill holds off the next attempt for its ids (see
    /// [`CacheBuilder::stale_retry`](crate::CacheBuilder::stale_retry)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert_eq!(ruecache::Options::DEFAULT.stale_retry(), Duration::from_secs(5));
    /// ```
    pub fn stale_retry(&self) -> Duration {
        self.stale_retry
    }

    /// The fetch's hard timeout, `None` for none (see
    /// [`CacheBuilder::fetch_timeout`](crate::CacheBuilder::fetch_timeout)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.fetch_timeout(), None);
    /// ```
    pub fn fetch_timeout(&self) -> Option<Duration> {
        self.fetch_timeout
    }

    /// The fetch's soft timeout, `None` for none (see
    /// [`CacheBuilder::fetch_soft_timeout`](crate::CacheBuilder::fetch_soft_timeout)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.fetch_soft_timeout(), None);
    /// ```
    pub fn fetch_soft_timeout(&self) -> Option<Duration> {
        self.fetch_soft_timeout
    }

    /// What the call's waits fail with: the timeout, and the cache's name.
    pub(crate) fn wait(&self) -> Wait {
        Wait {
            after: self.timeout,
            cache: self.name,
        }
    }

    /// The near cache's settings, `None` when values are not kept in process memory (see
    /// [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ruecache::Options::DEFAULT.near_cache(), None);
    /// ```
    pub fn near_cache(&self) -> Option<NearCache> {
        self.near
    }

    /// Whether committed values record their [timing](crate::codec::Timing): needed by
    /// refresh-ahead and stale values.
    pub(crate) fn timed(&self) -> bool {
        self.ttl.is_some() && (self.refresh_beta.is_some() || self.stale_for.is_some())
    }

    /// How long a timed value's key lives past its logical expiry, in ms.
    pub(crate) fn stale_ms(&self) -> u64 {
        self.stale_for.map_or(0, |d| d.as_millis() as u64)
    }

    /// Checks the settings; the error message names the setting, what it accepts and how to
    /// fix it.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.check().map_err(|msg| self.config_error(msg))
    }

    /// A configuration error of this cache, named after it when it has a name.
    pub(crate) fn config_error(&self, msg: &str) -> Error {
        Error::Config(match self.name {
            Some(name) => format!("cache `{name}`: {msg}"),
            None => msg.to_owned(),
        })
    }

    /// The rules of [`validate`](Self::validate), in a `const fn`: the one place they are
    /// written. The builder checks them when it builds a cache, and `#[cached_batch]` while the
    /// program compiles (see `__private::checked`).
    pub(crate) const fn check(&self) -> Result<(), &'static str> {
        const MS: u128 = 1_000_000;
        let max_ttl = Self::MAX_TTL.as_nanos();
        let max_timeout = Self::MAX_TIMEOUT.as_nanos();
        if let Some(ttl) = self.absent_ttl {
            if ttl.as_nanos() < MS || ttl.as_nanos() > max_ttl {
                return Err(
                    "`absent_ttl` must be between 1 ms and 100 years (`Options::MAX_TTL`); leave it \
                     unset for the data TTL",
                );
            }
        }
        if let Some(ttl) = self.ttl {
            if ttl.as_nanos() < MS {
                return Err(
                    "`ttl` must be at least 1 ms; use `no_expiry()` for values that never expire",
                );
            }
            if ttl.as_nanos() > max_ttl {
                return Err(
                    "`ttl` must be at most 100 years (`Options::MAX_TTL`); use `no_expiry()` for \
                     values that never expire",
                );
            }
        }
        // Written so that NaN fails too.
        if !(self.jitter >= 0.0 && self.jitter <= 1.0) {
            return Err(
                "`jitter` must be a fraction between 0.0 (off) and 1.0, e.g. 0.2 for ±20 %",
            );
        }
        if self.lock_ttl.as_nanos() < MS {
            return Err("`lock_ttl` must be at least 1 ms; it bounds how long a crashed filler blocks others");
        }
        if self.lock_ttl.as_nanos() > max_ttl {
            return Err(
                "`lock_ttl` must be at most 100 years (`Options::MAX_TTL`); it bounds how long a \
                 crashed filler blocks others, so set it a little above your slowest fetch",
            );
        }
        if self.timeout.is_zero() {
            return Err("`timeout` must be greater than zero");
        }
        if self.timeout.as_nanos() > max_timeout {
            return Err(
                "`timeout` must be at most 365 days (`Options::MAX_TIMEOUT`); set it a little \
                 above the longest a call may wait, e.g. 30 s",
            );
        }
        if self.backoff_min.is_zero() || self.backoff_min.as_nanos() > self.backoff_max.as_nanos() {
            return Err("`backoff` needs 0 < min <= max, e.g. 25 ms and 1 s");
        }
        if self.backoff_max.as_nanos() > max_timeout {
            return Err(
                "`backoff` max must be at most 365 days (`Options::MAX_TIMEOUT`), e.g. 1 s; a \
                 waiter never sleeps past its call's timeout anyway",
            );
        }
        if let Some(beta) = self.refresh_beta {
            // Written so that NaN fails too.
            if !(beta > 0.0 && beta <= 100.0) {
                return Err(
                    "`refresh_beta` must be above 0.0 and at most 100.0: 1.0 is the optimum of the \
                     XFetch draw, above 1.0 refreshes earlier, below later",
                );
            }
            if self.ttl.is_none() {
                return Err(
                    "`refresh_ahead` needs a `ttl`: values that never expire are never refreshed \
                     ahead of their expiry",
                );
            }
        }
        if let Some(stale) = self.stale_for {
            if stale.as_nanos() < MS || stale.as_nanos() > max_ttl {
                return Err("`stale_for` must be between 1 ms and 100 years (`Options::MAX_TTL`)");
            }
            if self.ttl.is_none() {
                return Err("`stale_for` needs a `ttl`: values that never expire are never stale");
            }
        }
        if let Some(near) = self.near {
            if let Err(msg) = near.check() {
                return Err(msg);
            }
        }
        if self.stale_retry.as_nanos() < MS || self.stale_retry.as_nanos() > max_timeout {
            return Err(
                "`stale_retry` must be between 1 ms and 365 days (`Options::MAX_TIMEOUT`), e.g. 5 s",
            );
        }
        if let Some(hard) = self.fetch_timeout {
            if hard.as_nanos() < MS || hard.as_nanos() > max_timeout {
                return Err(
                    "`fetch_timeout` must be between 1 ms and 365 days (`Options::MAX_TIMEOUT`)",
                );
            }
        }
        if let Some(soft) = self.fetch_soft_timeout {
            if soft.as_nanos() < MS {
                return Err("`fetch_soft_timeout` must be at least 1 ms");
            }
            match self.fetch_timeout {
                Some(hard) if soft.as_nanos() >= hard.as_nanos() => {
                    return Err(
                        "`fetch_soft_timeout` must be shorter than `fetch_timeout`: past the soft \
                         timeout a stale value is served, past the hard one the call fails",
                    );
                }
                _ if soft.as_nanos() > max_timeout => {
                    return Err(
                        "`fetch_soft_timeout` must be at most 365 days (`Options::MAX_TIMEOUT`)",
                    );
                }
                _ => {}
            }
        }
        if self.unlock_threshold.as_nanos() >= self.lock_ttl.as_nanos() {
            return Err(
                "`unlock_threshold` must be shorter than `lock_ttl`, e.g. 10 ms for a 5 s lock, \
                 or failed fills never release their locks",
            );
        }
        Ok(())
    }

    // The setters, shared by `CacheBuilder` and `#[cached_batch]` (whose generated code calls
    // them in a `const`); neither checks: `check` does, once all are set.

    #[doc(hidden)]
    pub const fn set_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    #[doc(hidden)]
    pub const fn set_absent_ttl(mut self, ttl: Duration) -> Self {
        self.absent_ttl = Some(ttl);
        self
    }

    #[doc(hidden)]
    pub const fn set_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    #[doc(hidden)]
    pub const fn set_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    #[doc(hidden)]
    pub const fn set_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[doc(hidden)]
    pub const fn set_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    #[doc(hidden)]
    pub const fn set_unlock_threshold(mut self, threshold: Duration) -> Self {
        self.unlock_threshold = threshold;
        self
    }

    #[doc(hidden)]
    pub const fn set_fallback_to_source(mut self, on: bool) -> Self {
        self.fallback_to_source = on;
        self
    }

    #[doc(hidden)]
    pub const fn set_name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    #[doc(hidden)]
    pub const fn set_refresh_beta(mut self, beta: f64) -> Self {
        self.refresh_beta = Some(beta);
        self
    }

    #[doc(hidden)]
    pub const fn set_stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = Some(stale_for);
        self
    }

    #[doc(hidden)]
    pub const fn set_stale_retry(mut self, retry: Duration) -> Self {
        self.stale_retry = retry;
        self
    }

    #[doc(hidden)]
    pub const fn set_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = Some(timeout);
        self
    }

    #[doc(hidden)]
    pub const fn set_near(mut self, near: NearCache) -> Self {
        self.near = Some(near);
        self
    }

    #[doc(hidden)]
    pub const fn set_fetch_soft_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_soft_timeout = Some(timeout);
        self
    }

    /// The data TTL for one key in milliseconds, with its deterministic jitter; 0 for no expiry.
    pub(crate) fn data_ttl_ms(&self, key: &str) -> u64 {
        self.jittered_ms(self.ttl, key)
    }

    /// [`data_ttl_ms`](Self::data_ttl_ms) for an id cached as absent.
    pub(crate) fn absent_ttl_ms(&self, key: &str) -> u64 {
        self.jittered_ms(self.absent_ttl.or(self.ttl), key)
    }

    fn jittered_ms(&self, ttl: Option<Duration>, key: &str) -> u64 {
        let Some(ttl) = ttl else { return 0 };
        let base = ttl.as_millis() as f64;
        let factor = 1.0 + self.jitter * (2.0 * unit_hash(key) - 1.0);
        ((base * factor).round() as u64).max(1)
    }
}

/// A wait bounded by a timeout, and what it fails with: [`Error::Timeout`] naming the timeout
/// and the cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    pub(crate) after: Duration,
    pub(crate) cache: Option<&'static str>,
}

impl Wait {
    /// The same wait, bounded by `after` instead.
    pub(crate) fn bounded(self, after: Duration) -> Self {
        Self { after, ..self }
    }

    /// The error of a wait that did not end in time.
    pub(crate) fn timed_out(self) -> Error {
        Error::Timeout {
            after: self.after,
            cache: self.cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults the README's table and the issue promise.
    #[test]
    fn defaults_are_the_documented_ones() {
        let o = Options::default();
        assert_eq!(o.ttl, Some(Duration::from_secs(5 * 60)));
        assert_eq!(o.jitter, 0.2);
        assert_eq!(o.lock_ttl, Duration::from_secs(5));
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(
            (o.backoff_min, o.backoff_max),
            (Duration::from_millis(25), Duration::from_secs(1))
        );
        assert_eq!(o.unlock_threshold, Duration::from_millis(10));
        assert!(!o.fallback_to_source);
        assert_eq!(o.absent_ttl, None, "absent ids live as long as values");
        assert!(o.validate().is_ok());
    }

    #[test]
    fn jitter_stays_in_range_and_is_deterministic() {
        let o = Options::DEFAULT;
        for i in 0..1000 {
            let key = format!("k:{i}");
            let ttl = o.data_ttl_ms(&key);
            assert!((240_000..=360_000).contains(&ttl), "{ttl}");
            assert_eq!(ttl, o.data_ttl_ms(&key));
        }
        let off = Options { jitter: 0.0, ..o };
        assert_eq!(off.data_ttl_ms("x"), 300_000);
        let none = Options { ttl: None, ..o };
        assert_eq!(none.data_ttl_ms("x"), 0);
    }

    #[test]
    fn nonsense_is_rejected() {
        let o = Options::DEFAULT;
        assert!(o.validate().is_ok());
        for bad in [
            Options {
                ttl: Some(Duration::ZERO),
                ..o
            },
            Options { jitter: 1.5, ..o },
            Options {
                absent_ttl: Some(Duration::ZERO),
                ..o
            },
            Options {
                absent_ttl: Some(Options::MAX_TTL + Duration::from_millis(1)),
                ..o
            },
            Options {
                jitter: f64::NAN,
                ..o
            },
            Options {
                lock_ttl: Duration::ZERO,
                ..o
            },
            Options {
                timeout: Duration::ZERO,
                ..o
            },
            Options {
                backoff_min: Duration::from_secs(2),
                ..o
            },
            Options {
                backoff_min: Duration::ZERO,
                ..o
            },
            Options {
                backoff_max: Options::MAX_TIMEOUT + Duration::from_millis(1),
                ..o
            },
            Options {
                backoff_min: Duration::MAX,
                backoff_max: Duration::MAX,
                ..o
            },
            Options {
                ttl: Some(Options::MAX_TTL + Duration::from_millis(1)),
                ..o
            },
            Options {
                ttl: Some(Duration::MAX),
                ..o
            },
            Options {
                lock_ttl: Options::MAX_TTL + Duration::from_millis(1),
                ..o
            },
            Options {
                timeout: Options::MAX_TIMEOUT + Duration::from_millis(1),
                ..o
            },
            Options {
                timeout: Duration::MAX,
                ..o
            },
            Options {
                unlock_threshold: o.lock_ttl,
                ..o
            },
            Options {
                unlock_threshold: o.lock_ttl + Duration::from_millis(1),
                ..o
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_largest_accepted_settings_are_sent_exactly_and_cannot_overflow() {
        assert_eq!(Options::MAX_TTL, Duration::from_secs(36_500 * 86_400));
        assert_eq!(Options::MAX_TIMEOUT, Duration::from_secs(365 * 86_400));
        let o = Options {
            ttl: Some(Options::MAX_TTL),
            jitter: 1.0,
            lock_ttl: Options::MAX_TTL,
            timeout: Options::MAX_TIMEOUT,
            backoff_min: Options::MAX_TIMEOUT,
            backoff_max: Options::MAX_TIMEOUT,
            ..Options::DEFAULT
        };
        assert!(o.validate().is_ok());
        // The engine's arithmetic on them: deadlines, doubled backoff, TTLs in milliseconds.
        let _deadline = std::time::Instant::now() + o.timeout + o.backoff_max * 2;
        let ms = u64::try_from(Options::MAX_TTL.as_millis()).unwrap();
        // The largest TTL sent (the data TTL at full jitter) plus today's Unix time in ms, as
        // Redis adds them, stays below `i64::MAX`, where Redis would refuse it.
        let largest = (0..1000)
            .map(|i| o.data_ttl_ms(&format!("k:{i}")))
            .max()
            .unwrap();
        assert!(largest <= 2 * ms);
        let now_ms = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        assert!(largest.checked_add(now_ms).unwrap() < i64::MAX.unsigned_abs());
        // Exactly the limits are accepted, one millisecond more is not.
        let over = Options {
            ttl: Some(Options::MAX_TTL + Duration::from_millis(1)),
            ..o
        };
        let Err(Error::Config(msg)) = over.validate() else {
            panic!("a TTL over the limit is accepted");
        };
        assert!(
            msg.contains("no_expiry()"),
            "the message says how to fix it: {msg}"
        );
    }
}
