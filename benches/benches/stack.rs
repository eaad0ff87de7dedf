//! The cost of the full resilience stack on the path every request takes:
//! rate limit → timeout → retry → circuit breaker → bulkhead, outermost
//! first, every call admitted and successful at its first attempt.
//!
//! - `stack/success_path`: one `u64` request through the bare service,
//!   tower-resilience's stack (its rate limiter, tower's `Timeout`, its
//!   retry, breaker and bulkhead), the same with tower's `ConcurrencyLimit`
//!   in place of its bulkhead, and Portcullis' stack from the pattern
//!   crates, and the same without its breaker (to tell the breaker's share
//!   of the total). The stacks and their configuration are in
//!   `benches/stacks.rs`.
//!
//! Every inner future is ready at once, so each call is driven by polling
//! `poll_ready` and then the response future once, with a no-op waker,
//! inside a tokio runtime context: what is measured is the middleware, not
//! an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench stack`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, inner, runtime};
use stacks::{
    portcullis, portcullis_without_breaker, tower_resilience, tower_resilience_concurrency_limit,
};

// The stacks, shared by `benches/stack.rs` and `tests/stack_alloc.rs`;
// each uses only part of them.
#[allow(dead_code)]
#[path = "../stacks.rs"]
mod stacks;

fn success_path(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("stack/success_path");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut tower_resilience = tower_resilience();
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_ready(&mut tower_resilience, black_box(1))));
    });

    let mut tower_resilience_limit = tower_resilience_concurrency_limit();
    group.bench_function("tower_resilience_concurrency_limit", |b| {
        b.iter(|| black_box(call_ready(&mut tower_resilience_limit, black_box(1))));
    });

    let mut portcullis = portcullis();
    group.bench_function("portcullis", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis, black_box(1))));
    });

    let mut without_breaker = portcullis_without_breaker();
    group.bench_function("portcullis_without_breaker", |b| {
        b.iter(|| black_box(call_ready(&mut without_breaker, black_box(1))));
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = success_path
}
criterion_main!(benches);
