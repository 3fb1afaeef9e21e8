//! How values are turned into bytes for Redis, and the small envelope that records presence.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// Turns values of type `T` into bytes and back.
///
/// The cache wraps the codec's bytes in a two-byte envelope that records whether the source had
/// the id at all, so a codec only ever sees real values. A decode error is never returned to the
/// caller: the value is treated as a miss and refilled (it was written by something else, or by an
/// older version of your type).
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
///         String::from_utf8(bytes.to_vec()).map_err(|e| Error::Encode(e.into()))
///     }
/// }
/// ```
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// The value cannot be represented; the fill is aborted and its locks released.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), Error>;

    /// Decodes a value the codec encoded.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid encoding; the cache treats the id as a miss.
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
/// field does not invalidate what is already cached.
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

/// Raw bytes, stored as they are (`Vec<u8>` values).
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

/// The envelope: a byte no MessagePack, UTF-8 or protobuf value starts with, then a kind byte.
/// The commit script checks the first byte too (see `prepare.lua`).
pub(crate) const MAGIC: u8 = 0xC1;
const PRESENT: u8 = b'P';
const ABSENT: u8 = b'A';

/// Where the codec's bytes start in a present value.
pub(crate) const PAYLOAD_START: usize = 2;

/// What a cached value says about an id.
#[derive(Debug)]
pub(crate) enum Cached {
    /// The source has the id; the codec's bytes start at [`PAYLOAD_START`].
    Present,
    /// The source does not have the id.
    Absent,
}

/// Reads the envelope; `None` for anything not in our format (a miss).
pub(crate) fn open(bytes: &[u8]) -> Option<Cached> {
    match bytes {
        [MAGIC, PRESENT, ..] => Some(Cached::Present),
        [MAGIC, ABSENT] => Some(Cached::Absent),
        _ => None,
    }
}

/// Encodes a fetched value (or its absence) with the envelope.
pub(crate) fn seal<T>(codec: &impl Codec<T>, value: Option<&T>) -> Result<Vec<u8>, Error> {
    match value {
        None => Ok(vec![MAGIC, ABSENT]),
        Some(value) => {
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&[MAGIC, PRESENT]);
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
        let some = seal(&MsgPack, Some(&Some(5u32))).unwrap();
        let none = seal(&MsgPack, Some(&None::<u32>)).unwrap();
        let absent = seal::<u32>(&MsgPack, None).unwrap();
        let empty = seal(&Raw, Some(&Vec::new())).unwrap();
        let decode = |b: &[u8]| match open(b) {
            Some(Cached::Present) => {
                Some(Codec::<Option<u32>>::decode(&MsgPack, &b[PAYLOAD_START..]).unwrap())
            }
            _ => None,
        };
        assert_eq!(decode(&some), Some(Some(5)));
        assert_eq!(decode(&none), Some(None));
        assert!(matches!(open(&absent), Some(Cached::Absent)));
        assert!(matches!(open(&empty), Some(Cached::Present)));
        assert_eq!(empty.len(), PAYLOAD_START);
        let raw = seal(&Raw, Some(&b"bytes".to_vec())).unwrap();
        assert_eq!(Raw.decode_owned(raw, PAYLOAD_START).unwrap(), b"bytes");
        assert!(open(b"hand written").is_none());
        assert!(open(b"").is_none());
    }
}
