//! The full resilience stack — rate limit, timeout, retry, circuit
//! breaker, bulkhead, outermost first — around one ready service, built
//! from Portcullis and from tower-resilience (with tower's `Timeout`).
//!
//! Both are configured so that every call on the path measured succeeds
//! at its first attempt: a rate of 10⁹ a second with a burst of 10⁹, a
//! 30 s timeout, 3 attempts with exponential backoff, a breaker with a
//! count window of 100 calls, a bulkhead of 100 permits that fails fast.

use std::fmt::Debug;
use std::time::Duration;

use portcullis_benches::inner;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceBuilder};

/// The per-call timeout of both stacks.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts per call, the first included, of both retries.
pub(crate) const ATTEMPTS: u32 = 3;

/// Calls admitted per second, and the burst, of both rate limiters.
pub(crate) const RATE: u32 = 1_000_000_000;

/// Permits of both bulkheads.
pub(crate) const PERMITS: u32 = 100;

/// Calls in the count window of both breakers.
pub(crate) const WINDOW: u32 = 100;

/// The Portcullis stack, from the pattern crates' layers.
pub(crate) fn portcullis()
-> impl Service<u64, Response = u64, Error = portcullis_core::BoxError, Future: Send> + Clone {
    let (rate_limit, retry) = portcullis_outer();
    ServiceBuilder::new()
        .layer(rate_limit)
        .layer(portcullis_timeout::TimeoutLayer::new(TIMEOUT))
        .layer(retry)
        .layer(portcullis_breaker::CircuitBreakerLayer::new(
            portcullis_breaker(),
        ))
        .layer(portcullis_bulkhead::BulkheadLayer::new(
            portcullis_bulkhead(),
        ))
        .service(inner())
}

/// The Portcullis stack without its circuit breaker: what the rest
/// costs, so that the breaker's share of the whole can be told.
pub(crate) fn portcullis_without_breaker()
-> impl Service<u64, Response = u64, Error = portcullis_core::BoxError, Future: Send> + Clone {
    let (rate_limit, retry) = portcullis_outer();
    ServiceBuilder::new()
        .layer(rate_limit)
        .layer(portcullis_timeout::TimeoutLayer::new(TIMEOUT))
        .layer(retry)
        .layer(portcullis_bulkhead::BulkheadLayer::new(
            portcullis_bulkhead(),
        ))
        .service(inner())
}

fn portcullis_breaker() -> portcullis_breaker::Breaker {
    portcullis_breaker::Breaker::from_config(
        "stack",
        portcullis_breaker::BreakerConfig::builder()
            .count_window(WINDOW)
            .build()
            .expect("a valid breaker"),
    )
    .expect("a valid breaker")
}

fn portcullis_bulkhead() -> portcullis_bulkhead::Bulkhead {
    portcullis_bulkhead::Bulkhead::from_config(
        "stack",
        portcullis_bulkhead::BulkheadConfig::builder()
            .max_concurrent_calls(PERMITS)
            .max_wait(Duration::ZERO)
            .build()
            .expect("a valid bulkhead"),
    )
    .expect("a valid bulkhead")
}

fn portcullis_outer() -> (
    portcullis_ratelimit::RateLimitLayer,
    portcullis_retry::RetryLayer,
) {
    let limiter = portcullis_ratelimit::RateLimiter::from_config(
        "stack",
        portcullis_ratelimit::RateLimitConfig::per_second(RATE)
            .burst(RATE)
            .build()
            .expect("a valid rate limit"),
    )
    .expect("a valid rate limit");
    let retry = portcullis_retry::RetryLayer::from_config(
        "stack",
        portcullis_retry::RetryConfig::builder()
            .max_attempts(ATTEMPTS)
            .build()
            .expect("a valid retry"),
    )
    .expect("a valid retry");
    (portcullis_ratelimit::RateLimitLayer::new(limiter), retry)
}

/// The tower-resilience stack: its rate limiter, tower's `Timeout`, its
/// retry, its circuit breaker and its bulkhead.
pub(crate) fn tower_resilience()
-> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone {
    let bulkhead = tower_resilience_bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(PERMITS as usize)
        .reject_when_full()
        .build()
        .expect("a valid tower-resilience bulkhead")
        .layer(inner());
    around_bulkhead(bulkhead)
}

/// The tower-resilience stack with tower's `ConcurrencyLimit` in place of
/// its bulkhead.
pub(crate) fn tower_resilience_concurrency_limit()
-> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone {
    around_bulkhead(ConcurrencyLimitLayer::new(PERMITS as usize).layer(inner()))
}

/// tower-resilience's rate limiter (fixed window, its default), tower's
/// `Timeout`, tower-resilience's retry and breaker, around `bulkhead`.
fn around_bulkhead<S>(
    bulkhead: S,
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone
where
    S: Service<u64, Response = u64, Error: std::error::Error + Send + Sync + 'static>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let breaker = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::CountBased)
        .sliding_window_size(WINDOW as usize)
        .build()
        .expect("a valid tower-resilience breaker")
        .layer(bulkhead);
    let retry = tower_resilience_retry::RetryLayer::<u64, u64, _>::builder()
        .max_attempts(ATTEMPTS as usize)
        .exponential_backoff(Duration::from_millis(100))
        .build()
        .layer(breaker);
    let timeout = tower::timeout::TimeoutLayer::new(TIMEOUT).layer(retry);
    tower_resilience_ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(RATE as usize)
        .refresh_period(Duration::from_secs(1))
        .timeout_duration(Duration::ZERO)
        .build()
        .expect("a valid tower-resilience rate limit")
        .layer(timeout)
}
