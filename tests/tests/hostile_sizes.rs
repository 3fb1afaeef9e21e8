//! Hostile sizes: 100,000-id batches, 8 MB values, ids at and over the key length limit, and ids
//! that cannot be rendered at all.

mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use ruecache::{Cache, Connection, Raw, MAX_KEY_LEN};
use ruecache_tests::{both, start_standalone_with, Target};
use support::{big_value, cmd, exists, value, Failure, Source};

/// A batch of 100,000 ids completes and returns exactly the ids the source has.
async fn batch_of_100_000_ids(t: Target) {
    const N: u64 = 100_000;
    let cache = support::cache(t.connect().await, &t.ns());
    let absent: Vec<u64> = (0..N).filter(|id| id % 7 == 0).collect();
    let source = Source::without(&absent);
    let ids: Vec<u64> = (0..N).collect();
    let got: HashMap<u64, String> = cache
        .get_and_fill(ids.clone(), |ids| source.fetch(ids))
        .await
        .unwrap();
    let expected: HashMap<u64, String> = (0..N)
        .filter(|id| id % 7 != 0)
        .map(|id| (id, value(id)))
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "exactly the ids the source has");
    assert_eq!(source.calls().len(), 1, "one fetch for the whole batch");
    let again: HashMap<u64, String> = cache
        .get_and_fill(ids, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert!(again == expected);
    assert_eq!(source.calls().len(), 1, "the second batch is all hits");
    let stats = cache.stats();
    eprintln!(
        "hostile: 100,000-id batch twice: {} hits, {} misses, {} commits",
        stats.hits, stats.misses, stats.commits
    );
    assert_eq!(stats.commits, N);
}

/// A 100,000-id batch is sent in bounded requests (`INFO commandstats` of a private server): its
/// reads take at least 100,000 / 512 `MGET`s and its commits at least 100,000 / 128 script calls
/// (the engine's limits per request), not one request for all, nor one per id.
#[ruecache_tests::tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_100_000_ids_is_sent_in_chunks() {
    const N: u64 = 100_000;
    let server = start_standalone_with(&[]);
    let conn = Connection::open(&server.url()).await.unwrap();
    let cache = support::cache(conn.clone(), "chunks:");
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill(0..N, |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got.len() as u64, N);
    let calls = support::take_command_calls(&conn).await;
    let count = |command: &str| calls.get(command).copied().unwrap_or(0);
    let (reads, commits) = (count("mget"), count("evalsha"));
    eprintln!("hostile: 100,000-id batch in {reads} MGET and {commits} EVALSHA requests");
    assert!(reads >= N.div_ceil(512), "reads: {reads}");
    assert!(commits >= N.div_ceil(128), "commits: {commits}");
    assert!(
        reads < N / 50 && commits < N / 50,
        "not one request per id: {reads} MGET, {commits} EVALSHA"
    );
}

/// Values of 8 MB round-trip through a batch and a single read, and are then hits.
async fn values_of_8_mb_round_trip(t: Target) {
    const LEN: usize = 8 * 1024 * 1024;
    let cache: Cache<u64, Vec<u8>, Raw> =
        Cache::builder(t.connect().await, &support::template(&t.ns()))
            .codec(Raw)
            .build()
            .unwrap();
    let fetches = Cell::new(0);
    let fetch = |ids: Vec<u64>| {
        fetches.set(fetches.get() + 1);
        async move {
            Ok::<_, Failure>(
                ids.into_iter()
                    .map(|id| (id, big_value(id, LEN)))
                    .collect::<Vec<_>>(),
            )
        }
    };
    for _ in 0..2 {
        let got: HashMap<u64, Vec<u8>> = cache.get_and_fill([1, 2], fetch).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[&1] == big_value(1, LEN) && got[&2] == big_value(2, LEN));
        let one = cache
            .get_and_fill_one(
                3,
                |id| async move { Ok::<_, Failure>(Some(big_value(id, LEN))) },
            )
            .await
            .unwrap();
        assert!(one == Some(big_value(3, LEN)));
    }
    assert_eq!(fetches.get(), 1, "the second round is served from Redis");
    let stored: i64 = cmd(cache.connection(), "STRLEN", cache.data_key(&1).unwrap()).await;
    assert_eq!(
        stored,
        LEN as i64 + 2,
        "the value plus the two-byte envelope"
    );
}

/// An id whose data key is exactly the length limit works end to end; a 1 MB id is refused with
/// [`ruecache::Error::KeyTooLong`] by every entry point, before anything is fetched.
async fn very_long_ids(t: Target) {
    let ns = t.ns();
    let cache: Cache<String, String> =
        Cache::builder(t.connect().await, &format!("{ns}{{{{{{id}}}}}}"))
            .build()
            .unwrap();
    let overhead = ns.len() + 2;
    let longest = "x".repeat(MAX_KEY_LEN - overhead);
    assert_eq!(cache.data_key(&longest).unwrap().len(), MAX_KEY_LEN);
    let fetch = |ids: Vec<String>| async move {
        Ok::<_, Failure>(
            ids.into_iter()
                .map(|id| (id, "long".to_owned()))
                .collect::<Vec<_>>(),
        )
    };
    let got: HashMap<String, String> = cache
        .get_and_fill([longest.clone(), "short".into()], fetch)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(exists(cache.connection(), cache.data_key(&longest).unwrap()).await);
    cache.invalidate([longest.clone()]).await.unwrap();
    assert!(!exists(cache.connection(), cache.data_key(&longest).unwrap()).await);

    let huge = "y".repeat(1024 * 1024);
    let too_long = |e: &ruecache::Error| {
        matches!(e, ruecache::Error::KeyTooLong { len, max }
            if *len == huge.len() + overhead && *max == MAX_KEY_LEN)
    };
    let fetched = Cell::new(false);
    let batch = cache
        .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([huge.clone(), "short".into()], |ids| {
            fetched.set(true);
            fetch(ids)
        })
        .await;
    assert!(
        matches!(&batch, Err(Failure::Cache(e)) if too_long(e)),
        "{batch:?}"
    );
    let single = cache
        .get_and_fill_one(huge.clone(), |_| async {
            Ok::<_, Failure>(Some(String::new()))
        })
        .await;
    assert!(
        matches!(&single, Err(Failure::Cache(e)) if too_long(e)),
        "{single:?}"
    );
    assert!(
        !fetched.get(),
        "nothing is fetched for a call that cannot be keyed"
    );
    let invalidate = cache.invalidate([huge.clone()]).await;
    assert!(
        matches!(&invalidate, Err(e) if too_long(e)),
        "{invalidate:?}"
    );
    assert!(matches!(&cache.keys(&huge), Err(e) if too_long(e)));
    eprintln!(
        "hostile: {}-byte key accepted; 1 MB id refused: {}",
        MAX_KEY_LEN,
        invalidate.unwrap_err()
    );
}

/// An id whose `Display` fails gives [`ruecache::Error::InvalidId`] from every entry point, and
/// a batch containing one is refused before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Id(u64);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 13 {
            return Err(fmt::Error);
        }
        write!(f, "{}", self.0)
    }
}

async fn id_whose_display_fails_is_invalid_id(t: Target) {
    let cache: Cache<Id, String> = Cache::builder(t.connect().await, &support::template(&t.ns()))
        .build()
        .unwrap();
    let fetched = Cell::new(false);
    let fetch = |ids: Vec<Id>| {
        fetched.set(true);
        async move {
            Ok::<_, Failure>(
                ids.into_iter()
                    .map(|id| (id.clone(), id.0.to_string()))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let batch = cache
        .get_and_fill::<_, HashMap<_, _>, _, _, _, _>([Id(1), Id(13), Id(2)], fetch)
        .await;
    assert!(
        matches!(batch, Err(Failure::Cache(ruecache::Error::InvalidId))),
        "{batch:?}"
    );
    let single = cache
        .get_and_fill_one(Id(13), |_| async { Ok::<_, Failure>(Some(String::new())) })
        .await;
    assert!(
        matches!(single, Err(Failure::Cache(ruecache::Error::InvalidId))),
        "{single:?}"
    );
    assert!(!fetched.get(), "nothing is fetched");
    assert!(matches!(
        cache.invalidate([Id(13)]).await,
        Err(ruecache::Error::InvalidId)
    ));
    assert!(matches!(
        cache.keys(&Id(13)),
        Err(ruecache::Error::InvalidId)
    ));
    assert!(matches!(
        cache.data_key(&Id(13)),
        Err(ruecache::Error::InvalidId)
    ));
    // The cache is unharmed: good ids still work.
    let good: HashMap<Id, String> = cache.get_and_fill([Id(1), Id(2)], fetch).await.unwrap();
    assert_eq!(good.len(), 2);
}

both!(
    batch_of_100_000_ids,
    values_of_8_mb_round_trip,
    very_long_ids,
    id_whose_display_fails_is_invalid_id,
);
