//! Redis Cluster: batches spanning every slot, derived keys in the data key's slot, scripts
//! reloaded after `SCRIPT FLUSH`.

mod support;

use std::collections::HashMap;

use ruecache::{Cache, Connection};
use ruecache_tests::{both, cluster_nodes, Target};
use support::{cmd, value, Source};

/// A 1,000-id batch with a template without hash tag, so ids land in slots all over the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_ids_across_all_masters() {
    let t = Target::Cluster;
    let ns = t.ns();
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &format!("{ns}w:{{id}}"))
        .build()
        .unwrap();
    let source = Source::default();
    let ids: Vec<u64> = (0..1000).collect();
    let got: HashMap<u64, String> = cache
        .get_and_fill(ids.clone(), |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, ids.iter().map(|&id| (id, value(id))).collect());
    assert_eq!(source.calls().len(), 1, "one fetch for the whole batch");

    // The keys really are spread: every master holds some, and together they hold all 1,000.
    let mut total = 0;
    for url in cluster_nodes() {
        let node = Connection::open(&url).await.unwrap();
        let keys: Vec<String> = cmd(&node, "KEYS", format!("{ns}w:*")).await;
        assert!(keys.len() > 200, "{url} holds {} keys", keys.len());
        total += keys.len();
    }
    assert_eq!(total, 1000);
    let again: HashMap<u64, String> = cache
        .get_and_fill(ids, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(again.len(), 1000);
    assert_eq!(cache.stats().hits, 1000);
}

async fn derived_keys_share_the_data_key_slot(t: Target) {
    let conn = t.connect().await;
    let ns = t.ns();
    for template in [
        format!("{ns}w:{{id}}"),
        format!("{ns}w:{{{{{{id}}}}}}"),
        format!("{{{{}}}}{ns}:{{id}}"),
    ] {
        let cache: Cache<String, String> = Cache::builder(conn.clone(), &template).build().unwrap();
        for id in ["1", "a}b", "{x}", "}{", "\u{0}:\u{ff}"] {
            let keys = cache.keys(&id.to_owned()).unwrap();
            if t.is_cluster() {
                let slot: i64 = cmd(&conn, "CLUSTER", ("KEYSLOT", &keys.data)).await;
                let channel: i64 = cmd(&conn, "CLUSTER", ("KEYSLOT", &keys.channel)).await;
                assert_eq!(channel, slot, "{template} / {id:?}");
            }
            // And the scripts run on the data key and the previous protocol's version key
            // (deleted by the invalidation) without a CROSSSLOT error.
            let got: HashMap<String, String> = cache
                .get_and_fill([id.to_owned()], |ids| async move {
                    Ok::<_, support::TestError>(
                        ids.into_iter().map(|i| (i.clone(), i)).collect::<Vec<_>>(),
                    )
                })
                .await
                .unwrap();
            assert_eq!(got[id], id);
            cache.invalidate([id.to_owned()]).await.unwrap();
        }
    }
}

/// The SHA1s of the engine's scripts that `get_and_fill` and `invalidate` run, as `EVALSHA`
/// names them.
fn script_shas() -> [(&'static str, String); 2] {
    [
        (
            "commit",
            redis::Script::new(include_str!("../../ruecache/src/scripts/commit.lua"))
                .get_hash()
                .to_owned(),
        ),
        (
            "invalidate",
            redis::Script::new(include_str!("../../ruecache/src/scripts/invalidate.lua"))
                .get_hash()
                .to_owned(),
        ),
    ]
}

/// Whether each master has each script: `SCRIPT EXISTS` asked of each master by itself.
async fn scripts_on_masters(masters: &[Connection]) -> Vec<(usize, &'static str, bool)> {
    let mut found = Vec::new();
    for (i, master) in masters.iter().enumerate() {
        for (name, sha) in script_shas() {
            let exists: Vec<bool> = cmd(master, "SCRIPT", ("EXISTS", &sha)).await;
            found.push((i, name, exists == [true]));
        }
    }
    found
}

/// A server (or cluster) of the test's own, so that no other test reloads the scripts between
/// the flush and the calls that must reload them.
enum Private {
    Standalone(ruecache_tests::RedisServer),
    Cluster(ruecache_tests::Cluster),
}

/// After `SCRIPT FLUSH` no master has the scripts any more (checked), so the calls that follow
/// can only succeed by loading them on `NOSCRIPT` and sending again; they do, and the scripts
/// are back on every master.
async fn scripts_are_reloaded_after_flush(t: Target) {
    let private = if t.is_cluster() {
        Private::Cluster(ruecache_tests::start_cluster())
    } else {
        Private::Standalone(ruecache_tests::start_standalone_with(&[]))
    };
    let (conn, masters) = match &private {
        Private::Standalone(server) => (server.connect().await, vec![server.connect().await]),
        Private::Cluster(cluster) => {
            let urls = cluster.urls();
            let mut masters = Vec::new();
            for url in &urls {
                masters.push(Connection::open(url).await.unwrap());
            }
            (Connection::open_cluster(&urls).await.unwrap(), masters)
        }
    };
    let cache = support::cache(conn.clone(), &t.ns());
    let source = Source::default();
    let _: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    cache.invalidate([1]).await.unwrap();
    let loaded = scripts_on_masters(&masters).await;
    assert!(
        loaded.iter().all(|&(_, _, exists)| exists),
        "before the flush every master has the scripts (and these are their SHAs): {loaded:?}"
    );

    cmd::<()>(&conn, "SCRIPT", "FLUSH").await; // reaches every node on a cluster
    let flushed = scripts_on_masters(&masters).await;
    assert!(
        flushed.iter().all(|&(_, _, exists)| !exists),
        "after the flush no master has the scripts: {flushed:?}"
    );

    cache.invalidate([1]).await.unwrap();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got, HashMap::from([(1, value(1)), (2, value(2))]));
    assert_eq!(cache.stats().commits, 3);
    assert_eq!(cache.stats().invalidations, 2);
    let reloaded = scripts_on_masters(&masters).await;
    assert!(
        reloaded.iter().all(|&(_, _, exists)| exists),
        "the scripts were loaded again on every master: {reloaded:?}"
    );
    drop(private);
}

both!(
    derived_keys_share_the_data_key_slot,
    scripts_are_reloaded_after_flush
);
