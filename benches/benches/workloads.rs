//! ruecache on traffic that looks like production, beside what a user would otherwise write, in
//! the same run on the same private `redis-server`:
//!
//! - **Hits on distinct ids**: 100,000 cached ids, each call reads one, chosen uniformly or by
//!   Zipf(1.0) popularity, through `get_and_fill_one`, beside a raw `GET` of the same keys in the
//!   same order.
//! - **Mixed workload, cold start**: Zipf(1.0) over 1,000,000 ids, 0.5 % of calls are updates (a
//!   1 ms database write, then `invalidate` / `DEL`), a miss's fetch takes 1 ms; ruecache beside a
//!   hand-written cache-aside (`GET`; on a miss fetch and `SET ... PX`; on an update `DEL`).
//!   Reported: ns/op, fetches per 1,000 calls, p50 and p99 latency per call.
//! - **Expiring values, refresh-ahead or not**: Zipf(1.0) over 1,000 ids cached with a 250 ms TTL
//!   (every id is read several times per TTL, and expires many times per round), from a warm
//!   start, 0.5 % updates, a 1 ms fetch; ruecache without refresh-ahead, and with it at β = 1
//!   and β = 10. Reported: ns/op, fetches and calls that waited for a fetch per 1,000 calls, p50,
//!   p99 and p99.9 latency per call.
//! - **Redis memory per cached id** (`INFO memory`), for ruecache, for cache-aside, and for what
//!   the previous protocol kept per id (a data key and a version key, written raw).
//! - **The near cache** (hot ids in process memory): a hit on a hot id it holds beside a raw
//!   `GET` of the same keys, at p = 1 and p = 512; Zipf(1.0) reads over 100,000 cached ids with a
//!   10,000-entry near cache beside the same cache without one, at p = 32 and p = 512 (with the
//!   share of ids the near cache answered); the process's heap per entry it holds; and what
//!   decoding a held value costs on each hit, beside cloning a decoded one.
//!
//! ```text
//! cargo bench -p ruecache-bench --bench workloads            # the full run (about a minute)
//! cargo bench -p ruecache-bench --bench workloads -- --quick # every row briefly
//! cargo bench -p ruecache-bench --bench workloads -- mixed   # only these tables: hits, mixed, expiring, memory, near
//! ```
//!
//! `RUECACHE_BENCH_QUICK=1` is the same as `--quick`. Each row runs p tasks on a multi-thread
//! tokio runtime, released together by a barrier; ns/op is wall time / operations; rows of a
//! group are interleaved over rounds (each starting with another side), and the median round is
//! shown. The server is always a private one: the mixed workload flushes it for its cold start.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use ruecache::{Cache, Codec, Connection, MsgPack, NearCache, Raw};
use tokio::sync::Barrier;

const VALUE_LEN: usize = 64;
const TTL: Duration = Duration::from_secs(600);
/// The simulated database: a read (a miss's fetch) and a write (an update) each take this long.
const DB_LATENCY: Duration = Duration::from_millis(1);
const UPDATE_RATIO: f64 = 0.005;

/// Counts the bytes live on the heap while switched on (see [`heap_growth`]); switched off, it
/// only hands every call to the system allocator, so the timed rows pay one relaxed load per
/// allocation.
struct LiveBytes;

#[global_allocator]
static ALLOC: LiveBytes = LiveBytes;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);

fn count(bytes: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting has no effect on memory.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// How much the whole process's heap grew while `f` ran: bytes asked of the allocator less
/// bytes given back (the allocator's own headers and rounding not included).
async fn heap_growth(f: impl std::future::Future<Output = ()>) -> i64 {
    let before = LIVE.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    f.await;
    COUNTING.store(false, Ordering::Relaxed);
    LIVE.load(Ordering::Relaxed) - before
}

struct Config {
    quick: bool,
    /// The tables asked for (`hits`, `mixed`, `expiring`, `memory`, `near`); empty for all.
    only: Vec<String>,
    rounds: usize,
    /// Ids cached for the hit rows, and the mixed workload's id space.
    hit_ids: usize,
    mixed_ids: usize,
    hit_ops: usize,
    mixed_ops: usize,
    /// The expiring workload's id space and calls per round.
    expiring_ids: usize,
    expiring_ops: usize,
    memory_ids: usize,
    /// The near cache's entries in the near table: its Zipf rows read `hit_ids` ids, its hit
    /// rows a tenth of `near_entries` (all held).
    near_entries: usize,
    /// Calls per round of a near-cache hit row (the raw `GET` rows beside them make `hit_ops`
    /// calls at p = 512, a tenth of that at p = 1: they are 10 to 1,000 times slower).
    near_hit_ops: usize,
}

impl Config {
    fn wants(&self, table: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|t| t == table)
    }

    fn from_args() -> Self {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var_os("RUECACHE_BENCH_QUICK").is_some_and(|v| v == "1");
        let only = std::env::args()
            .skip(1)
            .filter(|a| ["hits", "mixed", "expiring", "memory", "near"].contains(&a.as_str()))
            .collect();
        if quick {
            Self {
                quick,
                only,
                rounds: 1,
                hit_ids: 10_000,
                mixed_ids: 100_000,
                hit_ops: 5_000,
                mixed_ops: 5_000,
                expiring_ids: 500,
                expiring_ops: 5_000,
                memory_ids: 1_000,
                near_entries: 1_000,
                near_hit_ops: 50_000,
            }
        } else {
            Self {
                quick,
                only,
                rounds: 3,
                hit_ids: 100_000,
                mixed_ids: 1_000_000,
                hit_ops: 200_000,
                mixed_ops: 100_000,
                expiring_ids: 1_000,
                expiring_ops: 300_000,
                memory_ids: 10_000,
                near_entries: 10_000,
                near_hit_ops: 2_000_000,
            }
        }
    }
}

/// Zipf(s) over `0..n` by inverse transform on the cumulative weights.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut impl rand::Rng) -> u64 {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

#[derive(Clone, Copy)]
enum Pick {
    Uniform,
    Zipf,
}

/// The ids each task reads, drawn before the clock starts.
fn draws(pick: Pick, zipf: &Zipf, n: usize, p: usize, per_task: usize) -> Vec<Vec<u64>> {
    let mut rng = rand::rng();
    (0..p)
        .map(|_| {
            (0..per_task)
                .map(|_| match pick {
                    Pick::Uniform => rng.random_range(0..n as u64),
                    Pick::Zipf => zipf.sample(&mut rng),
                })
                .collect()
        })
        .collect()
}

type BenchCache = Cache<u64, Vec<u8>, Raw>;

fn cache(conn: &Connection, name: &'static str) -> BenchCache {
    cache_with(conn, name, None)
}

/// The bench cache, with a near cache if `near` is given.
fn cache_with(conn: &Connection, name: &'static str, near: Option<NearCache>) -> BenchCache {
    let builder = Cache::builder(conn.clone(), "wl:{{{id}}}")
        .codec(Raw)
        .ttl(TTL)
        .name(name);
    match near {
        Some(near) => builder.near_cache(near),
        None => builder,
    }
    .build()
    .expect("bench cache")
}

/// Caches ids `0..n` in Redis, each with the bench's value.
async fn seed(cache: &BenchCache, n: usize) {
    let value = vec![7u8; VALUE_LEN];
    let ids: Vec<u64> = (0..n as u64).collect();
    for chunk in ids.chunks(1000) {
        cache
            .set_many(chunk.iter().map(|&id| (id, value.clone())))
            .await
            .expect("seeding");
    }
}

/// One `get_and_fill_one` of a cached id: a hit (from Redis, or from the near cache).
async fn hit(cache: &BenchCache, id: u64) {
    let v = cache
        .get_and_fill_one(id, |_| async {
            Err::<Option<Vec<u8>>, _>(ruecache::Error::source_error("a hit never fetches"))
        })
        .await
        .expect("a hit");
    assert!(v.is_some());
}

/// One raw `GET` of a key that holds a value.
async fn raw_get(conn: &mut Connection, key: &str) {
    let v: Option<Vec<u8>> = ruecache::redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET");
    assert!(v.is_some());
}

/// Runs `op` for every id of every task's list, p tasks at once; returns the wall time and
/// every call's latency.
async fn run<F, Fut>(lists: Vec<Vec<u64>>, op: F) -> (Duration, Vec<Duration>)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let barrier = Arc::new(Barrier::new(lists.len() + 1));
    let tasks: Vec<_> = lists
        .into_iter()
        .map(|ids| {
            let (op, barrier) = (op.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ids.len());
                barrier.wait().await;
                for id in ids {
                    let start = Instant::now();
                    op(id).await;
                    latencies.push(start.elapsed());
                }
                latencies
            })
        })
        .collect();
    barrier.wait().await;
    let start = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a bench task"));
    }
    (start.elapsed(), all)
}

struct Measured {
    ns_per_op: f64,
    fetches_per_1000: Option<f64>,
    p50: Duration,
    p99: Duration,
    p999: Duration,
}

fn measured(wall: Duration, mut latencies: Vec<Duration>, fetches: Option<u64>) -> Measured {
    let ops = latencies.len().max(1);
    latencies.sort_unstable();
    let at = |q: f64| latencies[((ops as f64 * q) as usize).min(ops - 1)];
    Measured {
        ns_per_op: wall.as_nanos() as f64 / ops as f64,
        fetches_per_1000: fetches.map(|f| f as f64 * 1000.0 / ops as f64),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

fn median(mut rounds: Vec<Measured>) -> Measured {
    rounds.sort_by(|a, b| a.ns_per_op.total_cmp(&b.ns_per_op));
    rounds.swap_remove(rounds.len() / 2)
}

async fn flushall(conn: &Connection) {
    let () = redis_cmd(conn, &["FLUSHALL"]).await;
}

async fn redis_cmd<T: ruecache::redis::FromRedisValue>(conn: &Connection, args: &[&str]) -> T {
    let mut cmd = ruecache::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn.clone())
        .await
        .expect("a Redis command")
}

async fn used_memory(conn: &Connection) -> i64 {
    let info: String = redis_cmd(conn, &["INFO", "memory"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory has used_memory")
}

/// Hits on distinct ids, beside raw `GET`s of the same keys in the same order.
async fn hits(cfg: &Config, conn: &Connection, out: &mut String) {
    let cache = cache(conn, "hits");
    flushall(conn).await;
    seed(&cache, cfg.hit_ids).await;
    let zipf = Zipf::new(cfg.hit_ids, 1.0);
    let _ = writeln!(
        out,
        "\nHits on distinct ids: {} ids cached, one id per call\n\n\
         | ids | p | raw GET ns/op | ruecache ns/op | ratio |\n|---|---:|---:|---:|---:|",
        cfg.hit_ids
    );
    for (pick, label) in [(Pick::Uniform, "uniform"), (Pick::Zipf, "Zipf(1.0)")] {
        for p in [32, 512] {
            let per_task = (cfg.hit_ops / p).max(1);
            let (mut raw, mut ours) = (Vec::new(), Vec::new());
            for round in 0..cfg.rounds {
                let lists = draws(pick, &zipf, cfg.hit_ids, p, per_task);
                for side in [round % 2, 1 - round % 2] {
                    let lists = lists.clone();
                    if side == 0 {
                        let keys: Arc<Vec<String>> = Arc::new(
                            (0..cfg.hit_ids as u64)
                                .map(|id| cache.data_key(&id).unwrap())
                                .collect(),
                        );
                        let conn = conn.clone();
                        let (wall, lat) = run(lists, move |id| {
                            let (keys, mut conn) = (keys.clone(), conn.clone());
                            async move { raw_get(&mut conn, &keys[id as usize]).await }
                        })
                        .await;
                        raw.push(measured(wall, lat, None));
                    } else {
                        let cache = cache.clone();
                        let (wall, lat) = run(lists, move |id| {
                            let cache = cache.clone();
                            async move { hit(&cache, id).await }
                        })
                        .await;
                        ours.push(measured(wall, lat, None));
                    }
                }
            }
            let (raw, ours) = (median(raw), median(ours));
            let _ = writeln!(
                out,
                "| {label} | {p} | {:.0} | {:.0} | {:.2}x |",
                raw.ns_per_op,
                ours.ns_per_op,
                ours.ns_per_op / raw.ns_per_op
            );
        }
    }
}

/// One call of the mixed and expiring workloads: an id, and whether the call is an update.
type Call = (u64, bool);

/// `p` tasks' calls, `per_task` each: (an id drawn from `zipf`, whether the call is an update).
fn draw_calls(zipf: &Zipf, p: usize, per_task: usize) -> Vec<Vec<Call>> {
    let mut rng = rand::rng();
    (0..p)
        .map(|_| {
            (0..per_task)
                .map(|_| (zipf.sample(&mut rng), rng.random_bool(UPDATE_RATIO)))
                .collect()
        })
        .collect()
}

/// Each task's calls (id, whether it is an update), flattened: all calls in one list, and per
/// task the indices of its own, which [`run`] hands out.
fn indexed(lists: &[Vec<Call>]) -> (Arc<Vec<Call>>, Vec<Vec<u64>>) {
    let calls = Arc::new(lists.iter().flatten().copied().collect());
    let mut next = 0u64;
    let indices = lists
        .iter()
        .map(|l| {
            let start = next;
            next += l.len() as u64;
            (start..next).collect()
        })
        .collect();
    (calls, indices)
}

/// The mixed workload through ruecache or through a hand-written cache-aside, from a cold
/// (flushed) server; returns what one round measured.
async fn mixed_round(
    conn: &Connection,
    lists: Vec<Vec<(u64, bool)>>,
    with_ruecache: bool,
) -> Measured {
    flushall(conn).await;
    let fetches = Arc::new(AtomicU64::new(0));
    let value = Arc::new(vec![7u8; VALUE_LEN]);
    let (calls, indices) = indexed(&lists);
    let (wall, lat) = if with_ruecache {
        let cache = cache(conn, "mixed");
        let (fetches, value) = (fetches.clone(), value.clone());
        run(indices, move |i| {
            let (cache, fetches, value, calls) =
                (cache.clone(), fetches.clone(), value.clone(), calls.clone());
            async move {
                let (id, update) = calls[i as usize];
                if update {
                    tokio::time::sleep(DB_LATENCY).await;
                    cache.invalidate([id]).await.expect("invalidate");
                    return;
                }
                cache
                    .get_and_fill_one(id, |_| {
                        let (fetches, value) = (fetches.clone(), value.clone());
                        async move {
                            fetches.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(DB_LATENCY).await;
                            Ok::<_, ruecache::Error>(Some(value.to_vec()))
                        }
                    })
                    .await
                    .expect("a call");
            }
        })
        .await
    } else {
        let keys = cache(conn, "keys-only");
        let (conn, fetches, value) = (conn.clone(), fetches.clone(), value.clone());
        run(indices, move |i| {
            let (mut conn, fetches, value, calls) =
                (conn.clone(), fetches.clone(), value.clone(), calls.clone());
            let key = keys.data_key(&calls[i as usize].0).unwrap();
            async move {
                let update = calls[i as usize].1;
                if update {
                    tokio::time::sleep(DB_LATENCY).await;
                    let () = ruecache::redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("DEL");
                    return;
                }
                let got: Option<Vec<u8>> = ruecache::redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                if got.is_none() {
                    fetches.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(DB_LATENCY).await;
                    let () = ruecache::redis::cmd("SET")
                        .arg(&key)
                        .arg(value.as_slice())
                        .arg("PX")
                        .arg(TTL.as_millis() as u64)
                        .query_async(&mut conn)
                        .await
                        .expect("SET");
                }
            }
        })
        .await
    };
    measured(wall, lat, Some(fetches.load(Ordering::Relaxed)))
}

async fn mixed(cfg: &Config, conn: &Connection, out: &mut String) {
    let zipf = Zipf::new(cfg.mixed_ids, 1.0);
    let _ = writeln!(
        out,
        "\nMixed workload, cold start each round: Zipf(1.0) over {} ids, {:.1} % updates \
         ({:?} write + invalidate/DEL), {:?} fetch per miss, {} calls per round\n\n\
         | p | side | ns/op | fetches / 1,000 calls | p50 | p99 | throughput vs cache-aside |\n\
         |---:|---|---:|---:|---:|---:|---:|",
        cfg.mixed_ids,
        UPDATE_RATIO * 100.0,
        DB_LATENCY,
        DB_LATENCY,
        cfg.mixed_ops
    );
    for p in [32, 512] {
        let per_task = (cfg.mixed_ops / p).max(1);
        let (mut aside, mut ours) = (Vec::new(), Vec::new());
        for round in 0..cfg.rounds {
            let lists = draw_calls(&zipf, p, per_task);
            for side in [round % 2, 1 - round % 2] {
                let m = mixed_round(conn, lists.clone(), side == 1).await;
                if side == 1 {
                    ours.push(m);
                } else {
                    aside.push(m);
                }
            }
        }
        let (aside, ours) = (median(aside), median(ours));
        for (side, m) in [("cache-aside", &aside), ("ruecache", &ours)] {
            let _ = writeln!(
                out,
                "| {p} | {side} | {:.0} | {:.1} | {:.2?} | {:.2?} | {:.2}x |",
                m.ns_per_op,
                m.fetches_per_1000.unwrap_or(0.0),
                m.p50,
                m.p99,
                aside.ns_per_op / m.ns_per_op
            );
        }
    }
}

/// The TTL of the expiring workload: short enough that hot ids expire many times per round.
const EXPIRING_TTL: Duration = Duration::from_millis(250);

/// One round of the expiring workload from a warm start (every id cached, then the clock runs):
/// what it measured, and the calls that waited for a fetch per 1,000 calls.
async fn expiring_round(
    conn: &Connection,
    ids: usize,
    lists: Vec<Vec<(u64, bool)>>,
    refresh_beta: Option<f64>,
) -> (Measured, f64) {
    flushall(conn).await;
    let fetches = Arc::new(AtomicU64::new(0));
    let value = Arc::new(vec![7u8; VALUE_LEN]);
    let fetch = {
        let (fetches, value) = (fetches.clone(), value.clone());
        move |ids: Vec<u64>| {
            let (fetches, value) = (fetches.clone(), value.clone());
            async move {
                fetches.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(DB_LATENCY).await;
                Ok::<_, ruecache::Error>(
                    ids.into_iter()
                        .map(|id| (id, value.to_vec()))
                        .collect::<Vec<_>>(),
                )
            }
        }
    };
    let mut builder = Cache::builder(conn.clone(), "wl:{{{id}}}")
        .codec(Raw)
        .ttl(EXPIRING_TTL)
        .name("expiring");
    if let Some(beta) = refresh_beta {
        builder = builder.refresh_ahead(fetch.clone()).refresh_beta(beta);
    }
    let cache = builder.build().expect("bench cache");
    let all: Vec<u64> = (0..ids as u64).collect();
    for chunk in all.chunks(1_000) {
        let _: Vec<(u64, Vec<u8>)> = cache
            .get_and_fill(chunk.to_vec(), fetch.clone())
            .await
            .expect("warm-up");
    }
    fetches.store(0, Ordering::Relaxed);
    let before = cache.stats();
    let (calls, indices) = indexed(&lists);
    let (wall, lat) = {
        let cache = cache.clone();
        run(indices, move |i| {
            let (cache, fetch, calls) = (cache.clone(), fetch.clone(), calls.clone());
            async move {
                let (id, update) = calls[i as usize];
                if update {
                    tokio::time::sleep(DB_LATENCY).await;
                    cache.invalidate([id]).await.expect("invalidate");
                    return;
                }
                let _: Vec<(u64, Vec<u8>)> = cache.get_and_fill([id], fetch).await.expect("a call");
            }
        })
        .await
    };
    cache.connection().settle().await;
    let waited = cache.stats().misses - before.misses;
    let calls = lat.len().max(1) as f64;
    let m = measured(wall, lat, Some(fetches.load(Ordering::Relaxed)));
    (m, waited as f64 * 1000.0 / calls)
}

async fn expiring(cfg: &Config, conn: &Connection, out: &mut String) {
    let zipf = Zipf::new(cfg.expiring_ids, 1.0);
    let _ = writeln!(
        out,
        "\nExpiring values, warm start each round: Zipf(1.0) over {} ids, TTL {:?} (±20 % \
         jitter), {:.1} % updates, {:?} fetch, {} calls per round\n\n\
         | p | side | ns/op | fetches / 1,000 calls | waited for a fetch / 1,000 calls | p50 | p99 | p99.9 |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|",
        cfg.expiring_ids,
        EXPIRING_TTL,
        UPDATE_RATIO * 100.0,
        DB_LATENCY,
        cfg.expiring_ops
    );
    for p in [32, 512] {
        let per_task = (cfg.expiring_ops / p).max(1);
        let sides = [
            ("ruecache", None),
            ("refresh-ahead, β = 1", Some(1.0)),
            ("refresh-ahead, β = 10", Some(10.0)),
        ];
        let mut rounds: Vec<Vec<(Measured, f64)>> = sides.iter().map(|_| Vec::new()).collect();
        for round in 0..cfg.rounds {
            let lists = draw_calls(&zipf, p, per_task);
            // Each round starts with another side.
            for k in 0..sides.len() {
                let side = (round + k) % sides.len();
                let m = expiring_round(conn, cfg.expiring_ids, lists.clone(), sides[side].1).await;
                rounds[side].push(m);
            }
        }
        for ((side, _), mut rounds) in sides.iter().zip(rounds) {
            rounds.sort_by(|a, b| a.0.ns_per_op.total_cmp(&b.0.ns_per_op));
            let (m, waited) = rounds.swap_remove(rounds.len() / 2);
            let _ = writeln!(
                out,
                "| {p} | {side} | {:.0} | {:.1} | {waited:.1} | {:.2?} | {:.2?} | {:.2?} |",
                m.ns_per_op,
                m.fetches_per_1000.unwrap_or(0.0),
                m.p50,
                m.p99,
                m.p999,
            );
        }
    }
}

/// Redis memory per cached id: ruecache, a hand-written cache-aside, and what the previous
/// protocol kept per id (its data key and its version key).
async fn memory(cfg: &Config, conn: &Connection, out: &mut String) {
    let n = cfg.memory_ids as u64;
    let value = vec![7u8; VALUE_LEN];
    let cache = cache(conn, "memory");
    let mut rows = Vec::new();

    flushall(conn).await;
    let before = used_memory(conn).await;
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(100) {
        let _: std::collections::HashMap<u64, Vec<u8>> = cache
            .get_and_fill(chunk.to_vec(), |missing| {
                let value = value.clone();
                async move {
                    Ok::<_, ruecache::Error>(
                        missing
                            .into_iter()
                            .map(|id| (id, value.clone()))
                            .collect::<Vec<_>>(),
                    )
                }
            })
            .await
            .expect("a fill");
    }
    let keys: i64 = redis_cmd(conn, &["DBSIZE"]).await;
    rows.push(("ruecache", used_memory(conn).await - before, keys));

    for previous in [false, true] {
        flushall(conn).await;
        let before = used_memory(conn).await;
        for chunk in ids.chunks(100) {
            let mut pipe = ruecache::redis::pipe();
            for &id in chunk {
                let key = cache.data_key(&id).unwrap();
                if previous {
                    // The previous protocol's value (the same envelope) and version key.
                    let mut sealed = vec![0xC1, b'P'];
                    sealed.extend_from_slice(&value);
                    pipe.cmd("SET")
                        .arg(&key)
                        .arg(sealed)
                        .arg("PX")
                        .arg(600_000)
                        .ignore();
                    let version =
                        [format!("{{{id}}}").as_bytes(), b"\xFFv", key.as_bytes()].concat();
                    let random: [u8; 16] = rand::random();
                    pipe.cmd("SET")
                        .arg(version)
                        .arg(&random[..])
                        .arg("PX")
                        .arg(600_000)
                        .ignore();
                } else {
                    pipe.cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("PX")
                        .arg(600_000)
                        .ignore();
                }
            }
            let () = pipe.query_async(&mut conn.clone()).await.expect("SETs");
        }
        let keys: i64 = redis_cmd(conn, &["DBSIZE"]).await;
        let label = if previous {
            "previous protocol (data + version key)"
        } else {
            "cache-aside (GET/SET)"
        };
        rows.push((label, used_memory(conn).await - before, keys));
    }
    let aside = rows[1].1 as f64 / n as f64;
    let _ = writeln!(
        out,
        "\nRedis memory per cached id ({n} ids, {VALUE_LEN}-byte values, `INFO memory` \
         used_memory before and after)\n\n| what | keys | bytes per id | vs cache-aside |\n\
         |---|---:|---:|---:|"
    );
    for (label, bytes, keys) in rows {
        let per_id = bytes as f64 / n as f64;
        let _ = writeln!(
            out,
            "| {label} | {keys} | {per_id:.0} | {:+.0} % |",
            (per_id / aside - 1.0) * 100.0
        );
    }
}

/// Runs `task` on every list, p tasks at once, released together by a barrier; returns the wall
/// time. Unlike [`run`], nothing is timed per call: a near-cache hit costs less than reading the
/// clock twice and keeping a latency would.
async fn run_lists<F, Fut>(lists: Vec<Vec<u64>>, task: F) -> Duration
where
    F: Fn(Vec<u64>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(lists.len() + 1));
    let tasks: Vec<_> = lists
        .into_iter()
        .map(|ids| {
            let (work, barrier) = (task(ids), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                work.await;
            })
        })
        .collect();
    barrier.wait().await;
    let start = Instant::now();
    for task in tasks {
        task.await.expect("a bench task");
    }
    start.elapsed()
}

/// A task of the near table: `get_and_fill_one` of each of its ids, every one a hit.
async fn hits_of(cache: BenchCache, ids: Vec<u64>) {
    for id in ids {
        hit(&cache, id).await;
    }
}

/// A task of the near table's reference rows: a raw `GET` of each of its ids' keys.
async fn raw_gets_of(mut conn: Connection, keys: Arc<Vec<String>>, ids: Vec<u64>) {
    for id in ids {
        raw_get(&mut conn, &keys[id as usize]).await;
    }
}

/// One round of `lists` through `cache`: ns/op, and the share of ids the near cache answered.
async fn near_round(cache: &BenchCache, lists: Vec<Vec<u64>>) -> (f64, f64) {
    let ops = lists.iter().map(Vec::len).sum::<usize>() as f64;
    let before = cache.stats().near_hits;
    let wall = run_lists(lists, |ids| hits_of(cache.clone(), ids)).await;
    let near_hits = cache.stats().near_hits - before;
    (wall.as_nanos() as f64 / ops, near_hits as f64 / ops)
}

/// One round of `lists` as raw `GET`s of `keys`: ns/op (and no near hits).
async fn raw_round(conn: &Connection, keys: &Arc<Vec<String>>, lists: Vec<Vec<u64>>) -> (f64, f64) {
    let ops = lists.iter().map(Vec::len).sum::<usize>() as f64;
    let wall = run_lists(lists, |ids| raw_gets_of(conn.clone(), keys.clone(), ids)).await;
    (wall.as_nanos() as f64 / ops, 0.0)
}

/// The median round by ns/op, of (ns/op, near hits / ids asked).
fn median_round(mut rounds: Vec<(f64, f64)>) -> (f64, f64) {
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    rounds[rounds.len() / 2]
}

/// `get_and_fill` of `ids` (all cached), 1,000 per call.
async fn read_all(cache: &BenchCache, ids: &[u64]) {
    for chunk in ids.chunks(1_000) {
        let got: Vec<(u64, Vec<u8>)> = cache
            .get_and_fill(chunk.to_vec(), |_| async {
                Err::<Vec<(u64, Vec<u8>)>, _>(ruecache::Error::source_error("every id is cached"))
            })
            .await
            .expect("a read of cached ids");
        assert_eq!(got.len(), chunk.len());
    }
}

/// Starts the near cache's tracking and waits until it is up: it comes up asynchronously, and
/// until then every call reads Redis.
async fn tracking(cache: &BenchCache) {
    let start = Instant::now();
    while !cache.near_status().expect("a near cache").tracking {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the near cache's tracking did not come up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads `ids` until the near cache holds them all. It keeps only what a read of Redis returned
/// (not what a fill wrote, nor a reply that crossed an invalidation of its key), so the first
/// read of each id fills it.
async fn warm(cache: &BenchCache, ids: &[u64]) {
    tracking(cache).await;
    for _ in 0..10 {
        read_all(cache, ids).await;
        if cache.near_status().expect("a near cache").entries >= ids.len() {
            return;
        }
    }
    panic!("the near cache did not take {} ids", ids.len());
}

fn near_settings(entries: usize) -> Option<NearCache> {
    // Entries kept as long as Redis keeps the values: no row sees one expire.
    Some(NearCache::new(entries).max_age(TTL))
}

/// A row of the near table: the near cache's side and the side it is measured beside.
struct NearRow {
    workload: String,
    p: usize,
    beside: &'static str,
    /// The other side's ns/op, and the near cache's (ns/op, near hits / ids asked).
    beside_ns: f64,
    near: (f64, f64),
    target: &'static str,
}

/// Hits on hot ids the near cache holds, beside raw `GET`s of the same keys, at p = 1 (the
/// latency of one call) and p = 512 (the throughput of many). The near side makes more calls
/// per round (`near_hit_ops`): they are that much faster.
async fn near_hit_rows(cfg: &Config, conn: &Connection) -> Vec<NearRow> {
    let hot = cfg.near_entries / 10;
    let cache = cache_with(conn, "near-hot", near_settings(cfg.near_entries));
    let ids: Vec<u64> = (0..hot as u64).collect();
    warm(&cache, &ids).await;
    let keys: Arc<Vec<String>> =
        Arc::new(ids.iter().map(|id| cache.data_key(id).unwrap()).collect());
    let zipf = Zipf::new(hot, 1.0);
    let mut rows = Vec::new();
    for (p, get_ops, target) in [
        (1, cfg.hit_ops / 10, "ns/op ≤ 0.02x"),
        (512, cfg.hit_ops, "throughput ≥ 10x"),
    ] {
        let (mut raw, mut ours) = (Vec::new(), Vec::new());
        for round in 0..cfg.rounds {
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    let lists = draws(Pick::Uniform, &zipf, hot, p, (get_ops / p).max(1));
                    raw.push(raw_round(conn, &keys, lists).await);
                } else {
                    let per_task = (cfg.near_hit_ops / p).max(1);
                    let lists = draws(Pick::Uniform, &zipf, hot, p, per_task);
                    ours.push(near_round(&cache, lists).await);
                }
            }
        }
        rows.push(NearRow {
            workload: format!("{hot} hot ids, all held, uniform"),
            p,
            beside: "raw GET",
            beside_ns: median_round(raw).0,
            near: median_round(ours),
            target,
        });
    }
    rows
}

/// Zipf(1.0) reads over `hit_ids` cached ids through a near cache of `near_entries`, beside the
/// same reads through the same cache without one. Each p starts with one round through the near
/// cache that is not measured, so that it holds what it would in a steady state.
async fn near_zipf_rows(cfg: &Config, conn: &Connection) -> Vec<NearRow> {
    let zipf = Zipf::new(cfg.hit_ids, 1.0);
    let plain = cache(conn, "near-zipf-off");
    let near = cache_with(conn, "near-zipf", near_settings(cfg.near_entries));
    tracking(&near).await;
    let mut rows = Vec::new();
    for p in [32, 512] {
        let per_task = (cfg.hit_ops / p).max(1);
        let lists = draws(Pick::Zipf, &zipf, cfg.hit_ids, p, per_task);
        near_round(&near, lists).await;
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for round in 0..cfg.rounds {
            let lists = draws(Pick::Zipf, &zipf, cfg.hit_ids, p, per_task);
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    without.push(near_round(&plain, lists.clone()).await);
                } else {
                    with.push(near_round(&near, lists.clone()).await);
                }
            }
        }
        rows.push(NearRow {
            workload: format!(
                "Zipf(1.0) over {} ids, {} held at most",
                cfg.hit_ids, cfg.near_entries
            ),
            p,
            beside: "ruecache without a near cache",
            beside_ns: median_round(without).0,
            near: median_round(with),
            target: "",
        });
    }
    rows
}

/// The near cache's memory in process: how much the heap grows while a near cache takes
/// `memory_ids` cached ids (its room is twice that, so none is evicted), and how much the same
/// reads grow it without a near cache. Returns (entries held, growth with, growth without).
async fn near_memory(cfg: &Config, conn: &Connection) -> (usize, i64, i64) {
    let ids: Vec<u64> = (0..cfg.memory_ids as u64).collect();
    let plain = cache(conn, "near-memory-off");
    // Once unmeasured, so that what any reads grow once (the connection's buffers) has grown.
    read_all(&plain, &ids).await;
    let without = heap_growth(read_all(&plain, &ids)).await;
    let near = cache_with(conn, "near-memory", near_settings(2 * ids.len()));
    tracking(&near).await;
    let with = heap_growth(warm(&near, &ids)).await;
    let entries = near.near_status().expect("a near cache").entries;
    (entries, with, without)
}

/// ns per call of `f`, over a loop of `n` calls (after `n / 10` unmeasured ones).
fn ns_per_call(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// The near cache holds a value's encoded bytes and decodes them on each hit; holding decoded
/// values would cost a clone per hit instead (and need `T: Clone`). Returns ns per decode with
/// `Raw` (the bench's codec), ns per decode with `MsgPack` (the default codec) of the same
/// value, its `MsgPack` size, and ns per clone of the decoded value.
fn decode_cost(n: usize) -> (f64, f64, usize, f64) {
    let value = vec![7u8; VALUE_LEN];
    let mut raw = Vec::new();
    Raw.encode(&value, &mut raw).expect("Raw encodes");
    let mut packed = Vec::new();
    Codec::<Vec<u8>>::encode(&MsgPack, &value, &mut packed).expect("MsgPack encodes");
    let raw_ns = ns_per_call(n, || {
        black_box(Raw.decode(black_box(&raw)).expect("Raw decodes"));
    });
    let packed_ns = ns_per_call(n, || {
        let v: Vec<u8> = MsgPack.decode(black_box(&packed)).expect("MsgPack decodes");
        black_box(v);
    });
    let clone_ns = ns_per_call(n, || {
        black_box(black_box(&value).clone());
    });
    (raw_ns, packed_ns, packed.len(), clone_ns)
}

/// The near cache: hits beside raw `GET`s, a Zipf workload beside the same cache without it,
/// its memory per entry, and what decoding costs on a hit.
async fn near(cfg: &Config, conn: &Connection, out: &mut String) {
    flushall(conn).await;
    seed(&cache(conn, "near-seed"), cfg.hit_ids).await;
    // First, while no other near cache's tracking connection is open beside it.
    let (entries, with, without) = near_memory(cfg, conn).await;
    let mut rows = near_hit_rows(cfg, conn).await;
    rows.extend(near_zipf_rows(cfg, conn).await);
    let _ = writeln!(
        out,
        "\nNear cache (`NearCache::new({})`, hot ids in process memory): `get_and_fill_one` \
         of cached ids through it, beside raw `GET`s of the same keys or the same cache without \
         it; {VALUE_LEN}-byte values\n\n\
         | workload | p | beside | their ns/op | near cache ns/op | near hits / ids asked | \
         ns/op ratio | throughput ratio | target |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---|",
        cfg.near_entries
    );
    for r in &rows {
        let ratio = r.near.0 / r.beside_ns;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} % | {:.3}x | {:.1}x | {} |",
            r.workload,
            r.p,
            r.beside,
            r.beside_ns,
            r.near.0,
            r.near.1 * 100.0,
            ratio,
            1.0 / ratio,
            r.target
        );
    }
    let key = cache(conn, "near-key")
        .data_key(&(entries as u64 / 2))
        .unwrap();
    let _ = writeln!(
        out,
        "\nNear cache memory in process ({} ids read into a near cache with room for {}; the \
         process's heap before and after, bytes asked of the allocator)\n\n\
         | entries held | heap growth | the same reads without a near cache | bytes / entry | \
         encoded value | data key (`{key}`) |\n|---:|---:|---:|---:|---:|---:|",
        cfg.memory_ids,
        2 * cfg.memory_ids
    );
    let _ = writeln!(
        out,
        "| {entries} | {with} | {without} | {:.0} | {VALUE_LEN} | {} |",
        (with - without) as f64 / entries.max(1) as f64,
        key.len()
    );
    let (raw_ns, packed_ns, packed_len, clone_ns) =
        decode_cost(if cfg.quick { 100_000 } else { 10_000_000 });
    let _ = writeln!(
        out,
        "\nDecoding a held value on each hit: {raw_ns:.1} ns with `Raw` ({VALUE_LEN} bytes), \
         {packed_ns:.1} ns with `MsgPack` (the same `Vec<u8>`, {packed_len} bytes); cloning a \
         decoded `Vec<u8>` instead: {clone_ns:.1} ns."
    );
}

fn main() {
    let cfg = Config::from_args();
    let server = ruecache_tests::start_standalone_with(&[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(async {
        let started = Instant::now();
        let conn = Connection::open(&server.url()).await.expect("connecting");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ruecache on realistic workloads ({} run, {} rounds, median shown; private \
             redis-server; {} tokio workers)",
            if cfg.quick { "quick" } else { "full" },
            cfg.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        if cfg.wants("hits") {
            eprint!("hits ");
            hits(&cfg, &conn, &mut out).await;
        }
        if cfg.wants("mixed") {
            eprint!("mixed ");
            mixed(&cfg, &conn, &mut out).await;
        }
        if cfg.wants("expiring") {
            eprint!("expiring ");
            expiring(&cfg, &conn, &mut out).await;
        }
        if cfg.wants("memory") {
            eprint!("memory ");
            memory(&cfg, &conn, &mut out).await;
        }
        if cfg.wants("near") {
            eprint!("near");
            near(&cfg, &conn, &mut out).await;
        }
        eprintln!();
        let _ = writeln!(out, "\ntook {:.0?}", started.elapsed());
        out
    });
    println!("{report}");
}
