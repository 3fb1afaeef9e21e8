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
//!
//! ```text
//! cargo bench -p ruecache-bench --bench workloads            # the full run (about a minute)
//! cargo bench -p ruecache-bench --bench workloads -- --quick # every row briefly
//! cargo bench -p ruecache-bench --bench workloads -- mixed   # only these tables: hits, mixed, expiring, memory
//! ```
//!
//! `RUECACHE_BENCH_QUICK=1` is the same as `--quick`. Each row runs p tasks on a multi-thread
//! tokio runtime, released together by a barrier; ns/op is wall time / operations; rows of a
//! group are interleaved over rounds (each starting with another side), and the median round is
//! shown. The server is always a private one: the mixed workload flushes it for its cold start.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use ruecache::{Cache, Connection, Raw};
use tokio::sync::Barrier;

const VALUE_LEN: usize = 64;
const TTL: Duration = Duration::from_secs(600);
/// The simulated database: a read (a miss's fetch) and a write (an update) each take this long.
const DB_LATENCY: Duration = Duration::from_millis(1);
const UPDATE_RATIO: f64 = 0.005;

struct Config {
    quick: bool,
    /// The tables asked for (`hits`, `mixed`, `expiring`, `memory`); empty for all.
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
            .filter(|a| ["hits", "mixed", "expiring", "memory"].contains(&a.as_str()))
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

fn cache(conn: &Connection, name: &'static str) -> Cache<u64, Vec<u8>, Raw> {
    Cache::builder(conn.clone(), "wl:{{{id}}}")
        .codec(Raw)
        .ttl(TTL)
        .name(name)
        .build()
        .expect("bench cache")
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
    let value = vec![7u8; VALUE_LEN];
    let ids: Vec<u64> = (0..cfg.hit_ids as u64).collect();
    for chunk in ids.chunks(1000) {
        cache
            .set_many(chunk.iter().map(|&id| (id, value.clone())))
            .await
            .expect("seeding");
    }
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
                            async move {
                                let v: Option<Vec<u8>> = ruecache::redis::cmd("GET")
                                    .arg(&keys[id as usize])
                                    .query_async(&mut conn)
                                    .await
                                    .expect("GET");
                                assert!(v.is_some());
                            }
                        })
                        .await;
                        raw.push(measured(wall, lat, None));
                    } else {
                        let cache = cache.clone();
                        let (wall, lat) = run(lists, move |id| {
                            let cache = cache.clone();
                            async move {
                                let v = cache
                                    .get_and_fill_one(id, |_| async {
                                        Err::<Option<Vec<u8>>, _>(ruecache::Error::source_error(
                                            "a hit never fetches",
                                        ))
                                    })
                                    .await
                                    .expect("a hit");
                                assert!(v.is_some());
                            }
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
            eprint!("memory");
            memory(&cfg, &conn, &mut out).await;
        }
        eprintln!();
        let _ = writeln!(out, "\ntook {:.0?}", started.elapsed());
        out
    });
    println!("{report}");
}
