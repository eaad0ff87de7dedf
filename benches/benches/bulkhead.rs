//! The cost of a bulkhead on the path every admitted request takes.
//!
//! - `bulkhead/admitted`: one request through a `tower::Service` with a free
//!   permit, for the bare service, tower's `ConcurrencyLimit`,
//!   `tower-resilience-bulkhead` (rejecting when full) and Portcullis
//!   failing fast, Portcullis configured to wait (a free permit is taken
//!   the same way), and a Portcullis keyed bulkhead on a key that has its
//!   pool.
//! - `bulkhead/handle`: the [`Bulkhead`] handle alone, a permit taken and
//!   given back, without tower.
//!
//! Every inner future is ready at once, so each call is driven by polling
//! `poll_ready` and then the response future once, with a no-op waker: what
//! is measured is the middleware, not an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench bulkhead`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, inner, runtime};
use portcullis_bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadLayer, KeyedBulkhead, KeyedBulkheadLayer,
};
use tower::Layer;
use tower::limit::ConcurrencyLimitLayer;

/// Permits of every contender: far more than the one call in flight.
const PERMITS: u32 = 100;

fn config(wait: Duration) -> BulkheadConfig {
    BulkheadConfig::builder()
        .max_concurrent_calls(PERMITS)
        .max_wait(wait)
        .build()
        .expect("a valid configuration")
}

fn bulkhead(wait: Duration) -> Bulkhead {
    Bulkhead::from_config("bench", config(wait)).expect("a valid configuration")
}

fn admitted(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("bulkhead/admitted");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut tower_limit = ConcurrencyLimitLayer::new(PERMITS as usize).layer(inner());
    group.bench_function("tower_concurrency_limit", |b| {
        b.iter(|| black_box(call_ready(&mut tower_limit, black_box(1))));
    });

    let mut tower_resilience = tower_resilience_bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(PERMITS as usize)
        .reject_when_full()
        .build()
        .expect("a valid tower-resilience configuration")
        .layer(inner());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_ready(&mut tower_resilience, black_box(1))));
    });

    let mut portcullis = BulkheadLayer::new(bulkhead(Duration::ZERO)).layer(inner());
    group.bench_function("portcullis", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis, black_box(1))));
    });

    let mut waiting = BulkheadLayer::new(bulkhead(Duration::from_secs(1))).layer(inner());
    group.bench_function("portcullis_waiting", |b| {
        b.iter(|| black_box(call_ready(&mut waiting, black_box(1))));
    });

    let keyed = KeyedBulkhead::<u64>::from_config("bench", config(Duration::ZERO))
        .expect("a valid configuration");
    let mut keyed = KeyedBulkheadLayer::new(keyed, |request: &u64| request % 4).layer(inner());
    group.bench_function("portcullis_keyed", |b| {
        b.iter(|| black_box(call_ready(&mut keyed, black_box(1))));
    });

    group.finish();
}

fn handle(c: &mut Criterion) {
    let mut group = c.benchmark_group("bulkhead/handle");
    let bulkhead = bulkhead(Duration::ZERO);
    group.bench_function("try_acquire_release", |b| {
        b.iter(|| drop(black_box(&bulkhead).try_acquire().expect("a free permit")));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = admitted, handle
}
criterion_main!(benches);
