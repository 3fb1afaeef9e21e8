//! `get_and_fill` beside Redis itself: the Go original's `BenchmarkCache_GetAndFill` rows (Hit and
//! Miss at p = 1..512) plus the raw `GET` / `MGET` rows they are measured against, taken in the
//! same run through the same kind of connection.
//!
//! ```text
//! cargo bench -p ruecache-bench                    # the full run (about a minute)
//! cargo bench -p ruecache-bench -- --quick         # every row briefly (CI smoke run)
//! cargo bench -p ruecache-bench -- hit/p=512 raw/p=512   # only these rows
//! cargo bench -p ruecache-bench -- miss p=8          # every p of a case, every case of a p
//! cargo bench -p ruecache-bench -- --ops 20000 hit/p=1   # fixed op count, one round (profiling)
//! ```
//!
//! Row names are `raw`, `hit`, `hit-one`, `hit-attr`, `miss`, `raw-miss` (p = 1, 8, 32, 128, 512) and
//! `raw-mget`, `batch-hit`, `batch-miss` (p = 32). `--ops` also skips the allocation table; `--workers N`
//! sets the number of tokio worker threads (one worker makes callgrind counts repeatable).
//!
//! `RUECACHE_BENCH_QUICK=1` is the same as `--quick`. A private `redis-server` is started unless
//! `REDIS_URL` is set; on a private server the database is flushed before each miss run so the
//! rows do not slow each other down (on `REDIS_URL` nothing is ever deleted: bench keys expire
//! after a minute).
//!
//! Every case runs p tasks on a multi-thread tokio runtime (one worker per core), released
//! together by a barrier; each does the same number of operations. ns/op is wall time / total
//! operations, as Go reports it. Each case is calibrated to a target time, then run for several
//! rounds interleaved with the other cases of its group (each round starting with another case);
//! the table shows the median round. "Redis CPU ns/op" is the server's CPU time (`INFO cpu`, user
//! + system) during the round divided by its operations: what Redis itself spent per operation.
//!
//! Values are 64 random bytes stored with the [`Raw`] codec (`Vec<u8>`), ids are 36-byte
//! uuid-like strings, the key template is `bench:{id}`.

mod alloc;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ruecache::{Cache, Connection, Raw};
use tokio::sync::Barrier;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const PARALLELISM: [usize; 5] = [1, 8, 32, 128, 512];
const BATCH_P: usize = 32;
const BATCH: usize = 100;
const VALUE_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// `GET` of the hit key through a connection clone owned by the task.
    RawGet,
    /// `get_and_fill([id])` of an id that is cached, into a `HashMap` (the Go benchmark).
    Hit,
    /// `get_and_fill_one(id)` of an id that is cached.
    HitOne,
    /// A `#[cached_batch]` method called with the cached id (the same keys as `Hit`).
    HitAttr,
    /// `get_and_fill([new id])`; the fetch returns a 64-byte value at once.
    Miss,
    /// The commands of a miss sent raw, with no cache logic: a `GET`, the lock step's four
    /// commands in one round trip, and the cheapest write there is (`SET` and `DEL`, where the
    /// cache runs its conditional commit script).
    RawMiss,
    /// `MGET` of the 100 batch keys.
    RawMget,
    /// `get_and_fill` of the 100 cached batch ids.
    BatchHit,
    /// `get_and_fill` of 100 new ids.
    BatchMiss,
}

/// The cases run at every p in [`PARALLELISM`], in table order.
const SINGLE_CASES: [Case; 6] = [
    Case::RawGet,
    Case::Hit,
    Case::HitOne,
    Case::HitAttr,
    Case::Miss,
    Case::RawMiss,
];

/// The cases run at [`BATCH_P`], in table order.
const BATCH_CASES: [Case; 3] = [Case::RawMget, Case::BatchHit, Case::BatchMiss];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::RawGet => "raw GET",
            Case::Hit => "Hit",
            Case::HitOne => "Hit (get_and_fill_one)",
            Case::HitAttr => "Hit (#[cached_batch])",
            Case::Miss => "Miss",
            Case::RawMiss => "raw miss commands",
            Case::RawMget => "raw MGET x100",
            Case::BatchHit => "Batch hit x100",
            Case::BatchMiss => "Batch miss x100",
        }
    }

    /// The name used by the command-line filter.
    fn slug(self) -> &'static str {
        match self {
            Case::RawGet => "raw",
            Case::Hit => "hit",
            Case::HitOne => "hit-one",
            Case::HitAttr => "hit-attr",
            Case::Miss => "miss",
            Case::RawMiss => "raw-miss",
            Case::RawMget => "raw-mget",
            Case::BatchHit => "batch-hit",
            Case::BatchMiss => "batch-miss",
        }
    }

    /// The row this case is compared with.
    fn floor(self) -> Case {
        match self {
            Case::RawGet
            | Case::Hit
            | Case::HitOne
            | Case::HitAttr
            | Case::Miss
            | Case::RawMiss => Case::RawGet,
            Case::RawMget | Case::BatchHit | Case::BatchMiss => Case::RawMget,
        }
    }

    fn fills(self) -> bool {
        matches!(self, Case::Miss | Case::RawMiss | Case::BatchMiss)
    }

    fn hits(self) -> bool {
        matches!(
            self,
            Case::Hit | Case::HitOne | Case::HitAttr | Case::BatchHit
        )
    }
}

struct Config {
    quick: bool,
    rounds: usize,
    /// Wall time one round of one case aims for.
    target: Duration,
    /// A fixed number of operations per task instead of calibrating (one round).
    ops: Option<u64>,
    /// Tokio worker threads (default: one per core).
    workers: Option<usize>,
    /// Row patterns from the command line: `case/p=N`, `case` or `p=N`; none means all rows.
    filter: Vec<String>,
    /// Operations measured per case for the allocation table; 0 skips it.
    alloc_ops: u64,
}

impl Config {
    fn from_args() -> Self {
        let mut quick =
            std::env::var("RUECACHE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut ops = None;
        let mut workers = None;
        let mut filter = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--ops" => {
                    let n = args.next().and_then(|n| n.parse().ok());
                    ops = Some(n.expect("--ops takes a number of operations per task"));
                }
                "--workers" => {
                    let n = args.next().and_then(|n| n.parse().ok());
                    workers = Some(n.expect("--workers takes a number of threads"));
                }
                // Passed by `cargo bench` to every bench binary.
                "--bench" => {}
                other if other.starts_with("--") => {
                    eprintln!("ignoring unknown option {other}");
                }
                other => filter.push(other.to_owned()),
            }
        }
        Self {
            quick,
            rounds: if quick || ops.is_some() { 1 } else { 5 },
            target: if quick {
                Duration::from_millis(20)
            } else {
                Duration::from_millis(400)
            },
            ops,
            workers,
            filter,
            alloc_ops: match (ops, quick) {
                (Some(_), _) => 0,
                (None, true) => 200,
                (None, false) => 5_000,
            },
        }
    }

    fn wants(&self, case: Case, p: usize) -> bool {
        let parallelism = format!("p={p}");
        let name = format!("{}/{parallelism}", case.slug());
        self.filter.is_empty()
            || self
                .filter
                .iter()
                .any(|f| *f == name || f == case.slug() || *f == parallelism)
    }
}

/// A service whose method is cached with the attribute, on the same keys as the bench cache.
struct Service {
    conn: Connection,
    value: Vec<u8>,
}

impl ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &Connection {
        &self.conn
    }
}

impl Service {
    #[ruecache::cached_batch(key = "bench:{id}", ttl = "1m", codec = ruecache::Raw)]
    async fn values(&self, ids: Vec<String>) -> Result<HashMap<String, Vec<u8>>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, self.value.clone())).collect())
    }
}

/// What every task shares.
struct Setup {
    conn: Connection,
    cache: Cache<String, Vec<u8>, Raw>,
    service: Service,
    value: Vec<u8>,
    hit_id: String,
    hit_key: String,
    batch_ids: Vec<String>,
    batch_keys: Vec<String>,
    /// The server is ours: it may be flushed.
    private: bool,
}

impl Setup {
    /// Caches the hit id and the batch ids (again, after a flush).
    async fn seed(&self) {
        let mut ids = self.batch_ids.clone();
        ids.push(self.hit_id.clone());
        let got: HashMap<String, Vec<u8>> = self
            .cache
            .get_and_fill(ids, |ids| self.fetch(ids))
            .await
            .expect("seeding the cache");
        assert_eq!(got.len(), BATCH + 1);
    }

    /// The source: every id exists and its value is ready at once.
    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<(String, Vec<u8>)>, ruecache::Error> {
        Ok(ids.into_iter().map(|id| (id, self.value.clone())).collect())
    }

    async fn flush(&self) {
        if self.private {
            let mut conn = self.conn.clone();
            redis::cmd("FLUSHDB")
                .exec_async(&mut conn)
                .await
                .expect("FLUSHDB");
            self.seed().await;
        }
    }
}

/// One operation of `case`; `conn` is the task's own connection handle (for the raw rows).
async fn op(s: &Setup, conn: &mut Connection, case: Case) {
    match case {
        Case::RawGet => {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&s.hit_key)
                .query_async(conn)
                .await
                .expect("GET");
            assert!(v.is_some_and(|v| v.len() > VALUE_LEN));
        }
        Case::Hit => {
            let got: HashMap<String, Vec<u8>> = s
                .cache
                .get_and_fill([s.hit_id.clone()], |ids| s.fetch(ids))
                .await
                .expect("hit");
            assert_eq!(got.len(), 1);
        }
        Case::HitOne => {
            let got = s
                .cache
                .get_and_fill_one(s.hit_id.clone(), |_| async {
                    Ok::<_, ruecache::Error>(Some(s.value.clone()))
                })
                .await
                .expect("hit");
            assert!(got.is_some());
        }
        Case::HitAttr => {
            let got = s.service.values(vec![s.hit_id.clone()]).await.expect("hit");
            assert_eq!(got.len(), 1);
        }
        Case::Miss => {
            let got: HashMap<String, Vec<u8>> = s
                .cache
                .get_and_fill([uuid_like()], |ids| s.fetch(ids))
                .await
                .expect("miss");
            assert_eq!(got.len(), 1);
        }
        Case::RawMiss => {
            // The miss's commands with no cache logic: the read, the lease step, and an
            // unconditional write where the cache's commit is a compare-and-set script.
            let id = uuid_like();
            let data = format!("bench:{id}");
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&data)
                .query_async(conn)
                .await
                .expect("GET");
            assert!(v.is_none());
            let lease = uuid_like();
            let was: Option<Vec<u8>> = redis::cmd("SET")
                .arg(&data)
                .arg(&lease)
                .arg("NX")
                .arg("PX")
                .arg(5_000)
                .arg("GET")
                .query_async(conn)
                .await
                .expect("lease step");
            assert!(was.is_none());
            redis::cmd("SET")
                .arg(&data)
                .arg(&s.value)
                .arg("PX")
                .arg(60_000)
                .exec_async(conn)
                .await
                .expect("write");
        }
        Case::RawMget => {
            let v: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&s.batch_keys)
                .query_async(conn)
                .await
                .expect("MGET");
            assert!(v.len() == BATCH && v.iter().all(Option::is_some));
        }
        Case::BatchHit => {
            let got: HashMap<String, Vec<u8>> = s
                .cache
                .get_and_fill(s.batch_ids.clone(), |ids| s.fetch(ids))
                .await
                .expect("batch hit");
            assert_eq!(got.len(), BATCH);
        }
        Case::BatchMiss => {
            let ids: Vec<String> = (0..BATCH).map(|_| uuid_like()).collect();
            let got: HashMap<String, Vec<u8>> = s
                .cache
                .get_and_fill(ids, |ids| s.fetch(ids))
                .await
                .expect("batch miss");
            assert_eq!(got.len(), BATCH);
        }
    }
}

/// What one run took: wall time, and the Redis server's CPU time (user + system) meanwhile.
#[derive(Debug, Clone, Copy)]
struct Took {
    wall: Duration,
    server: Duration,
}

/// Runs `p` tasks doing `per_task` operations each, released together.
async fn run(s: &Arc<Setup>, case: Case, p: usize, per_task: u64) -> Took {
    if case.fills() {
        s.flush().await;
    }
    let before = s.cache.stats();
    let barrier = Arc::new(Barrier::new(p + 1));
    let tasks: Vec<_> = (0..p)
        .map(|_| {
            let s = Arc::clone(s);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let mut conn = s.conn.clone();
                barrier.wait().await;
                for _ in 0..per_task {
                    op(&s, &mut conn, case).await;
                }
            })
        })
        .collect();
    let server_before = server_cpu(&s.conn).await;
    barrier.wait().await;
    let start = Instant::now();
    for task in tasks {
        task.await.expect("a bench task panicked");
    }
    let elapsed = start.elapsed();
    let server = server_cpu(&s.conn).await.saturating_sub(server_before);
    if case.hits() {
        let after = s.cache.stats();
        assert_eq!(
            after.misses,
            before.misses,
            "{} rows must only hit",
            case.name()
        );
    }
    Took {
        wall: elapsed,
        server,
    }
}

/// The server's CPU time so far (`INFO cpu`: user + system, main thread and others).
async fn server_cpu(conn: &Connection) -> Duration {
    let mut conn = conn.clone();
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await
        .expect("INFO cpu");
    let seconds: f64 = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(seconds)
}

struct Row {
    case: Case,
    p: usize,
    /// Wall ns per operation of each round.
    rounds: Vec<f64>,
    /// Redis server CPU ns per operation of each round.
    server: Vec<f64>,
}

impl Row {
    fn ns_per_op(&self) -> f64 {
        median(&self.rounds)
    }

    fn server_ns_per_op(&self) -> f64 {
        median(&self.server)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures a group of cases at one parallelism, rounds interleaved, so drift in the machine's
/// load hits the raw row and the cache rows alike.
async fn group(s: &Arc<Setup>, cfg: &Config, p: usize, cases: &[Case]) -> Vec<Row> {
    let cases: Vec<Case> = cases.iter().copied().filter(|&c| cfg.wants(c, p)).collect();
    let mut per_task = Vec::new();
    for &case in &cases {
        let n = match cfg.ops {
            Some(n) => n,
            None => {
                // Probes double as the warm-up: double the operations until a run takes an
                // eighth of the target, then scale up to the target.
                let mut probe = 1;
                loop {
                    let took = run(s, case, p, probe).await.wall;
                    if took >= cfg.target / 8 || probe >= 1 << 20 {
                        let scale = cfg.target.as_secs_f64() / took.as_secs_f64().max(1e-9);
                        break ((probe as f64 * scale).ceil() as u64).max(1);
                    }
                    probe *= 2;
                }
            }
        };
        per_task.push(n);
    }
    let mut rows: Vec<Row> = cases
        .iter()
        .map(|&case| Row {
            case,
            p,
            rounds: Vec::new(),
            server: Vec::new(),
        })
        .collect();
    for round in 0..cfg.rounds {
        // Each round starts with another case, so no case always follows the same one.
        for i in 0..rows.len() {
            let i = (i + round) % rows.len();
            let (row, n) = (&mut rows[i], per_task[i]);
            let took = run(s, row.case, p, n).await;
            let ops = (n * p as u64) as f64;
            row.rounds.push(took.wall.as_nanos() as f64 / ops);
            row.server.push(took.server.as_nanos() as f64 / ops);
            eprint!(".");
        }
    }
    rows
}

/// Allocations per operation of one task doing `case` repeatedly, whole process included.
async fn allocations(s: &Arc<Setup>, case: Case, ops: u64) -> (f64, f64) {
    let mut conn = s.conn.clone();
    for _ in 0..ops / 10 + 1 {
        op(s, &mut conn, case).await;
    }
    let (count, bytes) = alloc::measure(async {
        for _ in 0..ops {
            op(s, &mut conn, case).await;
        }
    })
    .await;
    (count as f64 / ops as f64, bytes as f64 / ops as f64)
}

fn uuid_like() -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn main() {
    let cfg = Config::from_args();
    let (_server, url, private) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => (None, url, false),
        _ => {
            let server = ruecache_tests::start_standalone_with(&[]);
            let url = server.url();
            (Some(server), url, true)
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.workers {
        runtime.worker_threads(n);
    }
    let runtime = runtime.enable_all().build().expect("a tokio runtime");
    let report = runtime.block_on(bench(&cfg, &url, private));
    println!("{report}");
}

async fn bench(cfg: &Config, url: &str, private: bool) -> String {
    let started = Instant::now();
    let load_before = load_average();
    let conn = Connection::open(url).await.expect("connecting to Redis");
    let cache = Cache::builder(conn.clone(), "bench:{id}")
        .codec(Raw)
        .ttl(Duration::from_secs(60))
        .build()
        .expect("bench cache");
    cache.preload_scripts().await.expect("SCRIPT LOAD");
    let value: Vec<u8> = (0..VALUE_LEN).map(|_| rand::random()).collect();
    let hit_id = uuid_like();
    let batch_ids: Vec<String> = (0..BATCH).map(|_| uuid_like()).collect();
    let setup = Arc::new(Setup {
        hit_key: cache.data_key(&hit_id).expect("key"),
        batch_keys: batch_ids
            .iter()
            .map(|id| cache.data_key(id).expect("key"))
            .collect(),
        service: Service {
            conn: conn.clone(),
            value: value.clone(),
        },
        conn,
        cache,
        value,
        hit_id,
        batch_ids,
        private,
    });
    setup.seed().await;

    let mut rows = Vec::new();
    for p in PARALLELISM {
        eprint!("p={p} ");
        rows.extend(group(&setup, cfg, p, &SINGLE_CASES).await);
        eprintln!();
    }
    eprint!("batch p={BATCH_P} ");
    rows.extend(group(&setup, cfg, BATCH_P, &BATCH_CASES).await);
    eprintln!();

    let mut allocs = Vec::new();
    for case in SINGLE_CASES.into_iter().chain(BATCH_CASES) {
        if cfg.alloc_ops > 0 && (cfg.wants(case, 1) || cfg.wants(case, BATCH_P)) {
            // A batch does 100 ids per operation.
            let ops = match case.floor() {
                Case::RawMget => (cfg.alloc_ops / 10).max(1),
                _ => cfg.alloc_ops,
            };
            allocs.push((case, allocations(&setup, case, ops).await));
        }
    }

    let mut out = String::new();
    let redis_version = server_version(&setup.conn).await;
    let _ = writeln!(
        out,
        "ruecache get_and_fill vs raw Redis ({} run, {} rounds, median shown); Redis {redis_version} \
         ({}), {} tokio workers; load average {load_before} before, {} after; took {:.0?}\n",
        if cfg.quick { "quick" } else { "full" },
        cfg.rounds,
        if private { "private redis-server" } else { "REDIS_URL" },
        cfg.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(0, |n| n.get())),
        load_average(),
        started.elapsed(),
    );
    let _ = writeln!(
        out,
        "| case | p | ns/op | ops/s | vs raw | Redis CPU ns/op |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        let ns = row.ns_per_op();
        let floor = rows
            .iter()
            .find(|r| r.case == row.case.floor() && r.p == row.p)
            .map(Row::ns_per_op);
        let ratio = floor.map_or("-".to_owned(), |f| format!("{:.2}x", ns / f));
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {ratio} | {:.0} |",
            row.case.name(),
            row.p,
            ns,
            1e9 / ns,
            row.server_ns_per_op(),
        );
    }
    if !allocs.is_empty() {
        let _ = writeln!(
            out,
            "\nHeap allocations per operation, one task, whole process (driver task included):\n"
        );
        let _ = writeln!(out, "| case | allocs/op | bytes/op |");
        let _ = writeln!(out, "|---|---:|---:|");
        for (case, (count, bytes)) in allocs {
            let _ = writeln!(out, "| {} | {count:.1} | {bytes:.0} |", case.name());
        }
    }
    out
}

async fn server_version(conn: &Connection) -> String {
    let mut conn = conn.clone();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
