//! Security: TLS (`rediss://`), a Redis ACL user restricted to what the cache needs, and logs
//! that never show keys, values or passwords.
//!
//! Every test starts its own private server ([`start_secure`]): the ACL tests change the
//! restricted user's rules, and TLS servers speak nothing else.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::{ErrorKind, ServerErrorKind};
use ruecache::{Cache, Connection};
use ruecache_tests::{
    start_cluster, start_secure, start_tls_cluster, Cluster, RedisServer, Secure, TestCa,
};
use support::{Captured, Source, TestError, MINIMAL_ACL, PASSWORD};

/// The key template of the caches under the restricted user.
const TEMPLATE: &str = "widgets:{{{id}}}";

/// Where the rules start after the user name, `reset`, `on` and the password.
const FIRST_PERMISSION: usize = 4;

/// Creates (or replaces) the user `cache` with `rules` (arguments after `ACL SETUSER`).
async fn set_user(admin: &Connection, rules: &[&[u8]]) {
    let mut admin = admin.clone();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(rules)
        .query_async(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER failed: {e}"));
}

/// A server with the `default` user off and the user `cache` set up with [`MINIMAL_ACL`]; and
/// a connection of the harness's own (unrestricted) user.
async fn acl_server(tls: bool) -> (RedisServer, Connection) {
    let server = start_secure(Secure { tls, acl: true }, &[]);
    let admin = server.connect().await;
    set_user(&admin, MINIMAL_ACL).await;
    (server, admin)
}

fn widgets(conn: Connection) -> Cache<u64, String> {
    Cache::builder(conn, TEMPLATE)
        .build()
        .expect("valid config")
}

/// Everything the cache does to Redis, each step checked: a batch miss with an absent id, a
/// batch hit, a single-id miss and hit (through the coalesced `GET`), an invalidation, and
/// the refill after it.
async fn exercise(cache: &Cache<u64, String>) -> Result<(), String> {
    let source = Source::without(&[3]);
    let fill = |ids: Vec<u64>| {
        let source = source.clone();
        async move { source.fetch(ids).await }
    };
    let step = |what: &'static str| move |e: TestError| format!("{what}: {e:?}");

    let first: HashMap<u64, String> = cache
        .get_and_fill(vec![1, 2, 3], fill)
        .await
        .map_err(step("batch miss"))?;
    assert_eq!(first, expected(&[1, 2]));
    let again: HashMap<u64, String> = cache
        .get_and_fill(vec![1, 2, 3], fill)
        .await
        .map_err(step("batch hit"))?;
    assert_eq!(again, expected(&[1, 2]));
    assert_eq!(source.calls(), vec![vec![1, 2, 3]], "the hit fetched");

    let one = |id: u64| async move { Ok::<_, TestError>(Some(support::value(id))) };
    let seven = cache
        .get_and_fill_one(7, one)
        .await
        .map_err(step("single miss"))?;
    assert_eq!(seven.as_deref(), Some(support::value(7).as_str()));
    let seven = cache
        .get_and_fill_one(7, |_| async { Ok::<_, TestError>(None) })
        .await
        .map_err(step("single hit"))?;
    assert_eq!(
        seven.as_deref(),
        Some(support::value(7).as_str()),
        "the hit fetched"
    );

    cache
        .invalidate([1, 7])
        .await
        .map_err(|e| format!("invalidate: {e}"))?;
    let refilled: HashMap<u64, String> = cache
        .get_and_fill(vec![1, 2], fill)
        .await
        .map_err(step("refill"))?;
    assert_eq!(refilled, expected(&[1, 2]));
    assert_eq!(
        source.calls(),
        vec![vec![1, 2, 3], vec![1]],
        "only the invalidated id is fetched again"
    );

    Ok(())
}

fn expected(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, support::value(id))).collect()
}

/// The error of one raw command sent through `conn`, which must fail.
async fn refused(conn: &Connection, args: &[&str]) -> redis::RedisError {
    let mut conn = conn.clone();
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    match cmd.query_async::<redis::Value>(&mut conn).await {
        Ok(v) => panic!("{args:?} should be refused, got {v:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn restricted_user_can_fill_and_invalidate() {
    let (server, admin) = acl_server(false).await;
    let conn = Connection::open(&server.url_as("cache", PASSWORD))
        .await
        .expect("the restricted user logs in");
    let cache = widgets(conn);
    exercise(&cache).await.expect("the minimal ACL is enough");
    assert!(
        support::exists(&admin, "widgets:{2}").await,
        "the value was written under the restricted user"
    );
}

#[tokio::test]
async fn restricted_user_is_refused_other_commands_and_keys() {
    let (server, _admin) = acl_server(false).await;
    let conn = Connection::open(&server.url_as("cache", PASSWORD))
        .await
        .expect("the restricted user logs in");
    for args in [
        &["FLUSHALL"][..],
        &["KEYS", "*"],
        &["CONFIG", "GET", "requirepass"],
        &["EVAL", "return 1", "0"],
        &["SCRIPT", "FLUSH"],
        &["ACL", "LIST"],
    ] {
        let e = refused(&conn, args).await;
        assert_eq!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::NoPerm),
            "{args:?}: {e}"
        );
    }
    for args in [
        &["GET", "other:1"][..],
        &["SET", "other:1", "x"],
        &["MGET", "widgets:{1}", "other:1"],
    ] {
        let e = refused(&conn, args).await;
        assert_eq!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::NoPerm),
            "{args:?}: {e}"
        );
    }
    // A cache outside the key pattern is refused too, with the error passed to the caller.
    let other: Cache<u64, String> = Cache::builder(conn, "other:{{{id}}}").build().unwrap();
    let e: Result<HashMap<u64, String>, _> = other
        .get_and_fill(
            vec![1],
            |ids| async move { Source::default().fetch(ids).await },
        )
        .await;
    let e = e.expect_err("keys outside the ACL's patterns are refused");
    assert!(format!("{e:?}").contains("no permissions"), "{e:?}");
}

/// Leaving out any one rule of [`MINIMAL_ACL`] breaks [`exercise`] with a permission error. Where
/// each rule is needed: `~widgets:*` by every command on the data keys; the previous protocol's
/// version key pattern by the invalidation (its script deletes that key, for processes still on
/// the previous protocol); `~ruecache:live:*` by the first lease (the connection's liveness
/// key); `+get` by the single-id read; `+mget` by the batch read; `+evalsha` and
/// `+script|load` by the commit; `+set` by the lease; `+del` by the invalidation's script.
#[tokio::test]
async fn every_rule_of_the_minimal_acl_is_needed() {
    let (server, admin) = acl_server(false).await;
    let url = server.url_as("cache", PASSWORD);
    for (left_out, rule) in MINIMAL_ACL.iter().enumerate().skip(FIRST_PERMISSION) {
        let rules: Vec<&[u8]> = MINIMAL_ACL
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != left_out)
            .map(|(_, rule)| *rule)
            .collect();
        set_user(&admin, &rules).await;
        // Start each round from nothing: no data, no leases, no scripts loaded.
        let mut raw = admin.clone();
        let () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        let conn = Connection::open(&url).await.expect("the user logs in");
        let result = exercise(&widgets(conn)).await;
        let rule = String::from_utf8_lossy(rule);
        let e = result.expect_err(&format!("the cache worked without `{rule}`"));
        assert!(
            e.contains("permissions") || e.contains("can't run this command"),
            "without `{rule}`: {e}"
        );
    }
}

/// What a cluster client needs on top of [`MINIMAL_ACL`]: the slot map (`CLUSTER SLOTS`).
const CLUSTER_RULES: &[&[u8]] = &[b"+cluster|slots"];

/// The user `cache` with `rules` on every node of a private cluster; the cluster's seed URLs
/// as that user.
async fn acl_cluster(rules: &[&[u8]]) -> (Cluster, Vec<String>) {
    let cluster = start_cluster();
    for url in cluster.urls() {
        let admin: Connection = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
            .into();
        set_user(&admin, rules).await;
    }
    let urls = cluster
        .urls()
        .iter()
        .map(|url| url.replacen("redis://", &format!("redis://cache:{PASSWORD}@"), 1))
        .collect();
    (cluster, urls)
}

/// The README's cluster ACL (the minimal one plus [`CLUSTER_RULES`]) on every node of a
/// 3-master cluster: the whole exercise works through `Connection::open_cluster`, ids spread
/// over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_user_on_a_cluster() {
    let (_cluster, urls) = acl_cluster(&[MINIMAL_ACL, CLUSTER_RULES].concat()).await;
    let conn = Connection::open_cluster(&urls)
        .await
        .expect("the restricted user logs in to the cluster");
    exercise(&widgets(conn))
        .await
        .expect("the minimal ACL plus `+cluster|slots` is enough on a cluster");
}

/// Without `+cluster|slots` a cluster client cannot learn the slot map: connecting fails with
/// a clear error instead of a cache that fails later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_user_without_the_slot_map_rule_is_refused_at_connect() {
    let (_cluster, urls) = acl_cluster(MINIMAL_ACL).await;
    let e = Connection::open_cluster(&urls)
        .await
        .expect_err("no slot map without `+cluster|slots`");
    assert!(format!("{e}").to_lowercase().contains("permission"), "{e}");
}

/// The optional wake-up rules the README gives: with them, a waiter under the restricted user
/// is woken by the holder's commit instead of polling.
const WAKE_UP_RULES: &[&[u8]] = &[b"+publish", b"+subscribe", b"+unsubscribe", b"&{*}\xffn"];

/// The same on a cluster, where wake-ups go through shard channels.
const CLUSTER_WAKE_UP_RULES: &[&[u8]] =
    &[b"+spublish", b"+ssubscribe", b"+sunsubscribe", b"&{*}\xffn"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_user_with_the_wake_up_rules_is_woken() {
    let (server, admin) = acl_server(false).await;
    set_user(&admin, &[MINIMAL_ACL, WAKE_UP_RULES].concat()).await;
    let url = server.url_as("cache", PASSWORD);
    let holder = Connection::open(&url).await.unwrap();
    waiter_is_woken(holder, Connection::open(&url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_cluster_user_with_the_wake_up_rules_is_woken() {
    let rules = [MINIMAL_ACL, CLUSTER_RULES, CLUSTER_WAKE_UP_RULES].concat();
    let (_cluster, urls) = acl_cluster(&rules).await;
    let holder = Connection::open_cluster(&urls).await.unwrap();
    waiter_is_woken(holder, Connection::open_cluster(&urls).await.unwrap()).await;
}

/// The id [`waiter_is_woken`] waits for: one [`exercise`] does not use.
const WAITED: u64 = 99;

/// A waiter on `waiter_conn` is woken by the commit of a holder on `holder_conn` (another
/// connection, as another process would have), both asking for [`WAITED`], which must not be
/// cached yet.
async fn waiter_is_woken(holder_conn: Connection, waiter_conn: Connection) {
    let holder = widgets(holder_conn);
    // Polling alone would take a whole second: a quick return is a wake-up.
    let waiter: Cache<u64, String> = Cache::builder(waiter_conn, TEMPLATE)
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .build()
        .unwrap();
    let mut gate = support::Gate::default();
    let held = tokio::spawn({
        let (holder, fetch) = (holder.clone(), Source::default().gated(&gate.handle()));
        async move {
            holder
                .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([WAITED], fetch)
                .await
        }
    });
    let (_, release) = gate.paused().await;
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move {
            waiter
                .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([WAITED], |ids| async move {
                    Source::default().fetch(ids).await
                })
                .await
        }
    });
    // Once subscribed, the waiter flags the holder's lease (`L` becomes `W`): its release then
    // publishes.
    let key = holder.data_key(&WAITED).unwrap();
    support::eventually("the waiter subscribed and flagged the lease", async || {
        support::lease(holder.connection(), &key)
            .await
            .is_some_and(|lease| lease.starts_with(b"\xC1W"))
    })
    .await;
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), expected(&[WAITED]));
    assert_eq!(waiter.stats().wakeups, 1, "{:?}", waiter.stats());
}

#[tokio::test]
async fn wrong_password_or_no_user_is_refused_clearly() {
    let (server, _admin) = acl_server(false).await;
    let e = match Connection::open(&server.url_as("cache", "not-the-password")).await {
        Err(ruecache::Error::Redis(e)) => e,
        other => panic!("a wrong password is refused by Redis: {other:?}"),
    };
    assert_eq!(e.kind(), ErrorKind::AuthenticationFailed, "{e}");
    assert!(
        e.to_string().contains("authentication failed"),
        "the message says what failed: {e}"
    );
    assert!(
        !e.to_string().contains("not-the-password"),
        "the message repeats the password: {e}"
    );

    // Without credentials the client is the `default` user, which is off.
    let anonymous = Connection::open(&server.url())
        .await
        .expect("the socket opens");
    let e = refused(&anonymous, &["GET", "widgets:{1}"]).await;
    assert!(
        e.to_string().contains("NOAUTH") || e.kind() == ErrorKind::AuthenticationFailed,
        "the default user is off: {e}"
    );
}

#[tokio::test]
async fn tls_fill_and_invalidate_verified_with_the_test_ca() {
    let server = start_secure(
        Secure {
            tls: true,
            acl: false,
        },
        &[],
    );
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    // The documented way to trust a private CA: `build_with_tls`, then `.into()`.
    let client = redis::Client::build_with_tls(server.url(), TestCa::shared().tls_certificates())
        .expect("valid TLS client");
    let conn: Connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("TLS handshake verified with the test CA")
        .into();
    exercise(&widgets(conn)).await.expect("the cache over TLS");

    // Nothing answers in plain text on the TLS port.
    let plain = format!("redis://127.0.0.1:{}/", server.port());
    let plain_attempt = async {
        let mut conn = Connection::open(&plain).await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(ruecache::Error::from)
    };
    assert!(
        plain_attempt.await.is_err(),
        "a plain-text client was served on the TLS port"
    );
}

#[tokio::test]
async fn connection_open_speaks_tls_and_verifies_the_server() {
    let server = start_secure(
        Secure {
            tls: true,
            acl: false,
        },
        &[],
    );
    // The machine's trust store does not know the test CA: the handshake must fail.
    let e = Connection::open(&server.url())
        .await
        .expect_err("an unknown CA is refused");
    assert!(
        e.to_string().to_lowercase().contains("certificate"),
        "the error names the certificate: {e}"
    );

    // Trusting the CA through the standard variable makes `Connection::open` work. (The
    // variable is only read when a TLS connection is made, through the standard library; the
    // file outlives every test of this binary, so the other TLS tests may read it too.)
    let ca_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("security-test-ca.pem");
    std::fs::write(&ca_file, TestCa::shared().ca_pem()).unwrap();
    std::env::set_var("SSL_CERT_FILE", &ca_file);
    let conn = Connection::open(&server.url())
        .await
        .expect("Connection::open over rediss:// with a trusted CA");
    exercise(&widgets(conn)).await.expect("the cache over TLS");
}

#[tokio::test]
async fn restricted_user_over_tls() {
    let (server, admin) = acl_server(true).await;
    let conn = server
        .open(&server.url_as("cache", PASSWORD))
        .await
        .expect("the restricted user logs in over TLS");
    exercise(&widgets(conn)).await.expect("TLS and the ACL");
    assert!(support::exists(&admin, "widgets:{1}").await);
}

/// A 3-master cluster that speaks only TLS, to clients and on its cluster bus: through a
/// cluster client that trusts the test CA, the cache fills, hits and invalidates, a batch over
/// every node's slots round-trips, and a waiter on another connection is woken through the
/// shard channels of the TLS subscription connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_fill_invalidate_and_wake_up() {
    let cluster = start_tls_cluster();
    let urls = cluster.urls();
    assert!(
        urls.iter().all(|url| url.starts_with("rediss://")),
        "{urls:?}"
    );
    // The documented way to trust a private CA on a cluster: `certs` on the builder, for the
    // cache's connection and for its wake-ups.
    let builder = || {
        ClusterClientBuilder::new(urls.clone())
            .certs(TestCa::shared().tls_certificates())
            .response_timeout(ruecache::DEFAULT_RESPONSE_TIMEOUT)
    };
    let open = async || {
        let conn = builder()
            .build()
            .expect("valid TLS cluster client")
            .get_async_connection()
            .await
            .expect("TLS handshakes with every node, verified with the test CA");
        Connection::from(conn).cluster_wake_ups(builder())
    };

    let cache = widgets(open().await);
    exercise(&cache)
        .await
        .expect("the cache over a TLS cluster");

    // Enough ids that every master holds some of them.
    let ids: Vec<u64> = (1_000..1_300).collect();
    let source = Source::default();
    let fill = |ids: Vec<u64>| {
        let source = source.clone();
        async move { source.fetch(ids).await }
    };
    for round in ["miss", "hit"] {
        let got: HashMap<u64, String> = cache
            .get_and_fill(ids.clone(), fill)
            .await
            .unwrap_or_else(|e| panic!("batch {round} over every node: {e:?}"));
        assert_eq!(got, expected(&ids), "batch {round}");
    }
    assert_eq!(source.counts().len(), ids.len(), "each id fetched");
    assert!(
        source.counts().values().all(|&n| n == 1),
        "the second batch hit"
    );
    let per_node: Vec<i64> = {
        let mut sizes = Vec::new();
        for url in &urls {
            let client =
                redis::Client::build_with_tls(url.as_str(), TestCa::shared().tls_certificates())
                    .unwrap();
            let mut node = client.get_multiplexed_async_connection().await.unwrap();
            sizes.push(redis::cmd("DBSIZE").query_async(&mut node).await.unwrap());
        }
        sizes
    };
    assert!(
        per_node.iter().all(|&keys| keys > 0),
        "the batch spans every node: {per_node:?}"
    );

    waiter_is_woken(open().await, open().await).await;
}

#[test]
fn default_level_logs_no_keys_values_or_passwords() {
    // Ids and values that cannot appear in a log line by chance.
    const IDS: [u64; 3] = [73_519_284_601, 73_519_284_602, 73_519_284_603];
    let secret = |id: u64| format!("secret value of {id}");

    let (captured, _logs) = Captured::info_on_this_thread();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin_password = runtime.block_on(async {
        let (server, admin) = acl_server(false).await;
        let conn = Connection::open(&server.url_as("cache", PASSWORD))
            .await
            .unwrap();
        let cache: Cache<u64, String> = Cache::builder(conn, TEMPLATE)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let fetch = |ids: Vec<u64>| async move {
            Ok::<_, ruecache::Error>(
                ids.into_iter()
                    .map(|id| (id, secret(id)))
                    .collect::<HashMap<_, _>>(),
            )
        };

        // Fills: misses, then hits.
        let got: HashMap<u64, String> = cache.get_and_fill(IDS.to_vec(), fetch).await.unwrap();
        assert_eq!(got.len(), 3);
        let got: HashMap<u64, String> = cache.get_and_fill(IDS.to_vec(), fetch).await.unwrap();
        assert_eq!(got.len(), 3);
        cache.invalidate(IDS).await.unwrap();

        // A fetch error whose locks cannot be released (the user lost `EVALSHA` meanwhile):
        // the engine logs a warning.
        let revoke = |rule: &'static [u8]| {
            let admin = admin.clone();
            async move {
                let mut rules = MINIMAL_ACL[..1].to_vec();
                rules.push(rule);
                set_user(&admin, &rules).await;
            }
        };
        let e: Result<HashMap<u64, String>, _> = cache
            .get_and_fill(vec![IDS[0]], |_| async {
                revoke(b"-evalsha").await;
                Err::<HashMap<u64, String>, _>(ruecache::Error::source_error("database down"))
            })
            .await;
        let e = e.expect_err("the fetch failed");
        assert!(e.to_string().contains("database down"), "{e}");
        revoke(b"+evalsha").await;

        // A commit that fails after the caller stopped waiting: also a warning, from a
        // spawned task.
        let (fetched, caller_gone) = tokio::sync::oneshot::channel::<()>();
        let mut fetched = Some(fetched);
        let fill = cache.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(vec![IDS[1]], |ids| {
            let fetched = fetched.take().expect("one fetch");
            async move {
                revoke(b"-evalsha").await;
                let _ = fetched.send(());
                Ok::<_, ruecache::Error>(
                    ids.into_iter()
                        .map(|id| (id, secret(id)))
                        .collect::<Vec<_>>(),
                )
            }
        });
        tokio::select! {
            biased;
            _ = fill => panic!("the commit cannot succeed without EVALSHA"),
            _ = caller_gone => {}
        }
        // The spawned commit runs on this thread; wait for its warning (bounded).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while captured.text().matches(" WARN ").count() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the second warning never came:\n{}",
                captured.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        revoke(b"+evalsha").await;

        // A timeout: another caller holds the lease for the whole call.
        let lock = cache.keys(&IDS[2]).unwrap().data;
        let () = redis::cmd("SET")
            .arg(&lock)
            .arg(support::unchecked_lease(4_000))
            .arg("PX")
            .arg(60_000)
            .query_async(&mut admin.clone())
            .await
            .unwrap();
        let e: Result<HashMap<u64, String>, _> = cache.get_and_fill(vec![IDS[2]], fetch).await;
        let e = e.expect_err("the lock is never released");
        assert!(matches!(e, ruecache::Error::Timeout { .. }), "{e}");

        server.admin_url()
    });
    drop(runtime);

    let logs = captured.text();
    assert!(
        logs.matches(" WARN ").count() >= 2,
        "the failures above were logged:\n{logs}"
    );
    let admin_password = admin_password
        .split_once("ruecache-harness:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(password, _)| password.to_owned())
        .expect("the admin URL has a password");
    let mut forbidden = vec![
        "widgets".to_owned(),
        PASSWORD.to_owned(),
        admin_password,
        "\u{fffd}".to_owned(), // the byte 0xFF of a derived key, printed lossily
        "secret value".to_owned(),
    ];
    for id in IDS {
        forbidden.push(id.to_string());
        forbidden.push(secret(id));
    }
    for needle in &forbidden {
        assert!(
            !logs.contains(needle.as_str()),
            "the logs contain {needle:?}:\n{logs}"
        );
    }
}

/// Degraded mode under the minimal ACL: Redis stops answering (every client held by `CLIENT
/// PAUSE` for a second, as a frozen server holds them), calls are served from the source, and
/// the outage ends once Redis answers again: the probe that finds it back needs nothing the ACL
/// does not grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_user_falls_back_to_the_source_and_back() {
    let (server, admin) = acl_server(false).await;
    let conn = Connection::open(&server.url_as("cache", PASSWORD))
        .await
        .expect("the restricted user logs in");
    let cache: Cache<u64, String> = Cache::builder(conn, TEMPLATE)
        .timeout(Duration::from_millis(300))
        .fallback_to_source(true)
        .build()
        .expect("valid config");
    let source = Source::default();
    let fill = |ids: Vec<u64>| source.fetch(ids);
    let warm: HashMap<u64, String> = cache.get_and_fill([1], fill).await.unwrap();
    assert_eq!(warm.len(), 1);

    support::cmd::<()>(&admin, "CLIENT", ("PAUSE", 1000, "ALL")).await;
    let during: HashMap<u64, String> = cache.get_and_fill([1, 2], fill).await.unwrap();
    assert_eq!(during.len(), 2);
    assert_eq!(
        cache.stats().served_from_source,
        2,
        "served from the source"
    );

    support::cached_again_once_redis_answers(&cache, 3, &admin).await;
}
