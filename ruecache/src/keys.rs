//! Id-to-key mapping: the data key from a template, and the names derived from it.
//!
//! Each id has one key, its data key, which holds its value, its "absent" marker, or the lease
//! of the caller filling it. Derived names are `{tag}` + `0xFF` + kind byte (+ data key), where
//! `tag` is the data key's own hash tag if it has one, or else a short string that hashes to the
//! data key's slot, so they share the data key's cluster slot whatever the template:
//!
//! - the wake-up channel of an id, `{tag}` + `0xFF` + `n`: in the data key's slot (so a script
//!   releasing a lease can `SPUBLISH` on it), shared by the ids of one tag, and never a key;
//! - the version key of the previous protocol (`{tag}` + `0xFF` + `v` + data key), which an
//!   invalidation deletes so that processes still running that protocol refuse their commits
//!   during a rolling deploy.
//!
//! Because a template and an id's `Display` output are UTF-8, a data key never contains the byte
//! `0xFF`, so a derived key can never equal any data key; and since the tag holds no `}`, the
//! data key can be read back out of a derived key, so two ids never share a derived key.

use std::fmt::{self, Display, Write as _};
use std::sync::OnceLock;

use crate::Error;

/// Keys longer than this are refused with [`Error::KeyTooLong`] (Redis allows 512 MB, but a
/// key this long is always a mistake, and it is repeated in the derived keys).
///
/// # Examples
///
/// ```
/// assert_eq!(ruecache::MAX_KEY_LEN, 65_536);
/// ```
pub const MAX_KEY_LEN: usize = 64 * 1024;

const VERSION_KIND: u8 = b'v';
const CHANNEL_KIND: u8 = b'n';
const DERIVED_MARK: u8 = 0xFF;

/// A `format!`-style key template with one or more `{id}` slots.
///
/// `{id}` inserts the id's `Display` output, `{{` and `}}` are literal braces, and `<<<id>>>` is
/// shorthand for `{{{id}}}`: the id wrapped in a Redis Cluster hash tag.
///
/// # Examples
///
/// ```
/// use ruecache::KeyTemplate;
///
/// let a = KeyTemplate::parse("widgets:{{{id}}}")?;
/// let b = KeyTemplate::parse("widgets:<<<id>>>")?;
/// assert_eq!(a.render(&42)?, "widgets:{42}");
/// assert_eq!(b.render(&42)?, "widgets:{42}");
///
/// // A template that can live in a `static`: the literal pieces between the id slots.
/// static KEYS: KeyTemplate = KeyTemplate::from_parts(&["widgets:{", "}"]);
/// assert_eq!(KEYS.render(&"a")?, "widgets:{a}");
/// # Ok::<(), ruecache::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Parts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Parts {
    Static(&'static [&'static str]),
    Owned(Box<[Box<str>]>),
}

impl KeyTemplate {
    /// A template from its literal pieces: the id is inserted between each pair of pieces.
    ///
    /// # Panics
    ///
    /// If `parts` has fewer than two pieces (a template needs at least one id slot). In a
    /// `static` or `const` this is a compile-time error.
    ///
    /// # Examples
    ///
    /// ```
    /// use ruecache::KeyTemplate;
    ///
    /// // The same template as `KeyTemplate::parse("orders:{{{id}}}:v2")`.
    /// static ORDERS: KeyTemplate = KeyTemplate::from_parts(&["orders:{", "}:v2"]);
    /// assert_eq!(ORDERS.render(&12)?, "orders:{12}:v2");
    /// # Ok::<(), ruecache::Error>(())
    /// ```
    pub const fn from_parts(parts: &'static [&'static str]) -> Self {
        assert!(
            parts.len() >= 2,
            "a key template needs at least one id slot"
        );
        Self {
            parts: Parts::Static(parts),
        }
    }

    /// Parses a template such as `"widgets:{{{id}}}"` or `"widgets:<<<id>>>"`.
    ///
    /// # Errors
    ///
    /// [`Error::Template`] when the template has no `{id}`, a placeholder other than `{id}`, or
    /// an unbalanced brace; the message says how to write it instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use ruecache::{Error, KeyTemplate};
    ///
    /// let template = KeyTemplate::parse("users:{id}:profile")?;
    /// assert_eq!(template.render(&"ann")?, "users:ann:profile");
    ///
    /// // `{{id}}` is the literal text `{id}`, so this template has no id slot.
    /// assert!(matches!(KeyTemplate::parse("users:{{id}}"), Err(Error::Template { .. })));
    /// assert!(KeyTemplate::parse("users:{name}").is_err());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn parse(template: &str) -> Result<Self, Error> {
        let fail = |reason| Error::Template {
            template: template.to_owned(),
            reason,
        };
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("<<<id>>>") {
                current.push('{');
                parts.push(std::mem::take(&mut current));
                current.push('}');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("{{") {
                current.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                current.push('}');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("{id}") {
                parts.push(std::mem::take(&mut current));
                rest = after;
            } else if c == '{' {
                return Err(if rest[1..].contains('}') {
                    fail("unknown placeholder; the only placeholder is `{id}`, write `{{` for a literal `{`")
                } else {
                    fail("unclosed `{`; write `{{` for a literal `{`")
                });
            } else if c == '}' {
                return Err(fail("unmatched `}`; write `}}` for a literal `}`"));
            } else {
                current.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if parts.is_empty() {
            return Err(fail(
                "no `{id}` placeholder, so every id would share one key",
            ));
        }
        parts.push(current);
        Ok(Self {
            parts: Parts::Owned(parts.into_iter().map(String::into_boxed_str).collect()),
        })
    }

    /// Renders the data key of one id.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] if the id's `Display` fails, [`Error::KeyTooLong`] past
    /// [`MAX_KEY_LEN`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ruecache::{Error, KeyTemplate, MAX_KEY_LEN};
    ///
    /// let template = KeyTemplate::parse("sessions:<<<id>>>")?;
    /// assert_eq!(template.render(&"a1b2")?, "sessions:{a1b2}");
    ///
    /// let huge = "x".repeat(MAX_KEY_LEN);
    /// assert!(matches!(template.render(&huge), Err(Error::KeyTooLong { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn render(&self, id: &dyn Display) -> Result<String, Error> {
        let mut out = String::new();
        self.write(id, &mut out)?;
        Ok(out)
    }

    /// The literal text every key of this template starts with: what the near cache asks Redis
    /// to report changes under (see `near`).
    pub(crate) fn prefix(&self) -> &str {
        match &self.parts {
            Parts::Static(parts) => parts[0],
            Parts::Owned(parts) => &parts[0],
        }
    }

    /// Appends the data key of `id` to `out` (a `String`, or a command buffer on the hit path).
    pub(crate) fn write(&self, id: &dyn Display, out: &mut dyn fmt::Write) -> Result<(), Error> {
        fn go<S: AsRef<str>>(
            parts: &[S],
            id: &dyn Display,
            out: &mut Counted<'_>,
        ) -> Result<(), fmt::Error> {
            let (first, rest) = parts
                .split_first()
                .expect("a template has at least two parts");
            out.write_str(first.as_ref())?;
            for part in rest {
                write!(out, "{id}")?;
                out.write_str(part.as_ref())?;
            }
            Ok(())
        }
        let mut out = Counted { out, len: 0 };
        match &self.parts {
            Parts::Static(parts) => go(parts, id, &mut out),
            Parts::Owned(parts) => go(parts, id, &mut out),
        }
        .map_err(|_| Error::InvalidId)?;
        check_len(out.len)
    }
}

/// A data key rendered on the stack when it is short (the usual case), on the heap when not.
pub(crate) struct KeyBuf {
    inline: [u8; 128],
    len: usize,
    spilled: Option<String>,
}

impl KeyBuf {
    pub(crate) fn new() -> Self {
        Self {
            inline: [0; 128],
            len: 0,
            spilled: None,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match &self.spilled {
            Some(key) => key,
            // Only whole `str`s are ever copied in.
            None => std::str::from_utf8(&self.inline[..self.len]).expect("UTF-8 pieces"),
        }
    }
}

impl fmt::Write for KeyBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(key) = &mut self.spilled {
            key.push_str(s);
        } else if let Some(room) = self.inline.get_mut(self.len..self.len + s.len()) {
            room.copy_from_slice(s.as_bytes());
            self.len += s.len();
        } else {
            let mut key = String::with_capacity(2 * (self.len + s.len()));
            key.push_str(self.as_str());
            key.push_str(s);
            self.spilled = Some(key);
        }
        Ok(())
    }
}

/// A writer that counts what passes through it.
struct Counted<'a> {
    out: &'a mut dyn fmt::Write,
    len: usize,
}

impl fmt::Write for Counted<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len += s.len();
        self.out.write_str(s)
    }
}

pub(crate) fn check_len(len: usize) -> Result<(), Error> {
    if len > MAX_KEY_LEN {
        return Err(Error::KeyTooLong {
            len,
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// The version key the previous protocol kept beside a data key (see the module docs).
pub(crate) fn legacy_version_key(data_key: &str) -> Vec<u8> {
    let data_key = data_key.as_bytes();
    let tag = derived_tag(data_key);
    let mut key = Vec::with_capacity(tag.len() + data_key.len() + 4);
    push_derived(&mut key, tag, data_key, VERSION_KIND);
    key
}

/// The channel a release of a flagged lease on `data_key` publishes on.
pub(crate) fn channel(data_key: &str) -> Vec<u8> {
    let tag = derived_tag(data_key.as_bytes());
    let mut channel = Vec::with_capacity(tag.len() + 4);
    push_derived(&mut channel, tag, b"", CHANNEL_KIND);
    channel
}

fn derived_tag(data_key: &[u8]) -> &[u8] {
    hash_tag(data_key).unwrap_or_else(|| slot_tag(slot(data_key)))
}

fn push_derived(out: &mut Vec<u8>, tag: &[u8], data_key: &[u8], kind: u8) {
    out.push(b'{');
    out.extend_from_slice(tag);
    out.push(b'}');
    out.push(DERIVED_MARK);
    out.push(kind);
    out.extend_from_slice(data_key);
}

/// The part of a key Redis Cluster hashes: the bytes between the first `{` and the next `}`, if
/// that is non-empty.
pub(crate) fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// The Redis Cluster hash slot of a key.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % 16384
}

/// CRC16/XMODEM, the checksum Redis Cluster uses for slots (a byte at a time, from a table).
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |crc: u16, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The CRC16/XMODEM (polynomial 0x1021) of each byte value.
static CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// A short alphanumeric string that hashes to `slot`, for data keys without a hash tag.
fn slot_tag(slot: u16) -> &'static [u8] {
    static TAGS: OnceLock<Vec<[u8; 4]>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        // Entry: length byte followed by up to 3 characters; 0 length means "not found yet".
        let mut tags = vec![[0u8; 4]; 16384];
        let mut missing = 16384;
        for len in 1..=3usize {
            let mut idx = [0usize; 3];
            loop {
                let mut candidate = [0u8; 3];
                for i in 0..len {
                    candidate[i] = ALPHABET[idx[i]];
                }
                let s = usize::from(crc16(&candidate[..len]) % 16384);
                if tags[s][0] == 0 {
                    tags[s][0] = len as u8;
                    tags[s][1..=len].copy_from_slice(&candidate[..len]);
                    missing -= 1;
                }
                // Odometer increment over `len` digits.
                let mut i = 0;
                while i < len {
                    idx[i] += 1;
                    if idx[i] < ALPHABET.len() {
                        break;
                    }
                    idx[i] = 0;
                    i += 1;
                }
                if i == len {
                    break;
                }
            }
        }
        assert_eq!(missing, 0, "every slot has a tag of at most 3 characters");
        tags
    });
    let entry = &tags[usize::from(slot)];
    &entry[1..=usize::from(entry[0])]
}

/// A deterministic pseudo-random number in `[0, 1)` for a key, for TTL jitter: FNV-1a, then the
/// SplitMix64 finalizer (FNV alone barely moves its high bits when only the last bytes differ,
/// which is exactly how sequential ids differ).
pub(crate) fn unit_hash(key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_render_the_same_key() {
        let a = KeyTemplate::parse("widgets:{{{id}}}").unwrap();
        let b = KeyTemplate::parse("widgets:<<<id>>>").unwrap();
        assert_eq!(a.render(&42).unwrap(), "widgets:{42}");
        assert_eq!(b.render(&42).unwrap(), "widgets:{42}");
        assert_eq!(a, b);
    }

    #[test]
    fn bad_templates_are_rejected() {
        for bad in ["widgets", "w:{name}", "w:{id", "w:}{id}", "w:{"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad} should be rejected");
        }
        let t = KeyTemplate::parse("a{id}b{id}").unwrap();
        assert_eq!(t.render(&7).unwrap(), "a7b7");
    }

    #[test]
    fn slots_match_the_redis_specification() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        // An empty `{}` is no hash tag: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_eq!(hash_tag(b"foo{}{bar}"), None);
        assert_eq!(hash_tag(b"foo{{bar}}zap"), Some(&b"{bar"[..]));
    }

    #[test]
    fn derived_keys_share_the_data_key_slot() {
        for key in [
            "widgets:{42}",
            "plain:42",
            "a}b",
            "{}x",
            "{",
            "}{",
            "x{y}z{w}",
        ] {
            let s = slot(key.as_bytes());
            assert_eq!(slot(&legacy_version_key(key)), s, "{key}");
            assert!(legacy_version_key(key).ends_with(key.as_bytes()), "{key}");
            assert_eq!(slot(&channel(key)), s, "{key}");
            assert!(channel(key).ends_with(b"}\xFFn"), "{key}");
        }
    }

    #[test]
    fn jitter_hash_spreads_sequential_keys() {
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            buckets[(unit_hash(&format!("w:{{{i}}}")) * 10.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..=1200).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn key_buffer_spills_long_keys_to_the_heap() {
        let mut short = KeyBuf::new();
        write!(short, "w:{{{}}}", 42).unwrap();
        assert_eq!(short.as_str(), "w:{42}");
        assert!(short.spilled.is_none());
        let long = "x".repeat(100);
        let mut buf = KeyBuf::new();
        write!(buf, "{long}:{long}").unwrap();
        assert_eq!(buf.as_str(), format!("{long}:{long}"));
    }

    #[test]
    fn every_slot_has_a_tag() {
        for s in 0..16384u16 {
            assert_eq!(slot(slot_tag(s)), s);
        }
    }
}
