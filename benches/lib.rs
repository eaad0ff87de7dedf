//! Helpers shared by the benchmarks in `benches/` and their examples: drive
//! a `tower` service through one call without an executor, so that a
//! benchmark measures the layer and not a runtime; the inner service every
//! contender wraps; the runtime the calls are made in; the breaker configs.
//! (The full stacks that `benches/stack.rs` and `tests/stack_alloc.rs`
//! share are in `stacks.rs`, included by both, so that the peers stay
//! dev-dependencies.)

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig};
pub use portcullis_testing::{PendingOnce, call, call_ready};
use tower::service_fn;
use tower::util::ServiceFn;

/// The service every contender wraps: answers with its request, at once.
pub fn inner() -> ServiceFn<impl Fn(u64) -> Ready<Result<u64, Infallible>> + Clone + Send + 'static>
{
    service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)))
}

pub use portcullis_testing::runtime;

/// The breaker benchmarks' count window: the last 100 calls.
pub fn count_config() -> BreakerConfig {
    BreakerConfig::builder()
        .count_window(100)
        .build()
        .expect("a valid count-window configuration")
}

/// The breaker benchmarks' time window: 60 s in 60 buckets, 20 calls at
/// least.
pub fn time_config() -> BreakerConfig {
    BreakerConfig::builder()
        .time_window(Duration::from_secs(60), 60)
        .minimum_calls(20)
        .build()
        .expect("a valid time-window configuration")
}

/// A breaker named `bench` with `config`.
pub fn breaker(config: BreakerConfig) -> Breaker {
    Breaker::from_config("bench", config).expect("a valid configuration")
}
