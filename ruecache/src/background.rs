//! Writes that finish in tasks of their own, counted so that a shutdown can wait for them.
//!
//! A caller may stop waiting at any point (a request timeout, a dropped future), yet what it
//! started must still happen: the commit of a fetch that returned, the release of locks taken
//! for a fetch that did not, an invalidation after a database write. These run in spawned
//! tasks, each bounded by its cache's timeout. The count of those still running is shared by a
//! connection's clones, and [`Connection::settle`](crate::Connection::settle) waits until it is
//! zero.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tracing::Instrument as _;

/// The background writes of one connection (and its clones) still running.
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: AtomicUsize,
    /// Woken when `running` drops to zero.
    idle: Notify,
}

impl Background {
    /// `work`, counted as running from now until it completes or is dropped (a runtime shutting
    /// down drops its tasks).
    pub(crate) fn track<F: Future>(self: &Arc<Self>, work: F) -> impl Future<Output = F::Output> {
        let running = Running::new(Arc::clone(self));
        async move {
            let _running = running;
            work.await
        }
    }

    /// Spawns `work` on the current tokio runtime, in the current span, counted as running.
    /// Returns `false` (and runs nothing) when there is no runtime to spawn on.
    pub(crate) fn spawn(self: &Arc<Self>, work: impl Future<Output = ()> + Send + 'static) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.track(work).in_current_span());
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until no background write is running.
    pub(crate) async fn settled(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read, so a write ending in between still wakes us.
            idle.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One running background write: counted from creation to drop.
struct Running(Arc<Background>);

impl Running {
    fn new(background: Arc<Background>) -> Self {
        background.running.fetch_add(1, Ordering::AcqRel);
        Self(background)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn settled_waits_for_every_tracked_write() {
        let background = Arc::new(Background::default());
        // Nothing running: settled at once.
        background.settled().await;

        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        assert!(background.spawn(async move {
            let _ = finished.await;
        }));
        let settled = background.settled();
        tokio::pin!(settled);
        assert!(
            settled.as_mut().now_or_never().is_none(),
            "a write is still running"
        );
        finish.send(()).unwrap();
        settled.await;
        assert_eq!(background.running.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_dropped_write_no_longer_counts() {
        let background = Arc::new(Background::default());
        let never = background.track(std::future::pending::<()>());
        assert_eq!(background.running.load(Ordering::Acquire), 1);
        drop(never);
        background.settled().await;
    }

    #[test]
    fn spawn_without_a_runtime_runs_nothing() {
        let background = Arc::new(Background::default());
        assert!(!background.spawn(async {}));
        assert_eq!(background.running.load(Ordering::Acquire), 0);
    }
}
