//! Test harness for ruecache: real `redis-server` processes for the behaviour tests in
//! `tests/tests/*.rs`.
//!
//! Write a test body once, taking a [`Target`], and run it against a standalone server and a
//! 3-master cluster with [`both!`]:
//!
//! ```no_run
//! use ruecache_tests::Target;
//!
//! async fn set_then_get(t: Target) {
//!     let mut conn = t.connect().await;
//!     let key = format!("{}k", t.ns());
//!     let () = redis::cmd("SET").arg(&key).arg(1).query_async(&mut conn).await.unwrap();
//!     let v: i64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
//!     assert_eq!(v, 1);
//! }
//! ruecache_tests::both!(set_then_get); // set_then_get_standalone, set_then_get_cluster
//! ```
//!
//! # Servers
//!
//! Servers start lazily, on the first use in a test binary, and are then shared by every test
//! of that binary (each `tests/*.rs` file is one binary). Startup is blocking and independent
//! of any async runtime, so it works from any `#[tokio::test]`.
//!
//! - **Standalone**: one `redis-server` on a free loopback port, with `--save ""
//!   --appendonly no --bind 127.0.0.1` and a private temporary `--dir`.
//! - **Cluster**: three cluster-enabled masters (no replicas, `--cluster-node-timeout 5000`),
//!   joined with `redis-cli --cluster create`; ready once every node reports
//!   `cluster_state:ok` with all 16384 slots assigned.
//!
//! Tests sharing a server must keep to their own keys: prefix every key with a fresh
//! [`Target::ns`]. Tests that need their own server or special configuration (say
//! `maxmemory`), or want to kill and restart it, use [`start_standalone_with`]; tests that kill
//! a cluster node start their own cluster with [`start_cluster`].
//!
//! - **TLS and ACL**: [`start_secure`] starts a private server that speaks only TLS (with
//!   certificates made at test time by [`TestCa`]) and/or has the `default` user disabled.
//!
//! The harness never touches a server it did not start, such as one on the default port
//! 6379, unless told to with these environment variables:
//!
//! - `REDIS_URL`: the standalone target uses this server instead of starting one (for
//!   example `redis://127.0.0.1:6379/`). Its keys are namespaced but never deleted.
//! - `REDIS_CLUSTER_URLS`: comma-separated node URLs; the cluster target uses this cluster
//!   instead of starting one.
//! - `REDIS_SERVER_BIN`, `REDIS_CLI_BIN`: the executables (default: `redis-server` and
//!   `redis-cli` from `PATH`).
//!
//! [`start_standalone_with`] always starts a private server.
//!
//! # Cleanup
//!
//! Every process the harness starts is recorded; an `atexit` handler SIGKILLs the ones still
//! running when the test binary exits (the test runner ends with `std::process::exit`, and
//! statics are never dropped) and removes their temporary directories. On Linux each server
//! is also started with `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the test binary even
//! when that is killed by a signal. A [`RedisServer`] value kills its server when dropped.

mod cluster;
mod server;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub use cluster::Cluster;
pub use server::RedisServer;
pub use tls::TestCa;

#[doc(hidden)]
pub use pastey as __pastey;
#[doc(hidden)]
pub use tokio;

/// Where a test runs: a standalone server or a 3-master cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One `redis-server` (or `$REDIS_URL`).
    Standalone,
    /// A 3-master Redis Cluster (or `$REDIS_CLUSTER_URLS`).
    Cluster,
}

impl Target {
    /// A NEW connection on each call (use several to simulate separate processes): a
    /// multiplexed connection for [`Target::Standalone`], a cluster connection for
    /// [`Target::Cluster`], both with [`ruecache::DEFAULT_RESPONSE_TIMEOUT`]. Starts the
    /// server(s) on first use.
    ///
    /// # Panics
    ///
    /// The server(s) cannot be started or do not accept the connection.
    pub async fn connect(&self) -> ruecache::Connection {
        match self {
            Target::Standalone => open_standalone(&standalone_url()).await,
            Target::Cluster => {
                let urls = cluster_nodes();
                ruecache::Connection::open_cluster(&urls)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to the cluster {urls:?}: {e}"))
            }
        }
    }

    /// A NEW `ConnectionManager` (reconnecting) connection to the standalone server, with
    /// [`ruecache::DEFAULT_RESPONSE_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// Called on [`Target::Cluster`] (redis-rs has no cluster `ConnectionManager`; the cluster
    /// connection reconnects by itself), or the server cannot be reached.
    pub async fn connection_manager(&self) -> ruecache::Connection {
        match self {
            Target::Standalone => {
                let url = standalone_url();
                let client = redis::Client::open(url.as_str())
                    .unwrap_or_else(|e| panic!("invalid redis url {url}: {e}"));
                open_manager(client, &url).await
            }
            Target::Cluster => panic!(
                "Target::Cluster has no ConnectionManager: use Target::connect() for a cluster \
                 connection, or Target::Standalone.connection_manager()"
            ),
        }
    }

    /// A key prefix no other call returns, like `t3f9a1c07:`. Prefix every key a test
    /// uses with one so tests sharing a server never see each other's keys.
    pub fn ns(&self) -> String {
        ns()
    }

    /// The standalone server's URL, or the first cluster node's. Starts the server(s) on first
    /// use.
    pub fn url(&self) -> String {
        match self {
            Target::Standalone => standalone_url(),
            Target::Cluster => cluster_nodes()
                .into_iter()
                .next()
                .expect("the cluster has nodes"),
        }
    }

    /// Whether this is [`Target::Cluster`].
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster)
    }

    /// Where a child process (`src/bin/*`) finds this target: its kind and URL(s), as two
    /// arguments that [`connect_from_args`] reads back. Starts the server(s) on first use.
    pub fn child_args(&self) -> [String; 2] {
        match self {
            Target::Standalone => ["standalone".to_owned(), standalone_url()],
            Target::Cluster => ["cluster".to_owned(), cluster_nodes().join(",")],
        }
    }
}

/// The connection a child process (`src/bin/*`) opens from the arguments of
/// [`Target::child_args`]: `standalone <url>` or `cluster <url>,<url>...`.
///
/// # Panics
///
/// An unknown kind, or no server answers.
/// Whether the data key `key` holds a lease a waiter flagged (`0xC1` `W`, then the holder's token
/// and deadline): the waiter subscribed to the id's channel first, so the lease's release
/// publishes to it.
pub async fn lease_flagged(conn: &ruecache::Connection, key: &str) -> bool {
    let held: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .expect("GET of a data key");
    held.is_some_and(|v| v.len() == 42 && v.starts_with(b"\xC1W"))
}

pub async fn connect_from_args(kind: &str, urls: &str) -> ruecache::Connection {
    let urls: Vec<&str> = urls.split(',').collect();
    match kind {
        "standalone" => ruecache::Connection::open(urls[0]).await,
        "cluster" => ruecache::Connection::open_cluster(&urls).await,
        other => panic!("unknown kind {other}, expected `standalone` or `cluster`"),
    }
    .unwrap_or_else(|e| panic!("cannot connect to {urls:?}: {e}"))
}

/// A key prefix no other call returns (random hex plus a process-wide counter), like
/// `t3f9a1c07:`.
pub fn ns() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t{:08x}{n:x}:", rand::random::<u32>())
}

/// The URL of the shared standalone server (`$REDIS_URL`, or one started on first use).
///
/// # Panics
///
/// The server cannot be started; the message includes its log.
pub fn standalone_url() -> String {
    static STANDALONE: OnceLock<Result<Shared<String, RedisServer>, String>> = OnceLock::new();
    let shared = STANDALONE.get_or_init(|| match env_value("REDIS_URL") {
        Some(url) => Ok(Shared::external(url)),
        None => server::RedisServer::launch(server::Mode::Standalone, &[])
            .map(|server| Shared::owned(server.url(), server)),
    });
    match shared {
        Ok(shared) => shared.address.clone(),
        Err(why) => panic!("the shared standalone redis-server is unavailable: {why}"),
    }
}

/// The URLs of the shared cluster's masters (`$REDIS_CLUSTER_URLS`, or a 3-master cluster
/// started on first use).
///
/// # Panics
///
/// The cluster cannot be started; the message includes the node logs.
pub fn cluster_nodes() -> Vec<String> {
    static CLUSTER: OnceLock<Result<Shared<Vec<String>, cluster::Cluster>, String>> =
        OnceLock::new();
    let shared = CLUSTER.get_or_init(|| match env_value("REDIS_CLUSTER_URLS") {
        Some(urls) => Ok(Shared::external(
            urls.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        None => {
            cluster::Cluster::start(false).map(|cluster| Shared::owned(cluster.urls(), cluster))
        }
    });
    match shared {
        Ok(shared) => shared.address.clone(),
        Err(why) => panic!("the shared redis cluster is unavailable: {why}"),
    }
}

/// A server (or cluster) shared by the tests of one binary: where it is, and, if the harness
/// started it, the handle that keeps it alive (never dropped: the exit handler kills it).
struct Shared<A, S> {
    address: A,
    _started: Option<S>,
}

impl<A, S> Shared<A, S> {
    fn external(address: A) -> Self {
        Shared {
            address,
            _started: None,
        }
    }

    fn owned(address: A, started: S) -> Self {
        Shared {
            address,
            _started: Some(started),
        }
    }
}

/// Starts a private standalone server, with `args` appended to the harness defaults
/// (`--port <free> --bind 127.0.0.1 --save "" --appendonly no --dir <tempdir>`), for example
/// `&["--maxmemory", "1mb"]`. Not shared, never `$REDIS_URL`; killed when dropped.
///
/// # Panics
///
/// The server does not come up; the message includes its log.
pub fn start_standalone_with(args: &[&str]) -> RedisServer {
    RedisServer::launch(server::Mode::Standalone, args)
        .unwrap_or_else(|why| panic!("cannot start a private redis-server {args:?}: {why}"))
}

/// Starts a private 3-master cluster (never `$REDIS_CLUSTER_URLS`), for tests that kill a
/// node; the shared cluster of [`Target::Cluster`] is left alone. Killed when dropped.
///
/// # Panics
///
/// The cluster does not come up; the message includes the node logs.
pub fn start_cluster() -> Cluster {
    Cluster::start(false)
        .unwrap_or_else(|why| panic!("cannot start a private redis cluster: {why}"))
}

/// [`start_cluster`] with TLS: every node speaks only TLS (`rediss://` URLs, certificate
/// signed by [`TestCa::shared`]), on its client port and on the cluster bus.
///
/// # Panics
///
/// The cluster does not come up; the message includes the node logs.
pub fn start_tls_cluster() -> Cluster {
    Cluster::start(true)
        .unwrap_or_else(|why| panic!("cannot start a private TLS redis cluster: {why}"))
}

/// How a server from [`start_secure`] is locked down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Secure {
    /// TLS only: `--tls-port` with a certificate signed by [`TestCa::shared`], no plain port
    /// (`--port 0`), clients need no certificate. URLs are `rediss://`.
    pub tls: bool,
    /// ACL users: the `default` user is off (`user default off`), so every client must log
    /// in. The harness adds its own all-powerful user for itself and
    /// [`RedisServer::connect`]; tests add the users they need with `ACL SETUSER` through it.
    pub acl: bool,
}

/// Starts a private standalone server with TLS and/or ACL users (see [`Secure`]), with `args`
/// appended like [`start_standalone_with`]. Killed when dropped.
///
/// # Panics
///
/// The server does not come up; the message includes its log.
pub fn start_secure(secure: Secure, args: &[&str]) -> RedisServer {
    RedisServer::launch_secure(server::Mode::Standalone, secure, args).unwrap_or_else(|why| {
        panic!("cannot start a private redis-server ({secure:?}, {args:?}): {why}")
    })
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) async fn open_standalone(url: &str) -> ruecache::Connection {
    ruecache::Connection::open(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

pub(crate) async fn open_manager(client: redis::Client, url: &str) -> ruecache::Connection {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(ruecache::DEFAULT_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    client
        .get_connection_manager_with_config(config)
        .await
        .map(ruecache::Connection::from)
        .unwrap_or_else(|e| panic!("cannot open a ConnectionManager to {url}: {e}"))
}

/// Turns one async test body taking a [`Target`] into two tests, `<name>_standalone` and
/// `<name>_cluster`, each on a 2-worker multi-thread tokio runtime. Takes one or more names.
///
/// ```no_run
/// async fn all_hits_skip_fetch(t: ruecache_tests::Target) { /* ... */ }
/// ruecache_tests::both!(all_hits_skip_fetch);
/// ```
///
/// The test files need no `tokio` import: the runtime is reached through this crate's
/// re-export (`crate = "::ruecache_tests::tokio"`).
#[macro_export]
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        $(
            $crate::__pastey::paste! {
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 2,
                    crate = "::ruecache_tests::tokio"
                )]
                async fn [<$name _standalone>]() {
                    $name($crate::Target::Standalone).await
                }

                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 2,
                    crate = "::ruecache_tests::tokio"
                )]
                async fn [<$name _cluster>]() {
                    $name($crate::Target::Cluster).await
                }
            }
        )+
    };
}
