//! In-process single-flight: concurrent callers sharing a connection never lock or fetch the same
//! id at the same time.
//!
//! Before a caller tries to lock its missing ids in Redis it *claims* them here, by data key. An
//! id nobody claims is led by this caller; an id already claimed by another caller is followed:
//! the follower waits until the leader is done with it (committed, found it cached, gave up or
//! was dropped) and then reads it from Redis again. Overlapping batches therefore split the work:
//! caller A asking {1, 2, 3} and caller B asking {2, 3, 4} at once means B leads 4 only.
//!
//! Followers read the value from Redis rather than taking it from the leader's hands: a value is
//! in Redis only if its commit found the version unchanged, so a follower never returns data
//! fetched before an invalidation that completed before the follower asked. If the value is not
//! there (the commit was refused as stale, the fetch failed, the leader was dropped), the follower
//! claims the id again and fills it itself.
//!
//! The registry belongs to a [`Connection`](crate::Connection) and is shared by its clones:
//! callers on separate connections coordinate through Redis locks only, as separate processes do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::keys::slot;

/// What a leader may hand its followers: the id's value in the cache's format. Only a leader
/// serving straight from the source (Redis being unreachable, see
/// [`fallback`](crate::fallback)) hands values over; otherwise followers read Redis.
pub(crate) type Sealed = Option<Arc<[u8]>>;

/// Shards of the registry, so that misses of unrelated ids rarely contend for one mutex.
const SHARDS: usize = 8;

/// The ids in flight on one connection, by data key.
#[derive(Default)]
pub(crate) struct Flights {
    shards: [Mutex<HashMap<Box<str>, watch::Receiver<Sealed>>>; SHARDS],
}

impl Flights {
    /// The shard that holds `key`, locked.
    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<Box<str>, watch::Receiver<Sealed>>> {
        self.shards[usize::from(slot(key.as_bytes())) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The ids one caller leads. Dropping it lands them all, which wakes their followers.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    /// Claimed data keys, each with the sender its followers wait on.
    held: HashMap<Box<str>, watch::Sender<Sealed>>,
}

/// Whether a claimed id is led by this caller or followed.
pub(crate) enum Claimed {
    Lead,
    /// Another caller leads it: wait on this, then read it again.
    Follow(Landing),
}

/// Resolves when the leader of an id is done with it.
pub(crate) struct Landing(watch::Receiver<Sealed>);

impl Landing {
    /// Waits until the leader lands the id; returns the value it handed over, if any.
    pub(crate) async fn wait(mut self) -> Sealed {
        // The channel closes when the leader lands the id.
        while self.0.changed().await.is_ok() {}
        self.0.borrow().clone()
    }
}

impl<'a> Flight<'a> {
    pub(crate) fn new(flights: &'a Flights) -> Self {
        Self {
            flights,
            held: HashMap::new(),
        }
    }

    /// Claims `key` for this caller, or reports who leads it.
    pub(crate) fn claim(&mut self, key: &str) -> Claimed {
        if self.held.contains_key(key) {
            return Claimed::Lead;
        }
        let mut shard = self.flights.shard(key);
        if let Some(leader) = shard.get(key) {
            return Claimed::Follow(Landing(leader.clone()));
        }
        let (sender, receiver) = watch::channel(None);
        shard.insert(key.into(), receiver);
        drop(shard);
        self.held.insert(key.into(), sender);
        Claimed::Lead
    }

    /// Lands one id this caller leads, handing its followers `value`.
    pub(crate) fn land_with(&mut self, key: &str, value: Arc<[u8]>) {
        if let Some(sender) = self.held.remove(key) {
            sender.send_replace(Some(value));
            self.flights.shard(key).remove(key);
        }
    }

    /// Lands every id this caller leads except those `keep` returns true for.
    pub(crate) fn land_except(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let flights = self.flights;
        self.held.retain(|key, _| {
            let kept = keep(key);
            if !kept {
                flights.shard(key).remove(key);
            }
            kept
        });
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.land_except(|_| false);
    }
}
