//! Concurrent single-id reads on one connection, coalesced into shared `MGET`s.
//!
//! A read that finds no other read in progress on its connection goes out at once as a `GET`, so
//! a lone caller waits for nothing extra. A read that arrives while others are in progress is
//! queued for the connection's reader task, which sends everything queued as one `MGET` (per slot
//! group and chunk, see [`get_many`]) and hands each caller its value; what arrives meanwhile
//! waits for the next `MGET`. Each value is read after its caller asked, so nothing older is
//! returned than a `GET` of its own would return.
//!
//! The reader is one task per connection, spawned on first use and ended with the connection,
//! so no caller's progress depends on another caller's future being polled, and nothing is
//! spawned per call. No timer is armed either: a queued caller waits for at most the `MGET` in
//! flight, then its own, then (if the reader is gone or the `MGET` failed) a `GET` of its own,
//! and the connection fails each of those by itself (only connections that do are coalesced).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use redis::{Cmd, Value};
use tokio::sync::{mpsc, oneshot};

use crate::batch::get_many;
use crate::{Connection, Error};

/// The longest chain of requests one coalesced read can wait for (see the module docs).
pub(crate) const REQUESTS: u32 = 3;

pub(crate) struct Coalescer {
    /// The connection, without a coalescer of its own (the reader holds a clone of it).
    conn: Connection,
    /// Reads in progress, direct or queued.
    active: AtomicUsize,
    reader: OnceLock<mpsc::UnboundedSender<Request>>,
}

/// A queued read: the key, and where its value (or `None`: read it yourself) goes.
struct Request {
    key: String,
    reply: oneshot::Sender<Option<Value>>,
}

impl Coalescer {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            active: AtomicUsize::new(0),
            reader: OnceLock::new(),
        }
    }

    /// Reads one key, sharing the round trip with concurrent callers.
    pub(crate) async fn get(&self, key: &str) -> Result<Value, Error> {
        let alone = self.active.fetch_add(1, Ordering::AcqRel) == 0;
        let _done = Done(&self.active);
        if alone {
            return self.get_alone(key).await;
        }
        let (reply, value) = oneshot::channel();
        let request = Request {
            key: key.to_owned(),
            reply,
        };
        if self.reader().send(request).is_err() {
            // The reader's runtime is gone.
            return self.get_alone(key).await;
        }
        match value.await {
            Ok(Some(value)) => Ok(value),
            // The `MGET` failed (this `GET` gets its own error), or the reader is gone.
            Ok(None) | Err(_) => self.get_alone(key).await,
        }
    }

    fn reader(&self) -> &mpsc::UnboundedSender<Request> {
        self.reader.get_or_init(|| {
            let (queue, requests) = mpsc::unbounded_channel();
            tokio::spawn(read_queued(self.conn.clone(), requests));
            queue
        })
    }

    async fn get_alone(&self, key: &str) -> Result<Value, Error> {
        let mut cmd = Cmd::with_capacity(2, 3 + key.len());
        cmd.arg("GET").arg(key);
        Ok(cmd.query_async(&mut self.conn.clone()).await?)
    }
}

/// Counts a read out when it ends, however it ends.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The most `MGET`s the reader has in flight at once. One would serialize the reads of a few
/// concurrent callers behind each other's round trips; a few keep the connection's pipeline
/// full while still gathering what arrives meanwhile into shared `MGET`s.
const IN_FLIGHT: usize = 4;

/// The reader task: everything queued goes out as one `MGET`, with up to [`IN_FLIGHT`] of them
/// in flight; ends when the connection is gone.
async fn read_queued(conn: Connection, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            request = requests.recv(), if in_flight.len() < IN_FLIGHT => {
                let Some(first) = request else { break };
                let mut batch = vec![first];
                while let Ok(more) = requests.try_recv() {
                    batch.push(more);
                }
                in_flight.push(read_batch(&conn, batch));
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Reads the keys of `batch` with one `MGET` (per slot group and chunk) and answers each caller.
async fn read_batch(conn: &Connection, batch: Vec<Request>) {
    let keys: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
    let values = match get_many(conn, &keys).await {
        Ok(values) if values.len() == batch.len() => values.into_iter().map(Some).collect(),
        _ => vec![None; batch.len()],
    };
    drop(keys);
    for (request, value) in batch.into_iter().zip(values) {
        // A caller that stopped waiting does not need its value.
        let _ = request.reply.send(value);
    }
}
