//! Contention: 1, 2 and 4 threads calling through ONE shared instance at
//! once, beside the peers in the same run.
//!
//! - `threads/breaker_<n>`: a closed count-window breaker (window of 100)
//!   as a tower service, each thread with its own clone of the service and
//!   every clone sharing the one breaker: Portcullis and
//!   tower-resilience; the bare service for the floor.
//! - `threads/rate_limit_<n>`: one limiter admitting every call (10⁹ a
//!   second): Portcullis's handle and `governor`'s direct limiter.
//! - `threads/outlier_<n>`: outlier ejection over three healthy endpoints,
//!   one detector shared by every thread's clone of the service (tower's
//!   p2c balancer is not `Clone`, so it has no row here).
//! - `threads/stack_<n>`: the full stack of `benches/stack.rs` (rate limit,
//!   timeout, retry, breaker, bulkhead), one instance cloned per thread:
//!   Portcullis and tower-resilience.
//!
//! A response future is polled until it is ready (a peer's may wait for
//! a lock under contention), with a no-op waker: a spin, as a busy server
//! would re-poll.
//!
//! Each measurement starts `n` threads, holds them at a barrier, then has
//! each make the same number of calls; the time reported per iteration is
//! the wall time from the barrier to the last thread's end divided by the
//! calls of one thread. So a layer without contention reports the same
//! time for 1, 2 and 4 threads (on as many free cores), and a shared cache
//! line that bounces between cores shows as a time that grows with `n`.
//!
//! Run with `cargo bench -p portcullis-benches --bench threads`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use governor::{Quota, RateLimiter as Governor};
use portcullis_benches::{breaker, call, count_config, inner, runtime};
use portcullis_breaker::CircuitBreakerLayer;
use portcullis_core::BoxError;
use portcullis_outlier::{Detector, Endpoint, OutlierConfig, OutlierLayer};
use portcullis_ratelimit::{RateLimitConfig, RateLimiter};
use tokio::runtime::Handle;
use tokio::time::Instant;
use tower::{Layer, Service};

#[path = "../stacks.rs"]
#[allow(dead_code)]
mod stacks;

/// The thread counts measured.
const THREADS: [usize; 3] = [1, 2, 4];

/// Runs `calls` calls of `work` on each of `threads` threads at once and
/// returns the wall time from their common start to the last one's end.
fn contend<W>(handle: &Handle, threads: usize, calls: u64, work: impl Fn() -> W) -> Duration
where
    W: FnMut() + Send,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..threads)
            .map(|_| {
                let mut one = work();
                let barrier = barrier.clone();
                scope.spawn(move || {
                    let _entered = handle.enter();
                    barrier.wait();
                    for _ in 0..calls {
                        one();
                    }
                })
            })
            .collect();
        let _entered = handle.enter();
        barrier.wait();
        let start = Instant::now();
        for thread in running {
            thread.join().expect("a benchmark thread");
        }
        start.elapsed()
    })
}

/// Benchmarks `service`, cloned once per thread, at 1, 2 and 4 threads.
fn services<S>(group: &mut BenchmarkGroup<'_, WallTime>, handle: &Handle, name: &str, service: S)
where
    S: Service<u64> + Clone + Send,
    S::Response: Send,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    for threads in THREADS {
        group.bench_function(format!("{name}/{threads}"), |b| {
            b.iter_custom(|iters| {
                contend(handle, threads, iters, || {
                    let mut service = service.clone();
                    // Polled until ready: under contention a peer's future
                    // may wait for a lock (tower-resilience's does).
                    move || {
                        black_box(call(&mut service, black_box(1), usize::MAX));
                    }
                })
            })
        });
    }
}

fn breaker_threads(c: &mut Criterion) {
    let runtime = runtime();
    let handle = runtime.handle().clone();
    let mut group = c.benchmark_group("threads/breaker");
    services(&mut group, &handle, "bare", inner());
    let _entered = handle.enter();
    let tower_resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::CountBased)
        .sliding_window_size(100)
        .build()
        .expect("a valid tower-resilience configuration")
        .layer(inner());
    services(&mut group, &handle, "tower_resilience", tower_resilience);
    let portcullis = CircuitBreakerLayer::new(breaker(count_config())).layer(inner());
    services(&mut group, &handle, "portcullis_count", portcullis);
    group.finish();
}

fn rate_limit_threads(c: &mut Criterion) {
    let runtime = runtime();
    let handle = runtime.handle().clone();
    let mut group = c.benchmark_group("threads/rate_limit");
    let rate = std::num::NonZeroU32::new(stacks::RATE).expect("a rate");
    let governor = Arc::new(Governor::direct(Quota::per_second(rate).allow_burst(rate)));
    let _entered = handle.enter();
    let config = RateLimitConfig::builder()
        .rate(stacks::RATE)
        .burst(stacks::RATE)
        .build()
        .expect("a valid rate limit");
    let portcullis = RateLimiter::from_config("bench", config).expect("a valid limiter");
    for threads in THREADS {
        group.bench_function(format!("governor/{threads}"), |b| {
            b.iter_custom(|iters| {
                contend(&handle, threads, iters, || {
                    let governor = governor.clone();
                    move || {
                        black_box(governor.check()).expect("admitted");
                    }
                })
            })
        });
        group.bench_function(format!("portcullis/{threads}"), |b| {
            b.iter_custom(|iters| {
                contend(&handle, threads, iters, || {
                    let limiter = portcullis.clone();
                    move || {
                        black_box(limiter.try_acquire()).expect("admitted");
                    }
                })
            })
        });
    }
    group.finish();
}

fn outlier_threads(c: &mut Criterion) {
    let runtime = runtime();
    let handle = runtime.handle().clone();
    let _entered = handle.enter();
    let mut group = c.benchmark_group("threads/outlier");
    let detector = Detector::new("bench", ["a", "b", "c"], OutlierConfig::default())
        .expect("a valid configuration");
    let route = |_: &mut u64, _: &Endpoint| -> Result<(), BoxError> { Ok(()) };
    let portcullis = OutlierLayer::new(detector, route).layer(inner());
    services(&mut group, &handle, "portcullis", portcullis);
    group.finish();
}

fn stack_threads(c: &mut Criterion) {
    let runtime = runtime();
    let handle = runtime.handle().clone();
    let _entered = handle.enter();
    let mut group = c.benchmark_group("threads/stack");
    services(
        &mut group,
        &handle,
        "tower_resilience",
        stacks::tower_resilience(),
    );
    services(&mut group, &handle, "portcullis", stacks::portcullis());
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = breaker_threads, rate_limit_threads, outlier_threads, stack_threads
}
criterion_main!(benches);
