//! The cost of a retry on the path every request takes: the first attempt
//! succeeds.
//!
//! - `retry/success_path`: one `u64` request (a `Clone` request) through a
//!   `tower::Service` whose first attempt succeeds, for the bare service,
//!   `tower-resilience-retry` (3 attempts, exponential backoff from 100 ms)
//!   and Portcullis with its default configuration (3 attempts, exponential
//!   backoff with equal jitter), with a retry budget (one clock read per
//!   call to find the budget's bucket), and with a single attempt.
//! - `retry/budget`: the [`RetryBudget`] handle alone, a deposit.
//!
//! Every inner future is ready at once, so each call is driven by polling
//! `poll_ready` and then the response future once, with a no-op waker: what
//! is measured is the middleware, not an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench retry`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, inner, runtime};
use portcullis_retry::{BudgetConfig, RetryBudget, RetryConfig, RetryLayer};
use tower::Layer;

fn portcullis(config: portcullis_retry::RetryConfigBuilder) -> RetryLayer {
    RetryLayer::from_config("bench", config.build().expect("a valid configuration"))
        .expect("a valid configuration")
}

fn success_path(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("retry/success_path");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut tower_resilience =
        tower_resilience_retry::RetryLayer::<u64, u64, Infallible>::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(100))
            .build()
            .layer(inner());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_ready(&mut tower_resilience, black_box(1))));
    });

    let mut default = portcullis(RetryConfig::builder()).layer(inner());
    group.bench_function("portcullis_default", |b| {
        b.iter(|| black_box(call_ready(&mut default, black_box(1))));
    });

    let mut budget =
        portcullis(RetryConfig::builder().budget(BudgetConfig::default())).layer(inner());
    group.bench_function("portcullis_budget", |b| {
        b.iter(|| black_box(call_ready(&mut budget, black_box(1))));
    });

    let mut single = portcullis(RetryConfig::builder().max_attempts(1)).layer(inner());
    group.bench_function("portcullis_one_attempt", |b| {
        b.iter(|| black_box(call_ready(&mut single, black_box(1))));
    });

    group.finish();
}

fn budget(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("retry/budget");
    let budget = RetryBudget::from_config(BudgetConfig::default()).expect("a valid budget");
    group.bench_function("deposit", |b| b.iter(|| black_box(&budget).deposit()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = success_path, budget
}
criterion_main!(benches);
