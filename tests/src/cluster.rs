//! A private 3-master Redis Cluster (no replicas) for the tests of one binary.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::server::{info_field, redis_cli_bin, run_with_timeout, Mode, RedisServer};
use crate::Secure;

/// How long the whole cluster (3 servers, `--cluster create`, convergence) may take.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);
const MASTERS: usize = 3;

/// A running 3-master cluster (no replicas). Its nodes are killed when this is dropped, or at
/// process exit when it lives in a static.
///
/// Get a private one with [`start_cluster`](crate::start_cluster) or
/// [`start_tls_cluster`](crate::start_tls_cluster).
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    /// Starts 3 cluster-enabled servers, joins them with `redis-cli --cluster create`, and waits
    /// until every node reports `cluster_state:ok` with all 16384 slots assigned and served.
    /// With `tls`, the nodes speak only TLS, to clients and on the cluster bus (see
    /// [`Secure::tls`]).
    pub(crate) fn start(tls: bool) -> Result<Self, String> {
        let started = Instant::now();
        let deadline = started + CLUSTER_DEADLINE;
        let secure = Secure { tls, acl: false };
        let nodes = (0..MASTERS)
            .map(|_| RedisServer::launch_secure(Mode::ClusterNode, secure, &[]))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = Cluster { nodes };

        let mut create = Command::new(redis_cli_bin());
        if let Some(ca) = cluster.nodes[0].tls_ca_file() {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        create
            .args(["--cluster", "create"])
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port())),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"]);
        let remaining = deadline.saturating_duration_since(Instant::now());
        match run_with_timeout(create, remaining) {
            Ok((status, _)) if status.success() => {}
            Ok((status, output)) => {
                return Err(format!(
                    "`redis-cli --cluster create` failed with {status}:\n{output}\n{}",
                    cluster.logs()
                ))
            }
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    " (install redis-tools, set REDIS_CLI_BIN, or point REDIS_CLUSTER_URLS at \
                     a cluster)"
                } else {
                    ""
                };
                return Err(format!(
                    "cannot run `{} --cluster create`: {e}{hint}\n{}",
                    redis_cli_bin(),
                    cluster.logs()
                ));
            }
        }

        loop {
            let pending: Vec<String> = cluster
                .nodes
                .iter()
                .filter_map(|node| match node.query(&["CLUSTER", "INFO"]) {
                    Ok(info) if converged(&info) => None,
                    Ok(info) => Some(format!("node {}: {}", node.port(), summary(&info))),
                    Err(e) => Some(format!("node {}: {e}", node.port())),
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the cluster did not converge within {CLUSTER_DEADLINE:?}:\n{}\n{}",
                    pending.join("\n"),
                    cluster.logs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "ruecache-tests: {MASTERS}-master cluster ready on {:?} in {:.2?}",
            cluster.urls(),
            started.elapsed()
        );
        Ok(cluster)
    }

    /// The masters' URLs, `redis://127.0.0.1:<port>/` (`rediss://` with TLS: trust
    /// [`TestCa::shared`](crate::TestCa::shared) to connect).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The master servers, for killing one (see [`RedisServer::kill`]).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- log of node {} ---\n{}", n.port(), n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Whether a node's `CLUSTER INFO` shows the finished 3-master cluster.
fn converged(info: &str) -> bool {
    let masters = MASTERS.to_string();
    info_field(info, "cluster_state") == Some("ok")
        && info_field(info, "cluster_slots_assigned") == Some("16384")
        && info_field(info, "cluster_slots_ok") == Some("16384")
        && info_field(info, "cluster_known_nodes") == Some(masters.as_str())
        && info_field(info, "cluster_size") == Some(masters.as_str())
}

fn summary(info: &str) -> String {
    [
        "cluster_state",
        "cluster_slots_assigned",
        "cluster_slots_ok",
        "cluster_known_nodes",
        "cluster_size",
    ]
    .iter()
    .map(|k| format!("{k}={}", info_field(info, k).unwrap_or("?")))
    .collect::<Vec<_>>()
    .join(" ")
}
