//! Invalidation: after a write to the source, the ids' cached values go, and so do the leases of
//! fills in progress, so that none of them can write what it read before the write.

use crate::cache::Cache;
use crate::keys::{channel, legacy_version_key};
use crate::scripts::{send_to_end, sharded_flag, Arg, Calls, INVALIDATE};
use crate::stats::Stat;
use crate::Error;

/// Deletes the data keys of `ids` (values and leases alike), in one script call per slot group,
/// and wakes callers waiting for a deleted lease. Runs to the end in a task of its own, so that
/// it happens even if the caller stops waiting.
pub(crate) async fn invalidate<Id, T, C, I>(cache: &Cache<Id, T, C>, ids: I) -> Result<(), Error>
where
    I: IntoIterator<Item = Id>,
{
    let mut keys = ids
        .into_iter()
        .map(|id| cache.data_key(&id))
        .collect::<Result<Vec<_>, _>>()?;
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    let options = &cache.spec.options;
    let sharded = sharded_flag(&cache.conn);
    let mut calls = Calls::new(&INVALIDATE, keys.len(), keys.len() * 96);
    for key in &keys {
        calls.push(
            &[key.as_bytes(), &legacy_version_key(key)],
            &[Arg::Bytes(&channel(key)), Arg::Bytes(sharded)],
        );
    }
    let span = crate::stats::cache_span!(options.name, "invalidate", ids = keys.len());
    // The near cache forgets the keys before the write, and again after it: no read in flight
    // can put an old value back (see `near`).
    let forget = || {
        if let Some(near) = &cache.near {
            near.invalidate(keys.iter().map(|key| key.as_bytes()));
        }
    };
    forget();
    let sent = send_to_end(&cache.conn, calls, options.wait(), span, "invalidation").await;
    forget();
    sent?;
    cache.spec.stats.add(Stat::Invalidations, keys.len());
    Ok(())
}
