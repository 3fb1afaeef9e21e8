//! The fetch of the ids a caller leased, and the commit of what it returned: one compare-and-set
//! per id (`commit.lua`) that writes the value only over the caller's own lease (a fill's lease,
//! or a refresh lease: see [`refresh`](super::refresh)).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tracing::{debug, debug_span, warn, Instrument as _};

use super::deadline::within;
use super::lease::{now_ms, Lease};
use super::release::LockGuard;
use super::{Fetch, Locked};
use crate::cache::{Cache, Shared, Spec};
use crate::codec::{open, seal, Cached, Codec, Timing};
use crate::keys::channel;
use crate::options::Options;
use crate::scripts::{send, sharded_flag, Arg, Calls, COMMIT};
use crate::stats::Stat;
use crate::{Connection, Error};

/// Fetches the leased ids and commits them; releases the leases if the fetch fails, panics, or
/// the caller stops waiting before it returns.
pub(super) async fn fetch_and_commit<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    lease: Lease,
    locked: Vec<Locked<Id>>,
    fetch: &mut F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    let stats = &cache.spec.stats;
    let mut guard = LockGuard {
        conn: &cache.conn,
        spec: &cache.spec,
        lease,
        locked: &locked,
        taken_at: Instant::now(),
    };
    stats.add(Stat::Fetches, 1);
    stats.add(Stat::FetchedIds, locked.len());
    debug!(ids = locked.len(), "fetching from the source");
    let ids = locked.iter().map(|l| l.id.clone()).collect();
    let span = debug_span!("fetch", ids = locked.len());
    let started = Instant::now();
    let options = &cache.spec.options;
    // Without a stale value to serve, the soft timeout has nothing to do.
    let fetched = match fetch_within(fetch.call(ids), None, options.fetch_timeout)
        .instrument(span)
        .await
    {
        Fetched::Done(Ok(fetched)) => fetched,
        Fetched::Done(Err(e)) => {
            guard.release().await;
            return Err(e);
        }
        Fetched::SoftTimeout(after) | Fetched::Timeout(after) => {
            guard.release().await;
            return Err(Error::FetchTimeout {
                after,
                cache: options.name,
            }
            .into());
        }
    };
    let mut fetched: HashMap<Id, T> = fetched.into_iter().collect();
    let keyed = locked.iter().map(|l| (l.key.as_str(), &l.id));
    let entries = match seal_fetched(&*cache.codec, options, keyed, &fetched, started.elapsed()) {
        Ok(entries) => entries,
        Err(e) => {
            guard.release().await;
            return Err(e.into());
        }
    };
    guard.disarm();
    drop(guard);

    for Locked { id, .. } in locked {
        if let Some(v) = fetched.remove(&id) {
            out.push((id, v));
        }
    }
    let commit = Commit::new(&cache.conn, &cache.spec, lease, entries);
    commit.run_to_end().await.map_err(E::from)
}

/// How a fetch under the cache's timeouts ended.
pub(super) enum Fetched<R> {
    Done(R),
    /// Past the soft timeout (only when one was asked for).
    SoftTimeout(Duration),
    /// Past the hard timeout: the fetch was dropped.
    Timeout(Duration),
}

/// Runs a fetch under a soft and a hard timeout (either may be `None`). The fetch is dropped
/// when either passes: a fetch borrows the caller's state, so it cannot go on without it.
pub(super) async fn fetch_within<Fut: Future>(
    fetch: Fut,
    soft: Option<Duration>,
    hard: Option<Duration>,
) -> Fetched<Fut::Output> {
    match (soft, hard) {
        (None, None) => Fetched::Done(fetch.await),
        (Some(soft), _) => match timeout(soft, fetch).await {
            Ok(done) => Fetched::Done(done),
            Err(_) => Fetched::SoftTimeout(soft),
        },
        (None, Some(hard)) => match timeout(hard, fetch).await {
            Ok(done) => Fetched::Done(done),
            Err(_) => Fetched::Timeout(hard),
        },
    }
}

/// Seals fetched values for their keys: a timed value if the cache keeps timings (its logical
/// expiry from now, and the fetch's duration), an "absent" marker for an id the source did
/// not return.
pub(super) fn seal_fetched<'a, Id, T>(
    codec: &(impl Codec<T> + ?Sized),
    options: &Options,
    keyed: impl Iterator<Item = (&'a str, &'a Id)>,
    fetched: &HashMap<Id, T>,
    fill: Duration,
) -> Result<Vec<(String, Vec<u8>)>, Error>
where
    Id: Eq + Hash + 'a,
{
    let now = now_ms();
    let fill_ms = u32::try_from(fill.as_millis()).unwrap_or(u32::MAX);
    keyed
        .map(|(key, id)| {
            let timing = options.timed().then(|| Timing {
                expiry: now + options.data_ttl_ms(key),
                fill_ms,
            });
            Ok((key.to_owned(), seal(codec, fetched.get(id), timing)?))
        })
        .collect()
}

/// The commit of one fetch, owned so that it can be finished by a task of its own.
pub(super) struct Commit {
    conn: Connection,
    spec: Shared<Spec>,
    lease: Lease,
    /// Data key, sealed value.
    entries: Vec<(String, Vec<u8>)>,
}

impl Commit {
    /// The commit of `entries` (data key, sealed value) over `lease`.
    pub(super) fn new(
        conn: &Connection,
        spec: &Shared<Spec>,
        lease: Lease,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Self {
        Self {
            conn: conn.clone(),
            spec: spec.clone(),
            lease,
            entries,
        }
    }

    /// Runs the commit in this task. If the caller stops waiting before it is done, the commit is
    /// sent again from a spawned task, so the fetched data is still written and the leases
    /// released. Sending it twice is harmless: the second finds the value, not the lease, and
    /// writes nothing.
    pub(super) async fn run_to_end(self) -> Result<(), Error> {
        let mut unfinished = Unfinished(Some(self));
        let result = unfinished.0.as_ref().expect("not yet finished").run().await;
        unfinished.0 = None;
        result
    }

    pub(super) async fn run(&self) -> Result<(), Error> {
        let options = &self.spec.options;
        let lease = self.lease.as_bytes();
        let sharded = sharded_flag(&self.conn);
        let bytes = self
            .entries
            .iter()
            .map(|(key, value)| 2 * key.len() + value.len() + 96)
            .sum();
        let mut calls = Calls::new(&COMMIT, self.entries.len(), bytes);
        for (key, value) in &self.entries {
            let ttl = match open(value) {
                Some(Cached::Absent) => options.absent_ttl_ms(key),
                // A timed value's key outlives its logical expiry by `stale_for`.
                Some(Cached::Present(found)) if found.timing.is_some() => {
                    options.data_ttl_ms(key) + options.stale_ms()
                }
                _ => options.data_ttl_ms(key),
            };
            calls.push(
                &[key.as_bytes()],
                &[
                    Arg::Bytes(lease),
                    Arg::Bytes(value),
                    Arg::Int(ttl),
                    Arg::Bytes(&channel(key)),
                    Arg::Bytes(sharded),
                ],
            );
        }
        let deadline = Instant::now() + options.timeout;
        let replies = within(deadline, options.wait(), send(&self.conn, calls)).await?;
        let (mut written, mut stale, mut lost) = (0, 0, 0);
        for reply in replies {
            match reply {
                redis::Value::Int(1) => written += 1,
                redis::Value::Int(-1) => stale += 1,
                redis::Value::Int(0) => lost += 1,
                other => return Err(Error::UnexpectedReply(format!("commit returned {other:?}"))),
            }
        }
        let stats = &self.spec.stats;
        stats.add(Stat::Commits, written);
        stats.add(Stat::StaleCommits, stale);
        stats.add(Stat::LostLocks, lost);
        if stale + lost > 0 {
            debug!(written, stale, lost, "commit refused some ids");
        }
        Ok(())
    }
}

/// A commit whose caller stopped waiting: finished by a spawned task.
struct Unfinished(Option<Commit>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(commit) = self.0.take() else { return };
        let background = Arc::clone(commit.conn.background());
        let finish = async move {
            if let Err(e) = commit.run().await {
                warn!(error = %e, "could not commit after the caller stopped waiting");
            }
        };
        if !background.spawn(finish) {
            warn!("no tokio runtime to finish a commit; its leases expire at their TTL");
        }
    }
}
