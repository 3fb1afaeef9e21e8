//! Memory of a huge batch: a 100,000-id call (every id missed, fetched and committed, then every
//! id hit) holds a bounded amount of memory per id at its peak, measured with a counting
//! allocator. In a file of its own, so that no other test's allocations run beside it.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ruecache_tests::start_standalone_with;
use support::Source;

/// Counts the bytes allocated and not yet freed, and the highest count since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes held at the peak of `call` beyond what was held when it started.
async fn peak_of<T>(call: impl std::future::Future<Output = T>) -> (T, usize) {
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let out = call.await;
    (out, PEAK.load(Relaxed) - start)
}

/// The peak of a 100,000-id fill and of the same batch read again, per id, beside the size of
/// what the caller asked for and got back (the ids, the fetched map, the result map): the
/// engine's own share stays within a few KiB per id however the batch is chunked.
#[ruecache_tests::tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_000_id_batch_holds_bounded_memory_per_id() {
    const N: usize = 100_000;
    /// A generous bound on the peak per id: keys, requests and replies of the chunks in
    /// flight, the fetched values and the result, with allocator slack.
    const BOUND_PER_ID: usize = 4 * 1024;
    let server = start_standalone_with(&[]);
    let cache = support::cache(server.connect().await, "memory:");
    let source = Source::default();
    let ids: Vec<u64> = (0..N as u64).collect();

    let (filled, fill_peak) = peak_of(
        cache.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(ids.clone(), |ids| {
            source.fetch(ids)
        }),
    )
    .await;
    assert_eq!(filled.unwrap().len(), N);
    let (hit, hit_peak) = peak_of(
        cache.get_and_fill::<_, HashMap<u64, String>, _, _, _, _>(ids.clone(), |ids| {
            source.fetch(ids)
        }),
    )
    .await;
    assert_eq!(hit.unwrap().len(), N);
    assert_eq!(source.calls().len(), 1, "the second batch is all hits");
    eprintln!(
        "memory: 100,000-id batch, peak above the start: fill {} MB ({} B/id), all hits {} MB \
         ({} B/id)",
        fill_peak / 1_000_000,
        fill_peak / N,
        hit_peak / 1_000_000,
        hit_peak / N
    );
    assert!(fill_peak / N < BOUND_PER_ID, "fill: {fill_peak} B");
    assert!(hit_peak / N < BOUND_PER_ID, "hits: {hit_peak} B");
}
