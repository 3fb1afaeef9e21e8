//! The fetch of the ids a caller leased, and the commit of what it returned: one compare-and-set
//! per id (`commit.lua`) that writes the value only over the caller's own lease.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{debug, debug_span, warn, Instrument as _};

use super::deadline::within;
use super::lease::Lease;
use super::release::LockGuard;
use super::{Fetch, Locked};
use crate::cache::{Cache, Shared, Spec};
use crate::codec::{open, seal, Cached, Codec};
use crate::keys::channel;
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
    let fetched = match fetch.call(ids).instrument(span).await {
        Ok(fetched) => fetched,
        Err(e) => {
            guard.release().await;
            return Err(e);
        }
    };
    let mut fetched: HashMap<Id, T> = fetched.into_iter().collect();
    let mut sealed = Vec::with_capacity(locked.len());
    for l in &locked {
        match seal(&cache.codec, fetched.get(&l.id)) {
            Ok(bytes) => sealed.push(bytes),
            Err(e) => {
                guard.release().await;
                return Err(e.into());
            }
        }
    }
    guard.disarm();
    drop(guard);

    let mut entries = Vec::with_capacity(locked.len());
    for (Locked { id, key }, value) in locked.into_iter().zip(sealed) {
        if let Some(v) = fetched.remove(&id) {
            out.push((id, v));
        }
        entries.push((key, value));
    }
    let commit = Commit {
        conn: cache.conn.clone(),
        spec: cache.spec.clone(),
        lease,
        entries,
    };
    commit.run_to_end().await.map_err(E::from)
}

/// The commit of one fetch, owned so that it can be finished by a task of its own.
struct Commit {
    conn: Connection,
    spec: Shared<Spec>,
    lease: Lease,
    /// Data key, sealed value.
    entries: Vec<(String, Vec<u8>)>,
}

impl Commit {
    /// Runs the commit in this task. If the caller stops waiting before it is done, the commit is
    /// sent again from a spawned task, so the fetched data is still written and the leases
    /// released. Sending it twice is harmless: the second finds the value, not the lease, and
    /// writes nothing.
    async fn run_to_end(self) -> Result<(), Error> {
        let mut unfinished = Unfinished(Some(self));
        let result = unfinished.0.as_ref().expect("not yet finished").run().await;
        unfinished.0 = None;
        result
    }

    async fn run(&self) -> Result<(), Error> {
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
        let replies = within(deadline, options.timeout, send(&self.conn, calls)).await?;
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
