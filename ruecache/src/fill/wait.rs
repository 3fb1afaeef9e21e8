//! Waiting for other fillers: flagging their leases so that their release wakes this caller,
//! and finding holders that died.

use std::collections::HashSet;

use redis::Value;

use super::lease::{Held, Holder};
use crate::batch::get_many;
use crate::cache::Cache;
use crate::liveness;
use crate::scripts::{send, Arg, Calls, FLAG};
use crate::Error;

/// Flags the leases of `waiting` (data keys and the leases seen in them) as waited for, so that
/// their release publishes a wake-up. The caller has subscribed to their channels before: a
/// release before the flag shows in the reply, one after it is heard. Returns whether every
/// lease is still in place; if one is not, the caller looks again at once.
pub(super) async fn flag<Id, T, C>(
    cache: &Cache<Id, T, C>,
    waiting: &[(&str, &Held)],
) -> Result<bool, Error> {
    let mut calls = Calls::new(&FLAG, waiting.len(), waiting.len() * 96);
    for (key, held) in waiting {
        calls.push(&[key.as_bytes()], &[Arg::Bytes(&held.lease)]);
    }
    let replies = send(&cache.conn, calls).await?;
    Ok(replies.iter().all(|r| *r == Value::Int(1)))
}

/// The indices of `holders` whose connection's liveness key is gone: those holders died (see
/// [`liveness`]). Holders of this connection are alive by definition, and holders without
/// liveness are never found dead (their leases expire at the lock TTL).
pub(super) async fn dead_holders<Id, T, C>(
    cache: &Cache<Id, T, C>,
    holders: &[&Held],
) -> Result<Vec<usize>, Error> {
    let own = cache.conn.liveness().id();
    let holder_keys: Vec<Option<String>> = holders
        .iter()
        .map(|h| {
            (h.holder == Holder::Checked && !h.token().starts_with(own))
                .then(|| liveness::holder_key(h.token()))
                .flatten()
        })
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
