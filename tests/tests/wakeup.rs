//! Waiters are woken, not polling: a caller waiting for an id another process holds (on another
//! connection, or in a child process of its own) returns as soon as the holder commits or gives
//! up, long before its backoff would have let it look again; a connection without wake-ups still
//! gets there by polling (and looks once more just before its deadline), and one made with `From`
//! gets them when given a client to subscribe with. A release that comes between a waiter's read
//! and its subscription is not missed: the waiter reads again once subscribed.
//!
//! The woken waiters' backoff is longer than their timeout: without a wake-up they would only
//! look again just before the deadline. Each trial asserts the wake-up the waiter counted, not a
//! time; the times from the holder's commit to the waiter's return are printed (median, p99).

mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ruecache::{Cache, Connection};
use ruecache_tests::{both, Target};
use support::{template, value, Gate, TestError};
use tokio::time::Instant;

/// Trials per target for the latency measurement.
const TRIALS: u64 = 60;

/// A cache whose waiters never poll: their backoff (10 min) is longer than their timeout (30 s),
/// so without a wake-up they look again only once, just before the deadline.
fn never_polling(conn: Connection, ns: &str) -> Cache<u64, String> {
    Cache::builder(conn, &template(ns))
        .backoff(Duration::from_secs(600), Duration::from_secs(600))
        .build()
        .unwrap()
}

/// A connection made with `From` a redis-rs connection and nothing else: it has no wake-ups.
async fn without_wake_ups(t: Target) -> Connection {
    match t {
        Target::Standalone => redis::Client::open(t.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
            .into(),
        Target::Cluster => redis::cluster::ClusterClient::new(ruecache_tests::cluster_nodes())
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
            .into(),
    }
}

/// The holder's fetch: pauses at the gate, then answers (or fails, if `fail`), recording in
/// `returned` the moment it returns: surely before the holder's commit (or unlock).
async fn gated(
    gate: support::GateHandle,
    ids: Vec<u64>,
    fail: bool,
    returned: Arc<OnceLock<Instant>>,
) -> Result<HashMap<u64, String>, TestError> {
    gate.pause(&ids).await;
    let result = if fail {
        Err(TestError::Source("the source is down"))
    } else {
        Ok(ids.into_iter().map(|id| (id, value(id))).collect())
    };
    returned
        .set(Instant::now())
        .expect("the holder's fetch runs once");
    result
}

/// One trial: A locks `id` and pauses in its fetch; B (another connection: another process)
/// asks for `id` and waits; once B is seen waiting, A is let go. Returns how long B took to
/// return after A's fetch returned, the ids B fetched itself and the wake-ups B counted.
///
/// A's fetch returns before A commits (or unlocks, when `fail`), so this is an upper bound of
/// the time from the commit to B's return: it adds A's commit round trip. B cannot return
/// before A's fetch does (it needs A's commit or unlock), so a negative time is a failure, not
/// a measurement error.
async fn trial(
    holder: &Cache<u64, String>,
    waiter: &Cache<u64, String>,
    id: u64,
    fail: bool,
) -> (Duration, Vec<Vec<u64>>, u64) {
    let mut gate = Gate::default();
    let handle = gate.handle();
    let returned = Arc::new(OnceLock::new());
    let a = {
        let holder = holder.clone();
        let returned = returned.clone();
        tokio::spawn(async move {
            holder
                .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(vec![id], |ids| {
                    gated(handle.clone(), ids, fail, returned.clone())
                })
                .await
        })
    };
    let (ids, release) = gate.paused().await;
    assert_eq!(ids, vec![id], "the holder locked the id");

    let before = waiter.stats();
    let waits_before = before.lock_waits;
    let key = holder.data_key(&id).unwrap();
    let b = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let fetched = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = fetched.clone();
            let result: HashMap<u64, String> = waiter
                .get_and_fill(vec![id], |ids| {
                    seen.lock().unwrap().push(ids.clone());
                    async move {
                        Ok::<_, TestError>(
                            ids.into_iter().map(|i| (i, value(i))).collect::<Vec<_>>(),
                        )
                    }
                })
                .await
                .expect("the waiter gets the value");
            let done = Instant::now();
            let fetched = fetched.lock().unwrap().clone();
            (result, done, fetched)
        })
    };
    // With wake-ups, B subscribes to the id's channel, then flags the holder's lease: from then
    // on the release publishes to it, and cannot go unheard. Without, B polls: its second busy
    // reply shows it waiting.
    support::eventually("the waiter waits for the holder's lease", async || {
        ruecache_tests::lease_flagged(holder.connection(), &key).await
            || waiter.stats().lock_waits >= waits_before + 2
    })
    .await;
    release.send(()).expect("the holder waits at the gate");

    let held = a.await.unwrap();
    let fetch_returned = *returned.get().expect("the holder's fetch returned");
    if fail {
        assert_eq!(held, Err(TestError::Source("the source is down")));
    } else {
        assert_eq!(held.unwrap(), HashMap::from([(id, value(id))]));
    }
    let (got, b_done, fetched) = b.await.unwrap();
    assert_eq!(got, HashMap::from([(id, value(id))]));
    let wakeups = waiter.stats().wakeups - before.wakeups;
    let latency = b_done
        .checked_duration_since(fetch_returned)
        .unwrap_or_else(|| {
            panic!(
                "trial {id}: the waiter returned {:?} before the holder's fetch did",
                fetch_returned - b_done
            )
        });
    (latency, fetched, wakeups)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs `trials` trials of ids `0..trials` whose holder commits, asserting each time that the
/// waiter was woken and did not fetch; returns the latencies.
async fn woken_by_commits(
    holder: &Cache<u64, String>,
    waiter: &Cache<u64, String>,
    trials: u64,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for id in 0..trials {
        let (latency, fetched, wakeups) = trial(holder, waiter, id, false).await;
        assert!(
            fetched.is_empty(),
            "trial {id}: the waiter fetched {fetched:?}"
        );
        assert!(
            wakeups >= 1,
            "trial {id}: the waiter was not woken (it returned {latency:?} after the holder's \
             fetch, from its last read before the deadline)"
        );
        latencies.push(latency);
    }
    latencies
}

/// Over many trials, every waiter returns within a few milliseconds of the holder's commit
/// (measured from the holder's fetch returning, just before it),
/// reads the committed value (never fetching it itself), and counts a wake-up each time.
async fn waiter_is_woken_by_the_commit(t: Target) {
    let ns = t.ns();
    let holder = support::cache(t.connect().await, &ns);
    let waiter = never_polling(t.connect().await, &ns);
    let mut latencies = woken_by_commits(&holder, &waiter, TRIALS).await;
    latencies.sort();
    println!(
        "{t:?}: waiter's return after the holder's fetch returned (an upper bound of the \
         wake-up after the commit) over {TRIALS} trials: median {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

/// The same with the waiter in a process of its own (`src/bin/waiter.rs`): over many trials it
/// is woken by the holder's commit (it reports the wake-ups it counted) and does not fetch. Times
/// are compared
/// on the system clock the two processes share (from the holder's fetch returning, just before
/// its commit, to the waiter's return: an upper bound).
async fn waiter_in_another_process_is_woken_by_the_commit(t: Target) {
    let ns = t.ns();
    let [kind, urls] = t.child_args();
    let mut child = Command::new(env!("CARGO_BIN_EXE_waiter"))
        .args([&kind, &urls, &template(&ns)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the waiter");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut read_line = move || {
        let mut line = String::new();
        // The child bounds each of its waits; this blocks this test's thread only.
        tokio::task::block_in_place(|| from_child.read_line(&mut line)).expect("waiter output");
        assert!(!line.is_empty(), "the waiter exited");
        line.trim().to_owned()
    };
    let holder = support::cache(t.connect().await, &ns);
    let mut latencies = Vec::new();
    for id in 0..TRIALS {
        let mut gate = Gate::default();
        let handle = gate.handle();
        let returned = Arc::new(OnceLock::new());
        let a = {
            let (holder, returned) = (holder.clone(), returned.clone());
            tokio::spawn(async move {
                holder
                    .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(vec![id], |ids| {
                        let (handle, returned) = (handle.clone(), returned.clone());
                        async move {
                            handle.pause(&ids).await;
                            returned.set(SystemTime::now()).expect("one fetch");
                            Ok::<_, TestError>(
                                ids.into_iter().map(|i| (i, value(i))).collect::<Vec<_>>(),
                            )
                        }
                    })
                    .await
            })
        };
        let (ids, release) = gate.paused().await;
        assert_eq!(ids, vec![id], "the holder locked the id");
        writeln!(to_child, "{id}").unwrap();
        to_child.flush().unwrap();
        assert_eq!(read_line(), format!("waiting {id}"));
        release.send(()).expect("the holder waits at the gate");
        assert_eq!(a.await.unwrap().unwrap(), HashMap::from([(id, value(id))]));
        let done = read_line();
        let [word, done_id, micros, fetched, wakeups] = done.split(' ').collect::<Vec<_>>()[..]
        else {
            panic!("unexpected waiter output {done:?}");
        };
        assert_eq!((word, done_id), ("done", id.to_string().as_str()));
        assert_eq!(fetched, "0", "trial {id}: the waiter fetched the id itself");
        assert_ne!(wakeups, "0", "trial {id}: the waiter was not woken");
        let done = UNIX_EPOCH + Duration::from_micros(micros.parse().unwrap());
        let fetch_returned = *returned.get().unwrap();
        let latency = done.duration_since(fetch_returned).unwrap_or_else(|_| {
            panic!("trial {id}: the waiter returned before the holder's fetch did")
        });
        latencies.push(latency);
    }
    drop(to_child);
    assert!(child.wait().unwrap().success(), "the waiter exits cleanly");
    latencies.sort();
    println!(
        "{t:?}: waiter in another process, its return after the holder's fetch returned, over \
         {TRIALS} trials: median {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

/// A holder whose fetch fails releases its lock, and that release wakes the waiter, which then
/// takes the lock and fetches the id itself.
async fn waiter_is_woken_when_the_holder_gives_up(t: Target) {
    let ns = t.ns();
    let holder = support::cache(t.connect().await, &ns);
    let waiter = never_polling(t.connect().await, &ns);
    for id in 0..10 {
        let (_, fetched, wakeups) = trial(&holder, &waiter, id, true).await;
        assert_eq!(
            fetched,
            vec![vec![id]],
            "trial {id}: the waiter filled the id"
        );
        assert!(wakeups >= 1, "trial {id}: no wake-up");
    }
}

/// A connection made with `From` has no wake-ups: its waiter still gets the holder's value, by
/// polling, and counts no wake-up.
async fn connection_without_wake_ups_polls(t: Target) {
    let ns = t.ns();
    let holder = support::cache(t.connect().await, &ns);
    let waiter: Cache<u64, String> = Cache::builder(without_wake_ups(t).await, &template(&ns))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    for id in 0..3 {
        let (_, fetched, _) = trial(&holder, &waiter, id, false).await;
        assert!(
            fetched.is_empty(),
            "trial {id}: the waiter fetched {fetched:?}"
        );
    }
    let stats = waiter.stats();
    assert_eq!(stats.wakeups, 0, "{stats:?}");
    assert!(stats.lock_waits >= 3, "{stats:?}");
}

/// A connection made with `From` (a `ConnectionManager` on the standalone server, a plain
/// cluster connection on the cluster) gets wake-ups once given a client to subscribe with.
async fn from_connection_given_wake_ups_is_woken(t: Target) {
    let ns = t.ns();
    let holder = support::cache(t.connect().await, &ns);
    let conn: Connection = match t {
        Target::Standalone => {
            let client = redis::Client::open(t.url()).unwrap();
            let manager = client.get_connection_manager().await.unwrap();
            Connection::from(manager).wake_ups(&client)
        }
        Target::Cluster => {
            let nodes = ruecache_tests::cluster_nodes();
            let builder = || redis::cluster::ClusterClientBuilder::new(nodes.clone());
            let cluster = builder().build().unwrap().get_async_connection().await;
            Connection::from(cluster.unwrap()).cluster_wake_ups(builder())
        }
    };
    let waiter = never_polling(conn, &ns);
    woken_by_commits(&holder, &waiter, 5).await;
}

/// A waiter that polls (no wake-ups) and whose next backoff step would pass its deadline
/// still looks once more just before the deadline: it gets a value committed after its last
/// regular poll, instead of giving up early. Timeout 2 s, backoff 1.2 s: it reads at the start,
/// at 1.2 s and, the next step being past the deadline, once more at 1.8 s. The holder commits
/// as soon as the waiter's second read has found it busy.
async fn polling_waiter_reads_once_more_before_its_deadline(t: Target) {
    let ns = t.ns();
    let holder = support::cache(t.connect().await, &ns);
    let waiter: Cache<u64, String> = Cache::builder(without_wake_ups(t).await, &template(&ns))
        .timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(1200), Duration::from_millis(1200))
        .build()
        .unwrap();
    let (_, fetched, wakeups) = trial(&holder, &waiter, 1, false).await;
    assert!(fetched.is_empty(), "the waiter fetched {fetched:?}");
    assert_eq!(wakeups, 0);
    let stats = waiter.stats();
    assert_eq!(
        (stats.lock_attempts, stats.lock_waits),
        (3, 2),
        "two busy reads, then the last one found the value: {stats:?}"
    );

    // A holder that never lets go: the waiter's last read finds it busy too, and the call
    // fails with the timeout.
    let mut gate = Gate::default();
    let (stuck, release) = support::paused_fill(&holder, vec![2], &mut gate).await;
    let got: Result<HashMap<u64, String>, TestError> = waiter
        .get_and_fill(vec![2], |ids| async move {
            Ok::<_, TestError>(ids.into_iter().map(|i| (i, value(i))).collect::<Vec<_>>())
        })
        .await;
    assert_eq!(
        got,
        Err(TestError::from(ruecache::Error::Timeout {
            after: Duration::from_secs(2),
            cache: None,
        }))
    );
    let after = waiter.stats();
    assert_eq!(
        (
            after.lock_attempts - stats.lock_attempts,
            after.lock_waits - stats.lock_waits
        ),
        (3, 3),
        "three busy reads, the last just before the deadline: {after:?}"
    );
    release.send(()).unwrap();
    assert_eq!(stuck.await.unwrap(), HashMap::from([(2, value(2))]));
}

both!(
    waiter_is_woken_by_the_commit,
    waiter_in_another_process_is_woken_by_the_commit,
    waiter_is_woken_when_the_holder_gives_up,
    connection_without_wake_ups_polls,
    from_connection_given_wake_ups_is_woken,
    polling_waiter_reads_once_more_before_its_deadline
);

/// A proxy in front of one Redis server that holds what its client sends from the first
/// `SUBSCRIBE` on, until told to let it through: for forcing a release into the window between
/// a waiter's read and its subscription.
struct SubscribeHold {
    url: String,
    held: tokio::sync::oneshot::Receiver<()>,
    release: tokio::sync::oneshot::Sender<()>,
}

impl SubscribeHold {
    async fn start(server: &str) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let upstream = server
            .strip_prefix("redis://")
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            let (mut held_tx, mut release_rx) = (Some(held_tx), Some(release_rx));
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let subscribes = buf[..n]
                    .windows(9)
                    .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"));
                if subscribes {
                    if let (Some(held), Some(release)) = (held_tx.take(), release_rx.take()) {
                        held.send(()).unwrap();
                        release.await.unwrap();
                    }
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        Self { url, held, release }
    }
}

/// Subscribe, then read again: a holder that releases after the waiter's busy read but before
/// its subscription is in place publishes to nobody, and the waiter still returns at once, from
/// the read it makes once subscribed. The waiter's subscription goes through a proxy that holds
/// its `SUBSCRIBE` while the holder commits; the waiter never polls (its backoff and timeout are
/// a day), so without that read it would wait until the test's guard fails it. Standalone only:
/// a proxy in front of one node of a cluster would be redirected around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_before_the_subscription_is_not_missed() {
    let t = Target::Standalone;
    let ns = t.ns();
    let holder = support::cache(t.connect().await, &ns);
    let hold = SubscribeHold::start(&t.url()).await;
    let conn = Connection::from(
        redis::Client::open(t.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap(),
    )
    .wake_ups(&redis::Client::open(hold.url.as_str()).unwrap());
    let day = Duration::from_secs(24 * 3600);
    let waiter: Cache<u64, String> = Cache::builder(conn, &template(&ns))
        .timeout(day)
        .backoff(day, day)
        .build()
        .unwrap();

    let mut gate = Gate::default();
    let (a, release_holder) = support::paused_fill(&holder, vec![1], &mut gate).await;
    let b = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            waiter
                .get_and_fill::<_, HashMap<u64, String>, _, _, Vec<(u64, String)>, TestError>(
                    vec![1],
                    |ids| async move {
                        panic!("the waiter fetched {ids:?}: it never saw the holder's commit")
                    },
                )
                .await
        })
    };
    // The waiter found the lock busy and is subscribing: the holder commits now, to nobody.
    hold.held.await.expect("the waiter subscribes");
    release_holder.send(()).unwrap();
    assert_eq!(a.await.unwrap(), HashMap::from([(1, value(1))]));
    hold.release.send(()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), b)
        .await
        .expect("the waiter read again once subscribed, instead of waiting for a wake-up")
        .unwrap()
        .unwrap();
    assert_eq!(got, HashMap::from([(1, value(1))]));
    let stats = waiter.stats();
    assert_eq!(
        (stats.lock_attempts, stats.lock_waits, stats.wakeups),
        (2, 1, 0),
        "a busy read, then the read after subscribing found the value: {stats:?}"
    );
}

/// The channels subscribed on a private server (`PUBSUB CHANNELS`) and its subscription
/// clients (`CLIENT LIST TYPE pubsub`).
async fn subscriptions(admin: &Connection) -> (usize, usize) {
    let channels: Vec<Vec<u8>> = support::cmd(admin, "PUBSUB", "CHANNELS").await;
    let clients: String = support::cmd(admin, "CLIENT", ("LIST", "TYPE", "pubsub")).await;
    (channels.len(), clients.lines().count())
}

/// One subscription serves every waiter of a connection, and a channel is unsubscribed once its
/// last waiter has left: five callers waiting for five ids another connection holds share one
/// subscription client with the five ids' channels, and once they have all returned no channel
/// is left subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscription_per_connection_and_no_channel_left_after_the_waits() {
    let server = ruecache_tests::start_standalone_with(&[]);
    let ns = ruecache_tests::ns();
    let holder = support::cache(server.connect().await, &ns);
    let waiter = never_polling(server.connect().await, &ns);
    let admin = server.connect().await;
    let ids: Vec<u64> = (0..5).collect();
    let mut gate = Gate::default();
    let (held, release) = support::paused_fill(&holder, ids.clone(), &mut gate).await;
    let waiting: Vec<_> = ids
        .iter()
        .map(|&id| {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                waiter
                    .get_and_fill_one(id, |_| async { Ok::<_, TestError>(None) })
                    .await
            })
        })
        .collect();
    // Each waiter subscribes, then flags the lease it waits for.
    let keys: Vec<String> = ids.iter().map(|id| holder.data_key(id).unwrap()).collect();
    support::eventually("five waiters subscribed", async || {
        for key in &keys {
            if !ruecache_tests::lease_flagged(holder.connection(), key).await {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(
        subscriptions(&admin).await,
        (5, 1),
        "five channels, one client"
    );

    release.send(()).unwrap();
    assert_eq!(held.await.unwrap().len(), 5);
    for (id, task) in ids.iter().zip(waiting) {
        assert_eq!(task.await.unwrap().unwrap(), Some(value(*id)));
    }
    assert_eq!(waiter.stats().wakeups, 5, "{:?}", waiter.stats());
    // The last waiter of a channel unsubscribes it in the background.
    support::eventually("every channel unsubscribed", async || {
        subscriptions(&admin).await.0 == 0
    })
    .await;
}
