//! The call's deadline: every wait on Redis and on other fillers ends before it.

use std::future::Future;

use tokio::time::{timeout_at, Instant};

use crate::cache::Cache;
use crate::options::{Options, Wait};
use crate::{Connection, Error};

/// `fut`, failed with [`Error::Timeout`] (naming the configured timeout and the cache, from
/// `wait`) at `deadline`.
pub(crate) async fn within<T>(
    deadline: Instant,
    wait: Wait,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    timeout_at(deadline, fut)
        .await
        .map_err(|_| wait.timed_out())?
}

/// [`within`] for the first read of a call, made right after the deadline was set: requests
/// sent at once, not retried (see [`fails_in_time`]).
pub(crate) async fn read_within<Id, T, C, R>(
    cache: &Cache<Id, T, C>,
    deadline: Instant,
    read: impl Future<Output = Result<R, Error>>,
) -> Result<R, Error> {
    let wait = cache.spec.options.wait();
    match cache.conn.request_bound() {
        Some(bound) if bound < wait.after => read.await,
        _ => within(deadline, wait, read).await,
    }
}

/// Whether `requests` requests in a row on `conn` end (answered or failed by the connection
/// itself) before `deadline`. Then the deadline's timer could never fire first, so it is not
/// armed: on the hit path a timer costs about as much as all the rest of the cache's own work.
pub(crate) fn fails_in_time(conn: &Connection, deadline: Instant, requests: u32) -> bool {
    conn.request_bound()
        .is_some_and(|bound| Instant::now() + bound * requests < deadline)
}

/// When a caller waiting for other fillers reads for the last time: ahead of `deadline` by a
/// tenth of the timeout, at most the first backoff step, so that the read can still be answered.
pub(crate) fn last_read(deadline: Instant, options: &Options) -> Instant {
    let reserve = (options.timeout / 10).min(options.backoff_min);
    deadline.checked_sub(reserve).unwrap_or(deadline)
}
