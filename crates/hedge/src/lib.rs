//! Hedged requests for `tower`: when an attempt is slow, send another one
//! and take the first good answer.
//!
//! A service's tail latency is mostly its slowest replicas, queues and
//! pauses, not its work. A second attempt sent after the usual latency has
//! passed usually lands elsewhere and answers first; the caller sees close
//! to the delay plus a normal latency instead of the tail (Dean and
//! Barroso, "The Tail at Scale"). The cost is the extra attempts: a hedge
//! sent after the 95th percentile adds about 5 % of load, and a budget
//! caps it for when the whole dependency is slow.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_hedge::{DelayConfig, HedgeConfig, HedgeLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = HedgeConfig::builder()
//!     .delay(DelayConfig::fixed(Duration::from_millis(10)))
//!     .build()
//!     .unwrap();
//! let layer = HedgeLayer::from_config("search", config).unwrap();
//!
//! // The first attempt takes a second; any later one 5 ms.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let mut service = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(move |x: u32| {
//!         let first = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
//!         async move {
//!             let wait = if first { 1000 } else { 5 };
//!             tokio::time::sleep(Duration::from_millis(wait)).await;
//!             Ok::<_, std::io::Error>(x * 2)
//!         }
//!     }));
//!
//! let started = tokio::time::Instant::now();
//! assert_eq!(service.ready().await.unwrap().call(21).await.unwrap(), 42);
//! assert_eq!(started.elapsed(), Duration::from_millis(15), "10 ms of delay, 5 ms of hedge");
//! let metrics = layer.metrics();
//! assert_eq!((metrics.hedges, metrics.hedges_won, metrics.cancelled), (1, 1, 1));
//! # }
//! ```
//!
//! # The rules
//!
//! - **When.** The first attempt is sent at once. If it has not answered
//!   after the delay, a hedge is sent; if neither has answered a delay
//!   later, another; at most `max_hedges` of them. The delay is fixed, or
//!   the `p` percentile of recent latencies ([`DelayConfig`]).
//! - **Which answer.** The policy's classifier ([`Classify`]) judges each
//!   answer as it arrives. The first success — or an outcome it ignores,
//!   such as the rejection of an inner breaker — is the call's answer, and
//!   every other attempt in flight is dropped at once: its future is
//!   dropped, which cancels it (a hyper client closes its connection). A
//!   failure lets the other attempts go on. When every attempt made has
//!   failed, the **last failure to arrive** is returned, as it came (as
//!   gRPC returns the last attempt's status).
//! - **Non-fatal failures.** After a failure that the policy's predicate
//!   ([`RetryPredicate`], [`HedgeLayer::non_fatal_if`]) calls non-fatal,
//!   the next hedge is sent at once rather than after the delay (gRPC's
//!   `nonFatalStatusCodes`). After any other failure no further hedge is
//!   sent; the attempts in flight go on. By default every error is
//!   non-fatal but the rejections of inner Portcullis layers.
//! - **Budget.** With a [`RetryBudget`], each call deposits and each hedge
//!   withdraws; a hedge the budget refuses is not sent, and no further
//!   hedge is tried for that call. Pass one budget to a
//!   [`RetryLayer`](portcullis_retry::RetryLayer) and to the hedge
//!   ([`HedgeLayer::with_budget`]) to cap retries and hedges together. A
//!   throttling budget (gRPC `retryThrottling`,
//!   [`RetryBudget::throttling`]) is told every attempt's outcome.
//!   With a retry around the hedge on one budget, give the hedge the
//!   retry's budget with [`HedgeLayer::with_retry_budget`]: the retry then
//!   deposits once per request and records the answer the hedge returns,
//!   and the hedge records only the failures of the attempts it does not
//!   return, so each attempt counts once. (Given the same budget with
//!   [`with_budget`](HedgeLayer::with_budget) instead, both layers deposit
//!   for each request and a throttling budget hears the returned answer
//!   twice.)
//! - **Requests.** A request is sent again by the policy's [`Replay`]:
//!   `Clone` requests are cloned ([`CloneReplay`](portcullis_retry::CloneReplay));
//!   `http::Request<B>`s with any body ([`HedgeLayer::http`], feature
//!   `http`) go through the retry crate's body replay and idempotency gate:
//!   POST, PATCH and CONNECT are not hedged unless they carry an
//!   `Idempotency-Key` or the route opts in.
//!
//! # The percentile delay
//!
//! Latencies go into a lock-free histogram of log-linear buckets (exact
//! below 16 µs, then within 1/16 of the value) in two generations rotated
//! by the clock every `window`: the percentile covers the last one to two
//! windows, and is read as the upper edge of its bucket, so it is at most
//! 6.25 % above the true percentile of the counted latencies. Until
//! `min_data_points` latencies are in the window, the `fallback` delay is
//! used. The percentile is computed again 16 times per window by one
//! caller (a scan of the buckets), not on every call. Every attempt that
//! answers counts its latency; one that is cancelled counts the time it
//! had run, a lower bound, so that the slow calls hedging hides from the
//! caller still count (tower's hedge counts only the attempts that
//! answer). Latencies are measured with `tokio::time::Instant`; the
//! window rotates on the coarse clock of [`portcullis_core::clock`].
//!
//! # Where it goes in a stack
//!
//! Inside a retry and a total timeout, outside the circuit breaker and the
//! per-attempt timeout: fallback → rate limit → total timeout → retry →
//! **hedge** → circuit breaker → bulkhead → per-attempt timeout → service.
//! A breaker inside sees every attempt, hedges included.
//!
//! # Cost
//!
//! When the first attempt answers well before the delay, for a `Clone`
//! request: no allocation, no lock, no boxed future; a clone of the request
//! and of the inner service is kept for a hedge, and one counter is
//! incremented. The timer is armed only when the first attempt is found
//! pending. A percentile delay reads the clock twice per call and counts
//! the latency with one atomic add. Each hedge sent is boxed.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`HedgeLayer::http`], [`HttpPolicy`] |
//! | `grpc`  | [`HedgeLayer::grpc`], [`GrpcPolicy`], [`NonFatalCodes`] (implies `http`) |
//!
//! [`Classify`]: portcullis_core::Classify
//! [`RetryPredicate`]: portcullis_retry::RetryPredicate
//! [`RetryBudget`]: portcullis_retry::RetryBudget
//! [`RetryBudget::throttling`]: portcullis_retry::RetryBudget::throttling
//! [`Replay`]: portcullis_retry::Replay

mod config;
mod delay;
pub mod future;
mod histogram;
#[cfg(feature = "http")]
mod http;
mod layer;
mod metrics;
mod service;

pub use config::{HedgeConfig, HedgeConfigBuilder};
pub use delay::DelayConfig;
#[cfg(feature = "http")]
pub use http::HttpPolicy;
#[cfg(feature = "grpc")]
pub use http::{GrpcPolicy, NonFatalCodes};
pub use layer::HedgeLayer;
pub use metrics::HedgeMetrics;
pub use portcullis_retry::{Policy, RetryBudget, ThrottleConfig};
pub use service::Hedge;
