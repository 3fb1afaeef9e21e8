#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod batch;
mod cache;
mod codec;
mod connection;
mod error;
mod fill;
mod keys;
mod options;
mod scripts;
mod stats;

#[cfg(feature = "macros")]
pub use ruecache_macros::cached_batch;

pub use cache::{fetch_one, BoxFetch, Cache, CacheBuilder, HasConnection, IdKeys, Keyed, Spec};
#[cfg(feature = "prost")]
pub use codec::Prost;
pub use codec::{Codec, MsgPack, Raw};
pub use connection::{Connection, DEFAULT_RESPONSE_TIMEOUT};
pub use error::Error;
pub use keys::{KeyTemplate, MAX_KEY_LEN};
pub use options::Options;
pub use stats::Stats;
