//! A rate limiter for `tower`: exact (GCRA), lock-free, shared by
//! construction, with keyed limits in bounded memory.
//!
//! A rate limit says how often callers may call: `rate` calls per
//! `period`, up to `burst` of them at once after a quiet spell. A call over
//! the limit is rejected at once with [`RateLimited`], which says exactly
//! when the call would have been admitted (`retry_after`); over HTTP it is
//! a `429 Too Many Requests` with `Retry-After` and the `RateLimit-*`
//! headers.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_ratelimit::{RateLimitConfig, RateLimitLayer, RateLimited, RateLimiter};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = RateLimitConfig::per_second(10) // one call per 100 ms on average
//!     .burst(3)                                // three at once after a quiet spell
//!     .build()
//!     .expect("a valid configuration");
//! let limiter = RateLimiter::from_config("search", config).unwrap();
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter.clone()))
//!     .service(service_fn(|query: &'static str| async move { Ok::<_, std::io::Error>(query.len()) }));
//!
//! for _ in 0..3 {
//!     assert_eq!(service.ready().await.unwrap().call("rust").await.unwrap(), 4);
//! }
//! // The burst is spent: the next call fails fast, without reaching the service.
//! let error = service.ready().await.unwrap().call("rust").await.unwrap_err();
//! let limited = error.downcast_ref::<RateLimited>().expect("rate-limited");
//! assert_eq!(limited.retry_after(), Some(Duration::from_millis(100)));
//!
//! // One emission interval later, one more call conforms.
//! tokio::time::advance(Duration::from_millis(100)).await;
//! assert!(service.ready().await.unwrap().call("rust").await.is_ok());
//! assert_eq!(limiter.snapshot().rejected, 1);
//! # }
//! ```
//!
//! # Why another rate limiter
//!
//! `tower::limit::RateLimit` keeps its budget in the service, and is not
//! `Clone`: behind axum, which clones a route's service for every request,
//! it does not hold (and it waits in `poll_ready`, which a server cannot
//! afford to do for every client). Here the budget lives in a
//! [`RateLimiter`] handle that every clone, route and connection shares, and
//! a call over the limit fails fast by default.
//!
//! # The rules
//!
//! - **GCRA.** The limit is the generic cell rate algorithm: each call costs
//!   one *emission interval* `T = period / rate` (rounded up to a whole
//!   nanosecond, so the rate is never exceeded), and a call conforms when the
//!   budget's *theoretical arrival time* is at most `(burst - 1) * T` ahead of
//!   now. In any interval of length `L`, at most
//!   `floor((L + (burst - 1) * T) / T) + 1` calls are admitted — over one
//!   period, at most `rate + burst`; the property tests check it. There is
//!   no window edge to game and no refill task.
//! - **`retry_after` is exact**: the time until this call would conform.
//! - **Fail fast** by default: `poll_ready` is the inner service's, and a
//!   rejected call's future resolves at once to the error. With
//!   [`max_wait`](RateLimitConfigBuilder::max_wait), a call whose slot comes
//!   within that wait reserves the slot and waits for it in its response
//!   future (paused-time friendly: `tokio::time`); beyond it, it is rejected
//!   at once. A waiting call that is dropped gives its slot back, unless a
//!   later call was already placed after it.
//! - **Keyed limits** ([`KeyedRateLimiter`], [`RateLimitLayer::keyed`]): one
//!   budget per key — the client's IP, a header, the route, or any closure
//!   (see [`key`]). Memory is bounded by `max_keys`, and idle keys are
//!   forgotten by the limiter itself as new keys come (no cleanup task);
//!   when the keys are all busy, a new key is refused with [`RateLimited`]
//!   (see [`keyed`]).
//! - **Config** ([`RateLimitConfig`]) comes from a builder or serde (human
//!   durations, unknown fields refused), validated when the limiter is
//!   built: a [`ConfigError`] names the field and the allowed range
//!   (`rate: must be in [1, 1000000000], got 0`). Nothing panics at request
//!   time.
//!
//! # Shared or per route
//!
//! All state lives in the handle. A [`RateLimitLayer`] built from a handle
//! gives every service it makes that one budget; one built with
//! [`RateLimitLayer::per_service`] makes a new limiter each time `layer` is
//! called, which in axum is once per route — provided the router is given
//! its state (`Router::with_state`, with `()` if it has none) before it is
//! served. When in doubt, build from a handle.
//!
//! # Where it goes in a stack
//!
//! Outermost, after a fallback: a request over the limit should cost
//! nothing, not a timeout, a retry or a breaker slot. Its rejection is
//! ignored by the default classifiers of an outer breaker and never retried
//! by a Portcullis retry: it says nothing about the callee.
//!
//! # Cost
//!
//! A single limiter admits a call with one clock read and one
//! compare-and-swap on one atomic word: no lock, no allocation, no boxed
//! future (checked by a counting-allocator test and a `loom` model of the
//! update). A keyed limiter takes one short lock on the key's shard; it
//! allocates only when it inserts a new key (and a route key allocates its
//! `String`). A call that waits allocates its waiting state and the guard
//! that gives its slot back if it is dropped.
//!
//! The clock read is one atomic load in a running runtime: the coarse time
//! of [`portcullis_core::clock`], which lags the real time by about a
//! millisecond and never runs ahead, so a limiter admits no more than it
//! would on the exact time (capacity comes back up to the lag late). A
//! limiter made where tokio's time is paused reads tokio's clock instead,
//! and every verdict under paused time is exact.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`http`]: 429 with `Retry-After` and `RateLimit-*` headers; the client-IP, header and route keys |
//! | `axum`  | the client-IP key reads `ConnectInfo<SocketAddr>`, the route key reads `MatchedPath` |

mod config;
pub mod error;
pub mod future;
mod gcra;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
pub mod keyed;
mod layer;
mod limiter;
mod service;

pub use config::{RateLimitConfig, RateLimitConfigBuilder};
pub use error::{ConfigError, RateLimited};
#[cfg(feature = "http")]
pub use http::{HttpRateLimit, HttpRateLimitLayer};
pub use key::KeyExtractor;
pub use keyed::{ByKey, KeyedRateLimiter, KeyedRateLimiterSnapshot};
pub use layer::RateLimitLayer;
pub use limiter::{RateLimiter, RateLimiterSnapshot};
pub use service::RateLimit;
