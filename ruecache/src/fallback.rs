//! Degraded mode: while Redis is unreachable, calls are served straight from the source instead
//! of failing (off by default, see
//! [`CacheBuilder::fallback_to_source`](crate::CacheBuilder::fallback_to_source)).
//!
//! A call runs the normal protocol first. If that fails because Redis cannot be reached, the
//! connection is marked as in an outage, and the ids the call has no value for yet are fetched
//! from the source and returned; nothing is written anywhere. A timeout only counts if Redis
//! then does not answer a probe either: a call that timed out waiting for another caller's slow
//! fill gets its [`Error::Timeout`] as without the fallback. From then on, calls on that
//! connection (and its clones) go straight to the source without waiting on Redis, while one
//! background task probes Redis a few times a second; once Redis answers, calls use it again.
//! Callers on one connection still share fetches: an id another caller is fetching is waited
//! for, and that caller hands its followers the value (there is no Redis to read it from). An
//! outage is logged once when it starts (a warning) and once when it ends.
//!
//! A probe is a `GET` of a key derived from an id the failed call asked for (the previous
//! protocol's version key, in the id's slot), one per hash slot the call needed (one in all on a
//! standalone server): a short value or none, a command the cache's minimal ACL allows, and on a cluster it reaches the very nodes the call needed, so the outage lasts as
//! long as one of them is down, not longer (a node the call did not need may be down for good)
//! and not shorter (a probe of a healthy node would end it, and the next call would start it
//! again). Any reply counts as an answer, a refusal included.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Value;
use tracing::{info, warn};

use crate::cache::Cache;
use crate::codec::{seal, Codec};
use crate::fill::{self, dedup, read, Fetch, Read};
use crate::flight::{Claimed, Flight};
use crate::keys::{legacy_version_key, slot};
use crate::stats::Stat;
use crate::{Connection, Error};

/// The error of a call run with the fallback on: the source's own error, or the cache's.
enum Failure<E> {
    Source(E),
    Cache(Error),
}

impl<E> From<Error> for Failure<E> {
    fn from(e: Error) -> Self {
        Self::Cache(e)
    }
}

/// [`fill::get_and_fill`], falling back to the source if the cache is set to.
pub(crate) async fn get_and_fill<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    ids: Vec<Id>,
    fetch: F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    if !cache.spec.options.fallback_to_source {
        return fill::get_and_fill(cache, ids, fetch, out).await;
    }
    // Boxed: callers that never fall back keep a small future.
    Box::pin(degradable(cache, ids, fetch, out)).await
}

/// [`fill::get_and_fill_one`], falling back to the source if the cache is set to.
pub(crate) async fn get_and_fill_one<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    id: Id,
    fetch: F,
) -> Result<Option<(Id, T)>, E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    if !cache.spec.options.fallback_to_source {
        return fill::get_and_fill_one(cache, id, fetch).await;
    }
    let mut out = Vec::with_capacity(1);
    Box::pin(degradable(cache, vec![id], fetch, &mut out)).await?;
    Ok(out.pop())
}

async fn degradable<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    ids: Vec<Id>,
    mut fetch: F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    let outage = cache.conn.outage();
    if outage.is_down() {
        return from_source(cache, ids, &mut fetch, out).await;
    }
    let start = out.len();
    let tagged = |ids| {
        let fut = fetch.call(ids);
        async move { fut.await.map_err(Failure::Source) }
    };
    let result = fill::get_and_fill(cache, ids.clone(), tagged, out).await;
    match result {
        Ok(()) => Ok(()),
        Err(Failure::Source(e)) => Err(e),
        Err(Failure::Cache(e)) if e.is_unreachable() => {
            let probe_timeout = probe_timeout(cache.spec.options.timeout);
            let probes = probe_keys(cache, &ids);
            if matches!(e, Error::Timeout { .. })
                && answers(&cache.conn, &probes, probe_timeout).await
            {
                // Redis answers: the call waited too long for other callers, not for Redis.
                return Err(e.into());
            }
            if outage.begin(&cache.conn, probes, probe_timeout) {
                warn!(error = %e, "redis is unreachable; serving from the source until it answers");
            }
            // What the call already has (read before the outage, or fetched before a commit
            // that could not reach Redis) is kept; the rest comes from the source.
            let have: HashSet<&Id> = out[start..].iter().map(|(id, _)| id).collect();
            let rest: Vec<Id> = ids.into_iter().filter(|id| !have.contains(id)).collect();
            drop(have);
            from_source(cache, rest, &mut fetch, out).await
        }
        Err(Failure::Cache(e)) => Err(e.into()),
    }
}

/// How long a probe waits for Redis's answer: the cache's timeout, at most a second.
fn probe_timeout(timeout: Duration) -> Duration {
    timeout.min(Duration::from_secs(1))
}

/// How often a connection in an outage probes Redis.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Whether a connection (shared by its clones) is in an outage: Redis found unreachable and not
/// answering since.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    down: AtomicBool,
}

impl Outage {
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Relaxed)
    }

    /// Marks the outage; the first to do so starts the probe that ends it, and is told so
    /// (`true`) to log it.
    fn begin(self: &Arc<Self>, conn: &Connection, probes: Vec<Vec<u8>>, timeout: Duration) -> bool {
        if self.down.swap(true, Relaxed) {
            return false;
        }
        let probe = probe(
            Arc::downgrade(self),
            conn.without_liveness(),
            probes,
            timeout,
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(probe);
            }
            // Not reached: calls run on a runtime. Without a probe, calls try Redis again.
            Err(_) => self.down.store(false, Relaxed),
        }
        true
    }
}

/// Probes Redis until it answers, then ends the outage; stops early once the connection and all
/// its clones are gone.
async fn probe(outage: Weak<Outage>, conn: Connection, keys: Vec<Vec<u8>>, timeout: Duration) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(outage) = outage.upgrade() else {
            return;
        };
        if answers(&conn, &keys, timeout).await {
            outage.down.store(false, Relaxed);
            info!("redis answers again; caching resumed");
            return;
        }
    }
}

/// What a probe reads (see the module docs): a key derived from one id per hash slot of `ids`
/// on a cluster, from the first id on a standalone server.
fn probe_keys<Id, T, C>(cache: &Cache<Id, T, C>, ids: &[Id]) -> Vec<Vec<u8>> {
    let probes = (ids.iter())
        .filter_map(|id| cache.data_key(id).ok())
        .map(|key| legacy_version_key(&key));
    if !cache.conn.is_cluster() {
        return probes.take(1).collect();
    }
    let mut slots = HashSet::new();
    probes.filter(|probe| slots.insert(slot(probe))).collect()
}

/// Whether Redis answers a `GET` of each of `keys` within `timeout`: any reply but one that
/// means Redis could not be reached (a refusal, `NOPERM` say, is an answer).
async fn answers(conn: &Connection, keys: &[Vec<u8>], timeout: Duration) -> bool {
    let probes = keys.iter().map(|key| {
        let mut get = redis::cmd("GET");
        get.arg(key);
        let mut conn = conn.clone();
        async move {
            match tokio::time::timeout(timeout, get.query_async::<Value>(&mut conn)).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => !Error::Redis(e).is_unreachable(),
                Err(_) => false,
            }
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .all(|answered| answered)
}

/// Fetches `ids` from the source, sharing fetches with other callers on the connection.
async fn from_source<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    mut ids: Vec<Id>,
    fetch: &mut F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    dedup(&mut ids);
    // How long a follower waits for its leader (which may be a normal fill, stuck on a Redis
    // that hangs until its own timeout) before fetching the id itself.
    let deadline = tokio::time::Instant::now() + cache.spec.options.timeout;
    cache.spec.stats.add(Stat::ServedFromSource, ids.len());
    let mut flight = Flight::new(cache.conn.flights());
    let mut lead = Vec::new();
    let mut follow = Vec::new();
    for id in ids {
        let key = cache.data_key(&id)?;
        match flight.claim(&key) {
            Claimed::Lead => lead.push((id, key)),
            Claimed::Follow(landing) => follow.push((id, landing)),
        }
    }
    cache.spec.stats.add(Stat::FlightWaits, follow.len());
    if !lead.is_empty() {
        let asked = lead.iter().map(|(id, _)| id.clone()).collect();
        let mut fetched: HashMap<Id, T> = fetch.call(asked).await?.into_iter().collect();
        for (id, key) in lead {
            let value = fetched.remove(&id);
            // A value that cannot be sealed is not handed over: its followers fetch it.
            if let Ok(sealed) = seal(&*cache.codec, value.as_ref(), None) {
                flight.land_with(&key, sealed.into());
            }
            if let Some(value) = value {
                out.push((id, value));
            }
        }
    }
    drop(flight);
    let mut again = Vec::new();
    for (id, landing) in follow {
        let handed = tokio::time::timeout_at(deadline, landing.wait())
            .await
            .unwrap_or_default();
        let sealed = handed.map(|sealed| Value::BulkString(sealed.to_vec()));
        match sealed.map(|sealed| read(&*cache.codec, sealed, None)) {
            Some(Read::Value(value, _)) => out.push((id, value)),
            Some(Read::Absent) => {}
            // The leader failed, was dropped, filled through Redis after all, or took too long.
            Some(Read::Miss) | None => again.push(id),
        }
    }
    if !again.is_empty() {
        // Only the ids asked for, whatever else the source returns.
        let asked: HashSet<Id> = again.iter().cloned().collect();
        let fetched = fetch.call(again).await?;
        out.extend(fetched.into_iter().filter(|(id, _)| asked.contains(id)));
    }
    Ok(())
}
