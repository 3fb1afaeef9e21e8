//! Concurrent requests on one connection, coalesced: single-id reads into shared `MGET`s, and
//! script calls into shared `EVALSHA`s.
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
//!
//! Script calls (see [`scripts`](crate::scripts)) are coalesced the same way by a second task:
//! the calls of every caller queued for one script go out as one batch, whose script runs each
//! id's step in turn, exactly as separate calls would have. If a shared batch fails (an ACL
//! refuses one caller's keys, say), each caller sends its own calls again, alone, and gets its
//! own answer: the scripts can run twice for an id without harm. These waits are bounded by the
//! caller's deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use redis::{Cmd, Value};
use tokio::sync::{mpsc, oneshot};

use crate::batch::{get_many, missing_if_wrong_type};
use crate::scripts::Calls;
use crate::{Connection, Error};

/// The longest chain of requests one coalesced read can wait for (see the module docs).
pub(crate) const REQUESTS: u32 = 3;

pub(crate) struct Coalescer {
    /// The connection, without a coalescer of its own (the tasks hold clones of it).
    conn: Connection,
    reads: Lane<Request>,
    calls: Lane<Job>,
}

/// Requests of one kind in progress, and the queue of the task that serves them.
struct Lane<R> {
    /// Requests in progress, direct or queued.
    active: AtomicUsize,
    queue: OnceLock<mpsc::UnboundedSender<R>>,
}

impl<R: Send + 'static> Lane<R> {
    fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            queue: OnceLock::new(),
        }
    }

    /// Counts a request in; whether it is the only one in progress.
    fn enter(&self) -> (bool, Done<'_>) {
        let alone = self.active.fetch_add(1, Ordering::AcqRel) == 0;
        (alone, Done(&self.active))
    }

    /// The queue, and its task spawned on first use.
    fn queue<F, Fut>(&self, conn: &Connection, run: F) -> &mpsc::UnboundedSender<R>
    where
        F: Fn(Connection, Vec<R>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.queue.get_or_init(|| {
            let (queue, requests) = mpsc::unbounded_channel();
            tokio::spawn(serve(conn.clone(), requests, run));
            queue
        })
    }
}

/// A queued read: the key, and where its value (or `None`: read it yourself) goes.
struct Request {
    key: String,
    reply: oneshot::Sender<Option<Value>>,
}

/// Queued script calls, and where their replies (or `None`: send them yourself) go.
struct Job {
    calls: Arc<Calls>,
    reply: oneshot::Sender<Option<Vec<Value>>>,
}

impl Coalescer {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            reads: Lane::new(),
            calls: Lane::new(),
        }
    }

    /// Reads one key, sharing the round trip with concurrent callers.
    pub(crate) async fn get(&self, key: &str) -> Result<Value, Error> {
        let (alone, _done) = self.reads.enter();
        if alone {
            return self.get_alone(key).await;
        }
        let (reply, value) = oneshot::channel();
        let request = Request {
            key: key.to_owned(),
            reply,
        };
        if self
            .reads
            .queue(&self.conn, read_batch)
            .send(request)
            .is_err()
        {
            // The reader's runtime is gone.
            return self.get_alone(key).await;
        }
        match value.await {
            Ok(Some(value)) => Ok(value),
            // The `MGET` failed (this `GET` gets its own error), or the reader is gone.
            Ok(None) | Err(_) => self.get_alone(key).await,
        }
    }

    async fn get_alone(&self, key: &str) -> Result<Value, Error> {
        let mut cmd = Cmd::with_capacity(2, 3 + key.len());
        cmd.arg("GET").arg(key);
        missing_if_wrong_type(cmd.query_async(&mut self.conn.clone()).await)
    }

    /// Runs script calls, sharing `EVALSHA`s with concurrent callers: one reply per id.
    pub(crate) async fn run(&self, calls: Calls) -> Result<Vec<Value>, Error> {
        let (alone, _done) = self.calls.enter();
        if alone {
            return calls.run(&self.conn).await;
        }
        let calls = Arc::new(calls);
        let (reply, replies) = oneshot::channel();
        let job = Job {
            calls: calls.clone(),
            reply,
        };
        if self.calls.queue(&self.conn, run_batch).send(job).is_ok() {
            if let Ok(Some(replies)) = replies.await {
                return Ok(replies);
            }
        }
        // The shared batch failed (these calls get their own answer), or the task is gone.
        calls.run(&self.conn).await
    }
}

/// Counts a request out when it ends, however it ends.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The most batches a lane's task has in flight at once. One would serialize the requests of a
/// few concurrent callers behind each other's round trips; a few keep the connection's pipeline
/// full while still gathering what arrives meanwhile into shared batches.
const IN_FLIGHT: usize = 4;

/// A lane's task: everything queued goes out as one batch, with up to [`IN_FLIGHT`] of them in
/// flight; ends when the connection is gone.
async fn serve<R, F, Fut>(conn: Connection, mut requests: mpsc::UnboundedReceiver<R>, run: F)
where
    F: Fn(Connection, Vec<R>) -> Fut,
    Fut: Future<Output = ()>,
{
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
                in_flight.push(run(conn.clone(), batch));
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Reads the keys of `batch` with one `MGET` (per slot group and chunk) and answers each caller.
async fn read_batch(conn: Connection, batch: Vec<Request>) {
    let keys: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
    let values = match get_many(&conn, &keys).await {
        Ok(values) if values.len() == batch.len() => values.into_iter().map(Some).collect(),
        _ => vec![None; batch.len()],
    };
    drop(keys);
    for (request, value) in batch.into_iter().zip(values) {
        // A caller that stopped waiting does not need its value.
        let _ = request.reply.send(value);
    }
}

/// Runs the calls of `batch`, those of one script together, and answers each caller.
async fn run_batch(conn: Connection, mut batch: Vec<Job>) {
    let mut scripts = Vec::new();
    while let Some(first) = batch.first() {
        let script = first.calls.script();
        let (same, rest) = batch
            .into_iter()
            .partition(|job| std::ptr::eq(job.calls.script(), script));
        scripts.push(run_script(&conn, same));
        batch = rest;
    }
    futures_util::future::join_all(scripts).await;
}

/// Runs calls of one script as one batch and hands each job its share of the replies.
async fn run_script(conn: &Connection, jobs: Vec<Job>) {
    let shared;
    let calls = match &jobs[..] {
        [job] => &*job.calls,
        [first, rest @ ..] => {
            let ids = jobs.iter().map(|job| job.calls.len()).sum();
            let mut all = Calls::new(first.calls.script(), ids, 0);
            all.append(&first.calls);
            for job in rest {
                all.append(&job.calls);
            }
            shared = all;
            &shared
        }
        [] => return,
    };
    let mut replies = match calls.run(conn).await {
        Ok(replies) if replies.len() == calls.len() => Some(replies.into_iter()),
        _ => None,
    };
    for job in jobs {
        let share = replies
            .as_mut()
            .map(|replies| replies.by_ref().take(job.calls.len()).collect());
        // A caller that stopped waiting does not need its replies.
        let _ = job.reply.send(share);
    }
}
