//! Sends per-id work to Redis in as few round trips as the topology allows.
//!
//! On a standalone server a batch is one request per chunk of ids. On a cluster, redis-rs routes
//! a pipeline by its first key and refuses mixed slots, so ids are grouped by hash slot first and
//! the groups are sent concurrently (they share each node's multiplexed connection). Chunks bound
//! the size of any single request.

use std::future::Future;

use futures_util::stream::{FuturesOrdered, StreamExt as _};
use redis::{Cmd, RedisWrite as _, Value};

use crate::keys::slot;
use crate::{Connection, Error};

/// The most ids in one request.
pub(crate) const CHUNK: usize = 512;

/// The most groups in flight at once. A request's response timeout runs from the moment it is
/// queued, so sending every group of a huge cluster batch at once (up to one per slot) would let
/// the last ones time out while they wait behind the others.
const IN_FLIGHT: usize = 128;

/// Splits `keys` into groups that may share one request, runs `send` for each group
/// concurrently, and returns the replies in the order of `keys`.
///
/// `send` receives the indices (into `keys`) of its group and must return one reply per index.
pub(crate) async fn for_groups<K, F, Fut>(
    conn: &Connection,
    keys: &[K],
    send: F,
) -> Result<Vec<Value>, Error>
where
    K: AsRef<[u8]>,
    F: Fn(Connection, Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<Value>, Error>>,
{
    if keys.len() <= 1 || (!conn.is_cluster() && keys.len() <= CHUNK) {
        return send(conn.clone(), (0..keys.len()).collect()).await;
    }
    let groups = groups(conn.is_cluster(), keys);
    let mut queued = groups.iter();
    let mut in_flight = FuturesOrdered::new();
    for group in queued.by_ref().take(IN_FLIGHT) {
        in_flight.push_back(send(conn.clone(), group.clone()));
    }
    let mut replies = Vec::with_capacity(groups.len());
    while let Some(reply) = in_flight.next().await {
        replies.push(reply?);
        if let Some(group) = queued.next() {
            in_flight.push_back(send(conn.clone(), group.clone()));
        }
    }
    let mut out = vec![Value::Nil; keys.len()];
    for (group, replies) in groups.into_iter().zip(replies) {
        if replies.len() != group.len() {
            return Err(Error::UnexpectedReply(format!(
                "{} replies for {} keys",
                replies.len(),
                group.len()
            )));
        }
        for (i, reply) in group.into_iter().zip(replies) {
            out[i] = reply;
        }
    }
    Ok(out)
}

fn groups<K: AsRef<[u8]>>(cluster: bool, keys: &[K]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    if cluster {
        let mut by_slot: std::collections::HashMap<u16, Vec<usize>> = Default::default();
        for (i, key) in keys.iter().enumerate() {
            by_slot.entry(slot(key.as_ref())).or_default().push(i);
        }
        for (_, indices) in by_slot {
            groups.extend(indices.chunks(CHUNK).map(<[usize]>::to_vec));
        }
    } else {
        let all: Vec<usize> = (0..keys.len()).collect();
        groups.extend(all.chunks(CHUNK).map(<[usize]>::to_vec));
    }
    groups
}

/// A `GET` whose key is written by `key`, straight into the command buffer (no key string).
pub(crate) fn get_cmd(
    key: impl FnOnce(&mut dyn std::fmt::Write) -> Result<(), Error>,
) -> Result<Cmd, Error> {
    /// `fmt::Write` over the command's buffer for its next argument.
    struct Arg<W>(W);
    impl<W: std::io::Write> std::fmt::Write for Arg<W> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write_all(s.as_bytes()).map_err(|_| std::fmt::Error)
        }
    }
    // Room for "GET" and a key of up to 125 bytes without growing.
    let mut cmd = Cmd::with_capacity(2, 128);
    cmd.arg("GET");
    key(&mut Arg(cmd.writer_for_next_arg()))?;
    Ok(cmd)
}

/// Whether a reply is Redis's `WRONGTYPE` error: the key holds a list, a hash... (written by
/// someone else), where the cache keeps a string.
pub(crate) fn is_wrong_type(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "WRONGTYPE")
}

/// A `GET`'s reply, with a key of another type (written by someone else) read as missing, as
/// `MGET` reads it: a miss, which the commit's `SET` then overwrites.
pub(crate) fn missing_if_wrong_type(reply: redis::RedisResult<Value>) -> Result<Value, Error> {
    match reply {
        Err(e) if e.code() == Some("WRONGTYPE") => Ok(Value::Nil),
        reply => Ok(reply?),
    }
}

/// Reads many string keys: `GET` for one, `MGET` per group for more.
pub(crate) async fn get_many(conn: &Connection, keys: &[&str]) -> Result<Vec<Value>, Error> {
    for_groups(conn, keys, |mut conn, group| async move {
        if let [i] = group[..] {
            let value = redis::cmd("GET").arg(keys[i]).query_async(&mut conn).await;
            return Ok(vec![missing_if_wrong_type(value)?]);
        }
        let len = group.iter().map(|&i| keys[i].len()).sum::<usize>();
        let mut cmd = Cmd::with_capacity(group.len() + 1, len + 4);
        cmd.arg("MGET");
        for &i in &group {
            cmd.arg(keys[i]);
        }
        match cmd.query_async(&mut conn).await? {
            Value::Array(values) => Ok(values),
            other => Err(Error::UnexpectedReply(format!("MGET returned {other:?}"))),
        }
    })
    .await
}
