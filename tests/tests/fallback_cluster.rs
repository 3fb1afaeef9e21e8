//! Degraded mode on a cluster that loses a master: one outage, logged once, until that master
//! answers again. In a file of its own: it captures the logs of its thread, which tests running
//! beside it in one process would disturb (`tracing` caches per call site whether anyone
//! listens).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ruecache::Connection;
use support::{cmd, value, Captured, Source};

type Map = HashMap<u64, String>;

/// A cluster that loses a master (no replica) is one outage, logged once: the first call that
/// needs the lost master's slots starts it, and calls are served from the source (all their
/// ids) until the master answers again. The probe reads the slots the failed call needed, so
/// probes answered by the healthy masters (seen in their command counts) do not end it, and
/// the next call does not start it again. Once the master is back, the outage ends (logged
/// once) and ids are cached again.
#[test]
fn a_lost_cluster_master_is_one_outage_logged_once() {
    let (captured, _logs) = Captured::info_on_this_thread();
    let count = |needle: &str| captured.text().matches(needle).count();
    let (started, ended) = (
        "serving from the source until it answers",
        "caching resumed",
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut cluster = ruecache_tests::start_cluster();
            let urls = cluster.urls();
            let nodes = support::node_connections(&urls).await;
            for node in &nodes {
                cmd::<()>(
                    node,
                    "CONFIG",
                    ("SET", "cluster-require-full-coverage", "no"),
                )
                .await;
            }
            let ns = ruecache_tests::ns();
            let cache =
                support::fallback_cache(Connection::open_cluster(&urls).await.unwrap(), &ns);
            let ids: Vec<u64> = (0..60).collect();
            let all: Map = ids.iter().map(|&id| (id, value(id))).collect();
            let source = Source::default();
            let warm: Map = cache
                .get_and_fill(ids.clone(), |ids| source.fetch(ids))
                .await
                .unwrap();
            assert_eq!(warm, all);

            cluster.nodes_mut()[0].kill();
            let served = cache.stats().served_from_source;
            for round in 0..3 {
                let got: Map = cache
                    .get_and_fill(ids.clone(), |ids| source.fetch(ids))
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: served, not failed: {e:?}"));
                assert_eq!(got, all, "round {round}");
                // Probes reach the healthy masters (and are answered there) between rounds.
                // (A probe round takes the probe's timeout, 1 s, for the lost master's slots.)
                support::take_command_calls(&nodes[1]).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while !support::take_command_calls(&nodes[1])
                    .await
                    .contains_key("get")
                {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "round {round}: no probe reached a healthy master within 10 s"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            assert!(cache.stats().served_from_source >= served + 3 * 60);
            assert_eq!(
                (count(started), count(ended)),
                (1, 0),
                "{}",
                captured.text()
            );

            cluster.nodes_mut()[0].restart();
            let check = Connection::open_cluster(&urls).await.unwrap();
            support::cached_again_once_redis_answers(&cache, 60, &check).await;
            assert_eq!(
                (count(started), count(ended)),
                (1, 1),
                "{}",
                captured.text()
            );
        });
}
