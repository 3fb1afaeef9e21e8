//! How values are turned into bytes for Redis, and the small envelope that records presence.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// Turns values of type `T` into bytes and back.
///
/// The cache wraps the codec's bytes in a two-byte envelope that records whether the source had
/// the id at all, so a codec only ever sees real values. Both directions report failure with
/// [`Error::Encode`]. An encode error fails the call; a decode error is never returned to the
/// caller: the value is treated as a miss and refilled (it was written by something else, or by
/// an older version of your type).
///
/// # Examples
///
/// A codec for values that are already UTF-8 text:
///
/// ```
/// use ruecache::{Codec, Error};
///
/// #[derive(Debug, Clone, Copy, Default)]
/// struct Utf8;
///
/// impl Codec<String> for Utf8 {
///     fn encode(&self, value: &String, out: &mut Vec<u8>) -> Result<(), Error> {
///         out.extend_from_slice(value.as_bytes());
///         Ok(())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<String, Error> {
///         // Not returned to the caller: the cache refills an id whose bytes do not decode.
///         String::from_utf8(bytes.to_vec()).map_err(|e| Error::Encode(e.into()))
///     }
/// }
/// ```
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the value cannot be represented: the fill is aborted, its locks
    /// released, and the call returns the error.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), Error>;

    /// Decodes a value the codec encoded.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the bytes are not a valid encoding. The caller never sees it: the
    /// cache logs it at `debug` level and treats the id as a miss, which the fill overwrites.
    fn decode(&self, bytes: &[u8]) -> Result<T, Error>;

    /// Decodes a value from a buffer the cache is done with: the codec's bytes are
    /// `buffer[start..]`. The default lends them to [`decode`](Self::decode); a codec whose values
    /// can take the buffer over, as [`Raw`]'s do, overrides this to save a copy.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    fn decode_owned(&self, buffer: Vec<u8>, start: usize) -> Result<T, Error> {
        self.decode(&buffer[start..])
    }
}

/// MessagePack through serde (the default): compact, self-describing, tolerant of added fields.
///
/// Structs are written as maps with field names, so adding an `Option` or `#[serde(default)]`
/// field does not invalidate what is already cached; values an older type wrote that no longer
/// decode are refilled.
///
/// # Examples
///
/// ```
/// use ruecache::{Codec, MsgPack};
///
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Widget {
///     id: u64,
///     name: String,
/// }
///
/// let widget = Widget { id: 7, name: "gear".into() };
/// let mut bytes = Vec::new();
/// MsgPack.encode(&widget, &mut bytes)?;
/// let back: Widget = MsgPack.decode(&bytes)?;
/// assert_eq!(back, widget);
/// # Ok::<(), ruecache::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl<T: Serialize + DeserializeOwned> Codec<T> for MsgPack {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
        rmp_serde::encode::write_named(out, value).map_err(|e| Error::Encode(e.into()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, Error> {
        rmp_serde::from_slice(bytes).map_err(|e| Error::Encode(e.into()))
    }
}

/// Raw bytes, stored as they are (`Vec<u8>` values): for values that are already serialized,
/// such as images or compressed blobs. Decoding never fails.
///
/// # Examples
///
/// ```
/// use ruecache::{Codec, Raw};
///
/// let mut bytes = Vec::new();
/// Raw.encode(&b"\x89PNG".to_vec(), &mut bytes)?;
/// assert_eq!(bytes, b"\x89PNG");
/// assert_eq!(Raw.decode(&bytes)?, b"\x89PNG");
/// # Ok::<(), ruecache::Error>(())
/// ```
///
/// With a cache:
///
/// ```no_run
/// # async fn run(conn: ruecache::Connection) -> Result<(), ruecache::Error> {
/// let thumbs = ruecache::Cache::<String, Vec<u8>>::builder(conn, "thumbs:{id}")
///     .codec(ruecache::Raw)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), Error> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(bytes.to_vec())
    }

    fn decode_owned(&self, mut buffer: Vec<u8>, start: usize) -> Result<Vec<u8>, Error> {
        buffer.drain(..start);
        Ok(buffer)
    }
}

/// Protocol Buffers messages through `prost` (feature `prost`), like the Go `ProtoMapCoder`.
///
/// Adding fields is safe: old cached values decode with the new fields at their defaults.
///
/// # Examples
///
/// ```
/// use ruecache::{Codec, Prost};
///
/// // Any `prost::Message`: usually a type generated by `prost-build`, here a wrapper type.
/// let name = String::from("gear");
/// let mut bytes = Vec::new();
/// Prost.encode(&name, &mut bytes)?;
/// assert_eq!(Codec::<String>::decode(&Prost, &bytes)?, name);
/// # Ok::<(), ruecache::Error>(())
/// ```
#[cfg(feature = "prost")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Prost;

#[cfg(feature = "prost")]
impl<T: prost::Message + Default> Codec<T> for Prost {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
        value.encode(out).map_err(|e| Error::Encode(e.into()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, Error> {
        T::decode(bytes).map_err(|e| Error::Encode(e.into()))
    }
}

/// The envelope: a marker byte, then a kind byte. `0xC1` is unused in MessagePack and invalid in
/// UTF-8, so values others write with those rarely start with it; a value that does is still
/// checked by the kind byte and the codec, and refilled if they reject it. The first two bytes
/// are checked where cached data is read ([`open`]); the Lua scripts only compare whole values,
/// or the first bytes of a lease.
///
/// The kinds:
///
/// | kind | what follows | written by |
/// |---|---|---|
/// | `P` | the codec's bytes | a fill or a write-through, when the cache keeps no timing |
/// | `T` | the value's logical expiry (ms since the epoch, 8 bytes big-endian), how long its fetch took (ms, 4 bytes), the codec's bytes | the same, when the cache refreshes ahead or serves stale values (see [`Timing`]) |
/// | `A` | nothing: the source does not have the id | a fill |
/// | `L`, `W` | a lease: token and deadline (see `fill::lease`) | the lease step, a waiter's flag |
/// | `R` | a refresh lease (token and deadline, as a lease), then a whole `T` value: the value being refreshed, still served | a refresh (see `fill::refresh`) |
pub(crate) const MAGIC: u8 = 0xC1;
const PRESENT: u8 = b'P';
const TIMED: u8 = b'T';
const ABSENT: u8 = b'A';
/// A lease: a filler's lock, held in the data key itself (see `fill::lease`).
pub(crate) const LEASE: u8 = b'L';
/// A lease that a waiter flagged: its release publishes a wake-up.
pub(crate) const FLAGGED: u8 = b'W';
/// A refresh lease: a lease followed by the value it refreshes, which readers keep using.
pub(crate) const REFRESH: u8 = b'R';

/// Where the codec's bytes start in a `P` value, and the token in a lease.
pub(crate) const PAYLOAD_START: usize = 2;
/// The length of a `T` value's header: marker, kind, expiry, fill time.
pub(crate) const TIMED_HEADER: usize = 14;
/// The length of a lease, and of the header a refresh lease puts before its value: marker,
/// kind, token (32 bytes), deadline (8 bytes).
pub(crate) const LEASE_LEN: usize = 42;

/// What a timed value (`T`) records besides the value: what refresh-ahead and stale values
/// need, read with the value in the same round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// When the value expires logically (ms since the epoch, by the committer's clock): it is
    /// fresh before, stale after. Its key lives on for the cache's `stale_for`.
    pub(crate) expiry: u64,
    /// How long the fetch that produced it took, in ms: the δ of the refresh-ahead draw.
    pub(crate) fill_ms: u32,
}

/// A value found in a data key, as [`open`] reads its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Where the codec's bytes start.
    pub(crate) start: usize,
    /// The value's timing, if it is a timed value.
    pub(crate) timing: Option<Timing>,
    /// The deadline of the refresh lease over it (ms since the epoch), if it is being
    /// refreshed.
    pub(crate) refresh_deadline: Option<u64>,
}

impl Found {
    /// The bytes a refresh compares before it takes the key over (see `fill::refresh`): the
    /// refresh lease's header, or the timed value's.
    pub(crate) fn header(&self) -> usize {
        if self.refresh_deadline.is_some() {
            LEASE_LEN
        } else {
            self.start
        }
    }
}

/// What a data key's bytes say about an id.
#[derive(Debug)]
pub(crate) enum Cached {
    /// The source has the id.
    Present(Found),
    /// The source does not have the id.
    Absent,
    /// A filler holds the id's lease (flagged by a waiter or not): no value yet.
    Leased,
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

fn timed(bytes: &[u8]) -> Option<Timing> {
    match bytes {
        [MAGIC, TIMED, header @ ..] if header.len() >= TIMED_HEADER - 2 => Some(Timing {
            expiry: be_u64(&header[..8]),
            fill_ms: u32::from_be_bytes(header[8..12].try_into().expect("4 bytes")),
        }),
        _ => None,
    }
}

/// Reads the envelope; `None` for anything not in our format (a miss).
pub(crate) fn open(bytes: &[u8]) -> Option<Cached> {
    match bytes {
        [MAGIC, PRESENT, ..] => Some(Cached::Present(Found {
            start: PAYLOAD_START,
            timing: None,
            refresh_deadline: None,
        })),
        [MAGIC, TIMED, ..] => Some(Cached::Present(Found {
            start: TIMED_HEADER,
            timing: Some(timed(bytes)?),
            refresh_deadline: None,
        })),
        [MAGIC, REFRESH, ..] if bytes.len() >= LEASE_LEN => Some(Cached::Present(Found {
            start: LEASE_LEN + TIMED_HEADER,
            timing: Some(timed(&bytes[LEASE_LEN..])?),
            refresh_deadline: Some(be_u64(&bytes[LEASE_LEN - 8..LEASE_LEN])),
        })),
        [MAGIC, ABSENT] => Some(Cached::Absent),
        [MAGIC, LEASE | FLAGGED, ..] => Some(Cached::Leased),
        _ => None,
    }
}

/// Encodes a fetched value (or its absence) with the envelope: a timed value if `timing` is
/// given.
pub(crate) fn seal<T>(
    codec: &(impl Codec<T> + ?Sized),
    value: Option<&T>,
    timing: Option<Timing>,
) -> Result<Vec<u8>, Error> {
    match (value, timing) {
        (None, _) => Ok(vec![MAGIC, ABSENT]),
        (Some(value), None) => {
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&[MAGIC, PRESENT]);
            codec.encode(value, &mut out)?;
            Ok(out)
        }
        (Some(value), Some(timing)) => {
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&[MAGIC, TIMED]);
            out.extend_from_slice(&timing.expiry.to_be_bytes());
            out.extend_from_slice(&timing.fill_ms.to_be_bytes());
            codec.encode(value, &mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_presence() {
        let some = seal(&MsgPack, Some(&Some(5u32)), None).unwrap();
        let none = seal(&MsgPack, Some(&None::<u32>), None).unwrap();
        let absent = seal::<u32>(&MsgPack, None, None).unwrap();
        let empty = seal(&Raw, Some(&Vec::new()), None).unwrap();
        let decode = |b: &[u8]| match open(b) {
            Some(Cached::Present(found)) => {
                Some(Codec::<Option<u32>>::decode(&MsgPack, &b[found.start..]).unwrap())
            }
            _ => None,
        };
        assert_eq!(decode(&some), Some(Some(5)));
        assert_eq!(decode(&none), Some(None));
        assert!(matches!(open(&absent), Some(Cached::Absent)));
        assert!(matches!(open(&empty), Some(Cached::Present(_))));
        assert_eq!(empty.len(), PAYLOAD_START);
        let raw = seal(&Raw, Some(&b"bytes".to_vec()), None).unwrap();
        assert_eq!(Raw.decode_owned(raw, PAYLOAD_START).unwrap(), b"bytes");
        assert!(open(b"hand written").is_none());
        assert!(
            open(&[MAGIC, TIMED, 0]).is_none(),
            "a timed value without its header"
        );
        assert!(open(b"").is_none());
    }

    #[test]
    fn timed_values_and_refresh_leases_open_with_their_timing() {
        let timing = Timing {
            expiry: 1_700_000_000_123,
            fill_ms: 42,
        };
        let timed = seal(&MsgPack, Some(&7u32), Some(timing)).unwrap();
        let Some(Cached::Present(found)) = open(&timed) else {
            panic!("a timed value opens as present");
        };
        assert_eq!(found.timing, Some(timing));
        assert_eq!(found.refresh_deadline, None);
        assert_eq!(found.header(), TIMED_HEADER);
        assert_eq!(
            Codec::<u32>::decode(&MsgPack, &timed[found.start..]).unwrap(),
            7
        );

        let mut leased = vec![MAGIC, REFRESH];
        leased.extend_from_slice(&[b'a'; 32]);
        leased.extend_from_slice(&99u64.to_be_bytes());
        leased.extend_from_slice(&timed);
        let Some(Cached::Present(found)) = open(&leased) else {
            panic!("a refresh lease opens as its value");
        };
        assert_eq!(found.timing, Some(timing));
        assert_eq!(found.refresh_deadline, Some(99));
        assert_eq!(found.header(), LEASE_LEN);
        assert_eq!(
            Codec::<u32>::decode(&MsgPack, &leased[found.start..]).unwrap(),
            7
        );
        assert!(
            open(&leased[..LEASE_LEN + 3]).is_none(),
            "a refresh lease without its value"
        );
    }
}
