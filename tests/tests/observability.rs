//! `tracing`: a miss runs in a `fill` span with the user's fetch in a `fetch` span inside it, an
//! invalidation in an `invalidate` span, the engine's events inside them; a hit opens no span.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruecache_tests::Target;
use support::{cache, value, Source};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// What the engine reported: every span opened (name and fields, with its parent's name) and
/// the spans each event was emitted in.
#[derive(Clone, Default)]
struct Recorded {
    spans: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<String>>>,
}

impl Recorded {
    fn take(&self) -> (Vec<String>, Vec<String>) {
        (
            std::mem::take(&mut *self.spans.lock().unwrap()),
            std::mem::take(&mut *self.events.lock().unwrap()),
        )
    }
}

/// Collects a span's fields as `name=value`.
struct Fields(Vec<String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.metadata().target().starts_with("ruecache") {
            return;
        }
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent().map(|p| p.name()))
            .unwrap_or("-");
        self.spans.lock().unwrap().push(format!(
            "{} {} in {parent}",
            attrs.metadata().name(),
            fields.0.join(" ")
        ));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("ruecache") {
            return;
        }
        let scope: Vec<&str> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|span| span.name()).collect())
            .unwrap_or_default();
        self.events.lock().unwrap().push(scope.join("/"));
    }
}

async fn a_miss_is_traced_in_spans_a_hit_is_not(t: Target) {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry()
        .with(recorded.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    // This thread only: the test runs on a current-thread runtime.
    let _default = tracing::subscriber::set_default(subscriber);

    let cache = cache(t.connect().await, &t.ns());
    recorded.take(); // whatever connecting reported
    let source = Source::default();
    let got: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(got[&2], value(2));
    let (spans, events) = recorded.take();
    assert_eq!(
        spans,
        ["fill misses=2 in -", "fetch ids=2 in fill"],
        "a miss"
    );
    assert!(
        !events.is_empty() && events.iter().all(|scope| scope.starts_with("fill")),
        "the engine's events are inside the fill: {events:?}"
    );

    let hit: HashMap<u64, String> = cache
        .get_and_fill([1, 2], |ids| source.fetch(ids))
        .await
        .unwrap();
    assert_eq!(hit, got);
    assert_eq!(recorded.take(), (vec![], vec![]), "a hit");

    cache.invalidate([1, 2]).await.unwrap();
    let (spans, _) = recorded.take();
    assert_eq!(spans, ["invalidate ids=2 in -"], "an invalidation");

    // A named cache carries its name in its spans.
    let named: ruecache::Cache<u64, String> =
        ruecache::Cache::builder(cache.connection().clone(), &support::template(&t.ns()))
            .name("widgets")
            .build()
            .unwrap();
    let _: HashMap<u64, String> = named
        .get_and_fill([3], |ids| source.fetch(ids))
        .await
        .unwrap();
    named.invalidate([3]).await.unwrap();
    let (spans, _) = recorded.take();
    assert_eq!(
        spans,
        [
            "fill cache=\"widgets\" misses=1 in -",
            "fetch ids=1 in fill",
            "invalidate cache=\"widgets\" ids=1 in -"
        ],
        "a named cache"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_miss_is_traced_in_spans_a_hit_is_not_standalone() {
    a_miss_is_traced_in_spans_a_hit_is_not(Target::Standalone).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_miss_is_traced_in_spans_a_hit_is_not_cluster() {
    a_miss_is_traced_in_spans_a_hit_is_not(Target::Cluster).await
}
