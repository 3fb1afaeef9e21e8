//! Fresh, due and stale values: refresh-ahead and serving stale values when a refill fails.
//!
//! A cache that refreshes ahead of expiry ([`CacheBuilder::refresh_ahead`]) or keeps values
//! past their TTL ([`CacheBuilder::stale_for`]) commits *timed* values: each records its
//! logical expiry and how long its fetch took (see [`Timing`](crate::codec::Timing)), read with
//! the value in the same round trip. Its key lives `stale_for` past the logical expiry.
//!
//! - **Refresh-ahead.** A read of a fresh value draws whether to refresh it now, by XFetch
//!   (Vattani, Chierichetti and Lowenstein, VLDB 2015): refresh when
//!   `now - δ·β·ln(u) ≥ expiry`, `u` uniform in (0, 1], δ the fetch time recorded with the value.
//!   The draw rarely wins long before the expiry and almost surely wins just before it, the
//!   earlier the slower the fetch. A read that wins returns the value at once and refreshes the
//!   id in the background.
//! - **Stale values.** A value past its logical expiry is refilled by the caller, like a miss;
//!   if the refill fails (the fetch errors or times out, or Redis refuses the refill), the stale
//!   value is returned instead of the error.
//!
//! Both take the id's **refresh lease** first: `refresh.lua` puts a lease (`0xC1 'R'`, a fresh
//! token and a deadline) before the value in the data key, keeping the key's TTL, only if the key
//! still starts with what the caller read. Readers keep being served the value behind it; other
//! would-be refreshers leave it alone until its deadline, so one caller in the whole fleet
//! refreshes an id at a time. The refreshed value is committed by the fill's own compare-and-set
//! (`commit.lua`), which writes only over the caller's refresh lease: the safety argument of the
//! fill holds as it is. An invalidation deletes the key, lease and value together, so neither a
//! refresh that read the source before it nor a stale value can come back after it.
//!
//! A refresh or refill that fails leaves its lease in place with a deadline [`stale_retry`]
//! away: until then, readers of a stale value get it at once, and nobody calls the source for
//! the id again (the throttle). A refresher that dies leaves its lease until its lock TTL ends.
//!
//! [`CacheBuilder::refresh_ahead`]: crate::CacheBuilder::refresh_ahead
//! [`CacheBuilder::stale_for`]: crate::CacheBuilder::stale_for
//! [`stale_retry`]: crate::CacheBuilder::stale_retry

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use redis::Value;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument as _};

use super::commit::{fetch_within, seal_fetched, Commit, Fetched};
use super::deadline::within;
use super::lease::{Lease, Token};
use super::{read, Fetch, Pending, Read};
use crate::cache::{Cache, Shared, Spec};
use crate::codec::{Codec, Found};
use crate::options::Options;
use crate::scripts::{send, Arg, Calls, REFRESH};
use crate::stats::Stat;
use crate::{Connection, Error};

/// Starts the background refresh of due ids: made by
/// [`CacheBuilder::refresh_ahead`](crate::CacheBuilder::refresh_ahead) around the user's fetch,
/// where the value type is known to be `Send + 'static`, so that the engine's calls need not ask
/// it of every value type.
pub(crate) type Starter<Id, T> = Arc<dyn Fn(Job<Id, T>) + Send + Sync>;

/// What a background refresh needs of its cache.
pub(crate) struct Job<Id, T> {
    pub(crate) conn: Connection,
    pub(crate) spec: Shared<Spec>,
    pub(crate) codec: Arc<dyn Codec<T>>,
    pub(super) due: Vec<Aged<Id, ()>>,
    /// The refresh leases of `due`, already taken (a refill past its soft timeout hands its
    /// ids over); `None`: take them first.
    pub(super) held: Option<(Token, Lease)>,
}

/// The [`Starter`] of a user's refresh fetch.
pub(crate) fn starter<Id, T, F, Fut, R, E>(fetch: F) -> Starter<Id, T>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(Vec<Id>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: IntoIterator<Item = (Id, T)>,
    E: Display,
{
    let fetch = Arc::new(fetch);
    Arc::new(move |job: Job<Id, T>| {
        let fetch = Arc::clone(&fetch);
        let span = crate::stats::cache_span!(job.spec.options.name, "refresh", ids = job.due.len());
        let background = Arc::clone(job.conn.background());
        let work = async move {
            let fetch = |ids| {
                let fut = fetch(ids);
                async move {
                    match fut.await {
                        Ok(items) => Ok(items.into_iter().collect::<Vec<_>>()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            if let Err(e) = refresh(job, fetch).await {
                debug!(error = %e, "refresh ahead of expiry failed");
            }
        };
        if !background.spawn(work.instrument(span)) {
            debug!("no tokio runtime to refresh values ahead of their expiry");
        }
    })
}

/// How a present value stands, by its timing and the reader's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Age {
    /// Fresh (or untimed): serve it.
    Fresh,
    /// Fresh, and drawn for a refresh ahead of its expiry: serve it and refresh it. Holds the
    /// bytes the refresh lease compares (see [`Found::header`]).
    Due(Vec<u8>),
    /// Past its logical expiry: refill it; serve it if the refill fails. Holds the bytes the
    /// refresh lease compares.
    Stale(Vec<u8>),
    /// Past its logical expiry, and another caller's refresh lease is on it (a refill under
    /// way, or one that failed lately): serve it as it is.
    Held,
}

/// The age of the value `found` in `bytes` at `now` (ms since the epoch); `beta` is the
/// refresh-ahead draw's β, `None` when this read cannot refresh.
pub(crate) fn age(found: &Found, bytes: &[u8], now: u64, beta: Option<f64>) -> Age {
    let Some(timing) = found.timing else {
        return Age::Fresh;
    };
    let leased = found
        .refresh_deadline
        .is_some_and(|deadline| deadline > now);
    let seen = || bytes[..found.header()].to_vec();
    if now >= timing.expiry {
        return if leased {
            Age::Held
        } else {
            Age::Stale(seen())
        };
    }
    match beta {
        Some(beta) if !leased && draw(timing.expiry - now, timing.fill_ms, beta) => {
            Age::Due(seen())
        }
        _ => Age::Fresh,
    }
}

/// The XFetch draw: whether `-δ·β·ln(u) ≥ left` for `u` uniform in (0, 1], with `left` the
/// time to the expiry and δ the fetch time, both in ms.
fn draw(left: u64, fill_ms: u32, beta: f64) -> bool {
    let scale = f64::from(fill_ms.max(1)) * beta;
    // `-ln(u)` of a double in (0, 1] is below 38: far from the expiry, skip the random number.
    if left as f64 > scale * 38.0 {
        return false;
    }
    let u: f64 = 1.0 - rand::random::<f64>();
    -scale * u.ln() >= left as f64
}

/// An id whose value is due for a refresh (`V` is `()`), or stale (`V` is the value read,
/// served if the refill fails).
pub(crate) struct Aged<Id, V> {
    pub(super) id: Id,
    pub(super) key: String,
    /// What the refresh lease compares: the header the caller read.
    pub(super) seen: Vec<u8>,
    pub(super) value: V,
}

/// What taking a refresh lease found.
enum Taken {
    /// The caller's refresh lease is on the value.
    Yes,
    /// The key does not start with what the caller saw: what it holds now (`Nil` for nothing).
    Now(Value),
}

/// Takes the refresh leases of `ids`, by the bytes each caller saw (`refresh.lua`), or moves
/// the deadline of the caller's own.
async fn take<'a>(
    conn: &Connection,
    lease: Lease,
    ids: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<Taken>, Error> {
    let mut calls = Calls::new(&REFRESH, ids.len(), ids.len() * 160);
    for (key, seen) in ids {
        calls.push(
            &[key.as_bytes()],
            &[Arg::Bytes(lease.as_bytes()), Arg::Bytes(seen)],
        );
    }
    send(conn, calls)
        .await?
        .into_iter()
        .map(|reply| match reply {
            Value::Int(1) => Ok(Taken::Yes),
            Value::Int(0) => Ok(Taken::Now(Value::Nil)),
            v @ Value::BulkString(_) => Ok(Taken::Now(v)),
            other => Err(Error::UnexpectedReply(format!(
                "refresh returned {other:?}"
            ))),
        })
        .collect()
}

/// After a failed refresh or refill: keeps the caller's refresh leases on `keys` for
/// [`stale_retry`](crate::CacheBuilder::stale_retry), so that nobody calls the source for them
/// again before. Best effort: a lease this cannot move ends at its own deadline.
async fn throttle(conn: &Connection, options: &Options, token: Token, lease: Lease, keys: &[&str]) {
    let later = token.refresh_lease(options.stale_retry);
    let ids = keys.iter().map(|key| (*key, lease.as_bytes()));
    let deadline = Instant::now() + options.timeout;
    if let Err(e) = within(deadline, options.wait(), take(conn, later, ids)).await {
        debug!(error = %e, "could not hold off the next refill; it may come sooner");
    }
}

/// Counts and logs stale values served because their refill failed: a warning, once per
/// failed refill (the retry period spaces them out).
fn served_stale<Id, T>(cache: &Cache<Id, T, impl Sized>, n: usize, why: &dyn Display) {
    if n > 0 {
        cache.spec.stats.add(Stat::StaleServed, n);
        warn!(ids = n, reason = %why, "serving values past their TTL");
    }
}

/// Refills stale ids in this call: takes their refresh leases, fetches the ids it took, commits
/// them. What the refill cannot get (the fetch fails or passes a timeout, Redis refuses the
/// lease step) is answered with the stale value. Ids whose key changed since the read are read
/// as they are now: a value is served, an id no longer cached goes to `pending`, for the fill.
pub(super) async fn refill<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    stale: Vec<Aged<Id, T>>,
    fetch: &mut F,
    out: &mut Vec<(Id, T)>,
    pending: &mut Vec<Pending<Id>>,
    deadline: Instant,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    let options = &cache.spec.options;
    let stats = &cache.spec.stats;
    let token = Token::new(&cache.conn);
    let lease = token.refresh_lease(options.lock_ttl);
    let ids = stale.iter().map(|s| (s.key.as_str(), s.seen.as_slice()));
    let taken = match within(deadline, options.wait(), take(&cache.conn, lease, ids)).await {
        Ok(taken) => taken,
        Err(e) => {
            served_stale(cache, stale.len(), &e);
            out.extend(stale.into_iter().map(|s| (s.id, s.value)));
            return Ok(());
        }
    };
    let mut mine = Vec::new();
    let mut held = 0;
    for (s, taken) in stale.into_iter().zip(taken) {
        match taken {
            Taken::Yes => mine.push(s),
            Taken::Now(value) => match read(&*cache.codec, value, None) {
                Read::Value(v, Age::Fresh | Age::Due(_)) => out.push((s.id, v)),
                Read::Value(v, Age::Stale(_) | Age::Held) => {
                    held += 1;
                    out.push((s.id, v));
                }
                Read::Absent => {}
                Read::Miss => pending.push(Pending::new(s.id, s.key)),
            },
        }
    }
    if held > 0 {
        // Another caller refills them, or failed to lately (and said so).
        stats.add(Stat::StaleServed, held);
        debug!(
            ids = held,
            "serving values past their TTL while another caller refills them"
        );
    }
    if mine.is_empty() {
        return Ok(());
    }
    stats.add(Stat::Fetches, 1);
    stats.add(Stat::FetchedIds, mine.len());
    let keys: Vec<&str> = mine.iter().map(|s| s.key.as_str()).collect();
    let started = Instant::now();
    let fetched = fetch_within(
        fetch.call(mine.iter().map(|s| s.id.clone()).collect()),
        options.fetch_soft_timeout,
        options.fetch_timeout,
    )
    .await;
    let why: String = match fetched {
        Fetched::Done(Ok(items)) => {
            let mut fetched: HashMap<Id, T> = items.into_iter().collect();
            let ids = mine.iter().map(|s| &s.id);
            let entries = seal_fetched(
                &*cache.codec,
                options,
                keys.iter().copied().zip(ids),
                &fetched,
                started.elapsed(),
            )?;
            for s in mine {
                if let Some(v) = fetched.remove(&s.id) {
                    out.push((s.id, v));
                }
            }
            return Commit::new(&cache.conn, &cache.spec, lease, entries)
                .run_to_end()
                .await
                .map_err(E::from);
        }
        Fetched::Done(Err(_)) => "the fetch failed".to_owned(),
        Fetched::SoftTimeout(after) => {
            // The fetch borrowed this call and is gone with it; a cache that refreshes ahead has
            // a fetch of its own, which goes on in the background under the same leases.
            if cache.refresh.is_some() {
                let due = mine
                    .iter()
                    .map(|s| Aged {
                        id: s.id.clone(),
                        key: s.key.clone(),
                        seen: Vec::new(),
                        value: (),
                    })
                    .collect();
                spawn_refresh(cache, due, Some((token, lease)));
                served_stale(
                    cache,
                    mine.len(),
                    &format!(
                        "the fetch passed its soft timeout {after:?}; refilling in the background"
                    ),
                );
                out.extend(mine.into_iter().map(|s| (s.id, s.value)));
                return Ok(());
            }
            format!("the fetch passed its soft timeout {after:?}")
        }
        Fetched::Timeout(after) => format!("the fetch passed its timeout {after:?}"),
    };
    throttle(&cache.conn, options, token, lease, &keys).await;
    served_stale(cache, mine.len(), &why);
    out.extend(mine.into_iter().map(|s| (s.id, s.value)));
    Ok(())
}

/// Refreshes `due` ids in the background, if the cache refreshes ahead of expiry: takes their
/// refresh leases (unless `held`, the caller's, already on them), fetches the ids it took,
/// commits them; a failure holds off the next attempt (see [`throttle`]).
pub(super) fn spawn_refresh<Id, T, C: Codec<T>>(
    cache: &Cache<Id, T, C>,
    due: Vec<Aged<Id, ()>>,
    held: Option<(Token, Lease)>,
) {
    if let Some(start) = &cache.refresh {
        start(Job {
            conn: cache.conn.clone(),
            spec: cache.spec.clone(),
            codec: cache.codec.clone(),
            due,
            held,
        });
    }
}

async fn refresh<Id, T, F, Fut>(job: Job<Id, T>, fetch: F) -> Result<(), Error>
where
    Id: Eq + Hash + Clone,
    T: 'static,
    F: FnOnce(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<Vec<(Id, T)>, String>>,
{
    let Job {
        conn,
        spec,
        codec,
        due,
        held,
    } = job;
    let options = &spec.options;
    let (token, lease, mine) = match held {
        Some((token, lease)) => (token, lease, due),
        None => {
            let token = Token::new(&conn);
            let lease = token.refresh_lease(options.lock_ttl);
            let deadline = Instant::now() + options.timeout;
            let ids = due.iter().map(|d| (d.key.as_str(), d.seen.as_slice()));
            let taken = within(deadline, options.wait(), take(&conn, lease, ids)).await?;
            let mine: Vec<Aged<Id, ()>> = due
                .into_iter()
                .zip(taken)
                .filter_map(|(d, taken)| matches!(taken, Taken::Yes).then_some(d))
                .collect();
            (token, lease, mine)
        }
    };
    if mine.is_empty() {
        return Ok(());
    }
    spec.stats.add(Stat::Refreshes, mine.len());
    spec.stats.add(Stat::Fetches, 1);
    spec.stats.add(Stat::FetchedIds, mine.len());
    debug!(ids = mine.len(), "refreshing ahead of expiry");
    let keys: Vec<&str> = mine.iter().map(|d| d.key.as_str()).collect();
    let started = Instant::now();
    let ids = mine.iter().map(|d| d.id.clone()).collect();
    let why = match fetch_within(fetch(ids), None, options.fetch_timeout).await {
        Fetched::Done(Ok(items)) => {
            let entries = {
                let fetched: HashMap<Id, T> = items.into_iter().collect();
                let ids = mine.iter().map(|d| &d.id);
                seal_fetched(
                    &*codec,
                    options,
                    keys.iter().copied().zip(ids),
                    &fetched,
                    started.elapsed(),
                )?
            };
            return Commit::new(&conn, &spec, lease, entries).run().await;
        }
        Fetched::Done(Err(e)) => e,
        Fetched::SoftTimeout(after) | Fetched::Timeout(after) => {
            format!("timed out after {after:?}")
        }
    };
    warn!(ids = keys.len(), error = %why, "refresh ahead of expiry failed; retrying later");
    throttle(&conn, options, token, lease, &keys).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_wins_more_often_near_the_expiry() {
        let wins = |left| (0..10_000).filter(|_| draw(left, 100, 1.0)).count();
        assert_eq!(wins(100 * 40), 0, "far from the expiry, never");
        let (far, near) = (wins(400), wins(10));
        // P(win) = exp(-left / δβ): about 1.8 % at 4 δ, 90 % at δ / 10.
        assert!((50..400).contains(&far), "{far}");
        assert!(near > 8_500, "{near}");
        assert!(wins(400) < (0..10_000).filter(|_| draw(400, 100, 3.0)).count());
    }

    #[test]
    fn ages_by_timing_and_refresh_lease() {
        use crate::codec::{open, seal, Cached, Timing, LEASE_LEN, MAGIC, REFRESH};
        let timing = Timing {
            expiry: 10_000,
            fill_ms: 100,
        };
        let value = seal(&crate::MsgPack, Some(&1u8), Some(timing)).unwrap();
        let found = |bytes: &[u8]| match open(bytes) {
            Some(Cached::Present(found)) => found,
            other => panic!("{other:?}"),
        };
        let at = |bytes: &[u8], now, beta| age(&found(bytes), bytes, now, beta);
        assert_eq!(at(&value, 1_000, Some(1.0)), Age::Fresh);
        assert_eq!(at(&value, 9_999, None), Age::Fresh, "no draw without β");
        assert_eq!(
            at(&value, 9_999, Some(100.0)),
            Age::Due(value[..14].to_vec())
        );
        assert_eq!(at(&value, 10_000, None), Age::Stale(value[..14].to_vec()));

        let lease = |deadline: u64| {
            let mut bytes = vec![MAGIC, REFRESH];
            bytes.extend_from_slice(&[b'a'; 32]);
            bytes.extend_from_slice(&deadline.to_be_bytes());
            bytes.extend_from_slice(&value);
            bytes
        };
        let live = lease(20_000);
        assert_eq!(
            at(&live, 9_999, Some(100.0)),
            Age::Fresh,
            "a refresh is under way"
        );
        assert_eq!(at(&live, 10_500, None), Age::Held);
        let dead = lease(10_200);
        assert_eq!(
            at(&dead, 10_500, None),
            Age::Stale(dead[..LEASE_LEN].to_vec())
        );
        let dead = lease(9_000);
        assert_eq!(
            at(&dead, 9_999, Some(100.0)),
            Age::Due(dead[..LEASE_LEN].to_vec())
        );
    }
}
