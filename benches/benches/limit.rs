//! The cost of an adaptive concurrency limit on the path every admitted
//! request takes.
//!
//! - `limit/admitted`: one `u64` request through a `tower::Service` that is
//!   ready at once, with room under the limit, for the bare service,
//!   tower's fixed `ConcurrencyLimit`, `tower-resilience-adaptive`'s
//!   Gradient2 and Vegas, and Portcullis' Gradient2, Vegas and AIMD (one
//!   window per second of at least 10 calls, the default), and Portcullis'
//!   Gradient2 with two partitions.
//!
//! Every contender's limit starts at 100 and may not fall below 100 where
//! it has a minimum, far above the one call in flight. Every inner future
//! is ready at once, so each call is driven by polling `poll_ready` and
//! then the response future once, with a no-op waker: what is measured is
//! the middleware, not an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench limit`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, inner, runtime};
use portcullis_limit::{
    AimdConfig, Gradient2Config, LimitConfig, LimitConfigBuilder, LimitLayer, Limiter, VegasConfig,
};
use tower::Layer;
use tower::limit::ConcurrencyLimitLayer;
use tower_resilience_adaptive::{AdaptiveLimiterLayer, Gradient2, Vegas};

const LIMIT: u32 = 100;

fn limiter(config: LimitConfigBuilder) -> Limiter {
    Limiter::from_config("bench", config.build().expect("a valid configuration"))
        .expect("a valid configuration")
}

/// Gradient2 from `LIMIT`, never below it.
fn gradient2() -> Gradient2Config {
    Gradient2Config {
        initial_limit: LIMIT,
        min_limit: LIMIT,
        max_limit: 1000,
        ..Gradient2Config::default()
    }
}

fn admitted(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("limit/admitted");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut tower_limit = ConcurrencyLimitLayer::new(LIMIT as usize).layer(inner());
    group.bench_function("tower_concurrency_limit", |b| {
        b.iter(|| black_box(call_ready(&mut tower_limit, black_box(1))));
    });

    let gradient = Gradient2::builder()
        .initial_limit(LIMIT as usize)
        .min_limit(LIMIT as usize)
        .max_limit(1000)
        .build()
        .expect("a valid configuration");
    let mut resilience_gradient = AdaptiveLimiterLayer::new(gradient).layer(inner());
    group.bench_function("tower_resilience_gradient2", |b| {
        b.iter(|| black_box(call_ready(&mut resilience_gradient, black_box(1))));
    });

    let vegas = Vegas::builder()
        .initial_limit(LIMIT as usize)
        .min_limit(LIMIT as usize)
        .max_limit(1000)
        .build()
        .expect("a valid configuration");
    let mut resilience_vegas = AdaptiveLimiterLayer::new(vegas).layer(inner());
    group.bench_function("tower_resilience_vegas", |b| {
        b.iter(|| black_box(call_ready(&mut resilience_vegas, black_box(1))));
    });

    let gradient = limiter(LimitConfig::builder().gradient2(gradient2()));
    let mut portcullis_gradient2 = LimitLayer::new(gradient).layer(inner());
    group.bench_function("portcullis_gradient2", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_gradient2, black_box(1))));
    });

    let vegas = limiter(LimitConfig::builder().vegas(VegasConfig {
        initial_limit: LIMIT,
        min_limit: LIMIT,
        ..VegasConfig::default()
    }));
    let mut portcullis_vegas = LimitLayer::new(vegas).layer(inner());
    group.bench_function("portcullis_vegas", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_vegas, black_box(1))));
    });

    let aimd = limiter(LimitConfig::builder().aimd(AimdConfig {
        initial_limit: LIMIT,
        min_limit: LIMIT,
        max_limit: 1000,
        ..AimdConfig::default()
    }));
    let mut portcullis_aimd = LimitLayer::new(aimd).layer(inner());
    group.bench_function("portcullis_aimd", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_aimd, black_box(1))));
    });

    let partitioned = limiter(
        LimitConfig::builder()
            .gradient2(gradient2())
            .partition("live", 0.9)
            .partition("batch", 0.1),
    );
    let live = partitioned.partition("live");
    let mut portcullis_partitioned = LimitLayer::new(partitioned)
        .partition_by(move |_: &u64| live)
        .layer(inner());
    group.bench_function("portcullis_gradient2_partitions", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_partitioned, black_box(1))));
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = admitted
}
criterion_main!(benches);
