//! The near cache: hot ids served from process memory, dropped as soon as Redis reports that
//! their keys changed, whoever changed them; nothing served while the reports may be missing.
//!
//! Each "process" here is a cache on a connection of its own: its own near cache and tracking
//! connections. The measurement across real OS processes is `invalidation_reaches_another_process`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use ruecache::{Cache, Connection, NearCache};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{cmd, eventually, template, trackers, value, TestError};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A source whose values carry a version the test bumps, as a database row would.
#[derive(Clone, Default)]
struct Versioned {
    version: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Versioned {
    fn value(&self, id: u64) -> String {
        format!("{} v{}", value(id), self.version.load(SeqCst))
    }

    fn fetch(&self) -> impl FnMut(Vec<u64>) -> Fetched + Clone {
        let source = self.clone();
        move |ids: Vec<u64>| {
            let source = source.clone();
            Box::pin(async move {
                source.calls.fetch_add(1, SeqCst);
                Ok(ids.into_iter().map(|id| (id, source.value(id))).collect())
            })
        }
    }

    fn bump(&self) {
        self.version.fetch_add(1, SeqCst);
    }
}

type Fetched = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HashMap<u64, String>, TestError>> + Send>,
>;

fn near_cache(conn: Connection, ns: &str, near: NearCache) -> Cache<u64, String> {
    Cache::builder(conn, &template(ns))
        .near_cache(near)
        .build()
        .expect("valid config")
}

/// Waits until the cache's tracking connections are up.
async fn tracking(cache: &Cache<u64, String>) {
    eventually("tracking on", async || {
        cache.near_status().expect("a near cache").tracking
    })
    .await;
}

async fn read(cache: &Cache<u64, String>, ids: &[u64], source: &Versioned) -> HashMap<u64, String> {
    cache
        .get_and_fill(ids.to_vec(), source.fetch())
        .await
        .expect("a read")
}

/// Reads `ids` until the near cache holds them all (a fill, then a read from Redis that is kept).
async fn held(cache: &Cache<u64, String>, ids: &[u64], source: &Versioned) {
    for _ in 0..100 {
        let before = cache.stats().near_hits;
        read(cache, ids, source).await;
        if cache.stats().near_hits - before == ids.len() as u64 {
            return;
        }
    }
    panic!("the near cache never held {ids:?}");
}

async fn hits_are_served_from_memory(t: Target) {
    let ns = t.ns();
    let cache = near_cache(t.connect().await, &ns, NearCache::new(100));
    tracking(&cache).await;
    let source = Versioned::default();
    let first = read(&cache, &[1, 2, 3], &source).await;
    assert_eq!(first[&2], source.value(2));
    // The fill's values come back from Redis, and are kept from then on.
    held(&cache, &[1, 2, 3], &source).await;
    let before = cache.stats();
    let got = read(&cache, &[1, 2, 3], &source).await;
    let one = cache
        .get_and_fill_one(2, |_| async { Ok::<_, TestError>(None) })
        .await
        .unwrap();
    let after = cache.stats();
    assert_eq!(got, first);
    assert_eq!(one.as_deref(), Some(first[&2].as_str()));
    assert_eq!(
        after.near_hits - before.near_hits,
        4,
        "every id from memory"
    );
    assert_eq!(after.hits, before.hits, "no read of Redis");
    assert_eq!(after.misses, before.misses);
    assert_eq!(source.calls.load(SeqCst), 1, "one fetch in all");
    assert_eq!(cache.near_status().unwrap().entries, 3);
}

both!(hits_are_served_from_memory);

async fn ids_the_source_does_not_have_are_kept_as_absent(t: Target) {
    let ns = t.ns();
    let cache = near_cache(t.connect().await, &ns, NearCache::new(100));
    tracking(&cache).await;
    let fetches = AtomicUsize::new(0);
    let none = |_: u64| {
        fetches.fetch_add(1, SeqCst);
        async { Ok::<Option<String>, TestError>(None) }
    };
    // A fill, then reads until one is answered from memory (a read that crossed the report
    // of the fill's own write is not kept).
    for _ in 0..100 {
        assert_eq!(cache.get_and_fill_one(9, none).await.unwrap(), None);
        if cache.stats().near_hits == 1 {
            break;
        }
    }
    assert_eq!(
        cache.stats().near_hits,
        1,
        "\"absent\" answered from memory"
    );
    assert_eq!(fetches.load(SeqCst), 1);
}

both!(ids_the_source_does_not_have_are_kept_as_absent);

/// After `invalidate` or `set` returns, no call in the process gets the old value: no waiting
/// for Redis's report.
async fn a_process_reads_its_own_writes(t: Target) {
    let ns = t.ns();
    let cache = near_cache(t.connect().await, &ns, NearCache::new(100));
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1, 2], &source).await;
    source.bump();
    cache.invalidate([1]).await.unwrap();
    let got = read(&cache, &[1, 2], &source).await;
    assert_eq!(got[&1], source.value(1), "the invalidated id is read again");
    cache.set(2, "written through".to_owned()).await.unwrap();
    let got = read(&cache, &[2], &source).await;
    assert_eq!(got[&2], "written through");
}

both!(a_process_reads_its_own_writes);

/// Another process's invalidation, a write typed by hand, an expiry: each reaches this
/// process's near cache through Redis's report.
async fn changes_made_anywhere_drop_the_entry(t: Target) {
    let ns = t.ns();
    let ours = near_cache(t.connect().await, &ns, NearCache::new(100));
    let theirs = near_cache(t.connect().await, &ns, NearCache::new(100));
    tracking(&ours).await;
    let source = Versioned::default();
    held(&ours, &[1, 2, 3], &source).await;

    // Another process invalidates id 1 after a write to the source.
    source.bump();
    theirs.invalidate([1]).await.unwrap();
    eventually("the invalidation reaches our near cache", async || {
        read(&ours, &[1], &source).await[&1] == source.value(1)
    })
    .await;

    // Someone deletes id 2's key by hand, and writes id 3's.
    let by_hand = t.connect().await;
    cmd::<()>(&by_hand, "DEL", ours.data_key(&2).unwrap()).await;
    cmd::<()>(&by_hand, "SET", (ours.data_key(&3).unwrap(), "garbage")).await;
    eventually("the deletion reaches our near cache", async || {
        read(&ours, &[2, 3], &source).await
            == HashMap::from([(2, source.value(2)), (3, source.value(3))])
    })
    .await;
    assert!(ours.stats().near_invalidations >= 3);
}

both!(changes_made_anywhere_drop_the_entry);

async fn an_expired_value_is_not_served(t: Target) {
    let ns = t.ns();
    let cache = Cache::builder(t.connect().await, &template(&ns))
        .ttl(Duration::from_millis(300))
        .jitter(0.0)
        .near_cache(NearCache::new(100).max_age(Duration::from_secs(3600)))
        .build()
        .expect("valid config");
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1], &source).await;
    source.bump();
    // Past the TTL the entry is gone from memory too: the read fills the id again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(read(&cache, &[1], &source).await[&1], source.value(1));
}

both!(an_expired_value_is_not_served);

async fn max_age_bounds_every_entry(t: Target) {
    let ns = t.ns();
    let cache = near_cache(
        t.connect().await,
        &ns,
        NearCache::new(100).max_age(Duration::from_millis(100)),
    );
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1], &source).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = cache.stats();
    read(&cache, &[1], &source).await;
    let after = cache.stats();
    assert_eq!(
        after.near_misses - before.near_misses,
        1,
        "the entry aged out"
    );
    assert_eq!(
        after.hits - before.hits,
        1,
        "read from Redis, where it still is"
    );
}

both!(max_age_bounds_every_entry);

async fn the_near_cache_stays_within_its_size(t: Target) {
    let ns = t.ns();
    let cache = near_cache(t.connect().await, &ns, NearCache::new(64));
    tracking(&cache).await;
    let source = Versioned::default();
    let ids: Vec<u64> = (0..1000).collect();
    for _ in 0..2 {
        for chunk in ids.chunks(100) {
            read(&cache, chunk, &source).await;
        }
    }
    let entries = cache.near_status().unwrap().entries;
    // 64 entries, spread over the shards by key: each shard rounds its share up.
    assert!(entries > 0 && entries <= 128, "{entries} entries");
}

both!(the_near_cache_stays_within_its_size);

/// A lost tracking connection may have lost reports: the near cache drops everything and
/// serves nothing until tracking is on again; then it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tracking_connection_drops_everything_until_it_is_back() {
    let server = start_standalone_with(&[]);
    let ns = support_ns();
    let admin = server.connect().await;
    let cache = near_cache(server.connect().await, &ns, NearCache::new(100));
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1], &source).await;
    let killed = trackers(&admin).await;
    assert_eq!(killed.len(), 1, "one tracking connection");
    // The connection is killed, and the key changes while it is down (no report reaches us).
    cmd::<()>(&admin, "CLIENT", ("KILL", "ID", &killed[0])).await;
    source.bump();
    cmd::<()>(&admin, "DEL", cache.data_key(&1).unwrap()).await;
    // Nothing old is served, whether the near cache noticed yet or not once it reads.
    eventually("the near cache notices", async || {
        !cache.near_status().unwrap().tracking || trackers(&admin).await != killed
    })
    .await;
    assert_eq!(read(&cache, &[1], &source).await[&1], source.value(1));
    // Back on a new connection, it serves again.
    tracking(&cache).await;
    assert_ne!(trackers(&admin).await, killed);
    held(&cache, &[1], &source).await;
    assert_eq!(read(&cache, &[1], &source).await[&1], source.value(1));
}

/// A restarted server (empty): tracking comes back, and nothing from before is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_tracked_again() {
    let mut server = start_standalone_with(&[]);
    let ns = support_ns();
    // A connection manager knows no server: the near cache needs a client for it.
    let client = redis::Client::open(server.url()).unwrap();
    let conn = Connection::from(client.get_connection_manager().await.unwrap()).wake_ups(&client);
    let cache = near_cache(conn, &ns, NearCache::new(100));
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1], &source).await;
    server.restart();
    source.bump();
    eventually("the near cache finds its connection lost", async || {
        !cache.near_status().unwrap().tracking
    })
    .await;
    eventually("tracking on again", async || {
        // The manager reconnects on the first request after the restart.
        let _: Result<HashMap<u64, String>, _> = cache.get_and_fill(vec![1], source.fetch()).await;
        cache.near_status().unwrap().tracking
    })
    .await;
    assert_eq!(read(&cache, &[1], &source).await[&1], source.value(1));
    held(&cache, &[1], &source).await;
}

/// `FLUSHALL` reaches the near cache as one report for every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_drops_everything() {
    let server = start_standalone_with(&[]);
    let ns = support_ns();
    let cache = near_cache(server.connect().await, &ns, NearCache::new(100));
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1, 2], &source).await;
    cmd::<()>(&server.connect().await, "FLUSHALL", "SYNC").await;
    source.bump();
    eventually("the flush reaches the near cache", async || {
        cache.near_status().unwrap().entries == 0
    })
    .await;
    assert_eq!(read(&cache, &[1, 2], &source).await[&2], source.value(2));
}

/// Broadcast tracking keeps no table of who read what: a server whose tracking table holds one
/// key still reports every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_tracking_table_changes_nothing() {
    let server = start_standalone_with(&["--tracking-table-max-keys", "1"]);
    let ns = support_ns();
    let ours = near_cache(server.connect().await, &ns, NearCache::new(1000));
    let theirs = near_cache(server.connect().await, &ns, NearCache::new(1000));
    tracking(&ours).await;
    let source = Versioned::default();
    let ids: Vec<u64> = (0..50).collect();
    held(&ours, &ids, &source).await;
    source.bump();
    theirs.invalidate(ids.clone()).await.unwrap();
    eventually("every invalidation reaches our near cache", async || {
        read(&ours, &ids, &source)
            .await
            .values()
            .all(|v| v.ends_with(" v1"))
    })
    .await;
}

fn support_ns() -> String {
    ruecache_tests::ns()
}

/// A cache whose connection does not know its servers cannot track them: a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_cannot_track_is_refused_with_a_fix() {
    let url = ruecache_tests::standalone_url();
    let client = redis::Client::open(url).unwrap();
    let conn = Connection::from(client.get_multiplexed_async_connection().await.unwrap());
    let err = Cache::<u64, String>::builder(conn, "x:{id}")
        .name("widgets")
        .near_cache(NearCache::new(10))
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ruecache::Error::Config(_)), "{err:?}");
    assert!(
        msg.contains("cache `widgets`") && msg.contains("Connection::open"),
        "{msg}"
    );
    let conn = Connection::open(&ruecache_tests::standalone_url())
        .await
        .unwrap();
    let err = Cache::<u64, String>::builder(conn, "x:{id}")
        .near_cache(NearCache::new(0))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("at least one entry"), "{err}");
}

/// How long after `invalidate` returns in one OS process another process's near cache drops
/// the entry: measured over many rounds with `src/bin/near_watcher.rs`, printed (median, p99,
/// max). Speed is not asserted; that every round's report arrived is.
async fn invalidation_reaches_another_process(t: Target) {
    const ROUNDS: usize = 200;
    let ns = t.ns();
    let [kind, urls] = t.child_args();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_near_watcher"))
        .args([kind.as_str(), urls.as_str(), &template(&ns)])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the watcher process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ours = near_cache(t.connect().await, &ns, NearCache::new(10));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the watcher answers within 10 s")
            .expect("the watcher's output")
            .expect("the watcher runs")
    };
    let mut late_us = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        assert_eq!(next().await, "ready");
        ours.invalidate([1]).await.unwrap();
        let returned = unix_us();
        let line = next().await;
        let dropped: i64 = line
            .strip_prefix("dropped ")
            .unwrap_or_else(|| panic!("expected a drop, got {line:?}"))
            .parse()
            .unwrap();
        late_us.push(dropped - returned);
    }
    late_us.sort_unstable();
    let at = |q: f64| late_us[((late_us.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "near[{}]: another process dropped the entry after invalidate returned, over {ROUNDS} \
         rounds: median {} us, p99 {} us, max {} us (negative: before the invalidation's reply \
         reached the invalidating process)",
        if t.is_cluster() {
            "cluster"
        } else {
            "standalone"
        },
        at(0.5),
        at(0.99),
        late_us[late_us.len() - 1],
    );
}

both!(invalidation_reaches_another_process);

fn unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// With refresh-ahead, an entry is kept only until reads of Redis may draw its refresh: a hot
/// id served from memory is still refreshed before it expires, and never misses.
async fn hot_ids_are_still_refreshed_ahead(t: Target) {
    let ns = t.ns();
    let refresh = |ids: Vec<u64>| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, ruecache::Error>(
            ids.into_iter()
                .map(|id| (id, value(id)))
                .collect::<Vec<_>>(),
        )
    };
    let cache = Cache::builder(t.connect().await, &template(&ns))
        .ttl(Duration::from_secs(1))
        .jitter(0.0)
        .refresh_ahead(refresh)
        .near_cache(NearCache::new(100))
        .build()
        .expect("valid config");
    tracking(&cache).await;
    // The callers' fetch takes as long as the refresh's: the draw's δ.
    let read = async || -> HashMap<u64, String> { cache.get_and_fill([1], refresh).await.unwrap() };
    read().await;
    let fill = cache.stats();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        assert_eq!(read().await[&1], value(1));
        // Read often: the refresh is drawn (by reads of Redis) well before the expiry.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = cache.stats();
    assert!(stats.near_hits > 0, "{stats:?}");
    assert!(
        stats.refreshes >= 2,
        "refreshed before each expiry: {stats:?}"
    );
    assert_eq!(
        stats.misses, fill.misses,
        "no read missed after the fill: {stats:?}"
    );
}

both!(hot_ids_are_still_refreshed_ahead);

/// The rights the security guide lists: a user with `+client|tracking +ping` besides the
/// cache's own rules gets a near cache; one without them gets none, and its calls read Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_needs_tracking_rights_and_nothing_else() {
    let server = start_standalone_with(&[]);
    let admin = server.connect().await;
    let cache_rules = [
        "reset",
        "on",
        ">pw",
        "~n:*",
        "~ruecache:live:*",
        "+get",
        "+mget",
        "+evalsha",
        "+script|load",
        "+set",
        "+del",
    ];
    cmd::<()>(
        &admin,
        "ACL",
        [&["SETUSER", "plain"][..], &cache_rules].concat(),
    )
    .await;
    let tracking_rules = [
        &["SETUSER", "tracker"][..],
        &cache_rules,
        &["+client|tracking", "+ping"],
    ];
    cmd::<()>(&admin, "ACL", tracking_rules.concat()).await;
    let source = Versioned::default();
    let open = async |user: &str| {
        let conn = Connection::open(&server.url_as(user, "pw")).await.unwrap();
        Cache::builder(conn, "n:{{{id}}}")
            .near_cache(NearCache::new(10))
            .build()
            .expect("valid config")
    };

    let allowed: Cache<u64, String> = open("tracker").await;
    tracking(&allowed).await;
    held(&allowed, &[1], &source).await;

    let refused: Cache<u64, String> = open("plain").await;
    for _ in 0..3 {
        assert_eq!(read(&refused, &[1], &source).await[&1], source.value(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!refused.near_status().unwrap().tracking);
    assert_eq!(refused.stats().near_hits, 0);
}

/// A plain connection to one cluster node (no redirections followed).
async fn node(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to the node")
}

async fn on<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// A slot moved from one master to another (`CLUSTER SETSLOT`, `MIGRATE`): the move itself is
/// reported (the old master deletes the key), and a later change on the new master is too
/// (every master is tracked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_master_is_still_tracked() {
    let cluster = ruecache_tests::start_cluster();
    let urls = cluster.urls();
    let cache = near_cache(
        Connection::open_cluster(&urls).await.unwrap(),
        &support_ns(),
        NearCache::new(100),
    );
    tracking(&cache).await;
    let source = Versioned::default();
    held(&cache, &[1], &source).await;

    let key = cache.data_key(&1).unwrap();
    let mut nodes = Vec::new();
    for url in &urls {
        let mut conn = node(url).await;
        let id: String = on(&mut conn, &["CLUSTER", "MYID"]).await;
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        nodes.push((conn, id, port));
    }
    let slot: i64 = on(&mut nodes[0].0, &["CLUSTER", "KEYSLOT", &key]).await;
    let slot = slot.to_string();
    let mut owner = None;
    for (i, (conn, _, _)) in nodes.iter_mut().enumerate() {
        let here: i64 = on(conn, &["CLUSTER", "COUNTKEYSINSLOT", &slot]).await;
        if here == 1 {
            owner = Some(i);
        }
    }
    let src = owner.expect("a master holds the key");
    let dst = (src + 1) % nodes.len();
    let (src_id, dst_id, dst_port) = (
        nodes[src].1.clone(),
        nodes[dst].1.clone(),
        nodes[dst].2.clone(),
    );
    let before = cache.stats().near_invalidations;
    on::<()>(
        &mut nodes[dst].0,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id],
    )
    .await;
    on::<()>(
        &mut nodes[src].0,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id],
    )
    .await;
    on::<()>(
        &mut nodes[src].0,
        &[
            "MIGRATE",
            "127.0.0.1",
            &dst_port,
            "",
            "0",
            "5000",
            "KEYS",
            &key,
        ],
    )
    .await;
    for (conn, _, _) in &mut nodes {
        on::<()>(conn, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]).await;
    }
    eventually("the move is reported", async || {
        cache.stats().near_invalidations > before
    })
    .await;

    // Read from the new master, kept again; then changed there by hand.
    held(&cache, &[1], &source).await;
    source.bump();
    on::<()>(&mut nodes[dst].0, &["DEL", &key]).await;
    eventually("the change on the new master is reported", async || {
        read(&cache, &[1], &source).await[&1] == source.value(1)
    })
    .await;
    drop(cluster);
}
