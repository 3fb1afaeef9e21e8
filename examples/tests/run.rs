//! The examples run as a newcomer runs them (their own binaries, `REDIS_URL` pointing at a
//! private `redis-server` the harness starts) and print what they claim; each example also
//! checks its own query and job counts and exits non-zero if one is off.

use std::net::TcpListener;
use std::process::{Command, Output};

use ruecache_tests::start_standalone_with;

fn run(binary: &str, redis_url: &str) -> Output {
    Command::new(binary)
        .env("REDIS_URL", redis_url)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"))
}

/// Runs an example against a private server and returns what it printed.
fn run_ok(binary: &str) -> String {
    let server = start_standalone_with(&[]);
    let out = run(binary, &server.url());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{binary} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_lines(stdout: &str, expected: &[&str]) {
    for line in expected {
        assert!(stdout.contains(line), "expected {line:?} in:\n{stdout}");
    }
}

#[test]
fn widgets_example_misses_hits_reads_the_update_and_shares_one_query() {
    let stdout = run_ok(env!("CARGO_BIN_EXE_widgets"));
    assert_lines(
        &stdout,
        &[
            "1. first call: 3 widgets found, 1 database query",
            "2. second call: 3 widgets, still 1 query: all hits",
            "3. after rename + invalidate: widget 2 is \"renamed widget\", 2 queries",
            "4. 100 concurrent requests for cold widget 500: 1 query",
            "widget 999999 is absent, 0 new queries",
            "stats: ",
        ],
    );
}

#[test]
fn engine_example_does_the_same_through_the_plain_api() {
    let stdout = run_ok(env!("CARGO_BIN_EXE_engine"));
    assert_lines(
        &stdout,
        &[
            "first call:  3 widgets, 1 queries",
            "second call: 3 widgets, 1 queries",
            "after rename: \"renamed widget\", 2 queries",
            "100 concurrent requests for cold id 500: 1 query",
        ],
    );
}

#[test]
fn resize_example_runs_one_job_for_fifty_callers_on_two_servers() {
    let stdout = run_ok(env!("CARGO_BIN_EXE_resize"));
    assert_lines(
        &stdout,
        &[
            "50 concurrent callers on 2 servers, 1 resize job in total",
            "server a: ",
            "server b: ",
            "times it found the lock held by another server: ",
            "result: Some(\"https://images.example/cat.png?size=512x512\")",
            // The SHA-1 of the URL, in the hash tag.
            "stored at ruecache-example:resized:{eb2b99f6279fa140ba38c0ddbcfd92d5656a886d}:url",
        ],
    );
    // One server did the job; the other one did none.
    assert_eq!(stdout.matches("resize jobs: 1;").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("resize jobs: 0;").count(), 1, "{stdout}");
}

#[test]
fn without_redis_the_example_says_how_to_start_it() {
    // A loopback port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let out = run(
        env!("CARGO_BIN_EXE_widgets"),
        &format!("redis://127.0.0.1:{port}/"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("could not connect to Redis"), "{stderr}");
    assert!(stderr.contains("redis-server --port 6379"), "{stderr}");
}
