//! Per-cache settings, their defaults and their validation.

use std::time::Duration;

use crate::keys::unit_hash;
use crate::Error;

/// Per-cache settings. Set them through [`CacheBuilder`](crate::CacheBuilder); the defaults are
/// those of the Go original.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub(crate) ttl: Option<Duration>,
    pub(crate) jitter: f64,
    pub(crate) lock_ttl: Duration,
    pub(crate) version_ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) unlock_threshold: Duration,
    pub(crate) fallback_to_source: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Options {
    /// Data TTL 5 min with ±20 % per-id jitter, lock TTL 5 s, version TTL 10 min, timeout 30 s,
    /// wait backoff 25 ms to 1 s, unlock threshold 10 ms, no fallback to the source when Redis
    /// is unreachable.
    pub const DEFAULT: Self = Self {
        ttl: Some(Duration::from_secs(300)),
        jitter: 0.2,
        lock_ttl: Duration::from_secs(5),
        version_ttl: Duration::from_secs(600),
        timeout: Duration::from_secs(30),
        backoff_min: Duration::from_millis(25),
        backoff_max: Duration::from_secs(1),
        unlock_threshold: Duration::from_millis(10),
        fallback_to_source: false,
    };

    /// The data TTL, `None` for no expiry.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The overall timeout of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The lock TTL.
    pub fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    /// Whether calls are served straight from the source while Redis is unreachable.
    pub fn fallback_to_source(&self) -> bool {
        self.fallback_to_source
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let fail = |msg: &str| Err(Error::Config(msg.to_owned()));
        if let Some(ttl) = self.ttl {
            if ttl < Duration::from_millis(1) {
                return fail(
                    "`ttl` must be at least 1 ms; use `no_expiry()` for values that never expire",
                );
            }
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return fail(
                "`jitter` must be a fraction between 0.0 (off) and 1.0, e.g. 0.2 for ±20 %",
            );
        }
        if self.lock_ttl < Duration::from_millis(1) {
            return fail("`lock_ttl` must be at least 1 ms; it bounds how long a crashed filler blocks others");
        }
        if self.version_ttl < self.lock_ttl {
            return fail(
                "`version_ttl` must be at least `lock_ttl`, or every slow fill is refused as stale",
            );
        }
        if self.timeout.is_zero() {
            return fail("`timeout` must be greater than zero");
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return fail("`backoff` needs 0 < min <= max, e.g. 25 ms and 1 s");
        }
        if self.unlock_threshold >= self.lock_ttl {
            return fail("`unlock_threshold` must be shorter than `lock_ttl`");
        }
        Ok(())
    }

    /// The data TTL for one key in milliseconds, with its deterministic jitter; 0 for no expiry.
    pub(crate) fn data_ttl_ms(&self, key: &str) -> u64 {
        let Some(ttl) = self.ttl else { return 0 };
        let base = ttl.as_millis() as f64;
        let factor = 1.0 + self.jitter * (2.0 * unit_hash(key) - 1.0);
        ((base * factor).round() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                jitter: f64::NAN,
                ..o
            },
            Options {
                lock_ttl: Duration::ZERO,
                ..o
            },
            Options {
                version_ttl: Duration::from_secs(1),
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
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
    }
}
