//! The Lua scripts that make each step atomic, and how they are sent.
//!
//! Every script works on many ids at once: each id brings a fixed number of keys and of
//! arguments, and the script answers with one reply per id. So the calls for many ids, even of
//! different callers (see [`coalesce`](crate::coalesce)), share one `EVALSHA`: Redis's cost per
//! script call is paid once per request, not once per id.
//!
//! Scripts are sent with `EVALSHA` inside pipelines. redis-rs does not load scripts used in a
//! pipeline, so on a `NOSCRIPT` reply the script is loaded (`SCRIPT LOAD` reaches every node of a
//! cluster) and the pipeline is sent again.

use std::io::Write as _;
use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, Pipeline, ServerErrorKind, Value};

use crate::batch::for_groups;
use crate::{Connection, Error};

/// The most ids in one script call: one call runs without interruption on the server, so a
/// bound keeps a huge batch from stalling everyone else's requests.
const IDS_PER_CALL: usize = 128;

/// One `ARGV` value of a script call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Bytes(&'a [u8]),
    /// Sent in decimal, like a string the script converts with `tonumber`.
    Int(u64),
}

/// One Lua script: its source, SHA1, and how many keys and arguments each id brings.
#[derive(Debug)]
pub(crate) struct Script {
    source: &'static str,
    hash: String,
    keys: usize,
    args: usize,
}

impl Script {
    fn new(source: &'static str, keys: usize, args: usize) -> Self {
        let hash = redis::Script::new(source).get_hash().to_owned();
        Self {
            source,
            hash,
            keys,
            args,
        }
    }

    /// Loads the script on every node the connection reaches.
    pub(crate) async fn load(&self, conn: &mut Connection) -> Result<(), Error> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .exec_async(conn)
            .await?;
        Ok(())
    }
}

/// Calls of one script for many ids: each id's keys and arguments, packed into two buffers.
pub(crate) struct Calls {
    script: &'static Script,
    keys: Packed,
    args: Packed,
}

/// Byte strings back to back, and where each ends.
#[derive(Default)]
struct Packed {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Packed {
    fn with_capacity(items: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(items),
        }
    }

    fn push(&mut self, item: &[u8]) {
        self.bytes.extend_from_slice(item);
        self.ends.push(self.bytes.len());
    }

    fn push_int(&mut self, n: u64) {
        write!(self.bytes, "{n}").expect("writing to a Vec cannot fail");
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn append(&mut self, other: &Packed) {
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| end + offset));
    }
}

impl Calls {
    /// No calls yet; room for `ids` ids whose keys and arguments take about `bytes` bytes.
    pub(crate) fn new(script: &'static Script, ids: usize, bytes: usize) -> Self {
        Self {
            script,
            keys: Packed::with_capacity(ids * script.keys, bytes),
            args: Packed::with_capacity(ids * script.args, bytes),
        }
    }

    /// Adds the call for one id.
    pub(crate) fn push(&mut self, keys: &[&[u8]], args: &[Arg<'_>]) {
        debug_assert_eq!(keys.len(), self.script.keys);
        debug_assert_eq!(args.len(), self.script.args);
        for key in keys {
            self.keys.push(key);
        }
        for arg in args {
            match *arg {
                Arg::Bytes(bytes) => self.args.push(bytes),
                Arg::Int(n) => self.args.push_int(n),
            }
        }
    }

    /// How many ids.
    pub(crate) fn len(&self) -> usize {
        self.keys.ends.len() / self.script.keys
    }

    pub(crate) fn script(&self) -> &'static Script {
        self.script
    }

    /// Adds the calls of `other`, a batch of the same script.
    pub(crate) fn append(&mut self, other: &Calls) {
        debug_assert!(std::ptr::eq(self.script, other.script));
        self.keys.append(&other.keys);
        self.args.append(&other.args);
    }

    /// The first key of id `i`: its keys share its hash slot.
    fn slot_key(&self, i: usize) -> &[u8] {
        self.keys.get(i * self.script.keys)
    }

    /// Runs every call, sharing requests where the topology allows (see
    /// [`for_groups`]), and returns one reply per id, in order.
    pub(crate) async fn run(&self, conn: &Connection) -> Result<Vec<Value>, Error> {
        let slot_keys: Vec<&[u8]> = (0..self.len()).map(|i| self.slot_key(i)).collect();
        for_groups(conn, &slot_keys, |mut conn, group| async move {
            self.query(&mut conn, &group).await
        })
        .await
    }

    /// Sends the calls of the ids at `indices` (all in one slot on a cluster) as one pipeline
    /// of `EVALSHA`s, loading the script and retrying on `NOSCRIPT`. One reply per index.
    async fn query(&self, conn: &mut Connection, indices: &[usize]) -> Result<Vec<Value>, Error> {
        let mut pipe = Pipeline::with_capacity(indices.len().div_ceil(IDS_PER_CALL));
        for chunk in indices.chunks(IDS_PER_CALL) {
            pipe.add_command(self.command(chunk));
        }
        let mut loads = 0;
        let replies = loop {
            match pipe.query_async::<Vec<Value>>(conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) && loads < 2 => {
                    // Twice at most: a `SCRIPT FLUSH` reaching a cluster's nodes one by one can
                    // overtake the first load on some of them.
                    tracing::debug!("script not loaded on the server; loading it and retrying");
                    self.script.load(conn).await?;
                    loads += 1;
                }
                other => break other?,
            }
        };
        let mut out = Vec::with_capacity(indices.len());
        for (reply, chunk) in replies.into_iter().zip(indices.chunks(IDS_PER_CALL)) {
            match reply {
                Value::Array(values) if values.len() == chunk.len() => out.extend(values),
                other => {
                    return Err(Error::UnexpectedReply(format!(
                        "a script call for {} ids returned {other:?}",
                        chunk.len()
                    )))
                }
            }
        }
        if out.len() != indices.len() {
            return Err(Error::UnexpectedReply(format!(
                "{} script replies for {} ids",
                out.len(),
                indices.len()
            )));
        }
        Ok(out)
    }

    /// One `EVALSHA` for the ids at `indices`, sized up front.
    fn command(&self, indices: &[usize]) -> Cmd {
        let (k, a) = (self.script.keys, self.script.args);
        let keys = indices.iter().flat_map(|&i| i * k..(i + 1) * k);
        let args = indices.iter().flat_map(|&i| i * a..(i + 1) * a);
        let len = "EVALSHA".len()
            + self.script.hash.len()
            + 8
            + keys.clone().map(|j| self.keys.get(j).len()).sum::<usize>()
            + args.clone().map(|j| self.args.get(j).len()).sum::<usize>();
        let mut cmd = Cmd::with_capacity(3 + indices.len() * (k + a), len);
        cmd.arg("EVALSHA")
            .arg(&self.script.hash)
            .arg(indices.len() * k);
        for j in keys {
            cmd.arg(self.keys.get(j));
        }
        for j in args {
            cmd.arg(self.args.get(j));
        }
        cmd
    }
}

pub(crate) static COMMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/commit.lua"), 1, 5));
pub(crate) static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/unlock.lua"), 1, 3));
pub(crate) static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/invalidate.lua"), 2, 2));
pub(crate) static SEIZE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/seize.lua"), 1, 3));
pub(crate) static FLAG: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/flag.lua"), 1, 1));
pub(crate) static SET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/set.lua"), 2, 4));
pub(crate) static REFRESH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/refresh.lua"), 1, 2));

/// Every script, for preloading.
pub(crate) fn all() -> [&'static Script; 7] {
    [&COMMIT, &UNLOCK, &INVALIDATE, &SEIZE, &FLAG, &SET, &REFRESH]
}

/// Runs script calls, coalesced with concurrent callers' where the connection allows (see
/// [`coalesce`](crate::coalesce)): one reply per id.
pub(crate) async fn send(conn: &Connection, calls: Calls) -> Result<Vec<Value>, Error> {
    match conn.coalescer() {
        Some(coalescer) => coalescer.run(calls).await,
        None => calls.run(conn).await,
    }
}

/// Runs script calls to their end in a task of their own, counted among `conn`'s background
/// writes, so that they happen even if the caller stops waiting (typically a request cancelled
/// right after its database write, whose old value would otherwise stay cached for the data TTL).
/// `what` names the work in the error of a task that failed.
pub(crate) async fn send_to_end(
    conn: &Connection,
    calls: Calls,
    wait: crate::options::Wait,
    span: tracing::Span,
    what: &str,
) -> Result<Vec<Value>, Error> {
    use tracing::Instrument as _;
    let deadline = tokio::time::Instant::now() + wait.after;
    let conn = conn.clone();
    let background = std::sync::Arc::clone(conn.background());
    let task = tokio::spawn(
        background
            .track(async move {
                crate::fill::deadline::within(deadline, wait, send(&conn, calls)).await
            })
            .instrument(span),
    );
    task.await
        .map_err(|e| Error::UnexpectedReply(format!("the {what} task failed: {e}")))?
}

/// How the scripts that release a lease publish a wake-up: `SPUBLISH` on a cluster (a shard
/// channel, served by the data key's own node), `PUBLISH` on a standalone server.
pub(crate) fn sharded_flag(conn: &Connection) -> &'static [u8] {
    if conn.is_cluster() {
        b"1"
    } else {
        b"0"
    }
}
