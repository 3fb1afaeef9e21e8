//! Lock-holder liveness: the locks of a process that died stop blocking others after a short
//! window instead of the whole lock TTL.
//!
//! Every lease's token starts with the id of the [`Connection`] that took it. Before a
//! connection takes its first lease it sets its liveness key, `ruecache:live:<id>`, with the liveness window
//! as TTL, and a background task refreshes it every third of the window for as long as the
//! connection (or a clone of it) exists. A caller that finds an id locked checks the holder's
//! liveness key; once it is gone, the holder is dead (or has been cut off from Redis for a whole
//! window) and its lease is taken over: the unlock script, given the dead holder's lease, deletes
//! the data key only if that lease is still in it, and the lease is then taken as usual.
//!
//! The stale-write guard does not depend on this: a holder wrongly declared dead finds its lease
//! gone (replaced by the taker's lease, or by the value it committed), and its commit, a
//! compare-and-set against its own lease, is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Cmd;
use tokio::sync::Mutex;
use tokio::time::MissedTickBehavior;
use tracing::debug;

use crate::{Connection, Error};

/// How long a connection's liveness key outlives its last refresh, unless set with
/// [`Connection::liveness_window`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // Twice the default: a process that stalls for a few seconds keeps its locks.
/// let conn = ruecache::Connection::open("redis://127.0.0.1:6379")
///     .await?
///     .liveness_window(Some(2 * ruecache::DEFAULT_LIVENESS_WINDOW))?;
/// # Ok(()) }
/// ```
pub const DEFAULT_LIVENESS_WINDOW: Duration = Duration::from_secs(2);

/// The shortest liveness window [`Connection::liveness_window`] accepts.
pub(crate) const MIN_LIVENESS_WINDOW: Duration = Duration::from_millis(100);

/// The prefix of every liveness key.
const PREFIX: &[u8] = b"ruecache:live:";

/// The length of a connection's id at the start of its lock tokens.
pub(crate) const ID_LEN: usize = 16;

/// One connection's liveness: its id, window, and whether its key is kept alive.
#[derive(Debug)]
pub(crate) struct Liveness {
    id: [u8; ID_LEN],
    window: Option<Duration>,
    /// Whether the refresh task runs (cleared when it ends, also when its runtime drops it).
    running: AtomicBool,
    /// Held while the key is set and the task started, so that only one caller does it.
    starting: Mutex<()>,
}

impl Liveness {
    /// A new id; `None` for a connection without a liveness key, whose id is not hex, so that
    /// its locks are never taken over.
    pub(crate) fn new(window: Option<Duration>) -> Self {
        let id = if window.is_some() {
            random_hex()
        } else {
            [b'x'; ID_LEN]
        };
        Self {
            id,
            window,
            running: AtomicBool::new(false),
            starting: Mutex::new(()),
        }
    }

    pub(crate) fn id(&self) -> &[u8; ID_LEN] {
        &self.id
    }

    /// Makes sure this connection's liveness key exists and is kept alive. Called before the
    /// connection takes locks; once the refresh task runs it costs one atomic load. If the task
    /// stopped (its runtime was shut down), the next call starts it again.
    pub(crate) async fn ensure(self: &Arc<Self>, conn: &Connection) -> Result<(), Error> {
        let Some(window) = self.window else {
            return Ok(());
        };
        if self.running.load(Ordering::Acquire) {
            return Ok(());
        }
        let _starting = self.starting.lock().await;
        if self.running.load(Ordering::Acquire) {
            return Ok(());
        }
        let key = key(&self.id);
        set(&mut conn.without_liveness(), &key, window).await?;
        self.running.store(true, Ordering::Release);
        let running = Running(Arc::downgrade(self));
        tokio::spawn(refresh(running, conn.without_liveness(), key, window));
        Ok(())
    }
}

/// Owned by the refresh task: marks the task as stopped when it ends or is dropped.
struct Running(Weak<Liveness>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(liveness) = self.0.upgrade() {
            liveness.running.store(false, Ordering::Release);
        }
    }
}

/// 16 random hex digits: a connection's id, or the random half of a lock token.
pub(crate) fn random_hex() -> [u8; ID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u64>();
    std::array::from_fn(|i| HEX[(n >> (60 - 4 * i)) as usize & 0xF])
}

/// The liveness key of the connection that took a lease, if `token` is one of our tokens.
pub(crate) fn holder_key(token: &[u8]) -> Option<String> {
    let id = token.get(..ID_LEN)?;
    if token.len() != crate::fill::lease::TOKEN_LEN || !id.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(key(id))
}

fn key(id: &[u8]) -> String {
    // Both parts are ASCII.
    [PREFIX, id].concat().into_iter().map(char::from).collect()
}

async fn set(conn: &mut Connection, key: &str, window: Duration) -> Result<(), Error> {
    let mut cmd = Cmd::new();
    cmd.arg("SET")
        .arg(key)
        .arg("1")
        .arg("PX")
        .arg(window.as_millis() as u64);
    cmd.exec_async(conn).await?;
    Ok(())
}

/// Refreshes the key until the last clone of its connection is dropped, then deletes it.
async fn refresh(running: Running, mut conn: Connection, key: String, window: Duration) {
    let mut tick = tokio::time::interval(window / 3);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: the key was just set
    loop {
        tick.tick().await;
        if running.0.strong_count() == 0 {
            let _ = redis::cmd("DEL").arg(&key).exec_async(&mut conn).await;
            return;
        }
        let refreshed = tokio::time::timeout(window / 3, set(&mut conn, &key, window)).await;
        if !matches!(refreshed, Ok(Ok(()))) {
            // Others may take this connection's locks over; its commits are then refused.
            debug!("could not refresh the liveness key; retrying");
        }
    }
}
