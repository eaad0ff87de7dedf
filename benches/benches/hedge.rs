//! The cost of a hedge on the path nearly every request takes: the first
//! attempt answers before the delay, so no hedge is sent.
//!
//! - `hedge/no_hedge_path`: one `u64` request (a `Clone` request) through
//!   a `tower::Service` that is ready at once, for the bare service,
//!   tower's own `hedge::Hedge` (the 95th percentile after 10 data
//!   points, periods of 1 s) and Portcullis with a fixed delay, with the
//!   95th-percentile delay (the latency counted into the histogram on
//!   every call) and with the percentile and a budget.
//!
//! Every inner future is ready at once, so each call is driven by polling
//! `poll_ready` and then the response future once, with a no-op waker:
//! what is measured is the middleware, not an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench hedge`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, inner, runtime};
use portcullis_hedge::{DelayConfig, HedgeConfig, HedgeLayer};
use portcullis_retry::BudgetConfig;
use tower::Layer;

/// tower's hedge policy: every request may be hedged.
#[derive(Clone, Copy)]
struct Always;

impl tower::hedge::Policy<u64> for Always {
    fn clone_request(&self, request: &u64) -> Option<u64> {
        Some(*request)
    }

    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}

fn portcullis(config: portcullis_hedge::HedgeConfigBuilder) -> HedgeLayer {
    HedgeLayer::from_config("bench", config.build().expect("a valid configuration"))
        .expect("a valid configuration")
}

fn no_hedge_path(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("hedge/no_hedge_path");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut tower_hedge =
        tower::hedge::Hedge::new::<u64>(inner(), Always, 10, 0.95, Duration::from_secs(1));
    group.bench_function("tower_hedge", |b| {
        b.iter(|| black_box(call_ready(&mut tower_hedge, black_box(1))));
    });

    let fixed = DelayConfig::fixed(Duration::from_millis(10));
    let mut portcullis_fixed = portcullis(HedgeConfig::builder().delay(fixed)).layer(inner());
    group.bench_function("portcullis_fixed", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_fixed, black_box(1))));
    });

    let percentile =
        DelayConfig::percentile(0.95, 10, Duration::from_millis(10)).window(Duration::from_secs(1));
    let mut portcullis_percentile =
        portcullis(HedgeConfig::builder().delay(percentile)).layer(inner());
    group.bench_function("portcullis_percentile", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_percentile, black_box(1))));
    });

    let mut portcullis_budget = portcullis(
        HedgeConfig::builder()
            .delay(percentile)
            .budget(BudgetConfig::default()),
    )
    .layer(inner());
    group.bench_function("portcullis_percentile_budget", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_budget, black_box(1))));
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = no_hedge_path
}
criterion_main!(benches);
