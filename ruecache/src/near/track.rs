//! The near cache's tracking connections: one RESP3 connection per Redis node (the standalone
//! server, or each cluster master) in `CLIENT TRACKING on BCAST` mode, whose pushes drop
//! entries. A task per near cache opens them, pings them, lists a cluster's masters again now
//! and then, and starts over (after dropping every entry) when any of them is lost.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushInfo, PushKind, Value};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::Near;

/// How often each tracking connection is pinged: a connection that hangs without closing is
/// found within this, plus [`ANSWER_WITHIN`].
pub(crate) const PING_EVERY: Duration = Duration::from_millis(500);

/// How long a ping (or opening a connection) may take before the connection counts as lost.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// How often a cluster's masters are listed again.
pub(crate) const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);

/// The name tracking connections give themselves (`CLIENT LIST` shows it).
pub(crate) const CLIENT_NAME: &str = "ruecache-near";

/// Where the nodes are: what a [`Connection`](crate::Connection) opened by this crate knows.
#[derive(Debug)]
pub(crate) enum Servers {
    Standalone(Box<ConnectionInfo>),
    /// Seed nodes; the masters are listed from them.
    Cluster(Vec<ConnectionInfo>),
}

impl Servers {
    /// The seeds of a cluster given by URLs.
    pub(crate) fn cluster<S: AsRef<str>>(urls: &[S]) -> Option<Self> {
        let seeds: Result<Vec<_>, _> = urls
            .iter()
            .map(|url| url.as_ref().into_connection_info())
            .collect();
        seeds.ok().map(Self::Cluster)
    }

    /// The nodes to track now: the standalone server, or the cluster's masters.
    async fn nodes(&self) -> Result<Vec<ConnectionInfo>, redis::RedisError> {
        match self {
            Self::Standalone(info) => Ok(vec![ConnectionInfo::clone(info)]),
            Self::Cluster(seeds) => {
                let mut last = None;
                for seed in seeds {
                    match masters(seed).await {
                        Ok(nodes) => return Ok(nodes),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no cluster seed"))
                }))
            }
        }
    }
}

/// The masters a cluster node lists (`CLUSTER SLOTS`), reached with the seed's settings.
async fn masters(seed: &ConnectionInfo) -> Result<Vec<ConnectionInfo>, redis::RedisError> {
    let client = redis::Client::open(seed.clone())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(ANSWER_WITHIN))
        .set_connection_timeout(Some(ANSWER_WITHIN));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    let mut nodes: Vec<(String, u16)> = Vec::new();
    if let Value::Array(ranges) = slots {
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            let Some(Value::Array(master)) = parts.get(2) else {
                continue;
            };
            let host = match master.first() {
                Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                _ => continue,
            };
            let Some(Value::Int(port)) = master.get(1) else {
                continue;
            };
            nodes.push((host, *port as u16));
        }
    }
    nodes.sort();
    nodes.dedup();
    Ok(nodes
        .into_iter()
        .map(|(host, port)| at(seed, host, port))
        .collect())
}

/// The seed's settings (credentials, TLS) for another node. An empty host (a node that does
/// not know its own address) is the seed's.
fn at(seed: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match seed.addr().clone() {
        ConnectionAddr::TcpTls {
            host: seed_host,
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: if host.is_empty() { seed_host } else { host },
            port,
            insecure,
            tls_params,
        },
        ConnectionAddr::Tcp(seed_host, _) => {
            ConnectionAddr::Tcp(if host.is_empty() { seed_host } else { host }, port)
        }
        other => other,
    };
    seed.clone().set_addr(addr)
}

/// Tracks the nodes for `near` until it is dropped.
pub(crate) async fn run(near: Weak<Near>, servers: Arc<Servers>, prefix: Box<str>) {
    const FIRST_RETRY: Duration = Duration::from_millis(50);
    let mut backoff = FIRST_RETRY;
    // Whether the last round was up: its loss is logged once as a warning, then the retries at
    // `debug`.
    let mut was_up = true;
    loop {
        if near.strong_count() == 0 {
            return;
        }
        let mut up = false;
        match track(&near, &servers, &prefix, &mut up).await {
            Ok(()) => return,
            Err(e) => {
                if let Some(near) = near.upgrade() {
                    near.down();
                }
                if up {
                    backoff = FIRST_RETRY;
                }
                if up || was_up {
                    warn!(error = %e, "near cache: tracking lost or refused; entries dropped, \
                                       calls read Redis until it is back");
                } else {
                    debug!(error = %e, "near cache: tracking still down; retrying");
                }
                was_up = up;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One round of tracking connections: a connection that closes ends it, unless it is over (a
/// connection of an earlier round closing late must not turn a later round off).
#[derive(Default)]
struct Round {
    lost: Notify,
    over: AtomicBool,
}

/// Marks its round over when the round ends, however it ends.
struct Over(Arc<Round>);

impl Drop for Over {
    fn drop(&mut self) {
        self.0.over.store(true, SeqCst);
    }
}

/// One round: opens every node's tracking connection, turns the near cache on (and sets `up`),
/// and watches until a connection is lost (an error) or the near cache is dropped (`Ok`).
async fn track(
    near: &Weak<Near>,
    servers: &Servers,
    prefix: &str,
    up: &mut bool,
) -> Result<(), redis::RedisError> {
    // A connection of this round lost while the others open moves the epoch: then the round
    // does not turn tracking on.
    let epoch = match near.upgrade() {
        Some(near) => near.epoch(),
        None => return Ok(()),
    };
    let nodes = servers.nodes().await?;
    let round = Arc::new(Round::default());
    let _over = Over(Arc::clone(&round));
    let mut conns = Vec::with_capacity(nodes.len());
    for node in &nodes {
        conns.push(open(node, near.clone(), Arc::clone(&round), prefix).await?);
    }
    let Some(live) = near.upgrade() else {
        return Ok(());
    };
    if !live.up(epoch) {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "a tracking connection closed while the others opened",
        )));
    }
    *up = true;
    info!(nodes = conns.len(), prefix, "near cache: tracking on");
    drop(live);
    let mut listed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = round.lost.notified() => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "a tracking connection closed",
                )));
            }
            () = tokio::time::sleep(PING_EVERY) => {}
        }
        if near.strong_count() == 0 {
            return Ok(());
        }
        for conn in &mut conns {
            ping(conn).await?;
        }
        if matches!(servers, Servers::Cluster(_)) && listed.elapsed() >= TOPOLOGY_EVERY {
            listed = tokio::time::Instant::now();
            let now = servers.nodes().await?;
            if addrs(&now) != addrs(&nodes) {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the cluster's masters changed",
                )));
            }
        }
    }
}

fn addrs(nodes: &[ConnectionInfo]) -> Vec<String> {
    nodes.iter().map(|n| n.addr().to_string()).collect()
}

async fn ping(conn: &mut MultiplexedConnection) -> Result<(), redis::RedisError> {
    match tokio::time::timeout(ANSWER_WITHIN, redis::cmd("PING").query_async::<Value>(conn)).await {
        Ok(reply) => reply.map(drop),
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "a tracking connection did not answer a ping",
        ))),
    }
}

/// Opens one node's tracking connection: RESP3, its pushes handled by `near`, tracking on.
async fn open(
    node: &ConnectionInfo,
    near: Weak<Near>,
    round: Arc<Round>,
    prefix: &str,
) -> Result<MultiplexedConnection, redis::RedisError> {
    let settings = node
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(node.clone().set_redis_settings(settings))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(ANSWER_WITHIN))
        .set_connection_timeout(Some(ANSWER_WITHIN))
        .set_push_sender(move |push: PushInfo| {
            on_push(&near, &round, push);
            Ok::<(), std::convert::Infallible>(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // A name is a convenience for operators (`CLIENT LIST`): a user without
    // `+client|setname` still tracks.
    let named: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(CLIENT_NAME)
        .query_async(&mut conn)
        .await;
    if let Err(e) = named {
        debug!(error = %e, "near cache: tracking connection left unnamed");
    }
    let mut tracking = redis::cmd("CLIENT");
    tracking.arg("TRACKING").arg("on").arg("BCAST");
    if !prefix.is_empty() {
        tracking.arg("PREFIX").arg(prefix);
    }
    tracking.query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// Handles a push of a tracking connection. Called by the connection's reader in the order
/// Redis sent it, before any reply that came after it; must not block.
fn on_push(near: &Weak<Near>, round: &Round, push: PushInfo) {
    let Some(near) = near.upgrade() else {
        return;
    };
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => near.invalidate(keys.iter().filter_map(|key| match key {
                Value::BulkString(key) => Some(key.as_slice()),
                _ => None,
            })),
            // `FLUSHALL`, `FLUSHDB`: everything.
            _ => near.clear(),
        },
        PushKind::Disconnection if !round.over.load(SeqCst) => {
            near.down();
            round.lost.notify_one();
        }
        _ => {}
    }
}
