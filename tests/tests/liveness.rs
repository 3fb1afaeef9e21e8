//! A dead lock holder doesn't stall everyone for the lock TTL: a process killed with SIGKILL in
//! the middle of its fetch delays others by about its liveness window, while a live holder's
//! locks are never taken over, however long its fetch runs.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ruecache::Cache;
use ruecache_tests::{both, Target};
use support::{template, value, Gate, Source};

type Map = HashMap<u64, String>;

const WINDOW: Duration = Duration::from_millis(500);

/// A child process takes the locks of 1 and 2 (lock TTL 60 s, liveness window 500 ms) and is
/// killed with SIGKILL while its fetch runs and a caller waits for its locks. The caller, whose
/// whole timeout is the liveness window plus a little (3 s: the window, a poll every 100 ms at
/// most, and slack for a busy machine), still gets both ids, because it takes the dead holder's
/// locks over: the delay is bounded by the window, not by the lock TTL.
async fn locks_of_a_killed_process_are_taken_over(t: Target) {
    let ns = t.ns();
    let [kind, urls] = t.child_args();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lock_holder"))
        .args([
            &kind,
            &urls,
            &template(&ns),
            &WINDOW.as_millis().to_string(),
            "1",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the lock holder");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    tokio::task::block_in_place(|| stdout.read_line(&mut line)).unwrap();
    assert!(
        line.starts_with("fetching"),
        "the holder is fetching: {line:?}"
    );

    let cache: Cache<u64, String> = Cache::builder(t.connect().await, &template(&ns))
        .timeout(Duration::from_secs(3))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .unwrap();
    for id in [1, 2] {
        assert!(support::leased(cache.connection(), &cache.data_key(&id).unwrap()).await);
    }
    // The caller is already waiting for the holder's locks when the holder dies.
    let source = Source::default();
    let waiting = tokio::spawn({
        let (cache, source) = (cache.clone(), source.clone());
        async move {
            cache
                .get_and_fill::<_, Map, _, _, _, _>([1, 2, 3], |ids| source.fetch(ids))
                .await
        }
    });
    support::eventually("the caller waiting for the holder's locks", async || {
        cache.stats().lock_waits >= 2
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no chance to release anything
    child.wait().unwrap();
    let killed = Instant::now();

    let got = waiting
        .await
        .unwrap()
        .expect("the dead holder's locks are taken over within the window and a little");
    let delay = killed.elapsed();
    assert_eq!(got, [1, 2, 3].map(|id| (id, value(id))).into());
    let stats = cache.stats();
    assert_eq!(stats.takeovers, 2, "{stats:?}");
    assert_eq!(source.counts(), [(1, 1), (2, 1), (3, 1)].into());
    eprintln!(
        "{t:?}: ids of a killed holder filled {:.0} ms after the kill (liveness window {} ms, \
         lock TTL 60 s)",
        delay.as_secs_f64() * 1e3,
        WINDOW.as_millis()
    );
}

/// A holder on another connection keeps its locks for six liveness windows; the waiter polls
/// (and checks the holder's liveness) all along but never takes over, and gets the holder's value.
async fn locks_of_a_live_holder_are_never_taken_over(t: Target) {
    let ns = t.ns();
    let holder: Cache<u64, String> = Cache::builder(
        t.connect().await.liveness_window(Some(WINDOW)).unwrap(),
        &template(&ns),
    )
    .build()
    .unwrap();
    let waiter: Cache<u64, String> = Cache::builder(t.connect().await, &template(&ns))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let source = Source::default();
    let mut gate = Gate::default();
    let held = tokio::spawn({
        let (holder, fetch) = (holder.clone(), source.gated(&gate.handle()));
        async move { holder.get_and_fill::<_, Map, _, _, _, _>([1], fetch).await }
    });
    let (_, release) = gate.paused().await;
    let waiting = tokio::spawn({
        let (waiter, source) = (waiter.clone(), source.clone());
        async move {
            waiter
                .get_and_fill::<_, Map, _, _, _, _>([1], |ids| source.fetch(ids))
                .await
        }
    });
    // Hold the lock for six windows: the holder's key must be refreshed all that time.
    tokio::time::sleep(WINDOW * 6).await;
    assert!(waiter.stats().lock_waits > 10, "{:?}", waiter.stats());
    release.send(()).unwrap();
    assert_eq!(held.await.unwrap().unwrap()[&1], value(1));
    assert_eq!(waiting.await.unwrap().unwrap()[&1], value(1));
    assert_eq!(waiter.stats().takeovers, 0);
    assert_eq!(
        holder.stats().commits,
        1,
        "the holder's lock was still its own"
    );
    assert_eq!(source.calls(), vec![vec![1]]);
}

/// With liveness off, a holder's locks block others until their deadline (the holder's lock
/// TTL), as in the Go original.
async fn without_liveness_locks_are_waited_out(t: Target) {
    let ns = t.ns();
    let holder: Cache<u64, String> = Cache::builder(
        t.connect().await.liveness_window(None).unwrap(),
        &template(&ns),
    )
    .lock_ttl(Duration::from_millis(400))
    .build()
    .unwrap();
    let waiter: Cache<u64, String> = Cache::builder(t.connect().await, &template(&ns))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let mut gate = Gate::default();
    let held = tokio::spawn({
        let (holder, fetch) = (
            holder.clone(),
            gate.handle().then_fail::<Map>("never answers in time"),
        );
        async move { holder.get_and_fill::<_, Map, _, _, _, _>([1], fetch).await }
    });
    let (_, _release) = gate.paused().await;
    let source = Source::default();
    let got = waiter
        .get_and_fill::<_, Map, _, _, _, _>([1], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got[&1], value(1));
    let stats = waiter.stats();
    assert!(stats.lock_waits > 0, "the lock was waited for: {stats:?}");
    assert_eq!(stats.takeovers, 0, "and not taken over: {stats:?}");
    assert_eq!(source.calls(), vec![vec![1]], "then filled by the waiter");
    held.abort();
}

both!(
    locks_of_a_killed_process_are_taken_over,
    locks_of_a_live_holder_are_never_taken_over,
    without_liveness_locks_are_waited_out
);

/// The task that keeps a connection's liveness key alive runs on the runtime of the first call
/// that took locks. If that runtime shuts down (the task with it) while the connection lives on,
/// the next call that takes locks starts it again, so the connection's locks are not taken over
/// as a dead holder's.
#[test]
fn liveness_refresh_restarts_after_its_runtime_is_gone() {
    let server = ruecache_tests::start_standalone_with(&[]);
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Opened on `main`, which drives the connection from here on.
    let conn = main.block_on(async {
        ruecache::Connection::open(&server.url())
            .await
            .unwrap()
            .liveness_window(Some(WINDOW))
            .unwrap()
    });
    let cache = support::cache(conn.clone(), "restart:");
    let fill = |id: u64| {
        let cache = cache.clone();
        async move {
            let source = Source::default();
            let got: Map = cache
                .get_and_fill([id], |ids| source.fetch(ids))
                .await
                .unwrap();
            assert_eq!(got, [(id, value(id))].into());
        }
    };
    let live_keys = || {
        main.block_on(async { support::cmd::<Vec<String>>(&conn, "KEYS", "ruecache:live:*").await })
    };
    {
        // The first locks are taken on a runtime that is then shut down.
        let short = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        short.block_on(fill(1));
    }
    assert_eq!(live_keys().len(), 1, "set by the first fill");
    main.block_on(async {
        fill(2).await;
        // Three windows: a key that is not refreshed is gone after one.
        tokio::time::sleep(3 * WINDOW).await;
    });
    assert_eq!(live_keys().len(), 1, "still refreshed");
}

/// A window so short that one slow refresh would declare a live process dead, or beyond the
/// longest TTL, is refused with a configuration error; the bounds themselves are accepted.
#[tokio::test]
async fn a_liveness_window_out_of_range_is_refused() {
    let conn = Target::Standalone.connect().await;
    let too_long = ruecache::Options::MAX_TTL + Duration::from_millis(1);
    for window in [Duration::ZERO, Duration::from_millis(99), too_long] {
        match conn.clone().liveness_window(Some(window)) {
            Err(ruecache::Error::Config(message)) => {
                assert!(message.contains("liveness window"), "{message}");
            }
            other => panic!("{window:?}: expected a configuration error, got {other:?}"),
        }
    }
    for window in [
        Some(Duration::from_millis(100)),
        Some(ruecache::Options::MAX_TTL),
        None,
    ] {
        assert!(conn.clone().liveness_window(window).is_ok(), "{window:?}");
    }
}
