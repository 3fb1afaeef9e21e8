//! The Redis an example runs against, and the cleanup of the keys it wrote there.
//!
//! In order: the server at `REDIS_URL` if that is set; else a server already answering at the
//! probed address (`RUECACHE_EXAMPLE_PROBE`, default [`DEFAULT_PROBE`]); else a private
//! `redis-server` the example starts on a free loopback port and stops when it ends. If
//! `redis-server` is not installed either, the example says how to install it and exits with
//! status 2.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ruecache::redis;
use tempfile::TempDir;

/// The address probed for a running server when `REDIS_URL` is not set.
pub const DEFAULT_PROBE: &str = "redis://127.0.0.1:6379";

/// How long a Redis gets to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a private server gets to answer after it was spawned.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How many ports are tried when a private server exits early (the port was taken meanwhile).
const START_ATTEMPTS: usize = 5;

/// How to get Redis, for the messages of an example that has none.
const INSTALL_HINT: &str = "install Redis 7 or newer: `sudo apt-get install redis-server` \
     (Debian 12+, Ubuntu 24.04+), `brew install redis` (macOS), or packages.redis.io; \
     or point REDIS_URL at a server you have, e.g. REDIS_URL=redis://127.0.0.1:6380";

/// The Redis an example runs against: one it was pointed at or found, or a private
/// `redis-server` it started (stopped by [`stop`](Self::stop), or when this is dropped).
#[derive(Debug)]
pub struct ExampleRedis {
    url: String,
    private: Option<PrivateServer>,
}

impl ExampleRedis {
    /// Finds or starts a Redis (see the module docs), saying on stderr which one it uses.
    /// Exits the process with status 2 and instructions if there is none and none can be
    /// started.
    pub async fn find() -> Self {
        if let Some(url) = env_value("REDIS_URL") {
            if let Err(e) = ping(&url).await {
                eprintln!("could not connect to Redis at {url} (REDIS_URL): {e}");
                eprintln!(
                    "start one with `redis-server --port 6379 --save ''`, or unset REDIS_URL to \
                     have the example start a private one"
                );
                eprintln!("no redis-server? {INSTALL_HINT}");
                std::process::exit(2);
            }
            eprintln!("using the Redis at {url} (REDIS_URL)");
            return Self { url, private: None };
        }
        let probe = env_value("RUECACHE_EXAMPLE_PROBE").unwrap_or_else(|| DEFAULT_PROBE.into());
        if ping(&probe).await.is_ok() {
            eprintln!("using the Redis at {probe}");
            return Self {
                url: probe,
                private: None,
            };
        }
        match PrivateServer::start().await {
            Ok(server) => {
                eprintln!(
                    "nothing answered at {probe}: started a private redis-server at {} \
                     (pid {}); it stops when the example ends",
                    server.url(),
                    server.child.id()
                );
                Self {
                    url: server.url(),
                    private: Some(server),
                }
            }
            Err(StartError::NotInstalled(e)) => {
                eprintln!("nothing answered at {probe}, and `redis-server` cannot be run: {e}");
                eprintln!("{INSTALL_HINT}");
                std::process::exit(2);
            }
            Err(StartError::Failed(why)) => {
                eprintln!("nothing answered at {probe}, and a private redis-server failed: {why}");
                eprintln!(
                    "point REDIS_URL at a server you have, e.g. REDIS_URL=redis://127.0.0.1:6380"
                );
                std::process::exit(2);
            }
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to the server.
    ///
    /// Its liveness key is turned off: an example writes nothing outside its own key prefix, and
    /// that key (`ruecache:live:*`) would be. Without it, the locks of an example killed
    /// mid-fetch block others until their lock TTL ends instead of for the liveness window.
    pub async fn connect(&self) -> Result<ruecache::Connection, ruecache::Error> {
        ruecache::Connection::open(&self.url)
            .await?
            .liveness_window(None)
    }

    /// Stops the private server, if the example started one, saying so.
    pub fn stop(mut self) {
        if let Some(server) = self.private.take() {
            let url = server.url();
            drop(server);
            eprintln!("stopped the private redis-server at {url}");
        }
    }
}

/// Deletes every key under `prefix` (the data keys, which start with it, and any key derived from
/// them, `{tag}` + byte `0xFF` + a kind byte + the data key, such as the version keys of the
/// previous protocol), with `SCAN` and `DEL` on a
/// standalone server, and returns how many there were. Nothing outside the prefix is touched.
///
/// # Panics
///
/// `prefix` contains a glob character (`*?[]\`) or no `:`.
pub async fn clear_prefix(
    conn: &ruecache::Connection,
    prefix: &str,
) -> Result<u64, ruecache::Error> {
    assert!(
        !prefix.contains(['*', '?', '[', ']', '\\']) && prefix.contains(':'),
        "a plain key prefix such as `app:widgets:`, got {prefix:?}"
    );
    let data = [prefix.as_bytes(), b"*"].concat();
    let derived = [b"{*}\xff[vl]".as_slice(), prefix.as_bytes(), b"*"].concat();
    let mut conn = conn.clone();
    let mut deleted = 0;
    for pattern in [data, derived] {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
                deleted += n;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(deleted)
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Connects to `url` and sends `PING`, within [`PROBE_TIMEOUT`].
async fn ping(url: &str) -> Result<(), String> {
    let probe = async {
        let mut conn = ruecache::Connection::open(url).await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(ruecache::Error::from)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// A `redis-server` process on a free loopback port, with no persistence, in a temporary
/// directory. Dropping it kills the process and removes the directory.
#[derive(Debug)]
struct PrivateServer {
    port: u16,
    child: Child,
    /// Removed on drop, after the process is gone.
    dir: TempDir,
}

enum StartError {
    /// `redis-server` cannot be run at all.
    NotInstalled(io::Error),
    /// It ran but did not come up.
    Failed(String),
}

impl PrivateServer {
    /// Starts a server on a free loopback port, trying other ports if it exits early.
    async fn start() -> Result<Self, StartError> {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::spawn()?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(Ready::PortTaken(log)) => failures.push(log),
                Err(Ready::Failed(why)) => return Err(StartError::Failed(why)),
            }
        }
        Err(StartError::Failed(format!(
            "it did not come up in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        )))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn() -> Result<Self, StartError> {
        let failed = |what: &str, e: io::Error| StartError::Failed(format!("{what}: {e}"));
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|e| failed("no free loopback port", e))?
            .port();
        let dir = tempfile::Builder::new()
            .prefix("ruecache-example-redis-")
            .tempdir()
            .map_err(|e| failed("cannot create a temporary directory", e))?;
        let log = File::create(dir.path().join("redis.log"))
            .map_err(|e| failed("cannot create its log file", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| failed("cannot create its log file", e))?;
        let bin = env_value("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        tie_to_this_process(&mut cmd);
        let child = cmd.spawn().map_err(StartError::NotInstalled)?;
        Ok(Self { port, child, dir })
    }

    /// Waits until the server answers and is this process (not another one on the same port).
    async fn wait_ready(&mut self) -> Result<(), Ready> {
        let deadline = Instant::now() + READY_DEADLINE;
        let pid = self.child.id();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = read_log(self.dir.path());
                let why = format!("redis-server exited with {status}; its log:\n{log}");
                // Another process took the port meanwhile: another port will do. Anything else
                // (a bad argument, say) fails the same way again.
                return Err(if log.contains("in use") {
                    Ready::PortTaken(why)
                } else {
                    Ready::Failed(why)
                });
            }
            if let Ok(info) = self.info_server().await {
                if info
                    .lines()
                    .any(|l| l.trim() == format!("process_id:{pid}"))
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Ready::Failed(format!(
                    "redis-server did not answer within {READY_DEADLINE:?}; its log:\n{}",
                    read_log(self.dir.path())
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn info_server(&self) -> Result<String, ruecache::Error> {
        let mut conn = ruecache::Connection::open(&self.url()).await?;
        Ok(redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?)
    }
}

enum Ready {
    PortTaken(String),
    Failed(String),
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` is removed after this.
    }
}

/// The last 4 KiB of the server's log.
fn read_log(dir: &Path) -> String {
    let log = std::fs::read(dir.join("redis.log")).unwrap_or_default();
    String::from_utf8_lossy(&log[log.len().saturating_sub(4096)..]).into_owned()
}

/// Makes the server stop when this process ends, however it ends. On Linux the server runs in
/// its own process group, so that a Ctrl-C in the terminal reaches only the example, which then
/// shuts down in order (or dies), and it gets SIGTERM when the thread that started it ends
/// (`PR_SET_PDEATHSIG`): the examples start it from `main`'s thread, which lives as long as
/// the process. Elsewhere it shares the example's process group, so a Ctrl-C stops both.
fn tie_to_this_process(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        // SAFETY: `prctl` is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
