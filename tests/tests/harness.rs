//! Tests of the test harness itself: the servers it starts are real, isolated and healthy.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::Value;
use ruecache_tests::{start_standalone_with, Target};

async fn query<T: redis::FromRedisValue>(conn: &mut ruecache::Connection, cmd: &redis::Cmd) -> T {
    cmd.query_async(conn).await.unwrap_or_else(|e| {
        panic!(
            "{:?} failed: {e}",
            String::from_utf8_lossy(&cmd.get_packed_command())
        )
    })
}

fn port_of(url: &str) -> u16 {
    let rest = url.strip_prefix("redis://").expect("redis:// url");
    let host_port = rest.split('/').next().unwrap();
    host_port
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("no port in {url}: {e}"))
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_owned())
    })
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[tokio::test]
async fn standalone_answers_ping_on_a_private_port() {
    let mut conn = Target::Standalone.connect().await;
    let pong: String = query(&mut conn, &redis::cmd("PING")).await;
    assert_eq!(pong, "PONG");

    let info: String = query(&mut conn, redis::cmd("INFO").arg("server")).await;
    let port: u16 = info_field(&info, "tcp_port").unwrap().parse().unwrap();
    assert_eq!(port, port_of(&Target::Standalone.url()));
    assert_eq!(
        info_field(&info, "redis_mode").as_deref(),
        Some("standalone")
    );
    if std::env::var_os("REDIS_URL").is_none() {
        assert_ne!(
            port, 6379,
            "the harness must not use the machine's own redis"
        );
    }
}

#[tokio::test]
async fn connect_returns_a_new_connection_each_call() {
    let mut a = Target::Standalone.connect().await;
    let mut b = Target::Standalone.connect().await;
    let id_a: i64 = query(&mut a, &redis::cmd("CLIENT").arg("ID").to_owned()).await;
    let id_b: i64 = query(&mut b, &redis::cmd("CLIENT").arg("ID").to_owned()).await;
    assert_ne!(id_a, id_b);

    // Both reach the same server: a write on one is visible on the other.
    let key = format!("{}shared", Target::Standalone.ns());
    let () = query(&mut a, redis::cmd("SET").arg(&key).arg("v")).await;
    let got: Option<String> = query(&mut b, redis::cmd("GET").arg(&key)).await;
    assert_eq!(got.as_deref(), Some("v"));
}

#[tokio::test]
async fn connection_manager_works_on_standalone() {
    let mut conn = Target::Standalone.connection_manager().await;
    let key = format!("{}m", Target::Standalone.ns());
    let () = query(&mut conn, redis::cmd("SET").arg(&key).arg(42)).await;
    let got: i64 = query(&mut conn, redis::cmd("GET").arg(&key)).await;
    assert_eq!(got, 42);
}

#[tokio::test]
#[should_panic(expected = "Target::Cluster has no ConnectionManager")]
async fn connection_manager_refuses_cluster() {
    Target::Cluster.connection_manager().await;
}

/// Per node URL: its `CLUSTER SLOTS` view as (first slot, last slot, owner port).
async fn slot_ranges(node_url: &str) -> Vec<(i64, i64, u16)> {
    let mut conn = ruecache::Connection::open(node_url).await.unwrap();
    let slots: Vec<Vec<Value>> = query(&mut conn, redis::cmd("CLUSTER").arg("SLOTS")).await;
    slots
        .iter()
        .map(|range| {
            let Value::Array(master) = &range[2] else {
                panic!("unexpected CLUSTER SLOTS entry {range:?}");
            };
            let port = u16::try_from(int(&master[1])).unwrap();
            (int(&range[0]), int(&range[1]), port)
        })
        .collect()
}

#[tokio::test]
async fn cluster_is_healthy_with_three_masters_and_all_slots() {
    let nodes = ruecache_tests::cluster_nodes();
    let ours = std::env::var_os("REDIS_CLUSTER_URLS").is_none();
    if ours {
        assert_eq!(nodes.len(), 3);
        assert!(nodes.iter().all(|u| port_of(u) != 6379));
    }
    assert_eq!(Target::Cluster.url(), nodes[0]);

    for url in &nodes {
        let mut conn = ruecache::Connection::open(url).await.unwrap();
        let info: String = query(&mut conn, redis::cmd("CLUSTER").arg("INFO")).await;
        assert_eq!(
            info_field(&info, "cluster_state").as_deref(),
            Some("ok"),
            "{url}: {info}"
        );
        assert_eq!(
            info_field(&info, "cluster_slots_assigned").as_deref(),
            Some("16384")
        );
        assert_eq!(
            info_field(&info, "cluster_slots_ok").as_deref(),
            Some("16384")
        );

        let listing: String = query(&mut conn, redis::cmd("CLUSTER").arg("NODES")).await;
        let masters = listing
            .lines()
            .filter(|l| {
                l.split(' ')
                    .nth(2)
                    .is_some_and(|f| f.split(',').any(|f| f == "master"))
            })
            .count();
        if ours {
            assert_eq!(masters, 3, "{url}: {listing}");
        }

        let ranges = slot_ranges(url).await;
        let covered: i64 = ranges.iter().map(|(a, b, _)| b - a + 1).sum();
        assert_eq!(covered, 16384, "{url}: {ranges:?}");
        let owners: BTreeSet<u16> = ranges.iter().map(|r| r.2).collect();
        if ours {
            let expected: BTreeSet<u16> = nodes.iter().map(|u| port_of(u)).collect();
            assert_eq!(owners, expected, "every master owns slots");
        }
    }
}

#[tokio::test]
async fn cluster_connection_routes_keys_in_different_slots() {
    let nodes = ruecache_tests::cluster_nodes();
    let ranges = slot_ranges(&nodes[0]).await;
    let owner_of = |slot: i64| {
        ranges
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .map(|r| r.2)
            .unwrap()
    };
    let url_of = |port: u16| nodes.iter().find(|u| port_of(u) == port).unwrap().clone();

    // One key per master, found by asking the server for each candidate's slot.
    let ns = Target::Cluster.ns();
    let mut direct = ruecache::Connection::open(&nodes[0]).await.unwrap();
    let mut by_owner: BTreeMap<u16, (String, i64)> = BTreeMap::new();
    let owners: BTreeSet<u16> = ranges.iter().map(|r| r.2).collect();
    for i in 0.. {
        if by_owner.len() == owners.len() {
            break;
        }
        assert!(i < 1000, "no key found for every master");
        let key = format!("{ns}k{i}");
        let slot: i64 = query(&mut direct, redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key)).await;
        by_owner.entry(owner_of(slot)).or_insert((key, slot));
    }
    let slots: BTreeSet<i64> = by_owner.values().map(|(_, s)| *s).collect();
    assert!(slots.len() >= 3, "keys in 3 different slots: {by_owner:?}");

    let mut conn = Target::Cluster.connect().await;
    for (key, slot) in by_owner.values() {
        let () = query(&mut conn, redis::cmd("SET").arg(key).arg(*slot)).await;
    }
    for (owner, (key, slot)) in &by_owner {
        let got: i64 = query(&mut conn, redis::cmd("GET").arg(key)).await;
        assert_eq!(got, *slot);

        // The value really lives on the owning master, and another master redirects.
        let mut on_owner = ruecache::Connection::open(&url_of(*owner)).await.unwrap();
        let got: i64 = query(&mut on_owner, redis::cmd("GET").arg(key)).await;
        assert_eq!(got, *slot);
        let other = nodes.iter().find(|u| port_of(u) != *owner).unwrap();
        let mut elsewhere = ruecache::Connection::open(other).await.unwrap();
        let err = redis::cmd("GET")
            .arg(key)
            .query_async::<Option<i64>>(&mut elsewhere)
            .await
            .expect_err("a non-owner must not serve the key");
        assert!(err.to_string().to_lowercase().contains("moved"), "{err}");
    }
}

#[test]
fn ns_is_unique_and_plain() {
    let all: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 2 == 0 {
                Target::Standalone.ns()
            } else {
                Target::Cluster.ns()
            }
        })
        .collect();
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len());
    for ns in &all {
        assert!(ns.starts_with('t') && ns.ends_with(':'), "{ns}");
        assert!(
            ns[1..ns.len() - 1].chars().all(|c| c.is_ascii_hexdigit()),
            "{ns}: only hex, no hash tag"
        );
    }
}

#[tokio::test]
async fn private_server_takes_config_and_survives_kill_and_restart() {
    let mut server = start_standalone_with(&["--maxmemory", "1mb"]);
    let port = server.port();
    assert_ne!(port, 6379);
    assert_ne!(server.url(), Target::Standalone.url());
    assert_eq!(port_of(&server.url()), port);

    let mut conn = server.connect().await;
    let maxmemory: Vec<String> =
        query(&mut conn, redis::cmd("CONFIG").arg("GET").arg("maxmemory")).await;
    assert_eq!(maxmemory, ["maxmemory", "1048576"]);

    let mut manager = server.connection_manager().await;
    let () = query(&mut manager, redis::cmd("SET").arg("before").arg(1)).await;

    let pid = server.pid().expect("running");
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    assert!(
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_err(),
        "a killed server must not answer"
    );

    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(pid));
    let mut fresh = server.connect().await;
    let pong: String = query(&mut fresh, &redis::cmd("PING")).await;
    assert_eq!(pong, "PONG");
    let before: Option<i64> = query(&mut fresh, redis::cmd("GET").arg("before")).await;
    assert_eq!(before, None, "no persistence: a restart starts empty");
    let maxmemory: Vec<String> =
        query(&mut fresh, redis::cmd("CONFIG").arg("GET").arg("maxmemory")).await;
    assert_eq!(
        maxmemory,
        ["maxmemory", "1048576"],
        "restart keeps the arguments"
    );

    // The ConnectionManager reconnects to the restarted server by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redis::cmd("PING").query_async::<String>(&mut manager).await {
            Ok(pong) => {
                assert_eq!(pong, "PONG");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "manager did not reconnect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let new_pid = server.pid().unwrap();
    let dir = server.dir().to_owned();
    assert!(dir.is_dir());
    drop(server);
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(libc::pid_t::try_from(new_pid).unwrap(), 0) } == 0;
    assert!(!alive, "dropping the server kills its process");
    assert!(!dir.exists(), "dropping the server removes its directory");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

async fn set_get_roundtrip(t: Target) {
    let mut writer = t.connect().await;
    let mut reader = t.connect().await;
    let key = format!("{}roundtrip", t.ns());
    let () = query(&mut writer, redis::cmd("SET").arg(&key).arg("hello")).await;
    let got: Option<String> = query(&mut reader, redis::cmd("GET").arg(&key)).await;
    assert_eq!(got.as_deref(), Some("hello"));
    assert_eq!(writer.is_cluster(), t.is_cluster());
}
ruecache_tests::both!(set_get_roundtrip);
