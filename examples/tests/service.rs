//! The web service example, run as its own binary against a private `redis-server` and driven
//! over real HTTP: reads, an update that the next read sees (the invalidation), exactly one
//! database read for the miss that follows it, and a graceful shutdown on SIGTERM.
#![cfg(unix)] // stopped with SIGTERM

use std::process::Stdio;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ruecache::redis;
use ruecache_tests::start_standalone_with;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

/// Generous bounds for a debug build on a busy machine; they only turn a hang into a failure.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let response = self
            .client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the response body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {status} with no JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn stats(&self) -> Value {
        let (status, stats) = self.get("/stats").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        stats
    }
}

fn counter(stats: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(stats, |v, key| &v[key])
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} in {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_reads_updates_invalidates_and_shuts_down_gracefully() {
    let server = start_standalone_with(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_service"))
        .env("REDIS_URL", server.url())
        .env("BIND", "127.0.0.1:0") // the service picks a free port and prints it
        .env_remove("PORT")
        .env_remove("RUECACHE_EXAMPLE_PROBE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the service starts");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let base = timeout(START_TIMEOUT, async {
        while let Some(line) = stdout.next_line().await.expect("the service's stdout") {
            if let Some(address) = line.strip_prefix("listening on ") {
                return address.to_owned();
            }
        }
        panic!("the service ended before it listened");
    })
    .await
    .expect("the service listens within the start timeout");
    let http = Http {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base,
    };

    // A cold read goes to the database once.
    let (status, widget) = http.get("/widgets/2").await;
    assert_eq!(status, StatusCode::OK, "{widget}");
    assert_eq!(
        widget,
        json!({ "id": 2, "name": "widget 2", "price_cents": 200 })
    );
    assert_eq!(counter(&http.stats().await, &["db_queries"]), 1);

    // A batch: widget 2 is a hit, the others are read in one query, the unknown id is missing.
    let (status, list) = http.get("/widgets?ids=1,2,3,999999").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<u64> = list["widgets"]
        .as_array()
        .expect("a widget list")
        .iter()
        .map(|w| w["id"].as_u64().expect("an id"))
        .collect();
    assert_eq!(ids, [1, 2, 3], "{list}");
    assert_eq!(list["missing"], json!([999999]), "{list}");
    let stats = http.stats().await;
    assert_eq!(counter(&stats, &["db_queries"]), 2, "{stats}");
    assert_eq!(counter(&stats, &["cache", "hits"]), 1, "{stats}");

    // Reading widget 2 again is a hit.
    let (status, _) = http.get("/widgets/2").await;
    assert_eq!(status, StatusCode::OK);
    let before = http.stats().await;
    assert_eq!(counter(&before, &["db_queries"]), 2, "{before}");

    // The update writes the database and invalidates the cached widget.
    let (status, updated) = http
        .send(
            Method::PUT,
            "/widgets/2",
            Some(json!({ "name": "renamed widget", "price_cents": 250 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let after_update = http.stats().await;
    assert_eq!(
        counter(&after_update, &["cache", "invalidations"]),
        counter(&before, &["cache", "invalidations"]) + 1,
        "{after_update}"
    );

    // The next read sees the new row: a miss that reads the database exactly once.
    let (status, widget) = http.get("/widgets/2").await;
    assert_eq!(status, StatusCode::OK, "{widget}");
    assert_eq!(
        widget,
        json!({ "id": 2, "name": "renamed widget", "price_cents": 250 })
    );
    let after_read = http.stats().await;
    for (path, delta) in [
        (&["db_queries"][..], 1),
        (&["cache", "misses"][..], 1),
        (&["cache", "fetched_ids"][..], 1),
        (&["cache", "hits"][..], 0),
    ] {
        assert_eq!(
            counter(&after_read, path),
            counter(&after_update, path) + delta,
            "{path:?}: before {after_update}, after {after_read}"
        );
    }
    // And it is cached again: read from Redis once, then from process memory.
    for _ in 0..100 {
        let (_, again) = http.get("/widgets/2").await;
        assert_eq!(again, widget);
        if counter(&http.stats().await, &["cache", "near_hits"]) > 0 {
            break;
        }
    }
    let stats = http.stats().await;
    assert!(counter(&stats, &["cache", "near_hits"]) > 0, "{stats}");
    assert_eq!(
        counter(&stats, &["db_queries"]),
        counter(&after_read, &["db_queries"])
    );

    // Mistakes get clear answers.
    let (status, body) = http
        .send(
            Method::PUT,
            "/widgets/424242",
            Some(json!({ "name": "ghost", "price_cents": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = http.get("/widgets/424242").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = http.get("/widgets?ids=1,x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`x`"), "{body}");

    // SIGTERM: a graceful shutdown that settles, cleans up and exits 0.
    let pid = child.id().expect("the service is running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = timeout(EXIT_TIMEOUT, child.wait())
        .await
        .expect("the service exits after SIGTERM")
        .expect("wait for the service");
    let stderr = stderr.await.expect("the stderr reader");
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    for line in [
        "SIGTERM: shutting down",
        "settled: no cache write is left in the background",
        "reading widgets from the database",
    ] {
        assert!(stderr.contains(line), "expected {line:?} in:\n{stderr}");
    }

    // Nothing is left on the server.
    let mut admin = server.connect().await;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut admin)
        .await
        .expect("KEYS *");
    assert!(keys.is_empty(), "keys left: {keys:?}");
}
