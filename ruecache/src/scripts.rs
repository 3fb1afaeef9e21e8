//! The Lua scripts that make each step atomic, and how they are sent.
//!
//! Scripts are sent with `EVALSHA` inside pipelines. redis-rs does not load scripts used in a
//! pipeline, so on a `NOSCRIPT` reply the script is loaded (`SCRIPT LOAD` reaches every node of a
//! cluster) and the pipeline is sent once more.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, Pipeline, ServerErrorKind, Value};

use crate::{Connection, Error};

/// One `ARGV` value of a script call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Bytes(&'a [u8]),
    /// Sent in decimal, like a string the script converts with `tonumber`.
    Int(u64),
}

impl Arg<'_> {
    fn max_len(&self) -> usize {
        match self {
            Arg::Bytes(bytes) => bytes.len(),
            Arg::Int(_) => 20,
        }
    }
}

/// One Lua script: its source and SHA1.
#[derive(Debug)]
pub(crate) struct Script {
    source: &'static str,
    hash: String,
}

impl Script {
    fn new(source: &'static str) -> Self {
        let hash = redis::Script::new(source).get_hash().to_owned();
        Self { source, hash }
    }

    /// Adds one call to a pipeline, as one command sized for its arguments up front.
    pub(crate) fn push(&self, pipe: &mut Pipeline, keys: &[&[u8]], args: &[Arg<'_>]) {
        let len = "EVALSHA".len()
            + self.hash.len()
            + 4
            + keys.iter().map(|k| k.len()).sum::<usize>()
            + args.iter().map(Arg::max_len).sum::<usize>();
        let mut cmd = Cmd::with_capacity(3 + keys.len() + args.len(), len);
        cmd.arg("EVALSHA").arg(&self.hash).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        for arg in args {
            match *arg {
                Arg::Bytes(bytes) => cmd.arg(bytes),
                Arg::Int(n) => cmd.arg(n),
            };
        }
        pipe.add_command(cmd);
    }

    /// Loads the script on every node the connection reaches.
    pub(crate) async fn load(&self, conn: &mut Connection) -> Result<(), Error> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .exec_async(conn)
            .await?;
        Ok(())
    }

    /// Sends a pipeline of calls to this script, loading the script and retrying once on
    /// `NOSCRIPT`.
    pub(crate) async fn query(
        &self,
        conn: &mut Connection,
        pipe: &Pipeline,
    ) -> Result<Vec<Value>, Error> {
        match pipe.query_async::<Vec<Value>>(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!("script not loaded on the server; loading it and retrying once");
                self.load(conn).await?;
                Ok(pipe.query_async(conn).await?)
            }
            other => Ok(other?),
        }
    }
}

pub(crate) static PREPARE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/prepare.lua")));
pub(crate) static COMMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/commit.lua")));
pub(crate) static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/unlock.lua")));
pub(crate) static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/invalidate.lua")));

/// Every script, for preloading.
pub(crate) fn all() -> [&'static Script; 4] {
    [&PREPARE, &COMMIT, &UNLOCK, &INVALIDATE]
}
