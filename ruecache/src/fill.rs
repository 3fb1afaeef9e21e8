//! The get-and-fill protocol and invalidation.
//!
//! 1. Read every data key in one round trip (per slot group on a cluster).
//! 2. For the misses, plain commands take the lock, read (or create) the version and re-check the
//!    data: one round trip for the whole batch (see [`prepare`]).
//! 3. Fetch the ids this caller locked, in one call.
//! 4. Commit the fetched ids with one script that writes each only if its version is unchanged
//!    and its lock is ours or free: one round trip, shared with concurrent callers' commits where
//!    the connection allows (see [`coalesce`](crate::coalesce)). If the caller stops waiting, a
//!    spawned task finishes the commit.
//! 5. Ids locked by others are waited for and go through step 2 again. The commit and unlock
//!    scripts publish on the id's channel when they release a lock, and a waiter subscribed to
//!    it (see [`notify`](crate::notify)) is woken at once; it still polls with backoff, as the
//!    safety net and where wake-ups are unavailable. It subscribes before reading again, so no
//!    release goes unheard. A lock whose holder's liveness key is gone is taken over (see
//!    [`liveness`]).
//!
//! Before step 2, ids are claimed in the connection's in-process registry (see
//! [`flight`](crate::flight)): an id another caller on the connection is already filling is
//! waited for and read again, not locked or fetched a second time.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use futures_util::future::join_all;
use redis::{Pipeline, Value};
use tokio::time::{timeout_at, Instant};
use tracing::{debug, debug_span, warn, Instrument as _};

use crate::batch::{for_groups, get_cmd, get_many, is_wrong_type, missing_if_wrong_type};
use crate::cache::{Cache, Shared, Spec};
use crate::coalesce;
use crate::codec::{open, seal, Cached, Codec, MAGIC, PAYLOAD_START};
use crate::flight::{Claimed, Flight};
use crate::keys::{version_key, Derived, KeyBuf};
use crate::liveness::{self, ID_LEN};
use crate::notify::Interest;
use crate::options::Options;
use crate::scripts::{Arg, Calls, COMMIT, INVALIDATE, UNLOCK};
use crate::stats::Counters;
use crate::{Connection, Error};

/// An id still to be answered.
struct Pending<Id> {
    id: Id,
    key: String,
    /// The data is present but our codec cannot read it: lock and refill it anyway.
    force: bool,
    /// The token of a lock holder found dead: take its lock over.
    takeover: Option<Vec<u8>>,
}

/// An id whose lock this caller holds.
struct Locked<Id> {
    id: Id,
    key: String,
    version: Vec<u8>,
}

pub(crate) async fn get_and_fill<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    mut ids: Vec<Id>,
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
    if ids.is_empty() {
        return Ok(());
    }
    dedup(&mut ids);
    let options = &cache.spec.options;
    let stats = &cache.spec.stats;
    let deadline = Instant::now() + options.timeout;
    // All keys in one buffer: one allocation instead of one per id.
    let mut text = String::with_capacity(ids.len() * 48);
    let mut ends = Vec::with_capacity(ids.len());
    for id in &ids {
        cache.write_data_key(id, &mut text)?;
        ends.push(text.len());
    }
    let keys: Vec<&str> = ends
        .iter()
        .scan(0, |start, &end| {
            let key = &text[*start..end];
            *start = end;
            Some(key)
        })
        .collect();

    let values = read_within(cache, deadline, get_many(&cache.conn, &keys)).await?;
    let mut pending = Vec::new();
    let mut hits = 0;
    out.reserve(ids.len());
    for ((id, key), value) in ids.into_iter().zip(keys).zip(values) {
        match read(&cache.codec, value) {
            Read::Value(v) => {
                hits += 1;
                out.push((id, v));
            }
            Read::Absent => hits += 1,
            Read::Miss { force } => pending.push(Pending {
                id,
                key: key.to_owned(),
                force,
                takeover: None,
            }),
        }
    }
    Counters::add(&stats.hits, hits);
    if pending.is_empty() {
        return Ok(());
    }
    // Boxed: the fill's future is ten times the read's, and every call (a hit too) would
    // otherwise carry it and copy it around.
    let span = debug_span!("fill", misses = pending.len());
    Box::pin(fill(cache, pending, fetch, out, deadline).instrument(span)).await
}

/// [`get_and_fill`] of a single id: one `GET`, and on a hit nothing else (no dedup, no key
/// vector, no batch of replies). `Ok(None)` when the source does not have the id.
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
    let options = &cache.spec.options;
    let deadline = Instant::now() + options.timeout;
    let value = match cache.conn.coalescer() {
        // Every wait of a coalesced read ends before the deadline (see `coalesce`).
        Some(coalescer) if fails_in_time(&cache.conn, deadline, coalesce::REQUESTS) => {
            let mut key = KeyBuf::new();
            cache.write_data_key(&id, &mut key)?;
            coalescer.get(key.as_str()).await?
        }
        _ => {
            let get = get_cmd(|key| cache.write_data_key(&id, key))?;
            read_within(cache, deadline, async {
                missing_if_wrong_type(get.query_async(&mut cache.conn.clone()).await)
            })
            .await?
        }
    };
    let force = match read(&cache.codec, value) {
        Read::Value(v) => {
            Counters::add(&cache.spec.stats.hits, 1);
            return Ok(Some((id, v)));
        }
        Read::Absent => {
            Counters::add(&cache.spec.stats.hits, 1);
            return Ok(None);
        }
        Read::Miss { force } => force,
    };
    // A miss: from here on the key is needed as a string.
    let key = cache.data_key(&id)?;
    let mut out = Vec::with_capacity(1);
    let pending = vec![Pending {
        id,
        key,
        force,
        takeover: None,
    }];
    // Boxed: the hit path's future stays small.
    let span = debug_span!("fill", misses = 1);
    Box::pin(fill(cache, pending, fetch, &mut out, deadline).instrument(span)).await?;
    Ok(out.pop())
}

/// Steps 2 to 5 for the ids the first read missed. Ids another caller on this connection is
/// already filling are waited for and read again instead (see [`flight`](crate::flight)).
async fn fill<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    mut pending: Vec<Pending<Id>>,
    mut fetch: F,
    out: &mut Vec<(Id, T)>,
    deadline: Instant,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
    E: From<Error>,
{
    let options = &cache.spec.options;
    let stats = &cache.spec.stats;
    Counters::add(&stats.misses, pending.len());
    if pending.is_empty() {
        return Ok(());
    }
    let token = random_token(&cache.conn);
    let mut flight = Flight::new(cache.conn.flights());
    loop {
        let mut lead = Vec::with_capacity(pending.len());
        let mut follow = Vec::new();
        let mut landings = Vec::new();
        for p in pending {
            match flight.claim(&p.key) {
                Claimed::Lead => lead.push(p),
                Claimed::Follow(landing) => {
                    follow.push(p);
                    landings.push(landing.wait());
                }
            }
        }
        Counters::add(&stats.flight_waits, follow.len());
        // What this caller leads never waits for what it follows, so callers whose batches
        // overlap cannot wait for each other in a circle.
        lead_fill(cache, &mut flight, token, lead, &mut fetch, out, deadline).await?;
        if follow.is_empty() {
            return Ok(());
        }
        debug!(
            ids = follow.len(),
            "waiting for fills of other callers on this connection"
        );
        timeout_at(deadline, join_all(landings))
            .await
            .map_err(|_| Error::Timeout(options.timeout))?;
        let keys: Vec<&str> = follow.iter().map(|p| p.key.as_str()).collect();
        let values = within(deadline, options.timeout, get_many(&cache.conn, &keys)).await?;
        drop(keys);
        pending = Vec::new();
        for (p, value) in follow.into_iter().zip(values) {
            match read(&cache.codec, value) {
                Read::Value(v) => out.push((p.id, v)),
                Read::Absent => {}
                // Not committed (refused as stale, fetch failed, leader dropped): fill it.
                Read::Miss { force } => pending.push(Pending { force, ..p }),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
    }
}

/// Locks, fetches and commits the ids this caller leads; ids locked by other processes are
/// waited for (woken by their release, or polled with backoff). Each id is landed (its
/// followers woken) once it is resolved.
async fn lead_fill<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    flight: &mut Flight<'_>,
    token: Token,
    mut pending: Vec<Pending<Id>>,
    fetch: &mut F,
    out: &mut Vec<(Id, T)>,
    deadline: Instant,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
    E: From<Error>,
{
    let options = &cache.spec.options;
    let stats = &cache.spec.stats;
    let mut backoff = options.backoff_min;
    if !pending.is_empty() {
        // Others must be able to tell that this connection's locks have a live holder. If the
        // key cannot be reached (its slot may be on a cluster node that is down) the fill goes
        // on after a quarter of the timeout at most: others cannot read the key either and wait
        // as for a live holder; at worst they take this caller's locks over, which costs a
        // second fetch, never a stale write (a commit whose lock was taken is refused). The
        // next fill tries again. A refusal (an ACL without the liveness keys) is an error.
        let liveness = cache.conn.liveness().ensure(&cache.conn);
        let bound = (Instant::now() + options.timeout / 4).min(deadline);
        match within(bound, options.timeout / 4, liveness).await {
            Ok(()) => {}
            Err(e) if crate::fallback::unreachable(&e) => {
                debug!(error = %e, "could not reach the liveness key; filling without it");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Wake-ups for the ids others hold, from the first wait on.
    let mut interest: Option<Interest> = None;
    while !pending.is_empty() {
        Counters::add(&stats.lock_attempts, pending.len());
        let mut taking = Taking {
            conn: &cache.conn,
            token,
            timeout: options.timeout,
            pending: &pending,
        };
        // On an error, or if the caller stops waiting, `taking` releases this round's locks.
        let replies = within(deadline, options.timeout, prepare(cache, token, &pending)).await?;
        taking.disarm();
        drop(taking);
        let mut locked = Vec::new();
        let mut waiting = Vec::new();
        // The lock holder of each waiting id (empty when there is none to check).
        let mut holders = Vec::new();
        // A foreign lock key was deleted: its id is prepared again at once.
        let mut cleared = false;
        for (p, reply) in pending.into_iter().zip(replies) {
            let p = Pending {
                takeover: None,
                ..p
            };
            match reply {
                Prepared::Data(bytes) => match read(&cache.codec, Value::BulkString(bytes)) {
                    Read::Value(v) => out.push((p.id, v)),
                    Read::Absent => {}
                    Read::Miss { .. } => {
                        waiting.push(Pending { force: true, ..p });
                        holders.push(Vec::new());
                    }
                },
                Prepared::Locked(version) => locked.push(Locked {
                    id: p.id,
                    key: p.key,
                    version,
                }),
                Prepared::Busy(holder) => {
                    waiting.push(p);
                    holders.push(holder);
                }
                Prepared::Cleared => {
                    cleared = true;
                    waiting.push(p);
                    holders.push(Vec::new());
                }
            }
        }
        // Counted before this caller's own fetch: a wait is known as soon as the reply says so.
        Counters::add(&stats.lock_waits, waiting.len());
        if !locked.is_empty() {
            fill_locked(cache, token, locked, fetch, out).await?;
        }
        if waiting.is_empty() {
            flight.land_except(|_| false);
            return Ok(());
        }
        let busy: HashSet<&str> = waiting.iter().map(|p| p.key.as_str()).collect();
        flight.land_except(|key| busy.contains(key));
        drop(busy);
        pending = waiting;
        let dead = match within(deadline, options.timeout, dead_holders(cache, &holders)).await {
            Ok(dead) => dead,
            // Unknown (a holder's liveness key may be on a cluster node that is down): treated
            // as alive, so their locks are waited for as usual.
            Err(e) if crate::fallback::unreachable(&e) => {
                debug!(error = %e, "could not reach lock holders' liveness keys");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        if !dead.is_empty() || cleared {
            // Locks of a dead holder: take them over right away.
            Counters::add(&stats.takeovers, dead.len());
            if !dead.is_empty() {
                debug!(ids = dead.len(), "taking over locks of a holder that died");
            }
            for i in dead {
                pending[i].takeover = Some(std::mem::take(&mut holders[i]));
            }
            continue;
        }
        if let Some(notifier) = cache.conn.notifier().filter(|n| !n.is_off()) {
            // Subscribe before reading again, so that no release goes unheard: a release
            // between the read above and the subscription woke nobody, so a new subscription
            // is followed by a read at once.
            let watcher = interest.get_or_insert_with(|| notifier.interest());
            let derived: Vec<Derived> = pending.iter().map(|p| Derived::of(&p.key)).collect();
            let watch = watcher.watch(derived.iter().map(Derived::channel));
            match within(deadline, options.timeout, async { Ok(watch.await?) }).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    debug!(error = %e, "no wake-ups; polling");
                    interest = None;
                }
            }
        }
        let listening = interest.as_ref().is_some_and(Interest::is_listening);
        // The last read is made a little before the deadline, so that a release up to then is
        // still seen; it has been made once a round ends after it.
        let last_read = last_read(deadline, options);
        let now = Instant::now();
        if now >= last_read {
            return Err(Error::Timeout(options.timeout).into());
        }
        debug!(
            ids = pending.len(),
            backoff_ms = backoff.as_millis() as u64,
            listening,
            "waiting for other fillers"
        );
        // The backoff stays as the safety net: for a lock that expires without a release, a
        // lost message, or a holder that cannot publish.
        let until = (now + backoff).min(last_read);
        let woken = match interest.as_ref().filter(|_| listening) {
            Some(interest) => tokio::select! {
                () = interest.notified() => true,
                () = tokio::time::sleep_until(until) => false,
            },
            None => {
                tokio::time::sleep_until(until).await;
                false
            }
        };
        if woken {
            Counters::add(&stats.wakeups, 1);
        } else {
            backoff = (backoff * 2).min(options.backoff_max);
        }
    }
    Ok(())
}

/// When a caller waiting for other fillers reads for the last time: ahead of `deadline` by a
/// tenth of the timeout, at most the first backoff step, so that the read can still be answered.
fn last_read(deadline: Instant, options: &Options) -> Instant {
    let reserve = (options.timeout / 10).min(options.backoff_min);
    deadline.checked_sub(reserve).unwrap_or(deadline)
}

/// The indices of `holders` whose connection's liveness key is gone: those holders died (see
/// [`liveness`]). Holders of this connection are alive by definition.
async fn dead_holders<Id, T, C>(
    cache: &Cache<Id, T, C>,
    holders: &[Vec<u8>],
) -> Result<Vec<usize>, Error> {
    let own = cache.conn.liveness().id();
    let holder_keys: Vec<Option<String>> = holders
        .iter()
        .map(|h| liveness::holder_key(h).filter(|_| !h.starts_with(own)))
        .collect();
    let mut keys: Vec<&str> = holder_keys.iter().flatten().map(String::as_str).collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    keys.sort_unstable();
    keys.dedup();
    let alive = get_many(&cache.conn, &keys).await?;
    let dead: HashSet<&str> = keys
        .iter()
        .zip(alive)
        .filter(|(_, v)| matches!(v, Value::Nil))
        .map(|(k, _)| *k)
        .collect();
    Ok(holder_keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.as_deref().is_some_and(|k| dead.contains(k)))
        .map(|(i, _)| i)
        .collect())
}

/// What a lock's value says about its holder.
#[derive(Debug, PartialEq)]
enum Holder {
    /// A token of a connection with a liveness key (see [`random_token`]): a dead holder is
    /// found out by its key.
    Checked,
    /// A token of a connection without liveness (its id is all `x`): its lock always has the
    /// lock TTL of its taker.
    Unchecked,
    /// Not a token of ours: written by hand or by another program.
    Stranger,
}

fn holder(lock: &[u8]) -> Holder {
    let hex = |part: &[u8]| part.iter().all(u8::is_ascii_hexdigit);
    if lock.len() != TOKEN_LEN || !hex(&lock[ID_LEN..]) {
        return Holder::Stranger;
    }
    match &lock[..ID_LEN] {
        id if hex(id) => Holder::Checked,
        id if id.iter().all(|&b| b == b'x') => Holder::Unchecked,
        _ => Holder::Stranger,
    }
}

/// Fetches the locked ids and commits them; releases the locks if the fetch fails, panics, or the
/// caller stops waiting before it returns.
async fn fill_locked<Id, T, C, F, Fut, R, E>(
    cache: &Cache<Id, T, C>,
    token: Token,
    locked: Vec<Locked<Id>>,
    fetch: &mut F,
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
    let stats = &cache.spec.stats;
    let mut guard = LockGuard {
        conn: &cache.conn,
        spec: &cache.spec,
        token,
        locked: &locked,
        taken_at: Instant::now(),
    };
    Counters::add(&stats.fetches, 1);
    Counters::add(&stats.fetched_ids, locked.len());
    debug!(ids = locked.len(), "fetching from the source");
    let ids = locked.iter().map(|l| l.id.clone()).collect();
    let span = debug_span!("fetch", ids = locked.len());
    let fetched = match fetch(ids).instrument(span).await {
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
    for (Locked { id, key, version }, value) in locked.into_iter().zip(sealed) {
        if let Some(v) = fetched.remove(&id) {
            out.push((id, v));
        }
        entries.push((key, version, value));
    }
    let commit = Commit {
        conn: cache.conn.clone(),
        spec: cache.spec.clone(),
        token,
        entries,
    };
    commit.run_to_end().await.map_err(E::from)
}

/// The commit of one fetch, owned so that it can be finished by a task of its own.
struct Commit {
    conn: Connection,
    spec: Shared<Spec>,
    token: Token,
    /// Data key, version read before the fetch, sealed value.
    entries: Vec<(String, Vec<u8>, Vec<u8>)>,
}

impl Commit {
    /// Runs the commit in this task. If the caller stops waiting before it is done, the commit is
    /// sent again from a spawned task, so the fetched data is still written and the locks
    /// released. Sending it twice is harmless: a commit only writes the value read under our
    /// version, and refuses once the lock is someone else's.
    async fn run_to_end(self) -> Result<(), Error> {
        let mut unfinished = Unfinished(Some(self));
        let result = unfinished.0.as_ref().expect("not yet finished").run().await;
        unfinished.0 = None;
        result
    }

    async fn run(&self) -> Result<(), Error> {
        let options = &self.spec.options;
        let token = self.token.as_bytes();
        let sharded = sharded_flag(&self.conn);
        let bytes = self
            .entries
            .iter()
            .map(|(key, version, value)| 3 * key.len() + version.len() + value.len() + 96)
            .sum();
        let mut calls = Calls::new(&COMMIT, self.entries.len(), bytes);
        for (key, version, value) in &self.entries {
            let derived = Derived::of(key);
            calls.push(
                &[key.as_bytes(), derived.version(), derived.lock()],
                &[
                    Arg::Bytes(token),
                    Arg::Bytes(version),
                    Arg::Bytes(value),
                    Arg::Int(options.data_ttl_ms(key)),
                    Arg::Bytes(derived.channel()),
                    Arg::Bytes(sharded),
                ],
            );
        }
        let deadline = Instant::now() + options.timeout;
        let replies = within(deadline, options.timeout, send(&self.conn, calls)).await?;
        let (mut written, mut stale, mut lost, mut versionless) = (0, 0, 0, 0);
        for reply in replies {
            match reply {
                Value::Int(1) => written += 1,
                Value::Int(-1) => stale += 1,
                Value::Int(-2) => {
                    stale += 1;
                    versionless += 1;
                }
                Value::Int(0) => lost += 1,
                other => return Err(Error::UnexpectedReply(format!("commit returned {other:?}"))),
            }
        }
        let stats = &self.spec.stats;
        Counters::add(&stats.commits, written);
        Counters::add(&stats.stale_commits, stale);
        Counters::add(&stats.lost_versions, versionless);
        Counters::add(&stats.lost_locks, lost);
        if stale + lost > 0 {
            debug!(written, stale, versionless, lost, "commit refused some ids");
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
            warn!("no tokio runtime to finish a commit; its locks expire at their TTL");
        }
    }
}

/// Locks held during a fetch. Released on error, panic or drop unless disarmed.
struct LockGuard<'a, Id> {
    conn: &'a Connection,
    spec: &'a Shared<Spec>,
    token: Token,
    locked: &'a [Locked<Id>],
    taken_at: Instant,
}

impl<Id> LockGuard<'_, Id> {
    fn disarm(&mut self) {
        self.locked = &[];
    }

    /// Releases the locks now, unless they are about to expire anyway.
    async fn release(&mut self) {
        if let Some(unlock) = self.unlock() {
            unlock.await;
        }
        self.disarm();
    }

    fn unlock(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let options = &self.spec.options;
        let left = options.lock_ttl.saturating_sub(self.taken_at.elapsed());
        if self.locked.is_empty() || left < options.unlock_threshold {
            return None;
        }
        let keys = self.locked.iter().map(|l| l.key.clone()).collect();
        Some(unlock(self.conn.clone(), self.token, keys, options.timeout))
    }
}

/// Releases the locks of `keys` that `token` holds; others' locks are left alone.
async fn unlock(conn: Connection, token: Token, keys: Vec<String>, timeout: Duration) {
    let calls = unlock_calls(&conn, keys.iter().map(|k| (k.as_str(), token.as_bytes())));
    let deadline = Instant::now() + timeout;
    if let Err(e) = within(deadline, timeout, send(&conn, calls)).await {
        warn!(error = %e, ids = keys.len(), "could not release locks; they expire at their TTL");
    }
}

/// Unlock script calls: each `(data key, token)` releases that id's lock if `token` holds it.
fn unlock_calls<'a>(
    conn: &Connection,
    locks: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Calls {
    let sharded = sharded_flag(conn);
    let locks = locks.into_iter();
    let mut calls = Calls::new(&UNLOCK, locks.size_hint().0, locks.size_hint().0 * 96);
    for (key, token) in locks {
        let derived = Derived::of(key);
        calls.push(
            &[derived.lock()],
            &[
                Arg::Bytes(token),
                Arg::Bytes(derived.channel()),
                Arg::Bytes(sharded),
            ],
        );
    }
    calls
}

/// Runs script calls, coalesced with concurrent callers' where the connection allows (see
/// [`coalesce`](crate::coalesce)): one reply per id.
async fn send(conn: &Connection, calls: Calls) -> Result<Vec<Value>, Error> {
    match conn.coalescer() {
        Some(coalescer) => coalescer.run(calls).await,
        None => calls.run(conn).await,
    }
}

/// How the commit and unlock scripts publish a wake-up: `SPUBLISH` on a cluster (a shard
/// channel, served by the lock's own node), `PUBLISH` on a standalone server.
fn sharded_flag(conn: &Connection) -> &'static [u8] {
    if conn.is_cluster() {
        b"1"
    } else {
        b"0"
    }
}

impl<Id> Drop for LockGuard<'_, Id> {
    fn drop(&mut self) {
        if let Some(unlock) = self.unlock() {
            spawn_unlock(self.conn, unlock);
        }
    }
}

/// Locks being taken (the prepare step). If the step fails, one failed command fails it all,
/// but the others may have run and taken their locks; if the caller stops waiting, the commands
/// may still run once sent. Either way every lock of the round that is ours is released, in the
/// background, so that an error is not delayed by a server that is down. Disarmed once the
/// replies are in: from there on each lock is in the hands of its fetch's [`LockGuard`].
struct Taking<'a, Id> {
    conn: &'a Connection,
    token: Token,
    timeout: Duration,
    pending: &'a [Pending<Id>],
}

impl<Id> Taking<'_, Id> {
    fn disarm(&mut self) {
        self.pending = &[];
    }
}

impl<Id> Drop for Taking<'_, Id> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let keys = self.pending.iter().map(|p| p.key.clone()).collect();
        spawn_unlock(
            self.conn,
            unlock(self.conn.clone(), self.token, keys, self.timeout),
        );
    }
}

/// Runs an unlock in the background (from a `Drop`, which cannot wait), counted among `conn`'s
/// background writes.
fn spawn_unlock(conn: &Connection, unlock: impl Future<Output = ()> + Send + 'static) {
    if !conn.background().spawn(unlock) {
        warn!("no tokio runtime to release locks; they expire at their TTL");
    }
}

enum Prepared {
    Data(Vec<u8>),
    Locked(Vec<u8>),
    /// Locked by another caller: its token.
    Busy(Vec<u8>),
    /// The lock key held a key of another type (written by hand), now deleted: prepare again.
    Cleared,
}

/// Step 2 for `pending`: one round trip of plain commands per id, in this order: take the lock
/// (`SET lock token NX PX lock_ttl GET`, which also answers the holder of a busy lock), read
/// or create the version (`SET version fresh NX PX version_ttl GET`), refresh its TTL
/// (`PEXPIRE`), and read the data again (`GET`, unless the data is there but our codec cannot
/// read it). No script: each step is atomic by itself, and the commit checks what matters (the
/// version read here, before the fetch). Redis runs plain commands several times cheaper than
/// the same commands called from Lua.
///
/// Locks taken for ids whose data turned out to be cached after all are released in the
/// background.
async fn prepare<Id, T, C>(
    cache: &Cache<Id, T, C>,
    token: Token,
    pending: &[Pending<Id>],
) -> Result<Vec<Prepared>, Error> {
    let options = &cache.spec.options;
    let lock_ttl = options.lock_ttl.as_millis() as u64;
    let version_ttl = options.version_ttl.as_millis() as u64;
    // Locks of holders found dead: released first if they still hold them (the unlock script,
    // with the dead holder's token), so that the lock can be taken below.
    let dead: Vec<(&str, &[u8])> = pending
        .iter()
        .filter_map(|p| Some((p.key.as_str(), p.takeover.as_deref()?)))
        .collect();
    if !dead.is_empty() {
        send(&cache.conn, unlock_calls(&cache.conn, dead)).await?;
    }
    let keys: Vec<&str> = pending.iter().map(|p| p.key.as_str()).collect();
    let versions: Vec<[u8; 16]> = pending.iter().map(|_| random_version()).collect();
    // One pipeline per group of ids (see `for_groups`); not `send`, which runs script calls.
    let request = |mut conn: Connection, group: Vec<usize>| {
        let mut pipe = Pipeline::with_capacity(group.len() * 4);
        // Errors come back per command and are sorted out below: a lock key of another type is
        // not one.
        pipe.ignore_errors();
        for &i in &group {
            let p = &pending[i];
            let derived = Derived::of(&p.key);
            pipe.cmd("SET")
                .arg(derived.lock())
                .arg(token.as_bytes())
                .arg("NX")
                .arg("PX")
                .arg(lock_ttl)
                .arg("GET");
            pipe.cmd("SET")
                .arg(derived.version())
                .arg(&versions[i])
                .arg("NX")
                .arg("PX")
                .arg(version_ttl)
                .arg("GET");
            pipe.cmd("PEXPIRE").arg(derived.version()).arg(version_ttl);
            if !p.force {
                pipe.cmd("GET").arg(&p.key);
            }
        }
        async move {
            let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
            let mut replies = replies.into_iter();
            let per_id = group
                .iter()
                .map(|&i| {
                    let n = if pending[i].force { 3 } else { 4 };
                    Value::Array(replies.by_ref().take(n).collect())
                })
                .collect();
            Ok(per_id)
        }
    };
    let replies = for_groups(&cache.conn, &keys, request).await?;
    let mut prepared = Vec::with_capacity(pending.len());
    let mut release = Vec::new();
    // Keys of another type where a lock or a version belongs: replaced below.
    let mut foreign = Foreign::default();
    for (i, (p, reply)) in pending.iter().zip(replies).enumerate() {
        let malformed = |what: &str, reply: &Value| {
            Error::UnexpectedReply(format!("prepare: {what} returned {reply:?}"))
        };
        let Value::Array(parts) = reply else {
            return Err(malformed("the pipeline", &reply));
        };
        let mut parts = parts.into_iter();
        let mut lock_is_foreign = false;
        let holder = match parts.next().unwrap_or(Value::Nil) {
            Value::Nil => None,
            Value::BulkString(lock) => {
                match holder(&lock) {
                    Holder::Checked => {}
                    Holder::Unchecked => foreign.unchecked.push(i),
                    Holder::Stranger => foreign.strangers.push(i),
                }
                Some(lock)
            }
            other if is_wrong_type(&other) => {
                foreign.locks.push(i);
                lock_is_foreign = true;
                None
            }
            // `SET ... NX ... GET` is Redis 7.0's; older servers call it a syntax error.
            Value::ServerError(e) if e.details().is_some_and(|d| d.contains("syntax")) => {
                return Err(Error::UnexpectedReply(format!(
                    "taking a lock failed with `{e:?}`: ruecache needs Redis 7.0 or newer \
                     (`SET key value NX PX ttl GET`); upgrade the server"
                )));
            }
            other => {
                return Err(match other.extract_error() {
                    Err(e) => e.into(),
                    Ok(other) => malformed("the lock", &other),
                })
            }
        };
        let version = match parts.next().unwrap_or(Value::Nil) {
            Value::Nil => versions[i].to_vec(),
            Value::BulkString(version) => version,
            other if is_wrong_type(&other) => {
                foreign.versions.push(i);
                versions[i].to_vec()
            }
            other => {
                return Err(match other.extract_error() {
                    Err(e) => e.into(),
                    Ok(other) => malformed("the version", &other),
                })
            }
        };
        parts.next().unwrap_or(Value::Nil).extract_error()?;
        let data = match parts.next() {
            Some(Value::BulkString(data)) if data.first() == Some(&MAGIC) => Some(data),
            // Not ours, or of another type: a miss, which the commit's `SET` overwrites.
            Some(other) if !is_wrong_type(&other) => {
                other.extract_error()?;
                None
            }
            _ => None,
        };
        prepared.push(match (data, holder) {
            (Some(data), holder) => {
                if holder.is_none() && !lock_is_foreign {
                    release.push(p.key.clone());
                }
                Prepared::Data(data)
            }
            (None, _) if lock_is_foreign => Prepared::Cleared,
            (None, None) => Prepared::Locked(version),
            (None, Some(holder)) => Prepared::Busy(holder),
        });
    }
    // Only versions of ids locked here are replaced: a holder replaces its own.
    foreign
        .versions
        .retain(|&i| matches!(prepared[i], Prepared::Locked(_)));
    // Only the locks of ids still to wait for need to heal.
    for locks in [&mut foreign.strangers, &mut foreign.unchecked] {
        locks.retain(|&i| matches!(prepared[i], Prepared::Busy(_)));
    }
    if !foreign.is_empty() {
        foreign.replace(cache, pending, &versions).await?;
    }
    if !release.is_empty() {
        // Filled by another caller since the first read: the lock is not needed.
        let release = unlock(cache.conn.clone(), token, release, options.timeout);
        spawn_unlock(&cache.conn, release);
    }
    Ok(prepared)
}

/// Ids (indices into `pending`) whose lock or version key is no one's: it would block the id for
/// good, so it is mended.
///
/// - A key of another type where a lock or a version belongs (a lock that cannot be taken, a
///   version no commit can match) is replaced. Replacing a version is always safe (it is what an
///   invalidation does; at worst a concurrent commit is refused as stale), and a lock deleted
///   here is taken again by the next prepare like any free lock.
/// - A lock that holds no token of ours (written by hand or by another program), with no TTL or
///   a long one, gets the lock TTL at most (`PEXPIRE ... LT`, which counts a key without TTL as
///   expiring never), so it heals like the lock of a filler that crashed. Its id is waited for
///   meanwhile. A lock shaped like a token of a connection without liveness (no holder to
///   check) gets the lock TTL only if it has none (`PEXPIRE ... NX`): such a token's own lock
///   always has its taker's TTL, which is left as it is.
#[derive(Default)]
struct Foreign {
    locks: Vec<usize>,
    versions: Vec<usize>,
    strangers: Vec<usize>,
    unchecked: Vec<usize>,
}

/// How [`Foreign`] mends one key.
#[derive(Clone, Copy)]
enum Mend {
    DeleteLock,
    ReplaceVersion,
    ExpireLock,
    ExpirePersistentLock,
}

impl Foreign {
    fn is_empty(&self) -> bool {
        self.locks.is_empty()
            && self.versions.is_empty()
            && self.strangers.is_empty()
            && self.unchecked.is_empty()
    }

    /// One round trip: `DEL` each foreign lock, `SET` each foreign version to the fresh version
    /// this caller drew for it (and now fills under), `PEXPIRE ... LT` each stranger's lock and
    /// `PEXPIRE ... NX` each unchecked one.
    async fn replace<Id, T, C>(
        self,
        cache: &Cache<Id, T, C>,
        pending: &[Pending<Id>],
        versions: &[[u8; 16]],
    ) -> Result<(), Error> {
        let options = &cache.spec.options;
        let version_ttl = options.version_ttl.as_millis() as u64;
        let lock_ttl = options.lock_ttl.as_millis() as u64;
        let ids: Vec<(usize, Mend)> = (self.locks.iter().map(|&i| (i, Mend::DeleteLock)))
            .chain(self.versions.iter().map(|&i| (i, Mend::ReplaceVersion)))
            .chain(self.strangers.iter().map(|&i| (i, Mend::ExpireLock)))
            .chain(
                self.unchecked
                    .iter()
                    .map(|&i| (i, Mend::ExpirePersistentLock)),
            )
            .collect();
        let keys: Vec<&str> = ids.iter().map(|&(i, _)| pending[i].key.as_str()).collect();
        let request = |mut conn: Connection, group: Vec<usize>| {
            let mut pipe = Pipeline::with_capacity(group.len());
            for &g in &group {
                let (i, mend) = ids[g];
                let derived = Derived::of(&pending[i].key);
                match mend {
                    Mend::DeleteLock => pipe.cmd("DEL").arg(derived.lock()),
                    Mend::ReplaceVersion => pipe
                        .cmd("SET")
                        .arg(derived.version())
                        .arg(&versions[i])
                        .arg("PX")
                        .arg(version_ttl),
                    Mend::ExpireLock => pipe
                        .cmd("PEXPIRE")
                        .arg(derived.lock())
                        .arg(lock_ttl)
                        .arg("LT"),
                    Mend::ExpirePersistentLock => pipe
                        .cmd("PEXPIRE")
                        .arg(derived.lock())
                        .arg(lock_ttl)
                        .arg("NX"),
                };
            }
            async move { Ok(pipe.query_async::<Vec<Value>>(&mut conn).await?) }
        };
        let replies = for_groups(&cache.conn, &keys, request).await?;
        // A lock counts once, when its TTL is cut (`1`); later waits find it done.
        let expired = (ids.iter().zip(&replies))
            .filter(|((_, mend), reply)| {
                matches!(mend, Mend::ExpireLock | Mend::ExpirePersistentLock)
                    && **reply == Value::Int(1)
            })
            .count();
        if self.locks.len() + self.versions.len() + expired > 0 {
            warn!(
                locks = self.locks.len(),
                versions = self.versions.len(),
                expired_locks = expired,
                "mended keys that no filler wrote where the cache keeps locks or versions"
            );
        }
        Ok(())
    }
}

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
    let version_ttl = options.version_ttl.as_millis() as u64;
    let mut calls = Calls::new(&INVALIDATE, keys.len(), keys.len() * 64);
    for key in &keys {
        calls.push(
            &[key.as_bytes(), &version_key(key)],
            &[Arg::Bytes(&random_version()), Arg::Int(version_ttl)],
        );
    }
    let deadline = Instant::now() + options.timeout;
    let span = debug_span!("invalidate", ids = keys.len());
    // In a task of its own, so that it happens even if the caller stops waiting: typically a
    // request cancelled after its database write, whose old value would otherwise stay cached
    // for the data TTL.
    let (conn, timeout) = (cache.conn.clone(), options.timeout);
    let background = Arc::clone(conn.background());
    let task = tokio::spawn(
        background
            .track(async move { within(deadline, timeout, send(&conn, calls)).await })
            .instrument(span),
    );
    task.await
        .map_err(|e| Error::UnexpectedReply(format!("the invalidation task failed: {e}")))??;
    Counters::add(&cache.spec.stats.invalidations, keys.len());
    Ok(())
}

pub(crate) enum Read<T> {
    Value(T),
    Absent,
    Miss { force: bool },
}

/// Interprets a cached value: anything not in our format, or not decodable, is a miss.
pub(crate) fn read<T>(codec: &impl Codec<T>, value: Value) -> Read<T> {
    let Value::BulkString(bytes) = value else {
        return Read::Miss { force: false };
    };
    match open(&bytes) {
        Some(Cached::Present) => match codec.decode_owned(bytes, PAYLOAD_START) {
            Ok(v) => Read::Value(v),
            Err(e) => {
                debug!(error = %e, "cached value does not decode; refilling it");
                Read::Miss { force: true }
            }
        },
        Some(Cached::Absent) => Read::Absent,
        None => Read::Miss { force: false },
    }
}

/// Removes duplicate ids, keeping the first of each.
pub(crate) fn dedup<Id: Eq + Hash>(ids: &mut Vec<Id>) {
    if ids.len() < 2 {
        return;
    }
    // A fast hasher, still seeded per process so that crafted ids cannot make this quadratic.
    let seen = || HashSet::with_capacity_and_hasher(ids.len(), RandomState::default());
    let mut first = seen();
    if ids.iter().all(|id| first.insert(id)) {
        return; // the usual case: nothing to remove
    }
    drop(first);
    let keep: Vec<bool> = {
        let mut seen = seen();
        ids.iter().map(|id| seen.insert(id)).collect()
    };
    let mut keep = keep.into_iter();
    ids.retain(|_| keep.next().unwrap_or(false));
}

/// [`within`] for the first read of a call, made right after the deadline was set: requests
/// sent at once, not retried (see [`fails_in_time`]).
async fn read_within<Id, T, C, R>(
    cache: &Cache<Id, T, C>,
    deadline: Instant,
    read: impl Future<Output = Result<R, Error>>,
) -> Result<R, Error> {
    let timeout = cache.spec.options.timeout;
    match cache.conn.request_bound() {
        Some(bound) if bound < timeout => read.await,
        _ => within(deadline, timeout, read).await,
    }
}

/// Whether `requests` requests in a row on `conn` end (answered or failed by the connection
/// itself) before `deadline`. Then the deadline's timer could never fire first, so it is not
/// armed: on the hit path a timer costs about as much as all the rest of the cache's own work.
fn fails_in_time(conn: &Connection, deadline: Instant, requests: u32) -> bool {
    conn.request_bound()
        .is_some_and(|bound| Instant::now() + bound * requests < deadline)
}

async fn within<T>(
    deadline: Instant,
    timeout: Duration,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    timeout_at(deadline, fut)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

/// The length of a lock token.
pub(crate) const TOKEN_LEN: usize = 32;

/// A lock token: the id of the connection that takes the lock (see
/// [`liveness`]), then random hex digits.
#[derive(Debug, Clone, Copy)]
struct Token([u8; TOKEN_LEN]);

impl Token {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn random_token(conn: &Connection) -> Token {
    let mut token = [0; TOKEN_LEN];
    token[..ID_LEN].copy_from_slice(conn.liveness().id());
    token[ID_LEN..].copy_from_slice(&liveness::random_hex());
    Token(token)
}

fn random_version() -> [u8; 16] {
    rand::random()
}
