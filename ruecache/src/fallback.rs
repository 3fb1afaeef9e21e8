//! Degraded mode: while Redis is unreachable, calls are served straight from the source instead
//! of failing (off by default, see
//! [`CacheBuilder::fallback_to_source`](crate::CacheBuilder::fallback_to_source)).
//!
//! A call runs the normal protocol first. If that fails because Redis cannot be reached, the
//! ids it was asked for are fetched from the source and returned; nothing is written anywhere.
//! Callers on one connection still share fetches: an id another caller is fetching is waited
//! for, and that caller hands its followers the value (there is no Redis to read it from).
//! The first such call of an outage logs a warning; the first call that gets through to Redis
//! again logs that it is back.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;

use redis::{ErrorKind, ServerErrorKind, Value};
use tracing::{info, warn};

use crate::cache::Cache;
use crate::codec::{seal, Codec};
use crate::fill::{self, dedup, read, Read};
use crate::flight::{Claimed, Flight};
use crate::stats::Counters;
use crate::Error;

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
pub(crate) async fn get_and_fill<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    ids: Vec<Id>,
    fetch: F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
    E: From<Error>,
{
    if !cache.spec.options.fallback_to_source {
        return fill::get_and_fill(cache, ids, fetch, out).await;
    }
    // Boxed: callers that never fall back keep a small future.
    Box::pin(degradable(cache, ids, fetch, out)).await
}

/// [`fill::get_and_fill_one`], falling back to the source if the cache is set to.
pub(crate) async fn get_and_fill_one<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    id: Id,
    fetch: F,
) -> Result<Option<(Id, T)>, E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
    E: From<Error>,
{
    if !cache.spec.options.fallback_to_source {
        return fill::get_and_fill_one(cache, id, fetch).await;
    }
    let mut out = Vec::with_capacity(1);
    Box::pin(degradable(cache, vec![id], fetch, &mut out)).await?;
    Ok(out.pop())
}

async fn degradable<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    ids: Vec<Id>,
    mut fetch: F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
    E: From<Error>,
{
    let start = out.len();
    let tagged = |ids| {
        let fut = fetch(ids);
        async move { fut.await.map_err(Failure::Source) }
    };
    let result = fill::get_and_fill(cache, ids.clone(), tagged, out).await;
    let stats = &cache.spec.stats;
    match result {
        Ok(()) => {
            if stats.outage.load(Relaxed) && stats.outage.swap(false, Relaxed) {
                info!("redis answers again; caching resumed");
            }
            Ok(())
        }
        Err(Failure::Source(e)) => Err(e),
        Err(Failure::Cache(e)) if unreachable(&e) => {
            if !stats.outage.swap(true, Relaxed) {
                warn!(error = %e, "redis is unreachable; serving from the source until it answers");
            }
            out.truncate(start);
            from_source(cache, ids, &mut fetch, out).await
        }
        Err(Failure::Cache(e)) => Err(e.into()),
    }
}

/// Whether `e` means Redis could not be reached (rather than refused what was asked).
fn unreachable(e: &Error) -> bool {
    match e {
        Error::Timeout(_) => true,
        Error::Redis(e) => {
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

/// Fetches `ids` from the source, sharing fetches with other callers on the connection.
async fn from_source<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    mut ids: Vec<Id>,
    fetch: &mut F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone,
    C: Codec<T>,
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
    E: From<Error>,
{
    dedup(&mut ids);
    Counters::add(&cache.spec.stats.served_from_source, ids.len());
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
    Counters::add(&cache.spec.stats.flight_waits, follow.len());
    if !lead.is_empty() {
        let asked = lead.iter().map(|(id, _)| id.clone()).collect();
        let mut fetched: HashMap<Id, T> = fetch(asked).await?.into_iter().collect();
        for (id, key) in lead {
            let value = fetched.remove(&id);
            // A value that cannot be sealed is not handed over: its followers fetch it.
            if let Ok(sealed) = seal(&cache.codec, value.as_ref()) {
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
        let handed = landing.wait().await;
        match handed.map(|sealed| read(&cache.codec, Value::BulkString(sealed.to_vec()))) {
            Some(Read::Value(value)) => out.push((id, value)),
            Some(Read::Absent) => {}
            // The leader failed, was dropped, or filled through Redis after all.
            Some(Read::Miss { .. }) | None => again.push(id),
        }
    }
    if !again.is_empty() {
        out.extend(fetch(again).await?);
    }
    Ok(())
}
