//! The get-and-fill protocol, step by step (the crate docs give the safety argument).
//!
//! 1. Read every data key in one round trip (per slot group on a cluster): this module.
//! 2. For the misses, take each id's lease in its data key and read what it holds, one command
//!    per id in one round trip ([`prepare`]).
//! 3. Fetch the ids this caller leased, in one call, and commit them with one compare-and-set
//!    script that writes each value only over the caller's own lease ([`commit`]); one round
//!    trip, shared with concurrent callers' commits where the connection allows (see
//!    [`coalesce`](crate::coalesce)). If the caller stops waiting, a spawned task finishes the
//!    commit; if it fails or stops earlier, its leases are released ([`release`]).
//! 4. Ids leased by others are waited for and go through step 2 again ([`wait`]). A waiter
//!    subscribes to the id's channel and flags the lease, and the release of a flagged lease
//!    publishes a wake-up; it still polls with backoff, as the safety net and where wake-ups are
//!    unavailable. A lease past its deadline, or whose holder's liveness key is gone (see
//!    [`liveness`](crate::liveness)), is taken over.
//!
//! Values past their TTL, and values a read drew for a refresh ahead of their expiry, take
//! another way: see [`refresh`].
//!
//! Before step 2, ids are claimed in the connection's in-process registry (see
//! [`flight`](crate::flight)): an id another caller on the connection is already filling is
//! waited for and read again, not leased or fetched a second time. Every wait ends at the call's
//! deadline ([`deadline`]).

mod commit;
pub(crate) mod deadline;
pub(crate) mod lease;
mod prepare;
pub(crate) mod refresh;
mod release;
mod wait;

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;

use foldhash::fast::RandomState;
use futures_util::future::join_all;
use redis::Value;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, Instrument as _};

use self::deadline::{fails_in_time, last_read, read_within, within};
use self::lease::{now_ms, Held, Token};
use self::prepare::{prepare, Prepared, Stuck};
use self::refresh::{Age, Aged};
use self::release::Taking;
use crate::batch::{get_cmd, get_many, missing_if_wrong_type};
use crate::cache::Cache;
use crate::coalesce;
use crate::codec::{open, Cached, Codec};
use crate::flight::{Claimed, Flight};
use crate::keys::{channel, KeyBuf};
use crate::near::Near;
use crate::notify::Interest;
use crate::stats::Stat;
use crate::Error;

/// A fetch function: called with ids, it answers the values the source has for them. Written
/// once here so that the engine's functions need one bound, not three.
pub(crate) trait Fetch<Id, T, E> {
    /// What the fetch answers.
    type Items: IntoIterator<Item = (Id, T)>;
    /// The fetch's future.
    type Future: Future<Output = Result<Self::Items, E>>;

    fn call(&mut self, ids: Vec<Id>) -> Self::Future;
}

impl<Id, T, E, F, Fut, R> Fetch<Id, T, E> for F
where
    F: FnMut(Vec<Id>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: IntoIterator<Item = (Id, T)>,
{
    type Items = R;
    type Future = Fut;

    fn call(&mut self, ids: Vec<Id>) -> Fut {
        self(ids)
    }
}

/// An id still to be answered.
struct Pending<Id> {
    id: Id,
    key: String,
    /// The data key holds something the cache cannot use: seize it.
    stuck: Option<Stuck>,
    /// The lease of a holder found dead: take it over.
    takeover: Option<Held>,
}

impl<Id> Pending<Id> {
    fn new(id: Id, key: String) -> Self {
        Self {
            id,
            key,
            stuck: None,
            takeover: None,
        }
    }
}

/// An id whose lease this caller holds.
struct Locked<Id> {
    id: Id,
    key: String,
}

pub(crate) async fn get_and_fill<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    mut ids: Vec<Id>,
    fetch: F,
    out: &mut Vec<(Id, T)>,
) -> Result<(), E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    if ids.is_empty() {
        return Ok(());
    }
    dedup(&mut ids);
    let options = &cache.spec.options;
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

    out.reserve(ids.len());
    let mut keys = keys;
    let near = cache.near.as_ref().filter(|near| near.serving());
    if let Some(near) = near {
        from_near(cache, near, &mut ids, &mut keys, out);
        if ids.is_empty() {
            return Ok(());
        }
    }
    // What follows waits on Redis; a call answered from memory never looks at the clock here.
    let deadline = Instant::now() + options.timeout;
    let ticket = near.and_then(|near| near.ticket());
    let values = read_within(cache, deadline, get_many(&cache.conn, &keys)).await?;
    let beta = cache.refresh_beta();
    let mut sorted = Sorted::new();
    for ((id, key), value) in ids.into_iter().zip(keys).zip(values) {
        if let (Some(near), Some(ticket)) = (near, &ticket) {
            near.offer(ticket, key, &value, options);
        }
        sorted.push(id, key, read(&*cache.codec, value, beta), out);
    }
    if sorted.settle(cache) {
        return Ok(());
    }
    // Boxed: the fill's future is ten times the read's, and every call (a hit too) would
    // otherwise carry it and copy it around.
    let misses = sorted.pending.len() + sorted.stale.len();
    let span = crate::stats::cache_span!(options.name, "fill", misses);
    Box::pin(fill(cache, sorted, fetch, out, deadline).instrument(span)).await
}

/// [`get_and_fill`] of a single id: one `GET`, and on a hit nothing else (no dedup, no key
/// vector, no batch of replies). `Ok(None)` when the source does not have the id.
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
    let options = &cache.spec.options;
    if let Some(near) = cache.near.as_ref().filter(|near| near.serving()) {
        let mut key = KeyBuf::new();
        cache.write_data_key(&id, &mut key)?;
        if let Some(found) = near.get(&*cache.codec, key.as_str().as_bytes()) {
            near.count(1, 0);
            return Ok(found.map(|value| (id, value)));
        }
        near.count(0, 1);
        let deadline = Instant::now() + options.timeout;
        // Boxed: a hit from memory does not carry the read's future.
        return Box::pin(get_and_fill_one_near(cache, near, id, key, fetch, deadline)).await;
    }
    let deadline = Instant::now() + options.timeout;
    let value = read_one(cache, deadline, |key| cache.write_data_key(&id, key)).await?;
    answer_one(cache, id, value, fetch, deadline).await
}

/// The first read of a single id, whose data key `key` writes: through the connection's
/// coalescer when its waits end before the deadline, else a `GET` of its own (the key written
/// straight into the command).
async fn read_one<Id, T, C>(
    cache: &Cache<Id, T, C>,
    deadline: Instant,
    key: impl Fn(&mut dyn std::fmt::Write) -> Result<(), Error>,
) -> Result<Value, Error> {
    match cache.conn.coalescer() {
        // Every wait of a coalesced read ends before the deadline (see `coalesce`).
        Some(coalescer) if fails_in_time(&cache.conn, deadline, coalesce::REQUESTS) => {
            let mut buf = KeyBuf::new();
            key(&mut buf)?;
            coalescer.get(buf.as_str()).await
        }
        _ => {
            let get = get_cmd(key)?;
            read_within(cache, deadline, async {
                missing_if_wrong_type(get.query_async(&mut cache.conn.clone()).await)
            })
            .await
        }
    }
}

/// [`get_and_fill_one`] of an id the near cache does not hold (its key is `key`): read from
/// Redis, and what Redis answers is offered to the near cache.
async fn get_and_fill_one_near<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    near: &Near,
    id: Id,
    key: KeyBuf,
    fetch: F,
    deadline: Instant,
) -> Result<Option<(Id, T)>, E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    let ticket = near.ticket();
    let written =
        |out: &mut dyn std::fmt::Write| out.write_str(key.as_str()).map_err(|_| Error::InvalidId);
    let value = read_one(cache, deadline, written).await?;
    if let Some(ticket) = &ticket {
        near.offer(ticket, key.as_str(), &value, &cache.spec.options);
    }
    answer_one(cache, id, value, fetch, deadline).await
}

/// The rest of [`get_and_fill_one`] once Redis answered the first read.
async fn answer_one<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    id: Id,
    value: Value,
    fetch: F,
    deadline: Instant,
) -> Result<Option<(Id, T)>, E>
where
    Id: Eq + Hash + Clone + Send + Sync + 'static,
    C: Codec<T>,
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    let options = &cache.spec.options;
    match read(&*cache.codec, value, cache.refresh_beta()) {
        Read::Value(v, Age::Fresh) => {
            cache.spec.stats.add(Stat::Hits, 1);
            Ok(Some((id, v)))
        }
        Read::Absent => {
            cache.spec.stats.add(Stat::Hits, 1);
            Ok(None)
        }
        // Rare: a refresh, a stale value, a miss. From here on the key is needed as a string.
        read => {
            let key = cache.data_key(&id)?;
            let mut out = Vec::with_capacity(1);
            let mut sorted = Sorted::new();
            sorted.push(id, &key, read, &mut out);
            if sorted.settle(cache) {
                return Ok(out.pop());
            }
            // Boxed: the hit path's future stays small.
            let span = crate::stats::cache_span!(options.name, "fill", misses = 1);
            Box::pin(fill(cache, sorted, fetch, &mut out, deadline).instrument(span)).await?;
            Ok(out.pop())
        }
    }
}

/// Answers what the near cache holds of `ids` (removed from `ids` and `keys`, which stay in
/// step).
fn from_near<Id, T, C: Codec<T>>(
    cache: &Cache<Id, T, C>,
    near: &Near,
    ids: &mut Vec<Id>,
    keys: &mut Vec<&str>,
    out: &mut Vec<(Id, T)>,
) {
    let asked = ids.len();
    let mut i = 0;
    while i < ids.len() {
        match near.get(&*cache.codec, keys[i].as_bytes()) {
            Some(found) => {
                let id = ids.swap_remove(i);
                keys.swap_remove(i);
                if let Some(value) = found {
                    out.push((id, value));
                }
            }
            None => i += 1,
        }
    }
    near.count(asked - ids.len(), ids.len());
}

/// Steps 2 to 5 for the ids the first read missed, after the refill of its stale values (see
/// [`refresh`]). Ids another caller on this connection is already filling are waited for and
/// read again instead (see [`flight`](crate::flight)).
async fn fill<Id, T, C, F, E>(
    cache: &Cache<Id, T, C>,
    sorted: Sorted<Id, T>,
    mut fetch: F,
    out: &mut Vec<(Id, T)>,
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
    let Sorted {
        mut pending, stale, ..
    } = sorted;
    stats.add(Stat::Misses, pending.len() + stale.len());
    if !stale.is_empty() {
        refresh::refill(cache, stale, &mut fetch, out, &mut pending, deadline).await?;
    }
    if pending.is_empty() {
        return Ok(());
    }
    let token = Token::new(&cache.conn);
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
        stats.add(Stat::FlightWaits, follow.len());
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
            .map_err(|_| options.wait().timed_out())?;
        let keys: Vec<&str> = follow.iter().map(|p| p.key.as_str()).collect();
        let values = within(deadline, options.wait(), get_many(&cache.conn, &keys)).await?;
        drop(keys);
        pending = Vec::new();
        for (p, value) in follow.into_iter().zip(values) {
            match read(&*cache.codec, value, None) {
                // Whatever its age: it was committed, or refilled, since the first read.
                Read::Value(v, _) => out.push((p.id, v)),
                Read::Absent => {}
                // Not committed (refused as stale, fetch failed, leader dropped): fill it.
                Read::Miss => pending.push(p),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
    }
}

/// Leases, fetches and commits the ids this caller leads; ids leased by other processes are
/// waited for (woken by their release, or polled with backoff). Each id is landed (its
/// followers woken) once it is resolved.
async fn lead_fill<Id, T, C, F, E>(
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
    F: Fetch<Id, T, E>,
    E: From<Error>,
{
    let options = &cache.spec.options;
    let stats = &cache.spec.stats;
    let mut backoff = options.backoff_min;
    if !pending.is_empty() {
        // Others must be able to tell that this connection's leases have a live holder. If the
        // key cannot be reached (its slot may be on a cluster node that is down) the fill goes
        // on after a quarter of the timeout at most: others cannot read the key either and wait
        // as for a live holder; at worst they take this caller's leases over, which costs a
        // second fetch, never a stale write (a commit whose lease was taken is refused). The
        // next fill tries again. A refusal (an ACL without the liveness keys) is an error.
        let liveness = cache.conn.liveness().ensure(&cache.conn);
        let bound = (Instant::now() + options.timeout / 4).min(deadline);
        match within(bound, options.wait().bounded(options.timeout / 4), liveness).await {
            Ok(()) => {}
            Err(e) if e.is_unreachable() => {
                debug!(error = %e, "could not reach the liveness key; filling without it");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Wake-ups for the ids others hold, from the first wait on.
    let mut interest: Option<Interest> = None;
    while !pending.is_empty() {
        stats.add(Stat::LockAttempts, pending.len());
        let lease = token.lease(options.lock_ttl);
        let mut taking = Taking {
            conn: &cache.conn,
            lease,
            wait: options.wait(),
            pending: &pending,
        };
        // On an error, or if the caller stops waiting, `taking` releases this round's leases.
        let replies = within(deadline, options.wait(), prepare(cache, lease, &pending)).await?;
        taking.disarm();
        drop(taking);
        let mut locked = Vec::new();
        let mut waiting = Vec::new();
        // The lease each waiting id is waited for (`None`: seize it at once).
        let mut held = Vec::new();
        for (p, reply) in pending.into_iter().zip(replies) {
            let p = Pending {
                takeover: None,
                stuck: None,
                ..p
            };
            match reply {
                Prepared::Data(bytes) => match decode(&*cache.codec, &bytes) {
                    Some(Some(v)) => out.push((p.id, v)),
                    Some(None) => {}
                    None => {
                        waiting.push(Pending {
                            stuck: Some(Stuck::bytes(&bytes)),
                            ..p
                        });
                        held.push(None);
                    }
                },
                Prepared::Locked => locked.push(Locked {
                    id: p.id,
                    key: p.key,
                }),
                Prepared::Busy(lease) => {
                    waiting.push(p);
                    held.push(Some(lease));
                }
                Prepared::Stuck(stuck) => {
                    waiting.push(Pending {
                        stuck: Some(stuck),
                        ..p
                    });
                    held.push(None);
                }
            }
        }
        // Counted before this caller's own fetch: a wait is known as soon as the reply says so.
        let busy = held.iter().filter(|h| h.is_some()).count();
        stats.add(Stat::LockWaits, busy);
        if !locked.is_empty() {
            commit::fetch_and_commit(cache, lease, locked, fetch, out).await?;
        }
        if waiting.is_empty() {
            flight.land_except(|_| false);
            return Ok(());
        }
        let still: HashSet<&str> = waiting.iter().map(|p| p.key.as_str()).collect();
        flight.land_except(|key| still.contains(key));
        drop(still);
        pending = waiting;
        if busy < pending.len() {
            // Something to seize or to look at again: no reason to wait.
            continue;
        }
        // Leases past their deadline: free to take, at once.
        let now = now_ms();
        let mut expired = false;
        for (p, h) in pending.iter_mut().zip(&mut held) {
            if h.as_ref().is_some_and(|h| h.is_expired(now)) {
                p.takeover = h.take();
                expired = true;
            }
        }
        if expired {
            continue;
        }
        let leases: Vec<&Held> = held.iter().flatten().collect();
        let dead = match within(deadline, options.wait(), wait::dead_holders(cache, &leases)).await
        {
            Ok(dead) => dead,
            // Unknown (a holder's liveness key may be on a cluster node that is down): treated
            // as alive, so their leases are waited for as usual.
            Err(e) if e.is_unreachable() => {
                debug!(error = %e, "could not reach lease holders' liveness keys");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        if !dead.is_empty() {
            // Leases of a dead holder: take them over right away.
            stats.add(Stat::Takeovers, dead.len());
            debug!(ids = dead.len(), "taking over leases of a holder that died");
            for i in dead {
                pending[i].takeover = held[i].take();
            }
            continue;
        }
        if let Some(notifier) = cache.conn.notifier().filter(|n| !n.is_off()) {
            // Subscribe, then flag the leases: a release before the flag shows in the flag's
            // reply (then look again at once), one after it publishes to the subscription.
            let watcher = interest.get_or_insert_with(|| notifier.interest());
            let channels: Vec<Vec<u8>> = pending.iter().map(|p| channel(&p.key)).collect();
            let watch = watcher.watch(channels.iter().map(Vec::as_slice));
            match within(deadline, options.wait(), async { Ok(watch.await?) }).await {
                Ok(fresh) => {
                    // A lease flagged before, with the subscription in place since: its
                    // release publishes to us already.
                    let unflagged: Vec<(&str, &Held)> = pending
                        .iter()
                        .zip(&held)
                        .filter_map(|(p, h)| Some((p.key.as_str(), h.as_ref()?)))
                        .filter(|(_, h)| fresh || !h.is_flagged())
                        .collect();
                    if !unflagged.is_empty() {
                        let flagged =
                            within(deadline, options.wait(), wait::flag(cache, &unflagged)).await?;
                        if !flagged {
                            continue;
                        }
                    }
                }
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
            return Err(options.wait().timed_out().into());
        }
        debug!(
            ids = pending.len(),
            backoff_ms = backoff.as_millis() as u64,
            listening,
            "waiting for other fillers"
        );
        // The backoff stays as the safety net: for a lease that expires without a release, a
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
            stats.add(Stat::Wakeups, 1);
        } else {
            backoff = (backoff * 2).min(options.backoff_max);
        }
    }
    Ok(())
}

/// A value found by the lease step: `Some(Some(value))`, `Some(None)` for "absent", `None` if
/// the codec cannot read it. Its age does not matter: it was committed or refilled since the
/// caller's first read.
fn decode<T>(codec: &impl Codec<T>, bytes: &[u8]) -> Option<Option<T>> {
    match open(bytes)? {
        Cached::Present(found) => codec.decode(&bytes[found.start..]).ok().map(Some),
        Cached::Absent => Some(None),
        Cached::Leased => None,
    }
}

pub(crate) enum Read<T> {
    /// A value, and how it stands (see [`refresh`]).
    Value(T, Age),
    Absent,
    /// Not cached (or not usable: the lease step finds out what the key holds).
    Miss,
}

/// Interprets a cached value: anything not in our format, or not decodable, is a miss. `beta`
/// is the refresh-ahead draw's β, `None` if this read cannot refresh.
pub(crate) fn read<T>(codec: &impl Codec<T>, value: Value, beta: Option<f64>) -> Read<T> {
    let Value::BulkString(bytes) = value else {
        return Read::Miss;
    };
    match open(&bytes) {
        Some(Cached::Present(found)) => {
            let age = match found.timing {
                None => Age::Fresh,
                Some(_) => refresh::age(&found, &bytes, now_ms(), beta),
            };
            match codec.decode_owned(bytes, found.start) {
                Ok(v) => Read::Value(v, age),
                Err(e) => {
                    debug!(error = %e, "cached value does not decode; refilling it");
                    Read::Miss
                }
            }
        }
        Some(Cached::Absent) => Read::Absent,
        Some(Cached::Leased) | None => Read::Miss,
    }
}

/// The first read of a call, sorted: answered ids go to the output, the rest to the fill.
struct Sorted<Id, T> {
    hits: usize,
    /// Stale values served as they are: another caller refills them.
    held: usize,
    pending: Vec<Pending<Id>>,
    stale: Vec<Aged<Id, T>>,
    due: Vec<Aged<Id, ()>>,
}

impl<Id: Clone, T> Sorted<Id, T> {
    fn new() -> Self {
        Self {
            hits: 0,
            held: 0,
            pending: Vec::new(),
            stale: Vec::new(),
            due: Vec::new(),
        }
    }

    fn push(&mut self, id: Id, key: &str, read: Read<T>, out: &mut Vec<(Id, T)>) {
        match read {
            Read::Value(v, age) => {
                match age {
                    Age::Fresh => {}
                    Age::Due(seen) => self.due.push(Aged {
                        id: id.clone(),
                        key: key.to_owned(),
                        seen,
                        value: (),
                    }),
                    Age::Held => self.held += 1,
                    Age::Stale(seen) => {
                        self.stale.push(Aged {
                            id,
                            key: key.to_owned(),
                            seen,
                            value: v,
                        });
                        return;
                    }
                }
                self.hits += 1;
                out.push((id, v));
            }
            Read::Absent => self.hits += 1,
            Read::Miss => self.pending.push(Pending::new(id, key.to_owned())),
        }
    }

    /// Counts the hits, starts the refreshes drawn; `true` if nothing is left to fill.
    fn settle<C: Codec<T>>(&mut self, cache: &Cache<Id, T, C>) -> bool {
        let stats = &cache.spec.stats;
        stats.add(Stat::Hits, self.hits);
        if self.held > 0 {
            stats.add(Stat::StaleServed, self.held);
        }
        if !self.due.is_empty() {
            refresh::spawn_refresh(cache, std::mem::take(&mut self.due), None);
        }
        self.pending.is_empty() && self.stale.is_empty()
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
