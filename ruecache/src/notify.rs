//! Wake-ups for callers waiting on a lock another process holds.
//!
//! The commit and unlock scripts publish on an id's wake-up channel (`{tag}` `0xFF` `n`, see
//! [`keys`](crate::keys)) whenever they release its lock: `PUBLISH` on a standalone server,
//! `SPUBLISH` on a cluster, where the channel is a shard channel in the lock's own slot, so only
//! that slot's node carries the message.
//!
//! A [`Notifier`] belongs to one [`Connection`](crate::Connection) and its clones. On the first
//! wait it opens its own RESP3 connection for subscriptions (to the standalone server, or a
//! cluster connection that sends each `SSUBSCRIBE` to its channel's node), which then serves
//! every waiting caller of the connection. A waiting caller holds an [`Interest`]: it registers
//! its channels, and a message on any of them wakes it. A channel is subscribed while someone
//! waits on it and unsubscribed when its last waiter leaves.
//!
//! A wake-up is a hint: the waiter reads again (and may find the lock taken by someone else),
//! and it still polls with its backoff, which covers a lost message, a lock that expired
//! without a release, and a server or user that cannot publish or subscribe. If subscribing
//! fails with anything but a network error (`NOPERM`, a server without RESP3), the notifier
//! turns itself off and its callers only poll.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use foldhash::fast::RandomState;
use futures_util::future::try_join_all;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisError, RedisResult, Value};
use tokio::sync::Notify;
use tracing::{debug, warn};

/// The subscription side of one connection (and its clones).
pub(crate) struct Notifier {
    waiters: Arc<Waiters>,
    /// Held while subscribing or unsubscribing, so the server sees those in the order the
    /// waiters' state changed.
    link: tokio::sync::Mutex<Link>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("off", &self.waiters.off.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

enum Opener {
    Standalone {
        client: redis::Client,
        config: redis::AsyncConnectionConfig,
    },
    Cluster(ClusterClient),
}

struct Link {
    /// `None` when the client for subscriptions could not be made (wake-ups are then off).
    opener: Option<Opener>,
    conn: Option<Subscriber>,
}

enum Subscriber {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Who waits for which channel; shared with the subscription connection's push handler.
#[derive(Default)]
struct Waiters {
    state: Mutex<State>,
    /// Subscribing failed for good: callers poll.
    off: AtomicBool,
}

#[derive(Default)]
struct State {
    channels: HashMap<Box<[u8]>, Channel>,
    /// The standalone subscription connection was lost: open a new one.
    lost: bool,
    next_waiter: u64,
}

#[derive(Default)]
struct Channel {
    /// The server confirmed the subscription, and it was not lost since.
    subscribed: bool,
    waiters: Vec<(u64, Arc<Notify>)>,
}

impl Waiters {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the subscription connection for every push message; must not block.
    fn on_push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                let Some(Value::BulkString(channel)) = info.data.first() else {
                    return;
                };
                if let Some(channel) = self.state().channels.get(channel.as_slice()) {
                    for (_, notify) in &channel.waiters {
                        notify.notify_one();
                    }
                }
            }
            PushKind::Disconnection => {
                // Messages may have been missed: every waiter reads again, and subscribes again.
                let mut state = self.state();
                state.lost = true;
                for channel in state.channels.values_mut() {
                    channel.subscribed = false;
                    for (_, notify) in &channel.waiters {
                        notify.notify_one();
                    }
                }
            }
            _ => {}
        }
    }
}

impl Notifier {
    /// A notifier that subscribes through its own connection to the server `client` reaches.
    pub(crate) fn standalone(client: &redis::Client, response_timeout: Duration) -> Self {
        let waiters = Arc::<Waiters>::default();
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let handler = Arc::downgrade(&waiters);
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(response_timeout))
            .set_push_sender(push_handler(handler));
        let opener = match redis::Client::open(info) {
            Ok(client) => Some(Opener::Standalone { client, config }),
            Err(e) => {
                warn!(error = %e, "cannot set up wake-ups; waiters poll");
                None
            }
        };
        Self::with(waiters, opener)
    }

    /// A notifier that subscribes (`SSUBSCRIBE`) through its own cluster connection, built
    /// from `builder`.
    pub(crate) fn cluster(builder: redis::cluster::ClusterClientBuilder) -> Self {
        let waiters = Arc::<Waiters>::default();
        let handler = Arc::downgrade(&waiters);
        let opener = match builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_handler(handler))
            .build()
        {
            Ok(client) => Some(Opener::Cluster(client)),
            Err(e) => {
                warn!(error = %e, "cannot set up wake-ups; waiters poll");
                None
            }
        };
        Self::with(waiters, opener)
    }

    fn with(waiters: Arc<Waiters>, opener: Option<Opener>) -> Self {
        if opener.is_none() {
            waiters.off.store(true, Ordering::Relaxed);
        }
        Self {
            waiters,
            link: tokio::sync::Mutex::new(Link { opener, conn: None }),
        }
    }

    /// Whether wake-ups are off for good on this connection.
    pub(crate) fn is_off(&self) -> bool {
        self.waiters.off.load(Ordering::Relaxed)
    }

    /// A new, empty interest: register channels with [`Interest::watch`].
    pub(crate) fn interest(self: &Arc<Self>) -> Interest {
        let id = {
            let mut state = self.waiters.state();
            state.next_waiter += 1;
            state.next_waiter
        };
        Interest {
            notifier: self.clone(),
            id,
            notify: Arc::new(Notify::new()),
            channels: HashSet::default(),
        }
    }

    /// Brings the server's subscriptions in line with the waiters: subscribes every channel
    /// someone waits on, unsubscribes those nobody waits on any more. Returns once the server
    /// confirmed them.
    async fn sync(&self) -> RedisResult<()> {
        let mut link = self.link.lock().await;
        let (subscribe, unsubscribe, lost) = {
            let mut state = self.waiters.state();
            let lost = std::mem::take(&mut state.lost);
            let mut subscribe = Vec::new();
            let mut unsubscribe = Vec::new();
            state.channels.retain(|name, channel| {
                if channel.waiters.is_empty() {
                    if channel.subscribed && !lost {
                        unsubscribe.push(name.to_vec());
                    }
                    false
                } else {
                    if !channel.subscribed {
                        subscribe.push(name.to_vec());
                    }
                    true
                }
            });
            (subscribe, unsubscribe, lost)
        };
        if lost {
            if let Some(Subscriber::Standalone(_)) = link.conn {
                link.conn = None;
            }
        }
        if !unsubscribe.is_empty() {
            if let Some(conn) = &link.conn {
                if let Err(e) = conn.unsubscribe(&unsubscribe).await {
                    debug!(error = %e, "could not unsubscribe from wake-up channels");
                }
            }
        }
        if subscribe.is_empty() {
            return Ok(());
        }
        let result = async {
            if link.conn.is_none() {
                let opener = link.opener.as_ref().ok_or_else(off)?;
                link.conn = Some(opener.open().await?);
                debug!("opened the wake-up subscription connection");
            }
            let conn = link.conn.as_ref().expect("just opened");
            conn.subscribe(&subscribe).await
        }
        .await;
        match result {
            Ok(()) => {
                let mut state = self.waiters.state();
                for name in subscribe {
                    state
                        .channels
                        .entry(name.into_boxed_slice())
                        .or_default()
                        .subscribed = true;
                }
                Ok(())
            }
            Err(e) => {
                if is_network(&e) {
                    if let Some(Subscriber::Standalone(_)) = link.conn {
                        link.conn = None;
                    }
                } else {
                    warn!(error = %e, "cannot subscribe to wake-ups; waiters poll instead");
                    self.waiters.off.store(true, Ordering::Relaxed);
                    link.conn = None;
                }
                Err(e)
            }
        }
    }
}

fn push_handler(waiters: Weak<Waiters>) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync {
    move |info| {
        let waiters = waiters.upgrade().ok_or(())?;
        waiters.on_push(info);
        Ok(())
    }
}

fn is_network(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

impl Opener {
    async fn open(&self) -> RedisResult<Subscriber> {
        match self {
            Opener::Standalone { client, config } => Ok(Subscriber::Standalone(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            )),
            Opener::Cluster(client) => {
                Ok(Subscriber::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl Subscriber {
    async fn subscribe(&self, channels: &[Vec<u8>]) -> RedisResult<()> {
        match self {
            Subscriber::Standalone(conn) => conn.clone().subscribe(channels).await,
            // One command per channel: the channels of one command must share a slot.
            Subscriber::Cluster(conn) => {
                try_join_all(
                    channels
                        .iter()
                        .map(|c| async move { conn.clone().ssubscribe(c).await }),
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn unsubscribe(&self, channels: &[Vec<u8>]) -> RedisResult<()> {
        match self {
            Subscriber::Standalone(conn) => conn.clone().unsubscribe(channels).await,
            Subscriber::Cluster(conn) => {
                try_join_all(
                    channels
                        .iter()
                        .map(|c| async move { conn.clone().sunsubscribe(c).await }),
                )
                .await?;
                Ok(())
            }
        }
    }
}

/// One waiting caller's registration: woken by a message on any of its channels.
pub(crate) struct Interest {
    notifier: Arc<Notifier>,
    id: u64,
    notify: Arc<Notify>,
    /// A set: a batch of many ids registers many channels, round after round.
    channels: HashSet<Box<[u8]>, RandomState>,
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interest")
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl Interest {
    /// Adds `channels` to this interest and returns once the server confirmed every
    /// subscription this interest needs. Returns `true` if that took a new registration or
    /// subscription: a release published before it was not heard, so the caller must read
    /// again before it waits.
    ///
    /// # Errors
    ///
    /// Wake-ups are off, or subscribing failed: the caller polls.
    pub(crate) async fn watch<'a>(
        &mut self,
        channels: impl IntoIterator<Item = &'a [u8]>,
    ) -> RedisResult<bool> {
        if self.notifier.is_off() {
            return Err(off());
        }
        let mut fresh = false;
        {
            let mut state = self.notifier.waiters.state();
            for name in channels {
                if self.channels.contains(name) {
                    continue;
                }
                state
                    .channels
                    .entry(name.into())
                    .or_default()
                    .waiters
                    .push((self.id, self.notify.clone()));
                self.channels.insert(name.into());
                fresh = true;
            }
            for name in &self.channels {
                fresh |= !state.channels.get(name).is_some_and(|c| c.subscribed);
            }
        }
        if fresh {
            self.notifier.sync().await?;
        }
        Ok(fresh)
    }

    /// Waits for a message on one of this interest's channels (or one that came since the
    /// last wait).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Whether this interest can be woken: it has channels and wake-ups are on.
    pub(crate) fn is_listening(&self) -> bool {
        !self.channels.is_empty() && !self.notifier.is_off()
    }
}

fn off() -> RedisError {
    RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "wake-ups are off on this connection",
    ))
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut idle = false;
        {
            let mut state = self.notifier.waiters.state();
            for name in &self.channels {
                if let Some(channel) = state.channels.get_mut(name) {
                    channel.waiters.retain(|(id, _)| *id != self.id);
                    idle |= channel.waiters.is_empty();
                }
            }
        }
        if !idle {
            return;
        }
        // Unsubscribe in the background: nobody waits for it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let notifier = self.notifier.clone();
            runtime.spawn(async move {
                if let Err(e) = notifier.sync().await {
                    debug!(error = %e, "could not update wake-up subscriptions");
                }
            });
        }
    }
}
