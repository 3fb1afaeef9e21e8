//! Private `redis-server` processes: start, wait until ready, kill, restart, clean up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use crate::tls::TestCa;
use crate::Secure;

/// How long a server gets to answer `PING` after it was spawned.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How many ports are tried when a server exits early (usually: the port was taken meanwhile).
const START_ATTEMPTS: usize = 5;
/// Redis Cluster's bus port is the client port plus this offset.
const CLUSTER_BUS_OFFSET: u16 = 10_000;
/// The all-powerful user the harness adds to servers started with [`Secure::acl`], for
/// checking readiness and for [`RedisServer::connect`].
pub(crate) const ADMIN_USER: &str = "ruecache-harness";

/// A `redis-server` process this harness started, on a private loopback port and a private
/// temporary directory.
///
/// Dropping it kills the process (SIGKILL) and removes its directory. Processes still alive
/// when the test binary exits are killed by an `atexit` handler; on Linux they are also tied
/// to the test process with `PR_SET_PDEATHSIG`, so they die even if the binary is killed.
///
/// Get one with [`start_standalone_with`](crate::start_standalone_with).
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    mode: Mode,
    extra_args: Vec<String>,
    secure: Secure,
    /// The password of [`ADMIN_USER`], with [`Secure::acl`].
    admin_password: Option<String>,
    child: Option<Child>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Standalone,
    ClusterNode,
}

impl RedisServer {
    /// Starts a server on a free port, retrying on other ports if it exits early.
    pub(crate) fn launch(mode: Mode, extra_args: &[&str]) -> Result<Self, String> {
        Self::launch_secure(mode, Secure::default(), extra_args)
    }

    /// [`launch`](Self::launch), with TLS and/or ACL users (ACL users on standalone servers
    /// only; a TLS cluster node speaks TLS on its cluster bus too).
    pub(crate) fn launch_secure(
        mode: Mode,
        secure: Secure,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        assert!(
            mode == Mode::Standalone || !secure.acl,
            "servers with ACL users are standalone"
        );
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port(mode == Mode::ClusterNode)
                .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
            let dir = tempfile::Builder::new()
                .prefix(&format!("ruecache-redis-{port}-"))
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?
                .keep();
            register_dir(&dir);
            let mut server = RedisServer {
                port,
                dir,
                mode,
                extra_args: extra_args.clone(),
                secure,
                admin_password: secure
                    .acl
                    .then(|| format!("{:032x}", rand::random::<u128>())),
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Dropping `server` kills whatever is left and removes its directory.
                Err(StartError::Retry(why)) => failures.push(why),
                Err(StartError::Fatal(why)) => return Err(why),
            }
        }
        Err(format!(
            "redis-server did not come up after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        ))
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`, or `rediss://127.0.0.1:<port>/` with [`Secure::tls`]
    /// (trust [`TestCa::shared`] to connect). Without credentials: with [`Secure::acl`] use
    /// [`url_as`](Self::url_as).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/", self.scheme(), self.port)
    }

    /// [`url`](Self::url) with a user name and password (used as given: keep them to
    /// characters that need no percent-encoding).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}/",
            self.scheme(),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        if self.secure.tls {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The URL [`connect`](Self::connect) uses: [`url`](Self::url), or with
    /// [`Secure::acl`] the harness's own user, which may run every command on every key.
    pub fn admin_url(&self) -> String {
        match &self.admin_password {
            Some(password) => self.url_as(ADMIN_USER, password),
            None => self.url(),
        }
    }

    /// A client for `url` (one of this server's URLs) that trusts the test CA when the server
    /// uses TLS.
    ///
    /// # Errors
    ///
    /// The URL is invalid.
    pub fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        if self.secure.tls {
            redis::Client::build_with_tls(url, TestCa::shared().tls_certificates())
        } else {
            redis::Client::open(url)
        }
    }

    /// Opens a connection with `url` (one of this server's URLs, say from
    /// [`url_as`](Self::url_as)): [`ruecache::Connection::open`] on a plain server; on a TLS
    /// server a multiplexed connection from [`client`](Self::client) (5 s response timeout).
    ///
    /// # Errors
    ///
    /// The server refuses the connection, for example a wrong password.
    pub async fn open(&self, url: &str) -> Result<ruecache::Connection, ruecache::Error> {
        if !self.secure.tls {
            return ruecache::Connection::open(url).await;
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(ruecache::DEFAULT_RESPONSE_TIMEOUT));
        let conn = self
            .client(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(conn.into())
    }

    /// The server's working directory (`--dir`); its output goes to `redis.log` in there.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, or `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's output so far (the last 8 KiB of `redis.log`).
    pub fn log(&self) -> String {
        read_log_tail(&self.dir)
    }

    /// A new multiplexed connection (5 s response timeout) to this server, as the harness's
    /// own user with [`Secure::acl`] (see [`admin_url`](Self::admin_url)).
    pub async fn connect(&self) -> ruecache::Connection {
        let url = self.admin_url();
        self.open(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    /// A new `ConnectionManager` (reconnects after [`restart`](Self::restart)) to this server,
    /// as [`connect`](Self::connect)'s user.
    pub async fn connection_manager(&self) -> ruecache::Connection {
        let client = self
            .client(&self.admin_url())
            .unwrap_or_else(|e| panic!("invalid redis url {}: {e}", self.url()));
        crate::open_manager(client, &self.url()).await
    }

    /// Kills the process with SIGKILL (no shutdown, no save) and waits until it is gone.
    /// Clients see their connections drop. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            unregister_pid(pid);
        }
    }

    /// Kills the process if it is running, then starts a fresh one (empty dataset) with the
    /// same port and arguments, and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// The server does not come back (for example, something else took the port meanwhile).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(StartError::Retry(why) | StartError::Fatal(why)) = self.spawn_and_wait() {
            self.kill();
            panic!("redis-server did not restart on port {}: {why}", self.port);
        }
    }

    fn command(&self) -> io::Result<Command> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let port = self.port.to_string();
        let mut cmd = Command::new(redis_server_bin());
        if self.secure.tls {
            // TLS only: no plain port. The harness itself checks readiness on a private Unix
            // socket, so it needs no TLS client of its own.
            let files = TestCa::shared().write_server_files(&self.dir)?;
            cmd.args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(&files.cert)
                .arg("--tls-key-file")
                .arg(&files.key)
                .arg("--tls-ca-cert-file")
                .arg(&files.ca)
                .args(["--tls-auth-clients", "no"])
                .arg("--unixsocket")
                .arg(self.socket_path())
                .args(["--unixsocketperm", "700"]);
        } else {
            cmd.args(["--port", &port]);
        }
        if let Some(password) = &self.admin_password {
            cmd.args(["--user", "default", "off"]).args([
                "--user",
                ADMIN_USER,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if self.mode == Mode::ClusterNode {
            if self.secure.tls {
                cmd.args(["--tls-cluster", "yes"]);
            }
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "5000"]);
        }
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        Ok(cmd)
    }

    /// Spawns the process and waits until it answers `PING` (and is really this process).
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let cmd = self
            .command()
            .map_err(|e| StartError::Fatal(format!("cannot prepare redis-server: {e}")))?;
        let log_start = fs::metadata(self.dir.join("redis.log")).map_or(0, |m| m.len());
        let child = spawn_tied(cmd).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (install it, e.g. `apt-get install redis-server`, set REDIS_SERVER_BIN, \
                 or point REDIS_URL at a server)"
            } else {
                ""
            };
            StartError::Fatal(format!("cannot run `{}`: {e}{hint}", redis_server_bin()))
        })?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let child = self.child.as_mut().expect("child was just set");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                unregister_pid(pid);
                let log = self.log();
                let why = format!(
                    "redis-server on port {} exited with {status}; log:\n{log}",
                    self.port
                );
                // Another process took the port (or the cluster bus port) meanwhile: try
                // another one. Anything else (a bad argument, say) fails the same way again.
                let this_run = fs::read(self.dir.join("redis.log"))
                    .ok()
                    .and_then(|bytes| bytes.get(log_start as usize..).map(<[u8]>::to_vec))
                    .unwrap_or_default();
                let port_taken = String::from_utf8_lossy(&this_run).contains("in use");
                return Err(if port_taken {
                    StartError::Retry(why)
                } else {
                    StartError::Fatal(why)
                });
            }
            if let Ok(info) = self.query(&["INFO", "server"]) {
                if info_field(&info, "process_id") == Some(pid.to_string().as_str()) {
                    return Ok(());
                }
                // Someone else answers on this port: ours will fail to bind and exit.
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.kill();
                return Err(StartError::Fatal(format!(
                    "redis-server on port {} did not answer within {READY_DEADLINE:?}; log:\n{log}",
                    self.port
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl RedisServer {
    /// The CA certificate file a TLS client of this server trusts (`None` without TLS).
    pub(crate) fn tls_ca_file(&self) -> Option<PathBuf> {
        self.secure.tls.then(|| crate::tls::ca_file(&self.dir))
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// Sends one command over a fresh blocking connection, the way the harness can reach
    /// this server: on the Unix socket with TLS, as [`ADMIN_USER`] with ACL users. Returns a
    /// simple-string, integer or bulk-string reply as text. Used before any async runtime is
    /// involved.
    pub(crate) fn query(&self, args: &[&str]) -> io::Result<String> {
        let mut commands = Vec::with_capacity(2);
        if let Some(password) = &self.admin_password {
            commands.push(vec!["AUTH", ADMIN_USER, password.as_str()]);
        }
        commands.push(args.to_vec());
        if self.secure.tls {
            #[cfg(unix)]
            {
                let stream = UnixStream::connect(self.socket_path())?;
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                stream.set_write_timeout(Some(Duration::from_secs(2)))?;
                return exchange(stream, &commands);
            }
            #[cfg(not(unix))]
            return Err(io::Error::other("TLS test servers need Unix sockets"));
        }
        exchange(tcp(self.port)?, &commands)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
        unregister_dir(&self.dir);
    }
}

enum StartError {
    /// Worth trying again on another port.
    Retry(String),
    /// Trying again will not help.
    Fatal(String),
}

/// The `redis-server` executable: `$REDIS_SERVER_BIN` or `redis-server` from `PATH`.
fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

/// The `redis-cli` executable: `$REDIS_CLI_BIN` or `redis-cli` from `PATH`.
pub(crate) fn redis_cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// A loopback port nothing listens on right now (and, for cluster nodes, whose bus port
/// `port + 10000` is free too). Another process may still take it before the server binds:
/// callers retry.
fn free_port(with_bus: bool) -> io::Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if !with_bus {
            return Ok(port);
        }
        let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other(
        "no free port pair (port, port + 10000) found",
    ))
}

fn read_log_tail(dir: &Path) -> String {
    const TAIL: usize = 8 * 1024;
    match fs::read(dir.join("redis.log")) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(TAIL);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(no log: {e})"),
    }
}

/// The value of `name:value` in `INFO`-style text.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

fn tcp(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(stream)
}

/// Sends commands one after another over `stream`; returns the last reply, or the first
/// error reply.
fn exchange(stream: impl io::Read + Write, commands: &[Vec<&str>]) -> io::Result<String> {
    let mut reader = BufReader::new(stream);
    let mut last = String::new();
    for args in commands {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        reader.get_mut().write_all(&request)?;
        last = read_reply(&mut reader)?;
    }
    Ok(last)
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    let line = String::from_utf8_lossy(&line);
    let line = line.trim_end();
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, format!("reply {line:?}"));
    match line.as_bytes().first() {
        Some(b'+' | b':') => Ok(line[1..].to_owned()),
        Some(b'-') => Err(io::Error::other(format!("redis error: {}", &line[1..]))),
        Some(b'$') => {
            let len: usize = line[1..].parse().map_err(|_| invalid())?;
            let mut body = vec![0; len + 2];
            io::Read::read_exact(reader, &mut body)?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        None => Err(io::ErrorKind::UnexpectedEof.into()),
        Some(_) => Err(invalid()),
    }
}

/// Runs a short-lived helper process (tied to this process like the servers), killing it if
/// it takes longer than `timeout`. Returns its exit status and combined output.
pub(crate) fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> io::Result<(std::process::ExitStatus, String)> {
    let out = tempfile::tempfile()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out.try_clone()?));
    let mut child = spawn_tied(cmd)?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            unregister_pid(pid);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "did not finish within {timeout:?}; output:\n{}",
                    read_all(out)
                ),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    };
    unregister_pid(pid);
    Ok((status, read_all(out)))
}

fn read_all(mut file: File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text
}

// ---- cleanup -------------------------------------------------------------------------------

/// Processes started by this harness and not yet reaped.
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Directories created by this harness and not yet removed.
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register_pid(pid: u32) {
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn()` that never unwinds.
        let rc = unsafe { libc::atexit(kill_all_at_exit) };
        assert_eq!(rc, 0, "atexit registration failed");
    });
    lock(&PIDS).push(pid);
}

fn unregister_pid(pid: u32) {
    lock(&PIDS).retain(|&p| p != pid);
}

fn register_dir(dir: &Path) {
    lock(&DIRS).push(dir.to_owned());
}

fn unregister_dir(dir: &Path) {
    lock(&DIRS).retain(|d| d != dir);
}

/// Runs when the test binary exits (the test runner ends with `std::process::exit`, and
/// statics such as the shared servers are never dropped): SIGKILLs every server still
/// running, reaps it, and removes the temporary directories.
extern "C" fn kill_all_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let pids: Vec<u32> = take_all(&PIDS).unwrap_or_default();
        for &pid in &pids {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: plain syscalls on our own child processes.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for &pid in &pids {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: as above; reaps the child so its directory is no longer in use.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            }
        }
        let dirs: Vec<PathBuf> = take_all(&DIRS).unwrap_or_default();
        for dir in dirs {
            let _ = fs::remove_dir_all(dir);
        }
    });
}

/// Empties `m`; `try_lock` so the exit never hangs on a lock a still-running thread holds.
fn take_all<T: Default>(m: &Mutex<T>) -> Option<T> {
    for _ in 0..50 {
        match m.try_lock() {
            Ok(mut guard) => return Some(std::mem::take(&mut *guard)),
            Err(TryLockError::Poisoned(p)) => return Some(std::mem::take(&mut *p.into_inner())),
            Err(TryLockError::WouldBlock) => thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}

/// Spawns `cmd` and records its pid for the exit handler.
///
/// On Linux the child also gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the test
/// process even when that is killed by a signal and no `atexit` handler runs. The death
/// signal fires when the *thread* that forked exits, and test threads are short-lived, so
/// every spawn goes through one keeper thread that lives as long as the process.
fn spawn_tied(cmd: Command) -> io::Result<Child> {
    let child = spawn_via_keeper(cmd)?;
    register_pid(child.id());
    Ok(child)
}

#[cfg(target_os = "linux")]
fn spawn_via_keeper(cmd: Command) -> io::Result<Child> {
    use std::sync::mpsc;
    use std::sync::OnceLock;

    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("redis-keeper".into())
            .spawn(move || {
                // The sender lives in a static, so this loop ends only with the process.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut cmd));
                }
            })
            .expect("cannot start the process keeper thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .send((cmd, tx))
        .map_err(|_| io::Error::other("process keeper thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("process keeper thread is gone"))?
}

#[cfg(target_os = "linux")]
fn spawn_with_death_signal(cmd: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;

    // SAFETY: getpid is always safe to call.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only makes async-signal-safe syscalls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(not(target_os = "linux"))]
fn spawn_via_keeper(mut cmd: Command) -> io::Result<Child> {
    cmd.spawn()
}
