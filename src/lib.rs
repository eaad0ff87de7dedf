//! Portcullis: resilience middleware for [`tower`](https://docs.rs/tower).
//!
//! Services call things that fail. Portcullis gives them the classic
//! defences as `tower` layers, each in its own crate and re-exported here
//! behind a feature, sharing one vocabulary of outcomes, classifiers and
//! rejection errors ([`core`]).
//!
//! | feature   | crate | what it is |
//! |-----------|-------|------------|
//! | `breaker` (default) | [`breaker`] | circuit breaker: count and time windows, half-open probes, manual control, events |
//! | `timeout` | [`timeout`] | timeouts: typed `Elapsed`, HTTP 504 flavour, per-request overrides, deadline propagation |
//! | `fallback` | [`fallback`] | fallbacks: a value, a closure, secondary services, the last good response |
//! | `chaos` | [`chaos`] | fault injection: latency, errors, responses at seeded rates, outage windows |
//! | `bulkhead` | [`bulkhead`] | bulkheads: max concurrent calls, bounded FIFO wait, keyed pools, permits held until the body ends |
//! | `retry` | [`retry`] | retries: backoff with jitter, Retry-After, budgets, idempotency gate, HTTP body replay |
//! | `ratelimit` | [`ratelimit`] | rate limiting: lock-free GCRA, keyed limits with bounded memory, 429 with RateLimit headers |
//! | `http`    | | HTTP classifier (5xx, 408, 429 are failures; `Retry-After`), HTTP timeout |
//! | `grpc`    | | gRPC classifier (`grpc-status`) |
//! | `full`    | | everything |
//!
//! # Example
//!
//! ```
//! use portcullis::breaker::{Breaker, CircuitBreakerLayer, State};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let breaker = Breaker::new("search");
//! let service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|q: &'static str| async move { Ok::<_, std::io::Error>(q.len()) }));
//! assert_eq!(service.oneshot("tower").await.unwrap(), 5);
//! assert_eq!(breaker.state(), State::Closed);
//! # }
//! ```

pub use portcullis_core as core;

/// The circuit breaker (feature `breaker`).
#[cfg(feature = "breaker")]
pub use portcullis_breaker as breaker;

/// Timeouts (feature `timeout`).
#[cfg(feature = "timeout")]
pub use portcullis_timeout as timeout;

/// Fallbacks: a value, a closure, secondary services, the last good response (feature `fallback`).
#[cfg(feature = "fallback")]
pub use portcullis_fallback as fallback;

/// Fault injection: latency, errors, responses at seeded rates, outage windows (feature `chaos`).
#[cfg(feature = "chaos")]
pub use portcullis_chaos as chaos;

/// Bulkheads: max concurrent calls, bounded FIFO wait, keyed pools, permits held until the body ends (feature `bulkhead`).
#[cfg(feature = "bulkhead")]
pub use portcullis_bulkhead as bulkhead;

/// Retries: backoff with jitter, Retry-After, budgets, idempotency gate, HTTP body replay (feature `retry`).
#[cfg(feature = "retry")]
pub use portcullis_retry as retry;

/// Rate limiting: lock-free GCRA, keyed limits with bounded memory, 429 with RateLimit headers (feature `ratelimit`).
#[cfg(feature = "ratelimit")]
pub use portcullis_ratelimit as ratelimit;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
