//! Retries for `tower`: backoff with jitter, server-directed delays, retry
//! budgets, an idempotency gate, and HTTP requests with streaming bodies.
//!
//! A retry turns a transient failure into a success at the cost of more
//! load on the dependency that failed. Done carelessly it makes an outage
//! worse: every client retries at once, at once again, and multiplies the
//! traffic by its number of attempts. So this retry waits between attempts
//! (a [`Backoff`], spread by a [`Jitter`]), obeys the server's `Retry-After`
//! (up to a cap), stops at a total deadline, draws retries from a shared
//! [`RetryBudget`], never retries what another Portcullis layer refused to
//! send, and never re-sends a non-idempotent HTTP request unless told it is
//! safe. And it can retry what other retries cannot: an
//! `http::Request<B>` whose body streams, by keeping the body as it goes
//! out (up to a limit) and replaying it.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use portcullis_retry::{ConstantBackoff, NoJitter, RetryConfig, RetryLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = RetryConfig::builder()
//!     .max_attempts(3)
//!     .backoff(ConstantBackoff::new(Duration::from_millis(100)))
//!     .jitter(NoJitter)
//!     .build()
//!     .expect("a valid configuration");
//! let layer = RetryLayer::from_config("flaky", config).unwrap();
//!
//! // Fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let mut service = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(move |x: u32| {
//!         let call = counter.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if call < 2 { Err(std::io::Error::other("reset")) } else { Ok(x * 2) }
//!         }
//!     }));
//!
//! let started = tokio::time::Instant::now();
//! let answer = service.ready().await.unwrap().call(21).await.unwrap();
//! assert_eq!(answer, 42);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! assert_eq!(started.elapsed(), Duration::from_millis(200), "two waits of 100 ms");
//! assert_eq!(layer.metrics().successful_with_retry, 1);
//! # }
//! ```
//!
//! # The rules
//!
//! - **Attempts.** `max_attempts` counts the first. An attempt is retried
//!   when its [`Classify`](portcullis_core::Classify) classifier calls it a
//!   failure *and* the [`RetryPredicate`] calls it retryable. By default any
//!   error is retryable, a timeout ([`Elapsed`]) included, except the
//!   rejections of inner Portcullis layers ([`BreakerOpen`],
//!   [`BulkheadFull`], [`RateLimited`]): they were never sent, and retrying
//!   them only hammers the layer that refused them, so they fail fast.
//! - **Delays.** Retry `n` waits the [`Backoff`]'s `n`-th delay (constant,
//!   linear or exponential, capped), spread by a [`Jitter`] (none, full,
//!   equal, decorrelated, proportional) with injectable, seedable
//!   randomness ([`Rng`]). A failure that carries a server-directed wait
//!   (`Retry-After` on a 429 or 503; `grpc-retry-pushback-ms`) waits the
//!   longer of that and its backoff, so `Retry-After: 0` never turns into
//!   immediate retries; a wait longer than `max_retry_after` is not
//!   waited: the response is returned to the caller. A negative or
//!   malformed `grpc-retry-pushback-ms` means "do not retry" (gRFC A6), and
//!   the response is returned at once. The classifier's
//!   [`Classify::pushback`](portcullis_core::Classify::pushback) reads it.
//! - **Total deadline.** No retry starts, and no delay is waited, past
//!   `total_deadline` after the call. An attempt in flight is not cut
//!   short: put a timeout outside the retry for that, and one inside it for
//!   each attempt.
//! - **Budget.** With a [`RetryBudget`], each call deposits `ratio` of a
//!   retry and each retry withdraws one, over a sliding window, plus a
//!   floor per second: when the budget is spent the last outcome is
//!   returned. The arithmetic is exact for fractional ratios (unlike
//!   tower's `TpsBudget`, tower#857). Or gRPC's `retryThrottling`
//!   ([`RetryBudget::throttling`]): each failed attempt costs a token,
//!   each success gives back `token_ratio`, and no retry is made at or
//!   below half the tokens. One budget can serve a retry and a hedge.
//! - **The end.** When no further attempt is made, the last response comes
//!   back as it came, and the last error as it came — or, with
//!   `fail_after_max_attempts`, wrapped in [`RetriesExhausted`] (with the
//!   attempt count and the [`GiveUpReason`]) when it was still retryable.
//! - **Events and counters.** Resilience4j's four counters
//!   ([`RetryMetrics`]); each retry (attempt number and delay), each
//!   success after retries and each give-up go to `tracing` (at `debug`)
//!   and to [`RetryLayer::subscribe`]rs. No event is built when nobody
//!   subscribes.
//!
//! # HTTP (feature `http`)
//!
//! [`RetryLayer::http`] retries `http::Request<B>` for any body `B:
//! http_body::Body<Data = Bytes>`, with [`HttpPolicy`]:
//!
//! - Retried: connection errors and other errors that are not Portcullis
//!   rejections, timeouts, and the responses 408, 429, 500, 502, 503, 504.
//!   Never another 4xx.
//! - **Idempotency gate**: a POST, PATCH or CONNECT (or an unknown method)
//!   is sent once unless it carries an `Idempotency-Key` header or the
//!   [`Idempotent`] extension, or the route opts in with
//!   [`RetryLayer::retry_non_idempotent`].
//! - **Body replay**: the inner service receives
//!   `http::Request<ReplayBody<B>>`. The first attempt's body streams
//!   through at full speed (nothing is read ahead of the inner service)
//!   while its chunks — reference-counted `Bytes`, not copies — and its
//!   trailers are kept, up to `body_limit` (64 KiB by default). A body that
//!   outgrows the limit, or whose known length exceeds it, is sent once.
//!   Later attempts send the same chunks and trailers again.
//!
//! [`RetryLayer::grpc`] (feature `grpc`) retries `UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED` and `DEADLINE_EXCEEDED`, honours
//! `grpc-retry-pushback-ms`, and — since every gRPC call is a POST —
//! retries only calls declared idempotent.
//!
//! # Where it goes in a stack
//!
//! Outermost first: fallback → rate limit → total timeout → **retry** →
//! circuit breaker → bulkhead → per-attempt timeout → service. A breaker
//! inside the retry sees every attempt, and the retry does not retry its
//! `BreakerOpen`. A breaker outside sees one outcome per call.
//!
//! # Cost
//!
//! When the first attempt succeeds, for a `Clone` request: no allocation,
//! no lock, no boxed future, no clock read (unless a total deadline or a
//! budget is configured); a clone of the request and of the inner service
//! is kept for a retry, and one counter is incremented. The budget is
//! lock-free and checked with `loom`.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`HttpPolicy`], [`HttpPredicate`], [`HttpReplay`], [`ReplayBody`], [`Idempotent`], [`RetryLayer::http`] |
//! | `grpc`  | [`GrpcPolicy`], [`GrpcPredicate`], [`RetryLayer::grpc`] (implies `http`) |

mod backoff;
#[cfg(feature = "http")]
mod body;
mod budget;
mod config;
pub mod error;
pub mod event;
pub mod future;
#[cfg(feature = "http")]
mod http;
mod jitter;
mod layer;
mod policy;
mod rng;
mod service;

pub use backoff::{
    Backoff, BackoffConfig, ConstantBackoff, Delays, ExponentialBackoff, LinearBackoff,
};
#[cfg(feature = "http")]
pub use body::ReplayBody;
pub use budget::{BudgetConfig, BudgetSnapshot, RetryBudget, ThrottleConfig, ThrottleSnapshot};
pub use config::{RetryConfig, RetryConfigBuilder};
#[cfg(feature = "http")]
pub use error::BodyNotReplayable;
pub use error::{BreakerOpen, BulkheadFull, Elapsed, RateLimited, RetriesExhausted};
pub use event::{EventStream, GiveUpReason, RetryEvent, RetryMetrics};
#[cfg(feature = "grpc")]
pub use http::{GrpcPolicy, GrpcPredicate};
#[cfg(feature = "http")]
pub use http::{
    HttpPolicy, HttpPredicate, HttpReplay, HttpReplayState, IDEMPOTENCY_KEY, Idempotent,
};
pub use jitter::{
    DecorrelatedJitter, EqualJitter, FullJitter, Jitter, JitterConfig, JitteredDelays, NoJitter,
    ProportionalJitter, Step,
};
pub use layer::RetryLayer;
pub use policy::{CloneReplay, DefaultPredicate, Policy, Replay, RetryPredicate};
pub use rng::{Rng, SplitMix64};
pub use service::Retry;
