//! The lease step: one command per id takes the id's lease in its data key and reads what the
//! key holds, in one round trip for the whole batch.
//!
//! `SET key lease NX PX ttl GET` (the lock TTL plus the lease's grace, see
//! [`lease`](super::lease)) either puts the caller's lease in an empty data key
//! (answering nil: the caller now fills the id) or leaves the key alone and answers what it
//! holds: a value someone committed since the first read, another caller's lease (wait for
//! it), or something the cache cannot use (bytes not in its format or that its codec cannot
//! read, or a key of another type). The latter is replaced by a compare-and-set of the lease
//! over exactly what was seen (`seize.lua`), in the next round.

use redis::{Pipeline, Value};
use sha1_smol::Sha1;

use super::lease::{Held, Lease, GRACE};
use super::release::unlock_calls;
use super::Pending;
use crate::batch::{for_groups, is_wrong_type};
use crate::cache::Cache;
use crate::codec::{open, Cached};
use crate::scripts::{send, Arg, Calls, SEIZE};
use crate::{Connection, Error};

/// What the lease step found for one id.
pub(super) enum Prepared {
    /// A value, or an "absent" marker, committed since the first read: no lease taken.
    Data(Vec<u8>),
    /// The caller's lease is in place: it fills the id.
    Locked,
    /// Another caller's lease.
    Busy(Held),
    /// Something the cache cannot use: seized in the next round.
    Stuck(Stuck),
}

/// What a data key holds that the cache cannot use, as the seize script checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stuck {
    /// Bytes, named by their SHA1 (hex).
    Bytes(String),
    /// A key of another type.
    OtherType,
}

impl Stuck {
    pub(super) fn bytes(bytes: &[u8]) -> Self {
        Self::Bytes(Sha1::from(bytes).digest().to_string())
    }

    fn seen(&self) -> &[u8] {
        match self {
            Self::Bytes(sha) => sha.as_bytes(),
            Self::OtherType => b"",
        }
    }
}

/// The lease step for `pending`: `SET ... NX PX ... GET` for each id, or the seize script for
/// ids found stuck in the previous round. Leases of holders found dead are released first (the
/// unlock script, given the dead holder's lease), so that they can be taken here.
pub(super) async fn prepare<Id, T, C>(
    cache: &Cache<Id, T, C>,
    lease: Lease,
    pending: &[Pending<Id>],
) -> Result<Vec<Prepared>, Error> {
    let options = &cache.spec.options;
    // The lease's key outlives its deadline (see `lease`).
    let lock_ttl = (options.lock_ttl + GRACE).as_millis() as u64;
    let dead: Vec<(&str, Vec<u8>)> = pending
        .iter()
        .filter_map(|p| Some((p.key.as_str(), p.takeover.as_ref()?.unflagged())))
        .collect();
    if !dead.is_empty() {
        let leases = dead.iter().map(|(key, lease)| (*key, lease.as_slice()));
        send(&cache.conn, unlock_calls(&cache.conn, leases)).await?;
    }
    let lease = lease.as_bytes();
    let mut prepared: Vec<Option<Prepared>> = pending.iter().map(|_| None).collect();

    let stuck: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].stuck.is_some())
        .collect();
    if !stuck.is_empty() {
        let mut calls = Calls::new(&SEIZE, stuck.len(), stuck.len() * 128);
        for &i in &stuck {
            let p = &pending[i];
            let seen = p.stuck.as_ref().map_or(&b""[..], Stuck::seen);
            calls.push(
                &[p.key.as_bytes()],
                &[Arg::Bytes(lease), Arg::Int(lock_ttl), Arg::Bytes(seen)],
            );
        }
        let replies = send(&cache.conn, calls).await?;
        for (&i, reply) in stuck.iter().zip(replies) {
            prepared[i] = Some(match reply {
                Value::Int(1) => Prepared::Locked,
                Value::BulkString(bytes) => found(bytes),
                other => {
                    return Err(Error::UnexpectedReply(format!("seize returned {other:?}")));
                }
            });
        }
    }

    let free: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].stuck.is_none())
        .collect();
    if !free.is_empty() {
        let keys: Vec<&str> = free.iter().map(|&i| pending[i].key.as_str()).collect();
        // One pipeline per group of ids (see `for_groups`).
        let request = |mut conn: Connection, group: Vec<usize>| {
            let mut pipe = Pipeline::with_capacity(group.len());
            // Errors come back per command and are sorted out below: a key of another type is
            // not one.
            pipe.ignore_errors();
            for &g in &group {
                pipe.cmd("SET")
                    .arg(keys[g])
                    .arg(lease)
                    .arg("NX")
                    .arg("PX")
                    .arg(lock_ttl)
                    .arg("GET");
            }
            async move { Ok(pipe.query_async::<Vec<Value>>(&mut conn).await?) }
        };
        let replies = for_groups(&cache.conn, &keys, request).await?;
        for (&i, reply) in free.iter().zip(replies) {
            prepared[i] = Some(match reply {
                Value::Nil => Prepared::Locked,
                Value::BulkString(bytes) => found(bytes),
                other if is_wrong_type(&other) => Prepared::Stuck(Stuck::OtherType),
                // `SET ... NX ... GET` is Redis 7.0's; older servers call it a syntax error.
                Value::ServerError(e) if e.details().is_some_and(|d| d.contains("syntax")) => {
                    return Err(Error::UnexpectedReply(format!(
                        "taking a lease failed with `{e:?}`: ruecache needs Redis 7.0 or newer \
                         (`SET key value NX PX ttl GET`); upgrade the server"
                    )));
                }
                other => {
                    return Err(match other.extract_error() {
                        Err(e) => e.into(),
                        Ok(other) => {
                            Error::UnexpectedReply(format!("taking a lease returned {other:?}"))
                        }
                    });
                }
            });
        }
    }
    Ok(prepared
        .into_iter()
        .map(|p| p.expect("every id was prepared"))
        .collect())
}

/// Reads what a data key holds when the caller could not lease it.
fn found(bytes: Vec<u8>) -> Prepared {
    match open(&bytes) {
        Some(Cached::Present(_) | Cached::Absent) => Prepared::Data(bytes),
        Some(Cached::Leased) => match Held::parse(bytes) {
            Ok(held) => Prepared::Busy(held),
            Err(bytes) => Prepared::Stuck(Stuck::bytes(&bytes)),
        },
        None => Prepared::Stuck(Stuck::bytes(&bytes)),
    }
}
