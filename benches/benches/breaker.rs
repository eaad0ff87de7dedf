//! The cost of a circuit breaker on the path every request takes.
//!
//! - `breaker/closed_path`: one request through a `tower::Service`, breaker
//!   closed and every call a success, for the bare service,
//!   `tower-resilience-circuitbreaker` and Portcullis with a count window and
//!   a time window.
//! - `breaker/time_window_fill`: the same call on a time-window breaker whose
//!   window holds a thousand calls, then a million.
//! - `breaker/acquire_record`: the [`Breaker`] handle alone, admission and a
//!   recorded success, without tower.
//!
//! Every inner future is ready at once, so each call is driven by polling
//! `poll_ready` and then the response future once, with a no-op waker: what
//! is measured is the middleware, not an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench breaker`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{breaker, call_ready, count_config, inner, runtime, time_config};
use portcullis_breaker::{Breaker, CircuitBreakerLayer};
use tokio::time::Instant;
use tower::Layer;

/// How many calls `time_window_fill` times between two clock reads.
const CHUNK: u64 = 1_000;

/// Records `calls` successes through the handle.
fn fill(breaker: &Breaker, calls: u64) {
    for _ in 0..calls {
        breaker
            .try_acquire()
            .expect("the breaker is closed")
            .success();
    }
}

fn closed_path(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("breaker/closed_path");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut tower_resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::CountBased)
        .sliding_window_size(100)
        .build()
        .expect("a valid tower-resilience configuration")
        .layer(inner());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_ready(&mut tower_resilience, black_box(1))));
    });

    let mut portcullis_count = CircuitBreakerLayer::new(breaker(count_config())).layer(inner());
    group.bench_function("portcullis_count", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_count, black_box(1))));
    });

    let mut portcullis_time = CircuitBreakerLayer::new(breaker(time_config())).layer(inner());
    group.bench_function("portcullis_time", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_time, black_box(1))));
    });

    group.finish();
}

/// Measured calls land in the window too: left alone, both windows would
/// soon hold the hundreds of millions of calls a run makes. So the window is
/// reset and filled again, untimed, whenever the measured calls since the
/// last fill reach `calls`: it holds between `calls` and twice `calls`
/// throughout. Calls are timed in chunks of [`CHUNK`] for both sizes, so that
/// the clock reads weigh the same on each.
fn time_window_fill(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("breaker/time_window_fill");

    for (name, calls) in [("calls_1k", 1_000), ("calls_1m", 1_000_000)] {
        let breaker = breaker(time_config());
        let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(inner());
        fill(&breaker, calls);
        assert_eq!(
            breaker.snapshot().buffered_calls,
            calls,
            "the window holds the filled calls"
        );
        let mut since_fill = 0;

        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(CHUNK);
                    if since_fill + chunk > calls {
                        breaker.reset();
                        fill(&breaker, calls);
                        since_fill = 0;
                    }
                    let start = Instant::now();
                    for _ in 0..chunk {
                        black_box(call_ready(&mut service, black_box(1)));
                    }
                    elapsed += start.elapsed();
                    since_fill += chunk;
                    left -= chunk;
                }
                elapsed
            });
        });
    }

    group.finish();
}

fn acquire_record(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("breaker/acquire_record");

    for (name, config) in [("count", count_config()), ("time", time_config())] {
        let breaker = breaker(config);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(&breaker)
                    .try_acquire()
                    .expect("the breaker is closed")
                    .success()
            });
        });
    }

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = closed_path, time_window_fill, acquire_record
}
criterion_main!(benches);
