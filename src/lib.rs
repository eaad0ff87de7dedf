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
//! | `hedge` | [`hedge`] | hedged requests: another attempt after a fixed or percentile delay, the first good answer wins, losers cancelled, a budget shared with retry |
//! | `outlier` | [`outlier`] | outlier ejection: calls spread over an upstream's endpoints, one that fails in a row or below the others' success rate ejected for a growing time, never more than a share at once |
//! | `limit` | [`limit`] | adaptive concurrency limits: AIMD, Gradient2 and Vegas with Netflix's defaults, partitions, newest-first queue, 503 with Retry-After |
//! | `ratelimit` | [`ratelimit`] | rate limiting: lock-free GCRA, keyed limits with bounded memory, 429 with RateLimit headers |
//! | `redis` | [`redis`] | a rate limit shared by the fleet, in Redis: local denial cache, leases, coalesced round trips, fail open / closed / local |
//! | `registry` | [`registry`] | the registry: named breakers, health, Prometheus metrics, events, dashboard, guarded control |
//! | `http`    | [`http`] | every Portcullis error as its HTTP response ([`http::ErrorMappingLayer`], [`http::handle_error`]); the HTTP classifier (5xx, 408, 429 are failures; `Retry-After`) and the HTTP flavours of the layers |
//! | `registry` + `http` | [`client`] | keyed client stacks: one breaker (and bulkhead) per upstream authority, from the registry ([`client::PerAuthorityLayer`]) |
//! | `grpc`    | [`grpc`] | every Portcullis error as its `tonic::Status` ([`grpc::StatusMappingLayer`], [`grpc::to_status`]), with `grpc-retry-pushback-ms`; the gRPC classifier (`grpc-status`) and retry policy |
//! | `metrics` | | the registry publishes its figures to the `metrics` crate |
//! | `axum`    | | a rate limit keyed by client IP reads axum's `ConnectInfo`, one keyed by route its `MatchedPath` |
//! | `preset`  | [`preset`] | the standard HTTP client, server route and gRPC client stacks, with documented defaults, checked across layers |
//! | `config`  | [`config`] | per-route stacks from a TOML file: defaults, profiles, routes and upstreams, rate limits shared or keyed (client IP, route, header), every error with its path, built through the registry, reloaded live |
//! | `reqwest` | [`client`] | a `reqwest::Client` behind an upstream's stack from the config file, called as reqwest is (`client::HttpClient`: `get`, `post`, `header`, `body`, `send`) |
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
//!
//! # In a `ServiceBuilder`
//!
//! [`ServiceBuilderExt`] adds one method per pattern to
//! `tower::ServiceBuilder` (`.circuit_breaker(..)`, `.retry_with(..)`,
//! `.timeout_after(..)`, `.bulkhead(..)`, `.fallback(..)`, `.chaos(..)`),
//! each behind its feature. With the `http` feature,
//! [`http::ErrorMappingLayer`] on top turns every error of the stack into
//! the response it should be (503 and `Retry-After` for an open breaker or a
//! full bulkhead, 429 for a rate limit, 504 for a timeout, 502 for the
//! upstream's own errors), so an axum route keeps `Error = Infallible`;
//! [`ErrorKind`] says what an error means without HTTP.

mod builder;
#[cfg(all(feature = "registry", feature = "http"))]
pub mod client;
#[cfg(feature = "config")]
pub mod config;
pub mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "preset")]
pub mod preset;

pub use builder::ServiceBuilderExt;
pub use error::{ConfigErrors, ErrorKind};

#[doc(inline)]
pub use portcullis_core as core;

/// The circuit breaker (feature `breaker`).
#[cfg(feature = "breaker")]
#[doc(inline)]
pub use portcullis_breaker as breaker;

/// Timeouts (feature `timeout`).
#[cfg(feature = "timeout")]
#[doc(inline)]
pub use portcullis_timeout as timeout;

/// Fallbacks: a value, a closure, secondary services, the last good response (feature `fallback`).
#[cfg(feature = "fallback")]
#[doc(inline)]
pub use portcullis_fallback as fallback;

/// Fault injection: latency, errors, responses at seeded rates, outage windows (feature `chaos`).
#[cfg(feature = "chaos")]
#[doc(inline)]
pub use portcullis_chaos as chaos;

/// Bulkheads: max concurrent calls, bounded FIFO wait, keyed pools, permits held until the body ends (feature `bulkhead`).
#[cfg(feature = "bulkhead")]
#[doc(inline)]
pub use portcullis_bulkhead as bulkhead;

/// Retries: backoff with jitter, Retry-After, budgets, idempotency gate, HTTP body replay (feature `retry`).
#[cfg(feature = "retry")]
#[doc(inline)]
pub use portcullis_retry as retry;

/// Hedged requests: another attempt after a fixed or percentile delay, first good answer wins (feature `hedge`).
#[cfg(feature = "hedge")]
#[doc(inline)]
pub use portcullis_hedge as hedge;

/// Adaptive concurrency limits: AIMD, Gradient2 and Vegas, partitions, newest-first queue, 503 with Retry-After (feature `limit`).
#[cfg(feature = "limit")]
#[doc(inline)]
pub use portcullis_limit as limit;
/// Outlier ejection: calls spread over an upstream's endpoints, failing ones out of rotation for a while (feature `outlier`).
#[cfg(feature = "outlier")]
#[doc(inline)]
pub use portcullis_outlier as outlier;

/// Rate limiting: lock-free GCRA, keyed limits with bounded memory, 429 with RateLimit headers (feature `ratelimit`).
#[cfg(feature = "ratelimit")]
#[doc(inline)]
pub use portcullis_ratelimit as ratelimit;

/// Fleet rate limiting in Redis: one limit for every replica, a local denial cache, leases, a fail policy (feature `redis`).
#[cfg(feature = "redis")]
#[doc(inline)]
pub use portcullis_redis as redis;

/// The registry: named breakers, health, Prometheus metrics, events, dashboard, guarded control (feature `registry`).
#[cfg(feature = "registry")]
#[doc(inline)]
pub use portcullis_registry as registry;

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
