//! Consistency torture: several "processes" (each with its own Redis connection, shared by a few
//! concurrent tasks) read through the cache and write a real SQLite database at random, with
//! fetches that nap to widen every race. Tasks on one connection overlap, so their reads and
//! commits share round trips and an id one of them is filling is followed by the others
//! (in-process single-flight); some reads are dropped at random points, their commits then
//! finished by a spawned task.
//!
//! Two properties are checked:
//!
//! - **No stale read after an invalidation**: a read that started after the invalidation of id X
//!   completed never returns a version of X older than the write that invalidation followed.
//! - **No stale data left in Redis**: once everything has stopped, every cached value equals the
//!   database's current row, or is absent.
//!
//! And that the races the test is for did happen: commits refused because an invalidation raced
//! their fetch, followers of another task's fill, reads dropped after their fetch returned.
//!
//! Each variant runs for a few seconds; set `RUECACHE_TORTURE_SECS` for a longer run.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use ruecache::{Cache, Connection, NearCache};
use ruecache_tests::{both, start_standalone_with, RedisServer, Target};
use serde::{Deserialize, Serialize};
use support::{cmd, trackers};
use tokio::sync::Notify;

/// Redis connections, as separate processes would have.
const CONNECTIONS: usize = 4;

/// Concurrent tasks on each connection: their calls overlap, so reads and commits are coalesced
/// and an id one task is filling is followed (not fetched again) by the others.
const TASKS_PER_CONNECTION: usize = 4;

/// Percent of reads dropped: run under a short random timeout, so the caller may be dropped
/// while it takes locks, fetches, commits or follows another task's fill.
const DROPPED_READS_PERCENT: u32 = 20;

/// A database row as cached: its version counter and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    version: u64,
    value: String,
}

/// What one variant runs on.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// Rows `0..ids` in the database.
    ids: u64,
    /// Bytes of padding in every value (large values make eviction bite).
    padding: usize,
    /// Calls may fail (the server is killed mid-run): failed calls are counted, not fatal.
    faults: bool,
    /// Short-lived values, refreshed ahead of their expiry and served past it while their
    /// refill is under way: refresh leases and stale values race the invalidations too.
    fresh: bool,
    /// Every worker process keeps hot ids in a near cache, in memory: a read may then return
    /// a version another process invalidated, for as long as Redis's report of it takes to
    /// arrive ([`NEAR_BOUND`]), never longer, and never after the same process invalidated it.
    near: bool,
    /// The near caches' tracking connections are killed every [`TRACKER_KILL_EVERY`] (a
    /// standalone server only): each time, the near caches drop everything and reconnect.
    kill_trackers: bool,
}

/// How long after an invalidation returned a read in another process may still return the
/// version it replaced from its near cache: the time Redis's report takes to arrive, with a
/// wide margin for this test's load (measured: well under a millisecond without load, see
/// `tests/near.rs`). The run prints the longest it saw.
const NEAR_BOUND: Duration = Duration::from_millis(50);

/// How often the `kill_trackers` variant kills the tracking connections.
const TRACKER_KILL_EVERY: Duration = Duration::from_millis(150);

/// [`Setup`] with every optional behaviour off.
const PLAIN: Setup = Setup {
    ids: 64,
    padding: 16,
    faults: false,
    fresh: false,
    near: false,
    kill_trackers: false,
};

/// The row's value for a version: self-describing, so a mixed-up value is caught too.
fn row_value(id: u64, version: u64, padding: usize) -> String {
    let mut value = format!("row {id} at version {version}:");
    value.extend(std::iter::repeat_n('x', padding));
    value
}

fn run_time() -> Duration {
    std::env::var("RUECACHE_TORTURE_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(3))
}

/// The source of truth: a real SQLite database file, one connection per worker.
struct Db {
    conn: Mutex<rusqlite::Connection>,
}

impl Db {
    fn create(path: &Path, setup: &Setup) {
        let mut conn = rusqlite::Connection::open(path).expect("open the database");
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("WAL mode");
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "CREATE TABLE rows (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, value TEXT NOT NULL)",
        )
        .expect("create the table");
        let tx = conn.transaction().expect("begin");
        for id in 0..setup.ids {
            tx.execute(
                "INSERT INTO rows (id, version, value) VALUES (?1, 1, ?2)",
                rusqlite::params![id as i64, row_value(id, 1, setup.padding)],
            )
            .expect("insert a row");
        }
        tx.commit().expect("commit");
    }

    fn open(path: &Path) -> Arc<Self> {
        let conn = rusqlite::Connection::open(path).expect("open the database");
        conn.busy_timeout(Duration::from_secs(30))
            .expect("busy timeout");
        Arc::new(Self {
            conn: Mutex::new(conn),
        })
    }

    fn load(&self, ids: &[u64]) -> HashMap<u64, Row> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare_cached("SELECT version, value FROM rows WHERE id = ?1")
            .expect("prepare");
        let mut rows = HashMap::with_capacity(ids.len());
        for &id in ids {
            let row = stmt
                .query_row([id as i64], |r| {
                    Ok(Row {
                        version: r.get::<_, i64>(0)? as u64,
                        value: r.get(1)?,
                    })
                })
                .expect("every id has a row");
            rows.insert(id, row);
        }
        rows
    }

    /// Bumps the version of each id in one transaction; returns the versions written.
    fn bump(&self, ids: &[u64], padding: usize) -> Vec<(u64, u64)> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().expect("begin");
        let mut written = Vec::with_capacity(ids.len());
        for &id in ids {
            let version: i64 = tx
                .query_row(
                    "UPDATE rows SET version = version + 1 WHERE id = ?1 RETURNING version",
                    [id as i64],
                    |r| r.get(0),
                )
                .expect("bump the version");
            let version = version as u64;
            tx.execute(
                "UPDATE rows SET value = ?2 WHERE id = ?1",
                rusqlite::params![id as i64, row_value(id, version, padding)],
            )
            .expect("write the value");
            written.push((id, version));
        }
        tx.commit().expect("commit");
        written
    }
}

async fn load(db: &Arc<Db>, ids: Vec<u64>) -> HashMap<u64, Row> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.load(&ids))
        .await
        .expect("the database read does not panic")
}

/// One read: when it started, in which process, and the version it returned for each id.
struct ReadRecord {
    start: Instant,
    process: usize,
    got: Vec<(u64, u64)>,
}

/// One completed update of one id: when its invalidation returned, in which process, and the
/// version it wrote.
struct WriteRecord {
    done: Instant,
    process: usize,
    id: u64,
    version: u64,
}

#[derive(Default)]
struct Log {
    reads: Vec<ReadRecord>,
    writes: Vec<WriteRecord>,
    batch_reads: u64,
    single_reads: u64,
    updates: u64,
    /// Reads run under a short timeout that fired: the caller was dropped mid-call.
    dropped_reads: u64,
    /// Of those, the ones dropped after their own fetch had returned: their commit (or what was
    /// left of the call) was finished by a spawned task.
    dropped_after_fetch: u64,
    /// Problems seen by the worker itself: missing ids, values that don't match their version.
    violations: Vec<String>,
    /// Calls that failed with a cache error (only allowed when the run injects faults).
    errors: u64,
}

impl Log {
    fn absorb(&mut self, other: Log) {
        self.reads.extend(other.reads);
        self.writes.extend(other.writes);
        self.batch_reads += other.batch_reads;
        self.single_reads += other.single_reads;
        self.updates += other.updates;
        self.dropped_reads += other.dropped_reads;
        self.dropped_after_fetch += other.dropped_after_fetch;
        self.violations.extend(other.violations);
        self.errors += other.errors;
    }
}

/// When a read's caller stops waiting for it.
#[derive(Clone, Copy)]
enum DropAt {
    /// Waits for the result.
    Never,
    /// This long after the call began, wherever it is.
    After(Duration),
    /// This long after its fetch returned (if it fetches): while its commit is in flight.
    AfterFetch(Duration),
}

/// One task: reads, updates and dropped reads at random on `cache`, whose connection it shares
/// with the other tasks of its "process".
async fn worker(
    cache: Cache<u64, Row>,
    process: usize,
    db: Arc<Db>,
    setup: Setup,
    until: Instant,
    seed: u64,
) -> Log {
    let Setup {
        ids,
        padding,
        faults,
        ..
    } = setup;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Log::default();
    while Instant::now() < until {
        let before = Duration::from_micros(rng.random_range(0..=5_000));
        let after = Duration::from_micros(rng.random_range(0..=5_000));
        // Set, and notified, once this read's fetch has returned its rows to the cache.
        let fetched = AtomicBool::new(false);
        let fetch_returned = Notify::new();
        let fetch = |missing: Vec<u64>| {
            let db = db.clone();
            let (fetched, fetch_returned) = (&fetched, &fetch_returned);
            async move {
                tokio::time::sleep(before).await;
                let rows = load(&db, missing).await;
                // The widest race: the rows are read, the commit has not happened yet.
                tokio::time::sleep(after).await;
                fetched.store(true, Ordering::Relaxed);
                fetch_returned.notify_one();
                Ok::<_, ruecache::Error>(rows)
            }
        };
        let roll = rng.random_range(0..100);
        if roll < 25 {
            // Update: write the database, then invalidate.
            let n = rng.random_range(1..=3);
            let mut batch: Vec<u64> = (0..n).map(|_| rng.random_range(0..ids)).collect();
            batch.sort_unstable();
            batch.dedup();
            let written = {
                let db = db.clone();
                let batch = batch.clone();
                tokio::task::spawn_blocking(move || db.bump(&batch, padding))
                    .await
                    .expect("the database write does not panic")
            };
            match cache.invalidate(batch).await {
                Ok(()) => {}
                // The server is down: it comes back empty, so nothing of the old row survives;
                // the write still counts as done for the stale-read check.
                Err(e) if faults && is_outage(&e) => log.errors += 1,
                Err(e) => panic!("invalidate failed: {e}"),
            }
            let done = Instant::now();
            log.updates += 1;
            log.writes
                .extend(written.into_iter().map(|(id, version)| WriteRecord {
                    done,
                    process,
                    id,
                    version,
                }));
        } else {
            let batch: Vec<u64> = if roll < 40 {
                vec![rng.random_range(0..ids)]
            } else {
                let n = rng.random_range(2..=8);
                (0..n).map(|_| rng.random_range(0..ids)).collect()
            };
            // Some reads are dropped when a short timer fires: half at a uniformly random point
            // of the call, half just after their fetch returns, while the commit is in flight.
            let drop_at = if rng.random_range(0..100) >= DROPPED_READS_PERCENT {
                DropAt::Never
            } else if rng.random_bool(0.5) {
                DropAt::After(Duration::from_micros(rng.random_range(0..=15_000)))
            } else {
                DropAt::AfterFetch(Duration::from_micros(rng.random_range(0..=1_000)))
            };
            if batch.len() == 1 {
                log.single_reads += 1;
            } else {
                log.batch_reads += 1;
            }
            let start = Instant::now();
            let read = async {
                if let [id] = batch[..] {
                    cache
                        .get_and_fill_one(
                            id,
                            |id| async move { Ok(fetch(vec![id]).await?.remove(&id)) },
                        )
                        .await
                        .map(|row| row.map(|row| (id, row)).into_iter().collect())
                } else {
                    cache.get_and_fill(batch.clone(), fetch).await
                }
            };
            let timer = async {
                match drop_at {
                    DropAt::Never => std::future::pending().await,
                    DropAt::After(delay) => tokio::time::sleep(delay).await,
                    DropAt::AfterFetch(delay) => {
                        fetch_returned.notified().await;
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            let got: Result<HashMap<u64, Row>, ruecache::Error> = tokio::select! {
                got = read => got,
                () = timer => {
                    // Dropped: no result to check; what its commit wrote is checked at the end,
                    // and by every later read of its ids.
                    log.dropped_reads += 1;
                    if fetched.load(Ordering::Relaxed) {
                        log.dropped_after_fetch += 1;
                    }
                    continue;
                }
            };
            let got = match got {
                Ok(got) => got,
                Err(e) if faults && is_outage(&e) => {
                    log.errors += 1;
                    continue;
                }
                Err(e) => panic!("read failed: {e}"),
            };
            let mut record = ReadRecord {
                start,
                process,
                got: Vec::with_capacity(got.len()),
            };
            for &id in &batch {
                match got.get(&id) {
                    None => log
                        .violations
                        .push(format!("read of id {id} returned nothing; the row exists")),
                    Some(row) if row.value != row_value(id, row.version, padding) => {
                        log.violations.push(format!(
                            "id {id}: value {:?} does not belong to version {}",
                            row.value.get(..40),
                            row.version
                        ))
                    }
                    Some(row) => record.got.push((id, row.version)),
                }
            }
            log.reads.push(record);
        }
    }
    log
}

/// Reads that returned a version of id X older than a write whose invalidation had completed
/// before the read started. With near caches (`near_bound`), a read in another process than the
/// write's may still do so up to `near_bound` after it (Redis's report is on its way): those are
/// counted in [`Late`], not as violations.
fn stale_reads(
    reads: &[ReadRecord],
    writes: &[WriteRecord],
    near_bound: Option<Duration>,
) -> (Vec<String>, Late) {
    let mut by_id: HashMap<u64, Vec<&WriteRecord>> = HashMap::new();
    for w in writes {
        by_id.entry(w.id).or_default().push(w);
    }
    for list in by_id.values_mut() {
        list.sort_by_key(|w| w.done);
    }
    let mut violations = Vec::new();
    let mut late = Late::default();
    for read in reads {
        for &(id, version) in &read.got {
            let Some(list) = by_id.get(&id) else { continue };
            let before = list.partition_point(|w| w.done < read.start);
            // The writes of newer versions done before the read started.
            let newer = || list[..before].iter().filter(|w| w.version > version);
            let Some(first) = newer().next() else {
                continue;
            };
            let after = read.start.duration_since(first.done);
            let own = newer().any(|w| w.process == read.process);
            match near_bound {
                Some(bound) if !own && after <= bound => {
                    late.reads += 1;
                    late.longest = late.longest.max(after);
                }
                _ => violations.push(format!(
                    "id {id}: a read started {after:?} after version {} was written and \
                     invalidated{}, and returned version {version}",
                    first.version,
                    if own { " in its own process" } else { "" },
                )),
            }
        }
    }
    (violations, late)
}

/// Reads that returned a version another process had invalidated, within the near caches'
/// bound.
#[derive(Debug, Default)]
struct Late {
    reads: u64,
    longest: Duration,
}

/// Kills the near caches' tracking connections on the server `admin` is connected to, every
/// [`TRACKER_KILL_EVERY`] until `until`; returns how many it killed.
async fn kill_trackers(admin: Connection, until: Instant) -> u64 {
    let mut killed = 0;
    while Instant::now() < until {
        tokio::time::sleep(TRACKER_KILL_EVERY).await;
        for id in trackers(&admin).await {
            let gone: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .exec_async(&mut admin.clone())
                .await;
            killed += u64::from(gone.is_ok());
        }
    }
    killed
}

/// The errors a call may fail with while the server is down: Redis's own (the connection is
/// gone or reconnecting) or the call's timeout. Anything else is a bug.
fn is_outage(e: &ruecache::Error) -> bool {
    matches!(
        e,
        ruecache::Error::Redis(_) | ruecache::Error::Timeout { .. }
    )
}

#[derive(Debug)]
enum Probe {
    NotCached,
    Cache(ruecache::Error),
}

impl From<ruecache::Error> for Probe {
    fn from(e: ruecache::Error) -> Self {
        Self::Cache(e)
    }
}

/// How long the writes that dropped callers left to spawned tasks (commits, lock releases) may
/// take to finish once the workers have stopped: each is bounded by its cache's timeout.
const QUIESCE_WITHIN: Duration = Duration::from_secs(35);

/// Waits until the commits and lock releases that dropped callers left to spawned tasks are
/// done on every worker connection ([`Connection::settle`]); returns how long that took.
async fn quiesce(caches: &[Cache<u64, Row>]) -> Duration {
    let start = Instant::now();
    let settled = async {
        for cache in caches {
            cache.connection().settle().await;
        }
    };
    tokio::time::timeout(QUIESCE_WITHIN, settled)
        .await
        .expect("the background writes end within their timeout");
    start.elapsed()
}

/// After quiescence: every cached value equals the database's row, or is absent; no lock is
/// left behind. Returns the violations and how many ids were cached.
async fn check_redis_against_db(
    conn: Connection,
    template: &str,
    db: &Arc<Db>,
    ids: u64,
) -> (Vec<String>, u64) {
    // A cache whose fetch refuses: it can only report what Redis holds.
    let probe: Cache<u64, Row> = Cache::builder(conn.clone(), template)
        .build()
        .expect("valid config");
    let truth = load(db, (0..ids).collect()).await;
    let mut violations = Vec::new();
    let mut cached = 0;
    for id in 0..ids {
        let keys = probe.keys(&id).unwrap();
        let held: Option<Vec<u8>> = cmd(&conn, "GET", &keys.data).await;
        if held.is_some_and(|v| v.starts_with(b"\xC1L") || v.starts_with(b"\xC1W")) {
            violations.push(format!("id {id}: a lease is left behind"));
        }
        match probe
            .get_and_fill_one(id, |_| async { Err::<Option<Row>, _>(Probe::NotCached) })
            .await
        {
            Ok(Some(row)) => {
                cached += 1;
                if row != truth[&id] {
                    violations.push(format!(
                        "id {id}: Redis holds version {}, the database has version {}",
                        row.version, truth[&id].version
                    ));
                }
            }
            Ok(None) => violations.push(format!(
                "id {id}: Redis says the row is absent, the database has it"
            )),
            Err(Probe::NotCached) => {}
            Err(Probe::Cache(e)) => panic!("reading Redis failed: {e}"),
        }
    }
    (violations, cached)
}

/// Runs [`TASKS_PER_CONNECTION`] workers on each of `conns` (plus one connection for the final
/// check), checks both properties and that the races happened. Returns the caches' summed
/// statistics for variant-specific checks.
async fn torture(label: &str, conns: Vec<Connection>, ns: &str, setup: Setup) -> ruecache::Stats {
    torture_with(label, conns, ns, setup, None).await
}

/// The counters of all `caches`, summed.
fn summed_stats(caches: &[Cache<u64, Row>]) -> ruecache::Stats {
    let mut stats = ruecache::Stats::default();
    for c in caches {
        let s = c.stats();
        stats.hits += s.hits;
        stats.misses += s.misses;
        stats.fetches += s.fetches;
        stats.fetched_ids += s.fetched_ids;
        stats.commits += s.commits;
        stats.stale_commits += s.stale_commits;
        stats.lost_locks += s.lost_locks;
        stats.lock_attempts += s.lock_attempts;
        stats.lock_waits += s.lock_waits;
        stats.wakeups += s.wakeups;
        stats.flight_waits += s.flight_waits;
        stats.takeovers += s.takeovers;
        stats.served_from_source += s.served_from_source;
        stats.invalidations += s.invalidations;
        stats.refreshes += s.refreshes;
        stats.stale_served += s.stale_served;
        stats.near_hits += s.near_hits;
        stats.near_misses += s.near_misses;
        stats.near_invalidations += s.near_invalidations;
    }
    stats
}

/// [`torture`], killing `server` a third of the way into the run and restarting it at two thirds.
async fn torture_with(
    label: &str,
    conns: Vec<Connection>,
    ns: &str,
    setup: Setup,
    server: Option<&mut RedisServer>,
) -> ruecache::Stats {
    assert_eq!(conns.len(), CONNECTIONS + 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rows.sqlite3");
    Db::create(&path, &setup);
    let template = format!("{ns}row:{}", "{{{id}}}");
    let run_time = run_time();
    let seed: u64 = rand::random();
    let until = Instant::now() + run_time;
    let mut conns = conns.into_iter();
    let check_conn = conns.next_back().expect("a connection for the final check");
    let mut caches = Vec::new();
    let mut workers = Vec::new();
    for conn in conns {
        // One cache per connection, shared by its tasks (clones share the counters).
        let mut builder = Cache::builder(conn, &template)
            .backoff(Duration::from_millis(1), Duration::from_millis(20))
            // With faults, calls must fail quickly while the server is down.
            .timeout(if setup.faults {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(30)
            });
        if setup.fresh {
            let db = Db::open(&path);
            // Values expire every hundred milliseconds or so, more often than they are updated: most are refreshed ahead (drawn
            // often, with a high β), the others go stale and are refilled by their readers.
            builder = builder
                .ttl(Duration::from_millis(100))
                .stale_for(Duration::from_secs(3600))
                .stale_retry(Duration::from_millis(30))
                .refresh_beta(20.0)
                .refresh_ahead(move |ids: Vec<u64>| {
                    let db = db.clone();
                    async move {
                        let nap = rand::random_range(0..4u64);
                        tokio::time::sleep(Duration::from_millis(nap)).await;
                        // One refresh in five fails: its ids are held off for the retry period,
                        // and those that expire meanwhile are served stale.
                        if rand::random_ratio(1, 5) {
                            return Err("the refresh's source failed");
                        }
                        Ok(load(&db, ids).await)
                    }
                });
        }
        if setup.near {
            // Half the ids fit: entries are evicted too.
            let near = NearCache::new(setup.ids as usize / 2).max_age(Duration::from_secs(5));
            builder = builder.near_cache(near);
        }
        let cache: Cache<u64, Row> = builder.build().expect("valid config");
        caches.push(cache.clone());
        let process = caches.len();
        for _ in 0..TASKS_PER_CONNECTION {
            workers.push(tokio::spawn(worker(
                cache.clone(),
                process,
                Db::open(&path),
                setup,
                until,
                seed.wrapping_add(workers.len() as u64),
            )));
        }
    }
    let killer = setup
        .kill_trackers
        .then(|| tokio::spawn(kill_trackers(check_conn.clone(), until)));
    let mut downtime = Duration::ZERO;
    // The counters when the restarted server first answered.
    let mut at_restart = None;
    if let Some(server) = server {
        let start = until - run_time;
        tokio::time::sleep_until((start + run_time / 3).into()).await;
        let killed = Instant::now();
        server.kill();
        tokio::time::sleep_until((start + run_time * 2 / 3).into()).await;
        server.restart();
        downtime = killed.elapsed();
        // A reconnecting connection fails the first request after the restart, then reconnects.
        for _ in 0..100 {
            let ping: redis::RedisResult<()> =
                redis::cmd("PING").exec_async(&mut check_conn.clone()).await;
            if ping.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        at_restart = Some(summed_stats(&caches));
    }
    let mut log = Log::default();
    for w in workers {
        log.absorb(w.await.expect("a worker panicked"));
    }
    let trackers_killed = match killer {
        Some(killer) => killer.await.expect("the killer does not panic"),
        None => 0,
    };
    let db = Db::open(&path);
    let (stale, late) = stale_reads(&log.reads, &log.writes, setup.near.then_some(NEAR_BOUND));
    let quiesced = quiesce(&caches).await;
    let (left, cached) = check_redis_against_db(check_conn, &template, &db, setup.ids).await;

    let stats = summed_stats(&caches);
    if let Some(at_restart) = &at_restart {
        // The server came back empty: every id read after the restart was fetched and committed.
        let commits = stats.commits - at_restart.commits;
        eprintln!("torture[{label}]: {commits} commits after the restart");
        assert!(
            commits > 0,
            "nothing was cached after the restart: {at_restart:?}, then {stats:?}"
        );
    }
    let violations = log.violations.len() + stale.len() + left.len();
    eprintln!(
        "torture[{label}]: {run_time:?}, seed {seed}, {CONNECTIONS} connections x \
         {TASKS_PER_CONNECTION} tasks, {} ids: {} batch reads + {} single reads ({} checked, \
         {} id reads), {} dropped reads ({} after their fetch returned), {} updates ({} ids); \
         {} hits, {} misses, {} fetches, {} commits, {} stale commits refused, {} lost locks, \
         {} flight waits, {} lock waits ({} woken), {} takeovers, {} refreshes, {} stale values \
         served; quiesced in {quiesced:?}, \
         {cached}/{} ids cached at the end; {} failed calls (server down {downtime:?}); \
         violations: {} in reads, {} stale reads, {} in Redis",
        setup.ids,
        log.batch_reads,
        log.single_reads,
        log.reads.len(),
        log.reads.iter().map(|r| r.got.len()).sum::<usize>(),
        log.dropped_reads,
        log.dropped_after_fetch,
        log.updates,
        log.writes.len(),
        stats.hits,
        stats.misses,
        stats.fetches,
        stats.commits,
        stats.stale_commits,
        stats.lost_locks,
        stats.flight_waits,
        stats.lock_waits,
        stats.wakeups,
        stats.takeovers,
        stats.refreshes,
        stats.stale_served,
        setup.ids,
        log.errors,
        log.violations.len(),
        stale.len(),
        left.len(),
    );
    if setup.near {
        eprintln!(
            "torture[{label}]: near caches: {} hits, {} misses, {} entries dropped; {} reads \
             returned a version another process had invalidated, up to {:?} after (bound \
             {NEAR_BOUND:?}); tracking connections killed {trackers_killed} times",
            stats.near_hits, stats.near_misses, stats.near_invalidations, late.reads, late.longest,
        );
        assert!(stats.near_hits > 0, "no id was answered from a near cache");
        assert!(
            stats.near_invalidations > 0,
            "no near-cache entry was dropped by a report"
        );
    }
    if setup.kill_trackers {
        assert!(trackers_killed > 0, "no tracking connection was killed");
    }
    for v in log.violations.iter().chain(&stale).chain(&left).take(20) {
        eprintln!("torture[{label}]: VIOLATION {v}");
    }
    assert_eq!(violations, 0, "consistency violations (first ones printed)");
    assert_eq!(
        log.errors > 0,
        setup.faults,
        "calls fail exactly when the run injects faults"
    );
    assert!(
        log.updates > 0 && log.batch_reads > 0 && log.single_reads > 0 && stats.fetches > 0,
        "the run exercised reads, fills and updates"
    );
    // The races the test is for happened.
    assert!(
        stats.stale_commits > 0,
        "no commit was refused as stale: no invalidation raced a fetch"
    );
    assert!(
        stats.flight_waits > 0,
        "no task followed another's fill on its connection: single-flight was not exercised"
    );
    assert!(
        log.dropped_after_fetch > 0,
        "no read was dropped after its fetch returned: no commit was left to a spawned task"
    );
    stats
}

async fn readers_never_see_invalidated_versions_and_redis_matches_db(t: Target) {
    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        conns.push(t.connect().await);
    }
    let label = if t.is_cluster() {
        "cluster"
    } else {
        "standalone"
    };
    torture(label, conns, &t.ns(), PLAIN).await;
}

both!(readers_never_see_invalidated_versions_and_redis_matches_db);

/// The torture with a near cache in every worker process: hot ids are answered from memory,
/// and dropped when Redis reports their change. A read never returns a version its own process
/// invalidated before it started, nor one another process invalidated longer than
/// [`NEAR_BOUND`] before; Redis matches the database at the end.
async fn near_caches_never_serve_past_the_report(t: Target) {
    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        conns.push(t.connect().await);
    }
    let label = if t.is_cluster() {
        "near, cluster"
    } else {
        "near, standalone"
    };
    let setup = Setup {
        near: true,
        ..PLAIN
    };
    torture(label, conns, &t.ns(), setup).await;
}

both!(near_caches_never_serve_past_the_report);

/// Near caches whose tracking connections are killed over and over: each time everything held
/// is dropped, nothing is served until tracking is back, and the bounds still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_caches_whose_tracking_connections_keep_dropping() {
    let server = start_standalone_with(&[]);
    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        conns.push(server.connect().await);
    }
    let setup = Setup {
        near: true,
        kill_trackers: true,
        ..PLAIN
    };
    torture("near, trackers killed", conns, "", setup).await;
}

/// The torture with values that expire during the run: refreshed ahead of their expiry in the
/// background (under refresh leases), and past it served stale while their refill is under way.
/// An invalidation still wins over both: no read after it returns an older version, and Redis
/// matches the database at the end.
async fn refreshes_and_stale_values_never_outlive_an_invalidation(t: Target) {
    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        conns.push(t.connect().await);
    }
    let label = if t.is_cluster() {
        "fresh, cluster"
    } else {
        "fresh, standalone"
    };
    let setup = Setup {
        fresh: true,
        ..PLAIN
    };
    let stats = torture(label, conns, &t.ns(), setup).await;
    assert!(
        stats.refreshes > 0,
        "no value was refreshed ahead of its expiry"
    );
    assert!(stats.stale_served > 0, "no stale value was served");
}

both!(refreshes_and_stale_values_never_outlive_an_invalidation);

/// Counts the keys Redis evicts, from keyspace notifications: data keys (values and leases
/// alike: the notification names the key only), connections' liveness keys (whose eviction makes
/// their holders look dead: their leases are taken over), and any other key.
#[derive(Default)]
struct Evictions {
    data: AtomicU64,
    liveness: AtomicU64,
    other: AtomicU64,
}

/// The same torture on a server so small that it keeps evicting keys, leases of fills in flight
/// included: a fill whose lease was evicted must not commit (the eviction may hide an
/// invalidation). A refused commit here may also come from an invalidation, so the race itself
/// is forced, and its refusal checked, in `a_lease_evicted_mid_fill_refuses_its_commit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_with_eviction_of_leases_mid_fill() {
    let server = start_standalone_with(&[
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "allkeys-random",
        "--notify-keyspace-events",
        "Ee",
    ]);
    let evictions = Arc::new(Evictions::default());
    let mut pubsub = redis::Client::open(server.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .expect("a pub/sub connection");
    pubsub
        .subscribe("__keyevent@0__:evicted")
        .await
        .expect("subscribe to evictions");
    let counter = evictions.clone();
    let listener = tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let key: Vec<u8> = msg.get_payload().unwrap_or_default();
            // The run's data keys are `row:{<id>}` (its namespace is empty).
            if key.starts_with(b"row:{") {
                &counter.data
            } else if key.starts_with(b"ruecache:live:") {
                &counter.liveness
            } else {
                &counter.other
            }
            .fetch_add(1, Ordering::Relaxed);
        }
    });

    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        conns.push(server.connect().await);
    }
    let info_conn = conns[0].clone();
    let stats = torture(
        "evicting standalone",
        conns,
        "",
        Setup {
            ids: 256,
            padding: 8 * 1024,
            ..PLAIN
        },
    )
    .await;
    let info: String = cmd(&info_conn, "INFO", "stats").await;
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has evicted_keys");
    listener.abort();
    let (data, liveness, other) = (
        evictions.data.load(Ordering::Relaxed),
        evictions.liveness.load(Ordering::Relaxed),
        evictions.other.load(Ordering::Relaxed),
    );
    eprintln!(
        "torture[evicting standalone]: evicted_keys {evicted} (notified: {data} data keys, \
         {liveness} liveness keys, {other} others); {} stale commits refused (an invalidation \
         or an evicted lease), {} lost leases, {} takeovers",
        stats.stale_commits, stats.lost_locks, stats.takeovers
    );
    assert!(evicted > 0, "the server evicted keys");
    assert!(
        data > 0,
        "data keys (values and leases) were evicted during the run"
    );
    assert!(stats.stale_commits > 0, "no commit was refused");
}

/// The race the eviction variant is there for, forced: a fill's lease is evicted while its fetch
/// runs (`maxmemory` lowered under what the server uses, `volatile-ttl`: the lease is the only
/// key with a TTL, a connection without liveness keeping its own key out), and its commit is
/// refused (counted as a stale commit): an eviction may hide an invalidation, so a fill that lost
/// its lease never writes. The caller still gets the value it fetched.
#[tokio::test]
async fn a_lease_evicted_mid_fill_refuses_its_commit() {
    let server = start_standalone_with(&["--maxmemory-policy", "volatile-ttl"]);
    let conn = server.connect().await.liveness_window(None).unwrap();
    let admin = server.connect().await;
    let cache = support::cache(conn, "evicted:");
    let key = cache.data_key(&1).unwrap();
    let mut gate = support::Gate::default();
    let (fill, release) = support::paused_fill(&cache, vec![1], &mut gate).await;
    assert!(
        support::leased(&admin, &key).await,
        "the fetch holds the lease"
    );

    // Lowering `maxmemory` under the memory in use evicts at once what the policy allows.
    cmd::<()>(&admin, "CONFIG", ("SET", "maxmemory", "1")).await;
    let info: String = cmd(&admin, "INFO", "stats").await;
    cmd::<()>(&admin, "CONFIG", ("SET", "maxmemory", "0")).await;
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has evicted_keys");
    assert_eq!(evicted, 1, "the lease, and nothing else, was evicted");
    assert!(!support::exists(&admin, &key).await, "the lease is gone");

    release.send(()).unwrap();
    let got = fill.await.unwrap();
    assert_eq!(got, HashMap::from([(1, support::value(1))]));
    let stats = cache.stats();
    assert_eq!(
        (stats.commits, stats.stale_commits, stats.lost_locks),
        (0, 1, 0),
        "the commit found no lease: refused as stale"
    );
    assert!(
        !support::exists(&admin, &key).await,
        "nothing was written over the evicted lease"
    );
}

/// The same torture while the server is killed a third of the way into the run and restarted
/// (empty) at two thirds, on reconnecting connections: calls fail with typed errors while it is
/// down (a Redis error or the call's timeout, nothing else) and work again after, and still no
/// stale value is read or left in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_with_the_server_killed_and_restarted() {
    let mut server = start_standalone_with(&[]);
    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        conns.push(server.connection_manager().await);
    }
    let stats = torture_with(
        "killed and restarted",
        conns,
        "",
        Setup {
            faults: true,
            ..PLAIN
        },
        Some(&mut server),
    )
    .await;
    assert!(stats.commits > 0);
}

/// [`torture_with_the_server_killed_and_restarted`] with a near cache in every worker process:
/// the killed server takes the tracking connections with it, so everything held is dropped,
/// nothing is served until the restarted server tracks again, and the bounds still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_caches_with_the_server_killed_and_restarted() {
    let mut server = start_standalone_with(&[]);
    let mut conns = Vec::new();
    for _ in 0..=CONNECTIONS {
        // A reconnecting connection, told where its server is (the near cache tracks it).
        let client = redis::Client::open(server.url()).unwrap();
        let manager = client.get_connection_manager().await.unwrap();
        conns.push(Connection::from(manager).wake_ups(&client));
    }
    let stats = torture_with(
        "near, killed and restarted",
        conns,
        "",
        Setup {
            faults: true,
            near: true,
            ..PLAIN
        },
        Some(&mut server),
    )
    .await;
    assert!(stats.commits > 0);
}
