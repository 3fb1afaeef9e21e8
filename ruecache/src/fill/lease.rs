//! The lease: a filler's lock, held in the id's data key itself, and the token that names its
//! holder. The one place that knows their format.
//!
//! A lease is the envelope's marker byte, a kind byte (`L`, or `W` once a waiter flagged it: see
//! [`codec`](crate::codec)), a [`Token`] (the id of the connection that took it, see
//! [`liveness`](crate::liveness), followed by random hex digits), then its **deadline**: the
//! Unix time in milliseconds, big-endian, at which it expires by the taker's clock (now + lock
//! TTL). A token is never drawn twice, so a lease once deleted (by an invalidation, an eviction)
//! never comes back, and a commit that compares the data key with its own lease cannot be fooled.
//!
//! A lease expires at its deadline, not at its key's TTL: a waiter that finds it past its
//! deadline takes it over (a compare-and-set, as for a dead holder). Its key lives
//! [`GRACE`] longer, so that a fill whose fetch outlasted the lock TTL, and whose lease nobody
//! took over, still commits, as a lock that expired without anyone taking it allows. Only the
//! key's own expiry or eviction (which may hide an invalidation) refuses that commit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::{FLAGGED, LEASE, LEASE_LEN, MAGIC, PAYLOAD_START, REFRESH};
use crate::liveness::{self, ID_LEN};
use crate::Connection;

/// The length of a lock token.
pub(crate) const TOKEN_LEN: usize = 32;

/// How much longer than the lock TTL a lease's key lives: the longest a fill may take past its
/// deadline and still commit when no one took its lease over.
pub(crate) const GRACE: Duration = Duration::from_secs(600);

/// Milliseconds since the Unix epoch, by this process's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The lease of one round of the lease step: the caller's token and this round's deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease([u8; LEASE_LEN]);

impl Lease {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A lock token: the id of the connection that takes the lease, then random hex digits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token([u8; TOKEN_LEN]);

impl Token {
    /// A fresh token of `conn`.
    pub(crate) fn new(conn: &Connection) -> Self {
        let mut token = [0; TOKEN_LEN];
        token[..ID_LEN].copy_from_slice(conn.liveness().id());
        token[ID_LEN..].copy_from_slice(&liveness::random_hex());
        Self(token)
    }

    /// The lease this token puts in data keys now, with a deadline `lock_ttl` from now
    /// (unflagged: the scripts accept it flagged too).
    pub(crate) fn lease(&self, lock_ttl: Duration) -> Lease {
        self.lease_of(LEASE, lock_ttl)
    }

    /// The refresh lease this token puts before a value it refreshes, with a deadline `ttl`
    /// from now (see [`refresh`](super::refresh)). The commit script compares it with the
    /// start of the data key.
    pub(crate) fn refresh_lease(&self, ttl: Duration) -> Lease {
        self.lease_of(REFRESH, ttl)
    }

    fn lease_of(&self, kind: u8, ttl: Duration) -> Lease {
        let deadline = now_ms().saturating_add(ttl.as_millis() as u64);
        let mut lease = [0; LEASE_LEN];
        lease[0] = MAGIC;
        lease[1] = kind;
        lease[PAYLOAD_START..PAYLOAD_START + TOKEN_LEN].copy_from_slice(&self.0);
        lease[PAYLOAD_START + TOKEN_LEN..].copy_from_slice(&deadline.to_be_bytes());
        Lease(lease)
    }
}

/// A lease another caller holds, as read from its data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// The lease's bytes as read (flagged or not): what the flag and takeover steps compare.
    pub(crate) lease: Vec<u8>,
    pub(crate) holder: Holder,
    /// The Unix time in milliseconds at which it expires, by its taker's clock.
    pub(crate) deadline: u64,
}

impl Held {
    /// Reads a data key's bytes as a lease; `None` if they are not one of ours (including a
    /// lease-shaped value whose token is not one of ours: written by hand, refilled as garbage).
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, Vec<u8>> {
        let (token, deadline) = match bytes.as_slice() {
            [MAGIC, LEASE | FLAGGED, rest @ ..] if rest.len() == TOKEN_LEN + 8 => {
                rest.split_at(TOKEN_LEN)
            }
            _ => return Err(bytes),
        };
        let deadline = u64::from_be_bytes(deadline.try_into().expect("8 bytes"));
        match holder(token) {
            Some(holder) => Ok(Self {
                lease: bytes,
                holder,
                deadline,
            }),
            None => Err(bytes),
        }
    }

    pub(crate) fn is_flagged(&self) -> bool {
        self.lease[1] == FLAGGED
    }

    /// The holder's token.
    pub(crate) fn token(&self) -> &[u8] {
        &self.lease[PAYLOAD_START..PAYLOAD_START + TOKEN_LEN]
    }

    /// Whether the lease is past its deadline at `now` (ms since the epoch): free to take over.
    /// The deadline is the taker's own (its lock TTL, which may differ from this caller's), so a
    /// lease is never cut short. Taking over a lease early (a clock running ahead) costs a
    /// second fetch, never a stale write: the first holder's commit finds another lease, and is
    /// refused.
    pub(crate) fn is_expired(&self, now: u64) -> bool {
        self.deadline <= now
    }

    /// The lease unflagged: what the unlock script takes to release it.
    pub(crate) fn unflagged(&self) -> Vec<u8> {
        let mut lease = self.lease.clone();
        lease[1] = LEASE;
        lease
    }
}

/// What a lease's token says about its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A token of a connection with a liveness key: a dead holder is found out by its key.
    Checked,
    /// A token of a connection without liveness (its id is all `x`): its lease always has the
    /// lock TTL of its taker, so it cannot block the id for longer.
    Unchecked,
}

fn holder(token: &[u8]) -> Option<Holder> {
    let hex = |part: &[u8]| part.iter().all(u8::is_ascii_hexdigit);
    if token.len() != TOKEN_LEN || !hex(&token[ID_LEN..]) {
        return None;
    }
    match &token[..ID_LEN] {
        id if hex(id) => Some(Holder::Checked),
        id if id.iter().all(|&b| b == b'x') => Some(Holder::Unchecked),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_parse_and_others_do_not() {
        let token = *b"0123456789abcdef0123456789abcdef";
        let ttl = Duration::from_secs(5);
        let lease = Token(token).lease(ttl);
        let held = Held::parse(lease.as_bytes().to_vec()).unwrap();
        assert_eq!(held.holder, Holder::Checked);
        assert!(!held.is_flagged());
        assert_eq!(held.token(), &token);
        let now = now_ms();
        assert!((now + 4_000..=now + 5_000).contains(&held.deadline));
        assert!(!held.is_expired(now));
        assert!(held.is_expired(now + 5_000), "past its deadline");
        let mut flagged = lease.as_bytes().to_vec();
        flagged[1] = FLAGGED;
        let held = Held::parse(flagged).unwrap();
        assert!(held.is_flagged());
        assert_eq!(held.unflagged(), lease.as_bytes().to_vec());
        let unchecked = [
            &[MAGIC, LEASE][..],
            b"xxxxxxxxxxxxxxxx0123456789abcdef",
            &now.to_be_bytes(),
        ]
        .concat();
        assert_eq!(Held::parse(unchecked).unwrap().holder, Holder::Unchecked);
        for garbage in [
            &b"not a lease"[..],
            &[MAGIC, LEASE, b'z'],
            &[
                &[MAGIC, LEASE][..],
                b"0123456789abcdef0123456789abcdeZ",
                &[0; 8],
            ]
            .concat(),
            &[&[MAGIC, LEASE][..], &token].concat(),
            &[&[MAGIC, b'P'][..], &token].concat(),
        ] {
            assert!(Held::parse(garbage.to_vec()).is_err(), "{garbage:?}");
        }
    }
}
