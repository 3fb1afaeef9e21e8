//! Freshness and resilience: values refreshed ahead of their expiry in the background, stale
//! values served while their refill fails, and the fetch's timeouts.
//!
//! A value's age is what its timing header says (its logical expiry, and how long its fetch
//! took). The tests that need a value at a given age rewrite that header in Redis, as the
//! passing of time would, instead of sleeping until it happens.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use ruecache::{Cache, Connection, Error, Lookup};
use ruecache_tests::{both, Target};
use support::{cmd, eventually, now_ms, template, value, Failure, Gate, GateHandle, TestError};
use tokio::time::Instant;

const MARKER: u8 = 0xC1;

/// Sets the timing header of the timed value in `key`: logical expiry `expires_in_ms` from now
/// (negative: past), and a fetch time of `fill_ms`. Keeps the key's TTL.
async fn set_timing(conn: &Connection, key: &str, expires_in_ms: i64, fill_ms: u32) {
    let mut bytes: Vec<u8> = cmd(conn, "GET", key).await;
    assert_eq!(&bytes[..2], &[MARKER, b'T'], "a timed value in {key}");
    let expiry = (now_ms() as i64 + expires_in_ms) as u64;
    bytes[2..10].copy_from_slice(&expiry.to_be_bytes());
    bytes[10..14].copy_from_slice(&fill_ms.to_be_bytes());
    cmd::<()>(conn, "SET", (key, bytes, "KEEPTTL")).await;
}

/// The kind byte of what `key` holds (`b'T'` a timed value, `b'R'` a refresh lease...), 0 for
/// nothing.
async fn kind(conn: &Connection, key: &str) -> u8 {
    let bytes: Option<Vec<u8>> = cmd(conn, "GET", key).await;
    bytes.map_or(0, |b| b[1])
}

/// A source whose values carry a version, that can be made to fail.
#[derive(Clone, Default)]
struct Flaky {
    down: Arc<AtomicBool>,
    version: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Flaky {
    fn value(&self, id: u64) -> String {
        format!("{} v{}", value(id), self.version.load(SeqCst))
    }

    async fn fetch(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, TestError> {
        self.calls.fetch_add(1, SeqCst);
        if self.down.load(SeqCst) {
            return Err(TestError::Source("down"));
        }
        Ok(ids.into_iter().map(|id| (id, self.value(id))).collect())
    }
}

fn stale_cache(conn: Connection, ns: &str) -> Cache<u64, String> {
    Cache::builder(conn, &template(ns))
        .jitter(0.0)
        .stale_for(Duration::from_secs(3600))
        .stale_retry(Duration::from_millis(300))
        .build()
        .expect("valid config")
}

/// A value past its TTL is served while its source fails for 10 s, and the failing source is
/// called once per retry period (1 s), not by every read; once the source is back, the next
/// refill after the period brings the fresh value.
async fn stale_values_are_served_while_the_source_fails(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .jitter(0.0)
        .stale_for(Duration::from_secs(3600))
        .stale_retry(Duration::from_secs(1))
        .build()
        .unwrap();
    let conn = cache.connection();
    let source = Flaky::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got[&1], source.value(1));
    let pttl: i64 = cmd(conn, "PTTL", cache.data_key(&1).unwrap()).await;
    assert!(
        pttl > 3_600_000,
        "the key lives for the TTL plus stale_for (PTTL {pttl})"
    );
    let old = source.value(1);
    for id in [1, 2] {
        set_timing(conn, &cache.data_key(&id).unwrap(), -1, 5).await;
    }
    assert_eq!(cache.get(1).await.unwrap(), Lookup::Stale(old.clone()));

    source.down.store(true, SeqCst);
    source.version.store(1, SeqCst);
    let calls_before = source.calls.load(SeqCst);
    let started = Instant::now();
    let mut reads = 0;
    let mut slowest = Duration::ZERO;
    // Ten seconds of steady reads while the source is down: ten retry periods.
    while started.elapsed() < Duration::from_secs(10) {
        let t0 = Instant::now();
        let got: HashMap<u64, String> = cache
            .get_and_fill([1, 2], |ids| source.fetch(ids))
            .await
            .expect("a stale value instead of the source's error");
        slowest = slowest.max(t0.elapsed());
        assert_eq!(got[&1], old, "the stale value");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let attempts = source.calls.load(SeqCst) - calls_before;
    println!(
        "[{t:?}] source down 10 s, retry every 1 s: {reads} reads, {attempts} fetch attempts, \
         slowest read {slowest:?}"
    );
    assert!(
        (1..=12).contains(&attempts),
        "{attempts} fetch attempts for {reads} reads: throttled to one per retry period"
    );
    let stats = cache.stats();
    assert!(stats.stale_served >= 2 * reads as u64, "{stats:?}");

    source.down.store(false, SeqCst);
    let back = Instant::now();
    eventually("the fresh value after the source came back", async || {
        let got: HashMap<u64, String> = cache
            .get_and_fill([1, 2], |ids| source.fetch(ids))
            .await
            .unwrap();
        got[&1] == source.value(1)
    })
    .await;
    println!(
        "[{t:?}] fresh again {:?} after the source came back",
        back.elapsed()
    );
    assert_eq!(cache.get(2).await.unwrap(), Lookup::Found(source.value(2)));
}

/// An invalidation while a stale value is being refilled: the refill's commit is refused, and
/// the stale value is gone for good.
async fn invalidate_during_a_stale_refill_wins(t: Target) {
    let cache = stale_cache(t.connect().await, &t.ns());
    let conn = cache.connection();
    let source = Flaky::default();
    let key = fill_then_make_stale(&cache, &source).await;

    let mut gate = Gate::default();
    let task = refill_paused(&cache, gate.handle(), source.value(1));
    let (_, release) = gate.paused().await;
    assert_eq!(
        kind(conn, &key).await,
        b'R',
        "the refill holds the refresh lease"
    );
    cache.invalidate([1]).await.unwrap();
    release.send(()).unwrap();
    let got = task.await.unwrap();
    assert_eq!(got[&1], source.value(1), "the caller gets what it fetched");
    assert_eq!(
        kind(conn, &key).await,
        0,
        "nothing written after the invalidation"
    );
    assert_eq!(cache.get(1).await.unwrap(), Lookup::NotCached);
    let stats = cache.stats();
    assert_eq!((stats.commits, stats.stale_commits), (1, 1), "{stats:?}");
}

/// A fill of id 1 whose fetch pauses at `gate`, then answers `answer`.
fn refill_paused(
    cache: &Cache<u64, String>,
    gate: GateHandle,
    answer: String,
) -> tokio::task::JoinHandle<HashMap<u64, String>> {
    let cache = cache.clone();
    let fetch = gate.then(move |_| {
        let answer = answer.clone();
        async move { Ok::<_, TestError>(HashMap::from([(1, answer)])) }
    });
    tokio::spawn(async move { cache.get_and_fill([1], fetch).await.unwrap() })
}

/// A refresh fetch that pauses at `gate`, then answers `source`'s values.
fn refresh_through(
    gate: &GateHandle,
    source: &Flaky,
) -> impl Fn(Vec<u64>) -> support::Gated<Result<HashMap<u64, String>, String>>
       + Clone
       + Send
       + Sync
       + 'static {
    let source = source.clone();
    gate.then(move |ids| {
        let source = source.clone();
        async move { source.fetch(ids).await.map_err(|e| format!("{e:?}")) }
    })
}

/// A cache refreshing ahead of expiry through `gate`: each refresh pauses there, then answers
/// `source`'s values.
fn refreshing_cache(
    conn: Connection,
    ns: &str,
    source: &Flaky,
    gate: GateHandle,
) -> Cache<u64, String> {
    Cache::builder(conn, &template(ns))
        .jitter(0.0)
        .refresh_ahead(refresh_through(&gate, source))
        .build()
        .expect("valid config")
}

/// Fills id 1 from `source`, then makes its value due: a minute from its expiry after a fetch
/// of 50 days, so that the next read's draw wins (P = 1 - 1e-5). Returns its data key.
async fn fill_then_make_due(cache: &Cache<u64, String>, source: &Flaky) -> String {
    fill_with_timing(cache, source, 60_000, u32::MAX).await
}

/// Fills id 1 from `source`, then makes its value stale: past its expiry by 1 ms. Returns its
/// data key.
async fn fill_then_make_stale(cache: &Cache<u64, String>, source: &Flaky) -> String {
    fill_with_timing(cache, source, -1, 5).await
}

/// Fills id 1 from `source`, then sets its value's timing (see [`set_timing`]).
async fn fill_with_timing(
    cache: &Cache<u64, String>,
    source: &Flaky,
    expires_in_ms: i64,
    fill_ms: u32,
) -> String {
    let key = cache.data_key(&1).unwrap();
    let _: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    set_timing(cache.connection(), &key, expires_in_ms, fill_ms).await;
    key
}

/// A read that draws a refresh returns the current value at once; the refresh runs in the
/// background and commits the new value.
async fn a_drawn_refresh_serves_the_old_value_and_commits_the_new(t: Target) {
    let source = Flaky::default();
    let mut gate = Gate::default();
    let cache = refreshing_cache(t.connect().await, &t.ns(), &source, gate.handle());
    let conn = cache.connection();
    let key = fill_then_make_due(&cache, &source).await;
    let old = source.value(1);
    source.version.store(1, SeqCst);
    let got = cache
        .get_and_fill_one(1, |_| async {
            Err::<Option<String>, _>(TestError::Source("a hit: no fetch"))
        })
        .await;
    assert_eq!(
        got.unwrap(),
        Some(old.clone()),
        "the current value, at once"
    );
    let (ids, release) = gate.paused().await;
    assert_eq!(ids, vec![1]);
    assert_eq!(
        kind(conn, &key).await,
        b'R',
        "the refresh lease is on the value"
    );
    assert_eq!(
        cache.get(1).await.unwrap(),
        Lookup::Found(old),
        "readers are served the value behind the refresh lease"
    );
    release.send(()).unwrap();
    cache.connection().settle().await;
    assert_eq!(cache.get(1).await.unwrap(), Lookup::Found(source.value(1)));
    let stats = cache.stats();
    assert_eq!(
        (stats.refreshes, stats.commits, stats.misses),
        (1, 2, 1),
        "{stats:?}"
    );
}

/// An invalidation while a refresh is under way wins: the refresh's commit is refused.
async fn invalidate_during_a_refresh_wins(t: Target) {
    let source = Flaky::default();
    let mut gate = Gate::default();
    let cache = refreshing_cache(t.connect().await, &t.ns(), &source, gate.handle());
    let conn = cache.connection();
    let key = fill_then_make_due(&cache, &source).await;
    let _: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    let (_, release) = gate.paused().await;
    cache.invalidate([1]).await.unwrap();
    release.send(()).unwrap();
    cache.connection().settle().await;
    assert_eq!(
        kind(conn, &key).await,
        0,
        "nothing written after the invalidation"
    );
    let stats = cache.stats();
    assert_eq!((stats.refreshes, stats.stale_commits), (1, 1), "{stats:?}");
}

/// A refresh whose fetch fails leaves the value as it was, and holds off the next refresh.
async fn a_failed_refresh_keeps_the_value_and_waits(t: Target) {
    let source = Flaky::default();
    let mut gate = Gate::default();
    let cache = refreshing_cache(t.connect().await, &t.ns(), &source, gate.handle());
    fill_then_make_due(&cache, &source).await;
    let old = source.value(1);
    source.down.store(true, SeqCst);
    let _: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    let (_, release) = gate.paused().await;
    release.send(()).unwrap();
    cache.connection().settle().await;
    // Drawn again and again: the refresh lease, moved to the retry deadline, holds them off.
    for _ in 0..20 {
        let got: HashMap<u64, String> = cache
            .get_and_fill([1], |ids| source.fetch(ids))
            .await
            .unwrap();
        assert_eq!(got[&1], old);
    }
    cache.connection().settle().await;
    assert_eq!(
        cache.stats().refreshes,
        1,
        "one refresh until the retry deadline"
    );
    assert_eq!(cache.get(1).await.unwrap(), Lookup::Found(old));
}

/// What [`steady_reads`] measured, summed over its reader processes.
#[derive(Debug, Default)]
struct Steady {
    reads: u64,
    misses: u64,
    refreshes: u64,
    /// The worst of the processes' p99 read latency, and the slowest read.
    p99: Duration,
    max: Duration,
}

/// Steady reads for 4 s from three reader processes (`src/bin/reader.rs`) of 5 ids with a 1 s
/// TTL and a 100 ms fetch, after a first fill.
async fn steady_reads(t: Target, refresh_ahead: bool) -> Steady {
    let ns = t.ns();
    let template = template(&ns);
    let fetch = |ids: Vec<u64>| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Error>(
            ids.into_iter()
                .map(|id| (id, value(id)))
                .collect::<Vec<_>>(),
        )
    };
    // The first fill is made as the readers make theirs: a cache without refresh-ahead writes
    // values without timing, which are never drawn for a refresh.
    let mut builder = Cache::builder(t.connect().await, &template)
        .ttl(Duration::from_secs(1))
        .jitter(0.0);
    if refresh_ahead {
        builder = builder.refresh_ahead(fetch);
    }
    let cache: Cache<u64, String> = builder.build().unwrap();
    let ids: Vec<u64> = (1..=5).collect();
    let _: HashMap<u64, String> = cache.get_and_fill(ids, fetch).await.unwrap();
    let [kind, urls] = t.child_args();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_reader"))
                .args([&kind, &urls, &template, "5", "4000"])
                .arg(if refresh_ahead { "1" } else { "0" })
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("a reader process")
        })
        .collect();
    let mut total = Steady::default();
    for reader in readers {
        let out = reader.wait_with_output().await.expect("the reader ends");
        assert!(out.status.success(), "the reader failed: {:?}", out.status);
        let line = String::from_utf8(out.stdout).expect("text");
        let fields: HashMap<&str, u64> = line
            .split_whitespace()
            .collect::<Vec<_>>()
            .chunks(2)
            .map(|kv| (kv[0], kv[1].parse().expect("a number")))
            .collect();
        total.reads += fields["reads"];
        total.misses += fields["misses"];
        total.refreshes += fields["refreshes"];
        total.p99 = total.p99.max(Duration::from_micros(fields["p99_us"]));
        total.max = total.max.max(Duration::from_micros(fields["max_us"]));
    }
    total
}

/// Steady reads of hot ids with a 1 s TTL and a 100 ms fetch, from three processes: with
/// refresh-ahead no read misses after the first fill (without it, every expiry stalls readers
/// for a fetch), and each id is refreshed about once per TTL, by one of them.
async fn refresh_ahead_keeps_hot_ids_from_expiring(t: Target) {
    let plain = steady_reads(t, false).await;
    let ahead = steady_reads(t, true).await;
    for (side, s) in [
        ("without refresh-ahead", &plain),
        ("with refresh-ahead", &ahead),
    ] {
        println!(
            "[{t:?}] {side}: 3 processes, {} reads of 5 ids over 4 s (TTL 1 s, fetch 100 ms): \
             misses {}, refreshes {} ({:.2} per id per TTL), read p99 {:?}, max {:?}",
            s.reads,
            s.misses,
            s.refreshes,
            s.refreshes as f64 / 5.0 / 4.0,
            s.p99,
            s.max
        );
    }
    assert!(
        plain.misses > 0,
        "without refresh-ahead the ids expire and are missed"
    );
    assert_eq!(
        ahead.misses, 0,
        "no read waited for a fetch after the first fill"
    );
    let per_id_per_ttl = ahead.refreshes as f64 / 5.0 / 4.0;
    assert!(
        (0.5..=2.0).contains(&per_id_per_ttl),
        "about one refresh per id per TTL, fleet-wide: {per_id_per_ttl:.2}"
    );
}

/// A fetch that does not answer within the hard timeout fails the call with `FetchTimeout`,
/// and its leases are released: the next call fills at once.
async fn a_fetch_past_its_timeout_fails_and_releases(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .fetch_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = cache
        .get_and_fill::<_, HashMap<u64, String>, _, _, _, _>([1], |_| {
            std::future::pending::<Result<Vec<(u64, String)>, Failure>>()
        })
        .await
        .unwrap_err();
    let Failure::Cache(err) = err;
    assert!(
        matches!(
            err,
            Error::FetchTimeout { after, cache: None } if after == Duration::from_millis(100)
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("fetch_timeout"),
        "the message says what to raise"
    );
    let key = cache.data_key(&1).unwrap();
    assert!(
        !support::exists(cache.connection(), &key).await,
        "the lease is released"
    );
    let source = Flaky::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got[&1], source.value(1));
}

/// Past the soft timeout, the refill of a stale value serves the stale value, and holds off the
/// next refill.
async fn a_refill_past_its_soft_timeout_serves_the_stale_value(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .jitter(0.0)
        .stale_for(Duration::from_secs(60))
        .fetch_soft_timeout(Duration::from_millis(100))
        .fetch_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let source = Flaky::default();
    let key = fill_then_make_stale(&cache, &source).await;
    let started = Instant::now();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |_| {
            std::future::pending::<Result<Vec<(u64, String)>, Failure>>()
        })
        .await
        .unwrap();
    println!(
        "[{t:?}] stale value served after {:?} (soft timeout 100 ms)",
        started.elapsed()
    );
    assert_eq!(got[&1], source.value(1), "the stale value");
    assert_eq!(kind(cache.connection(), &key).await, b'R', "held off");
    let calls = source.calls.load(SeqCst);
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got[&1], source.value(1));
    assert_eq!(
        source.calls.load(SeqCst),
        calls,
        "no refill before the retry deadline"
    );
    assert_eq!(cache.stats().stale_served, 2);
}

/// Past the hard timeout, the refill of a stale value serves the stale value too, rather than
/// failing with `FetchTimeout`: a stale value at hand is always better than an error.
async fn a_refill_past_its_hard_timeout_serves_the_stale_value(t: Target) {
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .jitter(0.0)
        .stale_for(Duration::from_secs(60))
        .fetch_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let source = Flaky::default();
    let key = fill_then_make_stale(&cache, &source).await;
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |_| {
            std::future::pending::<Result<Vec<(u64, String)>, Failure>>()
        })
        .await
        .expect("the stale value, not FetchTimeout");
    assert_eq!(got[&1], source.value(1));
    assert_eq!(kind(cache.connection(), &key).await, b'R', "held off");
    assert_eq!(cache.stats().stale_served, 1);
}

/// Past the soft timeout, a cache that refreshes ahead of expiry goes on with the refill in the
/// background, with its own fetch and under the same refresh lease, and commits it.
async fn a_refill_past_its_soft_timeout_goes_on_in_the_background(t: Target) {
    let source = Flaky::default();
    let mut gate = Gate::default();
    let handle = gate.handle();
    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&t.ns()))
        .jitter(0.0)
        .stale_for(Duration::from_secs(60))
        .fetch_soft_timeout(Duration::from_millis(100))
        .refresh_ahead(refresh_through(&handle, &source))
        .build()
        .unwrap();
    let conn = cache.connection();
    let key = fill_then_make_stale(&cache, &source).await;
    let old = source.value(1);
    source.version.store(1, SeqCst);
    let got: HashMap<u64, String> = cache
        .get_and_fill([1], |_| {
            std::future::pending::<Result<Vec<(u64, String)>, Failure>>()
        })
        .await
        .unwrap();
    assert_eq!(got[&1], old, "the stale value, at the soft timeout");
    let (ids, release) = gate.paused().await;
    assert_eq!(ids, vec![1], "the refill goes on with the refresh fetch");
    assert_eq!(
        kind(conn, &key).await,
        b'R',
        "under the refill's refresh lease"
    );
    release.send(()).unwrap();
    conn.settle().await;
    assert_eq!(cache.get(1).await.unwrap(), Lookup::Found(source.value(1)));
    let stats = cache.stats();
    assert_eq!((stats.stale_served, stats.refreshes), (1, 1), "{stats:?}");
}

/// When Redis refuses the refill's lease step (here a user that may read but not run scripts),
/// the stale value is served instead of the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_value_is_served_when_redis_refuses_the_refill() {
    let server = ruecache_tests::start_standalone_with(&[]);
    let admin = server.connect().await;
    cmd::<()>(
        &admin,
        "ACL",
        (
            "SETUSER",
            "reader",
            "on",
            ">reader-password",
            "~*",
            "+get",
            "+mget",
            "+set",
        ),
    )
    .await;
    let ns = ruecache_tests::ns();
    let source = Flaky::default();
    let filler = stale_cache(admin.clone(), &ns);
    let _: HashMap<u64, String> = filler
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    set_timing(&admin, &filler.data_key(&1).unwrap(), -1, 5).await;
    let reader_conn = Connection::open(&server.url_as("reader", "reader-password"))
        .await
        .unwrap();
    let reader = stale_cache(reader_conn, &ns);
    source.version.store(1, SeqCst);
    let got: HashMap<u64, String> = reader
        .get_and_fill([1], |ids| source.fetch(ids))
        .await
        .expect("the stale value, not the refusal");
    assert_eq!(got[&1], format!("{} v0", value(1)));
    assert_eq!(
        source.calls.load(SeqCst),
        1,
        "the refill never reached the source"
    );
    assert_eq!(reader.stats().stale_served, 1);
}

/// Settings of refresh-ahead, stale values and fetch timeouts are checked when the cache is
/// built.
async fn freshness_settings_are_checked(t: Target) {
    let conn = t.connect().await;
    let refresh = |ids: Vec<u64>| async move {
        Ok::<_, Error>(
            ids.into_iter()
                .map(|id| (id, value(id)))
                .collect::<Vec<_>>(),
        )
    };
    let refused = |builder: ruecache::CacheBuilder<u64, String>| match builder.build() {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a config error, got {other:?}"),
    };
    let builder = || Cache::<u64, String>::builder(conn.clone(), "w:{id}");
    assert!(refused(builder().no_expiry().refresh_ahead(refresh))
        .contains("`refresh_ahead` needs a `ttl`"));
    assert!(refused(builder().refresh_ahead(refresh).refresh_beta(0.0)).contains("`refresh_beta`"));
    assert!(
        refused(builder().no_expiry().stale_for(Duration::from_secs(1)))
            .contains("`stale_for` needs a `ttl`")
    );
    assert!(refused(
        builder()
            .fetch_soft_timeout(Duration::from_secs(2))
            .fetch_timeout(Duration::from_secs(1))
    )
    .contains("shorter than `fetch_timeout`"));
    assert!(refused(builder().stale_retry(Duration::ZERO)).contains("`stale_retry`"));
    assert!(
        refused(builder().name("widgets").stale_retry(Duration::ZERO))
            .starts_with("cache `widgets`: `stale_retry`"),
        "the message names the cache"
    );
}

both!(
    stale_values_are_served_while_the_source_fails,
    invalidate_during_a_stale_refill_wins,
    a_drawn_refresh_serves_the_old_value_and_commits_the_new,
    invalidate_during_a_refresh_wins,
    a_failed_refresh_keeps_the_value_and_waits,
    refresh_ahead_keeps_hot_ids_from_expiring,
    a_fetch_past_its_timeout_fails_and_releases,
    a_refill_past_its_soft_timeout_serves_the_stale_value,
    a_refill_past_its_soft_timeout_goes_on_in_the_background,
    a_refill_past_its_hard_timeout_serves_the_stale_value,
    freshness_settings_are_checked,
);
