//! Giving leases back: after a failed fetch, when the caller stops waiting, and when the lease
//! step itself fails. A release deletes the data key only while it still holds the caller's
//! lease (`unlock.lua`), so it can never remove a value or someone else's lease.

use std::future::Future;

use tokio::time::Instant;
use tracing::warn;

use super::deadline::within;
use super::lease::Lease;
use super::{Locked, Pending};
use crate::cache::{Shared, Spec};
use crate::keys::channel;
use crate::options::Wait;
use crate::scripts::{send, sharded_flag, Arg, Calls, UNLOCK};
use crate::Connection;

/// Leases held during a fetch. Released on error, panic or drop unless disarmed.
pub(super) struct LockGuard<'a, Id> {
    pub(super) conn: &'a Connection,
    pub(super) spec: &'a Shared<Spec>,
    pub(super) lease: Lease,
    pub(super) locked: &'a [Locked<Id>],
    pub(super) taken_at: Instant,
}

impl<Id> LockGuard<'_, Id> {
    pub(super) fn disarm(&mut self) {
        self.locked = &[];
    }

    /// Releases the leases now, unless they are about to expire anyway.
    pub(super) async fn release(&mut self) {
        if let Some(unlock) = self.unlock() {
            unlock.await;
        }
        self.disarm();
    }

    fn unlock(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let options = &self.spec.options;
        let left = options.lock_ttl.saturating_sub(self.taken_at.elapsed());
        if self.locked.is_empty() || left < options.unlock_threshold {
            return None;
        }
        let keys = self.locked.iter().map(|l| l.key.clone()).collect();
        Some(unlock(self.conn.clone(), self.lease, keys, options.wait()))
    }
}

impl<Id> Drop for LockGuard<'_, Id> {
    fn drop(&mut self) {
        if let Some(unlock) = self.unlock() {
            spawn_unlock(self.conn, unlock);
        }
    }
}

/// Leases being taken (the lease step). If the step fails, one failed command fails it all, but
/// the others may have run and taken their leases; if the caller stops waiting, the commands
/// may still run once sent. Either way every lease of the round that is ours is released, in the
/// background, so that an error is not delayed by a server that is down. Disarmed once the
/// replies are in: from there on each lease is in the hands of its fetch's [`LockGuard`].
pub(super) struct Taking<'a, Id> {
    pub(super) conn: &'a Connection,
    pub(super) lease: Lease,
    pub(super) wait: Wait,
    pub(super) pending: &'a [Pending<Id>],
}

impl<Id> Taking<'_, Id> {
    pub(super) fn disarm(&mut self) {
        self.pending = &[];
    }
}

impl<Id> Drop for Taking<'_, Id> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let keys = self.pending.iter().map(|p| p.key.clone()).collect();
        spawn_unlock(
            self.conn,
            unlock(self.conn.clone(), self.lease, keys, self.wait),
        );
    }
}

/// Releases the leases of `keys` that hold `lease`; anything else in them is left alone.
pub(super) async fn unlock(conn: Connection, lease: Lease, keys: Vec<String>, wait: Wait) {
    let calls = unlock_calls(&conn, keys.iter().map(|k| (k.as_str(), lease.as_bytes())));
    let deadline = Instant::now() + wait.after;
    if let Err(e) = within(deadline, wait, send(&conn, calls)).await {
        warn!(error = %e, ids = keys.len(), "could not release leases; they expire at their TTL");
    }
}

/// Unlock script calls: each `(data key, lease)` deletes that data key if it holds `lease`
/// (flagged or not).
pub(super) fn unlock_calls<'a>(
    conn: &Connection,
    leases: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Calls {
    let sharded = sharded_flag(conn);
    let leases = leases.into_iter();
    let mut calls = Calls::new(&UNLOCK, leases.size_hint().0, leases.size_hint().0 * 96);
    for (key, lease) in leases {
        calls.push(
            &[key.as_bytes()],
            &[
                Arg::Bytes(lease),
                Arg::Bytes(&channel(key)),
                Arg::Bytes(sharded),
            ],
        );
    }
    calls
}

/// Runs an unlock in the background (from a `Drop`, which cannot wait), counted among `conn`'s
/// background writes.
pub(super) fn spawn_unlock(conn: &Connection, unlock: impl Future<Output = ()> + Send + 'static) {
    if !conn.background().spawn(unlock) {
        warn!("no tokio runtime to release leases; they expire at their TTL");
    }
}
