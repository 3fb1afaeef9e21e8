//! Helpers shared by the behaviour tests: recording fetches, pausing a fetch at an exact point,
//! and raw Redis commands for looking at (or tampering with) the keys.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{FromRedisValue, ToRedisArgs};
use ruecache::{Cache, Connection};
use tokio::sync::{mpsc, oneshot};

/// The error type of the test sources: a fetch error must come back as this exact value.
#[derive(Debug, PartialEq)]
pub enum TestError {
    Source(&'static str),
    Cache(String),
}

impl From<ruecache::Error> for TestError {
    fn from(e: ruecache::Error) -> Self {
        Self::Cache(e.to_string())
    }
}

/// The error type of tests that match on the cache's error: it keeps the `ruecache::Error`
/// typed (where [`TestError`] keeps only its message).
#[derive(Debug)]
pub enum Failure {
    Cache(ruecache::Error),
}

impl From<ruecache::Error> for Failure {
    fn from(e: ruecache::Error) -> Self {
        Self::Cache(e)
    }
}

/// A cache of `u64 -> String` under a fresh namespace, with the key template `<ns>w:{{{id}}}`.
pub fn template(ns: &str) -> String {
    format!("{ns}w:{}", "{{{id}}}")
}

pub fn cache(conn: Connection, ns: &str) -> Cache<u64, String> {
    Cache::builder(conn, &template(ns))
        .build()
        .expect("valid config")
}

/// [`cache`] serving from the source while Redis is unreachable, with a 2 s timeout.
pub fn fallback_cache(conn: Connection, ns: &str) -> Cache<u64, String> {
    Cache::builder(conn, &template(ns))
        .timeout(Duration::from_secs(2))
        .fallback_to_source(true)
        .build()
        .expect("valid config")
}

/// The value the test source has for an id.
pub fn value(id: u64) -> String {
    format!("value of {id}")
}

/// Records every fetch call and answers from `value()`, leaving out ids in `absent`.
#[derive(Clone, Default)]
pub struct Source {
    calls: Arc<Mutex<Vec<Vec<u64>>>>,
    absent: Arc<Vec<u64>>,
}

impl Source {
    pub fn without(absent: &[u64]) -> Self {
        Self {
            absent: Arc::new(absent.to_vec()),
            ..Self::default()
        }
    }

    pub async fn fetch(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.calls.lock().unwrap().push(ids.clone());
        Ok(ids
            .into_iter()
            .filter(|id| !self.absent.contains(id))
            .map(|id| (id, value(id)))
            .collect())
    }

    /// Every fetch call's ids, sorted within each call.
    pub fn calls(&self) -> Vec<Vec<u64>> {
        let mut calls = self.calls.lock().unwrap().clone();
        calls.iter_mut().for_each(|c| c.sort_unstable());
        calls
    }

    /// This source's fetch, paused at `gate` first (see [`GateHandle::then`]).
    pub fn gated(
        &self,
        gate: &GateHandle,
    ) -> impl Fn(Vec<u64>) -> Gated<Result<HashMap<u64, String>, TestError>>
           + Clone
           + Send
           + Sync
           + 'static {
        let source = self.clone();
        gate.then(move |ids| {
            let source = source.clone();
            async move { source.fetch(ids).await }
        })
    }

    /// How many times each id was fetched.
    pub fn counts(&self) -> HashMap<u64, usize> {
        let mut counts = HashMap::new();
        for id in self.calls.lock().unwrap().iter().flatten() {
            *counts.entry(*id).or_default() += 1;
        }
        counts
    }
}

/// Pauses a fetch at an exact point: the fetch reports that it started (with its ids) and waits
/// until the test lets it go, so the test can act in between.
pub struct Gate {
    started: mpsc::UnboundedReceiver<(Vec<u64>, oneshot::Sender<()>)>,
    tx: mpsc::UnboundedSender<(Vec<u64>, oneshot::Sender<()>)>,
}

impl Default for Gate {
    fn default() -> Self {
        let (tx, started) = mpsc::unbounded_channel();
        Self { started, tx }
    }
}

#[derive(Clone)]
pub struct GateHandle(mpsc::UnboundedSender<(Vec<u64>, oneshot::Sender<()>)>);

impl Gate {
    pub fn handle(&self) -> GateHandle {
        GateHandle(self.tx.clone())
    }

    /// Waits until a fetch is paused inside the gate; returns its ids and the release.
    pub async fn paused(&mut self) -> (Vec<u64>, oneshot::Sender<()>) {
        self.started.recv().await.expect("a fetch reaches the gate")
    }
}

/// The future of a gated fetch (see [`GateHandle::then`]).
pub type Gated<R> = Pin<Box<dyn Future<Output = R> + Send>>;

impl GateHandle {
    /// A fetch that pauses at this gate, then answers what `answer` returns for its ids: the one
    /// way the tests hold a fetch at an exact point.
    pub fn then<R, Fut>(
        &self,
        answer: impl Fn(Vec<u64>) -> Fut + Clone + Send + Sync + 'static,
    ) -> impl Fn(Vec<u64>) -> Gated<R> + Clone + Send + Sync + 'static
    where
        Fut: Future<Output = R> + Send + 'static,
    {
        let handle = self.clone();
        move |ids| {
            let (handle, answer) = (handle.clone(), answer.clone());
            Box::pin(async move {
                handle.pause(&ids).await;
                answer(ids).await
            })
        }
    }

    /// A fetch that pauses at this gate, then fails with `TestError::Source(message)`.
    pub fn then_fail<T: Send + 'static>(
        &self,
        message: &'static str,
    ) -> impl Fn(Vec<u64>) -> Gated<Result<T, TestError>> + Clone + Send + Sync + 'static {
        self.then(move |_| async move { Err(TestError::Source(message)) })
    }

    /// Called inside a fetch: announce, then wait for the release.
    pub async fn pause(&self, ids: &[u64]) {
        let (go, wait) = oneshot::channel();
        self.0
            .send((ids.to_vec(), go))
            .expect("the test holds the gate");
        wait.await.expect("the test releases the fetch");
    }
}

/// Runs one raw command and decodes its reply.
pub async fn cmd<T: FromRedisValue>(conn: &Connection, name: &str, args: impl ToRedisArgs) -> T {
    let mut conn = conn.clone();
    redis::cmd(name)
        .arg(args)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {e}"))
}

/// The lease in a data key, if it holds one: a filler's lock, `0xC1` `L` (or `W` once a waiter
/// flagged it), the holder's 32-byte token, then its deadline (Unix ms, 8 bytes big-endian).
pub async fn lease(conn: &Connection, data_key: &str) -> Option<Vec<u8>> {
    let held: Option<Vec<u8>> = cmd(conn, "GET", data_key).await;
    held.filter(|v| v.len() == 42 && (v.starts_with(b"\xC1L") || v.starts_with(b"\xC1W")))
}

/// A lease's deadline (Unix ms).
pub fn lease_deadline(lease: &[u8]) -> u64 {
    u64::from_be_bytes(
        lease[34..42]
            .try_into()
            .expect("a lease ends with its deadline"),
    )
}

/// Now, in Unix ms: what lease deadlines are compared with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Whether a data key holds a lease (see [`lease`]).
pub async fn leased(conn: &Connection, data_key: &str) -> bool {
    lease(conn, data_key).await.is_some()
}

/// A lease of a made-up holder whose liveness key is alive or not as the test arranges (its
/// token's first 16 hex digits name the holder: `ruecache:live:<those digits>`), with a deadline
/// `ms_left` from now.
pub fn foreign_lease(holder: &str, ms_left: u64) -> Vec<u8> {
    assert_eq!(holder.len(), 16, "a holder id is 16 hex digits");
    let deadline = now_ms() + ms_left;
    [
        &b"\xC1L"[..],
        holder.as_bytes(),
        b"0123456789abcdef",
        &deadline.to_be_bytes(),
    ]
    .concat()
}

/// A lease shaped like one of a connection without liveness (its holder id is all `x`), with a
/// deadline `ms_left` from now: no one can find its holder dead, so it is waited for until its
/// deadline.
pub fn unchecked_lease(ms_left: u64) -> Vec<u8> {
    foreign_lease("xxxxxxxxxxxxxxxx", ms_left)
}

pub async fn exists(conn: &Connection, key: impl ToRedisArgs) -> bool {
    cmd::<i64>(conn, "EXISTS", key).await == 1
}

/// The calls per command Redis has counted since the last reset (`INFO commandstats`; commands
/// run by scripts included), then resets the counts. The counting itself (`INFO`, `CONFIG`) is
/// left out.
pub async fn take_command_calls(conn: &Connection) -> HashMap<String, u64> {
    let info: String = cmd(conn, "INFO", "commandstats").await;
    cmd::<()>(conn, "CONFIG", "RESETSTAT").await;
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, rest) = line.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            (!matches!(name, "info" | "config|resetstat")).then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// For tests that hold writes inside Redis (`CLIENT PAUSE WRITE`: reads go on, writes wait in
/// Redis until [`release_writes`]). It holds every client of the server, so `url` must be a
/// private server's. Returns a connection without a liveness key (its first write would be the
/// one held instead of the locks') and the admin connection that holds the writes.
pub async fn writes_held(url: &str) -> (Connection, Connection) {
    let conn = Connection::open(url)
        .await
        .unwrap()
        .liveness_window(None)
        .unwrap();
    let admin = Connection::open(url).await.unwrap();
    cmd::<()>(&admin, "CLIENT", ("PAUSE", 10_000, "WRITE")).await;
    (conn, admin)
}

/// Ends [`writes_held`]: the held writes run.
pub async fn release_writes(admin: &Connection) {
    cmd::<()>(admin, "CLIENT", "UNPAUSE").await;
}

/// Waits (bounded, 2 s) until `check` holds: for an effect that happens in another task.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Starts a fill of `ids` that pauses inside the fetch; returns the task and the paused fetch's
/// release.
pub async fn paused_fill(
    cache: &Cache<u64, String>,
    ids: Vec<u64>,
    gate: &mut Gate,
) -> (
    tokio::task::JoinHandle<HashMap<u64, String>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let fetch = Source::default().gated(&gate.handle());
    let c = cache.clone();
    let task = tokio::spawn(async move { c.get_and_fill(ids, fetch).await.unwrap() });
    let (_, release) = gate.paused().await;
    (task, release)
}

/// The password of the restricted user `cache` that [`MINIMAL_ACL`] sets up.
pub const PASSWORD: &str = "cache-password";

/// The README's minimal ACL for the template `widgets:{{{id}}}`, word for word: the arguments
/// of `ACL SETUSER cache reset on >cache-password ~widgets:* "~{*}\xffvwidgets:*"
/// ~ruecache:live:* +get +mget +evalsha +script|load +set +del` (`\xff` is the byte
/// 0xFF).
pub const MINIMAL_ACL: &[&[u8]] = &[
    b"cache",
    b"reset",
    b"on",
    b">cache-password",
    b"~widgets:*",
    b"~{*}\xffvwidgets:*",
    b"~ruecache:live:*",
    b"+get",
    b"+mget",
    b"+evalsha",
    b"+script|load",
    b"+set",
    b"+del",
];

/// Calls for `id` until one is cached in Redis again, as `check` (a connection allowed to run
/// `EXISTS`) sees it: after an outage, the probe finds Redis back within a few hundred
/// milliseconds. Bounded at 10 s.
pub async fn cached_again_once_redis_answers(
    cache: &Cache<u64, String>,
    id: u64,
    check: &Connection,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let key = cache.data_key(&id).unwrap();
    let source = Source::default();
    loop {
        let got: HashMap<u64, String> = cache
            .get_and_fill([id], |ids| source.fetch(ids))
            .await
            .unwrap();
        assert_eq!(got, [(id, value(id))].into());
        // Redis may still be down: an error is "not yet".
        let cached: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut check.clone())
            .await;
        if cached == Ok(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not cached again 10 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures the logs at `INFO` and above of this thread until the guard is dropped; a
    /// current-thread runtime keeps every task it spawns on the thread too.
    pub fn info_on_this_thread() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A cluster connection without a liveness key: for tests that count or hold a private cluster's
/// commands, which the key's refresh would add to.
pub async fn cluster_without_liveness(urls: &[String]) -> Connection {
    Connection::open_cluster(urls)
        .await
        .unwrap()
        .liveness_window(None)
        .unwrap()
}

/// A plain connection to each node of a cluster (for `INFO`, `CONFIG`, `CLIENT PAUSE` on each).
pub async fn node_connections(urls: &[String]) -> Vec<Connection> {
    let mut nodes = Vec::new();
    for url in urls {
        nodes.push(Connection::open(url).await.unwrap());
    }
    nodes
}

/// Deterministic bytes that compress badly.
pub fn big_value(id: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The id of every near-cache tracking connection on the server `admin` is connected to (they
/// name themselves `ruecache-near`), from `CLIENT LIST`.
pub async fn trackers(admin: &Connection) -> Vec<String> {
    let list: String = cmd(admin, "CLIENT", "LIST").await;
    list.lines()
        .filter(|line| line.contains(" name=ruecache-near "))
        .filter_map(|line| {
            line.strip_prefix("id=")?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .collect()
}
