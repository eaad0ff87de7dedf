//! The cost of a rate limit on the path every admitted request takes.
//!
//! - `ratelimit/admitted_path`: one request through a `tower::Service`, with
//!   a limit so high (a billion a second, a burst of a billion) that every
//!   call is admitted, for the bare service, `governor` (its direct limiter's
//!   `check()` in a minimal service written here), `tower-resilience-
//!   ratelimiter` (its default fixed window and its token bucket) and
//!   Portcullis (a single limiter, and a keyed one with a constant key).
//! - `ratelimit/handle`: the limiters alone, without tower: `governor`'s
//!   `check()` beside Portcullis' `try_acquire` (single and keyed), and one
//!   read of `tokio::time::Instant::now()`, the clock every Portcullis call
//!   reads once (`governor` reads its own TSC-based clock instead).
//!
//! Every inner future is ready at once, so each call is driven by polling
//! `poll_ready`, then the response future once, with a no-op waker: what
//! is measured is the middleware, not an executor.
//!
//! Run with `cargo bench -p portcullis-benches --bench ratelimit`.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{DefaultDirectRateLimiter, Quota};
use portcullis_benches::{call_ready, inner, runtime};
use portcullis_core::BoxError;
use portcullis_ratelimit::{KeyedRateLimiter, RateLimitConfig, RateLimitLayer, RateLimiter};
use tower::{Layer, Service};

/// A limit no benchmark run can exhaust.
const RATE: u32 = 1_000_000_000;

fn config() -> RateLimitConfig {
    RateLimitConfig::per_second(RATE)
        .burst(RATE)
        .build()
        .expect("a valid configuration")
}

fn governor() -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(RATE).expect("non-zero");
    Arc::new(governor::RateLimiter::direct(
        Quota::per_second(rate).allow_burst(rate),
    ))
}

/// `governor`'s direct limiter as a minimal tower service: `check()` in
/// `call`, an error future when it says no.
#[derive(Clone)]
struct Governed<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
}

enum GovernedFuture<F> {
    Called(F),
    Limited,
}

impl<S, R> Service<R> for Governed<S>
where
    S: Service<R>,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = GovernedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self.limiter.check() {
            Ok(()) => GovernedFuture::Called(self.inner.call(request)),
            Err(_) => GovernedFuture::Limited,
        }
    }
}

impl<F, T, E> Future for GovernedFuture<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            GovernedFuture::Called(future) => Pin::new(future).poll(cx).map_err(Into::into),
            GovernedFuture::Limited => Poll::Ready(Err("rate-limited".into())),
        }
    }
}

fn admitted_path(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("ratelimit/admitted_path");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let mut governed = Governed {
        inner: inner(),
        limiter: governor(),
    };
    group.bench_function("governor", |b| {
        b.iter(|| black_box(call_ready(&mut governed, black_box(1))));
    });

    let mut fixed = tower_resilience_ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(RATE as usize)
        .refresh_period(Duration::from_secs(1))
        .timeout_duration(Duration::ZERO)
        .build()
        .expect("a valid tower-resilience configuration")
        .layer(inner());
    group.bench_function("tower_resilience_fixed", |b| {
        b.iter(|| black_box(call_ready(&mut fixed, black_box(1))));
    });

    let mut bucket =
        tower_resilience_ratelimiter::RateLimiterLayer::burst(RATE as usize, RATE as usize)
            .timeout_duration(Duration::ZERO)
            .build()
            .expect("a valid tower-resilience configuration")
            .layer(inner());
    group.bench_function("tower_resilience_token_bucket", |b| {
        b.iter(|| black_box(call_ready(&mut bucket, black_box(1))));
    });

    let limiter = RateLimiter::from_config("bench", config()).expect("a valid configuration");
    let mut portcullis = RateLimitLayer::new(limiter).layer(inner());
    group.bench_function("portcullis", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis, black_box(1))));
    });

    let keyed = KeyedRateLimiter::from_config("bench", config()).expect("a valid configuration");
    let mut portcullis_keyed = RateLimitLayer::keyed(keyed, |x: &u64| Some(*x)).layer(inner());
    group.bench_function("portcullis_keyed", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis_keyed, black_box(1))));
    });

    group.finish();
}

fn handle(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("ratelimit/handle");

    // The floor of an exact limiter driven by tokio's clock: one clock read.
    group.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()));
    });

    let governor = governor();
    group.bench_function("governor_check", |b| {
        b.iter(|| black_box(&governor).check().expect("admitted"));
    });

    let limiter = RateLimiter::from_config("bench", config()).expect("a valid configuration");
    group.bench_function("portcullis_try_acquire", |b| {
        b.iter(|| black_box(&limiter).try_acquire().expect("admitted"));
    });

    let keyed =
        KeyedRateLimiter::<u64>::from_config("bench", config()).expect("a valid configuration");
    group.bench_function("portcullis_keyed_try_acquire", |b| {
        b.iter(|| {
            black_box(&keyed)
                .try_acquire(black_box(&1))
                .expect("admitted")
        });
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = admitted_path, handle
}
criterion_main!(benches);
