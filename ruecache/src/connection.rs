//! One interface over the redis-rs connections users already have.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::background::Background;
use crate::coalesce::Coalescer;
use crate::fallback::Outage;
use crate::flight::Flights;
use crate::liveness::{Liveness, DEFAULT_LIVENESS_WINDOW, MIN_LIVENESS_WINDOW};
use crate::near::track::Servers;
use crate::near::Near;
use crate::notify::Notifier;
use crate::Error;

/// The response timeout the convenience constructors set (redis-rs's own default is 500 ms,
/// short enough to fail a large batch on a busy server).
///
/// # Examples
///
/// The same for a connection you make yourself:
///
/// ```no_run
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let config = redis::AsyncConnectionConfig::new()
///     .set_response_timeout(Some(ruecache::DEFAULT_RESPONSE_TIMEOUT));
/// let conn = ruecache::Connection::from(
///     client.get_multiplexed_async_connection_with_config(&config).await?,
/// );
/// # Ok(()) }
/// ```
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis connection the cache can use: standalone, reconnecting, or cluster.
///
/// All three redis-rs kinds are multiplexed: concurrent callers share the socket and their
/// commands are pipelined into shared round trips. Cloning is cheap (it clones a handle).
///
/// Build one from a connection you already have with `From`, or with [`Connection::open`] /
/// [`Connection::open_cluster`], which set a deliberate response timeout.
///
/// A caller waiting for an id another process is filling is woken when that process commits or
/// gives up, if the connection was opened by [`Connection::open`] or
/// [`Connection::open_cluster`]: those know their servers, and open one more connection (on the
/// first wait, shared by clones) to subscribe to the wake-ups (`SUBSCRIBE`, or `SSUBSCRIBE` to
/// the key's shard channel on a cluster). A connection made with `From` does not know where to
/// subscribe, so its waiters poll with the cache's backoff instead, unless given a client to
/// subscribe with ([`Connection::wake_ups`], [`Connection::cluster_wake_ups`]).
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let conn: ruecache::Connection = client.get_multiplexed_async_connection().await?.into();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    kind: Kind,
    /// What this connection's clones share, behind one reference count: a clone (one per
    /// request, and one per call of a `#[cached_batch]` method) costs the redis-rs
    /// connection's clone and one count, not one per part.
    shared: Arc<Shared>,
}

/// The parts of a [`Connection`] its clones share.
#[derive(Clone)]
struct Shared {
    /// Set when this crate opened the connection, so it knows that every single request fails
    /// by itself within this long (a response timeout, no concurrency limit, no retries).
    request_bound: Option<Duration>,
    /// Concurrent single-id reads on this connection share `MGET`s. Only for connections with
    /// a `request_bound`, so no wait needs a timer.
    coalescer: Option<Arc<Coalescer>>,
    /// The ids callers on this connection are filling (see `flight`).
    flights: Arc<Flights>,
    /// The id at the start of this connection's lock tokens, and its liveness key (see
    /// `liveness`).
    liveness: Arc<Liveness>,
    /// Wakes callers waiting for another process's lock (see `notify`). Only for connections
    /// this crate opened, which know where to open a subscription connection.
    notifier: Option<Arc<Notifier>>,
    /// Whether Redis is known to be unreachable (degraded mode, see `fallback`).
    outage: Arc<Outage>,
    /// Commits, lock releases and invalidations running in tasks of their own (see
    /// `background`).
    background: Arc<Background>,
    /// Where the servers are, for near caches' tracking connections (see `near`). Only for
    /// connections this crate opened, or given a client.
    servers: Option<Arc<Servers>>,
    /// The near caches of `#[cached_batch]` methods on this connection, by their spec's
    /// address (a builder's cache owns its own).
    nears: Arc<std::sync::RwLock<std::collections::HashMap<usize, Option<Arc<Near>>>>>,
}

impl Shared {
    /// The parts of a connection made with `From`: liveness on, nothing else known.
    fn plain() -> Self {
        Self {
            request_bound: None,
            coalescer: None,
            flights: Arc::default(),
            outage: Arc::default(),
            liveness: Arc::new(Liveness::new(Some(DEFAULT_LIVENESS_WINDOW))),
            notifier: None,
            background: Arc::default(),
            servers: None,
            nears: Arc::default(),
        }
    }
}

impl Connection {
    fn with(kind: Kind, shared: Shared) -> Self {
        Self {
            kind,
            shared: Arc::new(shared),
        }
    }

    /// This connection with some of its shared parts changed (for the builder methods).
    fn changed(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared::clone(&self.shared);
        change(&mut shared);
        Self::with(self.kind, shared)
    }
}

#[derive(Clone)]
enum Kind {
    Multiplexed(MultiplexedConnection),
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Multiplexed(_) => "MultiplexedConnection",
            Kind::Manager(_) => "ConnectionManager",
            Kind::Cluster(_) => "ClusterConnection",
        };
        f.debug_struct("Connection")
            .field("kind", &kind)
            .field("request_bound", &self.shared.request_bound)
            .field("wake_ups", &self.shared.notifier.is_some())
            .finish()
    }
}

impl Connection {
    /// Opens a multiplexed connection to a standalone server, with
    /// [`DEFAULT_RESPONSE_TIMEOUT`].
    ///
    /// `rediss://` (TLS) URLs need the `tls` feature; a user and password go in the URL
    /// (`redis://user:password@host:6379`).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] if the URL is invalid or the server does not answer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ruecache::Error> {
    /// let conn = ruecache::Connection::open("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT));
        let notifier = Notifier::standalone(&client, DEFAULT_RESPONSE_TIMEOUT);
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let conn = Self::with(
            Kind::Multiplexed(conn),
            Shared {
                request_bound: Some(DEFAULT_RESPONSE_TIMEOUT),
                notifier: Some(Arc::new(notifier)),
                servers: Some(Arc::new(Servers::Standalone(Box::new(
                    client.get_connection_info().clone(),
                )))),
                ..Shared::plain()
            },
        );
        // The coalescer's own connection is the same without a coalescer.
        let coalescer = Arc::new(Coalescer::new(conn.clone()));
        Ok(conn.changed(|shared| shared.coalescer = Some(coalescer)))
    }

    /// Opens a cluster connection from one or more seed node URLs, with
    /// [`DEFAULT_RESPONSE_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] if a URL is invalid or no node answers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ruecache::Error> {
    /// let conn = ruecache::Connection::open_cluster(&["redis://127.0.0.1:7000"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_cluster<S: AsRef<str>>(urls: &[S]) -> Result<Self, Error> {
        let builder = || {
            redis::cluster::ClusterClientBuilder::new(urls.iter().map(|u| u.as_ref()))
                .response_timeout(DEFAULT_RESPONSE_TIMEOUT)
        };
        let notifier = Notifier::cluster(builder());
        let conn = builder().build()?.get_async_connection().await?;
        let servers = Servers::cluster(urls).map(Arc::new);
        Ok(Self::from(conn).changed(|shared| {
            shared.notifier = Some(Arc::new(notifier));
            shared.servers = servers;
        }))
    }

    /// Whether this is a cluster connection (batches are then split by hash slot).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ruecache::Error> {
    /// let conn = ruecache::Connection::open("redis://127.0.0.1:6379").await?;
    /// assert!(!conn.is_cluster());
    /// # Ok(()) }
    /// ```
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// How long a single request (one command or pipeline) can take at most before the
    /// connection fails it by itself, if known. A cluster connection retries on other nodes and
    /// a reconnecting one may wait for a reconnect, so only a plain multiplexed connection
    /// opened by [`Connection::open`] knows.
    pub(crate) fn request_bound(&self) -> Option<Duration> {
        self.shared.request_bound
    }

    pub(crate) fn coalescer(&self) -> Option<&Arc<Coalescer>> {
        self.shared.coalescer.as_ref()
    }

    pub(crate) fn flights(&self) -> &Flights {
        &self.shared.flights
    }

    /// Sets how soon the locks of a process that died stop blocking others: this connection
    /// keeps a liveness key (`ruecache:live:<id>`) with `window` as its TTL, refreshed every
    /// third of `window`, and a caller waiting on one of its locks takes the lock over once the
    /// key is gone: at most `window` after the process died (or lost Redis), plus the waiter's
    /// current backoff step (it checks the key each time it polls the lock). `None` turns this
    /// off: locks then block others until their lock TTL ends. Default
    /// [`DEFAULT_LIVENESS_WINDOW`].
    ///
    /// Call it before cloning the connection: clones share one liveness key.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `window` is shorter than 100 ms (a live process would be declared
    /// dead by one slow refresh) or longer than [`Options::MAX_TTL`](crate::Options::MAX_TTL).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let conn = ruecache::Connection::open("redis://127.0.0.1:6379")
    ///     .await?
    ///     .liveness_window(Some(Duration::from_millis(500)))?;
    /// # Ok(()) }
    /// ```
    pub fn liveness_window(self, window: Option<Duration>) -> Result<Self, Error> {
        if let Some(window) = window {
            if window < MIN_LIVENESS_WINDOW || window > crate::Options::MAX_TTL {
                return Err(Error::Config(format!(
                    "liveness window {window:?} is out of range: use 100 ms to 100 years, \
                     or `None` to turn liveness keys off"
                )));
            }
        }
        Ok(self.changed(|shared| shared.liveness = Arc::new(Liveness::new(window))))
    }

    /// Wakes this connection's waiting callers as soon as another process releases a lock they
    /// wait for, through one subscription connection opened from `client` (a client for the
    /// same standalone server) on the first wait. [`Connection::open`] does this by itself; a
    /// connection made with `From` (a `ConnectionManager`, say) otherwise polls with backoff.
    /// For a cluster connection use [`cluster_wake_ups`](Self::cluster_wake_ups).
    ///
    /// A [near cache](crate::CacheBuilder::near_cache) needs it too on such a connection: its
    /// tracking connections are opened from `client`.
    ///
    /// Call it before cloning the connection: clones share one subscription.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let manager = client.get_connection_manager().await?;
    /// let conn = ruecache::Connection::from(manager).wake_ups(&client);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn wake_ups(self, client: &redis::Client) -> Self {
        if self.is_cluster() {
            tracing::warn!(
                "wake_ups is for standalone connections (see cluster_wake_ups); waiters poll"
            );
            return self;
        }
        let notifier = Notifier::standalone(client, DEFAULT_RESPONSE_TIMEOUT);
        let servers = Servers::Standalone(Box::new(client.get_connection_info().clone()));
        self.changed(|shared| {
            shared.notifier = Some(Arc::new(notifier));
            shared.servers = Some(Arc::new(servers));
        })
    }

    /// [`wake_ups`](Self::wake_ups) for a cluster connection made with `From`: the
    /// subscription (`SSUBSCRIBE` to each lock's shard channel) is a cluster connection built
    /// from `builder`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> redis::RedisResult<()> {
    /// use redis::cluster::ClusterClientBuilder;
    /// let nodes = ["redis://127.0.0.1:7000"];
    /// let cluster = ClusterClientBuilder::new(nodes).build()?.get_async_connection().await?;
    /// let conn = ruecache::Connection::from(cluster)
    ///     .cluster_wake_ups(ClusterClientBuilder::new(nodes));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn cluster_wake_ups(self, builder: redis::cluster::ClusterClientBuilder) -> Self {
        if !self.is_cluster() {
            tracing::warn!(
                "cluster_wake_ups is for cluster connections (see wake_ups); waiters poll"
            );
            return self;
        }
        self.changed(|shared| shared.notifier = Some(Arc::new(Notifier::cluster(builder))))
    }

    pub(crate) fn liveness(&self) -> &Arc<Liveness> {
        &self.shared.liveness
    }

    /// A clone that keeps no liveness key alive (and so does not keep this one's alive).
    pub(crate) fn without_liveness(&self) -> Self {
        Self::with(
            self.kind.clone(),
            Shared {
                request_bound: self.shared.request_bound,
                liveness: Arc::new(Liveness::new(None)),
                background: Arc::clone(&self.shared.background),
                ..Shared::plain()
            },
        )
    }

    /// Where the servers are, if this connection knows (see `near`).
    pub(crate) fn servers(&self) -> Option<&Arc<Servers>> {
        self.shared.servers.as_ref()
    }

    /// The near cache of the `#[cached_batch]` method whose spec is at `spec`, made by `make`
    /// on first use: one per method and connection, shared by its clones.
    pub(crate) fn near_for(
        &self,
        spec: usize,
        make: impl FnOnce() -> Option<Arc<Near>>,
    ) -> Option<Arc<Near>> {
        let nears = &self.shared.nears;
        // Every call of the method looks it up: readers share the lock.
        if let Some(near) = nears.read().unwrap_or_else(|e| e.into_inner()).get(&spec) {
            return near.clone();
        }
        let mut nears = nears.write().unwrap_or_else(|e| e.into_inner());
        nears.entry(spec).or_insert_with(make).clone()
    }

    pub(crate) fn notifier(&self) -> Option<&Arc<Notifier>> {
        self.shared.notifier.as_ref()
    }

    pub(crate) fn outage(&self) -> &Arc<Outage> {
        &self.shared.outage
    }

    pub(crate) fn background(&self) -> &Arc<Background> {
        &self.shared.background
    }

    /// Waits until the writes this connection (or any clone of it) finishes in the background
    /// are done: the commit of a fetch whose caller stopped waiting after it returned, the
    /// release of locks whose caller stopped waiting before, and an invalidation whose caller
    /// was cancelled. Each is bounded by its cache's timeout, so this returns within the longest
    /// timeout of the caches on this connection.
    ///
    /// Call it before a graceful shutdown, after the last request has ended: a process that
    /// exits with such writes running loses them (a lost commit costs a second fetch; lost
    /// releases block others until the lock TTL or the liveness window ends; a lost
    /// invalidation leaves the old value cached until its TTL).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(conn: ruecache::Connection, server: tokio::task::JoinHandle<()>) {
    /// server.await.ok(); // the last request has ended
    /// conn.settle().await; // what cancelled requests left to finish has finished
    /// # }
    /// ```
    pub async fn settle(&self) {
        self.shared.background.settled().await;
    }
}

impl From<MultiplexedConnection> for Connection {
    fn from(conn: MultiplexedConnection) -> Self {
        Self::with(Kind::Multiplexed(conn), Shared::plain())
    }
}

impl From<ConnectionManager> for Connection {
    fn from(conn: ConnectionManager) -> Self {
        Self::with(Kind::Manager(conn), Shared::plain())
    }
}

impl From<ClusterConnection> for Connection {
    fn from(conn: ClusterConnection) -> Self {
        Self::with(Kind::Cluster(conn), Shared::plain())
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            Kind::Multiplexed(c) => c.req_packed_command(cmd),
            Kind::Manager(c) => c.req_packed_command(cmd),
            Kind::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            Kind::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Kind::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Kind::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            Kind::Multiplexed(c) => c.get_db(),
            Kind::Manager(c) => c.get_db(),
            Kind::Cluster(c) => c.get_db(),
        }
    }
}
