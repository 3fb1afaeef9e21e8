// The expansion names everything by absolute path, so shadowing prelude names (and declaring a
// `core` module) around the method changes nothing, with every optional argument given too.

#![allow(dead_code, non_camel_case_types, non_snake_case)]

mod core {}

struct Result;
struct Vec;
struct HashMap;
struct Option;
struct Box;
struct String;
struct Default;
struct Future;
struct From;
struct Into;
struct Send;
struct Sync;
struct Fn;
struct FnMut;
struct Clone;
struct Hash;
struct Eq;
struct Display;
fn Ok() {}
fn Err() {}
fn Some() {}
fn None() {}
fn drop() {}
fn unreachable() {}
fn fill() {}
fn cache() {}

mod types {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Widget {
        pub name: ::std::string::String,
    }
}

struct Service {
    redis: ::ruecache::Connection,
}

impl ::ruecache::HasConnection for Service {
    fn cache_connection(&self) -> &::ruecache::Connection {
        &self.redis
    }
}

impl Service {
    #[::ruecache::cached_batch(key = "w:{id}")]
    async fn get(
        &self,
        ids: ::std::vec::Vec<u64>,
    ) -> ::std::result::Result<::std::collections::HashMap<u64, types::Widget>, ::ruecache::Error> {
        let _ = (Ok, Err, Some, None, Result, Vec, HashMap, Option);
        ::std::result::Result::Ok(
            ids.into_iter()
                .map(|id| (id, types::Widget { name: ::std::format!("{id}") }))
                .collect(),
        )
    }

    #[::ruecache::cached_batch(
        key = "w:<<<id>>>",
        ttl = "1h30m",
        lock_ttl = "10s",
        jitter = 0.1,
        timeout = "2s",
        absent_ttl = "1m",
        backoff_min = "10ms",
        backoff_max = "500ms",
        unlock_threshold = "20ms",
        fallback_to_source = true,
        name = "one widget",
        codec = ::ruecache::MsgPack,
        crate = "::ruecache"
    )]
    async fn get_one(
        &self,
        id: u64,
    ) -> ::std::result::Result<::std::option::Option<types::Widget>, ::ruecache::Error> {
        ::std::result::Result::Ok(::std::option::Option::Some(types::Widget {
            name: ::std::format!("{id}"),
        }))
    }
}

fn main() {}
