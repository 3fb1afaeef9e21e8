//! The lease: a filler's lock, held in the id's data key itself, and the token that names its
//! holder. The one place that knows their format.
//!
//! A lease is the envelope's marker byte, a kind byte (`L`, or `W` once a waiter flagged it: see
//! [`codec`](crate::codec)), then a [`Token`]: the id of the connection that took it (see
//! [`liveness`](crate::liveness)) followed by random hex digits. A token is never drawn twice, so
//! a lease once deleted (by an invalidation, its expiry or an eviction) never comes back, and a
//! commit that compares the data key with its own lease cannot be fooled.

use crate::codec::{FLAGGED, LEASE, MAGIC, PAYLOAD_START};
use crate::liveness::{self, ID_LEN};
use crate::Connection;

/// The length of a lock token.
pub(crate) const TOKEN_LEN: usize = 32;

/// The length of a lease: marker, kind, token.
const LEASE_LEN: usize = PAYLOAD_START + TOKEN_LEN;

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

    /// The lease this token puts in a data key (unflagged: the scripts accept it flagged too).
    pub(crate) fn lease(&self) -> [u8; LEASE_LEN] {
        let mut lease = [0; LEASE_LEN];
        lease[0] = MAGIC;
        lease[1] = LEASE;
        lease[PAYLOAD_START..].copy_from_slice(&self.0);
        lease
    }
}

/// A lease another caller holds, as read from its data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// The lease's bytes as read (flagged or not): what the flag and takeover steps compare.
    pub(crate) lease: Vec<u8>,
    pub(crate) holder: Holder,
}

impl Held {
    /// Reads a data key's bytes as a lease; `None` if they are not one of ours (including a
    /// lease-shaped value whose token is not one of ours: written by hand, refilled as garbage).
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, Vec<u8>> {
        let token = match bytes.as_slice() {
            [MAGIC, LEASE | FLAGGED, token @ ..] if token.len() == TOKEN_LEN => token,
            _ => return Err(bytes),
        };
        match holder(token) {
            Some(holder) => Ok(Self {
                lease: bytes,
                holder,
            }),
            None => Err(bytes),
        }
    }

    pub(crate) fn is_flagged(&self) -> bool {
        self.lease[1] == FLAGGED
    }

    /// The holder's token.
    pub(crate) fn token(&self) -> &[u8] {
        &self.lease[PAYLOAD_START..]
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
        let lease = Token(token).lease();
        let held = Held::parse(lease.to_vec()).unwrap();
        assert_eq!(held.holder, Holder::Checked);
        assert!(!held.is_flagged());
        assert_eq!(held.token(), &token);
        let mut flagged = lease.to_vec();
        flagged[1] = FLAGGED;
        let held = Held::parse(flagged).unwrap();
        assert!(held.is_flagged());
        assert_eq!(held.unflagged(), lease.to_vec());
        let unchecked = [&[MAGIC, LEASE][..], b"xxxxxxxxxxxxxxxx0123456789abcdef"].concat();
        assert_eq!(Held::parse(unchecked).unwrap().holder, Holder::Unchecked);
        for garbage in [
            &b"not a lease"[..],
            &[MAGIC, LEASE, b'z'],
            &[&[MAGIC, LEASE][..], b"0123456789abcdef0123456789abcdeZ"].concat(),
            &[&[MAGIC, b'P'][..], &token].concat(),
        ] {
            assert!(Held::parse(garbage.to_vec()).is_err(), "{garbage:?}");
        }
    }
}
