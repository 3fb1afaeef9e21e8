//! The examples run as a newcomer runs them (their own binaries) and print what they claim;
//! each example also checks its own query and job counts and exits non-zero if one is off.
//!
//! They run against a private `redis-server` the harness starts (given in `REDIS_URL`), and must
//! leave no key behind there; without `REDIS_URL` they probe an address nothing answers on
//! (`RUECACHE_EXAMPLE_PROBE`, since the default port may be taken on the test machine) and must
//! start, use and stop a private server of their own, or say how to install one.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};

use ruecache::redis;
use ruecache_tests::start_standalone_with;

const EXAMPLES: [&str; 3] = [
    env!("CARGO_BIN_EXE_widgets"),
    env!("CARGO_BIN_EXE_engine"),
    env!("CARGO_BIN_EXE_resize"),
];

/// An example's command, with no `REDIS_URL` or `RUECACHE_EXAMPLE_PROBE` from outside.
fn example(binary: &str) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_remove("REDIS_URL")
        .env_remove("RUECACHE_EXAMPLE_PROBE")
        .env_remove("RUST_LOG");
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(binary: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{binary} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A loopback URL nothing answers on: a port bound, then released.
fn dead_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    format!("redis://127.0.0.1:{port}/")
}

/// Every key on the server at `url`.
fn all_keys(url: &str) -> Vec<String> {
    let mut conn = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    redis::cmd("KEYS")
        .arg("*")
        .query::<Vec<Vec<u8>>>(&mut conn)
        .expect("KEYS *")
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Runs an example against a private server given in `REDIS_URL`, checks that it left no key
/// behind there, and returns what it printed.
fn run_ok(binary: &str) -> String {
    let server = start_standalone_with(&[]);
    let mut cmd = example(binary);
    cmd.env("REDIS_URL", server.url());
    let out = output(cmd);
    assert_success(binary, &out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("using the Redis at {} (REDIS_URL)", server.url())),
        "{stderr}"
    );
    let left = all_keys(&server.url());
    assert!(left.is_empty(), "{binary} left keys behind: {left:?}");
    text(&out.stdout)
}

fn assert_lines(stdout: &str, expected: &[&str]) {
    for line in expected {
        assert!(stdout.contains(line), "expected {line:?} in:\n{stdout}");
    }
}

#[test]
fn widgets_example_misses_hits_reads_the_update_and_shares_one_query() {
    let stdout = run_ok(EXAMPLES[0]);
    assert_lines(
        &stdout,
        &[
            "1. first call: 3 widgets found, 1 database query",
            "2. second call: 3 widgets, still 1 query: all hits",
            "3. after rename + invalidate: widget 2 is \"renamed widget\", 2 queries",
            "4. 100 concurrent requests for cold widget 500: 1 query",
            "widget 999999 is absent, 0 new queries",
            "stats: ",
            "keys it wrote under ruecache-example:widgets:",
        ],
    );
}

#[test]
fn engine_example_does_the_same_through_the_plain_api() {
    let stdout = run_ok(EXAMPLES[1]);
    assert_lines(
        &stdout,
        &[
            "first call:  3 widgets, 1 queries",
            "second call: 3 widgets, 1 queries",
            "after rename: \"renamed widget\", 2 queries",
            "100 concurrent requests for cold id 500: 1 query",
            "keys it wrote under ruecache-example:engine:",
        ],
    );
}

#[test]
fn resize_example_runs_one_job_for_fifty_callers_on_two_servers() {
    let stdout = run_ok(EXAMPLES[2]);
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
            "keys it wrote under ruecache-example:resized:",
        ],
    );
    // One server did the job; the other one did none.
    assert_eq!(stdout.matches("resize jobs: 1;").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("resize jobs: 0;").count(), 1, "{stdout}");
}

#[test]
fn without_redis_url_the_examples_use_the_server_answering_at_the_probed_address() {
    let server = start_standalone_with(&[]);
    for binary in EXAMPLES {
        let mut cmd = example(binary);
        cmd.env("RUECACHE_EXAMPLE_PROBE", server.url());
        let out = output(cmd);
        assert_success(binary, &out);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("using the Redis at {}", server.url())),
            "{stderr}"
        );
        assert!(!stderr.contains("private redis-server"), "{stderr}");
        let left = all_keys(&server.url());
        assert!(left.is_empty(), "{binary} left keys behind: {left:?}");
    }
}

#[test]
fn with_nothing_answering_the_examples_start_and_stop_a_private_server() {
    for binary in EXAMPLES {
        let mut cmd = example(binary);
        cmd.env("RUECACHE_EXAMPLE_PROBE", dead_url());
        let out = output(cmd);
        assert_success(binary, &out);
        let stderr = text(&out.stderr);
        let (_, rest) = stderr
            .split_once("started a private redis-server at redis://127.0.0.1:")
            .unwrap_or_else(|| panic!("{binary} says it started a server:\n{stderr}"));
        let port: u16 = rest
            .split_once('/')
            .and_then(|(port, _)| port.parse().ok())
            .unwrap_or_else(|| panic!("a port in:\n{stderr}"));
        assert!(
            stderr.contains(&format!(
                "stopped the private redis-server at redis://127.0.0.1:{port}/"
            )),
            "{stderr}"
        );
        // It really ran there (the example's own checks passed against it), and is gone now.
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the private server on port {port} still answers after {binary} ended"
        );
    }
}

#[test]
fn without_redis_server_installed_the_example_says_how_to_install_it() {
    let empty = tempfile::tempdir().expect("a temporary directory");
    let mut cmd = example(EXAMPLES[0]);
    cmd.env("RUECACHE_EXAMPLE_PROBE", dead_url())
        .env("PATH", empty.path())
        .env_remove("REDIS_SERVER_BIN");
    let out = output(cmd);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("`redis-server` cannot be run"), "{stderr}");
    assert!(
        stderr.contains("sudo apt-get install redis-server"),
        "{stderr}"
    );
    assert!(stderr.contains("brew install redis"), "{stderr}");
}

#[test]
fn with_a_redis_url_that_does_not_answer_the_example_says_how_to_start_redis() {
    let mut cmd = example(EXAMPLES[0]);
    cmd.env("REDIS_URL", dead_url());
    let out = output(cmd);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("could not connect to Redis"), "{stderr}");
    assert!(stderr.contains("redis-server --port 6379"), "{stderr}");
    assert!(!stderr.contains("private redis-server at"), "{stderr}");
}
