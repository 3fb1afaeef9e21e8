mod connection;
pub use connection::{Connection, DEFAULT_RESPONSE_TIMEOUT};
