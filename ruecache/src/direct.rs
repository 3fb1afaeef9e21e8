//! Reading the cache without filling it, and writing values through after a write to the
//! source.

use tokio::time::Instant;

use crate::batch::get_many;
use crate::cache::Cache;
use crate::codec::{seal, Codec, Timing};
use crate::fill::deadline::within;
use crate::fill::lease::now_ms;
use crate::fill::refresh::Age;
use crate::fill::{dedup, read, Read};
use crate::keys::{channel, legacy_version_key};
use crate::scripts::{send_to_end, sharded_flag, Arg, Calls, SET};
use crate::stats::Stat;
use crate::Error;

/// What the cache holds for an id, from [`Cache::get`](crate::Cache::get) and
/// [`Cache::get_many`](crate::Cache::get_many).
///
/// # Examples
///
/// ```
/// use ruecache::Lookup;
///
/// let found: Lookup<String> = Lookup::Found("gear".into());
/// assert_eq!(found.clone().found(), Some("gear".to_owned()));
/// assert!(Lookup::<String>::Absent.is_cached());
/// assert!(!Lookup::<String>::NotCached.is_cached());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The cached value.
    Found(T),
    /// A value past its TTL, kept because the cache keeps stale values (see
    /// [`CacheBuilder::stale_for`](crate::CacheBuilder::stale_for)): the next call that fills
    /// the id refills it.
    Stale(T),
    /// Cached as absent: the source did not have the id when it was last filled.
    Absent,
    /// Not cached (never filled, expired, invalidated, being filled right now, or not readable
    /// by this cache's codec).
    NotCached,
}

impl<T> Lookup<T> {
    /// The value, if one is cached, fresh or [stale](Self::Stale).
    pub fn found(self) -> Option<T> {
        match self {
            Self::Found(value) | Self::Stale(value) => Some(value),
            Self::Absent | Self::NotCached => None,
        }
    }

    /// Whether the cache answers for the id: a value, or "absent".
    pub fn is_cached(&self) -> bool {
        !matches!(self, Self::NotCached)
    }
}

/// Reads `ids` (duplicates once) in one round trip per slot group; fills nothing.
pub(crate) async fn lookup<Id, T, C>(
    cache: &Cache<Id, T, C>,
    mut ids: Vec<Id>,
) -> Result<Vec<(Id, Lookup<T>)>, Error>
where
    Id: Eq + std::hash::Hash,
    C: Codec<T>,
{
    dedup(&mut ids);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys = ids
        .iter()
        .map(|id| cache.data_key(id))
        .collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let options = &cache.spec.options;
    let deadline = Instant::now() + options.timeout;
    let values = within(deadline, options.wait(), get_many(&cache.conn, &keys)).await?;
    let mut hits = 0;
    let found = ids
        .into_iter()
        .zip(values)
        .map(|(id, value)| {
            let lookup = match read(&*cache.codec, value, None) {
                Read::Value(v, Age::Stale(_) | Age::Held) => Lookup::Stale(v),
                Read::Value(v, Age::Fresh | Age::Due(_)) => Lookup::Found(v),
                Read::Absent => Lookup::Absent,
                Read::Miss => Lookup::NotCached,
            };
            hits += usize::from(lookup.is_cached());
            (id, lookup)
        })
        .collect::<Vec<_>>();
    cache.spec.stats.add(Stat::Hits, hits);
    cache.spec.stats.add(Stat::Misses, found.len() - hits);
    Ok(found)
}

/// Writes `entries` (the last of duplicate ids wins) over whatever their data keys hold, in one
/// script call per slot group, from a task of its own so that a cancelled caller still writes.
pub(crate) async fn set_many<Id, T, C>(
    cache: &Cache<Id, T, C>,
    entries: Vec<(Id, T)>,
) -> Result<(), Error>
where
    C: Codec<T>,
{
    if entries.is_empty() {
        return Ok(());
    }
    let options = &cache.spec.options;
    let mut sealed = Vec::with_capacity(entries.len());
    let now = now_ms();
    for (id, value) in &entries {
        let key = cache.data_key(id)?;
        // A value written through has no fetch time: refresh-ahead draws for it only at its
        // expiry.
        let timing = options.timed().then(|| Timing {
            expiry: now + options.data_ttl_ms(&key),
            fill_ms: 0,
        });
        let value = seal(&*cache.codec, Some(value), timing)?;
        sealed.push((key, value));
    }
    // One write per key, the last one given: a script call must not name a key twice with
    // different values (the order inside one call is the order given, but keep it plain).
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<(String, Vec<u8>)> = sealed
        .into_iter()
        .rev()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect();
    unique.reverse();
    let sharded = sharded_flag(&cache.conn);
    let bytes = unique.iter().map(|(k, v)| 2 * k.len() + v.len() + 64).sum();
    let mut calls = Calls::new(&SET, unique.len(), bytes);
    for (key, value) in &unique {
        calls.push(
            &[key.as_bytes(), &legacy_version_key(key)],
            &[
                Arg::Bytes(value),
                Arg::Int(match options.data_ttl_ms(key) {
                    0 => 0,
                    ttl => ttl + options.stale_ms(),
                }),
                Arg::Bytes(&channel(key)),
                Arg::Bytes(sharded),
            ],
        );
    }
    let span = crate::stats::cache_span!(options.name, "set", ids = unique.len());
    // As an invalidation does (see `invalidate`).
    let forget = || {
        if let Some(near) = &cache.near {
            near.invalidate(unique.iter().map(|(key, _)| key.as_bytes()));
        }
    };
    forget();
    let sent = send_to_end(&cache.conn, calls, options.wait(), span, "write").await;
    forget();
    sent?;
    cache.spec.stats.add(Stat::Sets, unique.len());
    Ok(())
}
